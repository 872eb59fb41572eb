# EA-KD + EA-PKD from the synthetic Faster R-CNN teacher to the tiny student
# (configs/eakd_eapkd_frcnn_r101_r18.py's code path): PKD weighted per image.
_base_ = './eakd_pkd_frcnn_teacher_tiny_synthetic.py'

model = dict(
    distill_terms=dict(feat=dict(weight_mode='ea', ea_granularity='image')))
