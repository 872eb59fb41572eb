# EA-KD + PKD from the synthetic Faster R-CNN teacher to the tiny student,
# the code path of configs/eakd_pkd_frcnn_r101_r18.py. The teacher's FPN has
# 64 channels and the student's 32: a 1x1 connector (32 -> 64, trained with
# the student, left out of the plain student checkpoint) maps the student's
# levels first.
_base_ = './eakd_frcnn_teacher_tiny_synthetic.py'

model = dict(
    distill_loss=None,  # replaced by the named terms
    distill_terms=dict(
        cls=dict(
            type='EAKDLoss',
            weight_mode='ea',
            temperature=1.0,
            entropy_temperature=3.0,
            loss_weight=1.0),
        feat=dict(
            type='EAPKDLoss',
            weight_mode='none',
            loss_weight=6.0,
            student_channels=32,
            teacher_channels=64)))
