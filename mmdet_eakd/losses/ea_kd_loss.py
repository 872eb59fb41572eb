# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Registered EA-KD loss modules: argument checks + :mod:`.functional`.

Every argument is checked once, where it enters: the hyper-parameters in the
constructor, the tensors (type, shape, dtype, device) in ``forward`` /
``ea_stats``. The values of the logits are not read on the host in training
(no sync, no exception from a transient fp16 overflow): like mmdet's own
losses, a NaN logit (or a ``+inf`` one, for the softmax losses; a sigmoid
logit may be infinite) gives a NaN loss for the step, which
mmengine's ``AmpOptimWrapper`` (GradScaler) skips and mmdet's
``CheckInvalidLossHook`` can turn into a hard stop. As with mmdet's
``CrossEntropyLoss``, a non-finite RoI makes only its own term and its own
row of the logits' gradient NaN (the other rows get their clean gradient);
backprop then carries the NaN into the parameters' gradients, so the scaler
skips the step. ``check_finite=True`` checks the values on the host instead,
for direct use.
"""
import math
from typing import Any, Dict, Optional, Tuple

import torch
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS
from torch import Tensor, nn

from .classifier import SIGMOID, SOFTMAX, ClassifierKind
from .functional import (WEIGHT_MODES, EAStats, ea_dkd_loss_per_sample,
                         ea_kd_loss_per_sample, ea_statistics,
                         sigmoid_ea_kd_loss_per_sample, sigmoid_ea_statistics)

REDUCTIONS = ('none', 'mean', 'sum')

#: What the classification losses here distil (their ``distills``):
#: classification logits, shape (N, C). A distiller serves each term the
#: tensors its loss declares; a loss that declares nothing is taken to
#: distil classification logits.
CLASS_LOGITS = 'class_logits'


def _check(name: str, value: Any, valid: bool, requirement: str) -> None:
    """Raise ``ValueError('<name> must be <requirement>, got <value>')``
    unless ``valid``: the one check of every non-tensor argument here."""
    if not valid:
        raise ValueError(f'{name} must be {requirement}, got {value!r}')


def _is_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (not a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_logits(student_logits: Tensor, teacher_logits: Tensor,
                  class_dim: str) -> None:
    """Check the logit pair's types, shapes and devices (not its values);
    ``class_dim`` names the class dimension in the shape errors
    (``'num_classes + 1'`` or ``'num_classes'``)."""
    for name, logits in (('student_logits', student_logits),
                         ('teacher_logits', teacher_logits)):
        check_floating(name, logits)
        if logits.dim() != 2 or logits.size(1) < 1:
            raise ValueError(
                f'{name} must have shape (N, {class_dim}) with at least '
                f'one class, got shape {tuple(logits.shape)}')
    check_same_shape_and_device(student_logits, teacher_logits,
                                f'(N, {class_dim})')


def check_floating(name: str, logits: Any) -> None:
    """Raise a TypeError naming ``name`` unless ``logits`` is a
    floating-point tensor."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise TypeError(
            f'{name} must be a floating-point tensor, got '
            f'{getattr(logits, "dtype", type(logits).__name__)}')


