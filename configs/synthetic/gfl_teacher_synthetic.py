# The dense study's teacher: a wider tiny GFL (ResNet-18 layout with 32 base
# channels, 64 FPN channels, 64-wide head convs) on the synthetic set.
_base_ = './gfl_tiny_synthetic.py'

model = dict(
    backbone=dict(base_channels=32),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64))
