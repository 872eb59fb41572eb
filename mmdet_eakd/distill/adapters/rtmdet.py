"""Adapter of mmdet 3.3's RTMDet heads (``RTMDetHead``, ``RTMDetSepBNHead``).

``RTMDetHead`` is an ``ATSSHead`` that rewrites its loss: ``loss_by_feat``
decodes the boxes, assigns each point with ``DynamicSoftLabelAssigner``
(whose IoU-aware soft targets ``assign_metrics`` QFL trains on), and
``loss_by_feat_single`` calls, once per level,
``loss_cls(cls_score.permute(0, 2, 3, 1).reshape(-1, C), (labels,
assign_metrics), label_weights, avg_factor=1.0)``: the order (level, image,
position) of the other dense heads, one point per position
(``MlvlPointGenerator``), and a target tuple like GFL's. So the dense
family's capture and teacher call serve it unchanged; what the dense adapter
cannot know is that this rewritten loss keeps the order, so it refuses any
``ATSSHead`` subclass that rewrites ``loss_by_feat``. This adapter is
registered for ``RTMDetHead`` (found first along the head's MRO) and accepts
the heads that keep ``RTMDetHead``'s loss methods.

``RTMDetSepBNHead`` shares its convs across levels (``share_conv``, one BN
per level) and ``with_objectness`` folds an objectness branch into the class
logits (``inverse_sigmoid`` of the geometric mean): both change only the
forward, whose output the capture and the teacher call read.

RTMDet-Ins (``RTMDetInsHead``, ``RTMDetInsSepBNHead``) rewrites
``loss_by_feat`` to add the mask loss (dynamic kernels on a prototype map)
but classifies through ``RTMDetHead.loss_by_feat_single`` as above, and its
forward gives ``(cls_scores, bbox_preds, kernel_preds, mask_feat)``, class
scores first: its classification is distilled as RTMDet's, and its masks
train as usual (no mask term).

RTMDet regresses box distances, not box-edge distributions: box-distribution
(LD) terms are refused by name (``DenseHeadAdapter.check_term``).

The policy is the dense family's (``DenseHeadAdapter``): sigmoid EA-KD at
the locations the loss counts (``label_weights > 0``) or the
``distill_locations`` subset, normalised by the positives.
"""
from mmdet.models.dense_heads import RTMDetHead, RTMDetInsHead
from .base import register_adapter
from .dense import DenseHeadAdapter, LossMethods


@register_adapter(head_types=(RTMDetHead, ))
class RTMDetAdapter(DenseHeadAdapter):
    """The dense adapter, for RTMDet's heads: one group of every point of
    every level; the teacher is an RTMDet (or RTMDet-Ins) with the same
    classes, strides and feature-map sizes."""

    family = 'RTMDet heads (RTMDetHead, RTMDetSepBNHead, RTMDet-Ins)'
    loss_methods: LossMethods = (
        (RTMDetInsHead, ('loss_by_feat', 'loss_by_feat_single')),
        (RTMDetHead, ('loss_by_feat', 'loss_by_feat_single')),
    )
    supported_heads = ('RTMDetHead, RTMDetSepBNHead, RTMDetInsHead and '
                       'RTMDetInsSepBNHead')
