from .checkpoint import allow_mmengine_checkpoints, mmengine_checkpoint_globals
from .hooks import TorchSafeCheckpointHook
from .mmdet_tools import load_mmdet_tool, mmdet_tool_candidates
from .runner import EAKDRunner, StudentRunner, destroy_process_group

__all__ = [
    'allow_mmengine_checkpoints', 'mmengine_checkpoint_globals',
    'load_mmdet_tool', 'mmdet_tool_candidates', 'EAKDRunner',
    'StudentRunner', 'TorchSafeCheckpointHook', 'destroy_process_group'
]
