"""Dense distillation never distils a location the detection loss ignores.

The dense adapter takes ``valid`` from the ``label_weights > 0`` that the
head's ``loss_cls`` received. Here the ignored locations are computed
independently of the head's target code (mmdet's anchor generator,
``bbox_overlaps`` and the assignment rules, or for ATSS / GFL the assigner
itself on the anchors inside the image), for ground truth placed so that
they exist, and three things are checked on the distiller:

(a) the ignored locations are not ``valid`` in what it captured (and every
    other location is);
(b) they carry no part of ``loss_kd``: overwriting the teacher's logits
    there (a forward hook on the teacher's head) leaves the loss and the EA
    statistics unchanged, while the same poison at one counted location
    changes the loss (positive control);
(c) the normaliser (number of positives) and the logged fg/bg shares are
    those of the counted locations.

Kinds of ignored locations:

- RetinaNet (``MaxIoUAssigner``): anchors whose best IoU lies in
  [neg_iou_thr, pos_iou_thr) = [0.4, 0.5) and that are no object's best
  anchor; with ``train_cfg.allowed_border=0`` also every anchor crossing the
  image border (mmdet's ``anchor_inside_flags``).
- ATSS and GFL (``ATSSAssigner``): every inside anchor is positive or
  negative, so only the border: ``allowed_border=0`` ignores the anchors
  crossing it. Both pass ``label_weights`` to ``loss_cls``.
- FCOS: nothing to test. Its ``loss_by_feat`` calls ``loss_cls`` without
  weights: every point (also those beyond the regress ranges or in the
  padding) is a positive or a background location the loss counts, so the
  adapter marks all of them valid.

Tiny models on two 96 x 128 images (a multiple of the largest stride: no
padding, every anchor has valid flags); teachers are random checkpoints
written here, as in ``test_dense_distill.py``.
"""
import contextlib
import copy
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest
import torch
from conftest import SYNTHETIC_CONFIGS
from mmengine.config import Config, ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor, nn

import mmdet_eakd  # noqa: F401
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_overlaps
from mmdet.utils import register_all_modules
from mmdet_eakd.distill import LogitGroup
from mmdet_eakd.distill.adapters import dense as dense_adapter

register_all_modules()
NUM_CLASSES = 8
RETINA = SYNTHETIC_CONFIGS / 'retinanet_tiny_synthetic.py'
GFL = SYNTHETIC_CONFIGS / 'gfl_tiny_synthetic.py'
#: (H, W) of both images: a multiple of 32, so the batch is not padded.
IMAGE = (96, 128)
#: Per image, ground truth (x1, y1, x2, y2) and labels. The first box is
#: 16 x 36 and centred on (48, 48), where a 16 x 16 anchor of stride 4 sits:
#: their IoU is 256 / 576 = 0.44, while a 23 x 45 anchor of stride 8 covers
#: it with IoU 0.56, so that 16 x 16 anchor is ignored by RetinaNet. The
#: others give more such anchors at other sizes; the second and the fourth
#: lie near the border (anchors that cross it cover them).
GT_BOXES = ([[40., 30., 56., 66.], [2., 4., 40., 34.]],
            [[70., 20., 118., 60.], [20., 50., 44., 94.]])
GT_LABELS = ([1, 5], [3, 0])
#: The poison: logit 0 (p = 0.5) for every class. It is far from the
#: student's prior (p = 0.01) and has the maximal entropy, hence the maximal
#: EA weight; a large logit would make the teacher confident, and the EA
#: weight of a confident teacher (its entropy) is near 0.
POISON = 0.0
FOCAL = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
             loss_weight=1.0)


class Expected(NamedTuple):
    """Targets of the batch computed without the head, in the loss's order
    (level, image, position, anchor).

    Attributes:
        labels (Tensor): Shape (N,), ``NUM_CLASSES`` for background.
        ignored (Tensor): Shape (N,), bool: what the detection loss ignores.
        outside (Tensor): Shape (N,), bool: anchors crossing the image
            border (ignored if ``allowed_border >= 0``).
    """
    labels: Tensor
    ignored: Tensor
    outside: Tensor


