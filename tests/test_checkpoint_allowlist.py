"""The weights_only allowlist reads mmengine checkpoints and nothing more."""
import io
import pickle

import pytest
import numpy as np
import torch
from mmengine.logging import HistoryBuffer, MessageHub

import mmdet_eakd  # noqa: F401  (installs the allowlist)


def _roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # weights_only=True by default on torch >= 2.6


def test_message_hub_state_loads_with_weights_only():
    hub = MessageHub.get_instance('allowlist_test')
    for value in (0.5, 0.25, 0.125):
        hub.update_scalar('train/loss', value)
    hub.update_info('epoch', 3)
    state = _roundtrip({'message_hub': hub.state_dict(),
                        'weights': torch.ones(2)})
    buffer = state['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.statistics('mean') == pytest.approx(0.875 / 3)
    assert buffer.min() == 0.125
    assert state['message_hub']['runtime_info']['epoch'] == 3


class _GetattrPayload:
    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return (getattr, (self.owner, self.name))


@pytest.mark.parametrize('owner, name', [
    (HistoryBuffer, '__init__'),
    (HistoryBuffer, 'update'),
    (np.ndarray, 'tofile'),
])
def test_other_getattr_is_refused(owner, name):
    with pytest.raises(pickle.UnpicklingError, match='Refusing getattr|'
                       'Unsupported global'):
        _roundtrip({'x': _GetattrPayload(owner, name)})


class _Arbitrary:
    pass


def test_arbitrary_objects_are_still_refused():
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global'):
        _roundtrip({'x': _Arbitrary()})
