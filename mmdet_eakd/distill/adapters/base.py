"""The interface between the distillation core and one head family.

A head family (``StandardRoIHead``, ``CascadeRoIHead``, and later the dense
one-stage heads) differs from the others only in where the distilled samples
come from. Its adapter:

1. checks a student/teacher pair and raises :class:`UnsupportedPairError`
   naming the cause (:meth:`DistillAdapter.check_student`,
   :meth:`DistillAdapter.check_pair`);
2. refuses, by name, a distillation term the pair cannot serve: a tensor
   its heads do not give, or one they give in another layout
   (:meth:`DistillAdapter.check_term`);
3. records, during the student's own single loss pass, what the detection
   loss used (:meth:`DistillAdapter.capture`): per group of samples, the
   student's logits (and the other kinds of tensor the terms compare), the
   labels, the validity and where the samples are (:class:`GroupCapture`);
4. asks a detector of the family (the teacher) for every kind of tensor the
   terms compare on the same samples, from one pass of its head, given that
   detector's features (:meth:`DistillAdapter.outputs`), and says which of
   the teacher's rows are distributions to distil
   (:meth:`DistillAdapter.usable_teacher_rows`);
5. owns the family's policy: which samples the classification terms
   distil (:meth:`DistillAdapter.select_samples`) and how each term's loss
   is reduced, normalised and logged (:meth:`DistillAdapter.term_losses`);
   the core pairs the captures with the teacher's outputs into
   :class:`LogitGroup` s and sums the terms.

Adapters are found by the class of the detector's distilled head (its
``roi_head``, else its ``bbox_head``): :func:`register_adapter` keys an
adapter by head classes, and :func:`adapter_for` walks the head's MRO, most
specific class first, so a subclass's own adapter wins over its base's
whatever the import order. A new family is one file with a subclass
decorated by ``@register_adapter(head_types=(...))``, plus a registered
detector that mixes :class:`~mmdet_eakd.distill.DistillerMixin` into the
family's mmdet detector.
"""
import contextlib
import inspect
from types import MappingProxyType
from typing import (AbstractSet, Any, Callable, ContextManager, Dict, List,
                    Mapping, NamedTuple, Optional, Sequence, Tuple, Type)

import torch
from torch import Tensor, nn

from ...losses import (CLASS_LOGITS, FEATURES, LOSS_TYPES, ClassifierKind,
                       EAStats)
from ..terms import DistillTerm

#: Name of the KD loss in the loss dict: per term ``DistillTerm.key`` of it
#: (``loss_kd`` for ``distill_loss``, ``loss_kd_<name>`` for a named term),
#: per group ``f'{group}.{key}'``.
KD_LOSS = 'loss_kd'
#: The detector attributes that hold the head an adapter is keyed by, in
#: the order they are looked up: a two-stage detector's RoI head, else a
#: one-stage detector's dense head.
HEAD_ATTRIBUTES: Tuple[str, ...] = ('roi_head', 'bbox_head')

#: No tensors besides the class logits (an immutable empty mapping).
NO_TENSORS: Mapping[str, Tensor] = MappingProxyType({})
#: The kinds of tensor of the original single classification term.
LOGITS_ONLY: AbstractSet[str] = frozenset({CLASS_LOGITS})


class UnsupportedPairError(TypeError):
    """A student, teacher or pair of them that distillation cannot serve."""


class GroupCapture(NamedTuple):
    """What the student's detection loss used for one group of samples.

    Attributes:
        name (str): The group's name; it prefixes the group's logged KD loss
            (``f'{name}.loss_kd'``). Empty for a family with one group.
        student (Tensor): Student logits, shape (N, C) (C = num_classes + 1
            for softmax classifiers, background last), with gradient.
        labels (Tensor): Target class per sample, shape (N,), long
            (background = C - 1).
        valid (Tensor): Samples the detection loss counted (weight > 0),
            shape (N,), bool.
        weight (float): The group's loss weight (e.g. a cascade stage's
            ``stage_loss_weights[s]``); the group's KD loss is multiplied by
            it.
        samples (Any): Where the samples are, in the family's terms (for RoI
            heads a :class:`~.roi_common.RoISamples`); what
            :meth:`DistillAdapter.logits` takes.
        feats (tuple[Tensor]): The student features the head classified the
            samples from.
        student_tensors (Mapping[str, Tensor]): The student's tensors of
            the other kinds the terms compare, by kind, one row per sample
            in the order of ``student``, with gradient (e.g.
            ``BOX_DISTRIBUTION``: shape (N, 4 * (reg_max + 1))). Empty when
            the terms compare class logits only.
    """
    name: str
    student: Tensor
    labels: Tensor
    valid: Tensor
    weight: float
    samples: Any
    feats: Tuple[Tensor, ...]
    student_tensors: Mapping[str, Tensor] = NO_TENSORS


