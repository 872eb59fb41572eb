# KD on the student's sampled RoIs: Faster R-CNN R-101 FPN teacher (mmdet model
# zoo, ms-3x, 41.8 AP) -> R-18 FPN student. Paper Table 6: 33.97 AP.
_base_ = './_base_/faster-rcnn_r18_fpn_ms-1x_coco.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='RoIDistillTwoStageDetector',
    teacher=dict(
        config='mmdet::faster_rcnn/faster-rcnn_r101_fpn_ms-3x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/'
        'faster_rcnn/faster_rcnn_r101_fpn_mstrain_3x_coco/'
        'faster_rcnn_r101_fpn_mstrain_3x_coco_20210524_110822-4d4d2ca8.pth'),
    distill_loss=dict(
        type='EAKDLoss',
        weight_mode='none',
        temperature=1.0,
        entropy_temperature=3.0,
        loss_weight=1.0))
