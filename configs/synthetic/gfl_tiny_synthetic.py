# Plain (student-only) tiny GFL on the synthetic data set.
_base_ = ['./_base_/synthetic_data.py', './_base_/tiny_gfl.py']
