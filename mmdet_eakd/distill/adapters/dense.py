"""Adapter of the one-stage dense heads (RetinaNet, ATSS, GFL, FCOS).

The distilled samples are the head's locations: every (level, image,
position, anchor) of every FPN level. mmdet 3.3's dense heads classify them
with ``bbox_head(feats) -> (cls_scores, ...)``, ``cls_scores[l]`` of shape
(B, A * C, H_l, W_l) with sigmoid classifiers (C = ``num_classes``, no
background column), and compute the classification loss as

- ``AnchorHead`` (RetinaNet), ``ATSSHead``, ``GFLHead``: once per level in
  ``loss_by_feat_single``, on ``cls_score.permute(0, 2, 3, 1).reshape(-1, C)``
  (order: image, position, anchor) with the level's labels and
  ``label_weights``;
- ``FCOSHead``: once, in ``loss_by_feat``, on the same flattening of every
  level concatenated (order: level, image, position), without label weights.

Both give the order (level, image, position, anchor), which is also
:func:`flatten_levels` of the head's output: the capture records what
``loss_cls`` received (logits with gradient, labels, label weights; GFL's
target is the tuple ``(labels, quality)``) and the teacher's head output is
flattened with :func:`flatten_levels`. Heads whose loss code differs from
these four (e.g. PAA, VFNet, TOOD, FSAF) could reorder or subsample the
locations; :func:`check_dense_head` refuses them, and the tests check, per
supported head, that the teacher's flattened output equals what the
student's loss used for the same weights.

Labels follow mmdet: ``[0, num_classes)`` for positives, ``num_classes`` for
background; ``label_weights == 0`` marks ignored and outside anchors.

Box-edge distributions (``BOX_DISTRIBUTION``, for ``EALDLoss`` terms) come
from ``GFLHead`` only: its forward gives ``bbox_preds[l]`` of shape (B, 4 *
(reg_max + 1), H_l, W_l) (one anchor per position), the logits of each
edge's distribution over ``reg_max + 1`` bins, which its loss reads as
``bbox_pred.permute(0, 2, 3, 1).reshape(-1, 4 * (reg_max + 1))``. The
student's are taken from the output of the head's forward in its one loss
pass (the tensors its loss used, with gradient), the teacher's from the same
head call that gives its logits; both are flattened with
:func:`flatten_levels`, so row ``n`` is the location of logit row ``n``.
"""
import contextlib
from typing import (AbstractSet, Any, Dict, Iterator, List, NamedTuple,
                    Optional, Tuple)

import torch
from torch import Tensor, nn

from mmdet.models.dense_heads import (AnchorHead, ATSSHead, FCOSHead,
                                      GFLHead)
from mmdet.models.detectors import SingleStageDetector
from ...losses import (BOX_DISTRIBUTION, CLASS_LOGITS, NUM_EDGES,
                       usable_box_rows)
from ..terms import DistillTerm
from .base import (LOGITS_ONLY, DistillAdapter, GroupCapture,
                   UnsupportedPairError, call_arguments, hooks,
                   register_adapter)

#: Supported heads and the methods their classification loss lives in; a
#: subclass is supported if it keeps these methods of its nearest listed base.
_LOSS_METHODS: Tuple[Tuple[type, Tuple[str, ...]], ...] = (
    (GFLHead, ('loss_by_feat', 'loss_by_feat_single')),
    (ATSSHead, ('loss_by_feat', 'loss_by_feat_single')),
    (FCOSHead, ('loss_by_feat', )),
    (AnchorHead, ('loss_by_feat', 'loss_by_feat_single')),
)


class DenseSamples(NamedTuple):
    """The locations of one batch: the student's per-level output shapes.

    Attributes:
        shapes (tuple[torch.Size]): Per FPN level, the shape (B, A * C, H, W)
            of the student's classification output. The teacher's must be
            equal (same levels, anchors, classes and feature-map sizes).
    """
    shapes: Tuple[torch.Size, ...]


