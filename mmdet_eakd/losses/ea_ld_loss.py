# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Registered EA-LD loss: argument checks + :mod:`.ld_functional`.

Same contract as the EA-KD modules of :mod:`.ea_kd_loss`: the arguments are
checked where they enter (hyper-parameters in the constructor; the tensors'
types, shapes and devices in each call), the logits' values are not read on
the host unless ``check_finite=True``, and a non-finite location makes its
own term (and its own row of the gradient) NaN.
"""
from typing import Optional

import torch
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS
from torch import Tensor, nn

from .ea_kd_loss import (REDUCTIONS, _check, check_floating,
                         check_same_shape_and_device, set_ea_arguments)
from .functional import EAStats
from .ld_functional import (BIN_REDUCTIONS, GFL_REG_MAX,
                            LD_ENTROPY_TEMPERATURE, LD_TEMPERATURE, NUM_EDGES,
                            LossAndStats, _ea_ld, edge_logits,
                            ea_ld_statistics)

#: What :class:`EALDLoss` distils (its :attr:`EALDLoss.distills`): box-edge
#: distributions, logits of shape (N, 4 * (reg_max + 1)).
BOX_DISTRIBUTION = 'box_distribution'


def _location_and_edge(index: int, num_bins: int) -> str:
    """``'location n, edge e'`` of an index into the flattened
    ``(N, 4 * num_bins)`` logits."""
    return f'location {index // (NUM_EDGES * num_bins)}, edge ' \
           f'{index % (NUM_EDGES * num_bins) // num_bins}'


@MODELS.register_module()
class EALDLoss(nn.Module):
    """Entropy-adaptive localization distillation (EA-LD) for GFL heads.

    Per location ``n`` (a row of the head's box distribution logits,
    ``(4 * (reg_max + 1),)``, edges left, top, right, bottom), ``w_n * LD_n``
    with

    - ``LD_n`` the mean over the 4 edges of ``T^2 * KL(softmax(z_T / T) ||
      softmax(z_S / T))`` over the edge's bins, divided by ``reg_max + 1``
      with ``bin_reduction='mean'`` as in mmdet's
      ``KnowledgeDistillationKLDivLoss`` (see :mod:`.ld_functional`);
    - ``w_n`` the detached weight of ``weight_mode`` from the mean edge
      entropies ``H_T``, ``H_S`` at ``entropy_temperature`` and ``H_ub =
      log(reg_max + 1)``: ``'ea'`` ``H_T (1 + H_S / H_ub) / 2``, ``'base'``
      ``H_T``, ``'interact'`` ``H_T H_S / H_ub``, ``'none'`` 1 (plain LD).

    then times the optional per-location ``weight``, reduced as mmdet's
    losses are (``weight_reduce_loss``), times ``loss_weight``.

    mmdet's ``LDHead`` (``loss_ld=dict(type='KnowledgeDistillationKLDivLoss',
    loss_weight=0.25, T=10)``) on positive locations with cls-score weights
    ``w`` is ``EALDLoss(weight_mode='none', reduction='sum')(s, t,
    weight=w)`` (times ``4 / (4 + finfo(float32).eps)``): a sum over the
    positives, not a mean.

    The loss does not declare a ``classifier`` (it does not distil
    classification logits, so it is neither softmax nor sigmoid and has no
    entry in ``LOSS_TYPES``); it declares :attr:`distills` and its
    :attr:`reg_max`, so that a distiller can refuse a head without box
    distributions or with another ``reg_max``.

    Args:
        weight_mode (str): 'ea', 'base', 'interact' or 'none'.
            Defaults to 'ea'.
        temperature (float): LD temperature ``T > 0``. Defaults to 10
            (mmdet's LD).
        entropy_temperature (float): ``T' > 0`` of the entropies behind the
            weights. Defaults to :data:`.LD_ENTROPY_TEMPERATURE` (1: the
            head's own distributions).
        reg_max (int): Largest bin of the head's distributions (GFL's
            ``reg_max``), >= 1; the logits have ``4 * (reg_max + 1)``
            columns. Defaults to 16.
        loss_weight (float): >= 0. Defaults to 0.25 (mmdet's LD).
        entropy_upper_bound (float, optional): ``H_ub > 0``; None means
            ``log(reg_max + 1)``. Defaults to None.
        bin_reduction (str): 'mean' (mmdet's: the KL divided by the number
            of bins) or 'sum' (the KL itself). Defaults to 'mean'.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        check_finite (bool): Also check the logits' values on every call
            (one host sync) and raise a ValueError naming the location and
            edge of a NaN/``+inf`` logit, of an edge whose logits are all
            ``-inf``, or of a student ``-inf`` bin where the teacher's is
            not. Off by default, as for ``EAKDLoss``.
    """

    #: What the loss distils; classification losses declare ``classifier``.
    distills: str = BOX_DISTRIBUTION

    def __init__(self,
                 weight_mode: str = 'ea',
                 temperature: float = LD_TEMPERATURE,
                 entropy_temperature: float = LD_ENTROPY_TEMPERATURE,
                 reg_max: int = GFL_REG_MAX,
                 loss_weight: float = 0.25,
                 entropy_upper_bound: Optional[float] = None,
                 bin_reduction: str = 'mean',
                 reduction: str = 'mean',
                 check_finite: bool = False) -> None:
        super().__init__()
        set_ea_arguments(
            self,
            loss_weight=loss_weight,
            temperature=temperature,
            entropy_temperature=entropy_temperature,
            weight_mode=weight_mode,
            entropy_upper_bound=entropy_upper_bound,
            reduction=reduction,
            check_finite=check_finite,
            default_upper_bound='log(reg_max + 1)')
        _check(
            'reg_max', reg_max,
            isinstance(reg_max, int) and not isinstance(reg_max, bool)
            and reg_max >= 1, 'an int >= 1')
        _check('bin_reduction', bin_reduction, bin_reduction in BIN_REDUCTIONS,
               f'one of {BIN_REDUCTIONS}')
        self.reg_max = reg_max
        self.bin_reduction = bin_reduction

    @property
    def num_bins(self) -> int:
        """Bins per edge, ``reg_max + 1``."""
        return self.reg_max + 1

    def _check_logits(self, student_logits: Tensor,
                      teacher_logits: Tensor) -> None:
        """Check the pair's types, shapes and devices (values only with
        ``check_finite``)."""
        bins = self.num_bins
        width = NUM_EDGES * bins
        expected = f'(N, 4 * (reg_max + 1)) = (N, {width}) for ' \
                   f'reg_max={self.reg_max}'
        for name, logits in (('student_logits', student_logits),
                             ('teacher_logits', teacher_logits)):
            check_floating(name, logits)
            if logits.dim() != 2 or logits.size(1) != width:
                hint = ''
                if logits.dim() == 2 and logits.size(1) == bins:
                    hint = ('; per-edge rows (N * 4, reg_max + 1) must be '
                            'reshaped to one row per location')
                elif (logits.dim() == 2 and logits.size(1) % NUM_EDGES == 0
                      and logits.size(1) > NUM_EDGES):
                    hint = (f' ({logits.size(1)} columns would be the box '
                            'distributions of a head with reg_max='
                            f'{logits.size(1) // NUM_EDGES - 1})')
                raise ValueError(f'{name} must have shape {expected}, got '
                                 f'shape {tuple(logits.shape)}{hint}')
        check_same_shape_and_device(student_logits, teacher_logits, expected)
        if self.check_finite:
            self._check_finite_values(student_logits, teacher_logits)

    def _check_finite_values(self, student_logits: Tensor,
                             teacher_logits: Tensor) -> None:
        """Host-side value check of ``check_finite=True`` (synchronizes)."""
        bins = self.num_bins
        for name, logits in (('student_logits', student_logits),
                             ('teacher_logits', teacher_logits)):
            edges = edge_logits(logits.detach(), self.reg_max)
            bad = torch.isnan(edges) | torch.isposinf(edges)
            if bool(bad.any()):
                index = int(bad.flatten().nonzero()[0, 0])
                raise ValueError(f'{name} contains NaN or +inf values '
                                 f'({_location_and_edge(index, bins)})')
            absent = torch.isneginf(edges).all(dim=2)
            if bool(absent.any()):
                index = int(absent.flatten().nonzero()[0, 0])
                raise ValueError(
                    f'{name} has an edge whose logits are all -inf '
                    f'({_location_and_edge(index * bins, bins)}); it is '
                    'not a probability distribution')
        infinite_kl = (torch.isneginf(student_logits.detach())
                       & ~torch.isneginf(teacher_logits.detach()))
        if bool(infinite_kl.any()):
            index = int(infinite_kl.flatten().nonzero()[0, 0])
            raise ValueError(
                'student_logits is -inf where teacher_logits is not ('
                f'{_location_and_edge(index, bins)}, bin {index % bins}); '
                'KL(p_T || p_S) would be infinite')

    def _run(self, student_logits: Tensor, teacher_logits: Tensor,
             weight: Optional[Tensor], avg_factor: Optional[float],
             reduction_override: Optional[str],
             with_stats: bool) -> LossAndStats:
        """Check, compute (entropies at most once) and reduce."""
        _check('reduction_override', reduction_override, reduction_override
               in (None, ) + REDUCTIONS, f'None or one of {REDUCTIONS}')
        self._check_logits(student_logits, teacher_logits)
        reduction = reduction_override or self.reduction
        loss, stats = _ea_ld(student_logits,
                             teacher_logits,
                             reg_max=self.reg_max,
                             temperature=self.temperature,
                             entropy_temperature=self.entropy_temperature,
                             weight_mode=self.weight_mode,
                             entropy_upper_bound=self.entropy_upper_bound,
                             bin_reduction=self.bin_reduction,
                             with_stats=with_stats)
        if weight is not None:
            _check(
                'weight', getattr(weight, 'shape', type(weight)),
                isinstance(weight, Tensor) and weight.is_floating_point()
                and weight.shape == loss.shape,
                f'None or a floating-point tensor of shape '
                f'{tuple(loss.shape)} (one weight per location)')
            weight = weight.to(loss.dtype)
        if reduction == 'mean' and avg_factor is None and loss.numel() == 0:
            # The mean of nothing is NaN: the (zero) sum stays connected to
            # the graph for backward/DDP.
            reduction = 'sum'
        loss = self.loss_weight * weight_reduce_loss(
            loss, weight=weight, reduction=reduction, avg_factor=avg_factor)
        return LossAndStats(loss, stats)

    def forward(self,
                student_logits: Tensor,
                teacher_logits: Tensor,
                *,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """The EA-LD loss.

        Args:
            student_logits (Tensor): Student box distribution logits, shape
                (N, 4 * (reg_max + 1)), one row per location (GFL's
                ``bbox_pred.permute(0, 2, 3, 1).reshape(-1, 4 * (reg_max +
                1))`` at the distilled locations). Any floating dtype; the
                loss is computed in float32 (float64 for float64 input).
            teacher_logits (Tensor): Teacher logits, same shape; never
                receives gradient.
            weight (Tensor, optional): Keyword-only. Extra per-location
                weight, floating, shape (N,) (e.g. LD's cls-score weight),
                applied on top of the entropy weight.
            avg_factor (float, optional): Keyword-only. Average factor of
                the mean reduction, as in mmdet losses.
            reduction_override (str, optional): Keyword-only. 'none', 'mean'
                or 'sum' instead of ``self.reduction``.

        Returns:
            Tensor: The loss times ``loss_weight``: a scalar for 'mean' and
            'sum' (a zero still connected to ``student_logits``'s graph when
            N = 0), shape (N,) for 'none'. ``weight_mode='none'`` computes
            no entropy.
        """
        return self._run(student_logits,
                         teacher_logits,
                         weight,
                         avg_factor,
                         reduction_override,
                         with_stats=False).loss

    def loss_and_stats(
            self,
            student_logits: Tensor,
            teacher_logits: Tensor,
            *,
            weight: Optional[Tensor] = None,
            avg_factor: Optional[float] = None,
            reduction_override: Optional[str] = None) -> LossAndStats:
        """The loss of :meth:`forward` and its statistics, in one pass.

        The entropies are computed once: the statistics are the ones that
        weighted this loss.

        Args: as :meth:`forward`.

        Returns:
            LossAndStats: ``loss`` as :meth:`forward` returns it; ``stats``
            the detached per-location (N,) ``ea_weight`` (the entropy weight
            only, without ``weight``; ones for ``'none'``), ``entropy_t``
            and ``entropy_s`` (mean edge entropies at
            ``entropy_temperature``). ``stats.means()`` gives the per-step
            means to log.
        """
        return self._run(student_logits,
                         teacher_logits,
                         weight,
                         avg_factor,
                         reduction_override,
                         with_stats=True)

    def ea_stats(self, student_logits: Tensor,
                 teacher_logits: Tensor) -> EAStats:
        """The statistics alone (for analysis), as the EA-KD modules give
        them; this computes the entropies, so in training use
        :meth:`loss_and_stats` instead of :meth:`forward` + ``ea_stats``.

        Returns:
            EAStats: As ``loss_and_stats(...).stats``.
        """
        self._check_logits(student_logits, teacher_logits)
        return ea_ld_statistics(student_logits,
                                teacher_logits,
                                reg_max=self.reg_max,
                                entropy_temperature=self.entropy_temperature,
                                weight_mode=self.weight_mode,
                                entropy_upper_bound=self.entropy_upper_bound)
