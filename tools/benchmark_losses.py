# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Micro-benchmark: EA-KD vs plain KD and EA-DKD vs plain DKD.

Times one forward + backward pass of each loss on random ``(N, C)`` logits
(default ``(1024, 81)``: 512 RoIs x 2 images, 80 COCO classes + background).
After a warm-up, the cases are timed in interleaved repetitions (the order
rotates every repetition) and the medians are reported, with the ratios
EA-KD / KD and EA-DKD / DKD. ``ea_kd_stats`` is the ``ea_kd`` pass as the
distiller makes it, ``loss_and_stats`` (the loss and its logged statistics
from one computation of the entropies; the ratio ``ea_kd_stats / ea_kd`` is
the cost of the logged statistics).
``kd_torch`` is a bare ``F.kl_div`` KD without input checks, for scale.

Example::

    python tools/benchmark_losses.py --n 1024 --c 81 --repeats 50
"""
import argparse
import json
import statistics
import time
from typing import Callable, Dict, List, Optional

import mmdet_eakd  # noqa: E402,F401  (first: quiets mmengine)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mmdet_eakd.losses import EADKDLoss, EAKDLoss  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time EA-KD vs KD (and EA-DKD vs DKD), forward+backward')
    parser.add_argument('--n', type=int, default=1024, help='samples (RoIs)')
    parser.add_argument(
        '--c', type=int, default=81, help='classes incl. background')
    parser.add_argument(
        '--repeats', type=int, default=50, help='timed repetitions per case')
    parser.add_argument(
        '--inner', type=int, default=10, help='passes per timed repetition')
    parser.add_argument(
        '--warmup', type=int, default=5, help='untimed repetitions first')
    parser.add_argument(
        '--threads',
        type=int,
        help='torch intra-op threads (default: torch\'s own choice)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='also write the results to this file')
    return parser.parse_args(argv)


def _bare_torch_kd(student: torch.Tensor,
                   teacher: torch.Tensor) -> torch.Tensor:
    """Plain KD (T = 1) straight from torch ops, without any checks."""
    return F.kl_div(
        F.log_softmax(student, dim=1),
        F.log_softmax(teacher, dim=1),
        reduction='none',
        log_target=True).sum(dim=1).mean()


def _time_once(step: Callable[[], None], inner: int) -> float:
    """Seconds per call of ``step``, averaged over ``inner`` calls."""
    start = time.perf_counter()
    for _ in range(inner):
        step()
    return (time.perf_counter() - start) / inner


def run(n: int, c: int, repeats: int, inner: int, warmup: int,
        seed: int) -> Dict:
    """Run the benchmark and return the results as a dict."""
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(n, c, generator=generator).requires_grad_()
    teacher = torch.randn(n, c, generator=generator) * 2
    labels = torch.randint(0, c, (n, ), generator=generator)
    losses = {
        'ea_kd': EAKDLoss(weight_mode='ea'),
        'kd': EAKDLoss(weight_mode='none'),
        'ea_dkd': EADKDLoss(weight_mode='ea'),
        'dkd': EADKDLoss(weight_mode='none'),
    }

    def make_step(name: str) -> Callable[[], None]:

        def step() -> None:
            student.grad = None
            if name == 'kd_torch':
                loss = _bare_torch_kd(student, teacher)
            elif name == 'ea_kd_stats':
                loss, _ = losses['ea_kd'].loss_and_stats(
                    student, teacher, labels)
            else:
                loss = losses[name](student, teacher, labels)
            loss.backward()

        return step

    names = list(losses) + ['ea_kd_stats', 'kd_torch']
    steps = {name: make_step(name) for name in names}
    times: Dict[str, List[float]] = {name: [] for name in names}
    for rep in range(warmup + repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = _time_once(steps[name], inner)
            if rep >= warmup:
                times[name].append(elapsed)
    median_ms = {
        name: 1e3 * statistics.median(values)
        for name, values in times.items()
    }
    return dict(
        n=n,
        c=c,
        repeats=repeats,
        inner=inner,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        median_ms=median_ms,
        ratio_ea_kd_over_kd=median_ms['ea_kd'] / median_ms['kd'],
        ratio_ea_dkd_over_dkd=median_ms['ea_dkd'] / median_ms['dkd'],
        ratio_stats_overhead=median_ms['ea_kd_stats'] / median_ms['ea_kd'])


def main(argv: Optional[List[str]] = None) -> Dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(args.n, args.c, args.repeats, args.inner, args.warmup,
                  args.seed)
    print(f"forward+backward on ({results['n']}, {results['c']}) float32 "
          f"logits, CPU, {results['threads']} threads, torch "
          f"{results['torch']}; median of {results['repeats']} interleaved "
          f"repetitions x {results['inner']} passes")
    for name, ms in results['median_ms'].items():
        print(f'  {name:<11s} {ms:8.3f} ms')
    print(f"  EA-KD / KD   = {results['ratio_ea_kd_over_kd']:.3f}")
    print(f"  EA-DKD / DKD = {results['ratio_ea_dkd_over_dkd']:.3f}")
    print(f"  EA-KD loss_and_stats / EA-KD = "
          f"{results['ratio_stats_overhead']:.3f}")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
