# EA-KD per location: the KD of kd_rtmdet_x_s.py (RTMDet-x -> RTMDet-s)
# weighted by the sigmoid EA weight w = H_T (1 + H_S / log 2) / 2.
_base_ = './kd_rtmdet_x_s.py'

model = dict(distill_loss=dict(weight_mode='ea'))
