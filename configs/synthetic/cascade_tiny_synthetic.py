# Plain (student-only) tiny Cascade R-CNN on the synthetic data set: the tiny
# Faster R-CNN's backbone, neck, RPN, RoI extractor and box head sizes, with
# three box stages (IoU 0.5 / 0.6 / 0.7, stage loss weights 1 / 0.5 / 0.25,
# class-agnostic regression) as in mmdet's cascade-rcnn_r50_fpn. The class
# count and the per-stage sampler come from the base config.
_base_ = './frcnn_tiny_synthetic.py'

num_classes = {{_base_.model.roi_head.bbox_head.num_classes}}
stage_sampler = {{_base_.model.train_cfg.rcnn.sampler}}
stage_head = dict(
    type='Shared2FCBBoxHead',
    in_channels=32,
    fc_out_channels=128,
    roi_feat_size=7,
    num_classes=num_classes,
    reg_class_agnostic=True,
    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
stage_assigner = dict(
    type='MaxIoUAssigner', match_low_quality=False, ignore_iof_thr=-1)

model = dict(
    type='CascadeRCNN',
    roi_head=dict(
        _delete_=True,
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor={{_base_.model.roi_head.bbox_roi_extractor}},
        bbox_head=[
            dict(
                stage_head,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0., 0., 0., 0.],
                    target_stds=[0.1, 0.1, 0.2, 0.2])),
            dict(
                stage_head,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0., 0., 0., 0.],
                    target_stds=[0.05, 0.05, 0.1, 0.1])),
            dict(
                stage_head,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0., 0., 0., 0.],
                    target_stds=[0.033, 0.033, 0.067, 0.067])),
        ]),
    train_cfg=dict(rcnn=[
        dict(
            assigner=dict(
                stage_assigner, pos_iou_thr=iou, neg_iou_thr=iou,
                min_pos_iou=iou),
            sampler=stage_sampler,
            pos_weight=-1,
            debug=False) for iou in (0.5, 0.6, 0.7)
    ]))
