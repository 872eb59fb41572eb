# Student: GFL R-18 FPN, 1x schedule (12 epochs, lr 0.01 at 16 images per
# step: 8 GPUs x 2), single scale (1333 x 800), COCO. mmdet's GFL R-50 1x
# config with a ResNet-18 backbone (mmdet ships no GFL R-18).
_base_ = 'mmdet::gfl/gfl_r50_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        depth=18,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[64, 128, 256, 512]))
