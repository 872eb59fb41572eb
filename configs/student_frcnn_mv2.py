# Student-only baseline for configs/*_frcnn_r50_mv2.py (paper Table 6: 29.47 AP).
_base_ = './_base_/faster-rcnn_mv2_fpn_ms-1x_coco.py'
