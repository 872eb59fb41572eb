# A heterogeneous pair, PKD only: Faster R-CNN R-101 FPN teacher (mmdet model
# zoo, ms-3x, 41.8 AP) -> RetinaNet R-18 FPN student (student_retinanet_r18.py,
# 31.7 AP in mmdet's metafile). No logit or box term can serve this pair
# (the teacher's RoI head does not classify a RetinaNet's anchors), so the
# teacher runs its extract_feat only: no RPN, no RoI head. Levels are paired
# by stride: the teacher's P2-P6 and the student's P3-P7 share P3-P6 (strides
# 8-64; the student's P7 is not distilled); both FPNs have 256 channels.
# loss_weight 6 as mmrazor's PKD configs (its Mask R-CNN Swin -> RetinaNet
# config pairs the necks' outputs by index and resizes instead).
# EA-PKD is refused for such a pair: its weights need the teacher's
# classification entropies at the student's locations.
_base_ = './_base_/retinanet_r18_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='DenseDistillSingleStageDetector',
    teacher=dict(
        config='mmdet::faster_rcnn/faster-rcnn_r101_fpn_ms-3x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/'
        'faster_rcnn/faster_rcnn_r101_fpn_mstrain_3x_coco/'
        'faster_rcnn_r101_fpn_mstrain_3x_coco_20210524_110822-4d4d2ca8.pth'),
    distill_terms=dict(
        feat=dict(type='EAPKDLoss', weight_mode='none', loss_weight=6.0)))
