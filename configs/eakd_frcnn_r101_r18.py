# EA-KD: KD on the student's sampled RoIs, each RoI weighted by
# w = H_T (1 + H_S / H_ub) / 2 (T = 1, T' = 3). R-101 teacher -> R-18 student.
# Paper Table 6: 34.78 AP (KD: 33.97).
_base_ = './kd_frcnn_r101_r18.py'

model = dict(distill_loss=dict(weight_mode='ea'))
