"""Several distillation terms in one model; EA-LD on GFL box distributions.

Tiny GFL students (the synthetic configs' backbone, one head conv) and random
teacher checkpoints written here. What is checked:

- the contract: with the teacher's weights equal to the student's, every
  term's teacher tensors (class logits, box-edge distributions) equal what
  the student's loss pass produced and its losses read;
- the box term equals ``EALDLoss`` on the positives, weighted by the
  student's top class score, summed; with ``weight_mode='none'`` it is
  mmdet's ``LDHead.loss_ld`` on the same predictions;
- ``distill_loss`` configs keep their log keys and values, and a named
  classification term gives the same values under its own names;
- refusals by name, before any teacher checkpoint is read;
- a teacher box row that is no distribution leaves every term, counted;
- the teacher's head runs once per step for all terms; nothing is read on
  the host;
- a synthetic EA-KD + EA-LD config trains with ``tools/train.py``,
  resumes, and its checkpoint loads strictly into the plain GFL config.
"""
import copy
import math

import pytest
import torch
from conftest import (ROOT, SYNTHETIC_CONFIGS, data_overrides, load_tool,
                      python_tool, read_scalars, run_tool)
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from torch.nn.modules.batchnorm import _BatchNorm

import mmdet_eakd  # noqa: F401
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmdet_eakd.distill import (LogitGroup, UnsupportedPairError,
                                student_model_config)
from mmdet_eakd.distill.adapters.dense import flatten_levels
from mmdet_eakd.losses import BOX_DISTRIBUTION, EALDLoss, usable_box_rows

register_all_modules()
NUM_CLASSES = 8
REG_MAX = 16
BINS = REG_MAX + 1
GFL = SYNTHETIC_CONFIGS / 'gfl_tiny_synthetic.py'
GFL_TEACHER = SYNTHETIC_CONFIGS / 'gfl_teacher_synthetic.py'
EAKD_EALD = SYNTHETIC_CONFIGS / 'eakd_eald_gfl_teacher_tiny_synthetic.py'
RETINA = SYNTHETIC_CONFIGS / 'retinanet_tiny_synthetic.py'
FRCNN = SYNTHETIC_CONFIGS / 'frcnn_tiny_synthetic.py'
CASCADE = SYNTHETIC_CONFIGS / 'cascade_tiny_synthetic.py'
KD = dict(type='SigmoidEAKDLoss', weight_mode='ea')
LD = dict(type='EALDLoss', weight_mode='ea')
#: mmdet's LD settings (ld_r18-gflv1-r101_fpn_1x_coco.py)
MMDET_LD = dict(type='KnowledgeDistillationKLDivLoss', loss_weight=0.25, T=10)
MISSING = '/nonexistent/teacher.pth'


def gfl_config(**head):
    """The tiny GFL model config (one head conv), head fields updated."""
    cfg = Config.fromfile(str(GFL)).model
    cfg.bbox_head.update(stacked_convs=1, **head)
    return cfg


def dense_config(kind):
    """A tiny dense model config whose head predicts no box distribution:
    RetinaNet, ATSS or FCOS (on the RetinaNet config's backbone and FPN)."""
    cfg = Config.fromfile(str(RETINA)).model
    cfg.bbox_head.update(stacked_convs=1)
    common = dict(num_classes=NUM_CLASSES, in_channels=32, stacked_convs=1,
                  feat_channels=32, loss_cls=cfg.bbox_head.loss_cls)
    if kind == 'atss':
        cfg.bbox_head = dict(
            type='ATSSHead', anchor_generator=gfl_config().bbox_head
            .anchor_generator,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
            loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True),
            **common)
        cfg.train_cfg = gfl_config().train_cfg
    elif kind == 'fcos':
        cfg.bbox_head = dict(
            type='FCOSHead', strides=[4, 8, 16, 32],
            regress_ranges=((-1, 32), (32, 64), (64, 128), (128, 1e8)),
            loss_bbox=dict(type='IoULoss', loss_weight=1.0),
            loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True),
            **common)
        cfg.train_cfg = None
    return cfg


def save_random(cfg, path, seed=0):
    """Build ``cfg`` with random weights (``seed``) and save them."""
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model


