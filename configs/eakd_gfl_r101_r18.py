# EA-KD per location: KD weighted by the sigmoid EA weight
# w = H_T (1 + H_S / log 2) / 2 (H: mean binary entropy over the classes at
# T'; see README, "Dense detectors"). GFL R-101 -> R-18.
_base_ = './kd_gfl_r101_r18.py'

model = dict(distill_loss=dict(weight_mode='ea'))
