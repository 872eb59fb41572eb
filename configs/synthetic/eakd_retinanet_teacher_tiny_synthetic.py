# EA-KD per location from the synthetic RETINANET teacher to the tiny student.
_base_ = './kd_retinanet_teacher_tiny_synthetic.py'

model = dict(distill_loss=dict(weight_mode='ea'))
