# The demo's teacher: a wider tiny Faster R-CNN (ResNet-18 layout with 32 base
# channels, 64 FPN channels, 256-wide box head) on the synthetic data set.
_base_ = './frcnn_tiny_synthetic.py'

model = dict(
    backbone=dict(base_channels=32),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256)))
