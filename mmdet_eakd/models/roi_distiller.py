"""RoI-level knowledge distillation for two-stage detectors."""
import contextlib
import copy
from typing import Any, Dict, Iterator, Optional

import torch
from mmengine.config import ConfigDict
from torch import Tensor

from mmdet.models.detectors import TwoStageDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from .teacher import (build_teacher, check_roi_head, renormalize_for_teacher,
                      same_input_format)

#: Model arguments that only the distiller knows; dropped for the plain student.
DISTILL_ARGS = ('teacher', 'distill_loss', 'teacher_autocast',
                'teacher_channels_last')

_AUTOCAST_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


class _RoICapture:
    """What the student's RoI head used for its detection loss in one step.

    Filled by forward hooks on the student's box RoI extractor (``rois``), box
    head (``cls_score``) and classification loss (``labels``).
    """

    def __init__(self) -> None:
        self.rois: Optional[Tensor] = None
        self.cls_score: Optional[Tensor] = None
        self.labels: Optional[Tensor] = None
        self.bbox_head_calls = 0

    def on_roi_extractor(self, module: torch.nn.Module, args: tuple,
                         kwargs: dict) -> None:
        # Mask R-CNN may share the extractor for its mask branch (positive RoIs
        # only); the box branch runs first and its RoIs are the sampled ones.
        if self.rois is None:
            self.rois = kwargs['rois'] if 'rois' in kwargs else args[1]

    def on_bbox_head(self, module: torch.nn.Module, args: tuple,
                     output: Any) -> None:
        self.bbox_head_calls += 1
        self.cls_score = output[0]

    def on_loss_cls(self, module: torch.nn.Module, args: tuple,
                    kwargs: dict) -> None:
        self.labels = kwargs['label'] if 'label' in kwargs else args[1]


