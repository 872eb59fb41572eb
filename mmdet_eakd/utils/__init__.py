"""What the tools run, on models and data: offline model building, the
samples training steps distill (:mod:`.distilled_samples`), the distillation
benchmark (:mod:`.benchmark`). Above :mod:`mmdet_eakd.analysis` (pure
statistics) and :mod:`mmdet_eakd.distill` in the package's layers."""
from .offline import (build_offline_model, offline_config,
                      pretrained_checkpoints, register_modules,
                      strip_pretrained_init, teacher_model_config,
                      write_random_teacher_checkpoint)

__all__ = [
    'build_offline_model', 'offline_config', 'pretrained_checkpoints',
    'register_modules', 'strip_pretrained_init', 'teacher_model_config',
    'write_random_teacher_checkpoint'
]
