"""Distillation terms: what a distiller distils, each under its own name.

A distilling detector takes either

- ``distill_loss=dict(...)``: one classification term, the original form,
  logged as ``loss_kd``, ``ea_weight``, ``entropy_t``, ``entropy_s``; or
- ``distill_terms=dict(<name>=dict(...), ...)``: several named terms, each
  with its own loss module (and its ``loss_weight``), logged as
  ``loss_kd_<name>`` and ``<statistic>_<name>`` (``ea_weight_<name>``,
  ``entropy_t_<name>``, ``entropy_s_<name>``).

What a term compares is declared by its loss module's ``distills``:
classification logits (:data:`~mmdet_eakd.losses.CLASS_LOGITS`, the EA-KD
losses, which also declare their ``classifier``; a loss that declares
nothing is taken to distil logits) or box-edge distributions
(:data:`~mmdet_eakd.losses.BOX_DISTRIBUTION`, ``EALDLoss``, which also
declares its ``reg_max``) or features (:data:`~mmdet_eakd.losses.FEATURES`,
``EAPKDLoss``: the ``extract_feat`` levels, paired by stride; see
:mod:`.features`). The head family's adapter refuses a term the pair
cannot serve (``DistillAdapter.check_term``) and gives every kind of tensor
the terms ask for from one teacher head pass; the family's distiller decides
which samples each kind of term distils and how it is normalised.
"""
from typing import Any, Dict, NamedTuple, Optional

from torch import nn

from ..losses import BOX_DISTRIBUTION, CLASS_LOGITS, FEATURES

#: Name of the term of ``distill_loss`` (its logged names have no suffix).
LEGACY_TERM = ''
#: What each kind of tensor is, for messages.
KIND_DESCRIPTIONS: Dict[str, str] = {
    CLASS_LOGITS: 'classification logits',
    BOX_DISTRIBUTION: 'box-edge distributions',
    FEATURES: 'features (FPN levels)',
}


def term_label(name: str) -> str:
    """A term's place in the model config, for messages: ``'distill_loss'``
    for :data:`LEGACY_TERM`, else ``'distill_terms.<name>'``."""
    if name == LEGACY_TERM:
        return 'distill_loss'
    return f'distill_terms.{name}'


class DistillTerm(NamedTuple):
    """One distillation term of a distiller.

    Attributes:
        name (str): The term's name in ``distill_terms``;
            :data:`LEGACY_TERM` for ``distill_loss``.
        loss (nn.Module): Its loss module.
    """
    name: str
    loss: nn.Module

    @property
    def kind(self) -> str:
        """What the term compares: its loss's ``distills``
        (:data:`~mmdet_eakd.losses.CLASS_LOGITS` if it declares nothing)."""
        return getattr(self.loss, 'distills', CLASS_LOGITS)

    @property
    def label(self) -> str:
        """The term's place in the model config (:func:`term_label`)."""
        return term_label(self.name)

    @property
    def compares(self) -> str:
        """What the term compares, in words (e.g. ``'box-edge
        distributions'``), for messages."""
        return KIND_DESCRIPTIONS.get(self.kind, self.kind)

    def key(self, base: str) -> str:
        """The logged name of ``base`` (e.g. ``'loss_kd'``, ``'ea_weight'``)
        for this term: ``base`` itself for ``distill_loss``, else
        ``f'{base}_{name}'``."""
        if self.name == LEGACY_TERM:
            return base
        return f'{base}_{self.name}'

    def describe(self) -> str:
        """``'<label> (<loss type>)'``, e.g. ``'distill_terms.box
        (EALDLoss)'``, for messages."""
        return f'{self.label} ({type(self.loss).__name__})'


def _is_loss_config(value: Any) -> bool:
    """Whether ``value`` is a loss config: a dict with a ``type``."""
    return isinstance(value, dict) and 'type' in value


def term_configs(distill_loss: Optional[dict],
                 distill_terms: Optional[dict]) -> Dict[str, dict]:
    """The loss config of each term of a distiller's arguments, by name.

    ``None`` means not given (a config whose ``_base_`` sets
    ``distill_loss`` replaces it by ``distill_terms`` with
    ``model = dict(distill_loss=None, distill_terms=dict(...))``).

    Args:
        distill_loss (dict, optional): One classification term's loss
            config (the original form).
        distill_terms (dict, optional): ``{name: loss config}``; names are
            Python identifiers (they become parts of logged names).

    Returns:
        dict[str, dict]: ``{LEGACY_TERM: distill_loss}`` or
        ``distill_terms``, in their order.

    Raises:
        ValueError: Both or neither given, an empty ``distill_terms``, a
            name that is no identifier or contains ``'loss'``, or a value
            that is no loss config.
    """
    if distill_loss is not None and distill_terms is not None:
        raise ValueError(
            'model.distill_loss and model.distill_terms are both given. '
            'distill_terms replaces distill_loss: move the loss into it, '
            'e.g. distill_terms=dict(cls=<your distill_loss dict>, ...) '
            '(then logged as loss_kd_cls, ea_weight_cls, entropy_t_cls, '
            'entropy_s_cls), and remove distill_loss, or set '
            'distill_loss=None if a _base_ config sets it.')
    if distill_terms is None:
        if not _is_loss_config(distill_loss):
            raise ValueError(
                'A distilling detector needs distill_loss=dict(type=..., ...) '
                '(one classification term, logged as loss_kd) or '
                'distill_terms=dict(<name>=dict(type=..., ...), ...) (named '
                f'terms, logged as loss_kd_<name>); got '
                f'distill_loss={distill_loss!r}.')
        return {LEGACY_TERM: distill_loss}
    if not isinstance(distill_terms, dict) or not distill_terms:
        raise ValueError(
            'model.distill_terms must be a non-empty dict of named loss '
            'configs, e.g. distill_terms=dict(cls=dict(type='
            f"'SigmoidEAKDLoss'), box=dict(type='EALDLoss')); got "
            f'{distill_terms!r}.')
    for name, cfg in distill_terms.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                f'distill_terms name {name!r} is not a Python identifier; a '
                'term\'s name becomes part of its logged names (loss_kd_'
                '<name>), so use letters, digits and underscores, e.g. cls, '
                'box.')
        if 'loss' in name:
            raise ValueError(
                f'distill_terms name {name!r} contains "loss": mmengine sums '
                'every logged value whose name contains "loss" into the total '
                f'loss, so the term\'s statistics (ea_weight_{name}, ...) '
                'would be trained on. Choose another name, e.g. cls, box.')
        if not _is_loss_config(cfg):
            raise ValueError(
                f'distill_terms.{name} must be a loss config, '
                f'dict(type=..., ...); got {cfg!r}.')
    return dict(distill_terms)
