# Student: RetinaNet R-18 FPN, 1x schedule (12 epochs, lr 0.01 at 16 images
# per step: 8 GPUs x 2), single scale (1333 x 800), COCO: mmdet's own config
# (31.7 AP in its metafile).
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
