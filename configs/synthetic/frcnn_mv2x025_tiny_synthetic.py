# The converged study's MobileNetV2 student (see README, "Evidence"): the tiny
# Faster R-CNN with mmdet's MobileNetV2 at a quarter width (outputs of 8, 8,
# 24 and 1280 channels at strides 4, 8, 16, 32). At half width
# (frcnn_mv2_tiny_synthetic.py) it trains, on a 60-epoch schedule, to within
# about 1 AP of the 32-channel synthetic teacher: no capacity gap.
_base_ = './frcnn_tiny_synthetic.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        widen_factor=0.25,
        out_indices=(1, 2, 4, 7),
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),
    neck=dict(in_channels=[8, 8, 24, 1280]))
