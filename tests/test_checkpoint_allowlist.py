"""Checkpoint loading on torch >= 2.6: the weights_only allowlist reads
mmengine checkpoints and nothing more; the torch-safe hook round-trips."""
import io
import pickle

import numpy as np
import pytest
import torch
from conftest import NUMPY_MULTIARRAY, pickled_globals, with_numpy_module
from mmengine.logging import HistoryBuffer, MessageHub

import mmdet_eakd  # noqa: F401  (installs the allowlist)
from mmdet_eakd.engine import TorchSafeCheckpointHook


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


def test_torch_safe_hook_round_trips_message_hub():
    hub = MessageHub.get_instance('safe_hook_test')
    for value in (3.0, 1.0, 2.0):
        hub.update_scalar('train/loss', value, count=2)
    hub.update_info('eta', np.float64(12.5))
    checkpoint = {'message_hub': hub.state_dict(), 'meta': {}}
    hook = TorchSafeCheckpointHook()
    hook.before_save_checkpoint(None, checkpoint)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    # plain torch with only torch's default safe globals
    with torch.serialization.safe_globals([]):
        loaded = torch.load(buffer, weights_only=True)
    assert loaded['message_hub']['runtime_info']['eta'] == 12.5
    hook.after_load_checkpoint(None, loaded)
    restored = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(restored, HistoryBuffer)
    logs, counts = restored.data
    assert logs.tolist() == [3.0, 1.0, 2.0] and counts.tolist() == [2, 2, 2]
    assert restored.mean() == pytest.approx(6.0 / 6)  # sum(logs) / sum(counts)


@pytest.mark.parametrize('module', NUMPY_MULTIARRAY)
def test_numpy_1_and_2_module_paths_load(tmp_path, module):
    """A checkpoint whose pickle names numpy 1's (numpy.core) or numpy 2's
    (numpy._core) multiarray loads with weights_only=True, whichever numpy is
    installed (the file is crafted, since only one numpy is installed)."""
    hub = MessageHub.get_instance(f'numpy_paths_{module}')
    for value in (0.5, 0.25):
        hub.update_scalar('train/loss', value)
    hub.update_info('eta', np.float64(7.5))
    written = tmp_path / 'written.pth'
    torch.save({'message_hub': hub.state_dict(), 'w': torch.ones(2)}, written)
    crafted = with_numpy_module(written, module, tmp_path / 'crafted.pth')
    names = pickled_globals(crafted)
    assert {f'{module} _reconstruct', f'{module} scalar'} <= names
    other = next(m for m in NUMPY_MULTIARRAY if m != module)
    assert not any(name.startswith(other) for name in names)
    # the installed numpy resolves both paths (numpy 1.26 ships numpy._core
    # shims, numpy 2 keeps numpy.core): the crafted file is a valid pickle
    unrestricted = torch.load(crafted, weights_only=False)
    loaded = torch.load(crafted)  # weights_only=True: the allowlist
    for state in (unrestricted, loaded):
        buffer = state['message_hub']['log_scalars']['train/loss']
        assert buffer.data[0].tolist() == [0.5, 0.25]
        assert state['message_hub']['runtime_info']['eta'] == 7.5
