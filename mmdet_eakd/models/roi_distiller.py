"""RoI-level knowledge distillation for two-stage detectors."""
from mmdet.models.detectors import TwoStageDetector
from mmdet.models.roi_heads import CascadeRoIHead
from mmdet.registry import MODELS
from ..distill import DistillerMixin


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
        **kwargs: The student's ``TwoStageDetector`` arguments (backbone, neck,
            rpn_head, roi_head, train_cfg, test_cfg, data_preprocessor, ...).
    """

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
