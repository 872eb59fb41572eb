# EA-DKD: DKD on the student's sampled RoIs weighted per RoI by w_EA, R-101 -> R-18.
_base_ = './dkd_frcnn_r101_r18.py'

model = dict(distill_loss=dict(weight_mode='ea'))