class LogitGroup(NamedTuple):
    """One group of distilled samples: student/teacher pairs per sample.

    The class logits are ``student`` / ``teacher``; the other kinds of
    tensor the terms compare (e.g. box-edge distributions) are in
    ``student_tensors`` / ``teacher_tensors``; :meth:`pair` gives either.

    Attributes:
        name (str): See :class:`GroupCapture`.
        student (Tensor): Student logits, shape (N, C), with gradient.
        teacher (Tensor): Teacher logits on the same samples, shape (N, C),
            float32, no gradient; rows not in ``distillable`` are zeros.
        labels (Tensor): Target class per sample, shape (N,), long.
        valid (Tensor): Samples the classification terms distil, shape
            (N,), bool: the ``distillable`` ones the family's policy selects
            for them (all of them, except for the dense family's
            ``distill_locations``).
        weight (float): The group's loss weight.
        samples (Any): Where the samples are (see :class:`GroupCapture`);
            e.g. to classify them with another detector of the family through
            :meth:`DistillAdapter.logits`.
        distillable (Tensor): Samples any term may distil, shape (N,), bool:
            those the detection loss counted (weight > 0) where every
            teacher output is a distribution. Each kind of term selects from
            them (the dense box-distribution terms: the positives).
        student_tensors (Mapping[str, Tensor]): See :class:`GroupCapture`.
        teacher_tensors (Mapping[str, Tensor]): The teacher's tensors of the
            same kinds, same shapes, float32, no gradient; rows not in
            ``distillable`` are zeros.
    """
    name: str
    student: Tensor
    teacher: Tensor
    labels: Tensor
    valid: Tensor
    weight: float
    samples: Any
    distillable: Tensor
    student_tensors: Mapping[str, Tensor] = NO_TENSORS
    teacher_tensors: Mapping[str, Tensor] = NO_TENSORS

    def pair(self, kind: str) -> Tuple[Tensor, Tensor]:
        """The student's and the teacher's tensors of ``kind``.

        Args:
            kind (str): ``CLASS_LOGITS`` or a key of ``student_tensors``.

        Returns:
            tuple[Tensor, Tensor]: Each of shape (N, D) (D = C for the class
            logits).
        """
        if kind == CLASS_LOGITS:
            return self.student, self.teacher
        return self.student_tensors[kind], self.teacher_tensors[kind]


def masked_rows(logits: Tensor, keep: Tensor) -> Tensor:
    """``logits`` with the rows not in ``keep`` (shape (N,), bool) set to
    zero: a finite input whose terms are masked out afterwards, so that
    neither their values nor their gradients (NaN times a zero gradient is
    NaN) reach the loss."""
    return torch.where(keep[:, None], logits, logits.new_zeros(()))


