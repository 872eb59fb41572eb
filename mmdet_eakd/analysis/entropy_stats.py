# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Numeric summaries behind ``tools/analyze_entropy.py`` (torch only).

The EA-KD paper looks at distillation through the teacher's entropy ``H_T``:
Fig. 5 splits the samples into ``H_T`` quartiles Q1 (lowest) .. Q4 (highest)
and shows which share of the KD and of the EA-KD loss each quartile carries;
Fig. 3 compares ``H_S`` with ``H_T`` on the top-10% ``H_T`` samples. This
module computes those numbers from per-sample tensors; the entropies, weights
and losses themselves come from :mod:`mmdet_eakd.losses.functional`.

All inputs are 1-D tensors of the same length N (one entry per RoI); results
are float64 tensors or plain Python numbers (JSON-ready).
"""
import math
from typing import Dict, List

import torch
from torch import Tensor

#: Names of the quartiles, lowest entropy first.
QUARTILES = ('Q1', 'Q2', 'Q3', 'Q4')


def _check_1d(values: Tensor, name: str) -> None:
    """Raise a ValueError unless ``values`` is finite, 1-D and non-empty."""
    if not isinstance(values, Tensor) or values.dim() != 1:
        raise ValueError(f'{name} must be a 1-D tensor, got '
                         f'{getattr(values, "shape", type(values).__name__)}')
    if values.numel() == 0:
        raise ValueError(f'{name} is empty: there is nothing to summarize')
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f'{name} contains NaN or inf values')


def quartile_edges(values: Tensor) -> Tensor:
    """Min, 25th, 50th, 75th percentile and max of ``values``.

    Args:
        values (Tensor): Shape (N,), N >= 1, finite.

    Returns:
        Tensor: Shape (5,), float64, non-decreasing (linear interpolation
        between order statistics, as ``numpy.percentile``).
    """
    _check_1d(values, 'values')
    levels = torch.tensor([0., .25, .5, .75, 1.], dtype=torch.float64)
    return torch.quantile(values.detach().double().cpu(), levels)


def quartile_index(values: Tensor, edges: Tensor) -> Tensor:
    """The quartile (0 = Q1 .. 3 = Q4) of each value.

    Q1 is ``[min, e1]``, Q2 ``(e1, e2]``, Q3 ``(e2, e3]``, Q4 ``(e3, max]``
    with the inner edges ``e1, e2, e3`` of :func:`quartile_edges`. With tied
    values at an edge the quartiles hold unequal counts.

    Args:
        values (Tensor): Shape (N,).
        edges (Tensor): Shape (5,), from :func:`quartile_edges`.

    Returns:
        Tensor: Shape (N,), int64 in ``[0, 3]``.
    """
    _check_1d(values, 'values')
    if edges.shape != (5, ):
        raise ValueError(
            f'edges must have shape (5,), got {tuple(edges.shape)}')
    return torch.bucketize(values.detach().double().cpu(), edges[1:4].double())


def quartile_shares(loss: Tensor, index: Tensor) -> Tensor:
    """Share of the total ``loss`` carried by each quartile.

    Args:
        loss (Tensor): Per-sample losses, shape (N,), >= 0.
        index (Tensor): Quartile of each sample, shape (N,), in ``[0, 3]``.

    Returns:
        Tensor: Shape (4,), float64, >= 0, summing to 1 (Q1 first).

    Raises:
        ValueError: If a loss is negative or the total loss is 0.
    """
    _check_1d(loss, 'loss')
    if index.shape != loss.shape:
        raise ValueError(f'index has shape {tuple(index.shape)} but loss has '
                         f'shape {tuple(loss.shape)}')
    loss = loss.detach().double().cpu()
    if bool((loss < 0).any()):
        raise ValueError('loss has negative entries; shares need losses >= 0')
    total = loss.sum()
    if total <= 0:
        raise ValueError('The total loss is 0 (e.g. the student equals the '
                         'teacher): loss shares are undefined')
    per_quartile = torch.zeros(4, dtype=torch.float64).index_add_(
        0, index.cpu(), loss)
    return per_quartile / total


def upper_tail_shares(shares: Tensor) -> Dict[str, float]:
    """Shares of the high-entropy tails: Q4, Q3+Q4 and Q2+Q3+Q4.

    Args:
        shares (Tensor): Quartile shares, shape (4,), Q1 first.

    Returns:
        dict[str, float]: ``{'Q4': .., 'Q3+Q4': .., 'Q2+Q3+Q4': ..}``.
    """
    tails = shares.double().flip(0).cumsum(0)
    return {'Q4': float(tails[0]), 'Q3+Q4': float(tails[1]),
            'Q2+Q3+Q4': float(tails[2])}


def top_fraction_mask(values: Tensor, fraction: float = 0.1) -> Tensor:
    """Mask of the ``ceil(fraction * N)`` largest values (ties: any order).

    Args:
        values (Tensor): Shape (N,).
        fraction (float): In ``(0, 1]``. Defaults to 0.1 (the paper's top
            10%).

    Returns:
        Tensor: Shape (N,), bool, with at least one True.
    """
    _check_1d(values, 'values')
    if not 0 < fraction <= 1:
        raise ValueError(f'fraction must be in (0, 1], got {fraction!r}')
    count = math.ceil(fraction * values.numel())
    mask = torch.zeros(values.numel(), dtype=torch.bool)
    mask[values.detach().cpu().topk(count).indices] = True
    return mask


def describe(values: Tensor) -> Dict[str, float]:
    """Count, mean, std, min, quartiles and max of ``values``.

    Args:
        values (Tensor): Shape (N,), N >= 1.

    Returns:
        dict[str, float]: Keys ``count, mean, std, min, q1, median, q3,
        max`` (``std`` is the population std, 0 for N = 1).
    """
    edges = quartile_edges(values)
    values = values.detach().double().cpu()
    return dict(
        count=values.numel(),
        mean=float(values.mean()),
        std=float(values.std(unbiased=False)),
        min=float(edges[0]),
        q1=float(edges[1]),
        median=float(edges[2]),
        q3=float(edges[3]),
        max=float(edges[4]))


def loss_share_summary(entropy_teacher: Tensor,
                       losses: Dict[str, Tensor]) -> Dict[str, object]:
    """Fig. 5 numbers: per-method loss shares by teacher-entropy quartile.

    Args:
        entropy_teacher (Tensor): ``H_T`` per sample, shape (N,).
        losses (dict[str, Tensor]): Per-sample loss of each method (e.g.
            ``'kd'``, ``'ea'``), each shape (N,), >= 0, on the same samples.

    Returns:
        dict: ``quartile_edges`` (list of 5 floats), ``quartile_counts``
        (4 ints) and ``shares``: for each method ``{'Q1'..'Q4': share,
        'upper_tail': upper_tail_shares(...)}``.
    """
    edges = quartile_edges(entropy_teacher)
    index = quartile_index(entropy_teacher, edges)
    shares = {}
    for method, loss in losses.items():
        method_shares = quartile_shares(loss, index)
        shares[method] = dict(zip(QUARTILES, method_shares.tolist()))
        shares[method]['upper_tail'] = upper_tail_shares(method_shares)
    counts: List[int] = torch.bincount(index, minlength=4).tolist()
    return dict(
        quartile_edges=edges.tolist(), quartile_counts=counts, shares=shares)
