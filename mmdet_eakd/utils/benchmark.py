# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""The cost of distillation: time and peak memory per step, per variant.

What ``tools/benchmark_distill.py`` runs (its docstring describes the
variants, the rounds and the statistics). For each distillation config the
models are built offline (random weights, the teacher loaded from a random
checkpoint; see :func:`mmdet_eakd.utils.build_offline_model`) and one
synthetic batch is made (``demo_mm_inputs``, already through the student's
data preprocessor, not timed). Every variant goes through the distiller's
public API: :meth:`~mmdet_eakd.distill.DistillerMixin.student_loss` for the
student-only step, :meth:`~mmdet_eakd.distill.DistillerMixin.build_terms`
and ``loss(..., terms)`` for the KD / EA-KD / DKD / EA-DKD steps of one
model, ``loss(..., terms)`` with a subset of the model's own ``terms()``
for the steps of a config's named ``distill_terms`` (each term alone, all
together), ``teacher_logits`` (or ``teacher_features`` when no term needs
the teacher's head) for the teacher forward, the adapter's ``capture`` and
``logits`` for the naive variant.
"""
import contextlib
import copy
import os
import platform
import re
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from torch import Tensor

from mmdet.registry import MODELS
from ..analysis import bootstrap_interval, judge_target
from ..distill import (DistillTerm, adapter_for, is_distill_config,
                       registered_class,
                       renormalize_for_teacher, same_input_format)
from ..losses import LOSS_TYPES, SIGMOID, ClassifierKind
from .offline import offline_config, register_modules, teacher_model_config

VARIANTS = ('student', 'teacher_forward', 'kd', 'eakd', 'dkd', 'eadkd',
            'naive')
#: Variants of a model copy with one teacher option set: tag -> the
#: ``model`` key it sets (its value: True for channels-last, the
#: ``--teacher-autocast`` dtype for amp).
TEACHER_OPTIONS = {'cl': 'teacher_channels_last', 'amp': 'teacher_autocast'}
CHANNELS_LAST_VARIANTS = ('teacher_forward_cl', 'eakd_cl')
AUTOCAST_VARIANTS = ('teacher_forward_amp', 'eakd_amp')
OPTION_VARIANTS = CHANNELS_LAST_VARIANTS + AUTOCAST_VARIANTS
#: The option variants of the teacher forward, the only ones of a config
#: with named ``distill_terms`` (``eakd_<tag>`` are of one ``distill_loss``).
TEACHER_OPTION_VARIANTS = ('teacher_forward_cl', 'teacher_forward_amp')
#: Variant of a config with named ``distill_terms`` that distils the term
#: ``<name>`` alone: ``term:<name>``.
TERM_PREFIX = 'term:'
#: Variant of a config with named ``distill_terms`` that distils all of its
#: terms together (the config's own training step).
ALL_TERMS = 'terms'
#: Variants of a config with named ``distill_terms`` besides the terms'.
NAMED_TERMS_BASE = ('student', 'teacher_forward')
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


def term_variant(name: str) -> str:
    """The variant that distils the named term ``name`` alone."""
    return f'{TERM_PREFIX}{name}'


def is_terms_variant(variant: str) -> bool:
    """Whether ``variant`` is a variant of named terms: ``term:<name>``
    (``<name>`` an identifier, as a term's name is) or :data:`ALL_TERMS`."""
    name = variant[len(TERM_PREFIX):]
    return variant == ALL_TERMS or (variant.startswith(TERM_PREFIX)
                                    and name.isidentifier())


def terms_ratios(names: Sequence[str]) -> Dict[str, tuple]:
    """The ratios of a config with named terms ``names``, as :data:`RATIOS`:
    the extra cost over the student step of each term alone and of all
    together, ``(variant - student) / student``, and that of all together
    over the teacher forward, ``(terms - student) / teacher_forward``."""
    ratios: Dict[str, tuple] = {}
    for variant in [term_variant(name) for name in names] + [ALL_TERMS]:
        ratios[f'{variant}_minus_student_over_student'] = (
            (variant, 'student'),
            lambda m, v=variant: (m[v] - m['student']) / m['student'])
    ratios[f'{ALL_TERMS}_minus_student_over_teacher_forward'] = (
        (ALL_TERMS, 'student', 'teacher_forward'),
        lambda m: (m[ALL_TERMS] - m['student']) / m['teacher_forward'])
    return ratios


@dataclass
class BenchmarkSettings:
    """What to time and how (the command line of the tool).

    Attributes:
        img_size (tuple[int, int]): Image height and width.
        batch_size (int): Images per batch.
        steps (int): Timed rounds (each runs every variant once).
        warmup (int): Untimed rounds first.
        device (str): ``'cpu'`` or ``'cuda[:i]'``.
        channels_last (bool): Also time ``teacher_channels_last=True``.
        teacher_autocast (str, optional): Also time the teacher under this
            autocast dtype (``'fp16'`` or ``'bf16'``).
        variants (Sequence[str], optional): Time only these variants.
        memory_steps (int): Steps per CPU memory subprocess; 0 skips the
            memory measurement on CPU.
        memory_jobs (int): CPU memory subprocesses at once.
        threads (int, optional): Torch intra-op threads of the memory
            subprocesses (default: this process's).
        seed (int): Seed of the weights, the batch and the bootstrap.
    """
    img_size: Tuple[int, int] = (320, 320)
    batch_size: int = 2
    steps: int = 20
    warmup: int = 2
    device: str = 'cpu'
    channels_last: bool = False
    teacher_autocast: Optional[str] = None
    variants: Optional[Sequence[str]] = None
    memory_steps: int = 2
    memory_jobs: int = 1
    threads: Optional[int] = None
    seed: int = 0


def loss_classifier(loss_cfg: dict) -> Optional[ClassifierKind]:
    """The classifier family (:data:`~mmdet_eakd.losses.SOFTMAX` or
    :data:`~mmdet_eakd.losses.SIGMOID`) that a loss config's type declares
    it is made for; None if it declares none."""
    kind = loss_cfg['type']
    cls = registered_class(kind)
    return getattr(cls, 'classifier', None)


def loss_types(loss_cfg: dict) -> Dict[str, str]:
    """The shipped loss of each softmax loss type for the classifier family
    (softmax or sigmoid) that a loss config's type is made for."""
    kind = loss_cfg['type']
    classifier = loss_classifier(loss_cfg)
    if classifier not in LOSS_TYPES:
        names = [known.name for known in LOSS_TYPES]
        raise ValueError(f'distill_loss {kind!r} declares no classifier '
                         f'(one of {names}); the benchmark times the '
                         'shipped EA losses only.')
    return LOSS_TYPES[classifier]


def config_variants(loss_cfg: dict) -> List[str]:
    """The variants of a config (:data:`VARIANTS` without the distillation
    variants its classifier family has no loss for)."""
    types = loss_types(loss_cfg)
    return [
        name for name in VARIANTS if name not in DISTILL_VARIANTS
        or DISTILL_VARIANTS[name][0] in types
    ]


def named_terms_variants(model_cfg: dict) -> List[str]:
    """The variants of a config with named ``distill_terms``: the student,
    the teacher forward, each term alone (``term:<name>``) and all of them
    together (:data:`ALL_TERMS`)."""
    return list(NAMED_TERMS_BASE) + [
        term_variant(name) for name in model_cfg.distill_terms
    ] + [ALL_TERMS]


def check_named_terms_variants(config: str, model_cfg: dict,
                               asked: Sequence[str]) -> None:
    """Refuse the variants of one ``distill_loss`` asked of a config with
    named ``distill_terms``, and the variants of named terms asked of a
    config with one ``distill_loss``, naming the cause and the fix.

    Args:
        config (str): The config's path, for messages.
        model_cfg (dict): Its ``model``.
        asked (Sequence[str]): The variants asked for.

    Raises:
        ValueError: For such a variant.
    """
    if model_cfg.get('distill_loss') is not None:
        named = [name for name in asked if is_terms_variant(name)]
        if named:
            raise ValueError(
                f'{config} has one distill_loss and no named distill_terms, '
                f'so it has no variants {named} (they time the terms of a '
                'config with distill_terms, e.g. configs/'
                'eakd_eald_gfl_r101_r18.py). Time its KD / EA-KD variants '
                f'instead: {config_variants(model_cfg.distill_loss)}.')
        return
    single = [
        name for name in asked
        if name in DISTILL_VARIANTS or name == 'naive'
        or (name in OPTION_VARIANTS and name not in TEACHER_OPTION_VARIANTS)
    ]
    if not single:
        return
    names = list(model_cfg.distill_terms)
    message = (
        f'{config} distils named distill_terms ({", ".join(names)}); the '
        f'variants {single} swap the type and weight mode of one '
        'distill_loss (KD, EA-KD, DKD, EA-DKD; naive: EA-KD on a second '
        'pass of the student\'s head) and are not defined for several '
        'terms.')
    dkd = [name for name in single if name in ('dkd', 'eadkd')]
    sigmoid = [
        name for name, cfg in model_cfg.distill_terms.items()
        if loss_classifier(cfg) == SIGMOID
    ]
    if dkd and sigmoid:
        message += (
            f' Nor would {dkd} run on this sigmoid family: DKD has no '
            f'sigmoid loss (term {sigmoid[0]} is '
            f'{model_cfg.distill_terms[sigmoid[0]]["type"]}).')
    raise ValueError(
        f'{message} Time each term alone and all together instead: '
        f'--variants {" ".join(named_terms_variants(model_cfg))}; or give a '
        'config with one distill_loss for the KD / EA-KD variants.')


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

    A config with one ``distill_loss`` has the KD / EA-KD / DKD / EA-DKD
    variants (:func:`distill_loss_configs`, terms of ``build_terms``); one
    with named ``distill_terms`` has ``term:<name>`` (that term of the
    model's own ``terms()`` alone) and :data:`ALL_TERMS` (all of them).

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
        from mmdet.testing import demo_mm_inputs
        self.device = torch.device(device)
        torch.manual_seed(seed)
        self.model = self._build_model(cfg)
        self.optim = self._optimizer(self.model)
        # The terms of each distillation variant: built for this pair from
        # the one distill_loss, or subsets of the model's own named terms.
        self.terms: Dict[str, List[DistillTerm]]
        if cfg.model.get('distill_loss') is not None:
            loss_cfgs = distill_loss_configs(cfg.model.distill_loss)
            self.terms = {
                name: self.model.build_terms(distill_loss=loss_cfg)
                for name, loss_cfg in loss_cfgs.items()
            }
        else:
            loss_cfgs = {}
            own = self.model.terms()
            self.terms = {term_variant(term.name): [term] for term in own}
            self.terms[ALL_TERMS] = own
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
        # tag -> (model copy with that teacher option, its optimizer, its
        # EA-KD terms: none for named terms, which have no eakd_<tag>)
        self.option_models: Dict[str, Tuple[torch.nn.Module, OptimWrapper,
                                            List[DistillTerm]]] = {}
        for tag, key in TEACHER_OPTIONS.items():
            if not any(name.endswith(f'_{tag}') for name in variants):
                continue
            if option_values[tag] is None:
                raise ValueError(f'The {tag} variants need teacher_autocast.')
            option_cfg = copy.deepcopy(cfg)
            option_cfg.model[key] = option_values[tag]
            option_model = self._build_model(option_cfg)
            option_model.load_state_dict(self.model.state_dict())
            option_terms = (
                option_model.build_terms(distill_loss=loss_cfgs['eakd'])
                if 'eakd' in loss_cfgs else [])
            self.option_models[tag] = (option_model,
                                       self._optimizer(option_model),
                                       option_terms)

        self.steps: Dict[str, Callable[[], None]] = {}
        for name in variants:
            if name not in VARIANTS + OPTION_VARIANTS + tuple(self.terms):
                raise ValueError(f'Unknown variant {name!r}.')
            base, _, tag = name.rpartition('_')
            if name in OPTION_VARIANTS:
                self.steps[name] = lambda base=base, tag=tag: (
                    self._option_step(base, tag))
            else:
                self.steps[name] = getattr(self, f'_step_{name}', None) or (
                    lambda name=name: self._distill_step(name))

    def _build_model(self, cfg: Config) -> torch.nn.Module:
        """The distilling detector of ``cfg``, on the device, in train mode."""
        model = MODELS.build(cfg.model)
        return model.to(self.device).train()

    @staticmethod
    def _optimizer(model: torch.nn.Module) -> OptimWrapper:
        """SGD over the student's parameters (the teacher has none here)."""
        return OptimWrapper(
            torch.optim.SGD(
                model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM))

    @staticmethod
    def _update(model: torch.nn.Module, optim: OptimWrapper,
                losses: Dict[str, Tensor]) -> None:
        """Backward and SGD step on the summed losses, as ``train_step``."""
        loss, _ = model.parse_losses(losses)
        optim.update_params(loss)

    def _step_student(self) -> None:
        """A training step of the student alone (its own detection loss)."""
        self._update(self.model, self.optim,
                     self.model.student_loss(self.inputs, self.samples))

    def _step_teacher_forward(self) -> None:
        """The teacher forward of the model (:meth:`_teacher_forward`)."""
        self._teacher_forward(self.model)

    def _teacher_forward(self, model: torch.nn.Module) -> None:
        """``model``'s teacher's logits on the student's samples (no grad);
        its features only when no term needs its head (plain feature
        terms)."""
        if not model.uses_teacher_head:
            model.teacher_features(self.inputs, self.samples)
            return
        model.teacher_logits(self.inputs, self.samples, self.group_samples)

    def _distill_step(self, name: str) -> None:
        """A distillation training step with the terms of variant ``name``."""
        self._update(
            self.model, self.optim,
            self.model.loss(self.inputs, self.samples, self.terms[name]))

    def _option_step(self, base: str, tag: str) -> None:
        """``teacher_forward`` or ``eakd`` on the model copy of ``tag``."""
        model, optim, terms = self.option_models[tag]
        if base == 'teacher_forward':
            self._teacher_forward(model)
            return
        self._update(model, optim,
                     model.loss(self.inputs, self.samples, terms))

    def _step_naive(self) -> None:
        """The student's loss, the teacher's whole loss path, a second pass
        of the student's head on the teacher's samples, EA-KD on those."""
        model, teacher = self.model, self.naive_teacher
        with model.adapter.capture(model) as student_groups:
            losses = model.student_loss(self.inputs, self.samples)
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
        (eakd, ) = self.terms['eakd']
        losses['loss_kd'] = eakd.loss(student_logits, teacher_logits)
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


def cpu_memory(cfg: Config, variants: Sequence[str],
               settings: BenchmarkSettings) -> Dict[str, float]:
    """Peak RSS growth per variant, each in a fresh subprocess.

    The subprocesses are forked from a server process that has imported
    torch, mmdet and this package (nothing built), to save the import time.
    """
    threads = settings.threads or torch.get_num_threads()
    context = get_context('forkserver')
    context.set_forkserver_preload(['torch', 'mmdet.models', 'mmdet_eakd'])
    with ProcessPoolExecutor(
            max_workers=settings.memory_jobs,
            mp_context=context,
            max_tasks_per_child=1) as pool:
        futures = {
            name: pool.submit(cpu_peak_rss_growth, cfg, name,
                              settings.img_size, settings.batch_size,
                              settings.memory_steps, settings.seed, threads,
                              settings.teacher_autocast)
            for name in variants
        }
        return {name: future.result() for name, future in futures.items()}


def _ratio(numerator: Optional[float],
           denominator: Optional[float]) -> Optional[float]:
    """``numerator / denominator``, None when either is missing or 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def benchmark_config(config: str, settings: BenchmarkSettings,
                     work_dir: str) -> Dict:
    """Time (and measure the memory of) every variant of one config.

    A config with one ``distill_loss`` is timed in the variants of
    :data:`VARIANTS` its classifier family has; one with named
    ``distill_terms`` in :func:`named_terms_variants` (each term alone and
    all together), with the ratios of :func:`terms_ratios`. Either also in
    the option variants asked for (a config with named terms: the
    ``teacher_forward`` ones only).

    Args:
        config (str): A distillation config.
        settings (BenchmarkSettings): What to time and how.
        work_dir (str): Where the random teacher checkpoint is written.

    Returns:
        dict: Per-variant times and peak memory, the ratios of medians with
        their bootstrap intervals, and the targets' verdicts (JSON-ready).

    Raises:
        ValueError: For a config that is no distillation config, or lacks
            a variant asked for (with the cause and the fix for a variant
            of one ``distill_loss`` asked of named terms, or the reverse).
    """
    cfg = offline_config(config, work_dir, seed=settings.seed)
    if not is_distill_config(cfg.model):
        raise ValueError(f'{config} is not a distillation config: model.type '
                         f'is {cfg.model.get("type")!r}.')
    check_named_terms_variants(config, cfg.model, settings.variants or ())
    named = cfg.model.get('distill_loss') is None
    if named:
        variants = named_terms_variants(cfg.model)
    else:
        variants = config_variants(cfg.model.distill_loss)
    for given, names in ((settings.channels_last, CHANNELS_LAST_VARIANTS),
                         (settings.teacher_autocast, AUTOCAST_VARIANTS)):
        if given:
            variants += [name for name in names
                         if not named or name in TEACHER_OPTION_VARIANTS]
    if settings.variants:
        missing = sorted(set(settings.variants) - set(variants))
        if missing:
            raise ValueError(f'{config} has no variants {missing} (its '
                             f'variants: {variants}).')
        variants = [name for name in variants if name in settings.variants]
    bench = DistillBench(cfg, variants, settings.img_size,
                         settings.batch_size, settings.device, settings.seed,
                         settings.teacher_autocast)
    cuda = bench.device.type == 'cuda'
    times: Dict[str, List[float]] = {name: [] for name in variants}
    cuda_peak: Dict[str, float] = {name: 0. for name in variants}
    for rnd in range(settings.warmup + settings.steps):
        shift = rnd % len(variants)
        for name in variants[shift:] + variants[:shift]:
            if cuda:
                before = torch.cuda.memory_allocated(bench.device)
                torch.cuda.reset_peak_memory_stats(bench.device)
            elapsed = bench.run(name)
            if rnd < settings.warmup:
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
    elif settings.memory_steps:
        memory = dict(cpu_memory(cfg, variants, settings))
        memory_method = (f'peak RSS growth (VmHWM - VmRSS before) over '
                         f'{settings.memory_steps} steps in a fresh process '
                         'per variant')
    else:
        memory = {name: None for name in variants}
        memory_method = 'not measured (--memory-steps 0)'

    median = {name: statistics.median(values) for name, values in
              times.items()}
    ratio_defs = dict(RATIOS, **CHANNELS_LAST_RATIOS, **AUTOCAST_RATIOS)
    if named:
        ratio_defs.update(terms_ratios(list(cfg.model.distill_terms)))
    ratio_defs = {key: value for key, value in ratio_defs.items()
                  if set(value[0]) <= set(variants)}
    bootstrap = dict(level=BOOTSTRAP_LEVEL, resamples=BOOTSTRAP_RESAMPLES,
                     seed=settings.seed)
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
        img_size=list(settings.img_size),
        teacher_autocast=settings.teacher_autocast,
        batch_size=settings.batch_size,
        steps=settings.steps,
        warmup=settings.warmup,
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