def check_same_shape_and_device(student_logits: Tensor,
                                teacher_logits: Tensor,
                                expected: str) -> None:
    """Raise a ValueError unless the pair has one shape (``expected``
    describes it in the message) and one device."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f'teacher_logits has shape {tuple(teacher_logits.shape)} but '
            f'student_logits has shape {tuple(student_logits.shape)}; both '
            f'must be {expected}')
    if student_logits.device != teacher_logits.device:
        raise ValueError(f'teacher_logits is on {teacher_logits.device} but '
                         f'student_logits is on {student_logits.device}')


def _check_finite_values(student_logits: Tensor,
                         teacher_logits: Tensor) -> None:
    """Host-side value check of ``check_finite=True`` (synchronizes).

    Rejects NaN and ``+inf`` logits, rows whose logits are all ``-inf`` (not
    a distribution) and a student ``-inf`` where the teacher's logit is not
    ``-inf`` (``KL(p_T || p_S)`` would be infinite).
    """
    for name, logits in (('student_logits', student_logits),
                         ('teacher_logits', teacher_logits)):
        # A row's max is finite unless the row holds NaN/+inf or is all -inf.
        row_max = logits.detach().amax(dim=1)
        bad = ~torch.isfinite(row_max)
        if not bool(bad.any()):
            continue
        row = int(bad.nonzero()[0, 0])
        if bool(torch.isneginf(row_max[row])):
            raise ValueError(f'{name} has a row whose logits are all -inf '
                             f'(row {row}); it is not a probability '
                             'distribution')
        raise ValueError(f'{name} contains NaN or +inf values (row {row})')
    infinite_kl = (torch.isneginf(student_logits)
                   & ~torch.isneginf(teacher_logits))
    if bool(infinite_kl.any()):
        row, col = infinite_kl.nonzero()[0].tolist()
        raise ValueError(
            f'student_logits is -inf where teacher_logits is not (row {row}, '
            f'class {col}); KL(p_T || p_S) would be infinite')


def _check_finite_sigmoid_values(student_logits: Tensor,
                                 teacher_logits: Tensor) -> None:
    """Host-side value check of ``check_finite=True`` for sigmoid logits.

    Rejects NaN logits and a student ``+inf`` or ``-inf`` where the
    teacher's logit is not the same infinity (``KL(Bern(p_T) ||
    Bern(p_S))`` would be infinite). Infinite teacher logits are valid
    (probability exactly 1 or 0), and so is a row of all ``-inf`` (every
    class absent).
    """
    for name, logits in (('student_logits', student_logits),
                         ('teacher_logits', teacher_logits)):
        nan = torch.isnan(logits.detach())
        if bool(nan.any()):
            row, col = nan.nonzero()[0].tolist()
            raise ValueError(
                f'{name} contains NaN (row {row}, class {col})')
    infinite_kl = (torch.isinf(student_logits.detach())
                   & (student_logits.detach() != teacher_logits.detach()))
    if bool(infinite_kl.any()):
        row, col = infinite_kl.nonzero()[0].tolist()
        sign = '+' if bool(student_logits[row, col] > 0) else '-'
        raise ValueError(
            f'student_logits is {sign}inf where teacher_logits is not (row '
            f'{row}, class {col}); KL(Bern(p_T) || Bern(p_S)) would be '
            'infinite')


def _check_labels(labels: Optional[Tensor], num_samples: int,
                  num_classes: int) -> None:
    """Check DKD labels: type, shape and range, without a host sync.

    The range is checked by ``torch._assert_async``, as torch's own
    ``cross_entropy`` checks its targets: on the CPU it raises a
    ``RuntimeError`` with the message below at once; on a GPU it is a
    device-side assertion that fails the run at the next synchronization
    (without the message; ``CUDA_LAUNCH_BLOCKING=1`` locates it).
    """
    if labels is None:
        raise ValueError('EADKDLoss needs labels (the target class of each '
                         'sample, shape (N,)); got labels=None')
    if not isinstance(labels, Tensor):
        raise TypeError('labels must be a torch.Tensor, got '
                        f'{type(labels).__name__}')
    if (labels.is_floating_point() or labels.is_complex()
            or labels.dtype == torch.bool):
        raise TypeError(
            f'labels must be an integer tensor, got dtype {labels.dtype}')
    if labels.shape != (num_samples, ):
        raise ValueError(f'labels must have shape ({num_samples},) to match '
                         f'the logits, got shape {tuple(labels.shape)}')
    torch._assert_async(
        ((labels >= 0) & (labels < num_classes)).all(),
        f'labels must lie in [0, {num_classes - 1}] for logits with '
        f'{num_classes} columns (background = {num_classes - 1})')


def set_ea_arguments(module: nn.Module, *, loss_weight: float,
                     temperature: float, entropy_temperature: float,
                     weight_mode: str, entropy_upper_bound: Optional[float],
                     reduction: str, check_finite: bool,
                     default_upper_bound: str) -> None:
    """Check the hyper-parameters that every EA loss module shares and set
    them as attributes of ``module`` (the one place they are checked).

    Args:
        module (nn.Module): The loss module.
        loss_weight, temperature, entropy_temperature, weight_mode,
        entropy_upper_bound, reduction, check_finite: As the modules' own
            arguments (see :class:`EAKDLoss`).
        default_upper_bound (str): What ``entropy_upper_bound=None`` stands
            for, as the error names it (e.g. ``'log C'``).

    Raises:
        ValueError: An argument out of its range, naming it and the range.
    """
    _check('loss_weight', loss_weight,
           _is_number(loss_weight) and loss_weight >= 0,
           'a finite number >= 0')
    _check('temperature', temperature,
           _is_number(temperature) and temperature > 0, 'a finite number > 0')
    _check('entropy_temperature', entropy_temperature,
           _is_number(entropy_temperature) and entropy_temperature > 0,
           'a finite number > 0')
    _check('weight_mode', weight_mode, weight_mode in WEIGHT_MODES,
           f'one of {WEIGHT_MODES}')
    _check(
        'entropy_upper_bound', entropy_upper_bound, entropy_upper_bound is None
        or (_is_number(entropy_upper_bound) and entropy_upper_bound > 0),
        f'None ({default_upper_bound}) or a finite number > 0')
    _check('reduction', reduction, reduction in REDUCTIONS,
           f'one of {REDUCTIONS}')
    _check('check_finite', check_finite, isinstance(check_finite, bool),
           'a bool')
    module.loss_weight = loss_weight
    module.temperature = temperature
    module.entropy_temperature = entropy_temperature
    module.weight_mode = weight_mode
    module.entropy_upper_bound = entropy_upper_bound
    module.reduction = reduction
    module.check_finite = check_finite


class _EADistillLoss(nn.Module):
    """Shared arguments, checks, reduction and statistics of the EA losses.

    The arguments are keyword-only: each subclass's constructor states its
    own defaults. Subclasses set :attr:`classifier` and implement
    :meth:`_check_finite_values`, :meth:`_per_sample` and
    :meth:`_statistics`.
    """

    #: What the loss compares: classification logits.
    distills: str = CLASS_LOGITS
    #: The classifiers the loss is made for, :data:`~.classifier.SOFTMAX`
    #: or :data:`~.classifier.SIGMOID`; the distiller refuses a loss whose
    #: kind differs from the student's head family. Its ``class_dim`` and
    #: ``default_upper_bound`` name the logits' shape and the default
    #: ``H_ub`` in errors.
    classifier: ClassifierKind

    def __init__(self, *, loss_weight: float, temperature: float,
                 entropy_temperature: float, weight_mode: str,
                 entropy_upper_bound: Optional[float], reduction: str,
                 check_finite: bool) -> None:
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
            default_upper_bound=self.classifier.default_upper_bound)

    def _check_logits(self, student_logits: Tensor,
                      teacher_logits: Tensor) -> None:
        """Check the logits as they enter (values only with check_finite)."""
        _check_logits(student_logits, teacher_logits,
                      self.classifier.class_dim)
        if self.check_finite:
            self._check_finite_values(student_logits, teacher_logits)

    def _check_finite_values(self, student_logits: Tensor,
                             teacher_logits: Tensor) -> None:
        """The host-side value check of ``check_finite=True``."""
        raise NotImplementedError

    def _per_sample(self, student_logits: Tensor, teacher_logits: Tensor,
                    labels: Optional[Tensor], weight_mode: str) -> Tensor:
        """Per-sample terms weighted in ``weight_mode``, shape (N,), from
        checked inputs (``'none'``: the unweighted terms, no entropy)."""
        raise NotImplementedError

    def _statistics(self, student_logits: Tensor,
                    teacher_logits: Tensor) -> EAStats:
        """The :class:`EAStats` of checked inputs."""
        raise NotImplementedError

    def forward(self,
                student_logits: Tensor,
                teacher_logits: Tensor,
                labels: Optional[Tensor] = None,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Forward function.

        Args:
            student_logits (Tensor): Student classification logits, shape
                (N, C): C = num_classes + 1 for the softmax losses
                (background last), C = num_classes for
                :class:`SigmoidEAKDLoss`. Any floating dtype; the loss is
                computed in float32 (float64 for float64 input), also under
                autocast.
            teacher_logits (Tensor): Teacher logits, shape (N, C); never
                receives gradient.
            labels (Tensor, optional): Target class per sample, shape (N,),
                integer dtype, in [0, C); background is C - 1. Required by
                :class:`EADKDLoss`, unused by the other losses.
            weight (Tensor, optional): Extra per-sample weight, shape (N,),
                applied on top of the entropy weight (e.g. label weights).
            avg_factor (float, optional): Average factor for the mean
                reduction, as in mmdet losses.
            reduction_override (str, optional): 'none', 'mean' or 'sum'
                instead of ``self.reduction``.

        Returns:
            Tensor: The loss times ``loss_weight``: a scalar for 'mean' and
            'sum' (a zero still connected to ``student_logits``'s graph when
            N = 0), shape (N,) for 'none'.
        """
        reduction = self._check_call(student_logits, teacher_logits,
                                     reduction_override)
        return self._reduce(
            self._per_sample(student_logits, teacher_logits, labels,
                             self.weight_mode), weight, avg_factor, reduction)

    def loss_and_stats(self,
                       student_logits: Tensor,
                       teacher_logits: Tensor,
                       labels: Optional[Tensor] = None,
                       weight: Optional[Tensor] = None,
                       avg_factor: Optional[float] = None,
                       reduction_override: Optional[str] = None
                       ) -> Tuple[Tensor, EAStats]:
        """:meth:`forward` and :meth:`ea_stats` of one call, from one
        computation of the entropies (what the distiller uses in training).

        Args: as :meth:`forward`.

        Returns:
            tuple[Tensor, EAStats]: The loss, equal to :meth:`forward`'s, and
            the per-sample statistics, equal to :meth:`ea_stats`'s.
        """
        reduction = self._check_call(student_logits, teacher_logits,
                                     reduction_override)
        stats = self._statistics(student_logits, teacher_logits)
        terms = self._per_sample(student_logits, teacher_logits, labels,
                                 'none')
        loss = self._reduce(stats.ea_weight.to(terms.dtype) * terms, weight,
                            avg_factor, reduction)
        return loss, stats

    def _check_call(self, student_logits: Tensor, teacher_logits: Tensor,
                    reduction_override: Optional[str]) -> str:
        """Check a call's logits and reduction; return the reduction."""
        _check('reduction_override', reduction_override,
               reduction_override in (None, ) + REDUCTIONS,
               f'None or one of {REDUCTIONS}')
        self._check_logits(student_logits, teacher_logits)
        return reduction_override or self.reduction

    def _reduce(self, loss: Tensor, weight: Optional[Tensor],
                avg_factor: Optional[float], reduction: str) -> Tensor:
        """``loss_weight`` times mmdet's weighted reduction of the
        per-sample ``loss`` (shape (N,))."""
        if weight is not None:
            _check('weight', getattr(weight, 'shape', type(weight)),
                   isinstance(weight, Tensor) and weight.shape == loss.shape,
                   f'None or a tensor of shape {tuple(loss.shape)}')
            weight = weight.to(loss.dtype)
        if reduction == 'mean' and avg_factor is None and loss.numel() == 0:
            # The mean of nothing is NaN: return the (zero) sum instead, which
            # keeps the loss connected to the graph for backward/DDP.
            reduction = 'sum'
        return self.loss_weight * weight_reduce_loss(
            loss, weight=weight, reduction=reduction, avg_factor=avg_factor)

    def ea_stats(self, student_logits: Tensor,
                 teacher_logits: Tensor) -> EAStats:
        """The EA statistics of this loss's configuration, per sample.

        Args:
            student_logits (Tensor): Student logits, shape (N, C).
            teacher_logits (Tensor): Teacher logits, shape (N, C).

        Returns:
            EAStats: Detached (N,) tensors ``ea_weight`` (the weight that
            :meth:`forward` applies; ones for ``weight_mode='none'``),
            ``entropy_t`` and ``entropy_s`` (at ``entropy_temperature``; of
            the standardized logits with ``logit_standardization``).
            ``EAStats.means()`` gives the per-step means that the distiller
            logs under these names.
        """
        self._check_logits(student_logits, teacher_logits)
        return self._statistics(student_logits, teacher_logits)