@MODELS.register_module()
class RoIDistillTwoStageDetector(TwoStageDetector):
    """A two-stage student distilled from a frozen teacher on its sampled RoIs.

    In a training step the student runs its normal detection loss (its RoI head
    runs once); forward hooks record the sampled ``rois``, the student's
    classification logits and the RoI labels (background = ``num_classes``)
    that this loss used. The teacher then classifies exactly these RoIs: its
    ``extract_feat`` and box RoI extractor + box head, under ``no_grad`` in eval
    mode, with no RPN and no sampling of its own. ``distill_loss`` (e.g.
    ``EAKDLoss``) compares both logits per RoI and joins the loss dict as
    ``loss_kd``; the mean EA weight and entropies are logged as ``ea_weight``,
    ``entropy_t`` and ``entropy_s`` (not summed into the total loss).

    The teacher is not a submodule: it is absent from ``state_dict()``, the
    optimizer and checkpoints, so a checkpoint of this model is a plain
    checkpoint of the student's ``TwoStageDetector``. It follows the student
    across devices (``.to``, ``.cuda``).

    Args:
        teacher (dict): ``config`` (config path, ``mmdet::`` name or config
            dict) and ``checkpoint`` (path or URL) of the trained teacher.
        distill_loss (dict): Config of the distillation loss module (e.g.
            ``EAKDLoss``), called as ``loss(student_logits, teacher_logits,
            labels)``; its ``ea_stats(student_logits, teacher_logits)`` gives
            the logged statistics.
        teacher_autocast (str, optional): ``'fp16'`` or ``'bf16'`` to run the
            teacher's backbone and neck under autocast (its box head and the
            loss stay float32).
            Defaults to None (teacher in the student's precision).
        teacher_channels_last (bool): Run the teacher in channels-last memory
            format. Defaults to False.
        **kwargs: The student's ``TwoStageDetector`` arguments (backbone, neck,
            rpn_head, roi_head, train_cfg, test_cfg, data_preprocessor, ...).
    """

    def __init__(self,
                 teacher: dict,
                 distill_loss: dict,
                 teacher_autocast: Optional[str] = None,
                 teacher_channels_last: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        check_roi_head(self, 'student')
        if not isinstance(teacher, dict) or 'config' not in teacher:
            raise ValueError(
                'model.teacher must be dict(config=..., checkpoint=...), got '
                f'{teacher!r}.')
        unknown = set(teacher) - {'config', 'checkpoint'}
        if unknown:
            raise ValueError(f'model.teacher has unknown keys {sorted(unknown)}; '
                             'it takes config and checkpoint.')
        if teacher_autocast not in (None, *_AUTOCAST_DTYPES):
            raise ValueError(
                f'teacher_autocast must be None, "fp16" or "bf16", got '
                f'{teacher_autocast!r}.')
        teacher_model = build_teacher(
            teacher['config'], teacher.get('checkpoint'),
            num_classes=self.roi_head.bbox_head.num_classes)
        if teacher_channels_last:
            teacher_model.to(memory_format=torch.channels_last)
        # Plain attribute, not a submodule: no state_dict, optimizer, DDP sync.
        object.__setattr__(self, 'teacher', teacher_model)
        self.distill_loss = MODELS.build(distill_loss)
        self.teacher_autocast = teacher_autocast
        self.teacher_channels_last = teacher_channels_last
        self._teacher_takes_student_inputs = same_input_format(
            self.data_preprocessor, teacher_model.data_preprocessor)

    def __deepcopy__(self, memo: dict) -> 'RoIDistillTwoStageDetector':
        """Deep-copy the student; the frozen teacher is shared, not copied.

        EMA hooks (e.g. mmdet's ``ExpMomentumEMA``) deep-copy the model; a
        copy of a large teacher would only cost memory.
        """
        memo[id(self.teacher)] = self.teacher
        copied = self.__class__.__new__(self.__class__)
        memo[id(self)] = copied
        copied.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return copied

    def _apply(self, fn, *args, **kwargs):
        """Move/cast the teacher together with the student."""
        teacher = self.__dict__.get('teacher')
        if teacher is not None:
            teacher._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    @contextlib.contextmanager
    def _capture_roi_head(self) -> Iterator[_RoICapture]:
        capture = _RoICapture()
        roi_head = self.roi_head
        handles = [
            roi_head.bbox_roi_extractor.register_forward_pre_hook(
                capture.on_roi_extractor, with_kwargs=True),
            roi_head.bbox_head.register_forward_hook(capture.on_bbox_head),
            roi_head.bbox_head.loss_cls.register_forward_pre_hook(
                capture.on_loss_cls, with_kwargs=True),
        ]
        try:
            yield capture
        finally:
            for handle in handles:
                handle.remove()

    @torch.no_grad()
    def teacher_logits(self, batch_inputs: Tensor,
                       batch_data_samples: SampleList, rois: Tensor) -> Tensor:
        """Classification logits of the teacher's RoI head on given RoIs.

        Args:
            batch_inputs (Tensor): Student inputs, shape (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Their data samples.
            rois (Tensor): RoIs, shape (N, 5) as (batch index, x1, y1, x2, y2).

        Returns:
            Tensor: Teacher logits, shape (N, num_classes + 1), float32.
        """
        teacher = self.teacher
        if teacher.training:
            teacher.eval()
        inputs = batch_inputs
        if not self._teacher_takes_student_inputs:
            inputs = renormalize_for_teacher(batch_inputs, batch_data_samples,
                                             self.data_preprocessor,
                                             teacher.data_preprocessor)
        if self.teacher_channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(inputs.device.type,
                           dtype=_AUTOCAST_DTYPES[self.teacher_autocast])
            if self.teacher_autocast else contextlib.nullcontext())
        with autocast:
            feats = teacher.extract_feat(inputs)
        # The box head (RoIAlign + fcs) runs in float32: a small share of the
        # teacher's cost, and mmcv's CPU RoIAlign has no bf16 kernel.
        feats = tuple(feat.float() for feat in feats)
        return teacher.roi_head._bbox_forward(feats, rois)['cls_score'].float()

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Detection losses of the student plus the RoI distillation loss.

        Args:
            batch_inputs (Tensor): Inputs, shape (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Data samples with
                ``gt_instances``.

        Returns:
            dict[str, Tensor]: The student's losses, ``loss_kd``, and the
            statistics ``ea_weight``, ``entropy_t``, ``entropy_s`` (detached).
        """
        with self._capture_roi_head() as captured:
            losses = super().loss(batch_inputs, batch_data_samples)
        if captured.bbox_head_calls != 1 or captured.rois is None:
            raise RuntimeError(
                'RoI distillation expects the student\'s box head to run once '
                f'per step, it ran {captured.bbox_head_calls} times.')
        cls_score = captured.cls_score
        labels = captured.labels
        if labels is None:
            if cls_score.numel():
                raise RuntimeError(
                    'The student\'s box head loss did not call loss_cls with '
                    'the RoI labels; its RoI head is not supported.')
            labels = cls_score.new_zeros((0, ), dtype=torch.long)
        teacher_logits = self.teacher_logits(batch_inputs, batch_data_samples,
                                             captured.rois)
        losses['loss_kd'] = self.distill_loss(cls_score, teacher_logits,
                                              labels)
        losses.update(
            self.distill_loss.ea_stats(cls_score, teacher_logits).means())
        return losses


def student_model_config(model_cfg: dict) -> dict:
    """The plain student model config of a distillation model config.

    Testing, inference and checkpoints need the student only: this drops the
    teacher and the distillation loss, and makes the model a plain
    ``TwoStageDetector`` (which Faster R-CNN and Mask R-CNN are). Other configs
    are returned unchanged; a wrapper with a ``module`` (e.g. ``DetTTAModel``)
    is converted inside.

    Args:
        model_cfg (dict): ``cfg.model``.

    Returns:
        dict: A new model config.
    """
    model_cfg = copy.deepcopy(model_cfg)
    if model_cfg.get('type') in ('RoIDistillTwoStageDetector',
                                 RoIDistillTwoStageDetector):
        for key in DISTILL_ARGS:
            model_cfg.pop(key, None)
        model_cfg['type'] = 'TwoStageDetector'
    elif isinstance(model_cfg.get('module'), (dict, ConfigDict)):
        model_cfg['module'] = student_model_config(model_cfg['module'])
    return model_cfg