def distiller(student_cfg, teacher_cfg, ckpt, **extra):
    """A dense distiller of ``student_cfg`` from ``teacher_cfg``; ``extra``
    gives ``distill_terms`` / ``distill_loss`` and other arguments."""
    cfg = copy.deepcopy(student_cfg)
    cfg.update(type='DenseDistillSingleStageDetector',
               teacher=dict(config=dict(model=teacher_cfg),
                            checkpoint=str(ckpt)),
               **extra)
    return MODELS.build(cfg)


def batch(model, seed=0):
    """Two padded images with 3 and 2 objects, through the preprocessor."""
    torch.manual_seed(seed)
    packed = demo_mm_inputs(
        2, [(3, 128, 160), (3, 96, 128)], num_items=[3, 2],
        num_classes=NUM_CLASSES)
    data = model.data_preprocessor(packed, True)
    return data['inputs'], data['data_samples']


def count_calls(module):
    """Calls of ``module``'s forward: (list, hook handle)."""
    calls = []
    return calls, module.register_forward_hook(lambda *a: calls.append(1))


def eval_batch_norm(model):
    """BatchNorm with running statistics, as in the eval-mode teacher."""
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.eval()


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    """Random checkpoints of the tiny GFL: ``same`` is the student's own
    initialisation (seed 0), ``other`` another one (seed 3)."""
    tmp = tmp_path_factory.mktemp('terms')
    cfg = gfl_config()
    save_random(cfg, tmp / 'same.pth', seed=0)
    save_random(cfg, tmp / 'other.pth', seed=3)
    return tmp


def two_terms(ckpt, **loss):
    """A tiny GFL distiller with terms ``cls`` (sigmoid EA-KD) and ``box``
    (EA-LD, updated by ``loss``)."""
    cfg = gfl_config()
    return distiller(cfg, cfg, ckpt,
                     distill_terms=dict(cls=KD, box=dict(LD, **loss)))


def positives(group):
    return group.distillable & (group.labels < NUM_CLASSES)


def test_teacher_tensors_equal_what_the_student_loss_used(ckpts):
    """The contract on GFL with two terms: a teacher with the student's
    weights gives, location by location, the logits the student's
    ``loss_cls`` received and the box distributions its ``loss_dfl`` read
    at the positives (the rows of the head's output its loss used); the
    student's and the teacher's heads each run once."""
    model = two_terms(ckpts / 'same.pth')
    model.load_state_dict(torch.load(ckpts / 'same.pth')['state_dict'])
    model.train()
    eval_batch_norm(model)
    inputs, samples = batch(model)
    received = dict(cls=[], dfl=[])
    hooks = [
        model.bbox_head.loss_cls.register_forward_pre_hook(
            lambda m, args: received['cls'].append(args[0])),
        model.bbox_head.loss_dfl.register_forward_pre_hook(
            lambda m, args: received['dfl'].append(args[0])),
    ]
    student_calls, h1 = count_calls(model.bbox_head)
    teacher_calls, h2 = count_calls(model.teacher.bbox_head)
    out = model.distill_inputs(inputs, samples)
    for handle in hooks + [h1, h2]:
        handle.remove()
    assert len(student_calls) == 1 and len(teacher_calls) == 1
    (group, ) = out.groups
    student_box, teacher_box = group.pair(BOX_DISTRIBUTION)
    assert set(group.teacher_tensors) == {BOX_DISTRIBUTION}
    assert student_box.requires_grad and not teacher_box.requires_grad
    assert student_box.shape == (len(group.labels), 4 * BINS)
    torch.testing.assert_close(group.student, group.teacher, rtol=0, atol=0)
    torch.testing.assert_close(student_box, teacher_box, rtol=0, atol=0)
    # the logits are those loss_cls received (every level)
    torch.testing.assert_close(group.student, torch.cat(received['cls']),
                               rtol=0, atol=0)
    # the box rows at the positives are what loss_dfl read: GFL calls it
    # once per level with positives, on (positives x 4 edges, bins) rows
    positive = positives(group)
    assert 0 < positive.sum() < len(positive)
    read = torch.cat(received['dfl']).reshape(-1, 4 * BINS)
    torch.testing.assert_close(student_box[positive], read, rtol=0, atol=0)
    # ... and the teacher's equal a direct call of its head, flattened here
    with torch.no_grad():
        direct = model.teacher.bbox_head(model.teacher.extract_feat(inputs))[1]
    manual = torch.cat([d.permute(0, 2, 3, 1).reshape(-1, 4 * BINS)
                        for d in direct])
    torch.testing.assert_close(teacher_box, manual, rtol=0, atol=0)
    # same weights, same predictions: nothing to distil
    losses = model.distill_losses(out.groups)
    assert losses['loss_kd_box'].abs() < 1e-6
    assert losses['loss_kd_cls'].abs() < 1e-6


