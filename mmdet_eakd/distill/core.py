"""The family-agnostic distillation core, mixed into an mmdet detector.

:class:`DistillerMixin` holds everything that does not depend on the head
family: the frozen teacher (built and loaded strictly, hidden from
``state_dict``, the optimizer, DDP and checkpoints, moved and cast with the
student, shared by deep copies, always in eval mode), the teacher's inputs
(renormalization, channels-last, autocast), the public entry point
:meth:`DistillerMixin.distill_inputs`, and the KD loss with its statistics.
Where the distilled samples come from is the business of the head family's
adapter (:mod:`mmdet_eakd.distill.adapters`), chosen from the student.
"""
import contextlib
import copy
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmengine.config import ConfigDict
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from ..losses import LOSS_TYPES, EAStats
from .adapters import (DistillAdapter, LogitGroup, UnsupportedPairError,
                       adapter_for)
from .teacher import (build_teacher, input_format, load_teacher_config,
                      renormalize_for_teacher, same_input_format)

#: Model arguments that only the distiller core knows; dropped for the plain
#: student (a family's distiller may add its own: ``distill_args``).
DISTILL_ARGS = ('teacher', 'distill_loss', 'teacher_autocast',
                'teacher_channels_last')
#: Name of the KD loss in the loss dict (per group: ``f'{group}.loss_kd'``).
KD_LOSS = 'loss_kd'
#: Logged (not summed) count of the step's samples left out of the KD loss
#: because the teacher's logits there are no distribution (e.g. an fp16
#: overflow under ``teacher_autocast``).
TEACHER_UNUSABLE = 'teacher_unusable'

_AUTOCAST_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


class DistillInputs(NamedTuple):
    """What one student loss pass gives the distillation.

    Attributes:
        losses (dict[str, Tensor]): The student's detection losses.
        groups (list[LogitGroup]): Student/teacher logit pairs with labels,
            validity and weight, one entry per group of samples (one for a
            ``StandardRoIHead``, one per stage that ran for a cascade).
    """
    losses: Dict[str, Tensor]
    groups: List[LogitGroup]


def usable_teacher_rows(logits: Tensor, classifier: str) -> Tensor:
    """Which rows of teacher logits are a distribution to distill from.

    Computed on the device (no host read). Softmax: no NaN, no ``+inf`` and
    not every logit ``-inf``, i.e. a finite row maximum. Sigmoid: no NaN
    (``+-inf`` are the probabilities 1 and 0).

    Args:
        logits (Tensor): Teacher logits, shape (N, C).
        classifier (str): ``'softmax'`` or ``'sigmoid'``.

    Returns:
        Tensor: Shape (N,), bool.
    """
    if classifier == 'sigmoid':
        return ~torch.isnan(logits).any(dim=1)
    return torch.isfinite(logits.amax(dim=1))


def masked_rows(logits: Tensor, keep: Tensor) -> Tensor:
    """``logits`` with the rows not in ``keep`` (shape (N,), bool) set to
    zero: a finite input whose terms are masked out afterwards, so that
    neither their values nor their gradients (NaN times a zero gradient is
    NaN) reach the loss."""
    return torch.where(keep[:, None], logits, logits.new_zeros(()))


def check_loss_classifier(loss: torch.nn.Module,
                          adapter: DistillAdapter) -> None:
    """Refuse a distillation loss made for the other kind of classifier.

    A loss module declares ``classifier`` (``'softmax'`` or ``'sigmoid'``);
    a custom loss that declares nothing is trusted.

    Raises:
        UnsupportedPairError: E.g. the softmax ``EAKDLoss`` on a dense
            (sigmoid) head: a softmax over sigmoid logits gives every
            background location maximal entropy.
    """
    kind = getattr(loss, 'classifier', None)
    if kind is not None and kind != adapter.classifier:
        raise UnsupportedPairError(
            f'distill_loss {type(loss).__name__} is made for {kind} '
            f'classifiers, but the student\'s {adapter.family} classify with '
            f'{adapter.classifier}. Use '
            f"{' or '.join(LOSS_TYPES[adapter.classifier].values())}.")


