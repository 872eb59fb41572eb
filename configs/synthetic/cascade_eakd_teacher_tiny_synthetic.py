# EA-KD from the synthetic Cascade R-CNN teacher to the tiny Cascade R-CNN.
_base_ = './cascade_kd_teacher_tiny_synthetic.py'

model = dict(distill_loss=dict(weight_mode='ea'))
