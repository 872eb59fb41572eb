# EA-KD per location from the synthetic RTMDet teacher to the tiny student:
# the KD of kd_rtmdet_teacher_tiny_synthetic.py weighted by the sigmoid EA
# weight w = H_T (1 + H_S / log 2) / 2.
_base_ = './kd_rtmdet_teacher_tiny_synthetic.py'

model = dict(distill_loss=dict(weight_mode='ea'))
