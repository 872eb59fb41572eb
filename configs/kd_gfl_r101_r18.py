# KD per location (every valid anchor of every FPN level): GFL R-101 FPN
# teacher (mmdet model zoo, ms-2x, 44.7 AP) -> GFL R-18 FPN student. Sigmoid
# KD: per-class Bernoulli KL at T = 1 of the quality-focal (IoU-aware) scores,
# summed over the locations and divided by the positives (averaged over GPUs).
_base_ = './_base_/gfl_r18_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='DenseDistillSingleStageDetector',
    teacher=dict(
        config='mmdet::gfl/gfl_r101_fpn_ms-2x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/gfl/'
        'gfl_r101_fpn_mstrain_2x_coco/'
        'gfl_r101_fpn_mstrain_2x_coco_20200629_200126-dd12f847.pth'),
    distill_locations='all',
    distill_loss=dict(
        type='SigmoidEAKDLoss',
        weight_mode='none',
        temperature=1.0,
        loss_weight=1.0))
