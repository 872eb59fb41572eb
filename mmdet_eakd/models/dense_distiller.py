"""Location-level knowledge distillation for one-stage dense detectors."""
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmdet.models.detectors import SingleStageDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import reduce_mean
from ..distill import DISTILL_ARGS, KD_LOSS, DistillerMixin, LogitGroup
from ..distill.core import DistillInputs, masked_rows

#: Which locations are distilled (``distill_locations``).
LOCATIONS: Tuple[str, ...] = ('all', 'positives', 'teacher_gated')


def select_locations(group: LogitGroup, num_classes: int, locations: str,
                     teacher_score_thr: Optional[float]) -> Tensor:
    """The locations of ``group`` to distill under a ``locations`` option.

    Args:
        group (LogitGroup): The head's locations; ``valid`` marks those the
            detection loss counts.
        num_classes (int): C; label ``C`` is background.
        locations (str): ``'all'`` (every valid location), ``'positives'``
            (valid locations assigned to an object) or ``'teacher_gated'``
            (valid locations where the teacher's highest class score,
            ``sigmoid(max_c z_T,c)``, exceeds ``teacher_score_thr``).
        teacher_score_thr (float, optional): Threshold in (0, 1) of
            ``'teacher_gated'``.

    Returns:
        Tensor: Shape (N,), bool.
    """
    if locations == 'all':
        return group.valid
    if locations == 'positives':
        return group.valid & (group.labels >= 0) & (group.labels < num_classes)
    # sigmoid is monotonic: compare the max logit with logit(thr) instead of
    # taking the sigmoid of every score.
    threshold = math.log(teacher_score_thr / (1 - teacher_score_thr))
    return group.valid & (group.teacher.amax(dim=1) > threshold)


