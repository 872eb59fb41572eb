# KD from the synthetic teacher to the 8-channel ResNet student: the
# distillation settings of kd_frcnn_teacher_tiny_synthetic.py, the student of
# frcnn_r8_tiny_synthetic.py.
_base_ = './kd_frcnn_teacher_tiny_synthetic.py'

model = dict(
    backbone=dict(base_channels=8),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16)))
