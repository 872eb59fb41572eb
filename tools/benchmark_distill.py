# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Benchmark the cost of distillation: time and peak memory per step.

For each distillation config, the models are built offline (random weights,
the teacher loaded from a random checkpoint; see
:func:`mmdet_eakd.utils.build_offline_model`) and one synthetic batch is
made (``demo_mm_inputs``, square images, already through the student's data
preprocessor, which is the same for every variant and not timed). Variants:

- ``student``: a student-only training step (the detector's own ``loss``);
- ``teacher_forward``: the teacher's minimal forward, the distiller's
  ``teacher_logits`` on the samples of the student's loss pass (features +
  head on the student's sampled RoIs, every stage of a cascade; features +
  dense head for a one-stage detector; no grad);
- ``kd``, ``eakd``, ``dkd``, ``eadkd``: a distillation training step with
  ``EAKDLoss``/``EADKDLoss`` (``weight_mode='none'`` for KD/DKD, ``'ea'``
  for EA-KD/EA-DKD; other loss arguments from the config); for a dense
  (sigmoid) config ``kd`` and ``eakd`` with ``SigmoidEAKDLoss``, and no DKD
  variants;
- ``naive``: what other implementations do, for comparison only: the
  student's detection loss, the teacher's whole loss path (``teacher.loss``
  with its own ``train_cfg``: its RPN, proposals and sampling, or its dense
  targets; no grad), then a second pass of the student's head (box stage
  ``s`` for the teacher's stage ``s``) on the teacher's samples and EA-KD on
  those logits;
- with ``--channels-last``: ``teacher_forward_cl`` and ``eakd_cl``, the same
  with ``teacher_channels_last=True``;
- with ``--teacher-autocast fp16|bf16``: ``teacher_forward_amp`` and
  ``eakd_amp``, the same with ``teacher_autocast`` set (a copy of the model
  with the same weights, as for channels-last).

