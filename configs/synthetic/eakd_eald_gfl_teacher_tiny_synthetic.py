# EA-KD + EA-LD per location from the synthetic GFL teacher to the tiny
# student: kd_ld_gfl_teacher_tiny_synthetic.py with the entropy weights of
# both terms.
_base_ = './kd_ld_gfl_teacher_tiny_synthetic.py'

model = dict(
    distill_terms=dict(
        cls=dict(weight_mode='ea'), box=dict(weight_mode='ea')))
