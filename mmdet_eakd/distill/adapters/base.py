"""The interface between the distillation core and one head family.

A head family (``StandardRoIHead``, ``CascadeRoIHead``, and later the dense
one-stage heads) differs from the others only in where the distilled samples
come from. Its adapter:

1. checks a student/teacher pair and raises :class:`UnsupportedPairError`
   naming the cause (:meth:`DistillAdapter.check_student`,
   :meth:`DistillAdapter.check_pair`);
2. records, during the student's own single loss pass, what the detection
   loss used (:meth:`DistillAdapter.capture`): per group of samples, the
   student's logits, the labels, the validity and where the samples are
   (:class:`GroupCapture`);
3. asks a detector of the family (the teacher) for its logits on the same
   samples, given that detector's features (:meth:`DistillAdapter.logits`);
4. leaves pairing, loss and logging to the core, which turns the captures and
   the teacher's logits into :class:`LogitGroup` s.

A new family is one file with a subclass decorated by
:func:`register_adapter`, plus a registered detector that mixes
:class:`~mmdet_eakd.distill.DistillerMixin` into the family's mmdet detector.
"""
import contextlib
import inspect
from typing import (Any, Callable, ContextManager, Dict, List, NamedTuple,
                    Sequence, Tuple, Type)

from torch import Tensor, nn


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
    """
    name: str
    student: Tensor
    labels: Tensor
    valid: Tensor
    weight: float
    samples: Any
    feats: Tuple[Tensor, ...]


class LogitGroup(NamedTuple):
    """One group of distilled samples: student/teacher logit pairs.

    Attributes:
        name (str): See :class:`GroupCapture`.
        student (Tensor): Student logits, shape (N, C), with gradient.
        teacher (Tensor): Teacher logits on the same samples, shape (N, C),
            float32, no gradient.
        labels (Tensor): Target class per sample, shape (N,), long.
        valid (Tensor): Samples to distill, shape (N,), bool.
        weight (float): The group's loss weight.
        samples (Any): Where the samples are (see :class:`GroupCapture`);
            e.g. to classify them with another detector of the family through
            :meth:`DistillAdapter.logits`.
    """
    name: str
    student: Tensor
    teacher: Tensor
    labels: Tensor
    valid: Tensor
    weight: float
    samples: Any


class DistillAdapter:
    """Base class of the head-family adapters (stateless)."""

    #: The family's name, for messages.
    family: str = ''
    #: How the family's heads classify: ``'softmax'`` (``num_classes + 1``
    #: logits, background last) or ``'sigmoid'`` (``num_classes`` independent
    #: logits); the distillation loss must declare the same ``classifier``.
    classifier: str = ''

    def matches(self, detector: nn.Module) -> bool:
        """Whether ``detector`` (a student) belongs to this family."""
        raise NotImplementedError

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

    def capture(self, student: nn.Module
                ) -> ContextManager[List[GroupCapture]]:
        """Record what the student's loss pass uses, as :class:`GroupCapture`.

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


_ADAPTERS: List[DistillAdapter] = []


def register_adapter(cls: Type[DistillAdapter]) -> Type[DistillAdapter]:
    """Class decorator: make a family's adapter known to :func:`adapter_for`."""
    _ADAPTERS.append(cls())
    return cls


def adapter_for(detector: nn.Module) -> DistillAdapter:
    """The adapter of ``detector``'s head family.

    Raises:
        UnsupportedPairError: No adapter serves the detector.
    """
    for adapter in _ADAPTERS:
        if adapter.matches(detector):
            return adapter
    families = ', '.join(a.family for a in _ADAPTERS)
    raise UnsupportedPairError(
        f'{type(detector).__name__} has no distillation adapter; supported '
        f'head families: {families}.')


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
