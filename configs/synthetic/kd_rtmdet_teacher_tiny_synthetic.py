# KD per location from the synthetic RTMDet teacher to the tiny RTMDet
# student (sigmoid KD: per-class Bernoulli KL at every point the QFL loss
# counts, divided by the positives), with the student's EMA and pipeline
# switch: the EMA averages the student only (the teacher is no submodule).
# The teacher checkpoint is a placeholder; pass
# --cfg-options model.teacher.checkpoint=PATH (e.g. a checkpoint of
# rtmdet_teacher_synthetic.py).
_base_ = './rtmdet_tiny_synthetic.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='DenseDistillRTMDet',
    teacher=dict(
        config='{{ fileDirname }}/rtmdet_teacher_synthetic.py',
        checkpoint='work_dirs/rtmdet_teacher_synthetic/teacher.pth'),
    distill_locations='all',
    distill_loss=dict(
        type='SigmoidEAKDLoss',
        weight_mode='none',
        temperature=1.0,
        loss_weight=1.0))