class DenseAlignmentError(UnsupportedPairError):
    """Teacher and student heads do not classify the same locations."""


def flatten_levels(cls_scores: List[Tensor], num_classes: int) -> Tensor:
    """Per-location rows of a dense head's output, in the loss's order.

    Args:
        cls_scores (list[Tensor]): Per level, shape (B, A * C, H, W) (or a
            GFL head's box distributions, (B, 4 * (reg_max + 1), H, W) with
            ``num_classes = 4 * (reg_max + 1)``).
        num_classes (int): C (sigmoid classifiers: no background column),
            the width of a row.

    Returns:
        Tensor: Shape (sum_l B * H_l * W_l * A, C), ordered by (level, image,
        position (row-major), anchor).
    """
    return torch.cat([
        score.permute(0, 2, 3, 1).reshape(-1, num_classes)
        for score in cls_scores
    ])


def box_distribution_width(head: nn.Module) -> int:
    """Columns of a GFL head's box distribution rows, ``4 * (reg_max +
    1)``."""
    return NUM_EDGES * (head.reg_max + 1)


def _loss_base(head: nn.Module) -> Optional[type]:
    """The nearest supported base class whose loss methods ``head`` keeps,
    or None."""
    for base, methods in _LOSS_METHODS:
        if isinstance(head, base):
            keeps = all(
                getattr(type(head), m) is getattr(base, m) for m in methods)
            return base if keeps else None
    return None


def check_dense_head(detector: nn.Module, role: str) -> nn.Module:
    """The sigmoid dense head of a ``SingleStageDetector``.

    Raises:
        UnsupportedPairError: Not a single-stage detector, a head other than
            RetinaNet / ATSS / GFL / FCOS (or a subclass that rewrites their
            loss), or a softmax classifier.
    """
    if not isinstance(detector, SingleStageDetector):
        raise UnsupportedPairError(
            f'The {role} is a {type(detector).__name__}; dense distillation '
            'needs a SingleStageDetector (RetinaNet, ATSS, GFL, FCOS).')
    head = getattr(detector, 'bbox_head', None)
    if _loss_base(head) is None:
        raise UnsupportedPairError(
            f'The {role}\'s head is {type(head).__name__}; dense distillation '
            'supports RetinaHead and other AnchorHead subclasses, ATSSHead, '
            'GFLHead and FCOSHead (and subclasses that keep their '
            'loss_by_feat / loss_by_feat_single), whose classification loss '
            'sees every location in a known order.')
    if not getattr(head, 'use_sigmoid_cls', False) or (head.cls_out_channels
                                                      != head.num_classes):
        raise UnsupportedPairError(
            f'The {role}\'s {type(head).__name__} classifies with softmax '
            f'({type(head.loss_cls).__name__}, use_sigmoid=False); the dense '
            'KD terms are those of sigmoid classifiers (C independent '
            'Bernoulli outputs, no background column). Use a sigmoid '
            'classification loss (FocalLoss, QualityFocalLoss, '
            'CrossEntropyLoss with use_sigmoid=True).')
    return head


def _describe_priors(head: nn.Module) -> Dict[str, Any]:
    """What fixes a head's locations: prior generator type, strides, priors
    per position and (for anchors) the base anchors."""
    generator = head.prior_generator
    described: Dict[str, Any] = dict(
        generator=type(generator).__name__,
        strides=[tuple(s) for s in generator.strides],
        priors=list(generator.num_base_priors))
    if hasattr(generator, 'base_anchors'):
        described['base_anchors'] = [
            a.tolist() for a in generator.base_anchors
        ]
    if hasattr(generator, 'offset'):
        described['offset'] = generator.offset
    return described


