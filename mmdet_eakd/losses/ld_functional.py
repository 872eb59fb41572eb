# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Pure math of EA localization distillation (EA-LD) on box distributions.

Heads of the GFL family predict each of the 4 edges of a box (the distances
left, top, right, bottom of the location; GFL's ``distance2bbox`` order) as
a discrete distribution over the ``reg_max + 1`` bins ``{0, 1, ...,
reg_max}``: ``softmax`` of ``reg_max + 1`` logits, whose expectation is the
edge's distance (mmdet's ``Integral``). Localization distillation (LD, Zheng
et al., CVPR 2022) transfers the teacher's edge distributions to the student
by a KL divergence at a high temperature (mmdet's LD: ``T = 10``).

Everything here depends on ``torch`` only and follows the conventions of
:mod:`.functional` (read its module docstring): math in at least float32,
the teacher detached, ``-inf`` logits are bins of probability exactly 0,
nothing validated and no tensor value read on the host, NaN (or ``+inf``, or
an edge whose logits are all ``-inf``) makes its own location's values NaN
and leaves the other locations untouched.

Layout. The logits of a location are one row of shape ``(4 * (reg_max +
1),)``: GFL's ``bbox_pred.permute(0, 2, 3, 1).reshape(-1, 4 * (reg_max +
1))``; edge ``e`` holds columns ``[e * (reg_max + 1), (e + 1) * (reg_max +
1))``, as ``Integral`` and ``LDHead`` split them with ``reshape(-1, reg_max +
1)``. So every function takes (student and teacher) logits of shape ``(N, 4
* (reg_max + 1))``, ``N`` locations, and returns one value per location (or
per edge, shape ``(N, 4)``).

