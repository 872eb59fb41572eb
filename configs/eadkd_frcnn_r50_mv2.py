# EA-DKD: DKD on the student's sampled RoIs weighted per RoI by w_EA, R-50 -> MobileNetV2.
_base_ = './dkd_frcnn_r50_mv2.py'

model = dict(distill_loss=dict(weight_mode='ea'))
