# Student-only baseline for configs/*_gfl_r101_r18.py.
_base_ = './_base_/gfl_r18_fpn_1x_coco.py'
