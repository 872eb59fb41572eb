# EA-KD + EA-PKD on RTMDet-x -> RTMDet-s: the terms of
# eakd_eapkd_rtmdet_l_tiny.py, the connector from the student's 128 neck
# channels to the teacher's 320.
_base_ = './eakd_rtmdet_x_s.py'

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
            student_channels=128,
            teacher_channels=320,
            loss_weight=6.0)))
