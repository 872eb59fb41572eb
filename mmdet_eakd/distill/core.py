"""The family-agnostic distillation core, mixed into an mmdet detector.

:class:`DistillerMixin` holds everything that does not depend on the head
family: the frozen teacher (built and loaded strictly, hidden from
``state_dict``, the optimizer, DDP and checkpoints, moved and cast with the
student, shared by deep copies, always in eval mode), the teacher's inputs
(renormalization, channels-last, autocast), the public entry point
:meth:`DistillerMixin.distill_inputs`, the distillation terms
(:mod:`.terms`: ``distill_loss`` or named ``distill_terms``; the teacher runs
once per step for all of them) and their losses with their statistics.
Where the distilled samples come from, and which tensors a head can give, is
the business of the head family's adapter
(:mod:`mmdet_eakd.distill.adapters`), chosen from the student; which
samples each kind of term distils and how it is normalised is the family
distiller's (:meth:`DistillerMixin.term_losses`).
"""
import contextlib
import copy
from typing import (AbstractSet, Any, Dict, List, NamedTuple, Optional,
                    Sequence, Tuple)

import torch
from mmengine.config import ConfigDict
from torch import Tensor, nn

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from ..losses import CLASS_LOGITS, EAStats
from .adapters import DistillAdapter, LogitGroup, adapter_for
from .adapters.base import LOGITS_ONLY
from .teacher import (build_teacher, input_format, load_teacher_config,
                      renormalize_for_teacher, same_input_format)
from .terms import LEGACY_TERM, DistillTerm, term_configs

#: Model arguments that only the distiller core knows; dropped for the plain
#: student (a family's distiller may add its own: ``distill_args``).
DISTILL_ARGS = ('teacher', 'distill_loss', 'distill_terms',
                'teacher_autocast', 'teacher_channels_last')
#: Name of the KD loss in the loss dict: per term ``DistillTerm.key`` of it
#: (``loss_kd`` for ``distill_loss``, ``loss_kd_<name>`` for a named term),
#: per group ``f'{group}.{key}'``.
KD_LOSS = 'loss_kd'
#: Logged (not summed) count of the step's samples left out of every term
#: because a teacher output there is no distribution (e.g. an fp16 overflow
#: under ``teacher_autocast``).
TEACHER_UNUSABLE = 'teacher_unusable'

_AUTOCAST_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


class DistillInputs(NamedTuple):
    """What one student loss pass gives the distillation.

    Attributes:
        losses (dict[str, Tensor]): The student's detection losses.
        groups (list[LogitGroup]): Student/teacher pairs (logits, and the
            other kinds of tensor the terms compare) with labels, validity
            and weight, one entry per group of samples (one for a
            ``StandardRoIHead`` or a dense head, one per stage that ran for a
            cascade).
    """
    losses: Dict[str, Tensor]
    groups: List[LogitGroup]


def masked_rows(logits: Tensor, keep: Tensor) -> Tensor:
    """``logits`` with the rows not in ``keep`` (shape (N,), bool) set to
    zero: a finite input whose terms are masked out afterwards, so that
    neither their values nor their gradients (NaN times a zero gradient is
    NaN) reach the loss."""
    return torch.where(keep[:, None], logits, logits.new_zeros(()))