def _direct_ld(group, loss):
    """``loss`` (an ``EALDLoss``) on the positives (boolean indexing: a
    reference), weighted by the student's top class score, summed."""
    positive = positives(group)
    student_box, teacher_box = group.pair(BOX_DISTRIBUTION)
    score = group.student.detach()[positive].sigmoid().max(dim=1).values
    value, stats = loss.loss_and_stats(
        student_box[positive].detach(), teacher_box[positive], weight=score,
        reduction_override='sum')
    return value, stats


@pytest.mark.parametrize('weight_mode', ['ea', 'none'])
def test_box_term_is_ealdloss_on_the_positives(ckpts, weight_mode):
    model = two_terms(ckpts / 'other.pth', weight_mode=weight_mode)
    model.train()
    inputs, samples = batch(model)
    out = model.distill_inputs(inputs, samples)
    losses = model.distill_losses(out.groups)
    (group, ) = out.groups
    expected, stats = _direct_ld(group, EALDLoss(weight_mode=weight_mode))
    assert expected > 0
    torch.testing.assert_close(losses['loss_kd_box'].detach(), expected)
    for name in ('ea_weight', 'entropy_t', 'entropy_s'):
        torch.testing.assert_close(losses[f'{name}_box'],
                                   getattr(stats, name).mean())
    assert 0 < losses['ea_weight_box'] <= math.log(BINS)
    assert 'kd_fg_share_box' not in losses
    # the box term trains the box branch only: the score weight is detached
    head = model.bbox_head
    grad_reg, grad_cls = torch.autograd.grad(
        losses['loss_kd_box'], [head.gfl_reg.weight, head.gfl_cls.weight],
        allow_unused=True, retain_graph=True)
    assert grad_reg.abs().sum() > 0
    assert grad_cls is None or not grad_cls.any()


def test_box_term_with_distill_locations_still_distils_the_positives(ckpts):
    """``distill_locations`` selects the classification term's locations;
    the box term distils every positive whatever it is."""
    cfg = gfl_config()
    model = distiller(cfg, cfg, ckpts / 'other.pth',
                      distill_terms=dict(cls=KD, box=LD),
                      distill_locations='teacher_gated',
                      teacher_score_thr=0.5)
    model.train()
    out = model.distill_inputs(*batch(model))
    (group, ) = out.groups
    # a random teacher scores about 0.01: no location passes the gate
    assert not group.valid.any() and positives(group).any()
    losses = model.distill_losses(out.groups)
    assert losses['loss_kd_cls'] == 0
    expected, _ = _direct_ld(group, EALDLoss())
    torch.testing.assert_close(losses['loss_kd_box'].detach(), expected)


