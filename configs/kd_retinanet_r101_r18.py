# KD per location (every valid anchor of every FPN level): RetinaNet R-101 FPN
# teacher (mmdet model zoo, ms-640-800-3x, 41.0 AP) -> RetinaNet R-18 FPN
# student. Sigmoid KD: per-class Bernoulli KL at T = 1, summed over the
# locations and divided by the positives (averaged over the GPUs).
_base_ = './_base_/retinanet_r18_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='DenseDistillSingleStageDetector',
    teacher=dict(
        config='mmdet::retinanet/retinanet_r101_fpn_ms-640-800-3x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/'
        'retinanet/retinanet_r101_fpn_mstrain_3x_coco/'
        'retinanet_r101_fpn_mstrain_3x_coco_20210720_214650-7ee888e0.pth'),
    distill_locations='all',
    distill_loss=dict(
        type='SigmoidEAKDLoss',
        weight_mode='none',
        temperature=1.0,
        loss_weight=1.0))
