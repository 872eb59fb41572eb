# KD from the synthetic Cascade R-CNN teacher to the tiny Cascade R-CNN: the
# teacher's stage s classifies the student's stage-s RoIs; each stage's KD is
# weighted by stage_loss_weights and logged as s0.loss_kd, s1.loss_kd, ...
# Train the teacher with tools/train.py configs/synthetic/cascade_teacher_synthetic.py
# or pass --cfg-options model.teacher.checkpoint=PATH.
_base_ = './cascade_tiny_synthetic.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='RoIDistillTwoStageDetector',
    teacher=dict(
        config='{{ fileDirname }}/cascade_teacher_synthetic.py',
        checkpoint='work_dirs/cascade_teacher_synthetic/epoch_12.pth'),
    distill_loss=dict(
        type='EAKDLoss',
        weight_mode='none',
        temperature=1.0,
        entropy_temperature=3.0,
        loss_weight=1.0))
