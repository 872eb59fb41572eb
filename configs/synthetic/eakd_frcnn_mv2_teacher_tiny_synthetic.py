# EA-KD from the synthetic teacher to the tiny MobileNetV2 student.
_base_ = './kd_frcnn_mv2_teacher_tiny_synthetic.py'

model = dict(distill_loss=dict(weight_mode='ea'))
