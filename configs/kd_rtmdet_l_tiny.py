# KD per location: RTMDet-l teacher (mmdet model zoo, 300 epochs, 51.3 box
# AP) -> RTMDet-tiny student (mmdet's own config: 300 epochs, EMA, pipeline
# switch for the last 20 epochs; 40.9 box AP). Sigmoid KD: per-class
# Bernoulli KL at T = 1 of the QFL (IoU-aware) scores at every point the
# student's loss counts, summed and divided by the positives (averaged over
# GPUs). Both predict one point per location at strides 8, 16, 32 for 80
# classes. The EMA averages the student only.
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='DenseDistillRTMDet',
    teacher=dict(
        config='mmdet::rtmdet/rtmdet_l_8xb32-300e_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v3.0/rtmdet/'
        'rtmdet_l_8xb32-300e_coco/'
        'rtmdet_l_8xb32-300e_coco_20220719_112030-5a0be7c4.pth'),
    distill_locations='all',
    distill_loss=dict(
        type='SigmoidEAKDLoss',
        weight_mode='none',
        temperature=1.0,
        loss_weight=1.0))