class _SoftmaxEADistillLoss(_EADistillLoss):
    """The EA losses of softmax classifiers (C = num_classes + 1).

    Args: see :class:`EAKDLoss`.
    """

    classifier = SOFTMAX

    def __init__(self,
                 loss_weight: float = 1.0,
                 temperature: float = 1.0,
                 entropy_temperature: float = SOFTMAX.entropy_temperature,
                 weight_mode: str = 'ea',
                 entropy_upper_bound: Optional[float] = None,
                 logit_standardization: bool = False,
                 reduction: str = 'mean',
                 check_finite: bool = False) -> None:
        super().__init__(
            loss_weight=loss_weight,
            temperature=temperature,
            entropy_temperature=entropy_temperature,
            weight_mode=weight_mode,
            entropy_upper_bound=entropy_upper_bound,
            reduction=reduction,
            check_finite=check_finite)
        _check('logit_standardization', logit_standardization,
               isinstance(logit_standardization, bool), 'a bool')
        self.logit_standardization = logit_standardization

    def _check_finite_values(self, student_logits: Tensor,
                             teacher_logits: Tensor) -> None:
        """See :func:`_check_finite_values`."""
        _check_finite_values(student_logits, teacher_logits)

    def _statistics(self, student_logits: Tensor,
                    teacher_logits: Tensor) -> EAStats:
        """:func:`ea_statistics` with this loss's arguments."""
        return ea_statistics(
            student_logits,
            teacher_logits,
            entropy_temperature=self.entropy_temperature,
            weight_mode=self.weight_mode,
            entropy_upper_bound=self.entropy_upper_bound,
            logit_standardization=self.logit_standardization)