def test_plain_ld_reproduces_mmdet_ldhead(ckpts):
    """``EALDLoss(weight_mode='none')`` with T = 10 and loss_weight 0.25 is
    mmdet's ``LDHead`` LD (ld_r18-gflv1-r101_fpn_1x_coco.py's
    ``loss_ld``) on the same student predictions and teacher outputs, up to
    mmdet's factor 4 / (4 + eps) of its avg_factor=4.0."""
    model = two_terms(ckpts / 'other.pth', weight_mode='none')
    model.train()
    inputs, samples = batch(model)
    seen = {}
    handle = model.bbox_head.register_forward_hook(
        lambda m, args, out: seen.update(feats=args[0]))
    out = model.distill_inputs(inputs, samples)
    handle.remove()
    ours = model.distill_losses(out.groups)['loss_kd_box']

    head_cfg = copy.deepcopy(gfl_config().bbox_head)
    head_cfg.update(type='LDHead', loss_ld=MMDET_LD,
                    train_cfg=gfl_config().train_cfg)
    ld_head = MODELS.build(head_cfg)
    ld_head.load_state_dict(model.bbox_head.state_dict())
    ld_head.train()
    with torch.no_grad():
        teacher_out = model.teacher.bbox_head(
            model.teacher.extract_feat(inputs))
    mmdet = ld_head.loss(seen['feats'], teacher_out, samples)
    # the same assignment and predictions: the same classification loss
    torch.testing.assert_close(sum(mmdet['loss_cls']),
                               sum(out.losses['loss_cls']))
    eps = torch.finfo(torch.float32).eps
    mmdet_ld = sum(mmdet['loss_ld']) * (4 + eps) / 4
    assert mmdet_ld > 0
    torch.testing.assert_close(ours, mmdet_ld, rtol=1e-5, atol=0)


def _losses(model):
    """``model.loss`` on :func:`batch` (seeded sampling), in training mode."""
    model.train()
    inputs, samples = batch(model)
    torch.manual_seed(1)
    return model.loss(inputs, samples)


def _scalar(value):
    """A loss dict value as mmengine's ``parse_losses`` sums it."""
    if isinstance(value, list):
        return sum(item.mean() for item in value)
    return value.mean()


#: The log keys of distill_loss configs, as on main before distill_terms
#: (RoI heads also log the EA weight of foreground / background RoIs since).
LEGACY_KEYS = {
    'dense': {'loss_cls', 'loss_bbox', 'loss_dfl', 'teacher_unusable',
              'loss_kd', 'ea_weight', 'entropy_t', 'entropy_s',
              'kd_fg_share', 'kd_bg_share'},
    'roi': {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'acc', 'loss_bbox',
            'teacher_unusable', 'loss_kd', 'ea_weight', 'entropy_t',
            'entropy_s', 'ea_weight_fg', 'ea_weight_bg'},
}


def test_distill_loss_and_a_named_term_give_the_same_values(ckpts):
    """A ``distill_loss`` config keeps its keys; ``distill_terms`` with the
    same loss as one named term gives the same values, suffixed."""
    cfg = gfl_config()
    legacy = distiller(cfg, cfg, ckpts / 'other.pth', distill_loss=KD)
    named = distiller(cfg, cfg, ckpts / 'other.pth',
                      distill_terms=dict(cls=KD))
    named.load_state_dict(legacy.state_dict())
    old, new = _losses(legacy), _losses(named)
    assert set(old) == LEGACY_KEYS['dense']
    assert set(new) == {
        key if key in ('loss_cls', 'loss_bbox', 'loss_dfl',
                       'teacher_unusable') else f'{key}_cls'
        for key in old
    }
    for key, value in old.items():
        other = new[key] if key in new else new[f'{key}_cls']
        torch.testing.assert_close(_scalar(value), _scalar(other), rtol=0,
                                   atol=0)
    # the legacy loss module is the model's distill_loss (tools swap it)
    assert legacy.terms()[0].loss is legacy.distill_loss
    legacy.distill_loss = MODELS.build(dict(KD, loss_weight=2.0))
    torch.testing.assert_close(_losses(legacy)['loss_kd'],
                               2 * old['loss_kd'])