class DistillAdapter:
    """Base class of the head-family adapters (stateless; one instance per
    registered class). Its policy is that of the RoI families: every sample
    the loss counted, each group's term the mean over its samples."""

    #: The family's name, for messages.
    family: str = ''
    #: How the family's heads classify: :data:`~mmdet_eakd.losses.SOFTMAX`
    #: (``num_classes + 1`` logits, background last) or
    #: :data:`~mmdet_eakd.losses.SIGMOID` (``num_classes`` independent
    #: logits); the distillation loss must declare the same ``classifier``.
    classifier: ClassifierKind
    #: Where an EA feature term can take one weight (its loss's
    #: ``ea_granularity``): every family weighs whole images.
    ea_granularities: Tuple[str, ...] = ('image', )

    def check_student(self, student: nn.Module) -> None:
        """Raise :class:`UnsupportedPairError` for an unsupported student."""
        raise NotImplementedError

    def num_classes(self, detector: nn.Module) -> int:
        """The number of object classes ``detector`` classifies."""
        raise NotImplementedError

    def check_pair(self, student: nn.Module, teacher: nn.Module) -> None:
        """Raise :class:`UnsupportedPairError` unless ``teacher`` can classify
        the student's samples (head, classes, classifier type)."""
        raise NotImplementedError

    def check_term(self,
                   term: DistillTerm,
                   student: nn.Module,
                   teacher: Optional[nn.Module] = None) -> None:
        """Refuse a term the student (and the teacher, if given) cannot serve.

        Called for every term before the teacher is built (``teacher``
        None) and again with the built teacher, before its checkpoint is
        read. This base serves classification terms, whose ``classifier``,
        if they declare one, must be the family's, and feature terms (the
        core pairs their levels, see :mod:`..features`), whose EA
        granularity must be one of :attr:`ea_granularities`.

        Args:
            term (DistillTerm): The term.
            student (nn.Module): The student (checked by
                :meth:`check_student`).
            teacher (nn.Module, optional): The teacher (checked by
                :meth:`check_pair`).

        Raises:
            UnsupportedPairError: Naming the term, its loss type and what the
                heads lack.
        """
        if term.kind == FEATURES:
            granularity = term.loss.ea_granularity
            if (term.loss.weight_mode != 'none'
                    and granularity not in self.ea_granularities):
                raise UnsupportedPairError(
                    f'{term.describe()} has ea_granularity={granularity!r}, '
                    f'but the {self.family} give EA weights per '
                    f'{" or per ".join(self.ea_granularities)} only. Set '
                    f'{term.label}.ea_granularity to one of '
                    f'{self.ea_granularities}.')
            return
        if term.kind != CLASS_LOGITS:
            raise UnsupportedPairError(
                f'{term.describe()} distils {term.compares}, but the '
                f'{self.family} give classification logits only. Remove the '
                'term, or distil heads that predict them.')
        kind = getattr(term.loss, 'classifier', None)
        if kind is not None and kind != self.classifier:
            raise UnsupportedPairError(
                f'{term.label} {type(term.loss).__name__} is made for {kind} '
                f'classifiers, but the student\'s {self.family} classify '
                f'with {self.classifier}. Use '
                f"{' or '.join(LOSS_TYPES[self.classifier].values())}.")

    def capture(self, student: nn.Module,
                kinds: AbstractSet[str] = LOGITS_ONLY
                ) -> ContextManager[List[GroupCapture]]:
        """Record what the student's loss pass uses, as :class:`GroupCapture`.

        Args:
            student (nn.Module): The student.
            kinds (AbstractSet[str]): The kinds of tensor the terms compare
                (checked by :meth:`check_term`); those besides
                ``CLASS_LOGITS`` go to ``GroupCapture.student_tensors``.

        Returns:
            A context manager; the list it yields is filled when the context
            exits (one entry per group that ran, in order).
        """
        raise NotImplementedError

    def logits(self, detector: nn.Module, feats: Tuple[Tensor, ...],
               samples: Any) -> Tensor:
        """Classification logits of ``detector``'s head on ``samples``.

        Args:
            detector (nn.Module): A detector of the family (the teacher, or
                another student), checked by :meth:`check_pair`.
            feats (tuple[Tensor]): Its ``extract_feat`` output on the batch.
            samples (Any): ``GroupCapture.samples`` of one group.

        Returns:
            Tensor: Logits, shape (N, C).
        """
        raise NotImplementedError

    def outputs(self, detector: nn.Module, feats: Tuple[Tensor, ...],
                samples: Any, kinds: AbstractSet[str]) -> Dict[str, Tensor]:
        """Every kind of tensor ``kinds`` names, of ``detector``'s head on
        ``samples``, from one pass of its head; always the class logits.

        This base gives the class logits (:meth:`logits`), the only kind it
        serves (see :meth:`check_term`).

        Args:
            detector (nn.Module): A detector of the family (the teacher).
            feats (tuple[Tensor]): Its ``extract_feat`` output on the batch.
            samples (Any): ``GroupCapture.samples`` of one group.
            kinds (AbstractSet[str]): The kinds of tensor the terms compare.

        Returns:
            dict[str, Tensor]: Kind -> tensor of shape (N, D), rows in the
            order of the group's samples.
        """
        return {CLASS_LOGITS: self.logits(detector, feats, samples)}

    def usable_teacher_rows(self, kind: str, teacher: Tensor) -> Tensor:
        """Which rows of a teacher tensor of ``kind`` are distributions to
        distil (on the device, no host read).

        This base knows class logits (``usable_rows`` of the family's
        classifier).

        Args:
            kind (str): The tensor's kind.
            teacher (Tensor): The teacher's tensor, shape (N, D).

        Returns:
            Tensor: Shape (N,), bool.
        """
        if kind != CLASS_LOGITS:
            raise ValueError(f'The {self.family} adapter gives no {kind}.')
        return self.classifier.usable_rows(teacher)


    def select_samples(self, detector: nn.Module,
                       group: LogitGroup) -> Tensor:
        """The samples of ``group`` the classification terms distil.

        This base (the RoI families) distils every ``distillable`` sample.

        Args:
            detector (nn.Module): The distiller (its options, e.g. the dense
                family's ``distill_locations``, are read from it).
            group (LogitGroup): A group whose ``valid`` is ``distillable``.

        Returns:
            Tensor: Shape (N,), bool, within ``group.distillable``.
        """
        return group.distillable

    def group_loss(self, term: DistillTerm,
                   group: LogitGroup) -> Tuple[Tensor, EAStats]:
        """A classification term's loss on one group's valid samples (their
        mean) and the per-sample statistics of every sample, from one
        computation of the entropies. Invalid samples are masked, not
        indexed out: nothing is read on the host.

        Args:
            term (DistillTerm): A classification term.
            group (LogitGroup): The group.

        Returns:
            tuple[Tensor, EAStats]: The scalar loss and the statistics, each
            of shape (N,).
        """
        valid = group.valid
        student = masked_rows(group.student, valid)
        teacher = masked_rows(group.teacher, valid)
        per_sample, stats = term.loss.loss_and_stats(
            student, teacher, group.labels, reduction_override='none')
        loss = (torch.where(valid, per_sample, per_sample.new_zeros(())).sum()
                / valid.sum().clamp(min=1))
        return loss, stats

    def term_losses(self, detector: nn.Module, term: DistillTerm,
                    groups: Sequence[LogitGroup]) -> Dict[str, Tensor]:
        """One term's loss and mean statistics over the groups: the RoI
        families' policy (classification terms only, see
        :meth:`check_term`); a family with another policy overrides it.

        Args:
            detector (nn.Module): The distiller.
            term (DistillTerm): The term.
            groups (Sequence[LogitGroup]): The step's groups.

        Returns:
            dict[str, Tensor]: Under the term's keys (``term.key``):
            ``loss_kd`` = sum over groups of the group's weight times the
            term's loss on it (the mean over its valid samples); for named
            groups also ``f'{group}.{key}'`` (that weighted part, logged
            only: see ``DistillerMixin.parse_losses``); ``ea_weight``,
            ``entropy_t``, ``entropy_s``: means over all valid samples
            (detached); ``ea_weight_<part>`` for each part of
            :meth:`sample_parts`: the mean weight over that part's samples
            (0 for a step without any).
        """
        losses: Dict[str, Tensor] = {}
        total: Optional[Tensor] = None
        sums: Dict[str, Tensor] = {}
        counts: Dict[str, Tensor] = {}

        def add(name: str, mask: Tensor, value: Tensor) -> None:
            value = torch.where(mask, value, value.new_zeros(())).sum()
            sums[name] = value if name not in sums else sums[name] + value
            counts[name] = mask.sum() + counts.get(name, 0)

        for group in groups:
            loss, group_stats = self.group_loss(term, group)
            detector.remember_entropies(term, group_stats, group.valid)
            weighted = group.weight * loss
            if group.name:
                losses[f'{group.name}.{term.key(KD_LOSS)}'] = weighted
            total = weighted if total is None else total + weighted
            for name, value in group_stats._asdict().items():
                add(name, group.valid, value)
            for part, mask in self.sample_parts(group).items():
                add(f'ea_weight_{part}', mask, group_stats.ea_weight)
        losses[term.key(KD_LOSS)] = total
        losses.update((term.key(name), value / counts[name].clamp(min=1))
                      for name, value in sums.items())
        return losses

    def sample_parts(self, group: LogitGroup) -> Dict[str, Tensor]:
        """Parts of ``group``'s valid samples whose mean EA weight
        :meth:`term_losses` logs apart (e.g. foreground and background
        RoIs), by name: masks of shape (N,), bool. None by default.
        """
        return {}


