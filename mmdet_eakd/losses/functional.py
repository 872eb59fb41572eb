# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Pure math of EA-KD (Entropy-based Adaptive Knowledge Distillation).

Everything here depends on ``torch`` only, so it can be tested and reused
without mmdet. Equation numbers refer to the EA-KD paper (Sec. 3.2).

Conventions shared by all functions:

- Logits are 2-D ``(N, C)`` floating tensors. For softmax classifiers ``C``
  counts every class, so in detection ``C = num_classes + 1`` and the
  background label is ``C - 1``; for sigmoid classifiers (section "Sigmoid
  (independent Bernoulli) classifiers" below) ``C = num_classes``, without a
  background column.
- Math is done in at least float32: fp16/bf16 inputs are upcast, float64 stays
  float64. Mixed input dtypes are promoted (e.g. an fp16 teacher and a float32
  student are compared in float32).
- The teacher never receives gradient: teacher logits are detached inside.
- ``-inf`` logits mean "probability exactly 0": every ``p * log p`` or
  ``p * log(p / q)`` term with ``p = 0`` counts as 0, in the forward and the
  backward pass. (Sigmoid logits may also be ``+inf``; see that section.)
- Arguments and values are not validated here (the registered loss modules
  check what enters them; only an unknown weight mode, which has no formula,
  raises): these functions never read a tensor's values on the host. Like
  torch's own losses, NaN logits give NaN for their sample (other samples
  are unaffected). For softmax logits so do ``+inf`` logits and rows whose
  logits are all ``-inf``, and a student ``-inf`` where the teacher's
  probability is > 0 makes ``KL(p_T || p_S)`` infinite, so that sample's
  value is meaningless.
