"""Feature terms: which student and teacher levels are paired, and checks.

A feature term (a loss whose ``distills`` is
:data:`~mmdet_eakd.losses.FEATURES`, e.g. ``EAPKDLoss``) compares the
outputs of the detectors' ``extract_feat`` (their FPN levels) level by
level. Levels are paired by stride: the stride of a level is measured by
running ``extract_feat`` on a blank square input (``input side / map
side``), so any backbone and neck are measured the same way. A student level
whose stride the teacher lacks is not distilled (e.g. RetinaNet's P7 against
a Faster R-CNN's P2-P6); a pair with no stride in common, or whose paired
levels differ in channels without a connector, is refused
(:class:`FeatureLevelError`) before the teacher's checkpoint is read.

Feature terms need no teacher head, so they also serve heterogeneous pairs
(a Faster R-CNN teacher for a RetinaNet student): see
:meth:`~mmdet_eakd.distill.DistillerMixin._check_teacher`.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .adapters.base import UnsupportedPairError

#: Side of the blank input whose ``extract_feat`` gives the levels' strides;
#: a multiple of every stride an FPN of mmdet has (4 to 128).
PROBE_SIZE = 256


class FeatureLevelError(UnsupportedPairError):
    """Student and teacher features that a feature term cannot pair."""


class FeatureLevel(NamedTuple):
    """One level of a detector's ``extract_feat`` output.

    Attributes:
        stride (int): Input pixels per feature-map pixel.
        channels (int): Channels of the map.
    """
    stride: int
    channels: int


class FeaturePair(NamedTuple):
    """The features of one step: every level of both detectors.

    Attributes:
        student (tuple[Tensor]): The student's ``extract_feat`` output (the
            maps its heads used), each (B, C_s, H, W), with gradient.
        teacher (tuple[Tensor]): The teacher's, each (B, C_t, H, W), float32,
            no gradient.
    """
    student: Tuple[Tensor, ...]
    teacher: Tuple[Tensor, ...]


@torch.no_grad()
def feature_levels(detector: nn.Module,
                   size: int = PROBE_SIZE) -> List[FeatureLevel]:
    """The stride and channels of each level of ``detector.extract_feat``.

    The detector runs on a blank ``size`` x ``size`` input in eval mode (no
    BatchNorm statistics change) and is put back in its mode.

    Args:
        detector (nn.Module): An mmdet detector.
        size (int): Side of the blank input. Defaults to :data:`PROBE_SIZE`.

    Returns:
        list[FeatureLevel]: One per level, in ``extract_feat``'s order.
    """
    training = detector.training
    detector.eval()
    try:
        param = next(detector.parameters())
        feats = detector.extract_feat(param.new_zeros((1, 3, size, size)))
    finally:
        detector.train(training)
    return [
        FeatureLevel(round(size / feat.shape[-1]), feat.shape[1])
        for feat in feats
    ]


def match_levels(student: Sequence[FeatureLevel],
                 teacher: Sequence[FeatureLevel]) -> List[Tuple[int, int]]:
    """Pair the student's levels with the teacher's of the same stride.

    Args:
        student (Sequence[FeatureLevel]): The student's levels.
        teacher (Sequence[FeatureLevel]): The teacher's levels.

    Returns:
        list[tuple[int, int]]: ``(student index, teacher index)`` of every
        student level whose stride a teacher level has, in the student's
        order.

    Raises:
        FeatureLevelError: No stride in common, or a stride twice in a
            detector's levels.
    """
    for role, levels in (('student', student), ('teacher', teacher)):
        strides = [level.stride for level in levels]
        if len(set(strides)) != len(strides):
            raise FeatureLevelError(
                f'The {role}\'s extract_feat gives two levels of the same '
                f'stride (strides {strides}); feature terms pair levels by '
                'stride, so each stride must occur once.')
    by_stride = {level.stride: index for index, level in enumerate(teacher)}
    pairs = [(index, by_stride[level.stride])
             for index, level in enumerate(student)
             if level.stride in by_stride]
    if not pairs:
        raise FeatureLevelError(
            'No level of the student\'s features has the stride of a '
            'teacher level (student strides '
            f'{[level.stride for level in student]}, teacher strides '
            f'{[level.stride for level in teacher]}), so a feature term has '
            'nothing to compare. Use necks with levels of common strides '
            '(e.g. FPN start_level / num_outs), or remove the term.')
    return pairs


def check_channels(label: str, student_channels: int, teacher_channels: int,
                   connector: Optional[Tuple[int, int]] = None) -> None:
    """Check a paired level's channels against a term's connector.

    Args:
        label (str): The term, for messages (e.g. ``'distill_terms.feat
            (EAPKDLoss)'``).
        student_channels (int): The student level's channels.
        teacher_channels (int): The teacher level's channels.
        connector (tuple[int, int], optional): The term's connector
            ``(student_channels, teacher_channels)``; None without one.

    Raises:
        FeatureLevelError: Channels that differ without a connector, or a
            connector whose channels are not the levels'.
    """
    if connector is None:
        if student_channels != teacher_channels:
            raise FeatureLevelError(
                f'{label}: the student\'s levels have {student_channels} '
                f'channels and the teacher\'s {teacher_channels}; PKD '
                'compares them channel by channel. Add a 1x1 connector: set '
                f'student_channels={student_channels}, teacher_channels='
                f'{teacher_channels} in the term\'s loss.')
        return
    if connector != (student_channels, teacher_channels):
        raise FeatureLevelError(
            f'{label}: its connector maps {connector[0]} to {connector[1]} '
            f'channels, but the student\'s levels have {student_channels} '
            f'channels and the teacher\'s {teacher_channels}. Set '
            f'student_channels={student_channels}, teacher_channels='
            f'{teacher_channels}.')
