# A wider tiny RTMDet teacher on the synthetic set (CSPNeXt widen 0.25:
# 64, 128, 256 channels; 64-channel PAFPN and head); same strides, points
# and classes as rtmdet_tiny_synthetic.py, so the pair aligns location by
# location.
_base_ = './rtmdet_tiny_synthetic.py'

model = dict(
    backbone=dict(widen_factor=0.25),
    neck=dict(in_channels=[64, 128, 256], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64))
