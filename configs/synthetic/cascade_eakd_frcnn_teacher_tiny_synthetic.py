# EA-KD from the synthetic Faster R-CNN teacher (the demo's) to the tiny
# Cascade R-CNN: the teacher's one box head classifies every stage's RoIs.
_base_ = './cascade_eakd_teacher_tiny_synthetic.py'

model = dict(
    teacher=dict(
        config='{{ fileDirname }}/frcnn_teacher_synthetic.py',
        checkpoint='work_dirs/demo/teacher/teacher.pth'))
