from ..distill import DISTILL_ARGS, student_model_config
from ..distill.adapters.dense import LOCATIONS
from .dense_distiller import (DenseDistillRTMDet,
                              DenseDistillSingleStageDetector)
from .roi_distiller import RoIDistillTwoStageDetector

__all__ = [
    'DISTILL_ARGS', 'LOCATIONS', 'DenseDistillRTMDet',
    'DenseDistillSingleStageDetector',
    'RoIDistillTwoStageDetector', 'student_model_config'
]
