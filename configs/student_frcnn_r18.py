# Student-only baseline for configs/*_frcnn_r101_r18.py (paper Table 6: 33.26 AP).
_base_ = './_base_/faster-rcnn_r18_fpn_ms-1x_coco.py'
