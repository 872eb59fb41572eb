"""Each process of a CPU distributed run gets its share of the machine's cores.

torch starts its intra-op thread pool with every core of the machine unless
``OMP_NUM_THREADS`` is set when the process starts. torchrun sets it to 1 only
when it starts several processes itself, and mmengine sets it only after torch
started the pool, so with one process per torchrun (e.g. two "nodes" on one
machine) every process takes every core, and with several per torchrun each
takes one. :func:`share_cpu_threads` gives each process ``cores // n`` threads
(``torch.set_num_threads`` takes effect at any time), ``n`` being the number of
processes of the run on the same machine that share its cores, found through
the process group. A thread count the user chose is kept.
"""
import os
import socket
from pathlib import Path
from typing import FrozenSet, Optional, Sequence, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.logging import print_log

#: Set by tools/dist_run.sh when the user did not set ``OMP_NUM_THREADS``: the
#: value the processes then see is torchrun's default, not the user's choice.
LAUNCHER_DEFAULT_THREADS = 'EAKD_OMP_NUM_THREADS_UNSET'

#: What one process tells the others: its machine and the cores it may use.
ProcessCores = Tuple[str, FrozenSet[int]]


def threads_set_by_user() -> bool:
    """Whether the user chose the thread count (``OMP_NUM_THREADS`` or
    ``MKL_NUM_THREADS``, which torch reads when it starts its pool)."""
    if 'MKL_NUM_THREADS' in os.environ:
        return True
    return ('OMP_NUM_THREADS' in os.environ
            and os.environ.get(LAUNCHER_DEFAULT_THREADS) != '1')


def machine_id() -> str:
    """The same string in every process on one machine (one kernel boot, so
    containers on one host agree), a different one on another machine."""
    boot_id = Path('/proc/sys/kernel/random/boot_id')
    boot = boot_id.read_text().strip() if boot_id.is_file() else ''
    return f'{socket.gethostname()}/{boot}'


def usable_cores() -> FrozenSet[int]:
    """The cores this process may run on (its affinity, e.g. a cgroup's or
    taskset's; all cores where the platform has no affinity)."""
    if hasattr(os, 'sched_getaffinity'):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def cpu_thread_share(processes: Sequence[ProcessCores], rank: int) -> int:
    """Threads for process ``rank``: its cores over the processes sharing them.

    Args:
        processes (Sequence[tuple[str, frozenset[int]]]): Per rank of the run,
            its :func:`machine_id` and :func:`usable_cores`.
        rank (int): The process to compute the share of.

    Returns:
        int: ``len(cores) // n`` (at least 1), ``n`` being the processes on
        the same machine whose cores overlap this one's (itself included).
    """
    machine, cores = processes[rank]
    sharing = sum(1 for other_machine, other_cores in processes
                  if other_machine == machine and other_cores & cores)
    return max(1, len(cores) // sharing)


def share_cpu_threads() -> Optional[int]:
    """Give this process of a CPU distributed run its share of the cores.

    Needs the process group, and every rank must call it (it gathers every
    rank's cores). Changes nothing if the user set the thread count
    (:func:`threads_set_by_user`). Sets ``torch.set_num_threads`` and
    ``OMP_NUM_THREADS`` (for the processes this one starts).

    Returns:
        int | None: The number of threads set, or ``None`` if the user's
        choice was kept.
    """
    # a collective: every rank takes part, also one that keeps its threads
    processes = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(processes, (machine_id(), usable_cores()))
    if threads_set_by_user():
        return None
    rank = torch_dist.get_rank()
    threads = cpu_thread_share(processes, rank)
    torch.set_num_threads(threads)
    os.environ['OMP_NUM_THREADS'] = str(threads)
    print_log(
        f'CPU threads: {threads} per process (rank {rank} shares '
        f'{len(processes[rank][1])} cores with the processes of this run on '
        'its machine); set OMP_NUM_THREADS to choose another number.',
        logger='current')
    return threads
