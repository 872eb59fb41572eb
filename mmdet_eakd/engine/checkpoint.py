"""Let ``torch.load(weights_only=True)`` read mmengine's own checkpoints.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, and mmengine
0.10.7 calls it without the argument, so ``--resume`` fails with
``UnpicklingError``: a training checkpoint holds the ``MessageHub`` state
(``HistoryBuffer`` objects with numpy arrays) besides tensors. Instead of turning
the safety check off, this allowlists exactly what mmengine writes there; any
other pickled object still makes ``torch.load`` fail.

``HistoryBuffer.__getstate__`` also pickles its statistics methods
(``HistoryBuffer.min`` ...), which protocol 2 writes as
``getattr(HistoryBuffer, 'min')``. ``builtins.getattr`` itself is not
allowlisted: a restricted stand-in that resolves only those methods is.
"""
import pickle
from typing import Callable, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

#: Registered by every ``HistoryBuffer.__init__`` (``_set_default_statistics``).
DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_method(owner: type, name: str) -> Callable:
    """``getattr`` limited to the statistics methods of ``HistoryBuffer``.

    Args:
        owner (type): Must be :class:`HistoryBuffer`.
        name (str): A statistics method name (``min``, ``max``, ``current``,
            ``mean`` or one registered with ``register_statistics``).

    Returns:
        Callable: ``getattr(HistoryBuffer, name)``.
    """
    if (owner is HistoryBuffer and isinstance(name, str)
            and (name in DEFAULT_STATISTICS
                 or name in HistoryBuffer._statistics_methods)
            and callable(getattr(HistoryBuffer, name, None))):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Refusing getattr({owner!r}, {name!r}) in a checkpoint: only '
        'HistoryBuffer statistics methods are allowed.')


def mmengine_checkpoint_globals() -> List[object]:
    """What checkpoints saved by mmengine's Runner hold besides tensors."""
    scalar_types = {type(np.dtype(name)) for name in (
        'float64', 'float32', 'float16', 'int64', 'int32', 'int16', 'int8',
        'uint8', 'bool')}
    return [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        np.core.multiarray._reconstruct,
        np.core.multiarray.scalar,
        *sorted(scalar_types, key=lambda t: t.__name__),
        (history_buffer_method, 'builtins.getattr'),
    ]


def allow_mmengine_checkpoints() -> None:
    """Allowlist the globals of :func:`mmengine_checkpoint_globals`."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
