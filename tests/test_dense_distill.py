"""Dense one-stage distillation: locations, teacher calls, alignment, losses.

Tiny RetinaNet / ATSS / GFL / FCOS heads on the synthetic configs' backbone;
teachers are random checkpoints written here (alignment does not need trained
weights).
"""
import copy

import pytest
import torch
from conftest import SYNTHETIC_CONFIGS
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm

import mmdet_eakd  # noqa: F401
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmdet_eakd.distill import UnsupportedPairError, student_model_config
from mmdet_eakd.distill.adapters import DenseAlignmentError
from mmdet_eakd.distill.adapters.dense import flatten_levels
from mmdet_eakd.losses import sigmoid_ea_kd_loss_per_sample
from mmdet_eakd.distill.adapters import dense as dense_adapter

register_all_modules()
NUM_CLASSES = 8
RETINA = SYNTHETIC_CONFIGS / 'retinanet_tiny_synthetic.py'
GFL = SYNTHETIC_CONFIGS / 'gfl_tiny_synthetic.py'
EAKD_GFL = SYNTHETIC_CONFIGS / 'eakd_gfl_teacher_tiny_synthetic.py'
ANCHORS = dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=4,
               scales_per_octave=1, strides=[4, 8, 16, 32])
FOCAL = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
             loss_weight=1.0)
ATSS_TRAIN = dict(assigner=dict(type='ATSSAssigner', topk=9),
                  allowed_border=-1, pos_weight=-1, debug=False)


def _head(kind):
    common = dict(num_classes=NUM_CLASSES, in_channels=32, stacked_convs=1,
                  feat_channels=32)
    if kind == 'atss':
        return dict(
            type='ATSSHead', anchor_generator=ANCHORS, loss_cls=FOCAL,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
            loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True),
            **common), ATSS_TRAIN
    if kind == 'fcos':
        return dict(
            type='FCOSHead', strides=[4, 8, 16, 32], loss_cls=FOCAL,
            regress_ranges=((-1, 32), (32, 64), (64, 128), (128, 1e8)),
            loss_bbox=dict(type='IoULoss', loss_weight=1.0),
            loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True),
            **common), None
    raise ValueError(kind)


def model_config(kind):
    """The plain tiny model config of a head family."""
    if kind in ('retina', 'gfl'):
        cfg = Config.fromfile(str(RETINA if kind == 'retina' else GFL)).model
        cfg.bbox_head.update(stacked_convs=1)
        return cfg
    cfg = Config.fromfile(str(RETINA)).model
    cfg.bbox_head, train_cfg = _head(kind)
    cfg.train_cfg = train_cfg or cfg.train_cfg
    return cfg