@MODELS.register_module()
class EAKDLoss(_SoftmaxEADistillLoss):
    """Entropy-based Adaptive KD loss (EA-KD, eq. 14).

    Per sample ``w_n * KL(p_T(T) || p_S(T)) * T^2`` with the detached entropy
    weight ``w_n`` of ``weight_mode``; by default the mean over samples, times
    ``loss_weight``. ``weight_mode='none'`` gives plain KD.

    Args:
        loss_weight (float): Weight of the loss, >= 0. Defaults to 1.0.
        temperature (float): KD temperature ``T > 0``. Defaults to 1.0.
        entropy_temperature (float): Temperature ``T' > 0`` of the entropies
            behind the weights. Defaults to 3.0.
        weight_mode (str): 'ea' (eq. 11), 'base' (``H_T``), 'interact'
            (``H_T * H_S / H_ub``) or 'none' (plain KD). Defaults to 'ea'.
        entropy_upper_bound (float, optional): ``H_ub > 0``; None means
            ``log C`` from the logits' last dimension. Defaults to None.
        logit_standardization (bool): Z-score the logits before the KD term
            and the weights (Sun et al., CVPR 2024). Defaults to False.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        check_finite (bool): Also check the logits' values on every call
            (one host sync) and raise a ValueError for NaN/``+inf`` logits,
            an all ``-inf`` row, or a student ``-inf`` where the teacher's
            logit is finite. Off by default: in training a non-finite loss
            is left to the optimizer wrapper (GradScaler skips the step) or
            mmdet's ``CheckInvalidLossHook``, as for mmdet's own losses.
    """

    def _per_sample(self, student_logits: Tensor, teacher_logits: Tensor,
                    labels: Optional[Tensor], weight_mode: str) -> Tensor:
        """Per-sample EA-KD terms; ``labels`` are not used."""
        return ea_kd_loss_per_sample(
            student_logits,
            teacher_logits,
            temperature=self.temperature,
            entropy_temperature=self.entropy_temperature,
            weight_mode=weight_mode,
            entropy_upper_bound=self.entropy_upper_bound,
            logit_standardization=self.logit_standardization)


