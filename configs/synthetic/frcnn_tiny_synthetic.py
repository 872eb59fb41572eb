# Plain (student-only) tiny Faster R-CNN on the synthetic data set.
_base_ = ['./_base_/synthetic_data.py', './_base_/tiny_faster_rcnn.py']
