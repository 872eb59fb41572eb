"""What a user reads: one message for an unreachable checkpoint URL, and no
pkg_resources deprecation warning (but every other warning) from the tools."""
import os
import subprocess
from pathlib import Path
from urllib.error import URLError

import mmengine.runner.checkpoint
import pytest
import torch
from conftest import ROOT, SYNTHETIC_CONFIGS, TINY, data_overrides, python_tool
from mmengine.runner import CheckpointLoader

from mmdet_eakd.downloads import CheckpointDownloadError
from mmdet_eakd.distill.teacher import load_teacher_checkpoint

#: Nothing listens on port 1: the connection is refused at once, offline or not.
UNREACHABLE = 'http://127.0.0.1:1/eakd-test'
PROBE_WARNING = 'eakd probe: a warning of the user must still show'


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache, so nothing is found there."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints'


def test_unreachable_url_names_the_cache_file(torch_home):
    url = f'{UNREACHABLE}/weights.pth'
    with pytest.raises(CheckpointDownloadError) as info:
        CheckpointLoader.load_checkpoint(url, map_location='cpu')
    message = str(info.value)
    assert f'The checkpoint {url} could not be fetched' in message
    assert 'Connection refused' in message
    assert str(torch_home / 'weights.pth') in message
    assert '--cfg-options model.backbone.init_cfg.checkpoint=PATH' in message
    assert isinstance(info.value.__cause__, URLError)


def test_unreachable_teacher_url_names_the_config_key(torch_home):
    url = f'{UNREACHABLE}/teacher.pth'
    with pytest.raises(CheckpointDownloadError) as info:
        load_teacher_checkpoint(torch.nn.Linear(2, 2), url)
    message = str(info.value)
    assert url in message
    assert '--cfg-options model.teacher.checkpoint=PATH' in message
    assert str(torch_home / 'teacher.pth') in message


def test_named_checkpoints_fail_the_same_way(torch_home, monkeypatch):
    """open-mmlab:// names (e.g. the MobileNetV2 student's backbone) resolve
    to a URL; a failed download of it gives the same clear error."""

    def offline(*args, **kwargs):
        raise URLError('[Errno -3] Temporary failure in name resolution')

    monkeypatch.setattr(mmengine.runner.checkpoint, 'load_url', offline)
    with pytest.raises(CheckpointDownloadError) as info:
        CheckpointLoader.load_checkpoint('open-mmlab://mmdet/mobilenet_v2')
    message = str(info.value)
    assert ('open-mmlab://mmdet/mobilenet_v2 could not be fetched: '
            '<urlopen error [Errno -3] Temporary failure') in message
    assert f'to {torch_home} here' in message


def _train_offline(tmp_path: Path, base: Path, body: str,
                   cfg_options: tuple = ()) -> subprocess.CompletedProcess:
    """tools/train.py with a config that also imports a module warning at
    import; returns the finished process (expected to fail)."""
    (tmp_path / 'warning_probe.py').write_text(
        f'import warnings\nwarnings.warn({PROBE_WARNING!r}, UserWarning)\n')
    cfg = tmp_path / 'offline.py'
    cfg.write_text(
        f"_base_ = '{base}'\n{body}"
        "custom_imports = dict(imports=['mmdet_eakd', 'warning_probe'], "
        'allow_failed_imports=False)\n')
    env = dict(PYTHONPATH=f'{ROOT}:{tmp_path}',
               TORCH_HOME=str(tmp_path / 'torch_home'))
    return subprocess.run(
        python_tool('train.py') +
        [str(cfg), '--work-dir', str(tmp_path / 'work')] +
        (['--cfg-options', *cfg_options] if cfg_options else []),
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, **env})


@pytest.fixture(scope='module')
def unreachable_teacher_run(tmp_path_factory, synthetic_root):
    """`tools/train.py` on the EA-KD config with a teacher URL that cannot be
    fetched (as `configs/eakd_frcnn_r101_r18.py` offline)."""
    tmp = tmp_path_factory.mktemp('unreachable_teacher')
    return tmp, _train_offline(
        tmp, SYNTHETIC_CONFIGS / 'eakd_frcnn_teacher_tiny_synthetic.py',
        data_overrides(synthetic_root),
        (f'model.teacher.checkpoint={UNREACHABLE}/teacher.pth', ))


def test_unreachable_teacher_ends_in_one_message(unreachable_teacher_run):
    tmp, result = unreachable_teacher_run
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    assert result.stderr.count('error:') == 1
    error = result.stderr[result.stderr.index('error:'):]
    assert f'{UNREACHABLE}/teacher.pth could not be fetched' in error
    assert '--cfg-options model.teacher.checkpoint=PATH' in error
    hub_file = tmp / 'torch_home' / 'hub' / 'checkpoints' / 'teacher.pth'
    assert str(hub_file) in error


def test_tool_stderr_has_no_pkg_resources_warning(unreachable_teacher_run):
    """The tool filters exactly mmengine's pkg_resources deprecation warning;
    a warning of the user's own code still shows."""
    _, result = unreachable_teacher_run
    assert 'pkg_resources' not in result.stderr
    assert PROBE_WARNING in result.stderr


def test_unreachable_backbone_weights_end_in_one_message(tmp_path,
                                                         synthetic_root):
    """The student's Pretrained backbone (init_cfg) fails the same way."""
    url = f'{UNREACHABLE}/backbone.pth'
    result = _train_offline(
        tmp_path, TINY, data_overrides(synthetic_root) +
        'model = dict(backbone=dict(init_cfg=dict(_delete_=True, '
        "type='Pretrained', "
        f"checkpoint='{url}')))\n")
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    assert f'error: The checkpoint {url} could not be fetched' in result.stderr
    assert '--cfg-options model.backbone.init_cfg.checkpoint=PATH' in (
        result.stderr)
