# KD + LD per location, two named terms: GFL R-101 FPN teacher (mmdet model
# zoo, ms-2x, 44.7 AP) -> GFL R-18 FPN student.
# - cls: sigmoid KD of the classification scores, as in kd_gfl_r101_r18.py
#   (all valid locations, normalised by the positives);
# - box: LD of the box-edge distributions (EALDLoss, weight_mode='none'
#   is plain LD).
# Shared with mmdet's ld/ld_r18-gflv1-r101_fpn_1x_coco.py (36.5 AP): the
# teacher config and checkpoint, the student (R-18 FPN from torchvision,
# P3-P7; GFL head with QFL, DFL 0.25, GIoU 2.0, reg_max 16; ATSS topk 9), the
# data (COCO, single scale 1333 x 800, flip), the 1x schedule (SGD lr 0.01,
# 16 images per step), and LD itself: T = 10, loss_weight 0.25, the KL of
# each edge averaged over its 17 bins, at the positive locations, weighted by
# the student's top class score and summed over them, as LDHead's loss_ld
# (see README, "Several terms: KD + LD"). Not in mmdet's config: the cls term.
# Logged as loss_kd_cls, loss_kd_box, ea_weight_cls, ea_weight_box, ...
_base_ = './kd_gfl_r101_r18.py'

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
