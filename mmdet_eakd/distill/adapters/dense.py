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
import math
from typing import (AbstractSet, Any, Dict, Iterator, List, NamedTuple,
                    Optional, Sequence, Tuple)

import torch
from torch import Tensor, nn

from mmdet.models.dense_heads import (AnchorHead, ATSSHead, FCOSHead,
                                      GFLHead)
from mmdet.models.detectors import SingleStageDetector
from mmdet.utils import reduce_mean
from ...losses import (BOX_DISTRIBUTION, CLASS_LOGITS, NUM_EDGES, SIGMOID,
                       usable_box_rows)
from ..terms import DistillTerm
from .base import (KD_LOSS, LOGITS_ONLY, DistillAdapter, GroupCapture,
                   LogitGroup, UnsupportedPairError, call_arguments, hooks,
                   masked_rows, register_adapter)

#: Which locations the classification terms distil (the dense distiller's
#: ``distill_locations``).
LOCATIONS: Tuple[str, ...] = ('all', 'positives', 'teacher_gated')

#: Heads and the methods their classification loss lives in, nearest base
#: first; a subclass is supported if it keeps these methods of its nearest
#: listed base.
LossMethods = Tuple[Tuple[type, Tuple[str, ...]], ...]

_LOSS_METHODS: LossMethods = (
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
        quality (Tensor, optional): Per location (the rows' order), shape
            (N,), detached: the soft target of a quality focal loss (GFL,
            RTMDet: their ``loss_cls`` takes ``(labels, score)``), the IoU of
            the student's decoded box with its assigned object at positives
            and 0 elsewhere. None for heads whose ``loss_cls`` takes labels
            only. Read by analyses (e.g. EA-LD's weight against IoU), not by
            the losses.
    """
    shapes: Tuple[torch.Size, ...]
    quality: Optional[Tensor] = None


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


def _loss_base(head: nn.Module, loss_methods: LossMethods) -> Optional[type]:
    """The nearest base class of ``loss_methods`` whose loss methods
    ``head`` keeps, or None."""
    for base, methods in loss_methods:
        if isinstance(head, base):
            keeps = all(
                getattr(type(head), m) is getattr(base, m) for m in methods)
            return base if keeps else None
    return None


def check_dense_head(
        detector: nn.Module,
        role: str,
        loss_methods: LossMethods = _LOSS_METHODS,
        supported: str = ('RetinaHead and other AnchorHead subclasses, '
                          'ATSSHead, GFLHead and FCOSHead')) -> nn.Module:
    """The sigmoid dense head of a ``SingleStageDetector``.

    Args:
        detector (nn.Module): The detector.
        role (str): ``'student'``, ``'teacher'`` or ``'detector'``, for
            messages.
        loss_methods (LossMethods): The heads the family supports and the
            methods their classification loss lives in.
        supported (str): Those heads, in words, for messages.

    Returns:
        nn.Module: The head.

    Raises:
        UnsupportedPairError: Not a single-stage detector, a head other than
            those of ``loss_methods`` (or a subclass that rewrites their
            loss), or a softmax classifier.
    """
    if not isinstance(detector, SingleStageDetector):
        raise UnsupportedPairError(
            f'The {role} is a {type(detector).__name__}; dense distillation '
            f'needs a SingleStageDetector (with {supported}).')
    head = getattr(detector, 'bbox_head', None)
    if _loss_base(head, loss_methods) is None:
        methods = sorted({m for _, names in loss_methods for m in names})
        raise UnsupportedPairError(
            f'The {role}\'s head is {type(head).__name__}; this dense '
            f'distillation family supports {supported} (and subclasses that '
            f'keep their {" / ".join(methods)}), whose classification loss '
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
        self.qualities: List[Tensor] = []
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
        if isinstance(target, (tuple, list)):
            self.labels.append(target[0])
            self.qualities.append(target[1])
        else:
            self.labels.append(target)
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
            samples=DenseSamples(self.shapes, self._quality(labels)),
            feats=self.feats,
            student_tensors=student_tensors)


    def _quality(self, labels: Tensor) -> Optional[Tensor]:
        """The quality targets of every ``loss_cls`` call, concatenated as
        the labels, if every call had them."""
        if len(self.qualities) != len(self.labels):
            return None
        quality = torch.cat([q.detach().reshape(-1) for q in self.qualities])
        return quality if quality.shape == labels.shape else None


def check_locations(distill_locations: str,
                    teacher_score_thr: Optional[float]) -> None:
    """Check the dense distiller's location options.

    Args:
        distill_locations (str): One of :data:`LOCATIONS`.
        teacher_score_thr (float, optional): A score in (0, 1) for
            ``'teacher_gated'``, else None.

    Raises:
        ValueError: Naming the bad option and what to set.
    """
    if distill_locations not in LOCATIONS:
        raise ValueError(f'distill_locations must be one of {LOCATIONS}, '
                         f'got {distill_locations!r}.')
    gated = distill_locations == 'teacher_gated'
    if gated and not (isinstance(teacher_score_thr, (int, float))
                      and 0 < teacher_score_thr < 1):
        raise ValueError(
            'distill_locations="teacher_gated" needs teacher_score_thr, '
            f'a score in (0, 1); got {teacher_score_thr!r}.')
    if not gated and teacher_score_thr is not None:
        raise ValueError(
            f'teacher_score_thr={teacher_score_thr!r} only applies to '
            'distill_locations="teacher_gated", but distill_locations is '
            f'{distill_locations!r}; remove it or gate by the teacher.')


def select_locations(group: LogitGroup, num_classes: int, locations: str,
                     teacher_score_thr: Optional[float]) -> Tensor:
    """The locations of ``group`` to distill under a ``locations`` option.

    Args:
        group (LogitGroup): The head's locations; ``distillable`` marks
            those the detection loss counts where the teacher's outputs are
            distributions.
        num_classes (int): C; label ``C`` is background.
        locations (str): ``'all'`` (every valid location), ``'positives'``
            (valid locations assigned to an object) or ``'teacher_gated'``
            (valid locations where the teacher's highest class score,
            ``sigmoid(max_c z_T,c)``, exceeds ``teacher_score_thr``).
        teacher_score_thr (float, optional): Threshold in (0, 1) of
            ``'teacher_gated'``.

    Returns:
        Tensor: Shape (N,), bool.
    """
    if locations == 'all':
        return group.distillable
    if locations == 'positives':
        return positive_locations(group, num_classes)
    # sigmoid is monotonic: compare the max logit with logit(thr) instead of
    # taking the sigmoid of every score.
    threshold = math.log(teacher_score_thr / (1 - teacher_score_thr))
    return group.distillable & (group.teacher.amax(dim=1) > threshold)


def positive_locations(group: LogitGroup, num_classes: int) -> Tensor:
    """The distillable locations assigned to an object (label in ``[0,
    num_classes)``), shape (N,), bool."""
    return group.distillable & (group.labels >= 0) & (group.labels
                                                      < num_classes)


def _means(term: DistillTerm, values: Dict[str, Tensor],
           selected: Tensor) -> Dict[str, Tensor]:
    """The means over the ``selected`` locations (shape (N,), bool) of
    per-location ``values``, under ``term``'s keys (masked: no host read)."""
    count = selected.sum().clamp(min=1)
    return {
        term.key(name): torch.where(selected, value,
                                    value.new_zeros(())).sum() / count
        for name, value in values.items()
    }


@register_adapter(head_types=(AnchorHead, FCOSHead))
class DenseHeadAdapter(DistillAdapter):
    """One group: every location of every level, named ``''`` (logged as
    ``loss_kd``), weight 1; ``valid`` excludes what the detection loss
    ignores (``label_weights == 0``). The teacher is a dense detector with
    the same levels, strides, anchors, classes and feature-map sizes.

    Besides classification terms it serves box-distribution terms
    (``BOX_DISTRIBUTION``) when both heads are ``GFLHead`` s with the
    ``reg_max`` of the term's loss.

    Its policy (:meth:`select_samples`, :meth:`term_losses`), configured by
    the dense distiller's ``distill_locations`` and ``teacher_score_thr``:

    - **Classification terms** (``SigmoidEAKDLoss``: KL of the per-class
      Bernoulli distributions, weighted per location by the sigmoid EA
      weight): at the locations ``distill_locations`` selects
      (:func:`select_locations`), the sum of the per-location terms divided
      by the number of positive locations averaged over the processes
      (clamped to >= 1), as mmdet's ATSS / GFL / FCOS heads normalise their
      classification loss (RetinaNet's own ``avg_factor`` is the
      per-process count; the KD term uses the averaged one for every head).
      Logged: ``loss_kd``; ``ea_weight``, ``entropy_t``, ``entropy_s``
      (means over the selected locations) and ``kd_fg_share`` /
      ``kd_bg_share``, the shares of the term's loss on positive and
      background locations.
    - **Box-distribution terms** (``EALDLoss`` on GFL heads; see
      :meth:`box_term_losses`): at the positive locations, weighted by the
      student's top class score as mmdet's ``LDHead`` weights its LD, summed
      over the positives as ``LDHead``'s ``loss_ld`` is. Logged:
      ``loss_kd``; ``ea_weight``, ``entropy_t``, ``entropy_s`` (means over
      the positives).

    Every location is computed and the unselected ones are masked out
    (``torch.where``), so the step reads nothing on the host and a
    non-finite value at an unselected location does not reach the loss.
    """

    family = 'dense one-stage heads (RetinaNet, ATSS, GFL, FCOS)'
    classifier = SIGMOID
    ea_granularities = ('location', 'image')

    #: Side of the blank input of :func:`check_feature_maps`, in multiples
    #: of the largest stride.
    check_size_strides = 2

    #: The heads of the family and the methods their classification loss
    #: lives in (see :func:`check_dense_head`), and the same in words.
    loss_methods: LossMethods = _LOSS_METHODS
    supported_heads: str = ('RetinaHead and other AnchorHead subclasses, '
                            'ATSSHead, GFLHead and FCOSHead')

    def check_head(self, detector: nn.Module, role: str) -> nn.Module:
        """:func:`check_dense_head` with the family's heads."""
        return check_dense_head(detector, role, self.loss_methods,
                                self.supported_heads)

    def check_student(self, student: nn.Module) -> None:
        self.check_head(student, 'student')

    def num_classes(self, detector: nn.Module) -> int:
        return self.check_head(detector, 'detector').num_classes

    def check_pair(self, student: nn.Module, teacher: nn.Module) -> None:
        student_head = self.check_head(student, 'student')
        teacher_head = self.check_head(teacher, 'teacher')
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

    def select_samples(self, detector: nn.Module,
                       group: LogitGroup) -> Tensor:
        """The locations ``detector.distill_locations`` selects for the
        classification terms (:func:`select_locations`, with
        ``detector.teacher_score_thr``)."""
        return select_locations(group, detector.bbox_head.num_classes,
                                detector.distill_locations,
                                detector.teacher_score_thr)

    def term_losses(self, detector: nn.Module, term: DistillTerm,
                    groups: Sequence[LogitGroup]) -> Dict[str, Tensor]:
        """One term's loss and statistics under its keys: a box-distribution
        term by :meth:`box_term_losses`, a classification term by
        :meth:`logit_term_losses`."""
        (group, ) = groups
        num_classes = detector.bbox_head.num_classes
        if term.kind == BOX_DISTRIBUTION:
            return self.box_term_losses(term, group, num_classes)
        return self.logit_term_losses(detector, term, group, num_classes)

    @staticmethod
    def logit_term_losses(detector: nn.Module, term: DistillTerm,
                          group: LogitGroup,
                          num_classes: int) -> Dict[str, Tensor]:
        """A classification term, normalised by the positives. Its
        per-location statistics are kept for the step's feature terms
        (``detector.remember_entropies``).

        Args:
            detector (nn.Module): The distiller.
            term (DistillTerm): A classification term.
            group (LogitGroup): The locations; ``valid`` are the selected
                ones.
            num_classes (int): C; label ``C`` is background.

        Returns:
            dict[str, Tensor]: Under the term's keys: ``loss_kd`` (the sum
            over the selected locations of the per-location terms, divided
            by the positives averaged over the processes, clamped to >= 1);
            ``ea_weight``, ``entropy_t``, ``entropy_s`` (means over the
            selected locations), ``kd_fg_share`` and ``kd_bg_share``
            (detached).
        """
        selected = group.valid
        positive = (group.labels >= 0) & (group.labels < num_classes)
        student = masked_rows(group.student, selected)
        teacher = masked_rows(group.teacher, selected)
        per_location, stats = term.loss.loss_and_stats(
            student, teacher, group.labels, reduction_override='none')
        detector.remember_entropies(term, stats, selected)
        per_location = torch.where(selected, per_location,
                                   per_location.new_zeros(()))
        num_pos = reduce_mean(positive.sum().to(per_location.dtype))
        losses = {
            term.key(KD_LOSS):
            group.weight * per_location.sum() / num_pos.clamp(min=1)
        }
        losses.update(_means(term, stats._asdict(), selected))
        detached = per_location.detach()
        total = detached.sum()
        fg_share = torch.where(
            total > 0, (detached * positive).sum() / total.clamp(min=1e-12),
            total.new_zeros(()))
        losses[term.key('kd_fg_share')] = fg_share
        losses[term.key('kd_bg_share')] = torch.where(total > 0, 1 - fg_share,
                                                      total.new_zeros(()))
        return losses

    @staticmethod
    def box_term_losses(term: DistillTerm, group: LogitGroup,
                        num_classes: int) -> Dict[str, Tensor]:
        """A box-distribution term (EA-LD) at the positives, as mmdet's LD.

        What mmdet 3.3's ``LDHead.loss_by_feat_single`` computes, per FPN
        level, is ``loss_ld(pred_corners, soft_corners, weight=w[:,
        None].expand(-1, 4).reshape(-1), avg_factor=4.0)`` on the positive
        locations (``0 <= label < num_classes``), with ``w`` the student's
        top class score ``cls_score.detach().sigmoid().max(dim=1)`` there
        and ``loss_ld = KnowledgeDistillationKLDivLoss(T=10,
        loss_weight=0.25)`` (per edge ``T^2`` times the KL averaged over the
        ``reg_max + 1`` bins); ``loss_by_feat`` leaves it unnormalised (its
        ``loss_ld`` list is summed over the levels). That is
        ``loss_weight * sum_n w_n * LD_n * 4 / (4 + eps)`` with ``LD_n`` the
        mean of the location's 4 edge terms and ``eps = finfo(float32).eps``
        (mmdet's guard when it divides by ``avg_factor``).

        This term reproduces it, without the ``4 / (4 + eps)`` (a relative
        difference of 3e-8) and with the EA weight: ``loss_kd = weight *
        sum_n [positive_n] * s_n * w_EA,n * loss_weight * LD_n``, ``s_n =
        sigmoid(max_c z_S,n,c)`` (detached; equal to the max of the
        sigmoids) from the student's logits that its ``loss_cls`` used,
        ``w_EA,n`` the loss's entropy weight (1 for ``weight_mode='none'``,
        then exactly mmdet's LD), summed over the positives of this process
        (not divided by their number: ``T = 10`` and ``loss_weight = 0.25``
        mean what they mean in mmdet's LD configs). Positives are the
        ``distillable`` locations with a label in ``[0, num_classes)``
        (mmdet's, less those where a teacher output is no distribution),
        whatever ``distill_locations`` is. mmdet 3.3's ``LDHead`` has no
        "valuable localization region" term; neither has this one.

        Args:
            term (DistillTerm): A box-distribution term (``EALDLoss``).
            group (LogitGroup): The locations, with the box distributions
                (shape (N, 4 * (reg_max + 1))) in ``student_tensors`` /
                ``teacher_tensors``.
            num_classes (int): C; label ``C`` is background.

        Returns:
            dict[str, Tensor]: Under the term's keys: ``loss_kd``;
            ``ea_weight``, ``entropy_t``, ``entropy_s`` (means over the
            positives, detached).
        """
        positive = positive_locations(group, num_classes)
        student, teacher = group.pair(BOX_DISTRIBUTION)
        top_score = group.student.detach().amax(dim=1).float().sigmoid()
        score = torch.where(positive, top_score, top_score.new_zeros(()))
        per_location, stats = term.loss.loss_and_stats(
            masked_rows(student, positive),
            masked_rows(teacher, positive),
            weight=score,
            reduction_override='none')
        per_location = torch.where(positive, per_location,
                                   per_location.new_zeros(()))
        losses = {term.key(KD_LOSS): group.weight * per_location.sum()}
        losses.update(_means(term, stats._asdict(), positive))
        return losses
