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

``--variants`` times a subset (e.g. ``student teacher_forward kd eakd`` on a
GPU, where every variant costs device time); ratios whose variants were not
timed are left out. ``--img-size`` is a side (square images) or ``WxH``
(e.g. ``1333x800``, mmdet's COCO training scale).

All variants go through the distiller's public API (``distill_inputs`` /
``teacher_logits`` / its adapter's ``capture`` and ``logits``); the tool
captures nothing itself.

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
"""
import argparse
import contextlib
import copy
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import mmdet_eakd  # noqa: E402,F401  (first: quiets mmengine)
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from torch import Tensor  # noqa: E402

VARIANTS = ('student', 'teacher_forward', 'kd', 'eakd', 'dkd', 'eadkd',
            'naive')
#: Variants of a model copy with one teacher option set: tag -> the
#: ``model`` key it sets (its value: True for channels-last, the
#: ``--teacher-autocast`` dtype for amp).
TEACHER_OPTIONS = {'cl': 'teacher_channels_last', 'amp': 'teacher_autocast'}
CHANNELS_LAST_VARIANTS = ('teacher_forward_cl', 'eakd_cl')
AUTOCAST_VARIANTS = ('teacher_forward_amp', 'eakd_amp')
OPTION_VARIANTS = CHANNELS_LAST_VARIANTS + AUTOCAST_VARIANTS
#: Softmax loss type and weight mode of each distillation variant; a config's
#: classifier family maps the type through ``LOSS_TYPES`` (sigmoid heads have
#: no DKD variants).
DISTILL_VARIANTS = {
    'kd': ('EAKDLoss', 'none'),
    'eakd': ('EAKDLoss', 'ea'),
    'dkd': ('EADKDLoss', 'none'),
    'eadkd': ('EADKDLoss', 'ea'),
}
#: Ground-truth boxes per synthetic image.
NUM_GT = 5
#: SGD settings of the student step; small, so random weights stay finite.
SGD_LR, SGD_MOMENTUM = 1e-4, 0.9
#: Ratios of per-variant median step times: name -> (variants, function).
RATIOS: Dict[str, tuple] = {
    'eakd_over_kd': (('eakd', 'kd'), lambda m: m['eakd'] / m['kd']),
    'eadkd_over_dkd': (('eadkd', 'dkd'), lambda m: m['eadkd'] / m['dkd']),
    'eakd_minus_student_over_teacher_forward':
    (('eakd', 'student', 'teacher_forward'),
     lambda m: (m['eakd'] - m['student']) / m['teacher_forward']),
    'naive_over_eakd': (('naive', 'eakd'), lambda m: m['naive'] / m['eakd']),
}
CHANNELS_LAST_RATIOS: Dict[str, tuple] = {
    'teacher_forward_cl_over_teacher_forward':
    (('teacher_forward_cl', 'teacher_forward'),
     lambda m: m['teacher_forward_cl'] / m['teacher_forward']),
    'eakd_cl_over_eakd': (('eakd_cl', 'eakd'),
                          lambda m: m['eakd_cl'] / m['eakd']),
}
AUTOCAST_RATIOS: Dict[str, tuple] = {
    'teacher_forward_amp_over_teacher_forward':
    (('teacher_forward_amp', 'teacher_forward'),
     lambda m: m['teacher_forward_amp'] / m['teacher_forward']),
    'eakd_amp_over_eakd': (('eakd_amp', 'eakd'),
                           lambda m: m['eakd_amp'] / m['eakd']),
    'eakd_amp_minus_student_over_teacher_forward_amp':
    (('eakd_amp', 'student', 'teacher_forward_amp'),
     lambda m: (m['eakd_amp'] - m['student']) / m['teacher_forward_amp']),
}
#: Level and resamples of the bootstrap intervals of the ratios.
BOOTSTRAP_LEVEL, BOOTSTRAP_RESAMPLES = 0.95, 2000
#: Fewer rounds never resolve a target (degenerate bootstrap intervals).
MIN_ROUNDS = 5
#: Targets of the distillation-cost issues.
TARGETS = {
    'eakd_over_kd': ('<=', 1.02),
    'eakd_minus_student_over_teacher_forward': ('<=', 1.10),
    'naive_over_eakd': ('>', 1.0),
}


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
        'config, plus the option variants asked for)')
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
    unknown = sorted(set(args.variants or ()) - set(VARIANTS + OPTION_VARIANTS))
    if unknown:
        parser.error(f'unknown --variants {unknown}; choose from '
                     f'{list(VARIANTS + OPTION_VARIANTS)}')
    for names, flag, given in ((CHANNELS_LAST_VARIANTS, '--channels-last',
                                args.channels_last),
                               (AUTOCAST_VARIANTS, '--teacher-autocast',
                                args.teacher_autocast)):
        if set(args.variants or ()) & set(names) and not given:
            parser.error(f'--variants {" ".join(names)} need {flag}')
    return args


def loss_types(loss_cfg: dict) -> Dict[str, str]:
    """The shipped loss of each softmax loss type for the classifier family
    (``'softmax'`` or ``'sigmoid'``) that a loss config's type is made for."""
    from mmdet.registry import MODELS
    from mmdet_eakd.losses import LOSS_TYPES
    kind = loss_cfg['type']
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    classifier = getattr(cls, 'classifier', None)
    if classifier not in LOSS_TYPES:
        raise ValueError(f'distill_loss {kind!r} declares no classifier '
                         f'(one of {list(LOSS_TYPES)}); the benchmark '
                         'times the shipped EA losses only.')
    return LOSS_TYPES[classifier]


def config_variants(loss_cfg: dict) -> List[str]:
    """The variants of a config (:data:`VARIANTS` without the distillation
    variants its classifier family has no loss for)."""
    types = loss_types(loss_cfg)
    return [
        name for name in VARIANTS if name not in DISTILL_VARIANTS
        or DISTILL_VARIANTS[name][0] in types
    ]


def distill_loss_configs(loss_cfg: dict) -> Dict[str, dict]:
    """The loss config of each distillation variant, from the config's.

    Temperatures, ``loss_weight`` etc. are kept; the type (in the config's
    classifier family) and weight mode are set per variant; DKD's
    ``alpha``/``beta`` are kept for the DKD losses.
    """
    common = {k: v for k, v in loss_cfg.items()
              if k not in ('type', 'weight_mode', 'alpha', 'beta')}
    dkd_args = {k: loss_cfg[k] for k in ('alpha', 'beta') if k in loss_cfg}
    types = loss_types(loss_cfg)
    configs = {}
    for name, (softmax_type, mode) in DISTILL_VARIANTS.items():
        if softmax_type not in types:
            continue
        cfg = dict(common, type=types[softmax_type], weight_mode=mode)
        if softmax_type == 'EADKDLoss':
            cfg.update(dkd_args)
        configs[name] = cfg
    return configs


class DistillBench:
    """The models, the synthetic batch and one step function per variant.

    Args:
        cfg (Config): An offline distillation config (see
            :func:`mmdet_eakd.utils.offline_config`).
        variants (Sequence[str]): The variants to prepare.
        img_size (tuple[int, int]): Image height and width.
        batch_size (int): Images per batch.
        device (str): Torch device.
        seed (int): Seed of the weights and the batch.
        teacher_autocast (str, optional): ``teacher_autocast`` of the
            ``amp`` variants' model. Defaults to None.
    """

    def __init__(self, cfg: Config, variants: Sequence[str],
                 img_size: Tuple[int, int], batch_size: int, device: str,
                 seed: int, teacher_autocast: Optional[str] = None) -> None:
        from mmdet.registry import MODELS
        from mmdet.testing import demo_mm_inputs
        from mmdet_eakd.distill import adapter_for, same_input_format
        from mmdet_eakd.utils import teacher_model_config
        self.device = torch.device(device)
        torch.manual_seed(seed)
        self.model = self._build_model(cfg)
        self.optim = self._optimizer(self.model)
        self.losses = {
            name: MODELS.build(loss_cfg).to(self.device)
            for name, loss_cfg in distill_loss_configs(
                cfg.model.distill_loss).items()
        }
        num_classes = self.model.adapter.num_classes(self.model)
        data = demo_mm_inputs(
            batch_size=batch_size,
            image_shapes=[(3, *img_size)] * batch_size,
            num_items=[NUM_GT] * batch_size,
            num_classes=num_classes)
        data = self.model.data_preprocessor(data, True)
        self.inputs, self.samples = data['inputs'], data['data_samples']
        groups = self.model.distill_inputs(self.inputs, self.samples).groups
        # Where the student's samples were (e.g. each stage's RoIs).
        self.group_samples = [group.samples for group in groups]
        self.num_samples = sum(len(group.labels) for group in groups)

        if 'naive' in variants:
            # The teacher as other implementations run it: with train_cfg.
            self.naive_teacher = MODELS.build(
                teacher_model_config(cfg, with_train_cfg=True))
            self.naive_teacher.load_state_dict(self.model.teacher.state_dict())
            self.naive_teacher.requires_grad_(False).eval().to(self.device)
            self.naive_adapter = adapter_for(self.naive_teacher)
            self.naive_teacher_same_inputs = same_input_format(
                self.model.student_format, self.model.teacher_format)
        option_values = {'cl': True, 'amp': teacher_autocast}
        # tag -> (model copy with that teacher option, its optimizer)
        self.option_models: Dict[str, Tuple[torch.nn.Module,
                                            OptimWrapper]] = {}
        for tag, key in TEACHER_OPTIONS.items():
            if not any(name.endswith(f'_{tag}') for name in variants):
                continue
            if option_values[tag] is None:
                raise ValueError(f'The {tag} variants need teacher_autocast.')
            option_cfg = copy.deepcopy(cfg)
            option_cfg.model[key] = option_values[tag]
            option_model = self._build_model(option_cfg)
            option_model.load_state_dict(self.model.state_dict())
            self.option_models[tag] = (option_model,
                                       self._optimizer(option_model))

        self.steps: Dict[str, Callable[[], None]] = {}
        for name in variants:
            if name not in VARIANTS + OPTION_VARIANTS:
                raise ValueError(f'Unknown variant {name!r}.')
            base, _, tag = name.rpartition('_')
            if name in OPTION_VARIANTS:
                self.steps[name] = lambda base=base, tag=tag: (
                    self._option_step(base, tag))
            else:
                self.steps[name] = getattr(self, f'_step_{name}', None) or (
                    lambda name=name: self._distill_step(name))

    def _build_model(self, cfg: Config) -> torch.nn.Module:
        from mmdet.registry import MODELS
        model = MODELS.build(cfg.model)
        return model.to(self.device).train()

    @staticmethod
    def _optimizer(model: torch.nn.Module) -> OptimWrapper:
        return OptimWrapper(
            torch.optim.SGD(
                model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM))

    @staticmethod
    def _update(model: torch.nn.Module, optim: OptimWrapper,
                losses: Dict[str, Tensor]) -> None:
        """Backward and SGD step on the summed losses, as ``train_step``."""
        loss, _ = model.parse_losses(losses)
        optim.update_params(loss)

    def _student_loss(self) -> Dict[str, Tensor]:
        """The detector's own loss, without distillation."""
        from mmdet_eakd.distill import DistillerMixin
        return super(DistillerMixin, self.model).loss(self.inputs,
                                                      self.samples)

    def _step_student(self) -> None:
        self._update(self.model, self.optim, self._student_loss())

    def _step_teacher_forward(self) -> None:
        self.model.teacher_logits(self.inputs, self.samples,
                                  self.group_samples)

    def _distill_step(self, name: str) -> None:
        self.model.distill_loss = self.losses[name]
        self._update(self.model, self.optim,
                     self.model.loss(self.inputs, self.samples))

    def _option_step(self, base: str, tag: str) -> None:
        """``teacher_forward`` or ``eakd`` on the model copy of ``tag``."""
        model, optim = self.option_models[tag]
        if base == 'teacher_forward':
            model.teacher_logits(self.inputs, self.samples,
                                 self.group_samples)
            return
        model.distill_loss = self.losses['eakd']
        self._update(model, optim, model.loss(self.inputs, self.samples))

    def _step_naive(self) -> None:
        from mmdet_eakd.distill import renormalize_for_teacher
        model, teacher = self.model, self.naive_teacher
        with model.adapter.capture(model) as student_groups:
            losses = self._student_loss()
        with torch.no_grad():
            inputs = self.inputs
            if not self.naive_teacher_same_inputs:
                inputs = renormalize_for_teacher(inputs, self.samples,
                                                 model.student_format,
                                                 model.teacher_format)
            with self.naive_adapter.capture(teacher) as teacher_groups:
                teacher.loss(inputs, self.samples)
        # The student's features as its loss pass used them; its head (stage
        # s for the teacher's stage s) classifies the teacher's samples.
        feats = student_groups[0].feats
        student_logits = torch.cat([
            model.adapter.logits(model, feats, group.samples)
            for group in teacher_groups
        ])
        teacher_logits = torch.cat([group.student for group in teacher_groups])
        losses['loss_kd'] = self.losses['eakd'](student_logits,
                                                teacher_logits)
        self._update(model, self.optim, losses)

    def run(self, name: str) -> float:
        """Run one step of variant ``name``; return its seconds."""
        cuda = self.device.type == 'cuda'
        if cuda:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        self.steps[name]()
        if cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start


def _proc_kib(field: str) -> int:
    """A ``VmXXX`` field of ``/proc/self/status`` in KiB."""
    with open('/proc/self/status') as f:
        match = re.search(rf'^{field}:\s+(\d+) kB', f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f'/proc/self/status has no {field}; peak RSS '
                           'measurement needs Linux.')
    return int(match.group(1))


def cpu_peak_rss_growth(cfg: Config, variant: str, img_size: Tuple[int, int],
                        batch_size: int, steps: int, seed: int,
                        threads: int,
                        teacher_autocast: Optional[str] = None) -> float:
    """Peak RSS growth (MiB) of ``steps`` steps of ``variant``.

    Meant to run in a fresh process (see the module docstring).
    """
    from mmdet_eakd.utils import register_modules
    torch.set_num_threads(threads)
    register_modules()
    bench = DistillBench(cfg, [variant], img_size, batch_size, 'cpu', seed,
                         teacher_autocast)
    baseline = _proc_kib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current RSS
    for _ in range(steps):
        bench.run(variant)
    return (_proc_kib('VmHWM') - baseline) / 1024


def cpu_memory(cfg: Config, variants: Sequence[str], args: argparse.Namespace
               ) -> Dict[str, float]:
    """Peak RSS growth per variant, each in a fresh subprocess.

    The subprocesses are forked from a server process that has imported
    torch, mmdet and this package (nothing built), to save the import time.
    """
    threads = args.threads or torch.get_num_threads()
    context = get_context('forkserver')
    context.set_forkserver_preload(['torch', 'mmdet.models', 'mmdet_eakd'])
    with ProcessPoolExecutor(
            max_workers=args.memory_jobs,
            mp_context=context,
            max_tasks_per_child=1) as pool:
        futures = {
            name: pool.submit(cpu_peak_rss_growth, cfg, name, args.img_size,
                              args.batch_size, args.memory_steps, args.seed,
                              threads, args.teacher_autocast)
            for name in variants
        }
        return {name: future.result() for name, future in futures.items()}


def _ratio(numerator: Optional[float],
           denominator: Optional[float]) -> Optional[float]:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def benchmark_config(config: str, args: argparse.Namespace,
                     work_dir: str) -> Dict:
    """Time (and measure memory of) every variant for one config."""
    from mmdet_eakd.analysis import bootstrap_interval, judge_target
    from mmdet_eakd.distill import is_distill_config
    from mmdet_eakd.utils import offline_config
    cfg = offline_config(config, work_dir, seed=args.seed)
    if not is_distill_config(cfg.model):
        raise ValueError(f'{config} is not a distillation config: model.type '
                         f'is {cfg.model.get("type")!r}.')
    if cfg.model.get('distill_loss') is None:
        raise ValueError(
            f'{config} distils named distill_terms; this benchmark times the '
            'variants of one distill_loss (KD, EA-KD, ...) and does not time '
            'several terms yet. Give a distill_loss config.')
    variants = config_variants(cfg.model.distill_loss)
    if args.channels_last:
        variants += CHANNELS_LAST_VARIANTS
    if args.teacher_autocast:
        variants += AUTOCAST_VARIANTS
    if args.variants:
        missing = sorted(set(args.variants) - set(variants))
        if missing:
            raise ValueError(f'{config} has no variants {missing} (its '
                             f'variants: {variants}).')
        variants = [name for name in variants if name in args.variants]
    bench = DistillBench(cfg, variants, args.img_size, args.batch_size,
                         args.device, args.seed, args.teacher_autocast)
    cuda = bench.device.type == 'cuda'
    times: Dict[str, List[float]] = {name: [] for name in variants}
    cuda_peak: Dict[str, float] = {name: 0. for name in variants}
    for rnd in range(args.warmup + args.steps):
        shift = rnd % len(variants)
        for name in variants[shift:] + variants[:shift]:
            if cuda:
                before = torch.cuda.memory_allocated(bench.device)
                torch.cuda.reset_peak_memory_stats(bench.device)
            elapsed = bench.run(name)
            if rnd < args.warmup:
                continue
            times[name].append(elapsed)
            if cuda:
                peak = torch.cuda.max_memory_allocated(bench.device) - before
                cuda_peak[name] = max(cuda_peak[name], peak / 2**20)
    num_samples = bench.num_samples
    del bench
    if cuda:
        memory: Dict[str, Optional[float]] = dict(cuda_peak)
        memory_method = ('cuda max_memory_allocated during a step minus '
                         'memory_allocated before it (max over timed steps)')
    elif args.memory_steps:
        memory = dict(cpu_memory(cfg, variants, args))
        memory_method = (f'peak RSS growth (VmHWM - VmRSS before) over '
                         f'{args.memory_steps} steps in a fresh process per '
                         'variant')
    else:
        memory = {name: None for name in variants}
        memory_method = 'not measured (--memory-steps 0)'

    median = {name: statistics.median(values) for name, values in
              times.items()}
    ratio_defs = dict(RATIOS, **CHANNELS_LAST_RATIOS, **AUTOCAST_RATIOS)
    ratio_defs = {key: value for key, value in ratio_defs.items()
                  if set(value[0]) <= set(variants)}
    bootstrap = dict(level=BOOTSTRAP_LEVEL, resamples=BOOTSTRAP_RESAMPLES,
                     seed=args.seed)
    judged: Dict[str, Dict] = {}
    for key, (names, function) in ratio_defs.items():
        ratio_times = {name: times[name] for name in names}
        if key in TARGETS:
            judged[key] = judge_target(ratio_times, function, *TARGETS[key],
                                       min_rounds=MIN_ROUNDS, **bootstrap)
        else:
            value, low, high = bootstrap_interval(ratio_times, function,
                                                  **bootstrap)
            judged[key] = dict(value=value, interval=[low, high])
    ratios = {key: result['value'] for key, result in judged.items()}
    ratios['memory_over_student'] = {
        name: _ratio(memory[name], memory.get('student'))
        for name in variants
    }
    targets = {
        f'{key} {op} {bound}': dict(
            verdict=judged[key]['verdict'],
            interval=judged[key]['interval'],
            rounds_to_resolve=judged[key]['rounds_to_resolve'])
        for key, (op, bound) in TARGETS.items() if key in judged
    }
    return dict(
        config=config,
        teacher=str(Config.fromfile(config).model.teacher.config),
        img_size=list(args.img_size),
        teacher_autocast=args.teacher_autocast,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        num_rois=num_samples,
        variants={
            name: dict(
                median_s=median[name],
                min_s=min(times[name]),
                max_s=max(times[name]),
                times_s=times[name],
                peak_memory_mib=memory[name]) for name in variants
        },
        memory_method=memory_method,
        ratios=ratios,
        ratio_intervals={
            key: result['interval'] for key, result in judged.items()
        },
        interval_method=f'{100 * BOOTSTRAP_LEVEL:.0f}% percentile bootstrap '
        f'over rounds ({BOOTSTRAP_RESAMPLES} resamples); verdicts need '
        f'>= {MIN_ROUNDS} rounds',
        targets=targets)


def machine_info(device: str) -> Dict[str, object]:
    """The machine, for the record."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as f:
            match = re.search(r'^model name\s*:\s*(.+)$', f.read(),
                              re.MULTILINE)
        if match:
            cpu = match.group(1).strip()
    info: Dict[str, object] = dict(
        cpu=cpu,
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        device=device)
    if torch.device(device).type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return info


def format_table(result: Dict) -> str:
    """The printed table of one config's result."""
    lines = [
        f"{result['config']}  (teacher {result['teacher']})",
        f"images {result['batch_size']} x {result['img_size'][1]}x"
        f"{result['img_size'][0]} (WxH), {result['num_rois']} distilled "
        'samples (RoIs '
        'or locations, all groups), median of '
        f"{result['steps']} interleaved steps after {result['warmup']} "
        'warm-up rounds',
        f"{'variant':<20}{'median s':>10}{'min s':>9}{'max s':>9}"
        f"{'peak MiB':>11}{'mem/student':>13}",
    ]
    mem_ratio = result['ratios']['memory_over_student']
    for name, row in result['variants'].items():
        mem = row['peak_memory_mib']
        lines.append(
            f"{name:<20}{row['median_s']:>10.3f}{row['min_s']:>9.3f}"
            f"{row['max_s']:>9.3f}"
            f"{'-' if mem is None else f'{mem:.0f}':>11}"
            f"{'-' if mem_ratio[name] is None else f'{mem_ratio[name]:.2f}':>13}")
    lines.append(f"memory: {result['memory_method']}")
    lines.append(f"ratio intervals: {result['interval_method']}")
    for key, value in result['ratios'].items():
        if key != 'memory_over_student':
            low, high = result['ratio_intervals'][key]
            lines.append(f'{key:<42}{value:8.3f}  [{low:.3f}, {high:.3f}]')
    for target, judged in result['targets'].items():
        rounds = judged['rounds_to_resolve']
        lines.append(
            f"target {target:<50}{judged['verdict']:<14}"
            + ('' if rounds is None else f'(resolved from {rounds} rounds)'))
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> Dict:
    """Run the benchmark; print a table per config and write the JSON."""
    args = parse_args(argv)
    from mmdet_eakd.utils import register_modules
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
            result = benchmark_config(config, args, work_dir)
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
