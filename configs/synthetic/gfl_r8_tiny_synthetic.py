# A narrower GFL student for the 1600-image long-schedule dense regime
# (README, "Evidence"): the tiny GFL with 8 base channels and a 16-channel
# FPN and head, the widths of the two-stage regime's ResNet-8 student
# (frcnn_r8_tiny_synthetic.py), against the 32-channel GFL teacher.
_base_ = './gfl_tiny_synthetic.py'

model = dict(
    backbone=dict(base_channels=8),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    bbox_head=dict(
        in_channels=16,
        feat_channels=16,
        # one channel a group, as the 32-channel head's 32 groups
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True)))
