# EA-KD per location: the KD of kd_rtmdet_l_tiny.py (RTMDet-l -> RTMDet-tiny)
# weighted by the sigmoid EA weight w = H_T (1 + H_S / log 2) / 2 (H: mean
# binary entropy over the classes at T'; see README, "RTMDet").
_base_ = './kd_rtmdet_l_tiny.py'

model = dict(distill_loss=dict(weight_mode='ea'))
