# KD per location from the synthetic GFL teacher to the 8-channel GFL
# student: the distillation settings of kd_gfl_teacher_tiny_synthetic.py, the
# student of gfl_r8_tiny_synthetic.py (its model block is repeated here:
# mmengine refuses two bases that both define `model`).
_base_ = './kd_gfl_teacher_tiny_synthetic.py'

model = dict(
    backbone=dict(base_channels=8),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    bbox_head=dict(
        in_channels=16,
        feat_channels=16,
        # one channel a group, as the 32-channel head's 32 groups
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True)))
