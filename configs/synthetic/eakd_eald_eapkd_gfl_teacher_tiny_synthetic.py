# EA-KD + EA-LD + EA-PKD from the synthetic GFL teacher (64 FPN channels) to
# the tiny GFL student (32), configs/eakd_eald_eapkd_gfl_r101_r18.py's code
# path, with a 1x1 connector (32 -> 64) for the feature term.
_base_ = './eakd_eald_gfl_teacher_tiny_synthetic.py'

model = dict(
    distill_terms=dict(
        feat=dict(
            type='EAPKDLoss',
            weight_mode='ea',
            ea_granularity='image',
            loss_weight=6.0,
            student_channels=32,
            teacher_channels=64)))
