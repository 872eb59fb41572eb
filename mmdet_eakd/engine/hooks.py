"""Checkpoints that plain ``torch.load(weights_only=True)`` can read, and
whose ``state_dict`` is the plain student's."""
from typing import Any, Dict

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from mmdet.registry import HOOKS
from ..distill.core import DISTILL_MODULES

_TENSOR_BUFFER = '__history_buffer__'


def history_buffer_to_tensors(buffer: HistoryBuffer) -> Dict[str, Any]:
    """A ``HistoryBuffer`` as tensors and ints only (torch-safe to pickle)."""
    log_history, count_history = buffer.data
    return {
        _TENSOR_BUFFER: True,
        'log_history': torch.from_numpy(np.asarray(log_history, np.float64)),
        'count_history': torch.from_numpy(np.asarray(count_history,
                                                     np.int64)),
        'max_length': int(buffer.max_length),
    }


def history_buffer_from_tensors(state: Dict[str, Any]) -> HistoryBuffer:
    """Inverse of :func:`history_buffer_to_tensors`."""
    return HistoryBuffer(
        state['log_history'].numpy().tolist(),
        state['count_history'].numpy().tolist(),
        max_length=state['max_length'])


@HOOKS.register_module()
class TorchSafeCheckpointHook(Hook):
    """Save the ``MessageHub`` state without numpy or mmengine objects.

    mmengine writes ``HistoryBuffer`` objects (numpy arrays, method
    references) and numpy scalars (``eta``) into every checkpoint, which
    ``torch.load`` refuses on torch >= 2.6 unless told ``weights_only=False``.
    This hook stores the buffers as tensors (and numpy values as Python
    numbers / lists) before saving and restores the buffers after loading,
    so the checkpoints of this
    package's tools load with plain torch: mmdet's own ``tools/test.py`` and
    ``DetInferencer`` read them unchanged. :class:`EAKDRunner` registers it.
    """

    priority = 'VERY_LOW'  # convert after every other hook edited the dict

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        hub = checkpoint.get('message_hub', {})
        scalars = hub.get('log_scalars', {})
        for key, value in scalars.items():
            if isinstance(value, HistoryBuffer):
                scalars[key] = history_buffer_to_tensors(value)
        # e.g. 'eta' is a numpy float; the value is kept as a Python number
        info = hub.get('runtime_info', {})
        for key, value in info.items():
            if isinstance(value, (np.generic, np.ndarray)):
                info[key] = value.tolist()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        scalars = checkpoint.get('message_hub', {}).get('log_scalars', {})
        for key, value in scalars.items():
            if isinstance(value, dict) and value.get(_TENSOR_BUFFER):
                scalars[key] = history_buffer_from_tensors(value)


#: Where :class:`DistillStateCheckpointHook` keeps the distillation's own
#: parameters in a checkpoint, beside the plain student's ``state_dict``.
DISTILL_STATE_DICT = 'distill_state_dict'


@HOOKS.register_module()
class DistillStateCheckpointHook(Hook):
    """Keep the distillation's own parameters out of the student's weights.

    A distiller's loss modules may be trained with the student (e.g. a
    feature term's 1x1 connector, ``distill_terms.<name>.connector``). They
    belong to the distillation, not the detector: before a checkpoint is
    saved, their entries move from ``state_dict`` to
    ``checkpoint['distill_state_dict']``, so ``state_dict`` is the plain
    student's and loads strictly into its mmdet config (mmdet's
    ``tools/test.py``, ``DetInferencer``); after a checkpoint is loaded
    (resume) they move back, so the distiller resumes with them. Their
    optimizer state stays in the optimizer's. :class:`EAKDRunner`
    registers it.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('state_dict', {})
        prefixes = tuple(f'{name}.' for name in DISTILL_MODULES)
        moved = {
            key: state.pop(key)
            for key in list(state) if key.startswith(prefixes)
        }
        if moved:
            checkpoint[DISTILL_STATE_DICT] = moved

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        moved = checkpoint.pop(DISTILL_STATE_DICT, None)
        if moved:
            checkpoint.setdefault('state_dict', {}).update(moved)
