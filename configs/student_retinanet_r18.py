# Student-only baseline for configs/*_retinanet_r101_r18.py.
_base_ = './_base_/retinanet_r18_fpn_1x_coco.py'
