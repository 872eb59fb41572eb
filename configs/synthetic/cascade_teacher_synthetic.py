# A Cascade R-CNN teacher for the synthetic data set: the tiny Cascade R-CNN
# with the widths of frcnn_teacher_synthetic.py (32 base channels, 64 FPN
# channels, 256-wide box heads).
_base_ = './cascade_tiny_synthetic.py'

teacher_head = dict(
    type='Shared2FCBBoxHead',
    in_channels=64,
    fc_out_channels=256,
    roi_feat_size=7,
    num_classes={{_base_.num_classes}},
    reg_class_agnostic=True,
    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))

model = dict(
    backbone=dict(base_channels=32),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=[
            dict(
                teacher_head,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0., 0., 0., 0.],
                    target_stds=stds)) for stds in (
                        [0.1, 0.1, 0.2, 0.2],
                        [0.05, 0.05, 0.1, 0.1],
                        [0.033, 0.033, 0.067, 0.067],
                    )
        ]))
