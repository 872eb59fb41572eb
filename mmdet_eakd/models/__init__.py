from .roi_distiller import (DISTILL_ARGS, RoIDistillTwoStageDetector,
                            student_model_config)
from .teacher import build_teacher, renormalize_for_teacher

__all__ = [
    'DISTILL_ARGS', 'RoIDistillTwoStageDetector', 'student_model_config',
    'build_teacher', 'renormalize_for_teacher'
]
