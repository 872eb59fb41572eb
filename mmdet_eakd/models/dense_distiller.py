"""Location-level knowledge distillation for one-stage dense detectors."""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmdet.models.detectors import SingleStageDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import reduce_mean
from ..distill import DISTILL_ARGS, KD_LOSS, DistillerMixin, LogitGroup
from ..distill.core import DistillInputs, RowWeights, masked_rows
from ..distill.terms import DistillTerm, term_label
from ..losses import BOX_DISTRIBUTION, image_weights, location_weight_map

#: Which locations are distilled (``distill_locations``).
LOCATIONS: Tuple[str, ...] = ('all', 'positives', 'teacher_gated')


def select_locations(group: LogitGroup, num_classes: int, locations: str,
                     teacher_score_thr: Optional[float]) -> Tensor:
    """The locations of ``group`` to distill under a ``locations`` option.

    Args:
        group (LogitGroup): The head's locations; ``distillable`` marks
            those the detection loss counts where the teacher's outputs are
            distributions.
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
        return group.distillable
    if locations == 'positives':
        return positive_locations(group, num_classes)
    # sigmoid is monotonic: compare the max logit with logit(thr) instead of
    # taking the sigmoid of every score.
    threshold = math.log(teacher_score_thr / (1 - teacher_score_thr))
    return group.distillable & (group.teacher.amax(dim=1) > threshold)


def positive_locations(group: LogitGroup, num_classes: int) -> Tensor:
    """The distillable locations assigned to an object (label in ``[0,
    num_classes)``), shape (N,), bool."""
    return group.distillable & (group.labels >= 0) & (group.labels
                                                      < num_classes)


@MODELS.register_module()
class DenseDistillSingleStageDetector(DistillerMixin, SingleStageDetector):
    """A one-stage dense student distilled from a frozen teacher per location.

    In a training step the student runs its normal detection loss (its head
    runs once); the dense-head adapter (RetinaNet, ATSS, GFL, FCOS) records
    the per-location classification logits, labels and label weights that
    ``loss_cls`` used, over all FPN levels in the order (level, image,
    position, anchor), and, for a box-distribution term, the box-edge
    distributions of the head's output (GFL). The teacher runs
    ``extract_feat`` and its head once on the same batch (no grad, eval mode)
    and its outputs are flattened in the same order; the pair was checked to
    align before training (classes, sigmoid classifiers, strides and levels,
    base anchors, feature-map sizes; ``reg_max`` for box terms).

    The policy of each kind of term (:meth:`term_losses`):

    - **Classification terms** (``SigmoidEAKDLoss``: KL of the per-class
      Bernoulli distributions, weighted per location by the sigmoid EA
      weight): at the locations ``distill_locations`` selects, the sum of
      the per-location terms divided by the number of positive locations
      averaged over the processes (clamped to >= 1), as mmdet's ATSS / GFL /
      FCOS heads normalise their classification loss (RetinaNet's own
      ``avg_factor`` is the per-process count; the KD term uses the averaged
      one for every head). Logged: ``loss_kd``; ``ea_weight``,
      ``entropy_t``, ``entropy_s`` (means over the selected locations) and
      ``kd_fg_share`` / ``kd_bg_share``, the shares of the term's loss on
      positive and background locations.
    - **Box-distribution terms** (``EALDLoss`` on GFL heads; see
      :meth:`box_term_losses`): at the positive locations, weighted by the
      student's top class score as mmdet's ``LDHead`` weights its LD, summed
      over the positives as ``LDHead``'s ``loss_ld`` is. Logged: ``loss_kd``;
      ``ea_weight``, ``entropy_t``, ``entropy_s`` (means over the positives).
    - **Feature terms** (``EAPKDLoss``, see
      ``DistillerMixin.feature_term_losses``): the FPN levels paired by
      stride; EA weights from the classification term's entropies at the
      locations it distils, per image (the mean over the image's locations)
      or per location (``ea_granularity='location'``: the mean over a
      position's anchors; 0 where no anchor is distilled), see
      :meth:`feature_weight_maps`. A plain feature term also serves a
      teacher of another family (e.g. Faster R-CNN), which then runs only
      its ``extract_feat``.

    With ``distill_terms`` every logged name gets the term's suffix
    (``loss_kd_<name>``, ``kd_fg_share_<name>``, ...).

    Checkpoints are plain student checkpoints (see :meth:`student_type`).

    Args:
        teacher (dict): ``config`` and ``checkpoint`` of the trained teacher.
        distill_loss (dict, optional): Config of one classification term's
            loss, a sigmoid loss (e.g. ``SigmoidEAKDLoss``) with
            ``reduction='mean'`` (the default: the distiller reduces the
            per-location terms itself).
        distill_terms (dict, optional): Named terms ``{name: loss config}``
            instead, e.g. ``dict(cls=dict(type='SigmoidEAKDLoss'),
            box=dict(type='EALDLoss'))``; each loss with
            ``reduction='mean'``.
        distill_locations (str): Where the classification terms distil:
            ``'all'`` valid locations (default), ``'positives'`` only, or
            ``'teacher_gated'``: where the teacher's highest class score
            exceeds ``teacher_score_thr``. Box-distribution terms always
            distil the positives.
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
                 distill_loss: Optional[dict] = None,
                 distill_terms: Optional[Dict[str, dict]] = None,
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
        super().__init__(teacher=teacher, distill_loss=distill_loss,
                         distill_terms=distill_terms, **kwargs)
        self.distill_locations = distill_locations
        self.teacher_score_thr = teacher_score_thr

    @classmethod
    def check_term_configs(cls, configs: Dict[str, dict]) -> None:
        """Refuse a term whose ``reduction`` is not the default ``'mean'``:
        the dense distiller normalises the per-location terms itself."""
        for name, cfg in configs.items():
            reduction = cfg.get('reduction', 'mean')
            if reduction != 'mean':
                label = term_label(name)
                raise ValueError(
                    f'{label}.reduction is {reduction!r}; the dense '
                    'distiller normalises the per-location KD terms itself '
                    'and needs the default "mean" (use '
                    f'{label}.loss_weight to scale the loss).')

    @classmethod
    def student_type(cls, model_cfg: dict) -> str:
        """``'SingleStageDetector'``: what RetinaNet, ATSS, GFL and FCOS are
        (mmdet's subclasses add nothing to it)."""
        return 'SingleStageDetector'

    def distill_inputs(self, batch_inputs: Tensor,
                       batch_data_samples: SampleList,
                       terms: Optional[Sequence[DistillTerm]] = None
                       ) -> DistillInputs:
        """The core's inputs, with ``valid`` restricted to the locations
        ``distill_locations`` selects for the classification terms (see
        :func:`select_locations`); ``distillable`` is left as it is."""
        inputs = super().distill_inputs(batch_inputs, batch_data_samples,
                                        terms)
        num_classes = self.bbox_head.num_classes
        groups = [
            group._replace(valid=select_locations(
                group, num_classes, self.distill_locations,
                self.teacher_score_thr)) for group in inputs.groups
        ]
        return inputs._replace(groups=groups)

    def term_losses(self, term: DistillTerm,
                    groups: Sequence[LogitGroup]) -> Dict[str, Tensor]:
        """One term's loss and statistics under its keys: a box-distribution
        term by :meth:`box_term_losses`, a classification term by
        :meth:`logit_term_losses`.

        Every location is computed and the unselected ones are masked out
        (``torch.where``), so the step reads nothing on the host and a
        non-finite value at an unselected location does not reach the loss.
        """
        (group, ) = groups
        if term.kind == BOX_DISTRIBUTION:
            return self.box_term_losses(term, group)
        return self.logit_term_losses(term, group)

    def logit_term_losses(self, term: DistillTerm,
                          group: LogitGroup) -> Dict[str, Tensor]:
        """A classification term, normalised by the positives.

        Args:
            term (DistillTerm): A classification term.
            group (LogitGroup): The locations; ``valid`` are the selected
                ones.

        Returns:
            dict[str, Tensor]: Under the term's keys: ``loss_kd`` (the sum
            over the selected locations of the per-location terms, divided
            by the positives averaged over the processes, clamped to >= 1);
            ``ea_weight``, ``entropy_t``, ``entropy_s`` (means over the
            selected locations), ``kd_fg_share`` and ``kd_bg_share``
            (detached).
        """
        num_classes = self.bbox_head.num_classes
        selected = group.valid
        positive = (group.labels >= 0) & (group.labels < num_classes)
        student = masked_rows(group.student, selected)
        teacher = masked_rows(group.teacher, selected)
        per_location, stats = term.loss.loss_and_stats(
            student, teacher, group.labels, reduction_override='none')
        self.remember_entropies(term, stats, selected)
        per_location = torch.where(selected, per_location,
                                   per_location.new_zeros(()))
        num_pos = reduce_mean(positive.sum().to(per_location.dtype))
        losses = {
            term.key(KD_LOSS):
            group.weight * per_location.sum() / num_pos.clamp(min=1)
        }
        losses.update(_means(term, stats._asdict(), selected))
        detached = per_location.detach()
        total = detached.sum()
        fg_share = torch.where(
            total > 0, (detached * positive).sum() / total.clamp(min=1e-12),
            total.new_zeros(()))
        losses[term.key('kd_fg_share')] = fg_share
        losses[term.key('kd_bg_share')] = torch.where(total > 0, 1 - fg_share,
                                                      total.new_zeros(()))
        return losses

    def box_term_losses(self, term: DistillTerm,
                        group: LogitGroup) -> Dict[str, Tensor]:
        """A box-distribution term (EA-LD) at the positives, as mmdet's LD.

        What mmdet 3.3's ``LDHead.loss_by_feat_single`` computes, per FPN
        level, is ``loss_ld(pred_corners, soft_corners, weight=w[:,
        None].expand(-1, 4).reshape(-1), avg_factor=4.0)`` on the positive
        locations (``0 <= label < num_classes``), with ``w`` the student's
        top class score ``cls_score.detach().sigmoid().max(dim=1)`` there
        and ``loss_ld = KnowledgeDistillationKLDivLoss(T=10,
        loss_weight=0.25)`` (per edge ``T^2`` times the KL averaged over the
        ``reg_max + 1`` bins); ``loss_by_feat`` leaves it unnormalised (its
        ``loss_ld`` list is summed over the levels). That is
        ``loss_weight * sum_n w_n * LD_n * 4 / (4 + eps)`` with ``LD_n`` the
        mean of the location's 4 edge terms and ``eps = finfo(float32).eps``
        (mmdet's guard when it divides by ``avg_factor``).

        This term reproduces it, without the ``4 / (4 + eps)`` (a relative
        difference of 3e-8) and with the EA weight: ``loss_kd = weight *
        sum_n [positive_n] * s_n * w_EA,n * loss_weight * LD_n``, ``s_n =
        sigmoid(max_c z_S,n,c)`` (detached; equal to the max of the
        sigmoids) from the student's logits that its ``loss_cls`` used,
        ``w_EA,n`` the loss's entropy weight (1 for ``weight_mode='none'``,
        then exactly mmdet's LD), summed over the positives of this process
        (not divided by their number: ``T = 10`` and ``loss_weight = 0.25``
        mean what they mean in mmdet's LD configs). Positives are the
        ``distillable`` locations with a label in ``[0, num_classes)``
        (mmdet's, less those where a teacher output is no distribution),
        whatever ``distill_locations`` is. mmdet 3.3's ``LDHead`` has no
        "valuable localization region" term; neither has this one.

        Args:
            term (DistillTerm): A box-distribution term (``EALDLoss``).
            group (LogitGroup): The locations, with the box distributions
                (shape (N, 4 * (reg_max + 1))) in ``student_tensors`` /
                ``teacher_tensors``.

        Returns:
            dict[str, Tensor]: Under the term's keys: ``loss_kd``;
            ``ea_weight``, ``entropy_t``, ``entropy_s`` (means over the
            positives, detached).
        """
        positive = positive_locations(group, self.bbox_head.num_classes)
        student, teacher = group.pair(BOX_DISTRIBUTION)
        top_score = group.student.detach().amax(dim=1).float().sigmoid()
        score = torch.where(positive, top_score, top_score.new_zeros(()))
        per_location, stats = term.loss.loss_and_stats(
            masked_rows(student, positive),
            masked_rows(teacher, positive),
            weight=score,
            reduction_override='none')
        per_location = torch.where(positive, per_location,
                                   per_location.new_zeros(()))
        losses = {term.key(KD_LOSS): group.weight * per_location.sum()}
        losses.update(_means(term, stats._asdict(), positive))
        return losses


    def feature_weight_maps(self, term: DistillTerm,
                            groups: Sequence[LogitGroup],
                            rows: Sequence[RowWeights],
                            levels: Sequence[int],
                            num_images: int) -> List[Tensor]:
        """The EA weights of the distilled student levels from the
        per-location weights of the head's rows (order: level, image,
        position, anchor; the head's levels are the student's features).

        Args:
            term (DistillTerm): The feature term; its ``ea_granularity``:
                ``'location'`` (the mean over a position's weighted anchors,
                shape (B, H, W) per level) or ``'image'`` (the mean over the
                image's weighted locations of every level, shape (B,)).
            groups (Sequence[LogitGroup]): The one group of locations.
            rows (Sequence[RowWeights]): Its weights.
            levels (Sequence[int]): The distilled student levels.
            num_images (int): B.

        Returns:
            list[Tensor]: Per distilled level, detached.
        """
        (group, ), (row, ) = groups, rows
        shapes = group.samples.shapes
        sizes = [s[0] * s[2] * s[3] * (s[1] // self.bbox_head.num_classes)
                 for s in shapes]
        if term.loss.ea_granularity == 'image':
            index = torch.cat([
                torch.arange(s[0], device=row.weights.device)
                .repeat_interleave(size // s[0])
                for s, size in zip(shapes, sizes)
            ])
            per_image = image_weights(row.weights, row.mask, index,
                                      num_images)
            return [per_image] * len(levels)
        weights = row.weights.split(sizes)
        masks = row.mask.split(sizes)
        return [
            location_weight_map(weights[level], masks[level],
                                shapes[level][0], shapes[level][2],
                                shapes[level][3]) for level in levels
        ]


def _means(term: DistillTerm, values: Dict[str, Tensor],
           selected: Tensor) -> Dict[str, Tensor]:
    """The means over the ``selected`` locations (shape (N,), bool) of
    per-location ``values``, under ``term``'s keys (masked: no host read)."""
    count = selected.sum().clamp(min=1)
    return {
        term.key(name): torch.where(selected, value,
                                    value.new_zeros(())).sum() / count
        for name, value in values.items()
    }
