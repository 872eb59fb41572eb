# Plain (student-only) tiny RTMDet on the synthetic data set, with RTMDet's
# training machinery: an EMA of the weights (ExpMomentumEMA, evaluated and
# saved in the checkpoint's state_dict) and a pipeline switch for the last
# epoch (stage 1: random rescale and crop; stage 2: the plain resize), as
# mmdet's rtmdet_*_8xb32-300e_coco.py configs do with Mosaic / MixUp.
_base_ = ['./_base_/synthetic_data.py', './_base_/tiny_rtmdet.py']

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomResize',
        scale=(160, 160),
        ratio_range=(0.75, 1.25),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=(160, 160)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs')
]
train_pipeline_stage2 = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

# The last of synthetic_data.py's 12 epochs runs the stage-2 pipeline (set
# switch_epoch with max_epochs: custom_hooks.1.switch_epoch=...).
custom_hooks = [
    dict(
        type='EMAHook',
        ema_type='ExpMomentumEMA',
        momentum=0.0002,
        update_buffers=True,
        priority=49),
    dict(
        type='PipelineSwitchHook',
        switch_epoch=11,
        switch_pipeline=train_pipeline_stage2)
]
