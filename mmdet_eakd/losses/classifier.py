# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""The two kinds of classifier EA-KD distils: softmax and sigmoid.

A softmax classifier (the RoI heads) gives ``C = num_classes + 1`` logits
per sample, one distribution over the object classes and background, the
background last. A sigmoid classifier (the dense one-stage heads) gives
``C = num_classes`` independent Bernoulli logits, with no background column:
background is every class's probability low. Everything that differs
between the two (the EA statistics and their defaults, the background
label, which teacher rows are usable) is a field or method of
:class:`ClassifierKind`, of which :data:`SOFTMAX` and :data:`SIGMOID` are the
only instances. Torch only.
"""
import math
from dataclasses import dataclass
from typing import Callable, Tuple

import torch
from torch import Tensor

from .functional import (SIGMOID_ENTROPY_TEMPERATURE,
                         SIGMOID_ENTROPY_UPPER_BOUND, EAStats, ea_statistics,
                         kd_loss_per_sample, sigmoid_ea_statistics,
                         sigmoid_kd_loss_per_sample)


def _log_num_logits(num_logits: int) -> float:
    """``log C``: the largest entropy of a distribution over C logits."""
    return math.log(num_logits)


def _sigmoid_upper_bound(num_logits: int) -> float:
    """:data:`~.functional.SIGMOID_ENTROPY_UPPER_BOUND` whatever C is."""
    return SIGMOID_ENTROPY_UPPER_BOUND


def _finite_row_max(logits: Tensor) -> Tensor:
    """Rows with no NaN, no ``+inf`` and not every logit ``-inf``."""
    return torch.isfinite(logits.amax(dim=1))


def _no_nan(logits: Tensor) -> Tensor:
    """Rows with no NaN (``+-inf`` are the probabilities 1 and 0)."""
    return ~torch.isnan(logits).any(dim=1)


def _top_softmax_object_score(logits: Tensor) -> Tensor:
    """The top softmax probability over the object classes (the last
    column, background, excluded)."""
    return logits.softmax(dim=1)[:, :-1].amax(dim=1)


def _top_sigmoid_score(logits: Tensor) -> Tensor:
    """``max_c sigmoid(z_c)``."""
    return logits.amax(dim=1).sigmoid()


@dataclass(frozen=True, repr=False)
class ClassifierKind:
    """How a head classifies, and what EA-KD computes differently for it.

    Use :data:`SOFTMAX` and :data:`SIGMOID`, never a new instance.
    ``str()`` and ``repr()`` give :attr:`name`, so messages that format a
    kind read ``softmax`` / ``sigmoid``. The tensor
    functions below read no value on the host.

    Attributes:
        name (str): ``'softmax'`` or ``'sigmoid'``, as outputs and messages
            spell it.
        background_column (bool): Whether the logits carry a background
            column (the last one): ``C = num_classes + 1``; otherwise
            ``C = num_classes`` and background is every logit low.
        class_dim (str): The logits' class dimension in words, as shape
            errors name it (``'num_classes + 1'`` or ``'num_classes'``).
        entropy_temperature (float): The default ``T'`` of the entropies
            behind the EA weights (3.0, or
            :data:`~.functional.SIGMOID_ENTROPY_TEMPERATURE`).
        default_upper_bound (str): What ``entropy_upper_bound=None`` stands
            for, in words (``'log C'`` or ``'log 2'``).
        entropy_upper_bound (Callable[[int], float]): ``H_ub`` of logits with
            C columns: ``log C``, or
            :data:`~.functional.SIGMOID_ENTROPY_UPPER_BOUND`.
        ea_statistics (Callable[..., EAStats]): The EA statistics
            (:func:`~.functional.ea_statistics` or
            :func:`~.functional.sigmoid_ea_statistics`): student and teacher
            logits (N, C), keywords ``entropy_temperature``, ``weight_mode``
            and ``entropy_upper_bound``; detached weights and entropies,
            each (N,).
        kd_loss_per_sample (Callable[..., Tensor]): The plain KD term
            (:func:`~.functional.kd_loss_per_sample` or
            :func:`~.functional.sigmoid_kd_loss_per_sample`): student and
            teacher logits (N, C) and the temperature ``T``; shape (N,).
        usable_rows (Callable[[Tensor], Tensor]): Which rows of teacher
            logits (N, C) are a distribution to distil, shape (N,), bool.
            Softmax: a finite row maximum (no NaN, no ``+inf``, not every
            logit ``-inf``); sigmoid: no NaN (``+-inf`` are the
            probabilities 1 and 0).
        top_object_score (Callable[[Tensor], Tensor]): The top object-class
            score of logits (N, C), shape (N,): the top softmax probability
            with the background column excluded, or ``max_c sigmoid(z_c)``.
    """
    name: str
    background_column: bool
    class_dim: str
    entropy_temperature: float
    default_upper_bound: str
    entropy_upper_bound: Callable[[int], float]
    ea_statistics: Callable[..., EAStats]
    kd_loss_per_sample: Callable[..., Tensor]
    usable_rows: Callable[[Tensor], Tensor]
    top_object_score: Callable[[Tensor], Tensor]

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__

    def num_classes(self, num_logits: int) -> int:
        """The object classes of logits with ``num_logits`` columns; also
        the background label (mmdet's convention: ``num_classes``).

        Args:
            num_logits (int): C, the logits per sample.

        Returns:
            int: ``C - 1`` with a background column, else ``C``.
        """
        return num_logits - 1 if self.background_column else num_logits


#: Softmax over ``num_classes + 1`` logits, background last (RoI heads).
SOFTMAX = ClassifierKind(
    name='softmax',
    background_column=True,
    class_dim='num_classes + 1',
    entropy_temperature=3.0,
    default_upper_bound='log C',
    entropy_upper_bound=_log_num_logits,
    ea_statistics=ea_statistics,
    kd_loss_per_sample=kd_loss_per_sample,
    usable_rows=_finite_row_max,
    top_object_score=_top_softmax_object_score)
#: ``num_classes`` independent sigmoid logits, no background column (dense
#: one-stage heads).
SIGMOID = ClassifierKind(
    name='sigmoid',
    background_column=False,
    class_dim='num_classes',
    entropy_temperature=SIGMOID_ENTROPY_TEMPERATURE,
    default_upper_bound='log 2',
    entropy_upper_bound=_sigmoid_upper_bound,
    ea_statistics=sigmoid_ea_statistics,
    kd_loss_per_sample=sigmoid_kd_loss_per_sample,
    usable_rows=_no_nan,
    top_object_score=_top_sigmoid_score)
#: Every classifier kind.
CLASSIFIER_KINDS: Tuple[ClassifierKind, ...] = (SOFTMAX, SIGMOID)

