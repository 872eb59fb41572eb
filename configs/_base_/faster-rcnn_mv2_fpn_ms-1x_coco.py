# Student: Faster R-CNN MobileNetV2 FPN (mmdet's MobileNetV2, four outputs at
# strides 4, 8, 16, 32), 1x schedule, multi-scale training (640-800), COCO.
_base_ = './faster-rcnn_r18_fpn_ms-1x_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        out_indices=(1, 2, 4, 7),
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://mmdet/mobilenet_v2')),
    neck=dict(in_channels=[24, 32, 96, 1280]))
