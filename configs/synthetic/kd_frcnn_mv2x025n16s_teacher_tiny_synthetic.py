# KD from the synthetic teacher to the converged study's MobileNetV2 student:
# the distillation settings of kd_frcnn_teacher_tiny_synthetic.py, the student
# of frcnn_mv2x025n16s_tiny_synthetic.py.
_base_ = './kd_frcnn_teacher_tiny_synthetic.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        widen_factor=0.25,
        out_indices=(1, 2, 4, 6),
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),
    neck=dict(in_channels=[8, 8, 24, 80], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=64)))
