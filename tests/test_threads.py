"""CPU distributed runs: each process gets its share of its machine's cores,
unless the user set the thread count."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY, data_overrides, free_port

from mmdet_eakd.engine import cpu_thread_share
from mmdet_eakd.engine.threads import (LAUNCHER_DEFAULT_THREADS,
                                       threads_set_by_user, usable_cores)

ALL = frozenset(range(8))


@pytest.mark.parametrize('processes, rank, threads', [
    ([('a', ALL)], 0, 8),                          # alone on its machine
    ([('a', ALL), ('a', ALL)], 1, 4),              # two "nodes", one machine
    ([('a', ALL), ('b', ALL)], 0, 8),              # two machines
    ([('a', ALL)] * 3, 2, 2),                      # 8 // 3
    ([('a', frozenset({0}))] * 4, 0, 1),           # never below one
    ([('a', frozenset(range(4))), ('a', frozenset(range(4, 8)))], 0, 4),
])
def test_cpu_thread_share(processes, rank, threads):
    """Processes bound to disjoint cores (e.g. by taskset) do not share."""
    assert cpu_thread_share(processes, rank) == threads


@pytest.mark.parametrize('env, by_user', [
    ({}, False),
    ({'OMP_NUM_THREADS': '3'}, True),
    # torchrun's default of 1 with several processes; the user set nothing
    ({'OMP_NUM_THREADS': '1', LAUNCHER_DEFAULT_THREADS: '1'}, False),
    ({'MKL_NUM_THREADS': '2'}, True),
])
def test_threads_set_by_user(monkeypatch, env, by_user):
    for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS',
                 LAUNCHER_DEFAULT_THREADS):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert threads_set_by_user() is by_user


PROBE = """
import json
import os

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class ThreadProbeHook(Hook):
    def __init__(self, out_dir):
        self.out_dir = out_dir

    def before_train(self, runner):
        path = os.path.join(self.out_dir, f'rank{runner.rank}.json')
        with open(path, 'w') as f:
            json.dump(dict(threads=torch.get_num_threads()), f)
"""


def thread_probe_config(tmp_path: Path, data_root: Path) -> Path:
    """The tiny config, 1 epoch, with a hook that records every rank's
    torch.get_num_threads() when training starts."""
    (tmp_path / 'thread_probe.py').write_text(PROBE)
    cfg = tmp_path / 'threads.py'
    cfg.write_text(
        f"_base_ = '{TINY}'\n{data_overrides(data_root, batch_size=2)}"
        "custom_imports = dict(imports=['mmdet_eakd', 'thread_probe'], "
        'allow_failed_imports=False)\n'
        f"custom_hooks = [dict(type='ThreadProbeHook', out_dir='{tmp_path}')]\n"
        'train_cfg = dict(max_epochs=1, val_interval=5)\n')
    return cfg


def test_two_nodes_on_one_machine_share_its_cores(tmp_path, synthetic_root):
    """The issue's setting: NNODES=2 with one process each, both on this
    machine. torchrun limits nothing with one process per node, so each
    process took every core. Now the one that the user gave OMP_NUM_THREADS
    keeps it, and the other gets cores // 2 (two processes here)."""
    cfg = thread_probe_config(tmp_path, synthetic_root)
    base_env = dict(os.environ)
    for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        base_env.pop(name, None)
    base_env.update(PYTHONPATH=f'{ROOT}:{tmp_path}', PYTHON=sys.executable,
                    NNODES='2', MASTER_ADDR='127.0.0.1', PORT=free_port())
    user_threads = len(usable_cores()) // 2 + 1  # not the share
    nodes = []
    for node_rank, extra in ((0, {}),
                             (1, {'OMP_NUM_THREADS': str(user_threads)})):
        nodes.append(subprocess.Popen(
            ['bash', str(ROOT / 'tools' / 'dist_train.sh'), str(cfg), '1',
             '--work-dir', str(tmp_path / 'work')],
            cwd=ROOT, env={**base_env, 'NODE_RANK': str(node_rank), **extra},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [node.communicate(timeout=900)[0] for node in nodes]
    for node, log in zip(nodes, logs):
        assert node.returncode == 0, log[-4000:]
    threads = [json.loads((tmp_path / f'rank{r}.json').read_text())['threads']
               for r in (0, 1)]
    assert threads == [max(1, len(usable_cores()) // 2), user_threads]
    assert 'CPU threads: ' in logs[0]


def test_slurm_tasks_use_their_cpus(tmp_path):
    """tools/slurm_train.sh gives each task the CPUS_PER_TASK cores slurm
    allots it (srun replaced by a stand-in that prints the environment)."""
    srun = tmp_path / 'srun'
    srun.write_text('#!/usr/bin/env bash\necho "OMP=${OMP_NUM_THREADS:-}"\n')
    srun.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}",
               CPUS_PER_TASK='3')
    env.pop('OMP_NUM_THREADS', None)
    args = ['bash', str(ROOT / 'tools' / 'slurm_train.sh'), 'part', 'job',
            'cfg.py', 'work']
    out = subprocess.run(args, env=env, capture_output=True, text=True,
                         check=True).stdout
    assert 'OMP=3' in out
    out = subprocess.run(args, env={**env, 'OMP_NUM_THREADS': '7'},
                         capture_output=True, text=True, check=True).stdout
    assert 'OMP=7' in out