def save_random(cfg, path, seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model


def distiller(student_cfg, teacher_cfg, ckpt, **extra):
    cfg = copy.deepcopy(student_cfg)
    cfg.update(
        type='DenseDistillSingleStageDetector',
        teacher=dict(config=dict(model=teacher_cfg), checkpoint=str(ckpt)),
        distill_loss=dict(type='SigmoidEAKDLoss', weight_mode='ea'))
    cfg.update(extra)
    return MODELS.build(cfg)


def batch(model, seed=0):
    torch.manual_seed(seed)
    packed = demo_mm_inputs(
        2, [(3, 128, 160), (3, 96, 128)], num_items=[3, 2],
        num_classes=NUM_CLASSES)
    data = model.data_preprocessor(packed, True)
    return data['inputs'], data['data_samples']


def count_calls(module):
    calls = []
    handle = module.register_forward_hook(lambda *args: calls.append(1))
    return calls, handle


@pytest.mark.parametrize('kind', ['retina', 'atss', 'gfl', 'fcos'])
def test_teacher_sees_the_locations_the_student_loss_used(kind, tmp_path):
    """With the student's own weights as teacher, the teacher's flattened
    logits equal what the student's loss_cls received, location by location:
    both follow (level, image, position, anchor). Each head runs once."""
    cfg = model_config(kind)
    plain = save_random(cfg, tmp_path / 'same.pth')
    model = distiller(cfg, cfg, tmp_path / 'same.pth')
    model.load_state_dict(plain.state_dict())
    model.train()
    for module in model.modules():  # same BN statistics as the eval teacher
        if isinstance(module, _BatchNorm):
            module.eval()
    inputs, samples = batch(model)
    student_calls, h1 = count_calls(model.bbox_head)
    teacher_calls, h2 = count_calls(model.teacher.bbox_head)
    out = model.distill_inputs(inputs, samples)
    h1.remove(), h2.remove()
    assert len(student_calls) == 1 and len(teacher_calls) == 1
    (group, ) = out.groups
    assert group.student.requires_grad and not group.teacher.requires_grad
    torch.testing.assert_close(group.student, group.teacher, rtol=0, atol=0)
    # ... and equal a direct call of the teacher, flattened independently
    with torch.no_grad():
        direct = model.teacher.bbox_head(model.teacher.extract_feat(inputs))[0]
    manual = torch.cat([
        d.reshape(d.size(0), -1, NUM_CLASSES, *d.shape[2:]).permute(
            0, 3, 4, 1, 2).reshape(-1, NUM_CLASSES) for d in direct
    ])
    torch.testing.assert_close(group.teacher, manual, rtol=0, atol=0)
    num_locations = sum(d.numel() // NUM_CLASSES for d in direct)
    assert group.labels.shape == group.valid.shape == (num_locations, )
    positive = group.labels < NUM_CLASSES
    assert positive.any() and (~positive).any()
    assert group.labels.min() >= 0 and group.labels.max() <= NUM_CLASSES


def test_flatten_levels_orders_level_image_position_anchor():
    # level 0: 2 images, 2 anchors x 3 classes, 1 x 2 positions
    score = torch.arange(2 * 6 * 1 * 2).float().reshape(2, 6, 1, 2)
    flat = flatten_levels([score, score[:, :, :, :1] + 100], 3)
    assert flat.shape == (2 * 2 * 2 + 2 * 1 * 2, 3)
    # image 0, position (0, 0), anchor 1 = channels 3..5 at x = 0
    assert flat[1].tolist() == score[0, 3:6, 0, 0].tolist()
    # image 0, position (0, 1), anchor 0
    assert flat[2].tolist() == score[0, 0:3, 0, 1].tolist()
    assert flat[4].tolist() == score[1, 0:3, 0, 0].tolist()
    assert flat[8].tolist() == (score[0, 0:3, 0, 0] + 100).tolist()


def _loss_reference(group, selected):
    per = sigmoid_ea_kd_loss_per_sample(group.student.detach().double(),
                                        group.teacher.double())
    return per, (per * selected).sum()


@pytest.mark.parametrize('locations,thr', [('all', None),
                                           ('positives', None),
                                           ('teacher_gated', 0.5)])
def test_kd_loss_is_normalised_by_positives_and_split_fg_bg(
        locations, thr, tmp_path, monkeypatch):
    cfg = model_config('gfl')
    save_random(cfg, tmp_path / 't.pth', seed=3)
    model = distiller(cfg, cfg, tmp_path / 't.pth',
                      distill_locations=locations, teacher_score_thr=thr)
    model.train()
    inputs, samples = batch(model)
    if locations == 'teacher_gated':
        # a random teacher scores about its prior (0.01) everywhere: gate at
        # the median of its top scores, so that about half the locations pass
        with torch.no_grad():
            feats = model.teacher.extract_feat(inputs)
            top = flatten_levels(model.teacher.bbox_head(feats)[0],
                                 NUM_CLASSES).sigmoid().amax(1)
        thr = model.teacher_score_thr = top.median().item()
    out = model.distill_inputs(inputs, samples)
    (group, ) = out.groups
    positive = group.labels < NUM_CLASSES
    if locations == 'positives':
        assert torch.equal(group.valid, positive & group.valid)
        assert group.valid.sum() == positive.sum()
    elif locations == 'teacher_gated':
        gate = group.teacher.sigmoid().amax(1) > thr
        assert 0 < gate.sum() < gate.numel()
        assert not (group.valid & ~gate).any()
    # the normaliser is mmdet's reduce_mean of the positives, whatever the
    # head's own avg_factor: patch it to see that it is used
    seen = []

    def fake_reduce_mean(tensor):
        seen.append(tensor.item())
        return tensor * 0 + 7

    monkeypatch.setattr(dense_adapter, 'reduce_mean', fake_reduce_mean)
    losses = model.distill_losses(out.groups)
    assert seen == [positive.sum().item()]
    per, total = _loss_reference(group, group.valid)
    assert losses['loss_kd'].item() == pytest.approx(total.item() / 7,
                                                     rel=1e-5)
    fg = (per * (group.valid & positive)).sum() / total
    assert losses['kd_fg_share'].item() == pytest.approx(fg.item(), rel=1e-4)
    assert losses['kd_fg_share'] + losses['kd_bg_share'] == pytest.approx(1)
    # EA statistics are means over the selected locations
    stats = model.distill_loss.ea_stats(group.student, group.teacher)
    assert losses['entropy_t'].item() == pytest.approx(
        stats.entropy_t[group.valid].mean().item(), rel=1e-5)
    # the KD loss reaches only the student's logits
    losses['loss_kd'].backward()
    assert model.bbox_head.gfl_cls.weight.grad is not None


def test_unselected_non_finite_logits_do_not_reach_the_loss(tmp_path):
    cfg = model_config('retina')
    save_random(cfg, tmp_path / 't.pth')
    model = distiller(cfg, cfg, tmp_path / 't.pth',
                      distill_locations='positives')
    model.train()
    out = model.distill_inputs(*batch(model))
    (group, ) = out.groups
    teacher = group.teacher.clone()
    teacher[~group.valid] = float('nan')
    losses = model.distill_losses([group._replace(teacher=teacher)])
    assert torch.isfinite(losses['loss_kd'])
    assert torch.isfinite(losses['ea_weight'])


def test_distiller_arguments_are_checked(tmp_path):
    cfg = model_config('retina')
    save_random(cfg, tmp_path / 't.pth')
    ckpt = tmp_path / 't.pth'
    with pytest.raises(ValueError, match='distill_locations must be one of'):
        distiller(cfg, cfg, ckpt, distill_locations='foreground')
    with pytest.raises(ValueError, match='needs teacher_score_thr'):
        distiller(cfg, cfg, ckpt, distill_locations='teacher_gated')
    with pytest.raises(ValueError, match='only applies to'):
        distiller(cfg, cfg, ckpt, teacher_score_thr=0.5)
    bad_loss = copy.deepcopy(cfg)
    bad_loss.update(
        type='DenseDistillSingleStageDetector',
        teacher=dict(config=dict(model=cfg), checkpoint=str(ckpt)),
        distill_loss=dict(type='SigmoidEAKDLoss', reduction='sum'))
    with pytest.raises(ValueError, match='normalises the per-location'):
        MODELS.build(bad_loss)


def _edited(cfg, edit):
    cfg = copy.deepcopy(cfg)
    edit(cfg)
    return cfg


@pytest.mark.parametrize('edit,error,match', [
    (lambda c: c.bbox_head.update(num_classes=5), DenseAlignmentError,
     'teacher classifies 5 classes'),
    (lambda c: c.bbox_head.anchor_generator.update(ratios=[1.0]),
     DenseAlignmentError, 'anchors per location'),
    (lambda c: c.bbox_head.anchor_generator.update(octave_base_scale=8),
     DenseAlignmentError, 'base anchors'),
    (lambda c: (c.neck.update(start_level=1, add_extra_convs='on_output',
                              num_outs=4),
                c.bbox_head.anchor_generator.update(strides=[8, 16, 32, 64])),
     DenseAlignmentError, 'different strides'),
    # same declared strides, but the neck's maps are those of strides 8-64
    (lambda c: c.neck.update(start_level=1, add_extra_convs='on_output',
                             num_outs=4), DenseAlignmentError,
     'level 0: teacher classification output'),
    (lambda c: setattr(c.bbox_head, 'loss_cls',
                       dict(type='CrossEntropyLoss', use_sigmoid=False)),
     UnsupportedPairError, 'classifies with softmax'),
])
def test_misaligned_pairs_are_refused_before_training(edit, error, match,
                                                      tmp_path):
    student_cfg = model_config('retina')
    teacher_cfg = _edited(student_cfg, edit)
    save_random(teacher_cfg, tmp_path / 't.pth')
    with pytest.raises(error, match=match):
        distiller(student_cfg, teacher_cfg, tmp_path / 't.pth')


def test_other_families_and_losses_are_refused(tmp_path):
    retina = model_config('retina')
    save_random(retina, tmp_path / 'retina.pth')
    frcnn = Config.fromfile(
        str(SYNTHETIC_CONFIGS / 'frcnn_tiny_synthetic.py')).model
    save_random(frcnn, tmp_path / 'frcnn.pth')
    # a two-stage teacher for a dense student
    with pytest.raises(UnsupportedPairError, match='needs a SingleStage'):
        distiller(retina, frcnn, tmp_path / 'frcnn.pth')
    # the softmax KD loss on sigmoid logits
    with pytest.raises(UnsupportedPairError,
                       match='EAKDLoss is made for softmax.*SigmoidEAKDLoss'):
        distiller(retina, retina, tmp_path / 'retina.pth',
                  distill_loss=dict(type='EAKDLoss'))
    # ... and the sigmoid loss on a RoI head's softmax logits
    roi = copy.deepcopy(frcnn)
    roi.update(type='RoIDistillTwoStageDetector',
               teacher=dict(config=dict(model=frcnn),
                            checkpoint=str(tmp_path / 'frcnn.pth')),
               distill_loss=dict(type='SigmoidEAKDLoss'))
    with pytest.raises(UnsupportedPairError,
                       match='SigmoidEAKDLoss is made for sigmoid.*EAKDLoss '
                       'or EADKDLoss'):
        MODELS.build(roi)
    # a head whose loss reorders / reweights locations (PAA rewrites ATSS's)
    paa = _edited(model_config('atss'),
                  lambda c: c.bbox_head.update(type='PAAHead'))
    with pytest.raises(UnsupportedPairError, match="student's head is PAAHead"):
        distiller(paa, retina, tmp_path / 'retina.pth')


def test_student_config_and_checkpoint_are_plain(tmp_path):
    cfg = Config.fromfile(str(EAKD_GFL))
    plain = student_model_config(cfg.model)
    assert plain['type'] == 'SingleStageDetector'
    for key in ('teacher', 'distill_loss', 'distill_locations',
                'teacher_score_thr'):
        assert key not in plain
    model_cfg = model_config('gfl')
    save_random(model_cfg, tmp_path / 't.pth')
    model = distiller(model_cfg, model_cfg, tmp_path / 't.pth')
    assert not any(k.startswith('teacher') for k in model.state_dict())
    MODELS.build(student_model_config(
        dict(model_cfg, type='DenseDistillSingleStageDetector',
             teacher={}, distill_loss={}))).load_state_dict(
                 model.state_dict())