def test_roi_and_cascade_terms_are_named_and_counted_once(tmp_path):
    """RoI families: a named classification term gives the legacy values
    under its names; a cascade logs each stage's part as
    ``s{i}.loss_kd_<name>``, which the total loss does not count twice."""
    for config, stages in ((FRCNN, 0), (CASCADE, 3)):
        cfg = Config.fromfile(str(config)).model
        ckpt = tmp_path / f'{config.stem}.pth'
        save_random(cfg, ckpt)

        def build(**terms):
            return MODELS.build(dict(
                copy.deepcopy(cfg), type='RoIDistillTwoStageDetector',
                teacher=dict(config=dict(model=cfg), checkpoint=str(ckpt)),
                **terms))

        legacy = build(distill_loss=dict(type='EAKDLoss'))
        named = build(distill_terms=dict(cls=dict(type='EAKDLoss')))
        named.load_state_dict(legacy.state_dict())
        old, new = _losses(legacy), _losses(named)
        if not stages:
            assert set(old) == LEGACY_KEYS['roi']
        for key in ('loss_kd', 'ea_weight', 'entropy_t', 'entropy_s'):
            torch.testing.assert_close(old[key], new[f'{key}_cls'], rtol=0,
                                       atol=0)
            assert key not in new
        parts = [f's{s}.loss_kd_cls' for s in range(stages)]
        assert all(key in new for key in parts)
        if parts:
            torch.testing.assert_close(sum(new[key] for key in parts),
                                       new['loss_kd_cls'])
        total, log_vars = named.parse_losses(new)
        counted = sum(_scalar(v) for k, v in new.items()
                      if 'loss' in k and k not in parts)
        torch.testing.assert_close(total, counted)
        assert all(key in log_vars for key in parts)


def test_both_or_neither_loss_argument_is_refused(ckpts):
    cfg = gfl_config()
    with pytest.raises(ValueError,
                       match=r'distill_loss and model.distill_terms are both '
                       r'given.*distill_terms=dict\(cls=.*distill_loss=None'):
        distiller(cfg, cfg, MISSING, distill_loss=KD,
                  distill_terms=dict(cls=KD))
    with pytest.raises(ValueError, match='needs distill_loss=dict'):
        distiller(cfg, cfg, MISSING)
    with pytest.raises(ValueError, match='non-empty dict'):
        distiller(cfg, cfg, MISSING, distill_terms={})
    with pytest.raises(ValueError, match="name '1box' is not a Python "
                       'identifier'):
        distiller(cfg, cfg, MISSING, distill_terms={'1box': LD})
    with pytest.raises(ValueError, match="name 'box_loss' contains \"loss\": "
                       'mmengine sums every logged value'):
        distiller(cfg, cfg, MISSING, distill_terms=dict(box_loss=LD))
    with pytest.raises(ValueError, match='distill_terms.box must be a loss '
                       'config'):
        distiller(cfg, cfg, MISSING, distill_terms=dict(box='EALDLoss'))
    with pytest.raises(ValueError, match=r"distill_terms.box.reduction is "
                       r"'sum'; the dense distiller normalises"):
        distiller(cfg, cfg, MISSING,
                  distill_terms=dict(box=dict(LD, reduction='sum')))


@pytest.mark.parametrize('kind,head', [('retina', 'RetinaHead'),
                                       ('atss', 'ATSSHead'),
                                       ('fcos', 'FCOSHead')])
def test_box_term_on_a_head_without_distributions_is_refused(kind, head):
    """Refused by name before the teacher is built (its checkpoint does not
    exist)."""
    cfg = dense_config(kind)
    with pytest.raises(UnsupportedPairError,
                       match=rf'distill_terms.box \(EALDLoss\) distils '
                       rf"box-edge distributions, but the student's {head} "
                       'predicts none'):
        distiller(cfg, cfg, MISSING, distill_terms=dict(cls=KD, box=LD))


def test_box_term_on_roi_heads_and_wrong_classifier_are_refused():
    cfg = Config.fromfile(str(FRCNN)).model
    roi = dict(copy.deepcopy(cfg), type='RoIDistillTwoStageDetector',
               teacher=dict(config=dict(model=cfg), checkpoint=MISSING))
    with pytest.raises(UnsupportedPairError,
                       match=r'distill_terms.box \(EALDLoss\) distils '
                       'box-edge distributions, but the StandardRoIHead .* '
                       'give classification logits only'):
        MODELS.build(dict(roi, distill_terms=dict(
            cls=dict(type='EAKDLoss'), box=LD)))
    gfl = gfl_config()
    with pytest.raises(UnsupportedPairError,
                       match='distill_terms.cls EAKDLoss is made for softmax '
                       'classifiers.*SigmoidEAKDLoss'):
        distiller(gfl, gfl, MISSING,
                  distill_terms=dict(cls=dict(type='EAKDLoss'), box=LD))