@MODELS.register_module()
class EADKDLoss(_SoftmaxEADistillLoss):
    """Entropy-based Adaptive Decoupled KD loss (EA-DKD).

    Per sample ``w_n * (alpha * TCKD + beta * NCKD) * T^2`` with the RoI's
    label as target class; ``weight_mode='none'`` gives plain DKD. The
    forward pass requires ``labels``; their range is checked without a host
    sync (see ``torch._assert_async``): a ``RuntimeError`` on the CPU, a
    device-side assertion on a GPU, as for ``torch.nn.CrossEntropyLoss``.

    Args:
        alpha (float): Weight of TCKD, >= 0. Defaults to 1.0.
        beta (float): Weight of NCKD, >= 0. Defaults to 0.25.
        **kwargs: The arguments of :class:`EAKDLoss` (``loss_weight``,
            ``temperature``, ``entropy_temperature``, ``weight_mode``,
            ``entropy_upper_bound``, ``logit_standardization``,
            ``reduction``, ``check_finite``).
    """

    def __init__(self, alpha: float = 1.0, beta: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        _check('alpha', alpha, _is_number(alpha) and alpha >= 0,
               'a finite number >= 0')
        _check('beta', beta, _is_number(beta) and beta >= 0,
               'a finite number >= 0')
        self.alpha = alpha
        self.beta = beta

    def _per_sample(self, student_logits: Tensor, teacher_logits: Tensor,
                    labels: Optional[Tensor], weight_mode: str) -> Tensor:
        """Per-sample EA-DKD terms."""
        _check_labels(labels, *student_logits.shape)
        return ea_dkd_loss_per_sample(
            student_logits,
            teacher_logits,
            labels,
            alpha=self.alpha,
            beta=self.beta,
            temperature=self.temperature,
            entropy_temperature=self.entropy_temperature,
            weight_mode=weight_mode,
            entropy_upper_bound=self.entropy_upper_bound,
            logit_standardization=self.logit_standardization)


@MODELS.register_module()
class SigmoidEAKDLoss(_EADistillLoss):
    """EA-KD loss of sigmoid classifiers (one-stage dense heads).

    For heads with C = num_classes independent sigmoid outputs and no
    background column (RetinaNet, FCOS, ATSS, GFL). Per sample (location)
    ``w_n * T^2 * sum_c KL(Bern(p_T,c) || Bern(p_S,c))`` with
    ``p_c = sigmoid(z_c / T)`` and the detached weight ``w_n`` of
    ``weight_mode`` computed from the mean binary entropies at ``T'``
    (bounded by ``log 2``); by default the mean over samples, times
    ``loss_weight``. ``weight_mode='none'`` gives plain (sigmoid) KD. No
    logit standardization: sigmoid probabilities depend on the logits'
    shift and scale.

    Args:
        loss_weight (float): Weight of the loss, >= 0. Defaults to 1.0.
        temperature (float): KD temperature ``T > 0``. Defaults to 1.0.
        entropy_temperature (float): Temperature ``T' > 0`` of the binary
            entropies behind the weights. Defaults to
            :data:`SIGMOID_ENTROPY_TEMPERATURE`.
        weight_mode (str): 'ea', 'base' (``H_T``), 'interact'
            (``H_T * H_S / H_ub``) or 'none' (plain KD). Defaults to 'ea'.
        entropy_upper_bound (float, optional): ``H_ub > 0``; None means
            ``log 2``. Defaults to None.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        check_finite (bool): Also check the logits' values on every call
            (one host sync) and raise a ValueError for NaN logits or a
            student ``+inf`` / ``-inf`` where the teacher's logit is not the
            same infinity (infinite teacher logits are valid). Off by
            default, as for :class:`EAKDLoss`.
    """

    classifier = SIGMOID

    def __init__(self,
                 loss_weight: float = 1.0,
                 temperature: float = 1.0,
                 entropy_temperature: float = SIGMOID.entropy_temperature,
                 weight_mode: str = 'ea',
                 entropy_upper_bound: Optional[float] = None,
                 reduction: str = 'mean',
                 check_finite: bool = False) -> None:
        super().__init__(
            loss_weight=loss_weight,
            temperature=temperature,
            entropy_temperature=entropy_temperature,
            weight_mode=weight_mode,
            entropy_upper_bound=entropy_upper_bound,
            reduction=reduction,
            check_finite=check_finite)

    def _check_finite_values(self, student_logits: Tensor,
                             teacher_logits: Tensor) -> None:
        """See :func:`_check_finite_sigmoid_values`."""
        _check_finite_sigmoid_values(student_logits, teacher_logits)

    def _per_sample(self, student_logits: Tensor, teacher_logits: Tensor,
                    labels: Optional[Tensor], weight_mode: str) -> Tensor:
        """Per-sample sigmoid EA-KD terms; ``labels`` are not used."""
        return sigmoid_ea_kd_loss_per_sample(
            student_logits,
            teacher_logits,
            temperature=self.temperature,
            entropy_temperature=self.entropy_temperature,
            weight_mode=weight_mode,
            entropy_upper_bound=self.entropy_upper_bound)

    def _statistics(self, student_logits: Tensor,
                    teacher_logits: Tensor) -> EAStats:
        """:func:`sigmoid_ea_statistics` with this loss's arguments."""
        return sigmoid_ea_statistics(
            student_logits,
            teacher_logits,
            entropy_temperature=self.entropy_temperature,
            weight_mode=self.weight_mode,
            entropy_upper_bound=self.entropy_upper_bound)


#: Per classifier family (a loss's ``classifier``), the shipped loss of each
#: softmax loss type; a family without an entry for a type has no such loss
#: (sigmoid heads have no DKD). The study, the benchmark and the distiller's
#: messages read it.
LOSS_TYPES: Dict[ClassifierKind, Dict[str, str]] = {
    SOFTMAX: {'EAKDLoss': 'EAKDLoss', 'EADKDLoss': 'EADKDLoss'},
    SIGMOID: {'EAKDLoss': 'SigmoidEAKDLoss'},
}