A config with named ``distill_terms`` (e.g. ``cls`` EA-KD, ``box`` EA-LD,
``feat`` EA-PKD) has, besides ``student`` and ``teacher_forward`` (its
features only when no term needs the teacher's head: plain feature terms):

- ``term:<name>`` (e.g. ``term:cls``, ``term:box``, ``term:feat``): a
  distillation training step with that term of the model alone (the
  teacher still runs once; a feature term alone computes its EA entropies
  itself, as without a classification term);
- ``terms``: the config's own training step, all its terms together;

with the ratios ``<variant>_minus_student_over_student`` (each term's and
the sum's extra cost over the student step) and
``terms_minus_student_over_teacher_forward``, and no targets. The variants
of one ``distill_loss`` (``kd`` ... ``naive``, ``eakd_cl``, ``eakd_amp``)
are refused for it, naming the cause and the variants it has; the option
variants of the teacher forward are timed as above.

``--variants`` times a subset (e.g. ``student teacher_forward kd eakd`` on a
GPU, where every variant costs device time, or ``student teacher_forward
term:cls terms`` for named terms); ratios whose variants were not timed are
left out. ``--img-size`` is a side (square images) or ``WxH``
(e.g. ``1333x800``, mmdet's COCO training scale).

All variants go through the distiller's public API (``student_loss``,
``build_terms``, ``terms`` and ``loss(..., terms)``, ``teacher_logits``,
``teacher_features``, its adapter's ``capture`` and ``logits``); the
benchmark itself lives in
:mod:`mmdet_eakd.utils.benchmark`, this file is its command line.

A training step is forward + backward + ``SGD`` step of the student. After
``--warmup`` untimed rounds, ``--steps`` rounds run every variant once, in an
order that rotates each round (so drifting machine load hits all variants
alike); the table shows the median seconds per variant. Each ratio of
medians gets a 95% percentile-bootstrap interval over the rounds (see
:mod:`mmdet_eakd.analysis.timing_stats`); a target is ``met`` or ``MISSED``
only when its interval lies on one side of the bound (and at least
``MIN_ROUNDS`` rounds ran), ``not resolved`` otherwise, and the JSON records
after how many rounds the verdict stopped changing.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` during a step minus
the memory allocated before it (max over the timed steps). On CPU, torch's
allocator keeps no peak statistics, so each variant runs in a fresh
subprocess (forked from a server process that has only imported the
libraries): the model and batch are built, the process's resident set size
(``VmRSS``) is read and its high-water mark reset (``/proc/self/clear_refs``),
``--memory-steps`` steps run, and the peak RSS growth ``VmHWM - VmRSS`` is
reported. It includes the gradients and SGD momentum buffers allocated by the
first step (the same for every student variant) and counts memory that the C
allocator keeps after freeing it, so it is an upper bound of the working
memory of a step; the teacher's weights are not counted (they exist before).

Example::

    python tools/benchmark_distill.py --config configs/eakd_frcnn_r101_r18.py \\
        --img-size 320 --batch-size 2 --steps 20 --warmup 2 \\
        --json work_dirs/bench_r101_r18.json
    python tools/benchmark_distill.py \\
        --config configs/eakd_eald_eapkd_gfl_r101_r18.py --variants student \\
        teacher_forward term:cls term:box term:feat terms --steps 20
"""
import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import mmdet_eakd  # noqa: E402,F401  (first: quiets mmengine)
import torch  # noqa: E402

from mmdet_eakd.utils import register_modules  # noqa: E402
from mmdet_eakd.utils.benchmark import (  # noqa: E402,F401
    ALL_TERMS, AUTOCAST_VARIANTS, CHANNELS_LAST_VARIANTS, OPTION_VARIANTS,
    RATIOS, TARGETS, TERM_PREFIX, VARIANTS, BenchmarkSettings,
    benchmark_config, format_table, is_terms_variant, machine_info,
    terms_ratios)


def parse_img_size(text: str) -> Tuple[int, int]:
    """``'S'`` (square) or ``'WxH'`` -> ``(height, width)``."""
    match = re.fullmatch(r'(\d+)(?:x(\d+))?', text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f'--img-size must be a side (e.g. 320) or WxH (e.g. 1333x800), '
            f'got {text!r}')
    width = int(match.group(1))
    height = int(match.group(2)) if match.group(2) else width
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(
            f'--img-size sides must be >= 1, got {text!r}')
    return height, width


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse and check the command line."""
    parser = argparse.ArgumentParser(
        description='Time and memory of distillation steps vs the '
        'student-only step and the teacher forward.')
    parser.add_argument(
        '--config', nargs='+', required=True,
        help='distillation config(s) (model.type RoIDistillTwoStageDetector: '
        'Faster / Mask / Cascade R-CNN; DenseDistillSingleStageDetector: '
        'RetinaNet / ATSS / GFL / FCOS)')
    parser.add_argument('--img-size', type=parse_img_size,
                        default=(320, 320),
                        help='side of the square synthetic images, or WxH')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--steps', type=int, default=20,
                        help='timed rounds (each runs every variant once)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed rounds first')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:i]'")
    parser.add_argument(
        '--channels-last', action='store_true',
        help='also time the teacher with teacher_channels_last=True')
    parser.add_argument(
        '--teacher-autocast', choices=('fp16', 'bf16'),
        help='also time the teacher with teacher_autocast set to this dtype '
        '(variants teacher_forward_amp, eakd_amp)')
    parser.add_argument(
        '--variants', nargs='+',
        help='time only these variants (default: every variant of the '
        'config, plus the option variants asked for): '
        f'{", ".join(VARIANTS + OPTION_VARIANTS)}; for a config with named '
        f'distill_terms: student, teacher_forward, {TERM_PREFIX}<name> (one '
        f'term alone, e.g. {TERM_PREFIX}cls) and {ALL_TERMS} (all together)')
    parser.add_argument(
        '--memory-steps', type=int, default=2,
        help='steps per CPU memory subprocess; 0 skips the memory '
        'measurement on CPU')
    parser.add_argument('--memory-jobs', type=int, default=1,
                        help='CPU memory subprocesses run at once')
    parser.add_argument('--threads', type=int,
                        help='torch intra-op threads (default: torch\'s own)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='write the results to this file')
    args = parser.parse_args(argv)
    for name in ('batch_size', 'steps', 'memory_jobs'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    for name in ('warmup', 'memory_steps'):
        if getattr(args, name) < 0:
            parser.error(f'--{name.replace("_", "-")} must be >= 0')
    if args.threads is not None and args.threads < 1:
        parser.error('--threads must be >= 1')
    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ('cpu', 'cuda'):
        parser.error(f'--device must be cpu or cuda[:i], got {args.device!r}')
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda but torch sees no CUDA device')
    for config in args.config:
        if not Path(config).is_file():
            parser.error(f'config {config!r} does not exist')
    unknown = sorted(
        name for name in set(args.variants or ())
        if name not in VARIANTS + OPTION_VARIANTS
        and not is_terms_variant(name))
    if unknown:
        parser.error(f'unknown --variants {unknown}; choose from '
                     f'{list(VARIANTS + OPTION_VARIANTS)}, or for a config '
                     f'with named distill_terms {TERM_PREFIX}<name> and '
                     f'{ALL_TERMS}')
    for names, flag, given in ((CHANNELS_LAST_VARIANTS, '--channels-last',
                                args.channels_last),
                               (AUTOCAST_VARIANTS, '--teacher-autocast',
                                args.teacher_autocast)):
        if set(args.variants or ()) & set(names) and not given:
            parser.error(f'--variants {" ".join(names)} need {flag}')
    return args



def settings_from(args: argparse.Namespace) -> BenchmarkSettings:
    """The benchmark settings of the parsed command line."""
    return BenchmarkSettings(
        img_size=args.img_size, batch_size=args.batch_size, steps=args.steps,
        warmup=args.warmup, device=args.device,
        channels_last=args.channels_last,
        teacher_autocast=args.teacher_autocast, variants=args.variants,
        memory_steps=args.memory_steps, memory_jobs=args.memory_jobs,
        threads=args.threads, seed=args.seed)


def main(argv: Optional[List[str]] = None) -> Dict:
    """Run the benchmark; print a table per config and write the JSON."""
    args = parse_args(argv)
    settings = settings_from(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    register_modules()
    machine = machine_info(args.device)
    print('machine: ' + ', '.join(f'{k} {v}' for k, v in machine.items()))
    print('command: ' + ' '.join([Path(sys.argv[0]).name] + (
        argv if argv is not None else sys.argv[1:])))
    results = []
    with tempfile.TemporaryDirectory() as work_dir:
        for config in args.config:
            result = benchmark_config(config, settings, work_dir)
            print(format_table(result), flush=True)
            results.append(result)
    output = dict(machine=machine, results=results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(output, f, indent=2)
    return output


if __name__ == '__main__':
    main()
