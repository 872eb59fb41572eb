"""Where EA-LD puts its weight: per positive location, against the IoU.

Pure functions over per-location tensors (no mmdet): for each positive
location of a GFL student, its EA weight ``w`` (from the entropies of the
teacher's and the student's box-edge distributions), its plain LD term, the
teacher's mean edge entropy ``H_T`` and the IoU of the student's box with its
object (the quality target of GFL's loss). The summary answers which
locations EA-LD weighs up, and how that relates to how well the student
localizes them.
"""
from typing import Dict, List

import torch
from torch import Tensor

from .entropy_stats import quartile_edges, quartile_index, quartile_shares


def rank_correlation(x: Tensor, y: Tensor) -> float:
    """Spearman's rank correlation of ``x`` and ``y`` (ties get the mean of
    their ranks).

    Args:
        x (Tensor): Shape (N,), N >= 2.
        y (Tensor): Shape (N,).

    Returns:
        float: In ``[-1, 1]``; NaN when either is constant.
    """
    if x.dim() != 1 or x.shape != y.shape or x.numel() < 2:
        raise ValueError('x and y must be 1-d of one length >= 2, got '
                         f'{tuple(x.shape)} and {tuple(y.shape)}')

    def ranks(v: Tensor) -> Tensor:
        v = v.detach().double().cpu()
        values, inverse, counts = torch.unique(v, return_inverse=True,
                                               return_counts=True)
        last = torch.cumsum(counts, 0).double()  # 1-based rank of the last
        mean_rank = last - (counts.double() - 1) / 2
        return mean_rank[inverse]

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = (rx.square().sum() * ry.square().sum()).sqrt()
    if denominator == 0:
        return float('nan')
    return float((rx * ry).sum() / denominator)


def box_weights_by_iou(ea_weight: Tensor, ld: Tensor, iou: Tensor,
                       entropy_t: Tensor) -> Dict[str, object]:
    """EA-LD's weight and loss share per IoU quartile of the positives.

    Args:
        ea_weight (Tensor): EA weight per positive location, shape (N,).
        ld (Tensor): Plain LD term per location (its distillation loss
            without EA), shape (N,), >= 0.
        iou (Tensor): IoU of the student's box with its object, shape (N,).
        entropy_t (Tensor): The teacher's mean edge entropy, shape (N,).

    Returns:
        dict: ``positives`` (N); ``spearman_weight_iou`` and
        ``spearman_entropy_t_iou`` (rank correlations with the IoU);
        ``iou_edges`` (quartile edges); per IoU quartile Q1 (lowest) .. Q4:
        ``mean_iou``, ``mean_weight``, ``mean_entropy_t``, ``ld_share`` (the
        share of plain LD's loss) and ``ea_ld_share`` (of ``w * LD``).
    """
    n = iou.numel()
    for name, value in (('ea_weight', ea_weight), ('ld', ld),
                        ('entropy_t', entropy_t)):
        if value.shape != iou.shape:
            raise ValueError(f'{name} has shape {tuple(value.shape)}, iou '
                             f'{tuple(iou.shape)}; they must match')
    if n < 4:
        raise ValueError(f'{n} positive locations; quartiles need >= 4')
    edges = quartile_edges(iou)
    index = quartile_index(iou, edges)

    def per_quartile(values: Tensor) -> List[float]:
        values = values.detach().double().cpu()
        return [
            float(values[index == q].mean()) if bool((index == q).any())
            else float('nan') for q in range(4)
        ]

    return dict(
        positives=n,
        spearman_weight_iou=rank_correlation(ea_weight, iou),
        spearman_entropy_t_iou=rank_correlation(entropy_t, iou),
        iou_edges=[float(e) for e in edges],
        mean_iou=per_quartile(iou),
        mean_weight=per_quartile(ea_weight),
        mean_entropy_t=per_quartile(entropy_t),
        ld_share=[float(v) for v in quartile_shares(ld, index)],
        ea_ld_share=[
            float(v) for v in quartile_shares(
                ea_weight.detach().double() * ld.detach().double(), index)
        ])
