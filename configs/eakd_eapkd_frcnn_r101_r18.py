# EA-KD + EA-PKD: eakd_pkd_frcnn_r101_r18.py with the PKD term of each image
# weighted by the mean EA weight of the image's sampled RoIs (the cls term's
# entropies, not computed again; RoI heads offer per-image weights), the
# weights divided by their mean over the batch (normalize_weights) so that
# loss_weight 6 means what it means for PKD. Logged also as ea_weight_feat.
_base_ = './eakd_pkd_frcnn_r101_r18.py'

model = dict(
    distill_terms=dict(feat=dict(weight_mode='ea', ea_granularity='image')))
