# A shrunk RetinaNet FPN for 160 px images on a CPU: ResNet-18 layout with 16
# base channels, 32 FPN channels, two 32-wide stacked convs per branch. The
# FPN keeps P2-P5 (strides 4-32) and 3 anchors per location (one scale, three
# ratios, 16-128 px), for the synthetic set's 10-70 px objects. Random
# initialisation (no downloads).
_base_ = './tiny_backbone.py'

model = dict(
    type='RetinaNet',
    neck=dict(start_level=0, num_outs=4),
    bbox_head=dict(
        type='RetinaHead',
        num_classes=8,
        in_channels=32,
        stacked_convs=2,
        feat_channels=32,
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=4,
            scales_per_octave=1,
            ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.4,
            min_pos_iou=0,
            ignore_iof_thr=-1),
        sampler=dict(type='PseudoSampler'),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=50))
