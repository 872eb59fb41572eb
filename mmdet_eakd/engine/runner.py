"""The :class:`mmengine.runner.Runner` of this package's tools.

* mmengine 0.10.7 assumes CUDA when it starts a distributed run:
  ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` and ``wrap_model``
  passes ``device_ids=[LOCAL_RANK]`` to DDP, both of which fail for a CPU build
  of torch. :class:`EAKDRunner` initialises the process group with gloo itself
  in that case and wraps the model in DDP without device ids.
* Its checkpoints load with plain ``torch.load`` (see
  :class:`TorchSafeCheckpointHook`), and their ``state_dict`` is the plain
  student's (see :class:`DistillStateCheckpointHook`).
* A distributed test's metrics JSON is written by rank 0 alone (see
  :class:`MainProcessLoggerHook`).
* On a CPU distributed run each process uses its share of the machine's cores
  (see :func:`share_cpu_threads`) unless the user set ``OMP_NUM_THREADS``.
"""
import copy
import datetime
import logging
import os
import sys
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.dist import is_distributed
from mmengine.hooks import LoggerHook
from mmengine.logging import print_log
from mmengine.runner import Runner

from mmdet.registry import RUNNERS
from ..distill import student_model_config
from .hooks import (DistillStateCheckpointHook, MainProcessLoggerHook,
                    TorchSafeCheckpointHook)
from .threads import share_cpu_threads


def cpu_only() -> bool:
    """Whether this process has no usable CUDA device."""
    return not torch.cuda.is_available()


@RUNNERS.register_module()
class EAKDRunner(Runner):
    """``Runner`` with CPU distributed training and torch-safe checkpoints."""

    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        """Register the configured hooks, :class:`TorchSafeCheckpointHook`
        and :class:`DistillStateCheckpointHook` (unless configured).

        mmengine's ``LoggerHook`` (configured, or mmengine's default) becomes
        :class:`MainProcessLoggerHook` with the same arguments; a logger of
        another type, or ``logger=None``, is kept as configured.
        """
        default_hooks = dict(default_hooks or {})
        logger = default_hooks.get('logger', dict(type='LoggerHook'))
        if isinstance(logger, dict) and logger.get('type') in ('LoggerHook',
                                                              LoggerHook):
            default_hooks['logger'] = {**logger, 'type': MainProcessLoggerHook}
        super().register_hooks(default_hooks, custom_hooks)
        for hook_type in (TorchSafeCheckpointHook, DistillStateCheckpointHook):
            if not any(isinstance(hook, hook_type) for hook in self.hooks):
                self.register_hook(hook_type())

    def setup_env(self, env_cfg: dict) -> None:
        """Start a gloo process group on CPU and share the cores among the
        processes of each machine, then run ``Runner.setup_env``.

        ``Runner.setup_env`` skips ``init_dist`` when a process group exists, so
        everything else it does (seeds, multiprocessing, cudnn) stays the same.
        """
        if self.distributed and cpu_only():
            if not is_distributed():
                self._init_cpu_process_group(env_cfg)
            share_cpu_threads()
        super().setup_env(env_cfg)

    def _init_cpu_process_group(self, env_cfg: dict) -> None:
        """Start the gloo process group of a CPU distributed run."""
        if self.launcher != 'pytorch':
            raise RuntimeError(
                f'Distributed training with launcher={self.launcher!r} needs '
                'CUDA, and this torch has none. On a CPU machine start it '
                'with torchrun and launcher "pytorch": tools/dist_train.sh '
                'CONFIG N, or torchrun --nproc_per_node N -m '
                'mmdet_eakd.train CONFIG --launcher pytorch.')
        dist_cfg = dict(env_cfg.get('dist_cfg', {}))
        backend = dist_cfg.pop('backend', 'nccl')
        timeout = dist_cfg.pop('timeout', None)
        if backend != 'gloo':
            print_log(
                f'No CUDA device: using the gloo backend instead of '
                f'{backend!r} for distributed training.',
                logger='current')
        kwargs = dict(dist_cfg)
        if timeout is not None:
            kwargs['timeout'] = datetime.timedelta(seconds=timeout)
        torch_dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **kwargs)

    def wrap_model(self, model_wrapper_cfg: Optional[dict],
                   model: torch.nn.Module) -> torch.nn.Module:
        """Wrap with DDP; on CPU without ``device_ids`` (DDP rejects them)."""
        if self.distributed and cpu_only():
            if model_wrapper_cfg is None:
                model_wrapper_cfg = dict(
                    type='MMDistributedDataParallel',
                    broadcast_buffers=False,
                    find_unused_parameters=self.cfg.get(
                        'find_unused_parameters', False))
            else:
                model_wrapper_cfg = dict(model_wrapper_cfg)
            model_wrapper_cfg.setdefault('device_ids', None)
        return super().wrap_model(model_wrapper_cfg, model)


@RUNNERS.register_module()
class StudentRunner(EAKDRunner):
    """``EAKDRunner`` that evaluates a distillation config as its student.

    The teacher is dropped from ``cfg.model`` before the model is built (see
    :func:`mmdet_eakd.distill.student_model_config`), so testing and inference
    never build or load it.
    """

    @classmethod
    def from_cfg(cls, cfg: Config) -> 'StudentRunner':
        cfg = copy.deepcopy(cfg)
        cfg.model = student_model_config(cfg.model)
        return super().from_cfg(cfg)


def end_distributed_run() -> None:
    """Tear the process group down, on every rank together, and end a CPU
    distributed run's process; nothing for a single-process run.

    mmengine never destroys the process group. A rank that exits while
    another is still working (e.g. rank 0 computing the COCO metrics) closes
    its gloo connections under the other's feet, so a barrier first lets
    every rank finish, then all destroy the group. Even then, gloo's worker
    threads intermittently abort the interpreter's finalisation on CPU
    ("terminate called without an active exception", exit code -6, after a
    run that finished and wrote everything; seen in 1 of 3 complete runs
    of the suite's 2-process DDP fixture on a loaded 2-core machine), which
    fails the whole ``torchrun`` launch. So a CPU distributed rank, once its group is gone,
    flushes its output and logs and leaves with ``os._exit(0)``, skipping
    that finalisation. mmengine's hooks have already closed the
    visualizer's writers (``after_run``). A CUDA run exits normally.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    torch_dist.barrier()
    torch_dist.destroy_process_group()
    if cpu_only():
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)
