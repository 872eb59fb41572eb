# KD + LD per location from the synthetic GFL teacher to the tiny student,
# the code path of configs/kd_ld_gfl_r101_r18.py: two named terms, cls
# (sigmoid KD over the valid locations, divided by the positives) and box
# (LD of the box-edge distributions at T = 10, loss_weight 0.25, at the
# positives, weighted by the student's top class score, summed). The
# teacher checkpoint is what `python tools/study.py --regime gfl` trains;
# elsewhere pass --cfg-options model.teacher.checkpoint=PATH.
_base_ = './kd_gfl_teacher_tiny_synthetic.py'

model = dict(
    distill_loss=None,  # replaced by the named terms
    distill_terms=dict(
        cls=dict(
            type='SigmoidEAKDLoss',
            weight_mode='none',
            temperature=1.0,
            loss_weight=1.0),
        box=dict(
            type='EALDLoss',
            weight_mode='none',
            temperature=10.0,
            loss_weight=0.25,
            reg_max=16)))
