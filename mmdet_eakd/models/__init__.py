from ..distill import DISTILL_ARGS, student_model_config
from .roi_distiller import RoIDistillTwoStageDetector

__all__ = [
    'DISTILL_ARGS', 'RoIDistillTwoStageDetector', 'student_model_config'
]
