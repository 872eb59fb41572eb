"""Adapter of ``StandardRoIHead`` (Faster R-CNN; Mask R-CNN's box branch)."""
from typing import AbstractSet, ContextManager, List, Tuple

from torch import Tensor, nn

from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
from .base import (LOGITS_ONLY, GroupCapture, UnsupportedPairError,
                   register_adapter)
from .roi_common import (RoISamples, SoftmaxRoIAdapter, capture_box_stages,
                         check_same_classes, check_softmax_heads,
                         check_two_stage, roi_logits)


@register_adapter(head_types=(StandardRoIHead, ))
class StandardRoIAdapter(SoftmaxRoIAdapter):
    """One group: the RoIs the box head sampled, named ``''`` (logged as
    ``loss_kd``), weight 1. The teacher is a ``StandardRoIHead`` detector; a
    mask branch is not distilled."""

    family = 'StandardRoIHead (Faster / Mask R-CNN box branch)'

    def check_pair(self, student: nn.Module, teacher: nn.Module) -> None:
        roi_head = check_two_stage(teacher, 'teacher')
        if isinstance(roi_head, CascadeRoIHead):
            raise UnsupportedPairError(
                'The teacher\'s RoI head is CascadeRoIHead but the student\'s '
                'is a StandardRoIHead: no cascade stage corresponds to its '
                'RoIs. Use a Faster / Mask R-CNN teacher, or a Cascade '
                'student.')
        check_same_classes(
            check_softmax_heads(student.roi_head, 'student'),
            check_softmax_heads(roi_head, 'teacher'))

    def capture(self, student: nn.Module,
                kinds: AbstractSet[str] = LOGITS_ONLY
                ) -> ContextManager[List[GroupCapture]]:
        return capture_box_stages(student.roi_head, names=[''], weights=[1.0])

    def logits(self, detector: nn.Module, feats: Tuple[Tensor, ...],
               samples: RoISamples) -> Tensor:
        return roi_logits(detector.roi_head, feats, samples)
