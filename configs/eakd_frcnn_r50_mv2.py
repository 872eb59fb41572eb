# EA-KD: KD on the student's sampled RoIs, each RoI weighted by
# w = H_T (1 + H_S / H_ub) / 2 (T = 1, T' = 3). R-50 teacher -> MobileNetV2 student.
# Paper Table 6: 31.81 AP (KD: 30.13).
_base_ = './kd_frcnn_r50_mv2.py'

model = dict(distill_loss=dict(weight_mode='ea'))
