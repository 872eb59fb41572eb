from .checkpoint import allow_mmengine_checkpoints, mmengine_checkpoint_globals
from .hooks import (DistillStateCheckpointHook, MainProcessLoggerHook,
                    TorchSafeCheckpointHook)
from .mmdet_tools import (RunnerGate, bind_runner, load_mmdet_tool,
                          mmdet_tool_candidates, run_mmdet_tool,
                          tool_runner_class)
from .runner import EAKDRunner, StudentRunner, end_distributed_run
from .threads import cpu_thread_share, share_cpu_threads

__all__ = [
    'allow_mmengine_checkpoints', 'mmengine_checkpoint_globals',
    'RunnerGate', 'bind_runner', 'load_mmdet_tool', 'mmdet_tool_candidates',
    'run_mmdet_tool', 'tool_runner_class', 'EAKDRunner',
    'StudentRunner', 'TorchSafeCheckpointHook', 'DistillStateCheckpointHook',
    'MainProcessLoggerHook', 'end_distributed_run',
    'cpu_thread_share', 'share_cpu_threads'
]