class DistillerMixin:
    """Distillation core; mix in before an mmdet detector class.

    ``class D(DistillerMixin, TwoStageDetector)``: ``loss`` runs the
    detector's own ``loss`` once, with the head family's adapter recording
    what it used, then the teacher on the same samples, then the KD loss.

    Args:
        teacher (dict): ``config`` (config path, ``mmdet::`` name or config
            dict) and ``checkpoint`` (path or URL) of the trained teacher.
        distill_loss (dict): Config of the distillation loss module (e.g.
            ``EAKDLoss``), called per group as ``loss.loss_and_stats(
            student_logits, teacher_logits, labels,
            reduction_override='none')``: per-sample terms and the logged
            per-sample statistics from one pass (invalid samples masked).
        teacher_autocast (str, optional): ``'fp16'`` or ``'bf16'`` to run the
            teacher's backbone and neck under autocast (its head and the loss
            stay float32). Defaults to None (the student's precision).
        teacher_channels_last (bool): Run the teacher in channels-last memory
            format. Defaults to False.
        **kwargs: The student detector's arguments; its
            ``data_preprocessor`` config decides the input format.
    """

    #: The model arguments of the distiller (not the student's); a family's
    #: distiller extends them with its own.
    distill_args: Tuple[str, ...] = DISTILL_ARGS

    def __init__(self,
                 teacher: dict,
                 distill_loss: dict,
                 teacher_autocast: Optional[str] = None,
                 teacher_channels_last: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        adapter = adapter_for(self)
        adapter.check_student(self)
        # Before the teacher is built (and perhaps downloaded).
        self.distill_loss = MODELS.build(distill_loss)
        check_loss_classifier(self.distill_loss, adapter)
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
        student_format = input_format(
            kwargs.get('data_preprocessor'), 'student')
        teacher_cfg = load_teacher_config(teacher['config'])
        teacher_format = input_format(
            teacher_cfg.model.get('data_preprocessor'), 'teacher')
        teacher_model = build_teacher(
            teacher_cfg, teacher.get('checkpoint'),
            check=lambda built: adapter.check_pair(self, built))
        if teacher_channels_last:
            teacher_model.to(memory_format=torch.channels_last)
        # Plain attribute, not a submodule: no state_dict, optimizer, DDP sync.
        object.__setattr__(self, 'teacher', teacher_model)
        self.adapter = adapter
        self.teacher_autocast = teacher_autocast
        self.teacher_channels_last = teacher_channels_last
        self.student_format = student_format
        self.teacher_format = teacher_format
        self._teacher_takes_student_inputs = same_input_format(
            student_format, teacher_format)

    @classmethod
    def student_type(cls, model_cfg: dict) -> str:
        """The plain mmdet detector type of a distillation model config."""
        raise NotImplementedError

    def __deepcopy__(self, memo: dict) -> 'DistillerMixin':
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
        """Move/cast the teacher together with the student.

        ``nn.Module._apply`` is torch's private hook behind ``to``, ``cuda``,
        ``half`` ...; overriding it is the one private API of the core
        (``test_teacher_follows_student_device_and_mode`` fails if torch
        stops routing through it).
        """
        teacher = self.__dict__.get('teacher')
        if teacher is not None:
            teacher._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    @torch.no_grad()
    def teacher_features(self, batch_inputs: Tensor,
                         batch_data_samples: SampleList) -> Tuple[Tensor, ...]:
        """The teacher's ``extract_feat`` on the student's batch, float32.

        The batch is renormalized for the teacher if their input formats
        differ; backbone and neck run under ``teacher_autocast`` and in
        ``teacher_channels_last`` format if set. The maps are returned in
        float32 and NCHW-contiguous, whatever ran.

        Args:
            batch_inputs (Tensor): Student inputs, shape (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Their data samples.

        Returns:
            tuple[Tensor]: The teacher's feature maps.
        """
        teacher = self.teacher
        if teacher.training:
            teacher.eval()
        inputs = batch_inputs
        if not self._teacher_takes_student_inputs:
            inputs = renormalize_for_teacher(batch_inputs, batch_data_samples,
                                             self.student_format,
                                             self.teacher_format)
        if self.teacher_channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(inputs.device.type,
                           dtype=_AUTOCAST_DTYPES[self.teacher_autocast])
            if self.teacher_autocast else contextlib.nullcontext())
        with autocast:
            feats = teacher.extract_feat(inputs)
        # The head runs in float32 (a small share of the teacher's cost, and
        # mmcv's CPU RoIAlign has no bf16 kernel) and on NCHW-contiguous maps:
        # mmcv's RoIAlign reads raw NCHW memory and silently misreads
        # channels-last maps (test_teacher_channels_last).
        return tuple(feat.float().contiguous() for feat in feats)

    @torch.no_grad()
    def teacher_logits(self, batch_inputs: Tensor,
                       batch_data_samples: SampleList,
                       samples: Sequence[Any]) -> List[Tensor]:
        """The teacher's logits on given samples (no grad, eval mode).

        Args:
            batch_inputs (Tensor): Student inputs, shape (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Their data samples.
            samples (Sequence): Per group, where its samples are
                (``GroupCapture.samples`` of the adapter, e.g. ``RoISamples``).

        Returns:
            list[Tensor]: Per group, logits of shape (N_g, C), float32.
        """
        feats = self.teacher_features(batch_inputs, batch_data_samples)
        return [
            self.adapter.logits(self.teacher, feats, group).float()
            for group in samples
        ]

    def distill_inputs(self, batch_inputs: Tensor,
                       batch_data_samples: SampleList) -> DistillInputs:
        """Run the student's loss pass; pair its logits with the teacher's.

        The student's detection loss runs once, unchanged; the adapter
        records, per group, the logits, labels and validity it used; the
        teacher classifies the same samples.

        Args:
            batch_inputs (Tensor): Inputs, shape (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Data samples with
                ``gt_instances``.

        Returns:
            DistillInputs: The detection losses and the logit groups.
        """
        with self.adapter.capture(self) as captured:
            losses = super().loss(batch_inputs, batch_data_samples)
        if not captured:
            raise RuntimeError(
                f'The student\'s loss pass gave its {self.adapter.family} '
                'adapter no samples to distill.')
        teacher = self.teacher_logits(batch_inputs, batch_data_samples,
                                      [group.samples for group in captured])
        groups, unusable = [], []
        for group, logits in zip(captured, teacher):
            # A teacher row that is no distribution never reaches the
            # student: it leaves ``valid`` and is zeroed (no host read).
            usable = usable_teacher_rows(logits, self.adapter.classifier)
            unusable.append((~usable).sum())
            groups.append(
                LogitGroup(group.name, group.student,
                           masked_rows(logits, usable), group.labels,
                           group.valid & usable, group.weight, group.samples))
        losses[TEACHER_UNUSABLE] = torch.stack(unusable).sum().float()
        return DistillInputs(losses, groups)

    def _kd_loss(self, group: LogitGroup) -> Tuple[Tensor, EAStats]:
        """The distillation loss of one group's valid samples (their mean)
        and the per-sample statistics of every sample, from one computation
        of the entropies (the one place that calls the loss module). Invalid samples are masked, not indexed out:
        nothing is read on the host."""
        valid = group.valid
        student = masked_rows(group.student, valid)
        teacher = masked_rows(group.teacher, valid)
        per_sample, stats = self.distill_loss.loss_and_stats(
            student, teacher, group.labels, reduction_override='none')
        loss = (torch.where(valid, per_sample, per_sample.new_zeros(())).sum()
                / valid.sum().clamp(min=1))
        return loss, stats

    def distill_losses(self, groups: Sequence[LogitGroup]
                       ) -> Dict[str, Tensor]:
        """KD loss of the groups and the mean EA statistics.

        Returns:
            dict[str, Tensor]: ``loss_kd`` = sum over groups of the group's
            weight times its loss (the mean over its valid samples); for
            named groups also ``f'{name}.loss_kd'`` (that weighted term,
            logged only: see :meth:`parse_losses`); ``ea_weight``,
            ``entropy_t`` and ``entropy_s``: means over all valid samples
            (detached).
        """
        losses: Dict[str, Tensor] = {}
        total: Optional[Tensor] = None
        sums: Dict[str, Tensor] = {}
        for group in groups:
            loss, group_stats = self._kd_loss(group)
            weighted = group.weight * loss
            if group.name:
                losses[f'{group.name}.{KD_LOSS}'] = weighted
            total = weighted if total is None else total + weighted
            for name, value in group_stats._asdict().items():
                value = torch.where(group.valid, value,
                                    value.new_zeros(())).sum()
                sums[name] = value if name not in sums else sums[name] + value
        losses[KD_LOSS] = total
        count = sum(group.valid.sum() for group in groups).clamp(min=1)
        losses.update((name, value / count) for name, value in sums.items())
        return losses

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Detection losses of the student plus the distillation loss.

        Args:
            batch_inputs (Tensor): Inputs, shape (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Data samples with
                ``gt_instances``.

        Returns:
            dict[str, Tensor]: The student's losses and those of
            :meth:`distill_losses`.
        """
        inputs = self.distill_inputs(batch_inputs, batch_data_samples)
        losses = inputs.losses
        losses.update(self.distill_losses(inputs.groups))
        return losses

    def parse_losses(self, losses: Dict[str, Tensor]
                     ) -> Tuple[Tensor, Dict[str, Tensor]]:
        """mmengine's ``parse_losses``, with per-group KD terms logged only.

        ``f'{group}.loss_kd'`` are parts of ``loss_kd``; summing them into the
        total loss too would count them twice.
        """
        parts = {
            key: value
            for key, value in losses.items() if key.endswith(f'.{KD_LOSS}')
        }
        summed = {key: v for key, v in losses.items() if key not in parts}
        loss, log_vars = super().parse_losses(summed)
        log_vars.update(
            (key, value.detach().mean()) for key, value in parts.items())
        return loss, log_vars


def is_distill_config(model_cfg: dict) -> bool:
    """Whether a model config builds a distilling detector."""
    kind = model_cfg.get('type')
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    return isinstance(cls, type) and issubclass(cls, DistillerMixin)


def student_model_config(model_cfg: dict) -> dict:
    """The plain student model config of a distillation model config.

    Testing, inference and checkpoints need the student only: this drops the
    teacher and the distillation loss, and gives the plain mmdet detector
    type of the distilling detector (e.g. ``TwoStageDetector`` for Faster /
    Mask R-CNN, ``CascadeRCNN`` for a Cascade R-CNN). Other configs are
    returned unchanged; a wrapper with a ``module`` (e.g. ``DetTTAModel``) is
    converted inside.

    Args:
        model_cfg (dict): ``cfg.model``.

    Returns:
        dict: A new model config.
    """
    model_cfg = copy.deepcopy(model_cfg)
    if is_distill_config(model_cfg):
        kind = model_cfg['type']
        cls = MODELS.get(kind) if isinstance(kind, str) else kind
        for key in cls.distill_args:
            model_cfg.pop(key, None)
        model_cfg['type'] = cls.student_type(model_cfg)
    elif isinstance(model_cfg.get('module'), (dict, ConfigDict)):
        model_cfg['module'] = student_model_config(model_cfg['module'])
    return model_cfg
