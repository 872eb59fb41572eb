# KD from the synthetic teacher to the tiny MobileNetV2 student: the same
# distillation settings as kd_frcnn_teacher_tiny_synthetic.py, the student's
# backbone swapped as in frcnn_mv2_tiny_synthetic.py.
_base_ = './kd_frcnn_teacher_tiny_synthetic.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        widen_factor=0.5,
        out_indices=(1, 2, 4, 7),
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),
    neck=dict(in_channels=[16, 16, 48, 1280]))
