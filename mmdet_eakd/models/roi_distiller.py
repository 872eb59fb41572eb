"""RoI-level knowledge distillation for two-stage detectors."""
from typing import Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from mmdet.models.detectors import TwoStageDetector
from mmdet.models.roi_heads import CascadeRoIHead
from mmdet.registry import MODELS
from ..distill import (DISTILL_ARGS, KD_LOSS, DistillerMixin, LogitGroup,
                       registered_class)
from ..distill.adapters.roi_common import ROI_SELECTIONS
from ..distill.features import FeaturePair, FeatureLevelError
from ..distill.terms import DistillTerm


@MODELS.register_module()
class RoIDistillTwoStageDetector(DistillerMixin, TwoStageDetector):
    """A two-stage student distilled from a frozen teacher on its sampled RoIs.

    In a training step the student runs its normal detection loss (each box
    head runs once per stage); the adapter of its RoI head
    (``StandardRoIHead``: Faster / Mask R-CNN; ``CascadeRoIHead``: Cascade
    R-CNN, one group per stage) records the sampled RoIs, the student's
    classification logits and the RoI labels (background = ``num_classes``)
    that this loss used. The teacher then classifies exactly these RoIs with
    its ``extract_feat`` and box RoI extractor + box head, under ``no_grad``
    in eval mode, with no RPN and no sampling of its own. ``distill_loss``
    (e.g. ``EAKDLoss``) compares both logits per RoI and joins the loss dict
    as ``loss_kd`` (a cascade also logs ``s0.loss_kd``, ...: each stage's KD
    times ``stage_loss_weights``, which sum to ``loss_kd``); the mean EA
    weight and entropies are logged as ``ea_weight``, ``entropy_t`` and
    ``entropy_s`` (not summed into the total loss).

    Cascade R-CNN uses this detector too: ``CascadeRCNN`` adds nothing to
    ``TwoStageDetector``, and the family only changes where the RoIs come
    from, which the adapter chosen from the RoI head handles.

    The teacher is not a submodule: it is absent from ``state_dict()``, the
    optimizer and checkpoints, so a checkpoint of this model is a plain
    checkpoint of the student (see :meth:`student_type`). It follows the
    student across devices (``.to``, ``.cuda``).

    Feature terms (``EAPKDLoss``) compare the FPN levels, EA-weighted per
    image, or, with ``ea_granularity='roi'``, the features of the sampled
    RoIs, each weighted by its RoI's EA weight (:meth:`feature_term_losses`).

    Args:
        teacher (dict): ``config`` and ``checkpoint`` of the trained teacher.
        distill_loss (dict): Config of the distillation loss module.
        teacher_autocast (str, optional): ``'fp16'`` / ``'bf16'`` autocast of
            the teacher's backbone and neck. Defaults to None.
        teacher_channels_last (bool): Channels-last teacher. Defaults to
            False.
        distill_rois (str): Which sampled RoIs the terms distil: ``'all'``
            (default, the paper's protocol) or ``'foreground'``, those the
            sampler assigned to an object (a control: the RoI twin of the
            dense ``distill_locations='positives'``).
        **kwargs: The student's ``TwoStageDetector`` arguments (backbone, neck,
            rpn_head, roi_head, train_cfg, test_cfg, data_preprocessor, ...).
    """

    distill_args = DISTILL_ARGS + ('distill_rois', )

    def __init__(self,
                 teacher: dict,
                 distill_loss: Optional[dict] = None,
                 distill_terms: Optional[Dict[str, dict]] = None,
                 distill_rois: str = 'all',
                 **kwargs) -> None:
        if distill_rois not in ROI_SELECTIONS:
            raise ValueError(f'distill_rois must be one of {ROI_SELECTIONS}, '
                             f'got {distill_rois!r}.')
        super().__init__(teacher=teacher, distill_loss=distill_loss,
                         distill_terms=distill_terms, **kwargs)
        self.distill_rois = distill_rois

    @classmethod
    def student_type(cls, model_cfg: dict) -> str:
        """``'CascadeRCNN'`` for a cascade RoI head, else
        ``'TwoStageDetector'`` (which Faster and Mask R-CNN are)."""
        roi_type = model_cfg.get('roi_head', {}).get('type')
        roi_cls = registered_class(roi_type)
        if isinstance(roi_cls, type) and issubclass(roi_cls, CascadeRoIHead):
            return 'CascadeRCNN'
        return 'TwoStageDetector'

    def feature_term_losses(self, term: DistillTerm,
                            groups: Sequence[LogitGroup],
                            features: FeaturePair) -> Dict[str, Tensor]:
        """A feature term; with ``ea_granularity='roi'`` (and weights) on
        the sampled RoIs' features.

        Per group (a box stage), the RoI features of its sampled RoIs are
        the stage's box RoI extractor (the student's, no parameters: one
        more RoIAlign of the student's levels) applied to the student's
        levels and to the teacher's levels of the same strides, shape (N,
        C, h, w); the term is ``EAPKDLoss`` on them with one weight per RoI
        (0 for a RoI the classification term did not distil), the RoIs
        standing for the images of a level. Summed over the groups, each
        times its weight (a cascade's ``stage_loss_weights``).

        Returns:
            dict[str, Tensor]: Under the term's keys: ``loss_kd``; with EA,
            ``ea_weight`` (the mean weight of the distilled RoIs).
        """
        if (term.loss.weight_mode == 'none'
                or term.loss.ea_granularity != 'roi'):
            return super().feature_term_losses(term, groups, features)
        teacher_level = dict(self.feature_level_pairs)
        rows = self.feature_row_weights(term, groups)
        total = None
        for group, row in zip(groups, rows):
            extractor = self._box_roi_extractor(group.samples.stage)
            levels = range(extractor.num_inputs)
            missing = [s for s in levels if s not in teacher_level]
            if missing:
                raise FeatureLevelError(
                    f'{term.describe()}: the teacher has no level of the '
                    f'stride of the student\'s levels {missing}, which its '
                    'box RoI extractor pools from, so RoI features cannot '
                    'be compared. Use ea_granularity=\'image\'.')
            rois = group.samples.rois
            student = extractor(features.student[:extractor.num_inputs],
                                rois)
            with torch.no_grad():
                teacher = extractor(
                    [features.teacher[teacher_level[s]] for s in levels],
                    rois)
            loss = term.loss([student], [teacher],
                             weights=[row.weights * row.mask])
            weighted = group.weight * loss
            total = weighted if total is None else total + weighted
        count = sum(row.mask.sum() for row in rows).clamp(min=1)
        return {
            term.key(KD_LOSS): total,
            term.key('ea_weight'):
            sum((row.weights * row.mask).sum() for row in rows) / count
        }

    def _box_roi_extractor(self, stage: int) -> nn.Module:
        """The student's box RoI extractor of ``stage`` (a cascade's stage
        module, or the one of a ``StandardRoIHead``)."""
        extractor = self.roi_head.bbox_roi_extractor
        if isinstance(extractor, nn.ModuleList):
            return extractor[stage]
        return extractor
