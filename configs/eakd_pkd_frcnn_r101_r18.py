# EA-KD + PKD: eakd_frcnn_r101_r18.py (Faster R-CNN R-101 -> R-18, EA-KD on
# the sampled RoIs) with a second named term, PKD on the FPN levels: each
# level's maps standardised per image and channel over the positions, half
# their mean squared difference (1 - Pearson r), summed over the levels
# paired by stride (P2-P6: both FPNs have 256 channels, no connector),
# loss_weight 6 as mmrazor's PKD configs for Faster R-CNN and RetinaNet
# (which distil P2-P5 of the student's neck). Logged as loss_kd_cls,
# ea_weight_cls, ... and loss_kd_feat.
_base_ = './eakd_frcnn_r101_r18.py'

model = dict(
    distill_loss=None,  # replaced by the named terms
    distill_terms=dict(
        cls=dict(
            type='EAKDLoss',
            weight_mode='ea',
            temperature=1.0,
            entropy_temperature=3.0,
            loss_weight=1.0),
        feat=dict(type='EAPKDLoss', weight_mode='none', loss_weight=6.0)))
