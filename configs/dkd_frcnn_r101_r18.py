# DKD (alpha 1, beta 0.25, T 1) on the student's sampled RoIs, R-101 -> R-18.
_base_ = './kd_frcnn_r101_r18.py'

model = dict(
    distill_loss=dict(
        _delete_=True,
        type='EADKDLoss',
        weight_mode='none',
        alpha=1.0,
        beta=0.25,
        temperature=1.0,
        entropy_temperature=3.0,
        loss_weight=1.0))
