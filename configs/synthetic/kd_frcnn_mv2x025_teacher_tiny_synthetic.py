# KD from the synthetic teacher to the quarter-width MobileNetV2 student of
# the converged study: the distillation settings of
# kd_frcnn_teacher_tiny_synthetic.py, the student of
# frcnn_mv2x025_tiny_synthetic.py.
_base_ = './kd_frcnn_teacher_tiny_synthetic.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        widen_factor=0.25,
        out_indices=(1, 2, 4, 7),
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),
    neck=dict(in_channels=[8, 8, 24, 1280]))