def test_reg_max_mismatches_are_refused(tmp_path):
    """The loss's reg_max against the student's (before the teacher is
    built), the teacher's against the student's (before its checkpoint is
    read: it does not exist), and a teacher without distributions."""
    cfg = gfl_config()
    with pytest.raises(UnsupportedPairError,
                       match=r'distill_terms.box \(EALDLoss\) has reg_max=8, '
                       r"but the student's GFLHead has reg_max=16 \(17 bins "
                       r'per edge\). Set distill_terms.box.reg_max=16'):
        distiller(cfg, cfg, MISSING,
                  distill_terms=dict(box=dict(LD, reg_max=8)))
    teacher = gfl_config(reg_max=8)
    with pytest.raises(UnsupportedPairError,
                       match=r"distill_terms.box \(EALDLoss\): the teacher's "
                       r"GFLHead has reg_max=8 but the student's GFLHead "
                       'reg_max=16'):
        distiller(cfg, teacher, MISSING, distill_terms=dict(cls=KD, box=LD))
    # a classification term alone does not care about reg_max
    save_random(teacher, tmp_path / 'reg8.pth')
    distiller(cfg, teacher, tmp_path / 'reg8.pth', distill_terms=dict(cls=KD))
    atss = dense_config('atss')
    with pytest.raises(UnsupportedPairError,
                       match=r"distill_terms.box \(EALDLoss\) distils "
                       r"box-edge distributions, but the teacher's ATSSHead "
                       'predicts none'):
        distiller(cfg, atss, MISSING, distill_terms=dict(box=LD))


def _location(shapes, index):
    """(level, image, y, x) of row ``index`` of :func:`flatten_levels` of
    per-level outputs of ``shapes`` (B, channels, H, W), one anchor."""
    for level, (images, _, height, width) in enumerate(shapes):
        size = images * height * width
        if index < size:
            image, position = divmod(index, height * width)
            return level, image, *divmod(position, width)
        index -= size
    raise IndexError(index)


def _poison_box_row(model, location, value):
    """Make edge 1 of the teacher's box row at ``location`` no distribution:
    ``value`` in its first bin (NaN, +inf) or in all its bins (-inf)."""
    level, image, y, x = location
    bins = slice(BINS, BINS + (BINS if value == -math.inf else 1))

    def hook(module, args, out):
        boxes = [b.clone() for b in out[1]]
        boxes[level][image, bins, y, x] = value
        return out[0], boxes

    return model.teacher.bbox_head.register_forward_hook(hook)


def test_usable_box_rows_need_every_edge_to_be_a_distribution():
    """A box row is usable when each of its 4 edges has a finite maximum:
    -inf bins (probability 0) are fine, a NaN or +inf bin or an edge of
    -inf only is not."""
    rows = torch.zeros(6, 4 * BINS)
    rows[1, 3] = -math.inf  # one bin of probability 0
    rows[2, BINS] = math.nan
    rows[3, 3 * BINS + 5] = math.inf
    rows[4, 2 * BINS:3 * BINS] = -math.inf
    rows[5, :] = -math.inf
    assert usable_box_rows(rows, REG_MAX).tolist() == [
        True, True, False, False, False, False
    ]


