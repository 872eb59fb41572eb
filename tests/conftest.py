"""Shared fixtures: the repository, a small synthetic data set, tool runners."""
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_CONFIGS = ROOT / 'configs' / 'synthetic'


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


def python_tool(name: str) -> List[str]:
    """Command prefix that runs ``tools/<name>`` with this interpreter."""
    return [sys.executable, str(ROOT / 'tools' / name)]