class DistillerMixin:
    """Distillation core; mix in before an mmdet detector class.

    ``class D(DistillerMixin, TwoStageDetector)``: ``loss`` runs the
    detector's own ``loss`` once, with the head family's adapter recording
    what it used, then the teacher once on the same samples (one head pass
    gives every kind of tensor the terms compare), then each term's loss.

    Give exactly one of ``distill_loss`` and ``distill_terms`` (see
    :func:`.terms.term_configs`); a term the pair cannot serve is refused by
    name before the teacher's checkpoint is read
    (``DistillAdapter.check_term``).

    Args:
        teacher (dict): ``config`` (config path, ``mmdet::`` name or config
            dict) and ``checkpoint`` (path or URL) of the trained teacher.
        distill_loss (dict, optional): Config of one classification term's
            loss module (e.g. ``EAKDLoss``), the module ``distill_loss``;
            logged as ``loss_kd``, ``ea_weight``, ``entropy_t``,
            ``entropy_s``. In the RoI families it is called per group as
            ``loss.loss_and_stats(student_logits, teacher_logits, labels,
            reduction_override='none')``: per-sample terms and the logged
            per-sample statistics from one pass (invalid samples masked).
        distill_terms (dict, optional): Named terms, ``{name: loss
            config}``, the module dict ``distill_terms``; term ``name`` is
            logged as ``loss_kd_<name>`` and ``ea_weight_<name>``,
            ``entropy_t_<name>``, ``entropy_s_<name>``.
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
                 distill_loss: Optional[dict] = None,
                 distill_terms: Optional[Dict[str, dict]] = None,
                 teacher_autocast: Optional[str] = None,
                 teacher_channels_last: bool = False,
                 **kwargs) -> None:
        configs = term_configs(distill_loss, distill_terms)
        self.check_term_configs(configs)
        super().__init__(**kwargs)
        adapter = adapter_for(self)
        adapter.check_student(self)
        # Before the teacher is built (and perhaps downloaded).
        if distill_terms is None:
            self.distill_loss = MODELS.build(configs[LEGACY_TERM])
        else:
            self.distill_terms = nn.ModuleDict(
                {name: MODELS.build(cfg)
                 for name, cfg in configs.items()})
        for term in self.terms():
            adapter.check_term(term, self)
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
            check=lambda built: self._check_teacher(adapter, built))
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

    def terms(self) -> List[DistillTerm]:
        """The distillation terms, in their config's order.

        Read from the modules each time: ``distill_loss`` (one term named
        :data:`.terms.LEGACY_TERM`; assigning another loss module to
        ``model.distill_loss`` replaces it) or the ``distill_terms`` module
        dict.
        """
        named = getattr(self, 'distill_terms', None)
        if named is None:
            return [DistillTerm(LEGACY_TERM, self.distill_loss)]
        return [DistillTerm(name, loss) for name, loss in named.items()]

    @classmethod
    def check_term_configs(cls, configs: Dict[str, dict]) -> None:
        """Refuse term configs that the family's distiller cannot normalise.

        The core takes any; a family's distiller overrides it (e.g. the dense
        one needs ``reduction='mean'``). Called before anything is built.

        Args:
            configs (dict[str, dict]): From :func:`.terms.term_configs`.
        """

    def build_terms(self, distill_loss: Optional[dict] = None,
                    distill_terms: Optional[Dict[str, dict]] = None
                    ) -> List[DistillTerm]:
        """Terms other than the model's own, built and checked for this pair.

        Takes ``distill_loss`` or ``distill_terms`` as the model config does,
        refuses what the model's constructor refuses (now against the built
        teacher too), and leaves the model's own terms as they are. Pass the
        result to :meth:`loss` to train or time a step with them (e.g. KD and
        EA-KD on one model).

        Args:
            distill_loss (dict, optional): One classification term's loss
                config (its keys are ``loss_kd``, ``ea_weight``, ...).
            distill_terms (dict[str, dict], optional): Named terms.

        Returns:
            list[DistillTerm]: The terms, in their config's order.
        """
        configs = term_configs(distill_loss, distill_terms)
        self.check_term_configs(configs)
        device = next(self.parameters()).device
        terms = [
            DistillTerm(name, MODELS.build(cfg).to(device))
            for name, cfg in configs.items()
        ]
        for term in terms:
            self.adapter.check_term(term, self)
            self.adapter.check_term(term, self, self.teacher)
        return terms

    def distilled_kinds(self,
                        terms: Optional[Sequence[DistillTerm]] = None
                        ) -> AbstractSet[str]:
        """The kinds of tensor the terms compare (the model's own, or
        ``terms``), always with the class logits (the samples' labels and
        validity come with them)."""
        terms = self.terms() if terms is None else terms
        return frozenset({CLASS_LOGITS} | {term.kind for term in terms})

    def _check_teacher(self, adapter: DistillAdapter,
                       teacher: nn.Module) -> None:
        """The pair check and every term's check on the built teacher
        (before its checkpoint is read)."""
        adapter.check_pair(self, teacher)
        for term in self.terms():
            adapter.check_term(term, self, teacher)

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
    def teacher_outputs(self, batch_inputs: Tensor,
                        batch_data_samples: SampleList,
                        samples: Sequence[Any],
                        kinds: AbstractSet[str]) -> List[Dict[str, Tensor]]:
        """The teacher's tensors of ``kinds`` on given samples (no grad, eval
        mode): its ``extract_feat`` once, then its head once per group.

        Args:
            batch_inputs (Tensor): Student inputs, shape (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Their data samples.
            samples (Sequence): Per group, where its samples are
                (``GroupCapture.samples`` of the adapter, e.g. ``RoISamples``).
            kinds (AbstractSet[str]): The kinds of tensor to give (the class
                logits always come too).

        Returns:
            list[dict[str, Tensor]]: Per group, kind -> tensor of shape
            (N_g, D), float32 (D = C for the class logits).
        """
        feats = self.teacher_features(batch_inputs, batch_data_samples)
        return [{
            kind: tensor.float()
            for kind, tensor in self.adapter.outputs(self.teacher, feats,
                                                     group, kinds).items()
        } for group in samples]

    def teacher_logits(self, batch_inputs: Tensor,
                       batch_data_samples: SampleList,
                       samples: Sequence[Any]) -> List[Tensor]:
        """The teacher's logits on given samples (no grad, eval mode).

        Args: as :meth:`teacher_outputs`, without ``kinds``.

        Returns:
            list[Tensor]: Per group, logits of shape (N_g, C), float32.
        """
        outputs = self.teacher_outputs(batch_inputs, batch_data_samples,
                                       samples, LOGITS_ONLY)
        return [output[CLASS_LOGITS] for output in outputs]

    def student_loss(self, batch_inputs: Tensor,
                     batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """The student's own detection losses: the plain detector's ``loss``,
        with no teacher and no distillation term.

        Args:
            batch_inputs (Tensor): Inputs, shape (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Data samples with
                ``gt_instances``.

        Returns:
            dict[str, Tensor]: What the plain student config's model returns.
        """
        return super().loss(batch_inputs, batch_data_samples)

    def distill_inputs(self, batch_inputs: Tensor,
                       batch_data_samples: SampleList,
                       terms: Optional[Sequence[DistillTerm]] = None
                       ) -> DistillInputs:
        """Run the student's loss pass; pair its tensors with the teacher's.

        The student's detection loss runs once, unchanged; the adapter
        records, per group, the logits (and the other kinds of tensor the
        terms compare), labels and validity it used; the teacher's head runs
        once per group on the same samples for every kind. A sample where a
        teacher tensor is no distribution leaves every term: it leaves
        ``valid`` and ``distillable`` and its teacher rows are zeroed, on
        the device (no host read); ``teacher_unusable`` counts such samples.

        Args:
            batch_inputs (Tensor): Inputs, shape (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Data samples with
                ``gt_instances``.
            terms (Sequence[DistillTerm], optional): The terms whose kinds
                of tensor to pair (:meth:`build_terms`); the model's own by
                default.

        Returns:
            DistillInputs: The detection losses (and ``teacher_unusable``)
            and the groups.
        """
        kinds = self.distilled_kinds(terms)
        with self.adapter.capture(self, kinds) as captured:
            losses = self.student_loss(batch_inputs, batch_data_samples)
        if not captured:
            raise RuntimeError(
                f'The student\'s loss pass gave its {self.adapter.family} '
                'adapter no samples to distill.')
        teacher = self.teacher_outputs(batch_inputs, batch_data_samples,
                                       [group.samples for group in captured],
                                       kinds)
        groups, unusable = [], []
        for group, outputs in zip(captured, teacher):
            usable = torch.stack([
                self.adapter.usable_teacher_rows(kind, tensor)
                for kind, tensor in outputs.items()
            ]).all(dim=0)
            unusable.append((~usable).sum())
            masked = {
                kind: masked_rows(tensor, usable)
                for kind, tensor in outputs.items()
            }
            logits = masked.pop(CLASS_LOGITS)
            distillable = group.valid & usable
            groups.append(
                LogitGroup(group.name, group.student, logits, group.labels,
                           distillable, group.weight, group.samples,
                           distillable, group.student_tensors, masked))
        losses[TEACHER_UNUSABLE] = torch.stack(unusable).sum().float()
        return DistillInputs(losses, groups)

    def _group_loss(self, term: DistillTerm,
                    group: LogitGroup) -> Tuple[Tensor, EAStats]:
        """A classification term's loss on one group's valid samples (their
        mean) and the per-sample statistics of every sample, from one
        computation of the entropies. Invalid samples are masked, not
        indexed out: nothing is read on the host."""
        valid = group.valid
        student = masked_rows(group.student, valid)
        teacher = masked_rows(group.teacher, valid)
        per_sample, stats = term.loss.loss_and_stats(
            student, teacher, group.labels, reduction_override='none')
        loss = (torch.where(valid, per_sample, per_sample.new_zeros(())).sum()
                / valid.sum().clamp(min=1))
        return loss, stats

    def term_losses(self, term: DistillTerm,
                    groups: Sequence[LogitGroup]) -> Dict[str, Tensor]:
        """One term's loss and mean statistics over the groups: the RoI
        families' policy (classification terms only, see
        ``DistillAdapter.check_term``); a family's distiller overrides it.

        Args:
            term (DistillTerm): The term.
            groups (Sequence[LogitGroup]): The step's groups.

        Returns:
            dict[str, Tensor]: Under the term's keys (``term.key``):
            ``loss_kd`` = sum over groups of the group's weight times the
            term's loss on it (the mean over its valid samples); for named
            groups also ``f'{group}.{key}'`` (that weighted part, logged
            only: see :meth:`parse_losses`); ``ea_weight``, ``entropy_t``,
            ``entropy_s``: means over all valid samples (detached).
        """
        losses: Dict[str, Tensor] = {}
        total: Optional[Tensor] = None
        sums: Dict[str, Tensor] = {}
        for group in groups:
            loss, group_stats = self._group_loss(term, group)
            weighted = group.weight * loss
            if group.name:
                losses[f'{group.name}.{term.key(KD_LOSS)}'] = weighted
            total = weighted if total is None else total + weighted
            for name, value in group_stats._asdict().items():
                value = torch.where(group.valid, value,
                                    value.new_zeros(())).sum()
                sums[name] = value if name not in sums else sums[name] + value
        losses[term.key(KD_LOSS)] = total
        count = sum(group.valid.sum() for group in groups).clamp(min=1)
        losses.update(
            (term.key(name), value / count) for name, value in sums.items())
        return losses

    def distill_losses(self, groups: Sequence[LogitGroup],
                       terms: Optional[Sequence[DistillTerm]] = None
                       ) -> Dict[str, Tensor]:
        """Every term's losses and statistics (:meth:`term_losses`).

        Args:
            groups (Sequence[LogitGroup]): The step's groups.
            terms (Sequence[DistillTerm], optional): The terms
                (:meth:`build_terms`); the model's own by default.

        Returns:
            dict[str, Tensor]: The union over the terms, each under its own
            keys (``loss_kd``, ``ea_weight``, ... for ``distill_loss``;
            ``loss_kd_<name>``, ``ea_weight_<name>``, ... for named terms).
        """
        losses: Dict[str, Tensor] = {}
        for term in self.terms() if terms is None else terms:
            losses.update(self.term_losses(term, groups))
        return losses

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList,
             terms: Optional[Sequence[DistillTerm]] = None
             ) -> Dict[str, Tensor]:
        """Detection losses of the student plus the distillation terms.

        Args:
            batch_inputs (Tensor): Inputs, shape (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Data samples with
                ``gt_instances``.
            terms (Sequence[DistillTerm], optional): Terms to distil instead
                of the model's own (:meth:`build_terms`). Defaults to None.

        Returns:
            dict[str, Tensor]: The student's losses and those of
            :meth:`distill_losses`.
        """
        inputs = self.distill_inputs(batch_inputs, batch_data_samples, terms)
        losses = inputs.losses
        losses.update(self.distill_losses(inputs.groups, terms))
        return losses

    def parse_losses(self, losses: Dict[str, Tensor]
                     ) -> Tuple[Tensor, Dict[str, Tensor]]:
        """mmengine's ``parse_losses``, with per-group KD terms logged only.

        ``f'{group}.{key}'`` (``key`` a term's ``loss_kd`` key: ``loss_kd``
        or ``loss_kd_<name>``, whichever terms gave the losses) are parts of
        that term's loss; summing them into the total loss too would count
        them twice.
        """
        parts = {
            key: value
            for key, value in losses.items()
            if is_kd_loss_key(key.partition('.')[2])
        }
        summed = {key: v for key, v in losses.items() if key not in parts}
        loss, log_vars = super().parse_losses(summed)
        log_vars.update(
            (key, value.detach().mean()) for key, value in parts.items())
        return loss, log_vars


def is_kd_loss_key(key: str) -> bool:
    """Whether ``key`` is a term's ``loss_kd`` key (``DistillTerm.key``)."""
    return key == KD_LOSS or key.startswith(f'{KD_LOSS}_')


def is_distill_config(model_cfg: dict) -> bool:
    """Whether a model config builds a distilling detector."""
    kind = model_cfg.get('type')
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    return isinstance(cls, type) and issubclass(cls, DistillerMixin)


def student_model_config(model_cfg: dict) -> dict:
    """The plain student model config of a distillation model config.

    Testing, inference and checkpoints need the student only: this drops the
    teacher and the distillation terms, and gives the plain mmdet detector
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
