# Plain (student-only) tiny RetinaNet on the synthetic data set.
_base_ = ['./_base_/synthetic_data.py', './_base_/tiny_retinanet.py']
