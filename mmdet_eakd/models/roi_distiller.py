"""RoI-level knowledge distillation for two-stage detectors."""
from typing import Dict, Optional, Tuple

from torch import Tensor

from mmdet.models.detectors import TwoStageDetector
from mmdet.models.roi_heads import CascadeRoIHead
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from ..distill import DISTILL_ARGS, DistillerMixin, LogitGroup
from ..distill.core import DistillInputs

#: Which sampled RoIs the classification terms distil (``distill_rois``).
ROI_SELECTIONS: Tuple[str, ...] = ('all', 'foreground')


def foreground_rois(group: LogitGroup) -> Tensor:
    """The valid RoIs of ``group`` sampled as an object (label below the
    background label ``C - 1``), shape (N,), bool."""
    background = group.student.shape[1] - 1
    return group.valid & (group.labels < background)


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

    def distill_inputs(self, batch_inputs: Tensor,
                       batch_data_samples: SampleList) -> DistillInputs:
        """The core's inputs; with ``distill_rois='foreground'`` ``valid``
        keeps the foreground RoIs only (:func:`foreground_rois`)."""
        inputs = super().distill_inputs(batch_inputs, batch_data_samples)
        if self.distill_rois == 'all':
            return inputs
        groups = [
            group._replace(valid=foreground_rois(group))
            for group in inputs.groups
        ]
        return DistillInputs(inputs.losses, groups)

    @classmethod
    def student_type(cls, model_cfg: dict) -> str:
        """``'CascadeRCNN'`` for a cascade RoI head, else
        ``'TwoStageDetector'`` (which Faster and Mask R-CNN are)."""
        roi_type = model_cfg.get('roi_head', {}).get('type')
        roi_cls = MODELS.get(roi_type) if isinstance(roi_type,
                                                     str) else roi_type
        if isinstance(roi_cls, type) and issubclass(roi_cls, CascadeRoIHead):
            return 'CascadeRCNN'
        return 'TwoStageDetector'
