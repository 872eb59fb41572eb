"""The wheel, as a user installs it: built from the checkout, installed apart
from it (reusing this environment's torch, mmcv and mmdet), then from a
temporary directory a config named by ``mmdet_eakd::`` trains a 2-iteration
synthetic distillation and its checkpoint is evaluated."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import ROOT

#: Local state of a checkout, not part of what the wheel is built from.
CHECKOUT_STATE = ('.git', '.venv', 'data', 'work_dirs', 'build', 'gpu_bundle',
                  '.pytest_cache', '.hypothesis')
KD_SYNTHETIC = ('mmdet_eakd::configs/synthetic/'
                'kd_frcnn_teacher_tiny_synthetic.py')


def _ignore_checkout_state(folder: str, names: List[str]) -> List[str]:
    """``copytree`` filter: the checkout's local state and build leftovers."""
    top = Path(folder) == ROOT
    return [n for n in names
            if (top and n in CHECKOUT_STATE) or n in ('__pycache__', '.mim')
            or n.endswith('.egg-info')]


def run(args: List[str], cwd: Path, env: Dict[str, str],
        timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``args``; fail with its output when it fails."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, (
        f'{" ".join(map(str, args))} exited with {result.returncode}\n'
        f'--- stdout ---\n{result.stdout[-6000:]}\n'
        f'--- stderr ---\n{result.stderr[-6000:]}')
    return result


@pytest.fixture(scope='module')
def installed_wheel(tmp_path_factory):
    """The wheel (built from a copy of the checkout, so that no build output
    lands in it) and the folder it is installed into with --no-deps.

    The installed package is found through PYTHONPATH alone, from a working
    directory outside the checkout, so neither the checkout nor its editable
    install can shadow it.
    """
    tmp = tmp_path_factory.mktemp('wheel')
    source = tmp / 'source'
    shutil.copytree(ROOT, source, ignore=_ignore_checkout_state)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '--wheel-dir', str(tmp / 'dist'),
         str(source)], cwd=tmp, env=env)
    (wheel, ) = (tmp / 'dist').glob('mmdet_eakd-*.whl')
    site = tmp / 'site'
    run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--target',
         str(site), str(wheel)], cwd=tmp, env=env)
    return wheel, site, dict(env, PYTHONPATH=str(site))


def test_the_wheel_carries_every_config(installed_wheel):
    wheel, _, _ = installed_wheel
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = {f'mmdet_eakd/.mim/configs/configs/'
               f'{p.relative_to(ROOT / "configs").as_posix()}'
               for p in (ROOT / 'configs').rglob('*.py')}
    assert shipped <= names
    assert 'mmdet_eakd/.mim/model-index.yml' in names
    assert {'mmdet_eakd/train.py', 'mmdet_eakd/test.py'} <= names
    # the studies' records (teacher weights, run results) stay in the
    # repository: a wheel carries no checkpoint and no study result
    assert not [n for n in names
                if n.endswith('.pth') or '/study/results/' in n]


def test_a_config_named_by_scope_trains_and_tests(installed_wheel, tmp_path):
    _, site, env = installed_wheel
    python = [sys.executable]
    run(python + ['-m', 'mmdet_eakd.datasets.synthetic', '--out', 'data',
                  '--num-train', '8', '--num-val', '4'], tmp_path, env)
    ann = 'data/annotations/instances_val.json'
    (tmp_path / 'user.py').write_text(
        f"_base_ = '{KD_SYNTHETIC}'\n"
        "train_dataloader = dict(dataset=dict(data_root='data/'))\n"
        "val_dataloader = dict(dataset=dict(data_root='data/'))\n"
        f"val_evaluator = dict(ann_file='{ann}')\n"
        'train_cfg = dict(max_epochs=1, val_interval=1)\n'
        'default_hooks = dict(logger=dict(interval=1))\n'
        "model = dict(teacher=dict(checkpoint='teacher.pth'))\n")
    imported = run(python + ['-c', (
        'import mmdet_eakd; from mmengine.config import Config; '
        'from mmdet_eakd.utils import write_random_teacher_checkpoint; '
        "cfg = Config.fromfile('user.py'); "
        "write_random_teacher_checkpoint(cfg, 'teacher.pth'); "
        'print(mmdet_eakd.__file__); print(cfg.model.teacher.config)')],
        tmp_path, env).stdout.split()
    package = site / 'mmdet_eakd'
    assert imported == [
        str(package / '__init__.py'),
        str(package / '.mim' / 'configs' / 'configs' / 'synthetic' /
            'frcnn_teacher_synthetic.py')]

    train = run(python + ['-m', 'mmdet_eakd.train', 'user.py', '--work-dir',
                          'work'], tmp_path, env)
    log = train.stdout + train.stderr
    assert 'Epoch(train) [1][2/2]' in log and 'loss_kd' in log
    assert 'coco/bbox_mAP' in log
    checkpoint = tmp_path / 'work' / 'epoch_1.pth'
    assert checkpoint.is_file()

    run(python + [
        '-m', 'mmdet_eakd.test', KD_SYNTHETIC, str(checkpoint), '--work-dir',
        'test', '--cfg-options', 'test_dataloader.dataset.data_root=data/',
        f'test_evaluator.ann_file={ann}'
    ], tmp_path, env)
    (metrics_file, ) = (tmp_path / 'test').glob('*/*.json')
    metrics = json.loads(metrics_file.read_text())
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0