def check_priors(student_head: nn.Module, teacher_head: nn.Module) -> None:
    """Raise :class:`DenseAlignmentError` unless both heads have the same
    levels, strides, priors per position and base anchors."""
    student, teacher = (_describe_priors(student_head),
                        _describe_priors(teacher_head))
    reasons = {
        'generator': 'prior generators',
        'strides': 'strides (number of FPN levels and their strides)',
        'priors': 'anchors per location',
        'base_anchors': 'base anchors (scales, ratios, base sizes)',
        'offset': 'point offsets',
    }
    for key, what in reasons.items():
        if student.get(key) != teacher.get(key):
            raise DenseAlignmentError(
                f'Teacher and student heads have different {what}: teacher '
                f'{teacher.get(key)}, student {student.get(key)}. Dense KD '
                'pairs their locations one to one; give the student the '
                'teacher\'s anchor_generator / strides (and an FPN with the '
                'same levels).')


@torch.no_grad()
def check_feature_maps(student: nn.Module, teacher: nn.Module,
                       size: int) -> None:
    """Run both detectors on a blank ``size`` x ``size`` batch and compare
    their heads' output shapes (levels, feature-map sizes, A * C).

    Both run in eval mode (no BatchNorm statistics change) and are put back in
    their previous mode.

    Raises:
        DenseAlignmentError: An output shape differs, naming the level.
    """
    shapes = []
    for model in (student, teacher):
        training = model.training
        model.eval()
        try:
            param = next(model.parameters())
            blank = param.new_zeros((1, 3, size, size))
            outputs = model.bbox_head(model.extract_feat(blank))[0]
        finally:
            model.train(training)
        shapes.append([tuple(o.shape) for o in outputs])
    check_shapes(shapes[0], shapes[1], f'a blank {size}x{size} input')


def check_shapes(student: List[Tuple[int, ...]],
                 teacher: List[Tuple[int, ...]], where: str) -> None:
    """Raise :class:`DenseAlignmentError` unless the per-level shapes of the
    classification outputs agree."""
    if len(student) != len(teacher):
        raise DenseAlignmentError(
            f'On {where} the teacher\'s head outputs {len(teacher)} levels and '
            f'the student\'s {len(student)}; use necks with the same number of '
            'outputs (num_outs / start_level).')
    for level, (s, t) in enumerate(zip(student, teacher)):
        if tuple(s) != tuple(t):
            raise DenseAlignmentError(
                f'On {where}, level {level}: teacher classification output '
                f'{tuple(t)}, student {tuple(s)} (B, anchors x classes, H, W). '
                'The feature maps of the two necks must have the same sizes '
                '(same strides and start_level) and the heads the same '
                'anchors and classes.')


