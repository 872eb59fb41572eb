"""What the RoI-head families share: box-branch capture, checks, teacher call.

mmdet 3.3's RoI heads classify the sampled RoIs of stage ``s`` with
``bbox_roi_extractor(feats[:num_inputs], rois)`` (+ ``shared_head``) and
``bbox_head(bbox_feats) -> (cls_score, bbox_pred)``, then call
``bbox_head.loss_cls(cls_score, labels, label_weights, ...)``. The capture
hooks these public modules; the teacher call runs the same modules of the
teacher. ``StandardRoIHead._bbox_forward`` / ``CascadeRoIHead._bbox_forward``
are the private methods that wire them; :func:`box_forward_is_standard` is
the one place that refers to them (subclasses that rewire the box forward,
e.g. Double-Head, HTC, are refused), and the tests compare the module path
with them.
"""
import contextlib
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn

from mmdet.models.detectors import TwoStageDetector
from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
from ...losses import SOFTMAX
from .base import (DistillAdapter, GroupCapture, LogitGroup,
                   UnsupportedPairError, call_arguments, hooks)

#: Which sampled RoIs the classification terms distil (the RoI distiller's
#: ``distill_rois``).
ROI_SELECTIONS: Tuple[str, ...] = ('all', 'foreground')


def foreground_rois(group: LogitGroup) -> Tensor:
    """The valid RoIs of ``group`` sampled as an object (label below the
    background label ``C - 1``), shape (N,), bool."""
    background = group.student.shape[1] - 1
    return group.valid & (group.labels < background)


class RoISamples(NamedTuple):
    """The RoIs of one group: which box stage sampled them, and where.

    Attributes:
        stage (int): The student's box stage (0 for a ``StandardRoIHead``).
        rois (Tensor): Shape (N, 5), (batch index, x1, y1, x2, y2), in the
            input image's coordinates.
    """
    stage: int
    rois: Tensor


def box_forward_is_standard(roi_head: nn.Module) -> bool:
    """Whether ``roi_head`` classifies RoIs as its mmdet base class does.

    True for ``StandardRoIHead`` / ``CascadeRoIHead`` and subclasses that keep
    their ``_bbox_forward`` (extractor, optional shared head, box head).
    """
    for base in (CascadeRoIHead, StandardRoIHead):
        if isinstance(roi_head, base):
            return type(roi_head)._bbox_forward is base._bbox_forward
    return False


def check_two_stage(detector: nn.Module, role: str) -> nn.Module:
    """The RoI head of a ``TwoStageDetector`` with a standard box branch.

    Raises:
        UnsupportedPairError: Not a two-stage detector, no box head, or a head
            that rewires the box forward.
    """
    if not isinstance(detector, TwoStageDetector):
        raise UnsupportedPairError(
            f'The {role} is a {type(detector).__name__}; RoI distillation '
            'needs a TwoStageDetector (e.g. FasterRCNN, MaskRCNN, '
            'CascadeRCNN).')
    roi_head = getattr(detector, 'roi_head', None)
    if (roi_head is None or not getattr(roi_head, 'with_bbox', False)
            or not box_forward_is_standard(roi_head)):
        raise UnsupportedPairError(
            f'The {role}\'s RoI head is {type(roi_head).__name__}; RoI '
            'distillation supports StandardRoIHead and CascadeRoIHead (and '
            'subclasses that keep their box forward) with a box head.')
    return roi_head


def box_heads(roi_head: nn.Module) -> List[nn.Module]:
    """The box head of every stage (one for a ``StandardRoIHead``)."""
    if isinstance(roi_head, CascadeRoIHead):
        return list(roi_head.bbox_head)
    return [roi_head.bbox_head]


def check_softmax_heads(roi_head: nn.Module, role: str) -> int:
    """Check every box head classifies with softmax over ``C + 1`` classes.

    Returns:
        int: The heads' common ``num_classes``.

    Raises:
        UnsupportedPairError: A sigmoid or custom-channel classifier, or
            stages with different class counts.
    """
    classes = set()
    for stage, head in enumerate(box_heads(roi_head)):
        where = f'{role}\'s box head' + (
            f' of stage {stage}' if isinstance(roi_head, CascadeRoIHead)
            else '')
        if head.custom_cls_channels or getattr(head.loss_cls, 'use_sigmoid',
                                               False):
            raise UnsupportedPairError(
                f'The {where} classifies with sigmoid / custom channels '
                f'({type(head.loss_cls).__name__}); the KD terms need softmax '
                'logits over num_classes + 1 classes (sigmoid EA comes with '
                'the dense-head adapters).')
        classes.add(head.num_classes)
    if len(classes) != 1:
        raise UnsupportedPairError(
            f'The {role}\'s box heads classify different numbers of classes '
            f'({sorted(classes)}).')
    return classes.pop()


def check_same_classes(student_classes: int, teacher_classes: int) -> None:
    """Raise ``ValueError`` unless both classify the same classes."""
    if teacher_classes != student_classes:
        raise ValueError(
            f'The teacher classifies {teacher_classes} classes but the '
            f'student {student_classes}; KD on RoI logits needs the same '
            'classes. Use a teacher trained on the student\'s data set.')


