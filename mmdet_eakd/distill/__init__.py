"""Distillation core (teacher, inputs, KD loss) and head-family adapters."""
from .adapters import (DistillAdapter, GroupCapture, LogitGroup, RoISamples,
                       UnsupportedPairError, adapter_for, register_adapter)
from .core import (DISTILL_ARGS, KD_LOSS, TEACHER_UNUSABLE, DistillerMixin,
                   DistillInputs, is_distill_config, is_kd_loss_key,
                   student_model_config)
from .teacher import (InputFormat, build_teacher, input_format,
                      load_teacher_config, registered_class,
                      renormalize_for_teacher, same_input_format)
from .terms import LEGACY_TERM, DistillTerm, term_configs

__all__ = [
    'DistillAdapter', 'GroupCapture', 'LogitGroup', 'RoISamples',
    'UnsupportedPairError', 'adapter_for', 'register_adapter', 'DISTILL_ARGS',
    'KD_LOSS', 'TEACHER_UNUSABLE', 'DistillerMixin', 'DistillInputs',
    'is_distill_config', 'is_kd_loss_key', 'registered_class',
    'student_model_config', 'InputFormat', 'build_teacher', 'input_format',
    'load_teacher_config', 'renormalize_for_teacher', 'same_input_format',
    'LEGACY_TERM', 'DistillTerm', 'term_configs'
]
