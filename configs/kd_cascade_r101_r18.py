# KD on the student's sampled RoIs of every cascade stage: Cascade R-CNN R-101
# FPN teacher (mmdet model zoo, 20e, 42.5 box AP; its stage s classifies the
# student's stage-s RoIs) -> Cascade R-CNN R-18 FPN student. Each stage's KD is
# weighted by the cascade's stage_loss_weights (1, 0.5, 0.25) and logged as
# s0.loss_kd, s1.loss_kd, s2.loss_kd beside the total loss_kd.
_base_ = './_base_/cascade-rcnn_r18_fpn_ms-1x_coco.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='RoIDistillTwoStageDetector',
    teacher=dict(
        config='mmdet::cascade_rcnn/cascade-rcnn_r101_fpn_20e_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/'
        'cascade_rcnn/cascade_rcnn_r101_fpn_20e_coco/'
        'cascade_rcnn_r101_fpn_20e_coco_bbox_mAP-0.425_20200504_231812-'
        '5057dcc5.pth'),
    distill_loss=dict(
        type='EAKDLoss',
        weight_mode='none',
        temperature=1.0,
        entropy_temperature=3.0,
        loss_weight=1.0))
