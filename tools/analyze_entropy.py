#!/usr/bin/env python
"""EA-KD diagnostics: teacher/student RoI entropies and loss shares, as plots.

Runs the RoI sampling of a training step (no parameter update) over a few
batches of a data set split and, on the sampled RoIs, classifies each RoI with
the teacher's and the student's RoI heads under ``no_grad``. From these logits
(via :mod:`mmdet_eakd.losses.functional`, the same math as training) it writes
to ``--out-dir``:

* ``entropy_hist.png``: histogram of the teacher's RoI entropy ``H_T``
  (at ``--entropy-temperature``), foreground vs background RoIs;
* ``loss_share_quartiles.png`` (the paper's Fig. 5 view): share of the
  distillation loss carried by each ``H_T`` quartile Q1-Q4, plain KD vs EA-KD
  on the same RoIs (stacked bars);
* ``ea_weight_entropy.png`` (the paper's Fig. 3 view): distribution of
  ``w_EA``, box plots of ``H_T`` and ``H_S`` on the top-10% ``H_T`` RoIs, and
  ``H_S`` vs ``H_T`` per RoI;
* ``summary.json``: counts, entropy statistics, quartile edges, loss shares
  per method (``kd``, ``ea_kd``, and ``base`` = weight ``H_T`` alone) and
  top-10% statistics.

Which RoIs and which student:

* with ``--student-config``, the RoIs are the student's sampled RoIs, exactly
  the ones a distillation step distills (every stage's for a Cascade R-CNN):
  the tool builds ``RoIDistillTwoStageDetector`` from the student's model
  config and the teacher, and takes the logit pairs of its public
  ``distill_inputs`` (what its training step passes to the distillation
  loss). The student has the weights of ``--student-checkpoint``, or a random
  initialisation (the state at the start of distillation) without one;
* without ``--student-config``, the RoIs come from the teacher itself: its
  RPN proposals sampled with its ``train_cfg.rcnn`` assigner/sampler (so the
  teacher config needs a ``train_cfg``). The student is then a randomly
  initialised model of the teacher's architecture.

Models run in eval mode (BatchNorm uses running statistics); the data comes
from the config's ``{split}_dataloader`` with its pipeline (training
augmentations included for ``train``). ``--cfg-options`` edits the config
that provides the student model and the data (the student config, or the
teacher config without one).

Example::

    python tools/analyze_entropy.py TEACHER_CONFIG TEACHER_CKPT \\
        --student-config STUDENT_CONFIG --student-checkpoint STUDENT_CKPT \\
        --num-batches 50 --out-dir work_dirs/entropy
"""
import argparse
import json
import math
import os.path as osp
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import mmdet_eakd  # noqa: E402,F401  (first: quiets mmengine)
import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import Runner, load_checkpoint  # noqa: E402
from mmengine.runner.utils import set_random_seed  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402
from torch import Tensor  # noqa: E402

from mmdet.models.detectors import TwoStageDetector  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet_eakd.analysis import (QUARTILES, describe,  # noqa: E402
                                 loss_share_summary, top_fraction_mask)
from mmdet_eakd.distill import load_teacher_config  # noqa: E402
from mmdet_eakd.losses import (ea_kd_loss_per_sample,  # noqa: E402
                               ea_statistics)
from mmdet_eakd.models import (RoIDistillTwoStageDetector,  # noqa: E402
                               student_model_config)

#: Fraction of highest-``H_T`` RoIs in the Fig. 3 view (the paper's 10%).
TOP_FRACTION = 0.1
#: Per-RoI methods compared in the Fig. 5 view: summary key -> weight mode.
METHODS = {'kd': 'none', 'ea_kd': 'ea', 'base': 'base'}
METHOD_LABELS = {'kd': 'KD', 'ea_kd': 'EA-KD'}
QUARTILE_COLORS = ('#1f4e9c', '#7ea6e0', '#f08a7e', '#b2182b')
QUARTILE_LABELS = {
    'Q1': 'Q1 (lowest H_T)', 'Q2': 'Q2', 'Q3': 'Q3', 'Q4': 'Q4 (highest H_T)'
}


class AnalysisError(Exception):
    """A problem with the tool's input, reported without a traceback."""


