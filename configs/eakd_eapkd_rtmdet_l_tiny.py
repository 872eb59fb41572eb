# EA-KD + EA-PKD, two named terms on RTMDet-l -> RTMDet-tiny:
# cls: the sigmoid EA-KD of eakd_rtmdet_l_tiny.py at every point the
# student's loss counts; feat: PKD on the neck's three levels (strides 8, 16,
# 32), each level's maps standardised per image and channel, half their mean
# squared difference, with a 1x1 connector from the student's 96 channels to
# the teacher's 256 (trained with the student, kept out of the plain
# checkpoint), each image weighted by the mean EA weight of its locations
# that the cls term distils (its entropies, not computed again), normalised
# to mean 1 over the batch; loss_weight 6 as mmrazor's PKD configs. RTMDet
# predicts no box-edge distributions, so no LD term applies. Logged as
# loss_kd_cls, ea_weight_cls, ..., loss_kd_feat, ea_weight_feat.
_base_ = './eakd_rtmdet_l_tiny.py'

model = dict(
    distill_loss=None,  # replaced by the named terms
    distill_terms=dict(
        cls=dict(
            type='SigmoidEAKDLoss',
            weight_mode='ea',
            temperature=1.0,
            loss_weight=1.0),
        feat=dict(
            type='EAPKDLoss',
            weight_mode='ea',
            ea_granularity='image',
            student_channels=96,
            teacher_channels=256,
            loss_weight=6.0)))
