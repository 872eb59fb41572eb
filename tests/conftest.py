"""Shared fixtures: the repository, a small synthetic data set, tool runners."""
import importlib.util
import json
import os
import socket
import pickletools
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_CONFIGS = ROOT / 'configs' / 'synthetic'
TINY = SYNTHETIC_CONFIGS / 'frcnn_tiny_synthetic.py'


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic COCO data set shared by the tests of a session."""
    from mmdet_eakd.datasets import generate_synthetic_coco
    root = tmp_path_factory.mktemp('synthetic')
    generate_synthetic_coco(root, num_train=24, num_val=12, seed=0)
    return root


def data_overrides(data_root: Path, batch_size: int = 4) -> str:
    """Config text that points a synthetic config at ``data_root``."""
    root = f'{data_root}/'
    ann = f'{root}annotations/instances_val.json'
    return (f'train_dataloader = dict(batch_size={batch_size}, '
            f"dataset=dict(data_root='{root}'))\n"
            f"val_dataloader = dict(dataset=dict(data_root='{root}'))\n"
            f"test_dataloader = dict(dataset=dict(data_root='{root}'))\n"
            f"val_evaluator = dict(ann_file='{ann}')\n"
            f"test_evaluator = dict(ann_file='{ann}')\n")


@pytest.fixture
def write_config(tmp_path) -> Callable[..., Path]:
    """Write a config that inherits ``base`` and appends ``body``."""

    def write(base: Path, body: str = '', name: str = 'cfg.py') -> Path:
        path = tmp_path / name
        path.write_text(f"_base_ = '{base}'\n{body}")
        return path

    return write


def free_port() -> str:
    """A TCP port free on this machine now, for a distributed rendezvous.

    Fixed ports collide when two test runs (or other jobs) share a machine.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


def run_tool(args: List[str], cwd: Path, env: Dict[str, str] = None,
             timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command of the repository with this interpreter; fail loudly."""
    full_env = dict(os.environ)
    full_env['PYTHONPATH'] = f"{ROOT}:{full_env.get('PYTHONPATH', '')}"
    full_env['PYTHON'] = sys.executable
    full_env.update(env or {})
    result = subprocess.run(
        args, cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(
            f'{" ".join(map(str, args))} exited with {result.returncode}\n'
            f'--- stdout ---\n{result.stdout[-6000:]}\n'
            f'--- stderr ---\n{result.stderr[-6000:]}')
    return result


def load_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` as a module (without running it)."""
    spec = importlib.util.spec_from_file_location(
        name, ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_tool(name: str) -> List[str]:
    """Command prefix that runs ``tools/<name>`` with this interpreter."""
    return [sys.executable, str(ROOT / 'tools' / name)]


def read_test_metrics(work_dir: Path) -> list:
    """Metrics that tools/test.py logged as JSON under ``work_dir``."""
    files = sorted(work_dir.glob('*/*.json'))
    assert files, f'no metrics json under {work_dir}'
    return [json.loads(line) for path in files
            for line in path.read_text().splitlines()]


def read_scalars(work_dir: Path) -> list:
    """Records of every training run's ``vis_data/scalars.json`` under it."""
    files = sorted(work_dir.glob('*/vis_data/scalars.json'))
    assert files, f'no scalars.json under {work_dir}'
    records = []
    for path in files:
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return records


@pytest.fixture(scope='session')
def trained_tiny(tmp_path_factory, synthetic_root):
    """The tiny plain Faster R-CNN trained 2 epochs by tools/train.py."""
    tmp = tmp_path_factory.mktemp('tiny')
    cfg = tmp / 'tiny.py'
    cfg.write_text(f"_base_ = '{TINY}'\n{data_overrides(synthetic_root)}"
                   'train_cfg = dict(max_epochs=2, val_interval=2)\n'
                   "param_scheduler = [dict(type='MultiStepLR', by_epoch=True, "
                   'begin=0, end=3, milestones=[1, 2], gamma=0.1)]\n'
                   'default_hooks = dict(logger=dict(interval=1), '
                   'checkpoint=dict(interval=1))\n'
                   'randomness = dict(seed=0)\n')
    work_dir = tmp / 'work'
    run_tool(python_tool('train.py') + [str(cfg), '--work-dir', str(work_dir)],
             cwd=ROOT)
    return cfg, work_dir


#: Where numpy 1 and numpy 2 pickles name ``_reconstruct`` and ``scalar``.
NUMPY_MULTIARRAY = ('numpy.core.multiarray', 'numpy._core.multiarray')


def pickled_globals(checkpoint: Path) -> Set[str]:
    """``module name`` of every global a torch checkpoint's pickle names."""
    with zipfile.ZipFile(checkpoint) as archive:
        name = next(n for n in archive.namelist() if n.endswith('/data.pkl'))
        data = archive.read(name)
    return {arg for op, arg, _ in pickletools.genops(data)
            if op.name == 'GLOBAL'}


def with_numpy_module(checkpoint: Path, module: str, out: Path) -> Path:
    """Copy a torch checkpoint, its pickle naming numpy's multiarray as
    ``module`` (``numpy.core.multiarray``: as numpy 1 writes it;
    ``numpy._core.multiarray``: as numpy 2 does), whichever numpy wrote it.

    torch pickles with protocol 2, whose ``GLOBAL`` opcode holds the module
    as a newline-terminated text, so it can be rewritten in place.
    """
    def rewrite(data: bytes) -> bytes:
        parts, last = [], 0
        for op, arg, pos in pickletools.genops(data):
            if op.name == 'GLOBAL' and arg.split(' ')[0] in NUMPY_MULTIARRAY:
                old_module, name = arg.split(' ')
                parts += [data[last:pos], f'c{module}\n{name}\n'.encode()]
                last = pos + len(f'c{old_module}\n{name}\n')
        return b''.join(parts + [data[last:]])

    with zipfile.ZipFile(checkpoint) as src, zipfile.ZipFile(
            out, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith('/data.pkl'):
                data = rewrite(data)
            dst.writestr(info, data)
    return out


def record_loss_calls(loss) -> List[Dict[str, object]]:
    """Record what the distiller passes to its loss module: one dict
    (``student``, ``teacher``, ``labels``) per ``loss_and_stats`` call, in
    call order (a group's samples, invalid ones masked)."""
    calls: List[Dict[str, object]] = []
    original = loss.loss_and_stats

    def recording(student, teacher, labels=None, **kwargs):
        calls.append(dict(student=student, teacher=teacher, labels=labels))
        return original(student, teacher, labels, **kwargs)

    loss.loss_and_stats = recording
    return calls