class _DenseRecord:
    """Filled by the hooks on the student's head during the loss pass.

    Args:
        kinds (AbstractSet[str]): The kinds of tensor the terms compare.
    """

    def __init__(self, kinds: AbstractSet[str]) -> None:
        self.kinds = kinds
        self.shapes: Optional[Tuple[torch.Size, ...]] = None
        self.feats: Optional[Tuple[Tensor, ...]] = None
        self.head_calls = 0
        self.scores: List[Tensor] = []
        self.labels: List[Tensor] = []
        self.label_weights: List[Optional[Tensor]] = []
        self.box_preds: Optional[List[Tensor]] = None

    def on_head(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.head_calls += 1
        self.feats = tuple(args[0])
        self.shapes = tuple(score.shape for score in output[0])
        if BOX_DISTRIBUTION in self.kinds:
            # GFLHead's (cls_scores, bbox_preds): what its loss reads.
            self.box_preds = list(output[1])

    def on_loss_cls(self, module: nn.Module, args: tuple,
                    kwargs: Dict[str, Any]) -> None:
        # mmdet's loss modules take (prediction, target, weight, ...); the
        # names differ, the order does not. GFL's target is (labels, score).
        values = list(call_arguments(module, args, kwargs).values())
        target = values[1]
        self.scores.append(values[0])
        self.labels.append(target[0] if isinstance(target,
                                                   (tuple, list)) else target)
        self.label_weights.append(values[2])

    def to_group(self, head: nn.Module) -> GroupCapture:
        """The one group of locations (call after the loss pass), with the
        box distributions in ``student_tensors`` if a term compares them."""
        if self.head_calls != 1:
            raise RuntimeError(
                'Dense distillation expects the student\'s head to run once '
                f'per step; it ran {self.head_calls} times.')
        if not self.scores:
            raise RuntimeError(
                f'The student\'s {type(head).__name__} loss did not call '
                'loss_cls; its head is not supported.')
        student = torch.cat(self.scores)
        labels = torch.cat([label.reshape(-1) for label in self.labels])
        valid = torch.cat([
            (weight.reshape(-1) > 0) if weight is not None else
            torch.ones_like(label.reshape(-1), dtype=torch.bool)
            for weight, label in zip(self.label_weights, self.labels)
        ])
        expected = sum(s[0] * s[2] * s[3] * (s[1] // head.num_classes)
                       for s in self.shapes)
        if student.shape != (expected, head.num_classes) or labels.shape != (
                expected, ):
            raise RuntimeError(
                f'The student\'s {type(head).__name__} loss classified '
                f'{tuple(student.shape)} logits with {tuple(labels.shape)} '
                f'labels, not the {expected} locations of its output '
                f'{[tuple(s) for s in self.shapes]}; its head is not '
                'supported.')
        student_tensors = {}
        if BOX_DISTRIBUTION in self.kinds:
            boxes = flatten_levels(self.box_preds,
                                   box_distribution_width(head))
            if boxes.size(0) != expected:
                raise RuntimeError(
                    f'The student\'s {type(head).__name__} gave box '
                    f'distributions for {boxes.size(0)} locations, not the '
                    f'{expected} of its classification output; its head is '
                    'not supported.')
            student_tensors[BOX_DISTRIBUTION] = boxes
        return GroupCapture(
            name='',
            student=student,
            labels=labels.long(),
            valid=valid,
            weight=1.0,
            samples=DenseSamples(self.shapes),
            feats=self.feats,
            student_tensors=student_tensors)


@register_adapter
class DenseHeadAdapter(DistillAdapter):
    """One group: every location of every level, named ``''`` (logged as
    ``loss_kd``), weight 1; ``valid`` excludes what the detection loss
    ignores (``label_weights == 0``). The teacher is a dense detector with
    the same levels, strides, anchors, classes and feature-map sizes.

    Besides classification terms it serves box-distribution terms
    (``BOX_DISTRIBUTION``) when both heads are ``GFLHead`` s with the
    ``reg_max`` of the term's loss."""

    family = 'dense one-stage heads (RetinaNet, ATSS, GFL, FCOS)'
    classifier = 'sigmoid'
    ea_granularities = ('location', 'image')

    #: Side of the blank input of :func:`check_feature_maps`, in multiples
    #: of the largest stride.
    check_size_strides = 2

    def matches(self, detector: nn.Module) -> bool:
        return isinstance(detector, SingleStageDetector)

    def check_student(self, student: nn.Module) -> None:
        check_dense_head(student, 'student')

    def num_classes(self, detector: nn.Module) -> int:
        return check_dense_head(detector, 'detector').num_classes

    def check_pair(self, student: nn.Module, teacher: nn.Module) -> None:
        student_head = check_dense_head(student, 'student')
        teacher_head = check_dense_head(teacher, 'teacher')
        if teacher_head.num_classes != student_head.num_classes:
            raise DenseAlignmentError(
                f'The teacher classifies {teacher_head.num_classes} classes '
                f'but the student {student_head.num_classes}; dense KD needs '
                'the same classes. Use a teacher trained on the student\'s '
                'data set.')
        check_priors(student_head, teacher_head)
        largest = max(max(s) for s in student_head.prior_generator.strides)
        check_feature_maps(student, teacher,
                           int(largest * self.check_size_strides))

    def check_term(self,
                   term: DistillTerm,
                   student: nn.Module,
                   teacher: Optional[nn.Module] = None) -> None:
        """Classification terms as the base class; a box-distribution term
        needs ``GFLHead`` s whose ``reg_max`` is the loss's and the same for
        student and teacher (the bins of their edge distributions pair one to
        one)."""
        if term.kind != BOX_DISTRIBUTION:
            super().check_term(term, student, teacher)
            return
        student_head = self._box_distribution_head(term, student, 'student')
        loss_reg_max = getattr(term.loss, 'reg_max', None)
        if loss_reg_max is not None and loss_reg_max != student_head.reg_max:
            raise UnsupportedPairError(
                f'{term.describe()} has reg_max={loss_reg_max}, but the '
                f'student\'s {type(student_head).__name__} has reg_max='
                f'{student_head.reg_max} ({student_head.reg_max + 1} bins per '
                f'edge). Set {term.label}.reg_max={student_head.reg_max}.')
        if teacher is None:
            return
        teacher_head = self._box_distribution_head(term, teacher, 'teacher')
        if teacher_head.reg_max != student_head.reg_max:
            raise UnsupportedPairError(
                f'{term.describe()}: the teacher\'s '
                f'{type(teacher_head).__name__} has reg_max='
                f'{teacher_head.reg_max} but the student\'s '
                f'{type(student_head).__name__} reg_max={student_head.reg_max}'
                ': their edge distributions have different bins, which LD '
                'cannot pair. Use a teacher and a student with the same '
                'reg_max, or remove the term.')

    @staticmethod
    def _box_distribution_head(term: DistillTerm, detector: nn.Module,
                               role: str) -> nn.Module:
        """``detector``'s head if it predicts box-edge distributions, else
        raise :class:`UnsupportedPairError` naming ``term``."""
        head = detector.bbox_head
        if not isinstance(head, GFLHead):
            raise UnsupportedPairError(
                f'{term.describe()} distils {term.compares}, but the '
                f'{role}\'s {type(head).__name__} predicts none (it regresses '
                'each box directly). Box-distribution terms need a GFLHead '
                f'{role} (GFL: reg_max + 1 bins per edge); remove the term '
                'or use a GFL pair.')
        return head

    @contextlib.contextmanager
    def capture(self, student: nn.Module,
                kinds: AbstractSet[str] = LOGITS_ONLY
                ) -> Iterator[List[GroupCapture]]:
        head = student.bbox_head
        record = _DenseRecord(kinds)
        groups: List[GroupCapture] = []
        with hooks([
                lambda: head.register_forward_hook(record.on_head),
                lambda: head.loss_cls.register_forward_pre_hook(
                    record.on_loss_cls, with_kwargs=True),
        ]):
            yield groups
        groups.append(record.to_group(head))

    def logits(self, detector: nn.Module, feats: Tuple[Tensor, ...],
               samples: DenseSamples) -> Tensor:
        return self.outputs(detector, feats, samples,
                            LOGITS_ONLY)[CLASS_LOGITS]

    def outputs(self, detector: nn.Module, feats: Tuple[Tensor, ...],
                samples: DenseSamples,
                kinds: AbstractSet[str]) -> Dict[str, Tensor]:
        """The class logits and, for ``BOX_DISTRIBUTION``, the box
        distributions, from one call of ``detector``'s head, flattened with
        :func:`flatten_levels` in the order of the student's locations."""
        head = detector.bbox_head
        outs = head(feats)
        cls_scores = outs[0]
        check_shapes(samples.shapes, [score.shape for score in cls_scores],
                     'this batch')
        tensors = {CLASS_LOGITS: flatten_levels(cls_scores, head.num_classes)}
        if BOX_DISTRIBUTION in kinds:
            tensors[BOX_DISTRIBUTION] = flatten_levels(
                outs[1], box_distribution_width(head))
        return tensors

    def usable_teacher_rows(self, kind: str, teacher: Tensor) -> Tensor:
        """Class logits as the base class; box distributions: every edge a
        distribution (:func:`~mmdet_eakd.losses.usable_box_rows`)."""
        if kind == BOX_DISTRIBUTION:
            return usable_box_rows(teacher,
                                   teacher.size(1) // NUM_EDGES - 1)
        return super().usable_teacher_rows(kind, teacher)