def model_config(kind: str, allowed_border: int) -> ConfigDict:
    """Tiny RetinaNet / ATSS / GFL model config with one stacked conv."""
    if kind in ('retina', 'gfl'):
        cfg = Config.fromfile(str(RETINA if kind == 'retina' else GFL)).model
        cfg.bbox_head.update(stacked_convs=1)
    elif kind == 'atss':
        cfg = Config.fromfile(str(RETINA)).model
        cfg.bbox_head = dict(
            type='ATSSHead', num_classes=NUM_CLASSES, in_channels=32,
            stacked_convs=1, feat_channels=32,
            anchor_generator=dict(type='AnchorGenerator', ratios=[1.0],
                                  octave_base_scale=4, scales_per_octave=1,
                                  strides=[4, 8, 16, 32]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            loss_cls=FOCAL, loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
            loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True))
        cfg.train_cfg = dict(assigner=dict(type='ATSSAssigner', topk=9),
                             allowed_border=-1, pos_weight=-1, debug=False)
    else:
        raise ValueError(kind)
    cfg.train_cfg.allowed_border = allowed_border
    return cfg


def build_distiller(cfg: ConfigDict, tmp_path: Path) -> nn.Module:
    """The EA-KD distiller of ``cfg`` with a random teacher of the same
    architecture (a checkpoint written here); both start from the
    classifier's prior, as in training."""
    torch.manual_seed(1)
    teacher = MODELS.build(copy.deepcopy(cfg))
    teacher.init_weights()
    ckpt = tmp_path / 'teacher.pth'
    torch.save({'state_dict': teacher.state_dict(), 'meta': {}}, ckpt)
    distill_cfg = copy.deepcopy(cfg)
    distill_cfg.update(
        type='DenseDistillSingleStageDetector',
        teacher=dict(config=dict(model=cfg), checkpoint=str(ckpt)),
        distill_loss=dict(type='SigmoidEAKDLoss', weight_mode='ea'))
    torch.manual_seed(0)
    model = MODELS.build(distill_cfg)
    model.init_weights()
    model.train()
    return model


def make_batch(model: nn.Module) -> Tuple[Tensor, List[DetDataSample]]:
    """Two random IMAGE-sized images with the ground truth above, through the
    model's data preprocessor."""
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for boxes, labels in zip(GT_BOXES, GT_LABELS):
        inputs.append(torch.randint(0, 256, (3, *IMAGE), dtype=torch.uint8,
                                    generator=generator))
        sample = DetDataSample(metainfo=dict(
            img_shape=IMAGE, ori_shape=IMAGE, scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes), labels=torch.tensor(labels))
        samples.append(sample)
    data = model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), True)
    assert tuple(data['inputs'].shape[-2:]) == IMAGE  # no padding
    return data['inputs'], data['data_samples']


