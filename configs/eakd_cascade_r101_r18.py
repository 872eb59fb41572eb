# EA-KD: KD on the student's sampled RoIs of every cascade stage, each RoI
# weighted by w = H_T (1 + H_S / H_ub) / 2 (T = 1, T' = 3). Cascade R-CNN R-101
# teacher -> Cascade R-CNN R-18 student.
_base_ = './kd_cascade_r101_r18.py'

model = dict(distill_loss=dict(weight_mode='ea'))
