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

numpy arrays and scalars pickle as ``numpy.core.multiarray._reconstruct`` /
``.scalar`` under numpy 1 and as ``numpy._core.multiarray.*`` under numpy 2.
Both names are allowlisted, whichever numpy is installed, so a checkpoint
written under either numpy major version resumes under the other.
"""
import pickle
from typing import Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

#: Registered by every ``HistoryBuffer.__init__`` (``_set_default_statistics``).
DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')

#: Where numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) keep the array
#: and scalar reconstructors that pickles name.
NUMPY_MULTIARRAY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray')


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


def mmengine_checkpoint_globals() -> List[Union[object, Tuple[object, str]]]:
    """What checkpoints saved by mmengine's Runner hold besides tensors.

    Returns:
        list: Objects, or ``(object, 'module.name')`` pairs for objects
        allowlisted under a name other than their own, in the format of
        ``torch.serialization.add_safe_globals``.
    """
    scalar_types = {type(np.dtype(name)) for name in (
        'float64', 'float32', 'float16', 'int64', 'int32', 'int16', 'int8',
        'uint8', 'bool')}
    # The functions an array and a numpy scalar reduce to; each is
    # allowlisted under both numpy majors' module paths.
    reconstruct = np.zeros(1).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    multiarray_globals = [
        (function, f'{module}.{function.__name__}')
        for module in NUMPY_MULTIARRAY_MODULES
        for function in (reconstruct, scalar)
    ]
    return [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        *multiarray_globals,
        *sorted(scalar_types, key=lambda t: t.__name__),
        (history_buffer_method, 'builtins.getattr'),
    ]


def allow_mmengine_checkpoints() -> None:
    """Allowlist the globals of :func:`mmengine_checkpoint_globals`."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
