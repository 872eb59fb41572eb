# Plain tiny Faster R-CNN with a MobileNetV2 backbone on the synthetic data set:
# the CPU twin of the card's MobileNetV2 student (mmdet's MobileNetV2 at half
# width; outputs at strides 4, 8, 16, 32 as in configs/_base_/faster-rcnn_mv2_*).
_base_ = './frcnn_tiny_synthetic.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        widen_factor=0.5,
        out_indices=(1, 2, 4, 7),
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),
    neck=dict(in_channels=[16, 16, 48, 1280]))