def image_anchors(cfg: ConfigDict) -> Tuple[List[Tensor], Tensor]:
    """Per level, the anchors of one image (position, anchor order) from a
    fresh anchor generator; and whether each of the image's anchors (levels
    concatenated) crosses the border (``anchor_inside_flags`` with
    ``allowed_border=0``: inside iff x1, y1 >= 0 and x2 < W, y2 < H)."""
    generator = TASK_UTILS.build(cfg.bbox_head.anchor_generator)
    sizes = [(IMAGE[0] // s[1], IMAGE[1] // s[0]) for s in generator.strides]
    levels = generator.grid_priors(sizes, device='cpu')
    flat = torch.cat(levels)
    height, width = IMAGE
    inside = ((flat[:, 0] >= 0) & (flat[:, 1] >= 0) & (flat[:, 2] < width) &
              (flat[:, 3] < height))
    return levels, ~inside


def max_iou_targets(anchors: Tensor, boxes: Tensor, labels: Tensor,
                    pos_thr: float, neg_thr: float) -> Tuple[Tensor, Tensor]:
    """Labels and ignored flags of RetinaNet's ``MaxIoUAssigner`` (with
    ``min_pos_iou=0`` and ``gt_max_assign_all``), written out: negative below
    ``neg_thr``, positive from ``pos_thr``, each object's best anchors
    positive (the later object wins a tie), the rest ignored."""
    ious = bbox_overlaps(boxes, anchors)  # (objects, anchors)
    best, best_object = ious.max(dim=0)
    assigned = torch.full_like(best_object, -2)  # -2: ignored
    assigned[best < neg_thr] = -1  # background
    assigned[best >= pos_thr] = best_object[best >= pos_thr]
    for index, row in enumerate(ious):
        assigned[row == row.max()] = index
    out = torch.full_like(assigned, NUM_CLASSES)
    out[assigned >= 0] = labels[assigned[assigned >= 0]]
    return out, assigned == -2


def atss_targets(cfg: ConfigDict, levels: List[Tensor], inside: Tensor,
                 boxes: Tensor, labels: Tensor) -> Tensor:
    """Labels of the anchors inside the image from the head's assigner
    (``ATSSAssigner``) run on them directly."""
    counts = [int(part.sum()) for part in inside.split(
        [len(level) for level in levels])]
    assigner = TASK_UTILS.build(cfg.train_cfg.assigner)
    result = assigner.assign(
        InstanceData(priors=torch.cat(levels)[inside]), counts,
        InstanceData(bboxes=boxes, labels=labels))
    out = torch.full((len(result.gt_inds), ), NUM_CLASSES, dtype=torch.long)
    positive = result.gt_inds > 0
    out[positive] = labels[result.gt_inds[positive] - 1]
    return out


def expected_targets(cfg: ConfigDict, kind: str) -> Expected:
    """Labels and ignored locations of the batch, in the loss's order."""
    levels, outside = image_anchors(cfg)
    anchors = torch.cat(levels)
    border = cfg.train_cfg.allowed_border
    assert border in (-1, 0)
    inside = ~outside if border == 0 else torch.ones_like(outside)
    per_image = []
    for boxes, labels in zip(GT_BOXES, GT_LABELS):
        boxes, labels = torch.tensor(boxes), torch.tensor(labels)
        image_labels = torch.full((len(anchors), ), NUM_CLASSES)
        ignored = ~inside.clone()
        if kind == 'retina':
            assigner = cfg.train_cfg.assigner
            image_labels[inside], ignored[inside] = max_iou_targets(
                anchors[inside], boxes, labels, assigner.pos_iou_thr,
                assigner.neg_iou_thr)
        else:
            image_labels[inside] = atss_targets(cfg, levels, inside, boxes,
                                                labels)
        per_image.append((image_labels, ignored, outside))
    sizes = [len(level) for level in levels]

    def loss_order(index: int) -> Tensor:
        # image-major (levels concatenated) -> level, image, ...
        split = [image[index].split(sizes) for image in per_image]
        return torch.cat([split[i][level] for level in range(len(sizes))
                          for i in range(len(split))])

    return Expected(loss_order(0), loss_order(1), loss_order(2))


@contextlib.contextmanager
def poisoned_teacher(model: nn.Module, where: Tensor) -> Iterator[None]:
    """Overwrite the teacher head's class logits with POISON at the
    locations ``where`` (loss order), through a forward hook on the head.

    A level's output (B, A * C, H, W) holds location (image, position,
    anchor) in channels ``anchor * C .. anchor * C + C - 1``.
    """

    def hook(module: nn.Module, args: tuple, output: tuple) -> tuple:
        scores, start = [], 0
        for score in output[0]:
            b, channels, h, w = score.shape
            num = b * h * w * (channels // NUM_CLASSES)
            mask = where[start:start + num].reshape(b, h, w, -1, 1).expand(
                -1, -1, -1, -1, NUM_CLASSES).reshape(b, h, w, channels)
            scores.append(torch.where(mask.permute(0, 3, 1, 2),
                                      score.new_tensor(POISON), score))
            start += num
        assert start == len(where)
        return (scores, *output[1:])

    handle = model.teacher.bbox_head.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def distill(model: nn.Module, batch: Tuple[Tensor, List[DetDataSample]],
            poison: Optional[Tensor] = None
            ) -> Tuple[LogitGroup, Dict[str, Tensor]]:
    """One step's captured group and distillation losses (the two halves of
    ``model.loss``), with the teacher poisoned at ``poison`` if given."""
    context = (poisoned_teacher(model, poison) if poison is not None else
               contextlib.nullcontext())
    with context:
        out = model.distill_inputs(*batch)
    (group, ) = out.groups
    if poison is not None:  # the poison is where it was meant to be
        assert (group.teacher[poison] == POISON).all()
        assert (group.teacher[~poison] != POISON).all()
    with torch.no_grad():
        losses = model.distill_losses(out.groups)
    return group, losses


def check_ignored_never_distilled(
        model: nn.Module, expected: Expected, poison: Tensor,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks (a), (b) and (c) of the module docstring; ``poison`` is the
    ignored locations whose teacher logits are overwritten."""
    counted = ~expected.ignored
    positive = expected.labels < NUM_CLASSES
    assert poison.any() and not (poison & counted).any()
    assert positive.any() and not (positive & expected.ignored).any()
    batch = make_batch(model)
    normalisers: List[float] = []

    def recording_reduce_mean(tensor: Tensor) -> Tensor:
        normalisers.append(tensor.item())
        return tensor  # one process

    monkeypatch.setattr(dense_adapter, 'reduce_mean', recording_reduce_mean)
    group, clean = distill(model, batch)
    # (a) what the student's loss used: these labels, the ignored not valid
    assert torch.equal(group.labels, expected.labels)
    assert torch.equal(group.valid, counted)
    # (c) normalised by the positives; fg/bg shares of the counted locations
    assert normalisers == [positive.sum().item()]
    with torch.no_grad():
        per = model.distill_loss(group.student, group.teacher, group.labels,
                                 reduction_override='none')
        total = per[counted].sum()
        stats = model.distill_loss.ea_stats(group.student, group.teacher)
    assert clean['loss_kd'].item() == pytest.approx(
        total.item() / positive.sum().item(), rel=1e-5)
    fg_share = (per[counted & positive].sum() / total).item()
    assert 0 < fg_share < 1
    assert clean['kd_fg_share'].item() == pytest.approx(fg_share, rel=1e-5)
    assert clean['kd_bg_share'].item() == pytest.approx(1 - fg_share,
                                                        rel=1e-5)
    assert clean['ea_weight'].item() == pytest.approx(
        stats.ea_weight[counted].mean().item(), rel=1e-5)
    # (b) the poisoned teacher at the ignored locations changes nothing ...
    _, poisoned = distill(model, batch, poison)
    for name in ('loss_kd', 'kd_fg_share', 'kd_bg_share', 'ea_weight',
                 'entropy_t', 'entropy_s'):
        torch.testing.assert_close(poisoned[name], clean[name])
    # ... while the same poison at one counted location does
    control = torch.zeros_like(poison)
    control[counted.nonzero()[0]] = True
    _, changed = distill(model, batch, control)
    assert changed['loss_kd'] > 10 * clean['loss_kd']


def test_retinanet_iou_ignored_anchors_are_never_distilled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RetinaNet as shipped (allowed_border=-1): the anchors whose best IoU
    is in [0.4, 0.5) are ignored by its loss and by the distillation."""
    cfg = model_config('retina', allowed_border=-1)
    expected = expected_targets(cfg, 'retina')
    assert expected.ignored.any()
    # the anchor the first box was placed for: level 0 (stride 4, 32 x 24
    # positions, 3 anchors: ratios 0.5, 1, 2), image 0, position (12, 12),
    # ratio 1
    assert expected.ignored[(12 * 32 + 12) * 3 + 1]
    assert expected.outside.any()  # there, but counted: allowed_border=-1
    check_ignored_never_distilled(
        build_distiller(cfg, tmp_path), expected, expected.ignored,
        monkeypatch)


def test_retinanet_allowed_border_ignores_anchors_outside_the_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RetinaNet with allowed_border=0: the anchors crossing the image
    border are ignored too (and the IoU rule runs on the inside ones)."""
    cfg = model_config('retina', allowed_border=0)
    expected = expected_targets(cfg, 'retina')
    assert expected.outside.any() and (~expected.outside).any()
    assert (expected.ignored & ~expected.outside).any()
    assert not (expected.outside & ~expected.ignored).any()
    check_ignored_never_distilled(
        build_distiller(cfg, tmp_path), expected, expected.outside,
        monkeypatch)


@pytest.mark.parametrize('kind', ['atss', 'gfl'])
def test_atss_assigned_heads_ignore_anchors_outside_the_image(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ATSS and GFL with allowed_border=0: exactly the anchors crossing the
    border are ignored (the ATSS assigner makes every inside anchor positive
    or negative) and never distilled."""
    cfg = model_config(kind, allowed_border=0)
    expected = expected_targets(cfg, kind)
    assert expected.outside.any()
    assert torch.equal(expected.ignored, expected.outside)
    check_ignored_never_distilled(
        build_distiller(cfg, tmp_path), expected, expected.ignored,
        monkeypatch)
