# KD per location: RTMDet-x teacher (mmdet model zoo, 300 epochs, 52.6 box
# AP) -> RTMDet-s student (mmdet's own config: 300 epochs, EMA, pipeline
# switch for the last 20 epochs; 44.5 box AP). Same KD as kd_rtmdet_l_tiny.py.
_base_ = 'mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='DenseDistillRTMDet',
    teacher=dict(
        config='mmdet::rtmdet/rtmdet_x_8xb32-300e_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v3.0/rtmdet/'
        'rtmdet_x_8xb32-300e_coco/'
        'rtmdet_x_8xb32-300e_coco_20220715_230555-cc79b9ae.pth'),
    distill_locations='all',
    distill_loss=dict(
        type='SigmoidEAKDLoss',
        weight_mode='none',
        temperature=1.0,
        loss_weight=1.0))
