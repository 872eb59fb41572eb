# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Registered PKD / EA-PKD feature loss: argument checks, the optional
connector, and :mod:`.feature_functional`."""
from typing import Optional, Sequence

from mmdet.registry import MODELS
from torch import Tensor, nn

from .ea_kd_loss import _check, _is_number, check_floating
from .feature_functional import (FEATURE_NORM_EPS, pkd_loss_map,
                                 weighted_level_loss)
from .functional import WEIGHT_MODES

#: What :class:`EAPKDLoss` distils (its :attr:`EAPKDLoss.distills`): the
#: feature maps of the detectors' necks (FPN levels), shape (B, C, H, W).
FEATURES = 'features'
#: Where an EA feature term takes one weight (``ea_granularity``):
#: ``'location'`` one per position of every level (dense heads), ``'roi'``
#: one per sampled RoI, on the RoIs' features (RoI heads), ``'image'`` one
#: per image (every family).
EA_GRANULARITIES = ('location', 'roi', 'image')


def _is_channels(value) -> bool:
    """Whether ``value`` is a channel count (an int >= 1, not a bool)."""
    return isinstance(value, int) and not isinstance(value,
                                                     bool) and value >= 1


@MODELS.register_module()
class EAPKDLoss(nn.Module):
    """PKD feature distillation on the FPN levels, optionally EA-weighted.

    Per pair of levels ``l`` (a student and a teacher level of the same
    stride), the per-position PKD term ``m_l(b, y, x)`` (half the squared
    difference of the channel-standardised maps, averaged over the channels:
    :func:`~.feature_functional.pkd_loss_map`), averaged over images and
    positions, each weighted by ``w``; summed over the levels (as mmrazor's
    ``PKDLoss``), times ``loss_weight``::

        loss = loss_weight * sum_l mean_{b,y,x} w_l(b, y, x) m_l(b, y, x)

    ``w`` is 1 for ``weight_mode='none'`` (plain PKD). Otherwise it is the
    EA weight of the classification entropies at the distilled samples (the
    teacher's and the student's, ``'ea'``: ``H_T (1 + H_S / H_ub) / 2``),
    which the distiller derives from the entropies its classification term
    already computed (or, without such a term, computes once), at
    ``ea_granularity``:

    - ``'image'``: the mean of the image's sample weights (the paper's code
      weighs each sample's feature loss by its weight); every family;
    - ``'location'``: per position of each level, the mean weight of the
      position's anchors (dense heads only);
    - ``'roi'``: RoI heads only; the term then compares the RoI features of
      the sampled RoIs (both detectors' levels pooled by the student's box
      RoI extractor), each RoI's term weighted by its own weight.

    With ``normalize_weights`` (default) the weights of a level are divided
    by their mean, so EA redistributes PKD's loss over locations or images
    instead of rescaling it, and ``loss_weight`` means what it means for
    PKD.

    Different channel counts need a connector: with ``student_channels`` and
    ``teacher_channels`` a trainable 1x1 convolution maps every student level
    to the teacher's channels (one, shared by the levels, as FPN levels
    share their head). It is part of the distiller, optimised with the
    student, saved in training checkpoints for resuming, and left out of the
    plain student checkpoint.

    Args:
        weight_mode (str): 'ea', 'base', 'interact' or 'none' (plain PKD).
            Defaults to 'ea'.
        ea_granularity (str): 'image', 'location' or 'roi'. Defaults to
            'image'.
        loss_weight (float): >= 0. Defaults to 1.0 (the configs use
            mmrazor's PKD weight, 6).
        normalize_weights (bool): See above. Defaults to True.
        entropy_temperature (float, optional): ``T' > 0`` of the entropies
            when the distiller has no classification term to take them from;
            None is the family's classification default (sigmoid heads 1,
            softmax heads 3). Must be None when a classification term exists
            (its own ``T'`` is used).
        student_channels (int, optional): Channels of the student's levels;
            with ``teacher_channels``, adds the connector.
        teacher_channels (int, optional): Channels of the teacher's levels.
        eps (float): Added to the standard deviations. Defaults to 1e-6.
    """

    #: What the loss distils.
    distills: str = FEATURES

    def __init__(self,
                 weight_mode: str = 'ea',
                 ea_granularity: str = 'image',
                 loss_weight: float = 1.0,
                 normalize_weights: bool = True,
                 entropy_temperature: Optional[float] = None,
                 student_channels: Optional[int] = None,
                 teacher_channels: Optional[int] = None,
                 eps: float = FEATURE_NORM_EPS) -> None:
        super().__init__()
        _check('weight_mode', weight_mode, weight_mode in WEIGHT_MODES,
               f'one of {WEIGHT_MODES}')
        _check('ea_granularity', ea_granularity,
               ea_granularity in EA_GRANULARITIES,
               f'one of {EA_GRANULARITIES}')
        _check('loss_weight', loss_weight,
               _is_number(loss_weight) and loss_weight >= 0,
               'a finite number >= 0')
        _check('normalize_weights', normalize_weights,
               isinstance(normalize_weights, bool), 'a bool')
        _check(
            'entropy_temperature', entropy_temperature,
            entropy_temperature is None
            or (_is_number(entropy_temperature) and entropy_temperature > 0),
            "None (the family's default) or a finite number > 0")
        _check('eps', eps, _is_number(eps) and eps > 0, 'a finite number > 0')
        if (student_channels is None) != (teacher_channels is None):
            raise ValueError(
                'EAPKDLoss: give both student_channels and teacher_channels '
                '(a 1x1 connector maps the student\'s levels to the '
                'teacher\'s channels) or neither (same channels); got '
                f'student_channels={student_channels!r}, '
                f'teacher_channels={teacher_channels!r}.')
        for name, value in (('student_channels', student_channels),
                            ('teacher_channels', teacher_channels)):
            _check(name, value, value is None or _is_channels(value),
                   'None or an int >= 1')
        self.weight_mode = weight_mode
        self.ea_granularity = ea_granularity
        self.loss_weight = loss_weight
        self.normalize_weights = normalize_weights
        self.entropy_temperature = entropy_temperature
        self.eps = eps
        self.connector = (nn.Conv2d(student_channels, teacher_channels, 1)
                          if student_channels is not None else None)

    @property
    def student_channels(self) -> Optional[int]:
        """Channels the connector takes (None without a connector)."""
        return None if self.connector is None else self.connector.in_channels

    @property
    def teacher_channels(self) -> Optional[int]:
        """Channels the connector gives (None without a connector)."""
        return None if self.connector is None else self.connector.out_channels

    def _check_level(self, level: int, student: Tensor,
                     teacher: Tensor) -> None:
        """Check one level's pair (after the connector)."""
        check_floating(f'student level {level}', student)
        check_floating(f'teacher level {level}', teacher)
        if student.dim() != 4 or student.shape != teacher.shape:
            hint = ''
            if (student.dim() == 4 and teacher.dim() == 4
                    and student.shape[1] != teacher.shape[1]):
                hint = (f'; the channels differ: set student_channels='
                        f'{student.shape[1]} and teacher_channels='
                        f'{teacher.shape[1]} (a 1x1 connector)'
                        if self.connector is None else '')
            raise ValueError(
                f'EAPKDLoss: student level {level} has shape '
                f'{tuple(student.shape)} and teacher level {level} '
                f'{tuple(teacher.shape)}; the pair must have the same shape '
                f'(B, C, H, W){hint}.')
        if student.device != teacher.device:
            raise ValueError(
                f'EAPKDLoss: student level {level} is on {student.device}, '
                f'teacher level {level} on {teacher.device}.')

    def forward(self,
                student_feats: Sequence[Tensor],
                teacher_feats: Sequence[Tensor],
                *,
                weights: Optional[Sequence[Tensor]] = None) -> Tensor:
        """The PKD / EA-PKD loss over the paired levels.

        Args:
            student_feats (Sequence[Tensor]): The student's levels, each
                (B, C_s, H_l, W_l), with gradient; any floating dtype (the
                math runs in float32, float64 stays float64).
            teacher_feats (Sequence[Tensor]): The teacher's levels of the
                same strides, each (B, C_t, H_l, W_l); never receive
                gradient. ``C_t = C_s`` without a connector.
            weights (Sequence[Tensor], optional): Keyword-only. Detached EA
                weights per level, (B, H_l, W_l) (per location) or (B,) (per
                image); None: unweighted (plain PKD).

        Returns:
            Tensor: The loss, a scalar (float32 or float64).
        """
        if len(student_feats) != len(teacher_feats) or not student_feats:
            raise ValueError(
                f'EAPKDLoss: {len(student_feats)} student and '
                f'{len(teacher_feats)} teacher levels; give the same number '
                '(>= 1) of levels, paired by stride.')
        if weights is not None and len(weights) != len(student_feats):
            raise ValueError(
                f'EAPKDLoss: {len(weights)} weight maps for '
                f'{len(student_feats)} levels.')
        total = None
        for level, (student, teacher) in enumerate(
                zip(student_feats, teacher_feats)):
            if self.connector is not None:
                check_floating(f'student level {level}', student)
                if student.dim() != 4 or student.size(
                        1) != self.connector.in_channels:
                    raise ValueError(
                        f'EAPKDLoss: student level {level} has shape '
                        f'{tuple(student.shape)}, but the connector takes '
                        f'{self.connector.in_channels} channels '
                        '(student_channels).')
                student = self.connector(
                    student.to(self.connector.weight.dtype))
            self._check_level(level, student, teacher)
            weight = None if weights is None else weights[level]
            if weight is not None:
                expected = (student.shape[0], *student.shape[2:])
                if tuple(weight.shape) not in (expected, expected[:1]):
                    raise ValueError(
                        f'EAPKDLoss: the weights of level {level} have shape '
                        f'{tuple(weight.shape)}, not (B, H, W) = {expected} '
                        f'or (B,) = {expected[:1]}.')
            level_loss = weighted_level_loss(
                pkd_loss_map(student, teacher, self.eps), weight,
                self.normalize_weights)
            total = level_loss if total is None else total + level_loss
        return self.loss_weight * total
