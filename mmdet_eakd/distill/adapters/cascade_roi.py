"""Adapter of ``CascadeRoIHead`` (Cascade R-CNN, box branch)."""
from typing import AbstractSet, ContextManager, List, Tuple

from torch import Tensor, nn

from mmdet.models.roi_heads import CascadeRoIHead
from .base import (LOGITS_ONLY, GroupCapture, UnsupportedPairError,
                   register_adapter)
from .roi_common import (RoISamples, SoftmaxRoIAdapter, capture_box_stages,
                         check_same_classes, check_softmax_heads,
                         check_two_stage, roi_logits)


@register_adapter(head_types=(CascadeRoIHead, ))
class CascadeRoIAdapter(SoftmaxRoIAdapter):
    """One group per box stage ``s``: the RoIs stage ``s`` sampled (at its own
    IoU threshold), named ``s{s}`` (logged as ``s{s}.loss_kd``) and weighted
    by the cascade's ``stage_loss_weights[s]``, as its detection losses are.
    Stages after an early end of the cascade (no RoIs left) form no group.

    The teacher is a Cascade R-CNN with as many stages (its stage ``s``
    classifies the student's stage-``s`` RoIs) or a Faster R-CNN (its box
    head classifies every stage's RoIs).
    """

    family = 'CascadeRoIHead (Cascade R-CNN box branch)'

    def check_pair(self, student: nn.Module, teacher: nn.Module) -> None:
        roi_head = check_two_stage(teacher, 'teacher')
        stages = student.roi_head.num_stages
        if (isinstance(roi_head, CascadeRoIHead)
                and roi_head.num_stages != stages):
            raise UnsupportedPairError(
                f'The teacher\'s cascade has {roi_head.num_stages} stages but '
                f'the student\'s {stages}; its stage s classifies the '
                'student\'s stage-s RoIs. Use a teacher with as many stages, '
                'or a Faster R-CNN teacher (one box head for every stage).')
        check_same_classes(
            check_softmax_heads(student.roi_head, 'student'),
            check_softmax_heads(roi_head, 'teacher'))

    def capture(self, student: nn.Module,
                kinds: AbstractSet[str] = LOGITS_ONLY
                ) -> ContextManager[List[GroupCapture]]:
        roi_head = student.roi_head
        return capture_box_stages(
            roi_head,
            names=[f's{stage}' for stage in range(roi_head.num_stages)],
            weights=[float(w) for w in roi_head.stage_loss_weights])

    def logits(self, detector: nn.Module, feats: Tuple[Tensor, ...],
               samples: RoISamples) -> Tensor:
        return roi_logits(detector.roi_head, feats, samples)
