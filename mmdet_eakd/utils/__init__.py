"""Helpers shared by the tools: offline model building."""
from .offline import (build_offline_model, offline_config,
                      register_modules, strip_pretrained_init,
                      teacher_model_config, write_random_teacher_checkpoint)

__all__ = [
    'build_offline_model', 'offline_config', 'register_modules',
    'strip_pretrained_init', 'teacher_model_config',
    'write_random_teacher_checkpoint'
]
