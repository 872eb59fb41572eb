# A heterogeneous pair, PKD only: the synthetic Faster R-CNN teacher (FPN
# P2-P6, 64 channels) for the tiny RetinaNet student (FPN P2-P5, 32
# channels), the code path of configs/pkd_frcnn_retinanet_r101_r18.py. The
# teacher runs its extract_feat only; levels paired by stride (4-32); a 1x1
# connector maps the student's 32 channels to 64. The teacher checkpoint is
# what tools/demo.py trains; elsewhere pass
# --cfg-options model.teacher.checkpoint=PATH.
_base_ = './retinanet_tiny_synthetic.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='DenseDistillSingleStageDetector',
    teacher=dict(
        config='{{ fileDirname }}/frcnn_teacher_synthetic.py',
        checkpoint='work_dirs/demo/teacher/teacher.pth'),
    distill_terms=dict(
        feat=dict(
            type='EAPKDLoss',
            weight_mode='none',
            loss_weight=6.0,
            student_channels=32,
            teacher_channels=64)))