@pytest.mark.parametrize('value', [math.nan, math.inf, -math.inf])
def test_teacher_box_row_that_is_no_distribution_leaves_every_term(
        ckpts, value):
    """A teacher box row with a NaN, +inf or all -inf edge (an fp16
    overflow, say) at a positive location leaves the box and the
    classification terms there, masked (no host read), and is counted in
    ``teacher_unusable``; every other location is distilled as in a clean
    step, and the student's gradients stay finite."""
    clean = two_terms(ckpts / 'other.pth')
    model = two_terms(ckpts / 'other.pth')
    model.load_state_dict(clean.state_dict())
    clean.train(), model.train()
    inputs, samples = batch(clean)
    reference = clean.distill_inputs(inputs, samples)
    (ref, ) = reference.groups
    index = int(positives(ref).nonzero()[0])
    _poison_box_row(model, _location(ref.samples.shapes, index), value)
    out = model.distill_inputs(inputs, samples)
    (group, ) = out.groups
    assert out.losses['teacher_unusable'] == 1
    assert reference.losses['teacher_unusable'] == 0
    assert not group.distillable[index] and not group.valid[index]
    keep = torch.ones_like(ref.valid)
    keep[index] = False
    assert torch.equal(group.distillable, ref.distillable & keep)
    teacher_box = group.teacher_tensors[BOX_DISTRIBUTION]
    assert not teacher_box[index].any() and not group.teacher[index].any()
    torch.testing.assert_close(teacher_box[keep],
                               ref.teacher_tensors[BOX_DISTRIBUTION][keep])
    losses = model.distill_losses(out.groups)
    # the box term: EALDLoss on the other positives of the clean step
    expected, _ = _direct_ld(ref._replace(distillable=ref.distillable & keep),
                             EALDLoss())
    torch.testing.assert_close(losses['loss_kd_box'].detach(), expected)
    # the classification term: the clean step without that location
    expected_cls = clean.distill_losses(
        [ref._replace(valid=ref.valid & keep)])['loss_kd_cls']
    torch.testing.assert_close(losses['loss_kd_cls'], expected_cls)
    assert all(torch.isfinite(v) for v in losses.values())
    model.parse_losses({**out.losses, **losses})[0].backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name


def test_teacher_runs_once_per_step_for_all_terms(ckpts):
    """One ``extract_feat`` and one head call of the teacher per training
    step, with two terms of two kinds."""
    from mmengine.optim import OptimWrapper
    model = two_terms(ckpts / 'other.pth')
    model.train()
    backbone, h1 = count_calls(model.teacher.backbone)
    head, h2 = count_calls(model.teacher.bbox_head)
    torch.manual_seed(0)
    data = demo_mm_inputs(2, [(3, 128, 160), (3, 96, 128)], num_items=[3, 2],
                          num_classes=NUM_CLASSES)
    log = model.train_step(
        data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01)))
    h1.remove(), h2.remove()
    assert len(backbone) == 1 and len(head) == 1
    for key in ('loss_kd_cls', 'loss_kd_box', 'ea_weight_cls',
                'ea_weight_box', 'kd_fg_share_cls', 'teacher_unusable'):
        assert key in log, key
    # the statistics are logged, not summed into the total loss
    summed = sum(float(v) for k, v in log.items() if k.startswith('loss_'))
    assert float(log['loss']) == pytest.approx(summed, rel=1e-5)


def test_box_term_reads_nothing_on_the_host(ckpts):
    """The box term on meta tensors (no values): masking, score weights and
    statistics run without a host read, which on a GPU would be a sync."""
    model = two_terms(ckpts / 'other.pth')
    (box, ) = [term for term in model.terms() if term.name == 'box']
    meta = dict(device='meta')
    logits = torch.empty(64, NUM_CLASSES, **meta)
    student_box = torch.empty(64, 4 * BINS, requires_grad=True, **meta)
    mask = torch.empty(64, dtype=torch.bool, **meta)
    group = LogitGroup('', logits, logits, torch.empty(
        64, dtype=torch.long, **meta), mask, 1.0, None, mask,
        {BOX_DISTRIBUTION: student_box},
        {BOX_DISTRIBUTION: torch.empty(64, 4 * BINS, **meta)})
    losses = model.term_losses(box, [group])
    assert losses['loss_kd_box'].is_meta and losses['loss_kd_box'].shape == ()
    losses['loss_kd_box'].backward()
    assert student_box.grad.shape == (64, 4 * BINS)


def test_flattened_box_rows_follow_the_logit_rows():
    """Row n of the flattened box distributions is the location of logit
    row n (level, image, position)."""
    scores = [torch.randn(2, NUM_CLASSES, 3, 4), torch.randn(2, NUM_CLASSES,
                                                             2, 2)]
    boxes = [torch.randn(2, 4 * BINS, 3, 4), torch.randn(2, 4 * BINS, 2, 2)]
    logits, rows = (flatten_levels(scores, NUM_CLASSES),
                    flatten_levels(boxes, 4 * BINS))
    for index in (0, 5, 13, 24, 31):
        level, image, y, x = _location([s.shape for s in scores], index)
        assert torch.equal(logits[index], scores[level][image, :, y, x])
        assert torch.equal(rows[index], boxes[level][image, :, y, x])