#: Head class -> the adapter registered for it (and its subclasses).
_ADAPTERS: Dict[type, DistillAdapter] = {}


AdapterClass = Type[DistillAdapter]


def register_adapter(
        head_types: Sequence[type]) -> Callable[[AdapterClass], AdapterClass]:
    """Class decorator: the adapter of the heads of ``head_types`` and their
    subclasses (unless a subclass has an adapter of its own).

    Args:
        head_types (Sequence[type]): mmdet head classes (the detector's
            ``roi_head`` for two-stage detectors, ``bbox_head`` for
            one-stage ones).

    Returns:
        The decorator; it registers one instance of the class.

    Raises:
        ValueError: A head class that already has an adapter.
    """
    def register(cls: AdapterClass) -> AdapterClass:
        adapter = cls()
        for head_type in head_types:
            taken = _ADAPTERS.get(head_type)
            if taken is not None and type(taken) is not cls:
                raise ValueError(
                    f'{head_type.__name__} already has the adapter '
                    f'{type(taken).__name__}; {cls.__name__} cannot take it. '
                    'Register the new adapter for a subclass of the head.')
            _ADAPTERS[head_type] = adapter
        return cls

    return register


def registered_adapters() -> Dict[type, DistillAdapter]:
    """A copy of the registry: head class -> adapter."""
    return dict(_ADAPTERS)


