# The converged study's ResNet student (see README, "Evidence"): the tiny
# Faster R-CNN with 14 base channels, a 28-channel FPN and RPN, so that trained
# to its plateau it stays 8-15 AP below the 32-channel synthetic teacher (the
# 16-channel student converges within 5 AP of it).
_base_ = './frcnn_tiny_synthetic.py'

model = dict(
    backbone=dict(base_channels=14),
    neck=dict(in_channels=[14, 28, 56, 112], out_channels=28),
    rpn_head=dict(in_channels=28, feat_channels=28),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=28),
        bbox_head=dict(in_channels=28)))
