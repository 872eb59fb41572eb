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
(:mod:`mmdet_eakd.distill.adapters`), chosen from the student's head, and
so is the family's policy: which samples each kind of term distils and how
it is normalised (:meth:`DistillerMixin.term_losses`).

Feature terms (:mod:`.features`) compare the two ``extract_feat`` outputs,
levels paired by stride; they need no teacher head, so a pair whose heads
differ (a heterogeneous pair) is served when every term is a plain feature
term, and then the teacher runs ``extract_feat`` only. Their EA weights come
from the classification entropies that a classification term of the same
step computed (:meth:`DistillerMixin.feature_term_losses`).
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
from ..losses import (CLASS_LOGITS, FEATURES, EAStats, entropy_weights,
                      image_weights)
from .adapters import (DistillAdapter, LogitGroup, UnsupportedPairError,
                       adapter_for)
from .adapters.base import KD_LOSS, LOGITS_ONLY, hooks, masked_rows
from .features import (FeaturePair, check_channels, feature_levels,
                       match_levels)
from .teacher import (build_teacher, input_format, load_teacher_config,
                      registered_class, renormalize_for_teacher,
                      same_input_format)
from .terms import LEGACY_TERM, DistillTerm, term_configs

#: Model arguments that only the distiller core knows; dropped for the plain
#: student (a family's distiller may add its own: ``distill_args``).
DISTILL_ARGS = ('teacher', 'distill_loss', 'distill_terms',
                'teacher_autocast', 'teacher_channels_last')
#: Logged (not summed) count of the step's samples left out of every term
#: because a teacher output there is no distribution (e.g. an fp16 overflow
#: under ``teacher_autocast``).
TEACHER_UNUSABLE = 'teacher_unusable'

_AUTOCAST_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}
#: The model's modules that belong to the distillation, not the student:
#: their parameters (e.g. a feature term's connector) are trained and kept
#: for resuming, but left out of the plain student checkpoint
#: (:class:`~mmdet_eakd.engine.hooks.DistillStateCheckpointHook`).
DISTILL_MODULES = ('distill_loss', 'distill_terms')


class RowWeights(NamedTuple):
    """A feature term's EA weights at one group's samples.

    Attributes:
        weights (Tensor): Per-sample weight, shape (N,), detached.
        mask (Tensor): Samples whose weight counts, shape (N,), bool.
    """
    weights: Tensor
    mask: Tensor


def needs_teacher_head(term: DistillTerm) -> bool:
    """Whether ``term`` needs the teacher's head on the student's samples:
    every term but a feature term with ``weight_mode='none'``."""
    return term.kind != FEATURES or term.loss.weight_mode != 'none'


class DistillInputs(NamedTuple):
    """What one student loss pass gives the distillation.

    Attributes:
        losses (dict[str, Tensor]): The student's detection losses.
        groups (list[LogitGroup]): Student/teacher pairs (logits, and the
            other kinds of tensor the terms compare) with labels, validity
            and weight, one entry per group of samples (one for a
            ``StandardRoIHead`` or a dense head, one per stage that ran for a
            cascade). Empty when no term needs the teacher's head.
        features (FeaturePair, optional): Both detectors' features, when a
            feature term compares them.
    """
    losses: Dict[str, Tensor]
    groups: List[LogitGroup]
    features: Optional[FeaturePair] = None


