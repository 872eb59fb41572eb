# KD from the synthetic teacher to the tiny student, same code path as the COCO
# configs. The teacher checkpoint is what tools/demo.py trains; elsewhere pass
# --cfg-options model.teacher.checkpoint=PATH.
_base_ = './frcnn_tiny_synthetic.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='RoIDistillTwoStageDetector',
    teacher=dict(
        config='{{ fileDirname }}/frcnn_teacher_synthetic.py',
        checkpoint='work_dirs/demo/teacher/teacher.pth'),
    distill_loss=dict(
        type='EAKDLoss',
        weight_mode='none',
        temperature=1.0,
        entropy_temperature=3.0,
        loss_weight=1.0))
