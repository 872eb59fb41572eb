"""tools/dist_train.sh and tools/dist_test.sh find the environment: PYTHON
when set, else the checkout's .venv unless another environment is active,
else the python on the PATH. Checked with stand-in interpreters that record
how they were called, in a copy of the launchers (nothing is trained)."""
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from conftest import ROOT

LAUNCHERS = ('dist_run.sh', 'dist_train.sh', 'dist_test.sh')


def _stand_in(path: Path, log: Path) -> Path:
    """An executable that appends ``<its path> <its arguments>`` to ``log``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/usr/bin/env bash\necho "$0 $*" >> {log}\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def checkout(tmp_path) -> Dict[str, Path]:
    """A copy of the launchers in a checkout with a stand-in .venv, a stand-in
    ``python`` on the PATH and another one to name in PYTHON."""
    tools = tmp_path / 'repo' / 'tools'
    tools.mkdir(parents=True)
    for name in LAUNCHERS:
        shutil.copy(ROOT / 'tools' / name, tools / name)
    log = tmp_path / 'calls.log'
    return dict(
        repo=tmp_path / 'repo', log=log,
        venv=_stand_in(tmp_path / 'repo' / '.venv' / 'bin' / 'python', log),
        path=_stand_in(tmp_path / 'bin' / 'python', log),
        explicit=_stand_in(tmp_path / 'other' / 'python3', log))


def launch(checkout: Dict[str, Path], script: str, args: List[str],
           **env: Optional[str]) -> str:
    """Run a launcher of ``checkout``; return the one call it made."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ('PYTHON', 'VIRTUAL_ENV', 'CONDA_PREFIX')}
    full_env['PATH'] = f"{checkout['path'].parent}:{os.environ['PATH']}"
    full_env.update({k: v for k, v in env.items() if v is not None})
    subprocess.run(['bash', str(checkout['repo'] / 'tools' / script), *args],
                   env=full_env, check=True, timeout=60)
    (call, ) = checkout['log'].read_text().splitlines()
    return call


@pytest.mark.parametrize('env, interpreter', [
    (dict(), 'venv'),
    (dict(PYTHON='explicit'), 'explicit'),
    (dict(PYTHON='explicit', VIRTUAL_ENV='/some/venv'), 'explicit'),
    (dict(VIRTUAL_ENV='/some/venv'), 'path'),
    (dict(CONDA_PREFIX='/some/conda'), 'path'),
])
def test_dist_train_picks_the_interpreter(checkout, env, interpreter):
    env = {k: str(checkout[v]) if k == 'PYTHON' else v for k, v in env.items()}
    call = launch(checkout, 'dist_train.sh', ['cfg.py', '2', '--amp'], **env)
    tools = checkout['repo'] / 'tools'
    assert call.startswith(
        f'{checkout[interpreter]} -m torch.distributed.run ')
    assert '--nproc_per_node=2' in call
    assert call.endswith(f'{tools}/train.py cfg.py --launcher pytorch --amp')


def test_without_a_venv_the_path_python_runs(checkout):
    shutil.rmtree(checkout['repo'] / '.venv')
    call = launch(checkout, 'dist_train.sh', ['cfg.py', '1'])
    assert call.startswith(f"{checkout['path']} -m torch.distributed.run ")


def test_dist_test_uses_the_venv(checkout):
    call = launch(checkout, 'dist_test.sh', ['cfg.py', 'epoch_1.pth', '2'])
    tools = checkout['repo'] / 'tools'
    assert call.startswith(f"{checkout['venv']} -m torch.distributed.run ")
    assert call.endswith(
        f'{tools}/test.py cfg.py epoch_1.pth --launcher pytorch')


END_RUN = '''
import atexit, sys
import torch.distributed as dist
from mmdet_eakd.engine import end_distributed_run
end_distributed_run()  # no process group: returns
atexit.register(lambda: print('finalised', flush=True))
dist.init_process_group('gloo', init_method='tcp://127.0.0.1:{port}',
                        rank=0, world_size=1)
print('trained', flush=True)
sys.stderr.write('unflushed')
end_distributed_run()
print('after the run')
'''


def test_a_cpu_distributed_rank_ends_after_destroying_its_group():
    """end_distributed_run destroys the group, flushes, and leaves with exit
    code 0 before interpreter finalisation (where gloo's threads abort a CPU
    rank intermittently): atexit handlers and later code do not run."""
    import sys

    from conftest import free_port
    result = subprocess.run(
        [sys.executable, '-c', END_RUN.format(port=free_port())], cwd=ROOT,
        capture_output=True, text=True, timeout=120,
        env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['trained']
    assert result.stderr.endswith('unflushed')