class DistillerMixin:
    """Distillation core; mix in before an mmdet detector class.

    ``class D(DistillerMixin, TwoStageDetector)``: ``loss`` runs the
    detector's own ``loss`` once, with the head family's adapter recording
    what it used, then the teacher once on the same samples (one head pass
    gives every kind of tensor the terms compare), then each term's loss.

    Give exactly one of ``distill_loss`` and ``distill_terms`` (see
    :func:`.terms.term_configs`); a term the pair cannot serve is refused by
    name before the teacher's checkpoint is read
    (``DistillAdapter.check_term``; feature terms: :mod:`.features`). A
    teacher of another family than the student's (e.g. a Faster R-CNN for a
    RetinaNet) serves plain feature terms only (``weight_mode='none'``):
    every other term needs the teacher's head on the student's samples.

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
        self._check_feature_entropy_source()
        self.uses_teacher_head = any(
            needs_teacher_head(term) for term in self.terms())
        #: (student level, teacher level) pairs of the feature terms.
        self.feature_level_pairs: List[Tuple[int, int]] = []
        self._weighs_features = any(
            term.loss.weight_mode != 'none' for term in self.feature_terms())
        self._step_entropies: Dict[str, list] = {}
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
        EA-KD on one model). Feature terms are not built here (their levels
        are paired when the model is built): pass the model's own
        (:meth:`terms`) to :meth:`loss` instead.

        Args:
            distill_loss (dict, optional): One classification term's loss
                config (its keys are ``loss_kd``, ``ea_weight``, ...).
            distill_terms (dict[str, dict], optional): Named terms.

        Returns:
            list[DistillTerm]: The terms, in their config's order.

        Raises:
            ValueError: For a feature term, or what the constructor refuses.
        """
        configs = term_configs(distill_loss, distill_terms)
        self.check_term_configs(configs)
        device = next(self.parameters()).device
        terms = [
            DistillTerm(name, MODELS.build(cfg).to(device))
            for name, cfg in configs.items()
        ]
        for term in terms:
            if term.kind == FEATURES:
                raise ValueError(
                    f'{term.describe()} compares features; build_terms '
                    'serves classification and box-distribution terms (a '
                    'feature term pairs the FPN levels when the model is '
                    'built). Build a model from a config with it and pass '
                    'its own feature term (model.terms()) to loss instead.')
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

    def feature_terms(self,
                      terms: Optional[Sequence[DistillTerm]] = None
                      ) -> List[DistillTerm]:
        """The terms that compare features (of the model's own, or of
        ``terms``)."""
        terms = self.terms() if terms is None else terms
        return [term for term in terms if term.kind == FEATURES]

    def check_given_terms(self, terms: Sequence[DistillTerm]) -> None:
        """Refuse a feature term that is not one of the model's own.

        A step may distil any subset of the model's own terms
        (:meth:`terms`) and terms of :meth:`build_terms`; a feature term
        needs the level pairs (and channel checks) made when the model
        was built, so it must be the model's own.

        Args:
            terms (Sequence[DistillTerm]): The terms of a step.

        Raises:
            ValueError: For a feature term that is not the model's own.
        """
        own = [term.loss for term in self.feature_terms()]
        for term in self.feature_terms(terms):
            if not any(term.loss is loss for loss in own):
                raise ValueError(
                    f'{term.describe()} compares features but is not one of '
                    'the model\'s own terms: its FPN levels were not paired '
                    'for this pair. Pass the model\'s own feature terms '
                    '(model.terms()), or build a model from a config with '
                    'it.')

    def _check_feature_entropy_source(self) -> None:
        """A feature term takes its entropies from the first classification
        term if there is one, so it cannot also set its own ``T'``."""
        logit_terms = [t for t in self.terms() if t.kind == CLASS_LOGITS]
        for term in self.feature_terms():
            if logit_terms and term.loss.entropy_temperature is not None:
                raise ValueError(
                    f'{term.label}.entropy_temperature is '
                    f'{term.loss.entropy_temperature!r}, but the term takes '
                    'its EA entropies from the classification term '
                    f'{logit_terms[0].describe()} (at its '
                    'entropy_temperature), which computes them anyway. '
                    'Remove it (or set it on the classification term).')

    def _check_teacher(self, adapter: DistillAdapter,
                       teacher: nn.Module) -> None:
        """The pair check and every term's check on the built teacher
        (before its checkpoint is read); the feature levels' pairing.

        A teacher that the student's family adapter refuses (another family,
        other classes or anchors) is accepted when every term is a plain
        feature term; otherwise the refusal names the terms that need the
        teacher's head and why.
        """
        try:
            adapter.check_pair(self, teacher)
        except UnsupportedPairError as error:
            needing = [t for t in self.terms() if needs_teacher_head(t)]
            if needing:
                names = ', '.join(t.describe() for t in needing)
                raise type(error)(
                    f'{error}\n{names}: these terms need the teacher\'s head '
                    'on the student\'s samples (logit and box terms compare '
                    'its outputs there, and an EA feature term takes its '
                    'weights from its classification entropies), which this '
                    'teacher cannot give. A heterogeneous pair is served by '
                    'feature terms only, with weight_mode=\'none\' (plain '
                    'PKD): remove the others.') from error
        else:
            for term in self.terms():
                adapter.check_term(term, self, teacher)
        if self.feature_terms():
            self.feature_level_pairs = self._pair_feature_levels(teacher)

    def _pair_feature_levels(self,
                             teacher: nn.Module) -> List[Tuple[int, int]]:
        """The student and teacher levels of equal stride, with the feature
        terms' channels checked (see :mod:`.features`)."""
        student_levels = feature_levels(self)
        teacher_levels = feature_levels(teacher)
        pairs = match_levels(student_levels, teacher_levels)
        for term in self.feature_terms():
            connector = None
            if term.loss.connector is not None:
                connector = (term.loss.student_channels,
                             term.loss.teacher_channels)
            for s, t in pairs:
                check_channels(term.describe(), student_levels[s].channels,
                               teacher_levels[t].channels, connector)
        return pairs

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
    def teacher_outputs(
            self,
            batch_inputs: Tensor,
            batch_data_samples: SampleList,
            samples: Sequence[Any],
            kinds: AbstractSet[str],
            feats: Optional[Tuple[Tensor, ...]] = None
    ) -> List[Dict[str, Tensor]]:
        """The teacher's tensors of ``kinds`` on given samples (no grad, eval
        mode): its ``extract_feat`` once, then its head once per group.

        Args:
            batch_inputs (Tensor): Student inputs, shape (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Their data samples.
            samples (Sequence): Per group, where its samples are
                (``GroupCapture.samples`` of the adapter, e.g. ``RoISamples``).
            kinds (AbstractSet[str]): The kinds of tensor to give (the class
                logits always come too).
            feats (tuple[Tensor], optional): The teacher's features of this
                batch (:meth:`teacher_features`) if already computed.

        Returns:
            list[dict[str, Tensor]]: Per group, kind -> tensor of shape
            (N_g, D), float32 (D = C for the class logits).
        """
        if feats is None:
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
        ``valid`` is what the adapter's policy selects from ``distillable``
        for the classification terms (``DistillAdapter.select_samples``).

        Args:
            batch_inputs (Tensor): Inputs, shape (B, 3, H, W).
            batch_data_samples (list[DetDataSample]): Data samples with
                ``gt_instances``.
            terms (Sequence[DistillTerm], optional): The terms whose kinds
                of tensor to pair: terms of :meth:`build_terms` and any of
                the model's own (:meth:`terms`, feature terms included; see
                :meth:`check_given_terms`). Defaults to the model's own.

        With feature terms, the student's features are recorded from the
        same pass (the output of its neck, or backbone without a neck), and
        the teacher's ``extract_feat`` runs once for every term. When no
        term needs the teacher's head (plain feature terms only) neither the
        capture nor the teacher's head runs and ``groups`` is empty.

        Returns:
            DistillInputs: The detection losses (and ``teacher_unusable``),
            the groups and the features.
        """
        if terms is None:
            uses_head = self.uses_teacher_head
        else:
            self.check_given_terms(terms)
            uses_head = any(needs_teacher_head(term) for term in terms)
        with_features = bool(self.feature_terms(terms))
        kinds = self.distilled_kinds(terms) - {FEATURES}
        student_feats: List[Tuple[Tensor, ...]] = []
        capture = (self.adapter.capture(self, kinds)
                   if uses_head else contextlib.nullcontext([]))
        with capture as captured, self._record_features(
                student_feats, with_features):
            losses = self.student_loss(batch_inputs, batch_data_samples)
        if uses_head and not captured:
            raise RuntimeError(
                f'The student\'s loss pass gave its {self.adapter.family} '
                'adapter no samples to distill.')
        feats = self.teacher_features(batch_inputs, batch_data_samples)
        features = None
        if with_features:
            if len(student_feats) != 1:
                raise RuntimeError(
                    'Feature distillation expects the student\'s '
                    'extract_feat to run once per step; its neck ran '
                    f'{len(student_feats)} times.')
            features = FeaturePair(student_feats[0], feats)
        if not uses_head:
            losses[TEACHER_UNUSABLE] = batch_inputs.new_zeros(())
            return DistillInputs(losses, [], features)
        teacher = self.teacher_outputs(batch_inputs, batch_data_samples,
                                       [group.samples for group in captured],
                                       kinds, feats)
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
            paired = LogitGroup(group.name, group.student, logits,
                                group.labels, distillable, group.weight,
                                group.samples, distillable,
                                group.student_tensors, masked)
            groups.append(paired._replace(
                valid=self.adapter.select_samples(self, paired)))
        losses[TEACHER_UNUSABLE] = torch.stack(unusable).sum().float()
        return DistillInputs(losses, groups, features)

    def _record_features(self, records: List[Tuple[Tensor, ...]],
                         with_features: bool):
        """A context that appends the student's ``extract_feat`` output
        (its neck's output, or its backbone's) to ``records`` each time it
        runs; records nothing when ``with_features`` is False (no feature
        term in the step)."""
        if not with_features:
            return contextlib.nullcontext()
        module = self.neck if self.with_neck else self.backbone
        return hooks([
            lambda: module.register_forward_hook(
                lambda mod, args, output: records.append(tuple(output)))
        ])

    def term_losses(self, term: DistillTerm,
                    groups: Sequence[LogitGroup]) -> Dict[str, Tensor]:
        """One term's loss and statistics, by the family's policy
        (``DistillAdapter.term_losses`` of the adapter).

        Args:
            term (DistillTerm): The term.
            groups (Sequence[LogitGroup]): The step's groups.

        Returns:
            dict[str, Tensor]: Under the term's keys (``term.key``).
        """
        return self.adapter.term_losses(self, term, groups)

    def remember_entropies(self, term: DistillTerm, stats: EAStats,
                           mask: Tensor) -> None:
        """Keep a classification term's per-sample statistics of one group
        (in the order of the groups) for the step's feature terms, which
        weigh by them instead of computing the entropies again.

        Args:
            term (DistillTerm): The classification term.
            stats (EAStats): Its per-sample statistics on the group.
            mask (Tensor): The samples it distilled, shape (N,), bool.
        """
        if not self._weighs_features:
            return
        self._step_entropies.setdefault(term.name, []).append(
            (term, stats, mask))

    def distill_losses(self,
                       groups: Sequence[LogitGroup],
                       features: Optional[FeaturePair] = None,
                       terms: Optional[Sequence[DistillTerm]] = None
                       ) -> Dict[str, Tensor]:
        """Every term's losses and statistics: the other terms
        (:meth:`term_losses`), then the feature terms
        (:meth:`feature_term_losses`), which reuse the classification
        terms' entropies.

        Args:
            groups (Sequence[LogitGroup]): The step's groups.
            features (FeaturePair, optional): The step's features (given
                when a feature term is distilled).
            terms (Sequence[DistillTerm], optional): Terms in place of the
                model's own (as :meth:`loss` takes them). A feature term
                given without a classification term computes its EA
                entropies itself (:meth:`feature_row_weights`). Defaults to
                None.

        Returns:
            dict[str, Tensor]: The union over the terms, each under its own
            keys (``loss_kd``, ``ea_weight``, ... for ``distill_loss``;
            ``loss_kd_<name>``, ``ea_weight_<name>``, ... for named terms).
        """
        losses: Dict[str, Tensor] = {}
        if terms is None:
            terms = self.terms()
        else:
            self.check_given_terms(terms)
        self._step_entropies: Dict[str, list] = {}
        try:
            for term in terms:
                if term.kind != FEATURES:
                    losses.update(self.term_losses(term, groups))
            for term in self.feature_terms(terms):
                losses.update(
                    self.feature_term_losses(term, groups, features))
        finally:
            self._step_entropies = {}
        return losses

    def feature_term_losses(self, term: DistillTerm,
                            groups: Sequence[LogitGroup],
                            features: FeaturePair) -> Dict[str, Tensor]:
        """A feature term on the paired levels (``feature_level_pairs``).

        With ``weight_mode`` other than ``'none'``, the weights come from
        :meth:`feature_row_weights` at the samples and are spread over the
        images or locations by :meth:`feature_weight_maps`.

        Args:
            term (DistillTerm): A feature term (``EAPKDLoss``).
            groups (Sequence[LogitGroup]): The step's groups.
            features (FeaturePair): The step's features.

        Returns:
            dict[str, Tensor]: Under the term's keys: ``loss_kd``; with EA,
            ``ea_weight`` (the mean weight over the distilled samples,
            detached, before any normalisation).
        """
        pairs = self.feature_level_pairs
        student = [features.student[s] for s, _ in pairs]
        teacher = [features.teacher[t] for _, t in pairs]
        if term.loss.weight_mode == 'none':
            return {term.key(KD_LOSS): term.loss(student, teacher)}
        rows = self.feature_row_weights(term, groups)
        maps = self.feature_weight_maps(term, groups, rows,
                                        [s for s, _ in pairs],
                                        student[0].size(0))
        total = sum((row.weights * row.mask).sum() for row in rows)
        count = sum(row.mask.sum() for row in rows).clamp(min=1)
        return {
            term.key(KD_LOSS): term.loss(student, teacher, weights=maps),
            term.key('ea_weight'): total / count
        }

    def feature_row_weights(self, term: DistillTerm,
                            groups: Sequence[LogitGroup]) -> List[RowWeights]:
        """A feature term's EA weights at each group's samples.

        From the entropies of the step's first classification term (its
        ``T'``; ``H_ub`` its upper bound) if there is one: nothing is
        computed twice. Otherwise (the model has no classification term, or
        a step of given terms leaves it out) the entropies are computed
        here, once, on the groups' ``valid`` samples, at the term's
        ``entropy_temperature`` (None: the default ``entropy_temperature``
        of the family's classifier, that of its classification losses).

        Returns:
            list[RowWeights]: Per group, in order.
        """
        mode = term.loss.weight_mode
        recorded = next(iter(self._step_entropies.values()), None)
        if recorded is not None:
            rows = []
            for (logit_term, stats, mask), group in zip(recorded, groups):
                bound = logit_term.loss.entropy_upper_bound
                if bound is None:
                    bound = logit_term.loss.classifier.entropy_upper_bound(
                        group.student.size(1))
                rows.append(
                    RowWeights(
                        entropy_weights(stats.entropy_t, stats.entropy_s,
                                        mode, entropy_upper_bound=bound),
                        mask))
            return rows
        classifier = self.adapter.classifier
        temperature = term.loss.entropy_temperature
        if temperature is None:
            temperature = classifier.entropy_temperature
        return [
            RowWeights(
                classifier.ea_statistics(
                    masked_rows(group.student, group.valid),
                    masked_rows(group.teacher, group.valid),
                    entropy_temperature=temperature,
                    weight_mode=mode).ea_weight, group.valid)
            for group in groups
        ]

    def feature_weight_maps(self, term: DistillTerm,
                            groups: Sequence[LogitGroup],
                            rows: Sequence[RowWeights],
                            levels: Sequence[int],
                            num_images: int) -> List[Tensor]:
        """The weights of each distilled student level, from the samples'
        weights: the RoI families' policy, one weight per image (the mean
        of its RoIs' weights over every group); a family's distiller
        overrides it to offer finer granularities (``check_term`` refused
        the others).

        Args:
            term (DistillTerm): The feature term.
            groups (Sequence[LogitGroup]): The step's groups (RoI groups:
                ``samples.rois[:, 0]`` is each RoI's image).
            rows (Sequence[RowWeights]): The samples' weights per group.
            levels (Sequence[int]): The distilled student levels.
            num_images (int): B.

        Returns:
            list[Tensor]: Per distilled level, shape (B,).
        """
        weights = torch.cat([row.weights for row in rows])
        mask = torch.cat([row.mask for row in rows])
        index = torch.cat(
            [group.samples.rois[:, 0].long() for group in groups])
        per_image = image_weights(weights, mask, index, num_images)
        return [per_image] * len(levels)

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
                of the model's own: terms of :meth:`build_terms` and any
                subset of the model's own (:meth:`terms`, feature terms
                included), e.g. to time one term alone. Defaults to None.

        Returns:
            dict[str, Tensor]: The student's losses and those of
            :meth:`distill_losses`.
        """
        inputs = self.distill_inputs(batch_inputs, batch_data_samples, terms)
        losses = inputs.losses
        losses.update(
            self.distill_losses(inputs.groups, inputs.features, terms))
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
    cls = registered_class(kind)
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
        cls = registered_class(kind)
        for key in cls.distill_args:
            model_cfg.pop(key, None)
        model_cfg['type'] = cls.student_type(model_cfg)
    elif isinstance(model_cfg.get('module'), (dict, ConfigDict)):
        model_cfg['module'] = student_model_config(model_cfg['module'])
    return model_cfg
