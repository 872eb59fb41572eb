# KD per location from the synthetic RetinaNet teacher to the tiny student, same
# code path as the COCO configs (sigmoid KD: per-class Bernoulli KL, summed
# over the valid locations, divided by the positives). Train the teacher with
#   python tools/train.py configs/synthetic/retinanet_teacher_synthetic.py \
#       --work-dir work_dirs/retinanet_teacher
# and pass --cfg-options model.teacher.checkpoint=work_dirs/retinanet_teacher/epoch_12.pth
_base_ = './retinanet_tiny_synthetic.py'
custom_imports = dict(imports=['mmdet_eakd'], allow_failed_imports=False)

model = dict(
    type='DenseDistillSingleStageDetector',
    teacher=dict(
        config='{{ fileDirname }}/retinanet_teacher_synthetic.py',
        checkpoint='work_dirs/retinanet_teacher/epoch_12.pth'),
    distill_locations='all',
    distill_loss=dict(
        type='SigmoidEAKDLoss',
        weight_mode='none',
        temperature=1.0,
        loss_weight=1.0))
