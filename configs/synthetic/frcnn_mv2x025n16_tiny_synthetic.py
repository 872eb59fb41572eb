# Candidate MobileNetV2 student of the converged study (see README,
# "Evidence"): the quarter-width MobileNetV2 of frcnn_mv2x025_tiny_synthetic.py
# with the FPN, RPN and RoI widths halved (16 channels, a 64-wide box head).
# At 32 FPN channels the quarter-width student ends 5.8 AP below the
# 32-channel teacher on the 60-epoch schedule; the study asks 8-15.
_base_ = './frcnn_mv2x025_tiny_synthetic.py'

model = dict(
    neck=dict(out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=64)))
