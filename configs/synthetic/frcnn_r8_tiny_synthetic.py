# A narrower ResNet student for the 1600-image long-schedule regime (README,
# "Evidence"): the tiny Faster R-CNN with 8 base channels and a 16-channel
# FPN, RPN and RoI head. On 1600 training images the 14-channel student
# (frcnn_r14_tiny_synthetic.py) ends within 5 AP of the 32-channel teacher.
_base_ = './frcnn_tiny_synthetic.py'

model = dict(
    backbone=dict(base_channels=8),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16)))