class RoILogits(NamedTuple):
    """Logits of the sampled RoIs, concatenated over batches.

    ``student`` and ``teacher`` have shape (N, C) with C = num_classes + 1;
    ``labels`` has shape (N,), background = C - 1.
    """
    student: Tensor
    teacher: Tensor
    labels: Tensor
    num_images: int
    num_batches: int


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='Plot teacher/student RoI entropies and the KD vs EA-KD '
        'loss share per teacher-entropy quartile (EA-KD Fig. 3 and 5 views).')
    parser.add_argument('teacher_config', help='teacher config file')
    parser.add_argument('teacher_checkpoint', help='teacher checkpoint file')
    parser.add_argument(
        '--student-config',
        help='student config (plain or distillation config); its sampled '
        'RoIs are analysed. Default: RoIs of the teacher\'s own RPN and '
        'sampler, with a randomly initialised student of its architecture')
    parser.add_argument(
        '--student-checkpoint',
        help='student weights; without them the student is randomly '
        'initialised')
    parser.add_argument(
        '--split', choices=('train', 'val', 'test'), default='train',
        help='data loader of the config to use (default: train)')
    parser.add_argument(
        '--num-batches', type=_positive_int, default=20,
        help='number of batches to analyse (default: 20)')
    parser.add_argument(
        '--max-rois', type=_positive_int,
        help='stop once this many RoIs are collected (default: no limit)')
    parser.add_argument(
        '--entropy-temperature', type=_positive_float, default=3.0,
        help="temperature T' of the entropies and EA weights (default: 3)")
    parser.add_argument(
        '--temperature', type=_positive_float, default=1.0,
        help='KD temperature T (default: 1)')
    parser.add_argument(
        '--seed', type=int, default=0,
        help='random seed (data order, sampling, random init; default: 0)')
    parser.add_argument(
        '--out-dir', default='work_dirs/analyze_entropy',
        help='output directory (default: work_dirs/analyze_entropy)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the student config (or of the teacher '
        'config without a student), e.g. '
        'train_dataloader.dataset.data_root=data/synthetic/')
    args = parser.parse_args(argv)
    if args.student_checkpoint and not args.student_config:
        parser.error('--student-checkpoint needs --student-config')
    return args


def _positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f'must be a number > 0, got {text}')
    return value


def _require_file(path: str, what: str) -> None:
    """Raise :class:`AnalysisError` unless ``path`` is an existing file.

    URLs (``scheme://...``) and ``mmdet::`` config names are not checked.
    """
    if '://' not in path and '::' not in path and not osp.isfile(path):
        raise AnalysisError(f'{what} {path!r} does not exist.')


def build_models(args: argparse.Namespace, cfg: Config):
    """Build the RoI-sampling distiller and, if needed, a separate student.

    Args:
        args (argparse.Namespace): Parsed arguments.
        cfg (Config): The config that provides the student model and data.

    Returns:
        tuple[RoIDistillTwoStageDetector, TwoStageDetector | None]: The
        distiller whose training step samples the RoIs (eval mode), and the
        random-init student of the teacher's architecture when no student
        config is given (None otherwise).
    """
    model_cfg = student_model_config(cfg.model)
    kind = model_cfg.get('type')
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    if not (isinstance(cls, type) and issubclass(cls, TwoStageDetector)):
        raise AnalysisError(
            f'The model is a {kind}; this tool analyses the RoIs of two-stage '
            'detectors. For a dense (one-stage) detector, use '
            'tools/sweep_entropy_temperature.py with its KD / EA-KD config.')
    if not model_cfg.get('train_cfg'):
        raise AnalysisError(
            'The model config has no train_cfg: RoI sampling needs its '
            'rpn_proposal and rcnn assigner/sampler settings.')
    model_cfg.update(
        type=RoIDistillTwoStageDetector,
        teacher=dict(
            config=args.teacher_config, checkpoint=args.teacher_checkpoint),
        distill_loss=dict(type='EAKDLoss', weight_mode='none'))
    probe = MODELS.build(model_cfg)
    separate_student = None
    if args.student_config is None:
        # The teacher's RPN + train_cfg sampler choose the RoIs.
        _load(probe, args.teacher_checkpoint, 'teacher checkpoint')
        separate_student = MODELS.build(student_model_config(cfg.model))
        separate_student.init_weights()
        separate_student.eval()
    elif args.student_checkpoint:
        _load(probe, args.student_checkpoint, 'student checkpoint')
    else:
        probe.init_weights()
    probe.eval()
    return probe, separate_student