def distilled_head(detector: nn.Module) -> Optional[nn.Module]:
    """The head adapters are keyed by: the first of :data:`HEAD_ATTRIBUTES`
    that ``detector`` has (not None), or None."""
    for name in HEAD_ATTRIBUTES:
        head = getattr(detector, name, None)
        if head is not None:
            return head
    return None


def adapter_for(detector: nn.Module) -> DistillAdapter:
    """The adapter of ``detector``'s head family.

    The adapter registered for the most specific class in the MRO of the
    detector's distilled head (:func:`distilled_head`).

    Raises:
        UnsupportedPairError: No adapter serves the head; the message lists
            the head classes that have one.
    """
    head = distilled_head(detector)
    for head_type in type(head).__mro__ if head is not None else ():
        adapter = _ADAPTERS.get(head_type)
        if adapter is not None:
            return adapter
    supported = ', '.join(sorted(t.__name__ for t in _ADAPTERS))
    found = ('It has no roi_head or bbox_head.' if head is None else
             f'Its head is a {type(head).__name__}.')
    raise UnsupportedPairError(
        f'{type(detector).__name__} has no distillation adapter; supported '
        f'head families: {supported} (and their subclasses), looked up by '
        f'the class of the roi_head, else the bbox_head. {found}')


def call_arguments(module: nn.Module, args: tuple,
                   kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The arguments of a ``module(*args, **kwargs)`` call, by name.

    Bound to the signature of ``module.forward`` (defaults applied), so a hook
    reads an argument the same way whether mmdet passes it by position or by
    keyword.

    Returns:
        dict[str, Any]: Parameter name -> value, in the signature's order.
    """
    bound = inspect.signature(module.forward).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


@contextlib.contextmanager
def hooks(registrations: Sequence[Callable[[], Any]]):
    """Register hooks for the duration of a ``with`` block.

    Args:
        registrations (Sequence[Callable]): Each returns a hook handle
            (e.g. ``lambda: module.register_forward_hook(fn)``).
    """
    handles = []
    try:
        for register in registrations:
            handles.append(register())
        yield
    finally:
        for handle in handles:
            handle.remove()