@MODELS.register_module()
class DenseDistillSingleStageDetector(DistillerMixin, SingleStageDetector):
    """A one-stage dense student distilled from a frozen teacher per location.

    In a training step the student runs its normal detection loss (its head
    runs once); the dense-head adapter (RetinaNet, ATSS, GFL, FCOS) records
    the per-location classification logits, labels and label weights that
    ``loss_cls`` used, over all FPN levels in the order (level, image,
    position, anchor). The teacher runs ``extract_feat`` and its head on the
    same batch (no grad, eval mode) and its logits are flattened in the same
    order; the pair was checked to align before training (classes, sigmoid
    classifiers, strides and levels, base anchors, feature-map sizes).

    ``distill_loss`` (``SigmoidEAKDLoss``: KL of the per-class Bernoulli
    distributions, weighted per location by the sigmoid EA weight) gives a
    per-location term; ``loss_kd`` is their sum over the selected locations
    divided by the number of positive locations averaged over the processes
    (clamped to >= 1), as mmdet's ATSS / GFL / FCOS heads normalise their
    classification loss (RetinaNet's own ``avg_factor`` is the per-process
    count; the KD term uses the averaged one for every head). The logs add
    ``ea_weight``, ``entropy_t`` and ``entropy_s`` (means over the selected
    locations) and ``kd_fg_share`` / ``kd_bg_share``: the shares of
    ``loss_kd`` on positive and background locations.

    Checkpoints are plain student checkpoints (see :meth:`student_type`).

    Args:
        teacher (dict): ``config`` and ``checkpoint`` of the trained teacher.
        distill_loss (dict): Config of the distillation loss module, a
            sigmoid loss (e.g. ``SigmoidEAKDLoss``) with ``reduction='mean'``
            (the default: the distiller sums its per-location terms and
            divides by the positives itself).
        distill_locations (str): ``'all'`` valid locations (default),
            ``'positives'`` only, or ``'teacher_gated'``: where the teacher's
            highest class score exceeds ``teacher_score_thr``.
        teacher_score_thr (float, optional): Required by (and only allowed
            with) ``'teacher_gated'``, in (0, 1).
        teacher_autocast (str, optional): ``'fp16'`` / ``'bf16'`` autocast of
            the teacher's backbone and neck. Defaults to None.
        teacher_channels_last (bool): Channels-last teacher. Defaults to
            False.
        **kwargs: The student's ``SingleStageDetector`` arguments (backbone,
            neck, bbox_head, train_cfg, test_cfg, data_preprocessor, ...).
    """

    distill_args = DISTILL_ARGS + ('distill_locations', 'teacher_score_thr')

    def __init__(self,
                 teacher: dict,
                 distill_loss: dict,
                 distill_locations: str = 'all',
                 teacher_score_thr: Optional[float] = None,
                 **kwargs) -> None:
        if distill_locations not in LOCATIONS:
            raise ValueError(f'distill_locations must be one of {LOCATIONS}, '
                             f'got {distill_locations!r}.')
        gated = distill_locations == 'teacher_gated'
        if gated and not (isinstance(teacher_score_thr, (int, float))
                          and 0 < teacher_score_thr < 1):
            raise ValueError(
                'distill_locations="teacher_gated" needs teacher_score_thr, '
                f'a score in (0, 1); got {teacher_score_thr!r}.')
        if not gated and teacher_score_thr is not None:
            raise ValueError(
                f'teacher_score_thr={teacher_score_thr!r} only applies to '
                'distill_locations="teacher_gated", but distill_locations is '
                f'{distill_locations!r}; remove it or gate by the teacher.')
        reduction = distill_loss.get('reduction', 'mean')
        if reduction != 'mean':
            raise ValueError(
                f'distill_loss.reduction is {reduction!r}; the dense '
                'distiller normalises the per-location KD terms by the number '
                'of positives itself and needs the default "mean" (use '
                'distill_loss.loss_weight to scale the loss).')
        super().__init__(teacher=teacher, distill_loss=distill_loss, **kwargs)
        self.distill_locations = distill_locations
        self.teacher_score_thr = teacher_score_thr

    @classmethod
    def student_type(cls, model_cfg: dict) -> str:
        """``'SingleStageDetector'``: what RetinaNet, ATSS, GFL and FCOS are
        (mmdet's subclasses add nothing to it)."""
        return 'SingleStageDetector'

    def distill_inputs(self, batch_inputs: Tensor,
                       batch_data_samples: SampleList) -> DistillInputs:
        """The core's inputs, with ``valid`` restricted to the locations
        ``distill_locations`` selects (see :func:`select_locations`)."""
        inputs = super().distill_inputs(batch_inputs, batch_data_samples)
        num_classes = self.bbox_head.num_classes
        groups = [
            group._replace(valid=select_locations(
                group, num_classes, self.distill_locations,
                self.teacher_score_thr)) for group in inputs.groups
        ]
        return DistillInputs(inputs.losses, groups)

    def distill_losses(self, groups: Sequence[LogitGroup]
                       ) -> Dict[str, Tensor]:
        """KD loss normalised by the positives, EA statistics, fg/bg shares.

        Every location is computed and the unselected ones are masked out
        (``torch.where``), so the step reads nothing on the host and a
        non-finite logit at an unselected location does not reach the loss.

        Returns:
            dict[str, Tensor]: ``loss_kd``; ``ea_weight``, ``entropy_t``,
            ``entropy_s``, ``kd_fg_share`` and ``kd_bg_share`` (detached).
        """
        (group, ) = groups
        num_classes = self.bbox_head.num_classes
        selected = group.valid
        positive = (group.labels >= 0) & (group.labels < num_classes)
        student = masked_rows(group.student, selected)
        teacher = masked_rows(group.teacher, selected)
        per_location, stats = self.distill_loss.loss_and_stats(
            student, teacher, group.labels, reduction_override='none')
        per_location = torch.where(selected, per_location,
                                   per_location.new_zeros(()))
        num_pos = reduce_mean(positive.sum().to(per_location.dtype))
        losses = {
            KD_LOSS: group.weight * per_location.sum() / num_pos.clamp(min=1)
        }
        count = selected.sum().clamp(min=1)
        for name, value in stats._asdict().items():
            losses[name] = torch.where(selected, value,
                                       value.new_zeros(())).sum() / count
        detached = per_location.detach()
        total = detached.sum()
        fg_share = torch.where(
            total > 0, (detached * positive).sum() / total.clamp(min=1e-12),
            total.new_zeros(()))
        losses['kd_fg_share'] = fg_share
        losses['kd_bg_share'] = torch.where(total > 0, 1 - fg_share,
                                            total.new_zeros(()))
        return losses
