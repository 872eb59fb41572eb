# KD from the synthetic teacher to the 14-channel ResNet student of the
# converged study: the distillation settings of
# kd_frcnn_teacher_tiny_synthetic.py, the student of frcnn_r14_tiny_synthetic.py.
_base_ = './kd_frcnn_teacher_tiny_synthetic.py'

model = dict(
    backbone=dict(base_channels=14),
    neck=dict(in_channels=[14, 28, 56, 112], out_channels=28),
    rpn_head=dict(in_channels=28, feat_channels=28),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=28),
        bbox_head=dict(in_channels=28)))