def test_student_config_of_a_terms_config_is_plain(ckpts):
    cfg = Config.fromfile(str(EAKD_EALD))
    assert cfg.model.distill_loss is None and set(
        cfg.model.distill_terms) == {'cls', 'box'}
    plain = student_model_config(cfg.model)
    assert plain['type'] == 'SingleStageDetector'
    assert not {'teacher', 'distill_loss', 'distill_terms'} & set(plain)
    model = two_terms(ckpts / 'other.pth')
    assert not any(k.startswith(('teacher', 'distill'))
                   for k in model.state_dict())
    MODELS.build(student_model_config(
        dict(gfl_config(), type='DenseDistillSingleStageDetector',
             distill_terms={}))).load_state_dict(model.state_dict())


def test_tools_for_one_distill_loss_refuse_terms_configs(tmp_path):
    """The T' sweep and the benchmark's KD / EA-KD variants are those of one
    classification ``distill_loss``: a ``distill_terms`` config is refused
    with the reason (the benchmark times its terms instead:
    tests/test_benchmark_distill.py)."""
    from mmdet_eakd.utils.distilled_samples import sweep_config
    bench = load_tool('benchmark_distill')
    with pytest.raises(ValueError, match=r'distils named distill_terms '
                       r"\(cls, box\); the variants \['eakd'\] swap the "
                       'type and weight mode of one distill_loss'):
        bench.benchmark_config(str(EAKD_EALD),
                               bench.BenchmarkSettings(variants=['eakd']),
                               str(tmp_path))
    with pytest.raises(ValueError, match='distils named distill_terms; the '
                       'sweep reads the KD temperature'):
        sweep_config(Config.fromfile(str(EAKD_EALD)), MISSING, None, [1.0], 1)


def test_eakd_eald_config_trains_resumes_and_gives_a_plain_checkpoint(
        tmp_path, synthetic_root):
    """tools/train.py: one tiny epoch of the synthetic EA-KD + EA-LD config
    (a random GFL teacher), then a resume to epoch 2; the terms are logged
    under their names and the checkpoint loads strictly into the plain GFL
    config."""
    teacher = tmp_path / 'teacher.pth'
    save_random(Config.fromfile(str(GFL_TEACHER)).model, teacher)
    cfg = tmp_path / 'eakd_eald.py'
    cfg.write_text(
        f"_base_ = '{EAKD_EALD}'\n"
        f'{data_overrides(synthetic_root, batch_size=4)}'
        f"model = dict(teacher=dict(checkpoint='{teacher}'))\n"
        'train_cfg = dict(max_epochs=1, val_interval=10)\n'
        'default_hooks = dict(logger=dict(interval=1), '
        'checkpoint=dict(interval=1))\n'
        'randomness = dict(seed=0)\n')
    work_dir = tmp_path / 'work'
    run_tool(python_tool('train.py') + [str(cfg), '--work-dir', str(work_dir)],
             cwd=ROOT)
    resumed = run_tool(
        python_tool('train.py') + [
            str(cfg), '--work-dir', str(work_dir), '--resume',
            '--cfg-options', 'train_cfg.max_epochs=2'
        ], cwd=ROOT)
    assert 'resumed epoch: 1' in resumed.stdout + resumed.stderr
    records = [r for r in read_scalars(work_dir) if 'loss_kd_box' in r]
    assert {r['epoch'] for r in records} == {1, 2}
    for record in records:
        assert 'loss_kd' not in record and record['loss_kd_cls'] > 0
        assert record['loss_kd_box'] > 0
        assert 0 <= record['ea_weight_box'] <= math.log(BINS)
        assert 0 <= record['ea_weight_cls'] <= math.log(2)
    plain = MODELS.build(Config.fromfile(str(GFL)).model)
    load_checkpoint(plain, str(work_dir / 'epoch_2.pth'), map_location='cpu',
                    strict=True, logger='silent')
