# EA-KD + EA-LD + EA-PKD, three named terms on GFL R-101 -> R-18:
# eakd_eald_gfl_r101_r18.py (cls: sigmoid EA-KD; box: EA-LD at T = 10,
# loss_weight 0.25) with feat: PKD on the FPN levels (P3-P7, 256 channels
# both), weighted per image by the mean EA weight of the image's locations
# that the cls term distils (its entropies, not computed again), normalised
# to mean 1 over the batch; loss_weight 6 as mmrazor's PKD configs.
# ea_granularity='location' weighs each position of each level by its own
# weight instead. Logged as loss_kd_cls, loss_kd_box, loss_kd_feat,
# ea_weight_feat, ...
_base_ = './eakd_eald_gfl_r101_r18.py'

model = dict(
    distill_terms=dict(
        feat=dict(
            type='EAPKDLoss',
            weight_mode='ea',
            ea_granularity='image',
            loss_weight=6.0)))
