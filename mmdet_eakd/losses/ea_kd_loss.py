# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Registered EA-KD loss modules (thin wrappers of :mod:`.functional`)."""
import math
from typing import Dict, Optional, Tuple, Union

from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS
from torch import Tensor, nn

from .functional import (WEIGHT_MODES, EADistillTerms, ea_dkd_loss_per_sample,
                         ea_kd_loss_per_sample)

REDUCTIONS = ('none', 'mean', 'sum')


def _require(condition: bool, message: str) -> None:
    """Raise a ValueError with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ValueError(message)


def _is_number(value) -> bool:
    """Whether ``value`` is a finite int or float (not a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


class _EADistillLoss(nn.Module):
    """Shared arguments, reduction and statistics of the EA loss modules.

    Subclasses implement :meth:`_per_sample`.
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 temperature: float = 1.0,
                 entropy_temperature: float = 3.0,
                 weight_mode: str = 'ea',
                 entropy_upper_bound: Optional[float] = None,
                 logit_standardization: bool = False,
                 reduction: str = 'mean') -> None:
        super().__init__()
        _require(
            _is_number(loss_weight) and loss_weight >= 0,
            f'loss_weight must be a finite number >= 0, got {loss_weight!r}')
        _require(
            _is_number(temperature) and temperature > 0,
            f'temperature must be a finite number > 0, got {temperature!r}')
        _require(
            _is_number(entropy_temperature) and entropy_temperature > 0,
            'entropy_temperature must be a finite number > 0, got '
            f'{entropy_temperature!r}')
        _require(weight_mode in WEIGHT_MODES,
                 f'weight_mode must be one of {WEIGHT_MODES}, got '
                 f'{weight_mode!r}')
        _require(
            entropy_upper_bound is None
            or (_is_number(entropy_upper_bound) and entropy_upper_bound > 0),
            'entropy_upper_bound must be None (log C) or a finite number '
            f'> 0, got {entropy_upper_bound!r}')
        _require(
            isinstance(logit_standardization, bool),
            'logit_standardization must be a bool, got '
            f'{logit_standardization!r}')
        _require(reduction in REDUCTIONS,
                 f'reduction must be one of {REDUCTIONS}, got {reduction!r}')
        self.loss_weight = loss_weight
        self.temperature = temperature
        self.entropy_temperature = entropy_temperature
        self.weight_mode = weight_mode
        self.entropy_upper_bound = entropy_upper_bound
        self.logit_standardization = logit_standardization
        self.reduction = reduction

    def _per_sample(self, student_logits: Tensor, teacher_logits: Tensor,
                    labels: Optional[Tensor],
                    return_entropy: bool) -> EADistillTerms:
        """Per-sample weighted terms, weights and entropies."""
        raise NotImplementedError

    def forward(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        labels: Optional[Tensor] = None,
        weight: Optional[Tensor] = None,
        avg_factor: Optional[float] = None,
        reduction_override: Optional[str] = None,
        return_stats: bool = False
    ) -> Union[Tensor, Tuple[Tensor, Dict[str, Tensor]]]:
        """Forward function.

        Args:
            student_logits (Tensor): Student classification logits, shape
                (N, C) with C = num_classes + 1 in detection. Any floating
                dtype; the loss is computed in float32 (float64 for float64
                input), also under autocast.
            teacher_logits (Tensor): Teacher logits, shape (N, C); never
                receives gradient.
            labels (Tensor, optional): Target class per sample, shape (N,),
                integer dtype, in [0, C); background is C - 1. Required by
                :class:`EADKDLoss`, unused by :class:`EAKDLoss`.
            weight (Tensor, optional): Extra per-sample weight, shape (N,),
                applied on top of the entropy weight (e.g. label weights).
            avg_factor (float, optional): Average factor for the mean
                reduction, as in mmdet losses.
            reduction_override (str, optional): 'none', 'mean' or 'sum'
                instead of ``self.reduction``.
            return_stats (bool): Also return the per-sample statistics.

        Returns:
            Tensor | tuple[Tensor, dict[str, Tensor]]: The loss, a scalar for
            'mean'/'sum' (a zero still connected to ``student_logits``'s
            graph when N = 0) or shape (N,) for 'none', times
            ``loss_weight``. With ``return_stats`` also a dict of detached
            (N,) tensors from the same pass: ``'ea_weight'`` (the weight
            used: ``w_EA``, ``H_T``, the interaction term, or ones for
            ``weight_mode='none'``), ``'entropy_teacher'`` and
            ``'entropy_student'`` (at ``entropy_temperature``; for 'none'
            they are computed only when stats are requested).
        """
        _require(
            reduction_override in (None, ) + REDUCTIONS,
            f'reduction_override must be None or one of {REDUCTIONS}, got '
            f'{reduction_override!r}')
        reduction = reduction_override or self.reduction
        terms = self._per_sample(student_logits, teacher_logits, labels,
                                 return_stats)
        loss = terms.loss
        if weight is not None:
            _require(
                isinstance(weight, Tensor) and weight.shape == loss.shape,
                f'weight must be a tensor of shape {tuple(loss.shape)}, got '
                f'{getattr(weight, "shape", type(weight).__name__)}')
            weight = weight.to(loss.dtype)
        if reduction == 'mean' and avg_factor is None and loss.numel() == 0:
            # The mean of nothing is NaN: return the (zero) sum instead, which
            # keeps the loss connected to the graph for backward/DDP.
            reduction = 'sum'
        loss = self.loss_weight * weight_reduce_loss(
            loss, weight=weight, reduction=reduction, avg_factor=avg_factor)
        if not return_stats:
            return loss
        stats = dict(
            ea_weight=terms.weight,
            entropy_teacher=terms.entropy_teacher,
            entropy_student=terms.entropy_student)
        return loss, stats


@MODELS.register_module()
class EAKDLoss(_EADistillLoss):
    """Entropy-based Adaptive KD loss (EA-KD, eq. 14).

    Per sample ``w_n * KL(p_T(T) || p_S(T)) * T^2`` with the detached entropy
    weight ``w_n`` of ``weight_mode``; by default the mean over samples, times
    ``loss_weight``. ``weight_mode='none'`` gives plain KD.

    Args:
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        temperature (float): KD temperature ``T``. Defaults to 1.0.
        entropy_temperature (float): Temperature ``T'`` of the entropies
            behind the weights. Defaults to 3.0.
        weight_mode (str): 'ea' (eq. 11), 'base' (``H_T``), 'interact'
            (``H_T * H_S / H_ub``) or 'none' (plain KD). Defaults to 'ea'.
        entropy_upper_bound (float, optional): ``H_ub``; None means
            ``log C`` from the logits' last dimension. Defaults to None.
        logit_standardization (bool): Z-score the logits before the KD term
            and the weights (Sun et al., CVPR 2024). Defaults to False.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
    """

    def _per_sample(self, student_logits: Tensor, teacher_logits: Tensor,
                    labels: Optional[Tensor],
                    return_entropy: bool) -> EADistillTerms:
        """Per-sample EA-KD terms; ``labels`` are not used."""
        return ea_kd_loss_per_sample(
            student_logits,
            teacher_logits,
            temperature=self.temperature,
            entropy_temperature=self.entropy_temperature,
            weight_mode=self.weight_mode,
            entropy_upper_bound=self.entropy_upper_bound,
            logit_standardization=self.logit_standardization,
            return_entropy=return_entropy)


@MODELS.register_module()
class EADKDLoss(_EADistillLoss):
    """Entropy-based Adaptive Decoupled KD loss (EA-DKD).

    Per sample ``w_n * (alpha * TCKD + beta * NCKD) * T^2`` with the RoI's
    label as target class; ``weight_mode='none'`` gives plain DKD. The
    forward pass requires ``labels``.

    Args:
        alpha (float): Weight of TCKD. Defaults to 1.0.
        beta (float): Weight of NCKD. Defaults to 0.25.
        **kwargs: The arguments of :class:`EAKDLoss` (``loss_weight``,
            ``temperature``, ``entropy_temperature``, ``weight_mode``,
            ``entropy_upper_bound``, ``logit_standardization``,
            ``reduction``).
    """

    def __init__(self, alpha: float = 1.0, beta: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        _require(
            _is_number(alpha) and alpha >= 0,
            f'alpha must be a finite number >= 0, got {alpha!r}')
        _require(
            _is_number(beta) and beta >= 0,
            f'beta must be a finite number >= 0, got {beta!r}')
        self.alpha = alpha
        self.beta = beta

    def _per_sample(self, student_logits: Tensor, teacher_logits: Tensor,
                    labels: Optional[Tensor],
                    return_entropy: bool) -> EADistillTerms:
        """Per-sample EA-DKD terms."""
        _require(labels is not None,
                 'EADKDLoss needs labels (the target class of each sample, '
                 'shape (N,)); got labels=None')
        return ea_dkd_loss_per_sample(
            student_logits,
            teacher_logits,
            labels,
            alpha=self.alpha,
            beta=self.beta,
            temperature=self.temperature,
            entropy_temperature=self.entropy_temperature,
            weight_mode=self.weight_mode,
            entropy_upper_bound=self.entropy_upper_bound,
            logit_standardization=self.logit_standardization,
            return_entropy=return_entropy)
