# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""The RoI entropy diagnostics of ``tools/analyze_entropy.py``: numbers and
plots from the logit pairs of the distilled RoIs (torch and matplotlib only).

:func:`summarize_roi_entropies` computes, with the same math as training
(:mod:`mmdet_eakd.losses.functional`), the teacher's and the student's
entropies ``H_T`` and ``H_S`` at ``T'``, the EA weights and the per-RoI
losses of plain KD, EA-KD and the ``base`` weight ``H_T`` alone, and
summarises them: entropy statistics (foreground / background), the share of
each method's loss per ``H_T`` quartile (the paper's Fig. 5 view) and the
top-10% ``H_T`` RoIs (Fig. 3 view). The three ``plot_*`` functions draw them.
"""
import math
from pathlib import Path
from typing import Dict, NamedTuple, Optional

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from ..losses import ea_kd_loss_per_sample, ea_statistics  # noqa: E402
from .entropy_stats import (QUARTILES, describe,  # noqa: E402
                            loss_share_summary, top_fraction_mask)

#: Fraction of highest-``H_T`` RoIs in the Fig. 3 view (the paper's 10%).
TOP_FRACTION = 0.1
#: Per-RoI methods compared in the Fig. 5 view: summary key -> weight mode.
METHODS = {'kd': 'none', 'ea_kd': 'ea', 'base': 'base'}
METHOD_LABELS = {'kd': 'KD', 'ea_kd': 'EA-KD'}
QUARTILE_COLORS = ('#1f4e9c', '#7ea6e0', '#f08a7e', '#b2182b')
QUARTILE_LABELS = {
    'Q1': 'Q1 (lowest H_T)', 'Q2': 'Q2', 'Q3': 'Q3', 'Q4': 'Q4 (highest H_T)'
}


class RoIEntropies(NamedTuple):
    """The summary of :func:`summarize_roi_entropies` and its per-RoI data.

    Attributes:
        summary (dict): JSON-ready numbers (see the function).
        per_roi (dict[str, Tensor]): Shape (N,) each: ``h_t``, ``h_s``,
            ``w_ea``, ``foreground`` and ``top`` (bool) and the loss of
            each method of :data:`METHODS`, for the plots.
    """
    summary: Dict[str, object]
    per_roi: Dict[str, Tensor]


def summarize_roi_entropies(student: Tensor, teacher: Tensor, labels: Tensor,
                            temperature: float,
                            entropy_temperature: float) -> RoIEntropies:
    """Entropies, EA weights and loss shares of distilled RoIs.

    Args:
        student (Tensor): Student logits, shape (N, C), C = num_classes + 1.
        teacher (Tensor): Teacher logits on the same RoIs, shape (N, C).
        labels (Tensor): RoI labels, shape (N,), background = C - 1.
        temperature (float): KD temperature ``T``.
        entropy_temperature (float): ``T'`` of the entropies and weights.

    Returns:
        RoIEntropies: ``summary`` holds ``temperature``,
        ``entropy_temperature``, ``entropy_upper_bound`` (log C),
        ``counts`` (rois, foreground, background), ``entropy_teacher`` and
        ``entropy_student`` (all / foreground / background statistics),
        ``ea_weight``, ``loss_mean`` per method, the quartile edges, counts
        and ``shares`` of :func:`loss_share_summary`, and ``top10``.
    """
    losses = {
        method: ea_kd_loss_per_sample(
            student, teacher, temperature=temperature,
            entropy_temperature=entropy_temperature, weight_mode=mode)
        for method, mode in METHODS.items()
    }
    stats = ea_statistics(student, teacher,
                          entropy_temperature=entropy_temperature)
    h_t, h_s, w_ea = stats.entropy_t, stats.entropy_s, stats.ea_weight
    num_classes = teacher.size(1) - 1
    foreground = labels < num_classes
    top = top_fraction_mask(h_t, TOP_FRACTION)

    def split_stats(values: Tensor) -> Dict[str, Optional[dict]]:
        """Statistics of all RoIs, the foreground and the background ones."""
        split: Dict[str, Optional[dict]] = {'all': describe(values)}
        for name, mask in (('foreground', foreground),
                           ('background', ~foreground)):
            split[name] = describe(values[mask]) if mask.any() else None
        return split

    summary = dict(
        temperature=temperature,
        entropy_temperature=entropy_temperature,
        entropy_upper_bound=math.log(num_classes + 1),
        counts=dict(rois=len(h_t), foreground=int(foreground.sum()),
                    background=int((~foreground).sum())),
        entropy_teacher=split_stats(h_t),
        entropy_student=split_stats(h_s),
        ea_weight=describe(w_ea),
        loss_mean={
            method: float(loss.mean()) for method, loss in losses.items()
        },
        **loss_share_summary(h_t, losses),
        top10=dict(
            fraction=TOP_FRACTION,
            count=int(top.sum()),
            entropy_teacher_threshold=float(h_t[top].min()),
            foreground_fraction=float(foreground[top].float().mean()),
            entropy_teacher=describe(h_t[top]),
            entropy_student=describe(h_s[top]),
            ea_weight=describe(w_ea[top]),
            mean_abs_entropy_gap=float((h_s[top] - h_t[top]).abs().mean()),
            loss_share={
                method: float(loss[top].sum() / loss.sum())
                for method, loss in losses.items()
            }))
    per_roi = dict(h_t=h_t, h_s=h_s, w_ea=w_ea, foreground=foreground,
                   top=top, **losses)
    return RoIEntropies(summary, per_roi)


def plot_entropy_hist(entropies: RoIEntropies, path: Path) -> None:
    """Histogram of ``H_T``, foreground vs background RoIs, to ``path``."""
    summary, per_roi = entropies
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


def plot_loss_shares(entropies: RoIEntropies, path: Path, note: str) -> None:
    """Fig. 5 view: stacked loss shares per ``H_T`` quartile, KD vs EA-KD.

    Args:
        entropies (RoIEntropies): From :func:`summarize_roi_entropies`.
        path (Path): The image file to write.
        note (str): Which student, for the title.
    """
    summary = entropies.summary
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
                 f'(Fig. 5 view; {summary["counts"]["rois"]} RoIs, {note})',
                 fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], [QUARTILE_LABELS[q] for q in labels[::-1]],
              loc='center left', bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ea_weight_entropy(entropies: RoIEntropies, path: Path,
                           note: str) -> None:
    """Fig. 3 view: ``w_EA`` histogram, ``H_T``/``H_S`` of the top-10%.

    Args:
        entropies (RoIEntropies): From :func:`summarize_roi_entropies`.
        path (Path): The image file to write.
        note (str): Which student, for the title.
    """
    summary, per_roi = entropies
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
                 f'{summary["entropy_temperature"]:g}; {note})')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