Normalisation (and how it relates to mmdet's LD):

- Per edge, the KD term is ``T^2 * KL(softmax(z_T / T) || softmax(z_S /
  T))``, the KL summed over the bins (``bin_reduction='sum'``, the same term
  as :func:`.functional.kd_loss_per_sample`). mmdet's
  ``knowledge_distillation_kl_div_loss`` (used by ``LDHead`` through
  ``KnowledgeDistillationKLDivLoss``) takes ``F.kl_div(..., reduction=
  'none').mean(1)``: the KL *averaged* over the bins, i.e. the true KL
  divided by ``reg_max + 1``. ``bin_reduction='mean'`` (the default here)
  does the same, so that ``T = 10`` and ``loss_weight = 0.25`` mean what
  they mean in mmdet's LD configs.
- Per location, the 4 edge terms are *averaged*, as in ``LDHead``, which
  passes each location's cls-score weight to its 4 edge rows and divides by
  ``avg_factor=4.0``. Hence, for ``N`` positive locations with weights
  ``w`` (``LDHead``: the max sigmoid cls score, detached)::

      mmdet LD = loss_weight * sum_n w_n * LD_n * 4 / (4 + eps)

  with ``LD_n = ld_loss_per_location(..., bin_reduction='mean')`` and
  ``eps = finfo(float32).eps`` (mmdet's guard in ``weight_reduce_loss``).
  Note that ``LDHead``'s LD is a *sum* over the positive locations (per FPN
  level, then over levels), not divided by their number or by the sum of
  ``w`` as its ``loss_bbox`` and ``loss_dfl`` are.
- The entropy of a location is the *mean* of its 4 edge entropies (each of
  ``softmax(z / T')`` over the bins), so it lies in ``[0, log(reg_max +
  1)]`` and ``H_ub = log(reg_max + 1)`` (:func:`ld_entropy_upper_bound`)
  bounds it as ``log C`` bounds the classification entropy: the weights of
  the four modes (:func:`.functional.entropy_weights`) keep their ranges
  (``[0, H_ub]``; ones for ``'none'``) and the interaction term ``H_T * H_S /
  H_ub`` its meaning. A sum over edges would lie in ``[0, 4 H_ub]``.
- The EA-LD term of a location is ``w_n * LD_n``: one detached weight per
  location (from its mean edge entropies) times the mean of its edge terms.

One pass. :func:`ea_ld_loss_and_statistics` returns the per-location loss
and its :class:`~.functional.EAStats` from one computation of the
entropies; :func:`ea_ld_loss_per_location` is its loss alone (and computes
no entropy for ``weight_mode='none'``).
"""
import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .functional import (EAStats, _prepare_pair, _statistics,
                         kd_loss_per_sample, softened_entropy)

#: Edges of a box: left, top, right, bottom distances (GFL's order).
NUM_EDGES: int = 4

#: Default ``reg_max`` of mmdet's GFL heads (17 bins per edge).
GFL_REG_MAX: int = 16

#: LD's distillation temperature in mmdet's LD configs (``T=10``).
LD_TEMPERATURE: float = 10.0

#: Default entropy temperature ``T'`` of EA-LD: 1, the entropy of the
#: head's own edge distribution (what its ``Integral`` and GFLv2's quality
#: branch read), as :data:`.functional.SIGMOID_ENTROPY_TEMPERATURE` for
#: dense classifiers. At ``T' = T = 10`` the 17-bin distributions are so
#: flat that every location's entropy is close to ``log 17``. Not tuned.
LD_ENTROPY_TEMPERATURE: float = 1.0

#: How the KL of an edge is reduced over its bins: ``'mean'`` (mmdet's
#: ``KnowledgeDistillationKLDivLoss``: the KL divided by ``reg_max + 1``)
#: or ``'sum'`` (the KL divergence itself).
BIN_REDUCTIONS = ('mean', 'sum')


class LossAndStats(NamedTuple):
    """A loss and its EA statistics, from one computation of the entropies.

    Attributes:
        loss (Tensor): The loss: per location, shape (N,), from
            :func:`ea_ld_loss_and_statistics`; reduced (times
            ``loss_weight``) from ``EALDLoss.loss_and_stats``.
        stats (EAStats): Detached per-location ``ea_weight`` (the weight
            the loss applied), ``entropy_t`` and ``entropy_s`` (means over
            the 4 edges), each of shape (N,).
    """
    loss: Tensor
    stats: EAStats


def ld_entropy_upper_bound(reg_max: int) -> float:
    """``H_ub = log(reg_max + 1)``: the largest entropy of an edge (uniform
    over its bins), hence of a location's mean edge entropy."""
    return math.log(reg_max + 1)


def edge_logits(logits: Tensor, reg_max: int = GFL_REG_MAX) -> Tensor:
    """Split each location's logits into its 4 edges.

    Args:
        logits (Tensor): Box distribution logits, shape
            (N, 4 * (reg_max + 1)).
        reg_max (int): Largest bin; each edge has ``reg_max + 1`` bins.

    Returns:
        Tensor: Shape (N, 4, reg_max + 1); ``[:, e]`` is edge ``e`` (left,
        top, right, bottom), the rows ``Integral`` reads.
    """
    return logits.reshape(logits.size(0), NUM_EDGES, reg_max + 1)


def usable_box_rows(logits: Tensor, reg_max: int = GFL_REG_MAX) -> Tensor:
    """Which rows of box distribution logits are distributions to distil.

    A row (location) is usable when each of its 4 edges is a distribution:
    no NaN, no ``+inf`` and not every bin ``-inf``, i.e. a finite maximum
    per edge (the rule of softmax classification logits, per edge). Computed
    on the device (no host read).

    Args:
        logits (Tensor): Box distribution logits, shape
            (N, 4 * (reg_max + 1)).
        reg_max (int): Largest bin. Defaults to 16.

    Returns:
        Tensor: Shape (N,), bool.
    """
    return torch.isfinite(edge_logits(logits, reg_max).amax(dim=2)).all(dim=1)


def _edge_rows(logits: Tensor, reg_max: int) -> Tensor:
    """``(N, 4 * (reg_max + 1))`` -> ``(N * 4, reg_max + 1)``, one row per
    edge, location-major (mmdet's ``reshape(-1, reg_max + 1)``)."""
    return logits.reshape(logits.size(0) * NUM_EDGES, reg_max + 1)


def edge_entropies(logits: Tensor,
                   *,
                   reg_max: int = GFL_REG_MAX,
                   temperature: float = LD_ENTROPY_TEMPERATURE) -> Tensor:
    """Entropy of each edge distribution, ``softmax(z / T')`` over its bins.

    Args:
        logits (Tensor): Box distribution logits, shape
            (N, 4 * (reg_max + 1)).
        reg_max (int): Largest bin. Defaults to 16.
        temperature (float): Entropy temperature ``T' > 0``. Defaults to
            :data:`LD_ENTROPY_TEMPERATURE`.

    Returns:
        Tensor: Entropies in ``[0, log(reg_max + 1)]``, shape (N, 4), in the
        compute dtype (float32, or float64 for float64 input).
    """
    rows = _edge_rows(logits, reg_max)
    return softened_entropy(rows, temperature).reshape(logits.size(0),
                                                       NUM_EDGES)


def location_entropy(logits: Tensor,
                     *,
                     reg_max: int = GFL_REG_MAX,
                     temperature: float = LD_ENTROPY_TEMPERATURE) -> Tensor:
    """The entropy of a location: the mean of its 4 edge entropies.

    Args: as :func:`edge_entropies`.

    Returns:
        Tensor: Shape (N,), in ``[0, log(reg_max + 1)]``.
    """
    return edge_entropies(logits, reg_max=reg_max,
                          temperature=temperature).mean(dim=1)


def ld_loss_per_edge(student_logits: Tensor,
                     teacher_logits: Tensor,
                     *,
                     reg_max: int = GFL_REG_MAX,
                     temperature: float = LD_TEMPERATURE,
                     bin_reduction: str = 'mean') -> Tensor:
    """LD's KD term of each edge.

    ``T^2 * KL(softmax(z_T / T) || softmax(z_S / T))`` over the edge's
    ``reg_max + 1`` bins, divided by ``reg_max + 1`` for
    ``bin_reduction='mean'`` (then equal to mmdet's
    ``knowledge_distillation_kl_div_loss`` on the edge's row). The teacher
    logits are detached.

    Args:
        student_logits (Tensor): Student logits, shape (N, 4 * (reg_max + 1)).
        teacher_logits (Tensor): Teacher logits, same shape.
        reg_max (int): Largest bin. Defaults to 16.
        temperature (float): Distillation temperature ``T > 0``. Defaults to
            :data:`LD_TEMPERATURE`.
        bin_reduction (str): One of :data:`BIN_REDUCTIONS`. Defaults to
            ``'mean'`` (mmdet's).

    Returns:
        Tensor: Shape (N, 4), in the compute dtype.

    Raises:
        ValueError: If ``bin_reduction`` is not one of
            :data:`BIN_REDUCTIONS`.
    """
    if bin_reduction not in BIN_REDUCTIONS:
        raise ValueError(f'bin_reduction must be one of {BIN_REDUCTIONS}, '
                         f'got {bin_reduction!r}')
    kl = kd_loss_per_sample(_edge_rows(student_logits, reg_max),
                            _edge_rows(teacher_logits, reg_max), temperature)
    if bin_reduction == 'mean':
        kl = kl / (reg_max + 1)
    return kl.reshape(student_logits.size(0), NUM_EDGES)


def ld_loss_per_location(student_logits: Tensor,
                         teacher_logits: Tensor,
                         *,
                         reg_max: int = GFL_REG_MAX,
                         temperature: float = LD_TEMPERATURE,
                         bin_reduction: str = 'mean') -> Tensor:
    """Plain LD per location: the mean of its 4 edge terms.

    Args: as :func:`ld_loss_per_edge`.

    Returns:
        Tensor: Shape (N,), in the compute dtype, differentiable w.r.t. the
        student logits.
    """
    return ld_loss_per_edge(student_logits,
                            teacher_logits,
                            reg_max=reg_max,
                            temperature=temperature,
                            bin_reduction=bin_reduction).mean(dim=1)


def _location_statistics(student: Tensor, teacher: Tensor, reg_max: int,
                         entropy_temperature: float, weight_mode: str,
                         entropy_upper_bound: Optional[float]) -> EAStats:
    """:class:`EAStats` of prepared (upcast, teacher detached) logits."""
    if entropy_upper_bound is None:
        entropy_upper_bound = ld_entropy_upper_bound(reg_max)

    def entropy(logits: Tensor, temperature: float) -> Tensor:
        return location_entropy(logits,
                                reg_max=reg_max,
                                temperature=temperature)

    return _statistics(entropy, student, teacher, entropy_temperature,
                       weight_mode, entropy_upper_bound)


def ea_ld_statistics(student_logits: Tensor,
                     teacher_logits: Tensor,
                     *,
                     reg_max: int = GFL_REG_MAX,
                     entropy_temperature: float = LD_ENTROPY_TEMPERATURE,
                     weight_mode: str = 'ea',
                     entropy_upper_bound: Optional[float] = None) -> EAStats:
    """Per-location EA weights and mean edge entropies, without gradient.

    Only the statistics; to train, :func:`ea_ld_loss_and_statistics` gives
    the loss and these statistics from one computation of the entropies.

    Args:
        student_logits (Tensor): Student logits, shape (N, 4 * (reg_max + 1)).
        teacher_logits (Tensor): Teacher logits, same shape.
        reg_max (int): Largest bin. Defaults to 16.
        entropy_temperature (float): ``T' > 0``. Defaults to
            :data:`LD_ENTROPY_TEMPERATURE`.
        weight_mode (str): One of ``WEIGHT_MODES``. Defaults to ``'ea'``.
        entropy_upper_bound (float, optional): ``H_ub``; None means
            ``log(reg_max + 1)``. Defaults to None.

    Returns:
        EAStats: Detached ``ea_weight``, ``entropy_t``, ``entropy_s``, each
        of shape (N,), in the compute dtype; the entropies are computed in
        every mode (ones are the weights of ``'none'``).
    """
    student, teacher = _prepare_pair(student_logits,
                                     teacher_logits,
                                     logit_standardization=False)
    return _location_statistics(student, teacher, reg_max, entropy_temperature,
                                weight_mode, entropy_upper_bound)


def _ea_ld(student_logits: Tensor, teacher_logits: Tensor, reg_max: int,
           temperature: float, entropy_temperature: float, weight_mode: str,
           entropy_upper_bound: Optional[float], bin_reduction: str,
           with_stats: bool) -> LossAndStats:
    """Per-location EA-LD and (if asked or needed) its statistics; the
    entropies are computed at most once, not at all for ``'none'`` without
    statistics (``stats`` is then None)."""
    student, teacher = _prepare_pair(student_logits,
                                     teacher_logits,
                                     logit_standardization=False)
    ld = ld_loss_per_location(student,
                              teacher,
                              reg_max=reg_max,
                              temperature=temperature,
                              bin_reduction=bin_reduction)
    if weight_mode == 'none' and not with_stats:
        return LossAndStats(ld, None)
    stats = _location_statistics(student, teacher, reg_max,
                                 entropy_temperature, weight_mode,
                                 entropy_upper_bound)
    return LossAndStats(stats.ea_weight * ld, stats)


def ea_ld_loss_and_statistics(
        student_logits: Tensor,
        teacher_logits: Tensor,
        *,
        reg_max: int = GFL_REG_MAX,
        temperature: float = LD_TEMPERATURE,
        entropy_temperature: float = LD_ENTROPY_TEMPERATURE,
        weight_mode: str = 'ea',
        entropy_upper_bound: Optional[float] = None,
        bin_reduction: str = 'mean') -> LossAndStats:
    """EA-LD per location, ``w_n * LD_n``, and its statistics in one pass.

    ``w_n`` is the detached weight of ``weight_mode`` from the mean edge
    entropies of the teacher and the student at ``entropy_temperature``
    with ``H_ub = log(reg_max + 1)`` (or ``entropy_upper_bound``); ``LD_n``
    is :func:`ld_loss_per_location` at ``temperature``. The statistics are
    those that weighted the loss: each entropy is computed once.

    Args:
        student_logits (Tensor): Student logits, shape (N, 4 * (reg_max + 1)).
        teacher_logits (Tensor): Teacher logits, same shape; detached.
        reg_max (int): Largest bin. Defaults to 16.
        temperature (float): LD temperature ``T > 0``. Defaults to
            :data:`LD_TEMPERATURE`.
        entropy_temperature (float): ``T' > 0``. Defaults to
            :data:`LD_ENTROPY_TEMPERATURE`.
        weight_mode (str): One of ``WEIGHT_MODES``. Defaults to ``'ea'``.
        entropy_upper_bound (float, optional): ``H_ub``; None means
            ``log(reg_max + 1)``. Defaults to None.
        bin_reduction (str): One of :data:`BIN_REDUCTIONS`. Defaults to
            ``'mean'`` (mmdet's).

    Returns:
        LossAndStats: ``loss`` of shape (N,) in the compute dtype,
        differentiable w.r.t. the student logits (not through the weight),
        and the detached per-location ``stats``.
    """
    return _ea_ld(student_logits,
                  teacher_logits,
                  reg_max,
                  temperature,
                  entropy_temperature,
                  weight_mode,
                  entropy_upper_bound,
                  bin_reduction,
                  with_stats=True)


def ea_ld_loss_per_location(
        student_logits: Tensor,
        teacher_logits: Tensor,
        *,
        reg_max: int = GFL_REG_MAX,
        temperature: float = LD_TEMPERATURE,
        entropy_temperature: float = LD_ENTROPY_TEMPERATURE,
        weight_mode: str = 'ea',
        entropy_upper_bound: Optional[float] = None,
        bin_reduction: str = 'mean') -> Tensor:
    """EA-LD per location, ``w_n * LD_n``, without the statistics.

    The ``loss`` of :func:`ea_ld_loss_and_statistics`; mode ``'none'``
    (plain LD) computes no entropy.

    Args: as :func:`ea_ld_loss_and_statistics`.

    Returns:
        Tensor: Shape (N,), in the compute dtype.
    """
    return _ea_ld(student_logits,
                  teacher_logits,
                  reg_max,
                  temperature,
                  entropy_temperature,
                  weight_mode,
                  entropy_upper_bound,
                  bin_reduction,
                  with_stats=False).loss
