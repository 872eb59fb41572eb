from .checkpoint import allow_mmengine_checkpoints, mmengine_checkpoint_globals
from .mmdet_tools import load_mmdet_tool
from .runner import EAKDRunner, StudentRunner

__all__ = [
    'allow_mmengine_checkpoints', 'mmengine_checkpoint_globals',
    'load_mmdet_tool', 'EAKDRunner', 'StudentRunner'
]
