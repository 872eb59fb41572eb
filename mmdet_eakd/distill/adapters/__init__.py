"""Head-family adapters; importing them registers them (see :mod:`.base`)."""
from .base import (DistillAdapter, GroupCapture, LogitGroup,
                   UnsupportedPairError, adapter_for, call_arguments,
                   register_adapter, registered_adapters)
from .cascade_roi import CascadeRoIAdapter
from .dense import DenseAlignmentError, DenseHeadAdapter, DenseSamples
from .roi_common import RoISamples
from .rtmdet import RTMDetAdapter
from .standard_roi import StandardRoIAdapter

__all__ = [
    'DistillAdapter', 'GroupCapture', 'LogitGroup', 'UnsupportedPairError',
    'adapter_for', 'call_arguments', 'register_adapter',
    'registered_adapters', 'CascadeRoIAdapter',
    'DenseAlignmentError', 'DenseHeadAdapter', 'DenseSamples',
    'RoISamples', 'RTMDetAdapter', 'StandardRoIAdapter'
]