def _load(model: torch.nn.Module, checkpoint: str, what: str) -> None:
    """Load ``checkpoint`` strictly into ``model`` with a clear error."""
    _require_file(checkpoint, what.capitalize())
    try:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        logger='silent')
    except RuntimeError as error:
        raise AnalysisError(
            f'The {what} {checkpoint!r} does not fit the model config: '
            f'{error}') from error


@torch.no_grad()
def collect_logits(probe: RoIDistillTwoStageDetector,
                   separate_student: Optional[TwoStageDetector],
                   data_loader, num_batches: int,
                   max_rois: Optional[int]) -> RoILogits:
    """Run the RoI sampling of training steps and collect per-RoI logits.

    ``probe.distill_inputs`` runs a full training forward (no backward) and
    returns the student logits, teacher logits and labels of exactly the RoIs
    a distillation step distills (per group: one, or one per cascade stage;
    the valid ones are kept).

    Args:
        probe (RoIDistillTwoStageDetector): See :func:`build_models`.
        separate_student (TwoStageDetector, optional): If given, it classifies
            the sampled RoIs in place of ``probe``'s own student.
        data_loader (DataLoader): Batches of the analysed split.
        num_batches (int): Maximum number of batches.
        max_rois (int, optional): Stop once this many RoIs are collected.

    Returns:
        RoILogits: Logits (N, C) and labels (N,), truncated to ``max_rois``.
    """
    student: List[Tensor] = []
    teacher: List[Tensor] = []
    labels: List[Tensor] = []
    num_rois = num_images = batches = 0
    progress = ProgressBar(
        min(num_batches, len(data_loader)), file=sys.stdout)
    try:
        for data_batch in data_loader:
            data = probe.data_preprocessor(data_batch, training=True)
            groups = probe.distill_inputs(data['inputs'],
                                          data['data_samples']).groups
            feats = (separate_student.extract_feat(data['inputs'])
                     if separate_student is not None else None)
            for group in groups:
                student_logits = group.student
                if separate_student is not None:
                    # The same RoIs, classified by the separate student.
                    student_logits = probe.adapter.logits(
                        separate_student, feats, group.samples)
                valid = group.valid
                student.append(student_logits[valid].float())
                teacher.append(group.teacher[valid].float())
                labels.append(group.labels[valid])
                num_rois += int(valid.sum())
            num_images += len(data['data_samples'])
            batches += 1
            progress.update()
            if batches >= num_batches or (max_rois and num_rois >= max_rois):
                break
    finally:
        sys.stdout.write('\n')
    if num_rois == 0:
        raise AnalysisError(
            f'No RoIs were sampled in {batches} batch(es): check that the '
            'split has annotated images and the model config samples RoIs.')
    keep = slice(0, max_rois)
    return RoILogits(
        torch.cat(student)[keep], torch.cat(teacher)[keep],
        torch.cat(labels)[keep], num_images, batches)


def summarize(logits: RoILogits, args: argparse.Namespace,
              student_note: str) -> Dict[str, object]:
    """Per-RoI terms (same math as training) and the JSON summary.

    Args:
        logits (RoILogits): Collected logits.
        args (argparse.Namespace): Parsed arguments (temperatures, inputs).
        student_note (str): How the student was obtained.

    Returns:
        dict: The summary; its ``'_per_roi'`` entry holds the (N,) tensors
        ``h_t``, ``h_s``, ``w_ea``, ``foreground``, ``top`` and the
        per-method losses for plotting (removed before writing JSON).
    """
    losses = {
        method: ea_kd_loss_per_sample(
            logits.student, logits.teacher,
            temperature=args.temperature,
            entropy_temperature=args.entropy_temperature,
            weight_mode=mode)
        for method, mode in METHODS.items()
    }
    stats = ea_statistics(logits.student, logits.teacher,
                          entropy_temperature=args.entropy_temperature)
    h_t, h_s, w_ea = stats.entropy_t, stats.entropy_s, stats.ea_weight
    num_classes = logits.teacher.size(1) - 1
    foreground = logits.labels < num_classes
    top = top_fraction_mask(h_t, TOP_FRACTION)
    shares = loss_share_summary(h_t, losses)
    top_shares = {
        method: float(loss[top].sum() / loss.sum())
        for method, loss in losses.items()
    }

    def split_stats(values: Tensor) -> Dict[str, object]:
        stats = {'all': describe(values)}
        for name, mask in (('foreground', foreground),
                           ('background', ~foreground)):
            stats[name] = describe(values[mask]) if mask.any() else None
        return stats

    return dict(
        teacher=dict(config=args.teacher_config,
                     checkpoint=args.teacher_checkpoint),
        student=dict(config=args.student_config,
                     checkpoint=args.student_checkpoint, note=student_note),
        split=args.split,
        temperature=args.temperature,
        entropy_temperature=args.entropy_temperature,
        entropy_upper_bound=math.log(num_classes + 1),
        counts=dict(
            batches=logits.num_batches, images=logits.num_images,
            rois=len(h_t), foreground=int(foreground.sum()),
            background=int((~foreground).sum())),
        entropy_teacher=split_stats(h_t),
        entropy_student=split_stats(h_s),
        ea_weight=describe(w_ea),
        loss_mean={
            method: float(loss.mean()) for method, loss in losses.items()
        },
        **shares,
        top10=dict(
            fraction=TOP_FRACTION,
            count=int(top.sum()),
            entropy_teacher_threshold=float(h_t[top].min()),
            foreground_fraction=float(foreground[top].float().mean()),
            entropy_teacher=describe(h_t[top]),
            entropy_student=describe(h_s[top]),
            ea_weight=describe(w_ea[top]),
            mean_abs_entropy_gap=float((h_s[top] - h_t[top]).abs().mean()),
            loss_share=top_shares),
        _per_roi=dict(h_t=h_t, h_s=h_s, w_ea=w_ea, foreground=foreground,
                      top=top, **losses))


