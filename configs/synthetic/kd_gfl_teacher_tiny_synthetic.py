# KD per location from the synthetic GFL teacher to the tiny student, same
# code path as the COCO configs (sigmoid KD: per-class Bernoulli KL, summed
# over the valid locations, divided by the positives). The teacher checkpoint
# is what `python tools/study.py --regime gfl` trains; elsewhere pass
# --cfg-options model.teacher.checkpoint=PATH.
_base_ = './gfl_tiny_synthetic.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='DenseDistillSingleStageDetector',
    teacher=dict(
        config='{{ fileDirname }}/gfl_teacher_synthetic.py',
        checkpoint='work_dirs/study_gfl/teacher/teacher.pth'),
    distill_locations='all',
    distill_loss=dict(
        type='SigmoidEAKDLoss',
        weight_mode='none',
        temperature=1.0,
        loss_weight=1.0))