"""
import math
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: Weighting modes of the paper's ablation (Table 9); ``'none'`` is plain KD.
WEIGHT_MODES: Tuple[str, ...] = ('ea', 'base', 'interact', 'none')

#: Default ``eps`` of :func:`standardize_logits` (the authors' value).
STANDARDIZATION_EPS = 1e-7


class EAStats(NamedTuple):
    """Per-sample statistics of EA-KD, from :func:`ea_statistics`.

    The field names are the names of the statistics everywhere: the training
    logs (the mean over the step's samples, see :meth:`means`), the loss
    modules' ``ea_stats`` and the analysis. All fields are detached tensors
    of shape (N,).

    Attributes:
        ea_weight (Tensor): The weight ``w_n`` of the weight mode (``w_EA``,
            ``H_T``, the interaction term, or ones for ``'none'``).
        entropy_t (Tensor): Teacher entropy ``H_T`` at ``T'`` (eq. 8).
        entropy_s (Tensor): Student entropy ``H_S`` at ``T'``.
    """
    ea_weight: Tensor
    entropy_t: Tensor
    entropy_s: Tensor

    def means(self) -> Dict[str, Tensor]:
        """The mean of each statistic over the samples, keyed by its name.

        Returns:
            dict[str, Tensor]: Scalar tensors; 0 for a statistic with no
            samples (N = 0), so a step without RoIs still logs a number.
        """
        return {
            name: value.mean() if value.numel() else value.new_zeros(())
            for name, value in self._asdict().items()
        }


#: Names of the EA statistics (the :class:`EAStats` fields), in order.
EA_STAT_NAMES: Tuple[str, ...] = EAStats._fields


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
    logits = logits.to(_compute_dtype(logits))
    # NaN and +inf stay in (their row becomes NaN, as for any other loss).
    absent = torch.isneginf(logits)
    count = (~absent).sum(dim=1, keepdim=True)
    values = logits.masked_fill(absent, 0.)
    mean = values.sum(dim=1, keepdim=True) / count
    centered = (values - mean).masked_fill(absent, 0.)
    var = centered.square().sum(
        dim=1, keepdim=True) / (count - 1).clamp(min=1)
    # sqrt has an infinite derivative at 0: take it only where var > 0, so a
    # constant row gets zeros and a zero (not NaN) gradient.
    constant = var == 0
    std = var.masked_fill(constant, 1.).sqrt().masked_fill(constant, 0.)
    standardized = centered / (std + eps)
    return standardized.masked_fill(absent, float('-inf'))


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
    log_probs = _finite_log_probs(
        logits.to(_compute_dtype(logits)) / temperature)
    return -(log_probs.exp() * log_probs).sum(dim=1)


@torch.no_grad()
def entropy_weights(entropy_t: Tensor,
                    entropy_s: Tensor,
                    mode: str = 'ea',
                    *,
                    entropy_upper_bound: float) -> Tensor:
    """Per-sample reweighting factors of EA-KD, without gradient.

    With ``H_ub`` the entropy upper bound (``log C`` in the paper):

    - ``'ea'``: ``(H_T + H_T * H_S / H_ub) / 2`` (eq. 11-12);
    - ``'base'``: ``H_T`` (eq. 9);
    - ``'interact'``: ``H_T * H_S / H_ub`` (eq. 10);
    - ``'none'``: ones (plain, unweighted distillation).

    ``H_ub = 0`` is ``log C`` for C = 1, where every entropy is 0: the
    interaction term is then defined as 0, so the weights of ``'ea'``,
    ``'base'`` and ``'interact'`` are 0 (the limit of eq. 13c), not NaN.

    Args:
        entropy_t (Tensor): Teacher entropies ``H_T``, shape (N,).
        entropy_s (Tensor): Student entropies ``H_S``, shape (N,).
        mode (str): One of :data:`WEIGHT_MODES`. Defaults to ``'ea'``.
        entropy_upper_bound (float): ``H_ub >= 0``, keyword-only.

    Returns:
        Tensor: Detached weights, shape (N,), in ``[0, H_ub]`` when
        ``H_ub = log C`` (ones for ``'none'``).

    Raises:
        ValueError: If ``mode`` is not one of :data:`WEIGHT_MODES`.
    """
    h_t = entropy_t.detach()
    if mode == 'none':
        return torch.ones_like(h_t)
    if mode == 'base':
        return h_t.clone()
    if entropy_upper_bound > 0:
        interact = h_t * entropy_s.detach() / entropy_upper_bound
    else:
        interact = torch.zeros_like(h_t)
    if mode == 'interact':
        return interact
    if mode == 'ea':
        return (h_t + interact) / 2
    raise ValueError(f'mode must be one of {WEIGHT_MODES}, got {mode!r}')


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
    dtype = _compute_dtype(student_logits, teacher_logits)
    log_p_s = _finite_log_probs(student_logits.to(dtype) / temperature)
    log_p_t = _finite_log_probs(teacher_logits.detach().to(dtype) /
                                temperature)
    return _kl_div_rows(log_p_t, log_p_s) * temperature**2


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

    NCKD is defined as 0 when every non-target logit of the teacher is
    ``-inf`` (for instance C = 1): there is no non-target distribution to
    transfer.

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
    dtype = _compute_dtype(student_logits, teacher_logits)
    scaled_s = student_logits.to(dtype) / temperature
    scaled_t = teacher_logits.detach().to(dtype) / temperature
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
    min_value = torch.finfo(dtype).min
    nckd = _kl_div_rows(
        _finite_log_probs(scaled_t.masked_fill(target_mask, min_value)),
        _finite_log_probs(scaled_s.masked_fill(target_mask, min_value)))
    has_non_target = (~torch.isneginf(scaled_t) & ~target_mask).any(dim=1)
    nckd = nckd * has_non_target
    return (alpha * tckd + beta * nckd) * temperature**2


def _prepare_pair(student_logits: Tensor, teacher_logits: Tensor,
                  logit_standardization: bool) -> Tuple[Tensor, Tensor]:
    """Upcast both logits once and detach the teacher; z-score them if asked
    (with :data:`STANDARDIZATION_EPS`, as in the authors' code)."""
    dtype = _compute_dtype(student_logits, teacher_logits)
    student = student_logits.to(dtype)
    teacher = teacher_logits.detach().to(dtype)
    if logit_standardization:
        student = standardize_logits(student)
        teacher = standardize_logits(teacher)
    return student, teacher


#: An entropy per sample, ``entropy(logits (N, C), T') -> (N,)``:
#: :func:`softened_entropy` or :func:`binary_softened_entropy`.
_EntropyFn = Callable[[Tensor, float], Tensor]


def _softmax_upper_bound(logits: Tensor,
                         entropy_upper_bound: Optional[float]) -> float:
    """``H_ub`` of the softmax path: the given bound, or ``log C`` for
    None."""
    if entropy_upper_bound is None:
        return math.log(logits.size(1))
    return entropy_upper_bound


@torch.no_grad()
def _statistics(entropy: _EntropyFn, student: Tensor, teacher: Tensor,
                entropy_temperature: float, weight_mode: str,
                entropy_upper_bound: float) -> EAStats:
    """The :class:`EAStats` of prepared logits with the given entropy."""
    h_t = entropy(teacher, entropy_temperature)
    h_s = entropy(student.detach(), entropy_temperature)
    weight = entropy_weights(
        h_t, h_s, weight_mode, entropy_upper_bound=entropy_upper_bound)
    return EAStats(weight, h_t, h_s)


def _weights(entropy: _EntropyFn, student: Tensor, teacher: Tensor,
             entropy_temperature: float, weight_mode: str,
             entropy_upper_bound: float) -> Tensor:
    """The detached weights ``w_n`` of prepared logits, shape (N,); plain
    ones for ``'none'`` without computing any entropy."""
    if weight_mode == 'none':
        return student.new_ones(student.size(0))
    return _statistics(entropy, student, teacher, entropy_temperature,
                       weight_mode, entropy_upper_bound).ea_weight


def ea_statistics(student_logits: Tensor,
                  teacher_logits: Tensor,
                  entropy_temperature: float = 3.0,
                  weight_mode: str = 'ea',
                  entropy_upper_bound: Optional[float] = None,
                  logit_standardization: bool = False) -> EAStats:
    """Per-sample EA weights and entropies, without gradient.

    The weights are the ones :func:`ea_kd_loss_per_sample` and
    :func:`ea_dkd_loss_per_sample` use with the same arguments; the entropies
    are computed in every mode (also ``'none'``, whose weights are ones).

    Args:
        student_logits (Tensor): Student logits, shape (N, C).
        teacher_logits (Tensor): Teacher logits, shape (N, C).
        entropy_temperature (float): Entropy temperature ``T' > 0``.
            Defaults to 3.0.
        weight_mode (str): One of :data:`WEIGHT_MODES`. Defaults to 'ea'.
        entropy_upper_bound (float, optional): ``H_ub``; None means
            ``log C``. Defaults to None.
        logit_standardization (bool): Z-score the logits first (the weights
            and entropies are then those of the standardized logits).
            Defaults to False.

    Returns:
        EAStats: Detached ``ea_weight``, ``entropy_t`` and ``entropy_s``,
        each shape (N,), in the compute dtype.
    """
    student, teacher = _prepare_pair(student_logits, teacher_logits,
                                     logit_standardization)
    return _statistics(softened_entropy, student, teacher,
                       entropy_temperature, weight_mode,
                       _softmax_upper_bound(student, entropy_upper_bound))


def ea_kd_loss_per_sample(student_logits: Tensor,
                          teacher_logits: Tensor,
                          temperature: float = 1.0,
                          entropy_temperature: float = 3.0,
                          weight_mode: str = 'ea',
                          entropy_upper_bound: Optional[float] = None,
                          logit_standardization: bool = False) -> Tensor:
    """EA-KD per sample: ``w_n * KD_n`` (the summand of eq. 14).

    ``w_n`` is the detached weight of :func:`ea_statistics` (entropies at
    ``entropy_temperature``); ``KD_n`` is :func:`kd_loss_per_sample` at
    ``temperature``. With ``logit_standardization`` the logits are z-scored
    first and the weights are computed on the standardized logits too, as in
    the authors' code. Mode ``'none'`` (plain KD) computes no entropy.

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

    Returns:
        Tensor: Per-sample losses, shape (N,), in the compute dtype,
        differentiable w.r.t. the student logits.
    """
    student, teacher = _prepare_pair(student_logits, teacher_logits,
                                     logit_standardization)
    weight = _weights(softened_entropy, student, teacher,
                      entropy_temperature, weight_mode,
                      _softmax_upper_bound(student, entropy_upper_bound))
    return weight * kd_loss_per_sample(student, teacher, temperature)


def ea_dkd_loss_per_sample(student_logits: Tensor,
                           teacher_logits: Tensor,
                           labels: Tensor,
                           alpha: float = 1.0,
                           beta: float = 0.25,
                           temperature: float = 1.0,
                           entropy_temperature: float = 3.0,
                           weight_mode: str = 'ea',
                           entropy_upper_bound: Optional[float] = None,
                           logit_standardization: bool = False) -> Tensor:
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

    Returns:
        Tensor: Per-sample losses, shape (N,), in the compute dtype,
        differentiable w.r.t. the student logits.
    """
    student, teacher = _prepare_pair(student_logits, teacher_logits,
                                     logit_standardization)
    weight = _weights(softened_entropy, student, teacher,
                      entropy_temperature, weight_mode,
                      _softmax_upper_bound(student, entropy_upper_bound))
    return weight * dkd_loss_per_sample(student, teacher, labels, alpha, beta,
                                        temperature)


# --------------------------------------------------------------------------
# Sigmoid (independent Bernoulli) classifiers
# --------------------------------------------------------------------------
#
# Dense one-stage heads (RetinaNet, FCOS, ATSS, GFL) predict C = num_classes
# independent probabilities ``p_c = sigmoid(z_c)`` per location, with no
# background column: a background location has every ``p_c`` small. A
# softmax over these logits would make such a location (all logits alike)
# maximally uncertain, so the sigmoid path uses the entropy of the head's own
# prediction instead: the binary entropies of its C Bernoulli outputs. No
# logit standardization here: sigmoid probabilities, unlike softmax ones,
# change when the logits are shifted or scaled.
#
# Both infinities are legitimate sigmoid logits: ``+inf`` is probability
# exactly 1, ``-inf`` probability exactly 0. Each term ``p log p``,
# ``(1 - p) log(1 - p)``, ``p log(p / q)`` or ``(1 - p) log((1 - p) /
# (1 - q))`` whose leading probability is exactly 0 counts as 0, in the
# forward and the backward pass. NaN logits give NaN for their sample only.

#: Upper bound ``H_ub`` of :func:`binary_softened_entropy`: ``h(1/2)``.
SIGMOID_ENTROPY_UPPER_BOUND: float = math.log(2)

#: Default ``T'`` of the sigmoid path: the entropy of the head's own
#: prediction. Measured with ``tools/sweep_entropy_temperature.py`` on the
#: synthetic GFL regime: larger ``T'`` raises every background location's
#: weight (mean 0.011 at ``T' = 1``, 0.27 at 3, against 0.15 and 0.48 for
#: positives), so the ~99% background locations take most of the weighted
#: loss; see README, "Dense detectors".
SIGMOID_ENTROPY_TEMPERATURE: float = 1.0


def _finite_bernoulli_log_probs(
        scaled_logits: Tensor) -> Tuple[Tensor, Tensor]:
    """``(log p, log(1 - p))`` of ``p = sigmoid(x)``, ``-inf`` -> dtype's min.

    Both come from ``logsigmoid`` (``log(1 - p) = logsigmoid(-x)``), so they
    stay accurate for large ``|x|``. As in :func:`_finite_log_probs`, the
    replacement of ``-inf`` makes every term whose leading probability is 0
    exactly 0, with a zero (not NaN) gradient.

    Args:
        scaled_logits (Tensor): Temperature-scaled logits, shape (N, C).

    Returns:
        tuple[Tensor, Tensor]: ``log p`` and ``log(1 - p)``, each (N, C).
    """
    min_value = torch.finfo(scaled_logits.dtype).min
    return (F.logsigmoid(scaled_logits).clamp(min=min_value),
            F.logsigmoid(-scaled_logits).clamp(min=min_value))


def binary_softened_entropy(logits: Tensor, temperature: float) -> Tensor:
    """Mean binary entropy of ``sigmoid(logits / T')`` per sample.

    ``H_n = (1 / C) sum_c h(p_c)`` with ``p_c = sigmoid(z_c / T')`` and
    ``h(p) = -p log p - (1 - p) log(1 - p)``: the entropy of the C
    independent Bernoulli predictions of a sigmoid head, divided by C. It
    lies in ``[0, log 2]`` (:data:`SIGMOID_ENTROPY_UPPER_BOUND`), is
    ``log 2`` only when every logit is 0 and is symmetric, ``h(z) = h(-z)``.
    ``+inf`` and ``-inf`` logits (probability exactly 1 or 0) contribute 0.

    Args:
        logits (Tensor): Sigmoid logits, shape (N, C), C = num_classes.
        temperature (float): Entropy temperature ``T' > 0``.

    Returns:
        Tensor: Entropies, shape (N,), in the compute dtype.
    """
    log_p, log_q = _finite_bernoulli_log_probs(
        logits.to(_compute_dtype(logits)) / temperature)
    return -(log_p.exp() * log_p + log_q.exp() * log_q).mean(dim=1)


def sigmoid_kd_loss_per_sample(student_logits: Tensor,
                               teacher_logits: Tensor,
                               temperature: float = 1.0) -> Tensor:
    """KD term of a sigmoid classifier per sample.

    ``T^2 * sum_c KL(Bern(p_T,c) || Bern(p_S,c))`` with
    ``p_c = sigmoid(z_c / T)``, where ``KL(Bern(p) || Bern(q)) =
    p log(p / q) + (1 - p) log((1 - p) / (1 - q))``. Its gradient w.r.t. the
    student logits is ``T (p_S - p_T)``, that of a soft-target BCE. The
    teacher logits are detached.

    A teacher logit of ``+inf`` or ``-inf`` (probability 1 or 0) is a valid
    target. A student ``+inf`` or ``-inf`` where the teacher's logit is not
    the same infinity makes the KL infinite, so that sample's value is
    meaningless (huge or ``inf``, with a zero gradient for that class).

    Args:
        student_logits (Tensor): Student logits, shape (N, C).
        teacher_logits (Tensor): Teacher logits, shape (N, C).
        temperature (float): Distillation temperature ``T > 0``.
            Defaults to 1.0.

    Returns:
        Tensor: KD terms, shape (N,), in the compute dtype.
    """
    dtype = _compute_dtype(student_logits, teacher_logits)
    log_p_s, log_q_s = _finite_bernoulli_log_probs(
        student_logits.to(dtype) / temperature)
    log_p_t, log_q_t = _finite_bernoulli_log_probs(
        teacher_logits.detach().to(dtype) / temperature)
    kl = (log_p_t.exp() * (log_p_t - log_p_s) + log_q_t.exp() *
          (log_q_t - log_q_s))
    return kl.sum(dim=1) * temperature**2


def _sigmoid_upper_bound(entropy_upper_bound: Optional[float]) -> float:
    """``H_ub`` of the sigmoid path: the given bound, or ``log 2`` for
    None."""
    if entropy_upper_bound is None:
        return SIGMOID_ENTROPY_UPPER_BOUND
    return entropy_upper_bound


def sigmoid_ea_statistics(
        student_logits: Tensor,
        teacher_logits: Tensor,
        entropy_temperature: float = SIGMOID_ENTROPY_TEMPERATURE,
        weight_mode: str = 'ea',
        entropy_upper_bound: Optional[float] = None) -> EAStats:
    """Per-sample EA weights and binary entropies, without gradient.

    The sigmoid counterpart of :func:`ea_statistics`: the entropies are
    those of :func:`binary_softened_entropy` and the weights those of
    :func:`entropy_weights` with ``H_ub = log 2``, the ones
    :func:`sigmoid_ea_kd_loss_per_sample` uses with the same arguments. The
    entropies are computed in every mode (also ``'none'``, whose weights are
    ones).

    Args:
        student_logits (Tensor): Student logits, shape (N, C),
            C = num_classes.
        teacher_logits (Tensor): Teacher logits, shape (N, C).
        entropy_temperature (float): Entropy temperature ``T' > 0``.
            Defaults to :data:`SIGMOID_ENTROPY_TEMPERATURE`.
        weight_mode (str): One of :data:`WEIGHT_MODES`. Defaults to 'ea'.
        entropy_upper_bound (float, optional): ``H_ub``; None means
            ``log 2``. Defaults to None.

    Returns:
        EAStats: Detached ``ea_weight``, ``entropy_t`` and ``entropy_s``,
        each shape (N,), in the compute dtype.
    """
    student, teacher = _prepare_pair(
        student_logits, teacher_logits, logit_standardization=False)
    return _statistics(binary_softened_entropy, student, teacher,
                       entropy_temperature, weight_mode,
                       _sigmoid_upper_bound(entropy_upper_bound))


def sigmoid_ea_kd_loss_per_sample(
        student_logits: Tensor,
        teacher_logits: Tensor,
        temperature: float = 1.0,
        entropy_temperature: float = SIGMOID_ENTROPY_TEMPERATURE,
        weight_mode: str = 'ea',
        entropy_upper_bound: Optional[float] = None) -> Tensor:
    """EA-KD of a sigmoid classifier per sample: ``w_n * KD_n``.

    ``w_n`` is the detached weight of :func:`sigmoid_ea_statistics`
    (binary entropies at ``entropy_temperature``); ``KD_n`` is
    :func:`sigmoid_kd_loss_per_sample` at ``temperature``. Mode ``'none'``
    (plain KD) computes no entropy.

    Args:
        student_logits (Tensor): Student logits, shape (N, C),
            C = num_classes.
        teacher_logits (Tensor): Teacher logits, shape (N, C); detached.
        temperature (float): KD temperature ``T > 0``. Defaults to 1.0.
        entropy_temperature (float): Entropy temperature ``T' > 0``.
            Defaults to :data:`SIGMOID_ENTROPY_TEMPERATURE`.
        weight_mode (str): One of :data:`WEIGHT_MODES`. Defaults to 'ea'.
        entropy_upper_bound (float, optional): ``H_ub``; None means
            ``log 2``. Defaults to None.

    Returns:
        Tensor: Per-sample losses, shape (N,), in the compute dtype,
        differentiable w.r.t. the student logits.
    """
    student, teacher = _prepare_pair(
        student_logits, teacher_logits, logit_standardization=False)
    weight = _weights(binary_softened_entropy, student, teacher,
                      entropy_temperature, weight_mode,
                      _sigmoid_upper_bound(entropy_upper_bound))
    return weight * sigmoid_kd_loss_per_sample(student, teacher, temperature)
