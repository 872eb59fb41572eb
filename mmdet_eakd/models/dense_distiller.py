"""Location-level knowledge distillation for one-stage dense detectors."""
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from mmdet.models.detectors import RTMDet, SingleStageDetector
from mmdet.registry import MODELS
from ..distill import DISTILL_ARGS, DistillerMixin, LogitGroup
from ..distill.adapters.dense import check_locations
from ..distill.core import RowWeights
from ..distill.terms import DistillTerm, term_label
from ..losses import image_weights, location_weight_map


@MODELS.register_module()
class DenseDistillSingleStageDetector(DistillerMixin, SingleStageDetector):
    """A one-stage dense student distilled from a frozen teacher per location.

    In a training step the student runs its normal detection loss (its head
    runs once); the adapter of its head (``DenseHeadAdapter``: RetinaNet,
    ATSS, GFL, FCOS; ``RTMDetAdapter``: RTMDet) records
    the per-location classification logits, labels and label weights that
    ``loss_cls`` used, over all FPN levels in the order (level, image,
    position, anchor), and, for a box-distribution term, the box-edge
    distributions of the head's output (GFL). The teacher runs
    ``extract_feat`` and its head once on the same batch (no grad, eval mode)
    and its outputs are flattened in the same order; the pair was checked to
    align before training (classes, sigmoid classifiers, strides and levels,
    base anchors, feature-map sizes; ``reg_max`` for box terms).

    Which locations each kind of term distils and how its loss is
    normalised and logged is the adapter's policy (``DenseHeadAdapter``):
    classification terms at the locations ``distill_locations`` selects,
    normalised by the positives, with their foreground / background shares
    logged; box-distribution terms at the positives, as mmdet's LD.
    Feature terms (``EAPKDLoss``, see ``DistillerMixin.feature_term_losses``)
    compare the FPN levels paired by stride; their EA weights come from the
    classification term's entropies at the locations it distils, per image
    (the mean over the image's locations) or per location
    (``ea_granularity='location'``: the mean over a position's anchors; 0
    where no anchor is distilled), see :meth:`feature_weight_maps`. A plain
    feature term also serves a teacher of another family (e.g. Faster
    R-CNN), which then runs only its ``extract_feat``.

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
        check_locations(distill_locations, teacher_score_thr)
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


@MODELS.register_module()
class DenseDistillRTMDet(DenseDistillSingleStageDetector, RTMDet):
    """:class:`DenseDistillSingleStageDetector` for an RTMDet student (mmdet's
    ``RTMDet``: its ``use_syncbn`` converts the student's BN layers to
    ``SyncBatchNorm`` under distributed training; the teacher is no
    submodule, so it is not converted by it). The adapter is
    ``RTMDetAdapter``; the arguments are those of
    :class:`DenseDistillSingleStageDetector` plus ``RTMDet``'s
    ``use_syncbn``.

    EMA (mmdet's ``EMAHook`` with ``ExpMomentumEMA``, as RTMDet's configs
    use) deep-copies this model: the copy shares the frozen teacher
    (``DistillerMixin.__deepcopy__``) and averages, saves and loads the
    student's parameters and buffers only, since the teacher is no
    submodule.
    """

    @classmethod
    def student_type(cls, model_cfg: dict) -> str:
        """``'RTMDet'``."""
        return 'RTMDet'
