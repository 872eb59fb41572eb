# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Pure math of EA-KD (Entropy-based Adaptive Knowledge Distillation).

Everything here depends on ``torch`` only, so it can be tested and reused
without mmdet. Equation numbers refer to the EA-KD paper (Sec. 3.2).

Conventions shared by all functions:

- Logits are 2-D ``(N, C)`` floating tensors; ``C`` counts every class, so in
  detection ``C = num_classes + 1`` and the background label is ``C - 1``.
- Math is done in at least float32: fp16/bf16 inputs are upcast, float64 stays
  float64. Mixed input dtypes are promoted (e.g. an fp16 teacher and a float32
  student are compared in float32).
- ``-inf`` logits mean "probability exactly 0" and are supported: every
  ``p * log p`` or ``p * log(p / q)`` term with ``p = 0`` counts as 0. A row
  whose logits are all ``-inf`` is not a distribution and is rejected, as are
  NaN and ``+inf`` logits. A ``-inf`` student logit where the teacher's logit
  is not ``-inf`` is rejected too: ``KL(p_T || p_S)`` would be infinite.
- The teacher never receives gradient: teacher logits are detached inside.
"""
import math
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: Weighting modes of the paper's ablation (Table 9); ``'none'`` is plain KD.
WEIGHT_MODES: Tuple[str, ...] = ('ea', 'base', 'interact', 'none')

#: Default ``eps`` of :func:`standardize_logits` (the authors' value).
STANDARDIZATION_EPS = 1e-7


def check_logits(logits: Tensor, name: str = 'logits') -> None:
    """Check that ``logits`` is a valid ``(N, C)`` batch of logit vectors.

    Args:
        logits (Tensor): The logits to check, shape (N, C).
        name (str): The argument name used in error messages.

    Raises:
        TypeError: If ``logits`` is not a floating-point tensor.
        ValueError: If it is not 2-D, has no class column, contains NaN or
            ``+inf``, or has a row whose entries are all ``-inf``.
    """
    if not isinstance(logits, Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got '
                        f'{type(logits).__name__}')
    if not logits.is_floating_point():
        raise TypeError(f'{name} must be a floating-point tensor, got dtype '
                        f'{logits.dtype}')
    if logits.dim() != 2 or logits.size(1) < 1:
        raise ValueError(
            f'{name} must have shape (N, num_classes + 1) with at least one '
            f'class, got shape {tuple(logits.shape)}')
    # One pass over the data: a row's max is finite unless the row holds a
    # NaN or +inf or is all -inf.
    row_max = logits.detach().amax(dim=1)
    if bool(torch.isfinite(row_max).all()):
        return
    if bool(torch.isnan(row_max).any()) or bool(torch.isposinf(row_max).any()):
        raise ValueError(f'{name} contains NaN or +inf values')
    row = int(torch.isneginf(row_max).nonzero()[0, 0])
    raise ValueError(f'{name} has a row whose logits are all -inf (row '
                     f'{row}); it is not a probability distribution')


def check_logit_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    """Check a student/teacher pair of logits (see :func:`check_logits`).

    Args:
        student_logits (Tensor): Student logits, shape (N, C).
        teacher_logits (Tensor): Teacher logits, shape (N, C).

    Raises:
        TypeError: If either tensor is not floating point.
        ValueError: If either tensor is invalid, the shapes differ, or the
            student has a ``-inf`` logit where the teacher's is not ``-inf``.
    """
    check_logits(student_logits, 'student_logits')
    check_logits(teacher_logits, 'teacher_logits')
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f'teacher_logits has shape {tuple(teacher_logits.shape)} but '
            f'student_logits has shape {tuple(student_logits.shape)}; both '
            'must be (N, num_classes + 1)')
    if student_logits.device != teacher_logits.device:
        raise ValueError(f'teacher_logits is on {teacher_logits.device} but '
                         f'student_logits is on {student_logits.device}')
    student_neg_inf = torch.isneginf(student_logits)
    if not bool(student_neg_inf.any()):
        return
    infinite_kl = student_neg_inf & ~torch.isneginf(teacher_logits)
    if bool(infinite_kl.any()):
        row, col = infinite_kl.nonzero()[0].tolist()
        raise ValueError(
            f'student_logits is -inf where teacher_logits is not (row {row}, '
            f'class {col}); KL(p_T || p_S) would be infinite')


def check_labels(labels: Tensor, num_samples: int, num_classes: int) -> None:
    """Check target labels for DKD.

    Args:
        labels (Tensor): Target class of each sample, shape (N,), integer
            dtype, values in ``[0, num_classes)`` (here ``num_classes`` is
            the logits' last dimension, background included).
        num_samples (int): N, the number of rows of the logits.
        num_classes (int): C, the number of columns of the logits.

    Raises:
        TypeError: If ``labels`` is not an integer tensor.
        ValueError: If its shape is not (N,) or a label is out of range.
    """
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
    if num_samples == 0:
        return
    low, high = torch.stack(torch.aminmax(labels)).tolist()
    if low < 0 or high >= num_classes:
        raise ValueError(
            f'labels must lie in [0, {num_classes - 1}] for logits with '
            f'{num_classes} columns, got values in [{low}, {high}]')


def _check_positive(name: str, value: float) -> None:
    """Raise a ValueError unless ``value`` is a finite real number > 0."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f'{name} must be a finite number > 0, got {value!r}')


def _check_non_negative(name: str, value: float) -> None:
    """Raise a ValueError unless ``value`` is a finite real number >= 0."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value < 0):
        raise ValueError(
            f'{name} must be a finite number >= 0, got {value!r}')


def _check_mode(mode: str, name: str) -> None:
    """Raise a ValueError unless ``mode`` is one of :data:`WEIGHT_MODES`."""
    if mode not in WEIGHT_MODES:
        raise ValueError(f'{name} must be one of {WEIGHT_MODES}, got {mode!r}')


def _check_dkd_args(alpha: float, beta: float, temperature: float) -> None:
    """Validate the scalar arguments of DKD."""
    _check_non_negative('alpha', alpha)
    _check_non_negative('beta', beta)
    _check_positive('temperature', temperature)


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype the math runs in: the inputs' promoted dtype, >= float32."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def _finite_log_probs(scaled_logits: Tensor) -> Tensor:
    """``log_softmax`` of temperature-scaled logits, ``-inf`` -> dtype's min.

    The replacement makes ``p * log p`` and ``p * (log p - log q)`` exactly 0
    where ``p = 0`` (instead of ``0 * -inf = NaN``), in the forward and the
    backward pass, without changing any finite value.
    """
    log_probs = F.log_softmax(scaled_logits, dim=1)
    return log_probs.clamp(min=torch.finfo(log_probs.dtype).min)


def _kl_div_rows(log_target: Tensor, log_input: Tensor) -> Tensor:
    """``sum_i p_i (log p_i - log q_i)`` per row, from finite log-probs."""
    return (log_target.exp() * (log_target - log_input)).sum(dim=1)


def _entropy(logits: Tensor, temperature: float) -> Tensor:
    """Unchecked :func:`softened_entropy` on compute-dtype logits."""
    log_probs = _finite_log_probs(logits / temperature)
    return -(log_probs.exp() * log_probs).sum(dim=1)


def _standardize(logits: Tensor, eps: float) -> Tensor:
    """Unchecked :func:`standardize_logits` on compute-dtype logits."""
    finite = torch.isfinite(logits)
    count = finite.sum(dim=1, keepdim=True)
    values = logits.masked_fill(~finite, 0.)
    mean = values.sum(dim=1, keepdim=True) / count
    centered = (values - mean).masked_fill(~finite, 0.)
    var = centered.square().sum(
        dim=1, keepdim=True) / (count - 1).clamp(min=1)
    # sqrt has an infinite derivative at 0: take it only where var > 0, so a
    # constant row gets zeros and a zero (not NaN) gradient.
    constant = var == 0
    std = var.masked_fill(constant, 1.).sqrt().masked_fill(constant, 0.)
    standardized = centered / (std + eps)
    return standardized.masked_fill(~finite, float('-inf'))


def _weights(entropy_teacher: Tensor, entropy_student: Tensor, mode: str,
             entropy_upper_bound: float) -> Tensor:
    """Unchecked :func:`entropy_weights`."""
    with torch.no_grad():
        h_t = entropy_teacher.detach()
        if mode == 'none':
            return torch.ones_like(h_t)
        if mode == 'base':
            return h_t.clone()
        if entropy_upper_bound > 0:
            interact = h_t * entropy_student.detach() / entropy_upper_bound
        else:
            interact = torch.zeros_like(h_t)
        if mode == 'interact':
            return interact
        return (h_t + interact) / 2


def _kd(student_logits: Tensor, teacher_logits: Tensor,
        temperature: float) -> Tensor:
    """Unchecked :func:`kd_loss_per_sample` on compute-dtype logits."""
    log_p_s = _finite_log_probs(student_logits / temperature)
    log_p_t = _finite_log_probs(teacher_logits.detach() / temperature)
    return _kl_div_rows(log_p_t, log_p_s) * temperature**2


def _binary_log_probs(log_probs: Tensor, labels: Tensor,
                      target_mask: Tensor) -> Tensor:
    """``[log p_target, log(1 - p_target)]`` per row, shape (N, 2).

    ``log(1 - p_target)`` is the log-sum-exp of the non-target log-probs, so
    it stays accurate when ``p_target -> 1``. Masking with the dtype's min
    instead of ``-inf`` keeps it finite (and its gradient NaN-free) when no
    non-target class has probability > 0.
    """
    min_value = torch.finfo(log_probs.dtype).min
    log_target = log_probs.gather(1, labels[:, None])
    log_rest = torch.logsumexp(
        log_probs.masked_fill(target_mask, min_value), dim=1, keepdim=True)
    return torch.cat([log_target, log_rest], dim=1)


def _dkd(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor,
         alpha: float, beta: float, temperature: float) -> Tensor:
    """Unchecked :func:`dkd_loss_per_sample` on compute-dtype logits."""
    scaled_s = student_logits / temperature
    scaled_t = teacher_logits.detach() / temperature
    labels = labels.long()
    target_mask = torch.zeros_like(
        scaled_s, dtype=torch.bool).scatter_(1, labels[:, None], True)
    tckd = _kl_div_rows(
        _binary_log_probs(_finite_log_probs(scaled_t), labels, target_mask),
        _binary_log_probs(_finite_log_probs(scaled_s), labels, target_mask))
    # The official code subtracts 1000 from the target logit, which is not
    # enough for logits of large magnitude; the dtype's min always is, and
    # unlike -inf it keeps log_softmax finite when a row has no finite
    # non-target logit.
    min_value = torch.finfo(scaled_s.dtype).min
    nckd = _kl_div_rows(
        _finite_log_probs(scaled_t.masked_fill(target_mask, min_value)),
        _finite_log_probs(scaled_s.masked_fill(target_mask, min_value)))
    has_non_target = (torch.isfinite(scaled_t) & ~target_mask).any(dim=1)
    nckd = nckd * has_non_target
    return (alpha * tckd + beta * nckd) * temperature**2


def standardize_logits(logits: Tensor,
                       eps: float = STANDARDIZATION_EPS) -> Tensor:
    """Z-score each logit vector (logit standardization, Sun et al. 2024).

    ``(z - mean(z)) / (std(z) + eps)`` per row, with the unbiased standard
    deviation and ``eps`` added to it, as in the authors' code. ``-inf``
    entries are left out of the mean and std and stay ``-inf``. A row with a
    single finite entry (always the case for C = 1) or with constant entries
    has std 0 and maps to zeros, not NaN.

    Args:
        logits (Tensor): Logits, shape (N, C).
        eps (float): Added to the std, > 0. Defaults to 1e-7.

    Returns:
        Tensor: Standardized logits, shape (N, C), in the compute dtype
        (float32, or float64 for float64 input).
    """
    check_logits(logits, 'logits')
    _check_positive('eps', eps)
    return _standardize(logits.to(_compute_dtype(logits)), eps)


def softened_entropy(logits: Tensor, temperature: float) -> Tensor:
    """Entropy of ``softmax(logits / T')`` per sample (eq. 8).

    ``H_n = -sum_i p_i log p_i`` computed from ``log_softmax``; classes with
    ``p_i = 0`` (``-inf`` logits or underflow) contribute exactly 0. The
    result lies in ``[0, log C]`` (0 for C = 1).

    Args:
        logits (Tensor): Logits, shape (N, C).
        temperature (float): Entropy temperature ``T' > 0``.

    Returns:
        Tensor: Entropies, shape (N,), in the compute dtype.
    """
    check_logits(logits, 'logits')
    _check_positive('temperature', temperature)
    return _entropy(logits.to(_compute_dtype(logits)), temperature)


def entropy_weights(entropy_teacher: Tensor,
                    entropy_student: Tensor,
                    mode: str = 'ea',
                    *,
                    entropy_upper_bound: float) -> Tensor:
    """Per-sample reweighting factors of EA-KD, without gradient.

    With ``H_ub`` the entropy upper bound (``log C`` in the paper):

    - ``'ea'``: ``(H_T + H_T * H_S / H_ub) / 2`` (eq. 11-12);
    - ``'base'``: ``H_T`` (eq. 9);
    - ``'interact'``: ``H_T * H_S / H_ub`` (eq. 10);
    - ``'none'``: ones (plain, unweighted distillation).

    ``H_ub = 0`` happens only for C = 1, where every entropy is 0: the
    interaction term is then defined as 0, so the weights of ``'ea'``,
    ``'base'`` and ``'interact'`` are 0 (the limit of eq. 13c), not NaN.

    Args:
        entropy_teacher (Tensor): Teacher entropies ``H_T``, shape (N,).
        entropy_student (Tensor): Student entropies ``H_S``, shape (N,).
        mode (str): One of :data:`WEIGHT_MODES`. Defaults to ``'ea'``.
        entropy_upper_bound (float): ``H_ub >= 0``, keyword-only.

    Returns:
        Tensor: Detached weights, shape (N,), in ``[0, H_ub]`` when
        ``H_ub = log C`` (ones for ``'none'``).
    """
    _check_mode(mode, 'mode')
    _check_non_negative('entropy_upper_bound', entropy_upper_bound)
    for name, entropy in (('entropy_teacher', entropy_teacher),
                          ('entropy_student', entropy_student)):
        if not isinstance(entropy, Tensor) or not entropy.is_floating_point():
            raise TypeError(f'{name} must be a floating-point tensor')
        if entropy.dim() != 1:
            raise ValueError(f'{name} must have shape (N,), got shape '
                             f'{tuple(entropy.shape)}')
    if entropy_teacher.shape != entropy_student.shape:
        raise ValueError(
            f'entropy_teacher has shape {tuple(entropy_teacher.shape)} but '
            f'entropy_student has shape {tuple(entropy_student.shape)}')
    return _weights(entropy_teacher, entropy_student, mode,
                    entropy_upper_bound)


def kd_loss_per_sample(student_logits: Tensor,
                       teacher_logits: Tensor,
                       temperature: float = 1.0) -> Tensor:
    """Vanilla KD term per sample (eq. 3).

    ``KL(softmax(z_T / T) || softmax(z_S / T)) * T^2``, summed over classes.
    The teacher logits are detached.

    Args:
        student_logits (Tensor): Student logits, shape (N, C).
        teacher_logits (Tensor): Teacher logits, shape (N, C).
        temperature (float): Distillation temperature ``T > 0``.
            Defaults to 1.0.

    Returns:
        Tensor: KD terms, shape (N,), in the compute dtype.
    """
    check_logit_pair(student_logits, teacher_logits)
    _check_positive('temperature', temperature)
    dtype = _compute_dtype(student_logits, teacher_logits)
    return _kd(student_logits.to(dtype), teacher_logits.to(dtype), temperature)


def dkd_loss_per_sample(student_logits: Tensor,
                        teacher_logits: Tensor,
                        labels: Tensor,
                        alpha: float = 1.0,
                        beta: float = 0.25,
                        temperature: float = 1.0) -> Tensor:
    """Decoupled KD term per sample (Zhao et al., CVPR 2022).

    ``(alpha * TCKD + beta * NCKD) * T^2`` where TCKD is the KL divergence of
    the binary distributions ``[p_target, 1 - p_target]`` and NCKD the KL
    divergence of the distributions over the non-target classes (softmax with
    the target class masked out), both at temperature ``T``. The teacher
    logits are detached.

    NCKD is defined as 0 when the teacher has no finite non-target logit (for
    instance C = 1): there is no non-target distribution to transfer.

    Args:
        student_logits (Tensor): Student logits, shape (N, C).
        teacher_logits (Tensor): Teacher logits, shape (N, C).
        labels (Tensor): Target class per sample, shape (N,), integer dtype,
            in ``[0, C)``; in detection the background label is ``C - 1``.
        alpha (float): Weight of TCKD, >= 0. Defaults to 1.0.
        beta (float): Weight of NCKD, >= 0. Defaults to 0.25.
        temperature (float): Distillation temperature ``T > 0``.
            Defaults to 1.0.

    Returns:
        Tensor: DKD terms, shape (N,), in the compute dtype.
    """
    check_logit_pair(student_logits, teacher_logits)
    check_labels(labels, *student_logits.shape)
    _check_dkd_args(alpha, beta, temperature)
    dtype = _compute_dtype(student_logits, teacher_logits)
    return _dkd(
        student_logits.to(dtype), teacher_logits.to(dtype), labels, alpha,
        beta, temperature)


class EADistillTerms(NamedTuple):
    """Per-sample outputs of :func:`ea_kd_loss_per_sample` and
    :func:`ea_dkd_loss_per_sample`, all of shape (N,).

    Attributes:
        loss (Tensor): ``w_n * term_n``, differentiable w.r.t. the student.
        weight (Tensor): The detached weights ``w_n`` (ones for ``'none'``).
        entropy_teacher (Tensor, optional): Detached ``H_T`` at ``T'``.
        entropy_student (Tensor, optional): Detached ``H_S`` at ``T'``.
            Both are None only in mode ``'none'`` without ``return_entropy``.
    """
    loss: Tensor
    weight: Tensor
    entropy_teacher: Optional[Tensor]
    entropy_student: Optional[Tensor]


def ea_kd_loss_per_sample(student_logits: Tensor,
                          teacher_logits: Tensor,
                          temperature: float = 1.0,
                          entropy_temperature: float = 3.0,
                          weight_mode: str = 'ea',
                          entropy_upper_bound: Optional[float] = None,
                          logit_standardization: bool = False,
                          return_entropy: bool = False) -> EADistillTerms:
    """EA-KD per sample: ``w_n * KD_n`` (the summand of eq. 14).

    The inputs are validated and upcast once; the entropies (at
    ``entropy_temperature``) are computed once, without gradient, and give
    both the weights and the returned statistics. With
    ``logit_standardization`` the logits are z-scored first and the weights
    are computed on the standardized logits too, as in the authors' code.

    Args:
        student_logits (Tensor): Student logits, shape (N, C).
        teacher_logits (Tensor): Teacher logits, shape (N, C); detached.
        temperature (float): KD temperature ``T > 0``. Defaults to 1.0.
        entropy_temperature (float): Entropy temperature ``T' > 0``.
            Defaults to 3.0.
        weight_mode (str): One of :data:`WEIGHT_MODES`. Defaults to 'ea'.
        entropy_upper_bound (float, optional): ``H_ub``; None means
            ``log C``. Defaults to None.
        logit_standardization (bool): Z-score the logits first.
            Defaults to False.
        return_entropy (bool): Compute the entropies in mode ``'none'`` too
            (the other modes always compute them). Defaults to False.

    Returns:
        EADistillTerms: Per-sample loss, weights and entropies, shape (N,).
    """
    student, teacher = _prepare_pair(student_logits, teacher_logits,
                                     temperature, entropy_temperature,
                                     weight_mode, entropy_upper_bound,
                                     logit_standardization)
    weight, h_t, h_s = _logit_weights(student, teacher, entropy_temperature,
                                      weight_mode, entropy_upper_bound,
                                      return_entropy)
    return EADistillTerms(weight * _kd(student, teacher, temperature), weight,
                          h_t, h_s)


def ea_dkd_loss_per_sample(student_logits: Tensor,
                           teacher_logits: Tensor,
                           labels: Tensor,
                           alpha: float = 1.0,
                           beta: float = 0.25,
                           temperature: float = 1.0,
                           entropy_temperature: float = 3.0,
                           weight_mode: str = 'ea',
                           entropy_upper_bound: Optional[float] = None,
                           logit_standardization: bool = False,
                           return_entropy: bool = False) -> EADistillTerms:
    """EA-DKD per sample: ``w_n * DKD_n``.

    Same as :func:`ea_kd_loss_per_sample` with the DKD term of
    :func:`dkd_loss_per_sample` in place of the KD term.

    Args:
        student_logits (Tensor): Student logits, shape (N, C).
        teacher_logits (Tensor): Teacher logits, shape (N, C); detached.
        labels (Tensor): Target class per sample, shape (N,), integer dtype,
            in ``[0, C)``.
        alpha (float): Weight of TCKD, >= 0. Defaults to 1.0.
        beta (float): Weight of NCKD, >= 0. Defaults to 0.25.
        temperature (float): DKD temperature ``T > 0``. Defaults to 1.0.
        entropy_temperature (float): Entropy temperature ``T' > 0``.
            Defaults to 3.0.
        weight_mode (str): One of :data:`WEIGHT_MODES`. Defaults to 'ea'.
        entropy_upper_bound (float, optional): ``H_ub``; None means
            ``log C``. Defaults to None.
        logit_standardization (bool): Z-score the logits first.
            Defaults to False.
        return_entropy (bool): Compute the entropies in mode ``'none'`` too.
            Defaults to False.

    Returns:
        EADistillTerms: Per-sample loss, weights and entropies, shape (N,).
    """
    student, teacher = _prepare_pair(student_logits, teacher_logits,
                                     temperature, entropy_temperature,
                                     weight_mode, entropy_upper_bound,
                                     logit_standardization)
    check_labels(labels, *student.shape)
    _check_dkd_args(alpha, beta, temperature)
    weight, h_t, h_s = _logit_weights(student, teacher, entropy_temperature,
                                      weight_mode, entropy_upper_bound,
                                      return_entropy)
    term = _dkd(student, teacher, labels, alpha, beta, temperature)
    return EADistillTerms(weight * term, weight, h_t, h_s)


def _prepare_pair(student_logits: Tensor, teacher_logits: Tensor,
                  temperature: float, entropy_temperature: float,
                  weight_mode: str, entropy_upper_bound: Optional[float],
                  logit_standardization: bool) -> Tuple[Tensor, Tensor]:
    """Validate the EA arguments once; return compute-dtype logits.

    The teacher is detached; with ``logit_standardization`` both are
    z-scored with :func:`standardize_logits`'s default ``eps``.
    """
    check_logit_pair(student_logits, teacher_logits)
    _check_positive('temperature', temperature)
    _check_positive('entropy_temperature', entropy_temperature)
    _check_mode(weight_mode, 'weight_mode')
    if entropy_upper_bound is not None:
        _check_non_negative('entropy_upper_bound', entropy_upper_bound)
    dtype = _compute_dtype(student_logits, teacher_logits)
    student = student_logits.to(dtype)
    teacher = teacher_logits.detach().to(dtype)
    if logit_standardization:
        student = _standardize(student, STANDARDIZATION_EPS)
        teacher = _standardize(teacher, STANDARDIZATION_EPS)
    return student, teacher


def _logit_weights(
    student: Tensor, teacher: Tensor, entropy_temperature: float,
    weight_mode: str, entropy_upper_bound: Optional[float],
    return_entropy: bool
) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """Weights and entropies from validated compute-dtype logits."""
    if weight_mode == 'none' and not return_entropy:
        return student.new_ones(student.size(0)), None, None
    if entropy_upper_bound is None:
        entropy_upper_bound = math.log(student.size(1))
    with torch.no_grad():
        h_t = _entropy(teacher, entropy_temperature)
        h_s = _entropy(student.detach(), entropy_temperature)
    return _weights(h_t, h_s, weight_mode, entropy_upper_bound), h_t, h_s
