# Student-only baseline for configs/*_cascade_r101_r18.py.
_base_ = './_base_/cascade-rcnn_r18_fpn_ms-1x_coco.py'