def roi_logits(roi_head: nn.Module, feats: Tuple[Tensor, ...],
               samples: RoISamples) -> Tensor:
    """Logits of a RoI head's box branch on given RoIs.

    A ``CascadeRoIHead`` classifies with the box stage ``samples.stage``; a
    ``StandardRoIHead`` with its one box head, whatever the stage.

    Args:
        roi_head (nn.Module): The RoI head (checked by
            :func:`check_two_stage`).
        feats (tuple[Tensor]): Its detector's ``extract_feat`` output.
        samples (RoISamples): The RoIs.

    Returns:
        Tensor: Shape (N, C).
    """
    if isinstance(roi_head, CascadeRoIHead):
        extractor = roi_head.bbox_roi_extractor[samples.stage]
        head = roi_head.bbox_head[samples.stage]
    else:
        extractor, head = roi_head.bbox_roi_extractor, roi_head.bbox_head
    bbox_feats = extractor(feats[:extractor.num_inputs], samples.rois)
    if roi_head.with_shared_head:
        bbox_feats = roi_head.shared_head(bbox_feats)
    return head(bbox_feats)[0]


class _StageRecord:
    """Filled by the hooks on one box stage during the loss pass."""

    def __init__(self) -> None:
        self.rois: Optional[Tensor] = None
        self.feats: Optional[Tuple[Tensor, ...]] = None
        self.cls_score: Optional[Tensor] = None
        self.labels: Optional[Tensor] = None
        self.label_weights: Optional[Tensor] = None
        self.head_calls = 0

    def on_extractor(self, module: nn.Module, args: tuple,
                     kwargs: Dict[str, Any]) -> None:
        # A shared mask branch may call the extractor again (positive RoIs
        # only); the box branch runs first and its RoIs are the sampled ones.
        if self.rois is None:
            arguments = call_arguments(module, args, kwargs)
            self.rois, self.feats = arguments['rois'], tuple(
                arguments['feats'])

    def on_head(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.head_calls += 1
        self.cls_score = output[0]

    def on_loss_cls(self, module: nn.Module, args: tuple,
                    kwargs: Dict[str, Any]) -> None:
        # mmdet's loss modules take (prediction, target, weight, ...); the
        # names differ (label / target), the order does not.
        values = list(call_arguments(module, args, kwargs).values())
        self.labels, self.label_weights = values[1], values[2]

    def to_group(self, name: str, stage: int, weight: float) -> GroupCapture:
        """The group this stage recorded (call after the loss pass)."""
        if self.head_calls != 1:
            raise RuntimeError(
                f'RoI distillation expects the student\'s box head '
                f'{name or ""} to run once per step, it ran '
                f'{self.head_calls} times.')
        cls_score = self.cls_score
        labels, label_weights = self.labels, self.label_weights
        if labels is None:
            if cls_score.numel():
                raise RuntimeError(
                    'The student\'s box head loss did not call loss_cls with '
                    'the RoI labels; its RoI head is not supported.')
            labels = cls_score.new_zeros((0, ), dtype=torch.long)
        valid = (label_weights > 0 if label_weights is not None else
                 torch.ones_like(labels, dtype=torch.bool))
        return GroupCapture(
            name=name,
            student=cls_score,
            labels=labels,
            valid=valid,
            weight=weight,
            samples=RoISamples(stage, self.rois),
            feats=self.feats)


@contextlib.contextmanager
def capture_box_stages(roi_head: nn.Module, names: List[str],
                       weights: List[float]) -> Iterator[List[GroupCapture]]:
    """Hook every box stage of ``roi_head`` for one loss pass.

    Args:
        roi_head (nn.Module): A checked RoI head.
        names (list[str]): Group name per stage.
        weights (list[float]): Group weight per stage.

    Yields:
        list[GroupCapture]: Filled on exit, one entry per stage that ran (a
        cascade ends early when a stage is left without RoIs).
    """
    if isinstance(roi_head, CascadeRoIHead):
        extractors = list(roi_head.bbox_roi_extractor)
    else:
        extractors = [roi_head.bbox_roi_extractor]
    heads = box_heads(roi_head)
    records = [_StageRecord() for _ in heads]
    registrations = []
    for extractor, head, record in zip(extractors, heads, records):
        registrations += [
            lambda e=extractor, r=record: e.register_forward_pre_hook(
                r.on_extractor, with_kwargs=True),
            lambda h=head, r=record: h.register_forward_hook(r.on_head),
            lambda h=head, r=record: h.loss_cls.register_forward_pre_hook(
                r.on_loss_cls, with_kwargs=True),
        ]
    groups: List[GroupCapture] = []
    with hooks(registrations):
        yield groups
    for stage, record in enumerate(records):
        if record.rois is None:  # the cascade ended before this stage
            break
        groups.append(record.to_group(names[stage], stage, weights[stage]))


class SoftmaxRoIAdapter(DistillAdapter):
    """What the RoI-head adapters share: a two-stage student whose box heads
    classify with softmax over ``num_classes + 1`` classes."""

    classifier = SOFTMAX
    #: Feature terms' EA weights: per sampled RoI (on its RoI features) or
    #: per image.
    ea_granularities = ('roi', 'image')

    def check_student(self, student: nn.Module) -> None:
        check_softmax_heads(check_two_stage(student, 'student'), 'student')

    def num_classes(self, detector: nn.Module) -> int:
        return check_softmax_heads(detector.roi_head, 'detector')

    def sample_parts(self, group: LogitGroup) -> Dict[str, Tensor]:
        """Foreground and background RoIs (logged as ``ea_weight_fg`` /
        ``ea_weight_bg``: how EA weighs each over training)."""
        foreground = foreground_rois(group)
        return dict(fg=foreground, bg=group.valid & ~foreground)

    def select_samples(self, detector: nn.Module,
                       group: LogitGroup) -> Tensor:
        """Every distillable RoI, or with the distiller's
        ``distill_rois='foreground'`` those sampled as an object
        (:func:`foreground_rois`)."""
        if getattr(detector, 'distill_rois', 'all') == 'foreground':
            return foreground_rois(group)
        return group.distillable