def plot_entropy_hist(summary: Dict[str, object], path: Path) -> None:
    """Histogram of ``H_T``, foreground vs background RoIs."""
    per_roi = summary['_per_roi']
    h_t, foreground = per_roi['h_t'], per_roi['foreground']
    upper = summary['entropy_upper_bound']
    bins = torch.linspace(0, upper, 41).tolist()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, mask, color in (('background', ~foreground, '#7f7f7f'),
                              ('foreground', foreground, '#d62728')):
        values = h_t[mask]
        if values.numel():
            # Each group sums to 1: foreground RoIs are a small minority.
            ax.hist(values.tolist(), bins=bins, alpha=0.6, color=color,
                    weights=[1 / values.numel()] * values.numel(),
                    label=f'{name} RoIs (n={values.numel()}, '
                    f'mean={float(values.mean()):.3f})')
    ax.axvline(upper, color='k', ls='--', lw=1, label=f'log C = {upper:.3f}')
    temperature = summary['entropy_temperature']
    ax.set_xlabel(f"teacher entropy H_T (T'={temperature:g})")
    ax.set_ylabel("fraction of the group's RoIs")
    ax.set_title('Teacher RoI entropy: foreground vs background')
    ax.legend(loc='upper left')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_loss_shares(summary: Dict[str, object], path: Path) -> None:
    """Fig. 5 view: stacked loss shares per ``H_T`` quartile, KD vs EA-KD."""
    methods = list(METHOD_LABELS)
    fig, ax = plt.subplots(figsize=(6, 5))
    bottoms = [0.0] * len(methods)
    for quartile, color in zip(QUARTILES, QUARTILE_COLORS):
        heights = [summary['shares'][m][quartile] for m in methods]
        ax.bar([METHOD_LABELS[m] for m in methods], heights, 0.6,
               bottom=bottoms, color=color, label=quartile)
        for i, (height, bottom) in enumerate(zip(heights, bottoms)):
            if height > 0.03:
                ax.text(i, bottom + height / 2, f'{100 * height:.1f}%',
                        ha='center', va='center', color='white', fontsize=9)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    ax.set_ylim(0, 1)
    ax.set_ylabel('share of the distillation loss')
    ax.set_title('Loss share by teacher-entropy quartile\n'
                 f'(Fig. 5 view; {summary["counts"]["rois"]} RoIs, '
                 f'{summary["student"]["note"]})', fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], [QUARTILE_LABELS[q] for q in labels[::-1]],
              loc='center left', bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ea_weight_entropy(summary: Dict[str, object], path: Path) -> None:
    """Fig. 3 view: ``w_EA`` histogram, ``H_T``/``H_S`` of the top-10%."""
    per_roi = summary['_per_roi']
    h_t, h_s, w_ea, top = (per_roi[k] for k in ('h_t', 'h_s', 'w_ea', 'top'))
    upper = summary['entropy_upper_bound']
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))

    ax = axes[0]
    bins = torch.linspace(0, upper, 41).tolist()
    ax.hist([w_ea[~top].tolist(), w_ea[top].tolist()], bins=bins,
            stacked=True, color=['#7f7f7f', '#d62728'],
            label=['other RoIs', 'top-10% H_T RoIs'])
    ax.set_xlabel('w_EA = (H_T + H_T * H_S / log C) / 2')
    ax.set_ylabel('number of RoIs')
    ax.set_title(f'Distribution of w_EA (mean {float(w_ea.mean()):.3f})')
    ax.legend()

    ax = axes[1]
    ax.boxplot([h_t[top].tolist(), h_s[top].tolist()], showfliers=True)
    ax.set_xticks([1, 2], ['H_T (teacher)', 'H_S (student)'])
    ax.axhline(upper, color='k', ls='--', lw=1, label=f'log C = {upper:.3f}')
    ax.set_ylabel('entropy (axis zoomed to the data)')
    ax.legend(loc='lower right')
    ax.set_title(f'H_T vs H_S on the top-10% H_T RoIs (n={int(top.sum())})')

    ax = axes[2]
    ax.scatter(h_t[~top].tolist(), h_s[~top].tolist(), s=4, c='#7f7f7f',
               alpha=0.4, label='other RoIs')
    ax.scatter(h_t[top].tolist(), h_s[top].tolist(), s=8, c='#d62728',
               marker='^', label='top-10% H_T RoIs')
    ax.plot([0, upper], [0, upper], 'k--', lw=1, label='H_S = H_T')
    ax.set_xlim(0, upper * 1.05)
    ax.set_ylim(0, upper * 1.05)
    ax.set_xlabel('teacher entropy H_T')
    ax.set_ylabel('student entropy H_S')
    ax.set_title('H_S vs H_T per RoI')
    ax.legend(loc='lower right')

    fig.suptitle(f'EA weights and entropies (Fig. 3 view, T\'='
                 f'{summary["entropy_temperature"]:g}; '
                 f'{summary["student"]["note"]})')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> Dict[str, object]:
    """Collect the logits, write the plots and ``summary.json``.

    Returns:
        dict: The summary as written to ``summary.json``.
    """
    _require_file(args.teacher_checkpoint, 'Teacher checkpoint')
    if args.student_checkpoint:
        _require_file(args.student_checkpoint, 'Student checkpoint')
    if args.student_config:
        _require_file(args.student_config, 'Student config')
        cfg = Config.fromfile(args.student_config)
    else:
        cfg = load_teacher_config(args.teacher_config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    # The 'current' logger: keeps mmengine's per-parameter init dump quiet.
    if not MMLogger.check_instance_created('analyze_entropy'):
        MMLogger.get_instance('analyze_entropy', log_level='WARNING')
    set_random_seed(args.seed)
    probe, separate_student = build_models(args, cfg)
    if args.student_config is None:
        student_note = 'RoIs from the teacher; random-init student'
    elif args.student_checkpoint is None:
        student_note = 'student: random init'
    else:
        student_note = 'student: trained'
    loader_cfg = cfg.get(f'{args.split}_dataloader')
    if not loader_cfg:
        raise AnalysisError(f'The config has no {args.split}_dataloader.')
    data_loader = Runner.build_dataloader(loader_cfg, seed=args.seed)
    logits = collect_logits(probe, separate_student, data_loader,
                            args.num_batches, args.max_rois)
    summary = summarize(logits, args, student_note)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_entropy_hist(summary, out_dir / 'entropy_hist.png')
    plot_loss_shares(summary, out_dir / 'loss_share_quartiles.png')
    plot_ea_weight_entropy(summary, out_dir / 'ea_weight_entropy.png')
    summary.pop('_per_roi')
    (out_dir / 'summary.json').write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        summary = run(args)
    except (AnalysisError, FileNotFoundError, KeyError, ValueError,
            TypeError) as error:
        print(f'analyze_entropy.py: error: {error}', file=sys.stderr)
        return 1
    shares = summary['shares']
    print(f"{summary['counts']['rois']} RoIs "
          f"({summary['counts']['foreground']} foreground) from "
          f"{summary['counts']['images']} images. Loss share of Q4 / Q3+Q4: "
          + ', '.join(
              f"{label} {shares[m]['upper_tail']['Q4']:.3f} / "
              f"{shares[m]['upper_tail']['Q3+Q4']:.3f}"
              for m, label in METHOD_LABELS.items()))
    print(f'Wrote plots and summary.json to {args.out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
