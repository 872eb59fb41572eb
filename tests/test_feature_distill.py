"""Feature distillation (PKD, EA-PKD) on the FPN levels; heterogeneous pairs.

What is checked:

- the math against a float64 reference written from the definition (1 -
  the Pearson correlation of each image's channel pair), its gradient
  (``gradcheck``), fp16/bf16 inputs and extreme scales (PKD is scale-free;
  a constant channel gives no NaN);
- the loss module's arguments, connector and shape errors;
- the features a step compares are the student's and the teacher's own
  ``extract_feat`` outputs; levels are paired by stride; refusals by name
  before any teacher checkpoint is read;
- EA weights reuse the classification term's entropies (the entropy
  function runs twice per step, for the teacher and the student, with or
  without the feature term) and spread them per location or per image, or
  weigh each sampled RoI's features (Faster R-CNN and Cascade students);
- heterogeneous pairs (a Faster R-CNN teacher for RetinaNet and GFL
  students, a RetinaNet teacher for a Faster R-CNN student) run the
  teacher's ``extract_feat`` only, and a connector stays out of the plain
  student checkpoint.
"""
import copy
import math

import pytest
import torch
from conftest import SYNTHETIC_CONFIGS
from mmengine.config import Config

import mmdet_eakd  # noqa: F401
import mmdet_eakd.losses.functional as functional
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmdet_eakd.distill import UnsupportedPairError, student_model_config
from mmdet_eakd.distill.features import (FeatureLevel, FeatureLevelError,
                                         feature_levels, match_levels)
from mmdet_eakd.engine.hooks import (DISTILL_STATE_DICT,
                                     DistillStateCheckpointHook)
from mmdet_eakd.losses import (EAPKDLoss, image_weights, location_weight_map,
                               pkd_loss_map, pkd_loss_per_image,
                               standardize_channels, weighted_level_loss)

register_all_modules()
NUM_CLASSES = 8
RETINA = SYNTHETIC_CONFIGS / 'retinanet_tiny_synthetic.py'
GFL = SYNTHETIC_CONFIGS / 'gfl_tiny_synthetic.py'
FRCNN = SYNTHETIC_CONFIGS / 'frcnn_tiny_synthetic.py'
CASCADE = SYNTHETIC_CONFIGS / 'cascade_tiny_synthetic.py'
FRCNN_TEACHER = SYNTHETIC_CONFIGS / 'frcnn_teacher_synthetic.py'
MISSING = '/nonexistent/teacher.pth'
PKD = dict(type='EAPKDLoss', weight_mode='none')
CONNECTOR = dict(student_channels=32, teacher_channels=64)


# ---------------------------------------------------------------- the math
def reference_pkd_per_image(student, teacher):
    """float64, from the definition: per image, the mean over channels of
    1 - Pearson r of the channel pair over the positions."""
    out = []
    for s_img, t_img in zip(student.double(), teacher.double()):
        terms = []
        for s, t in zip(s_img.flatten(1), t_img.flatten(1)):
            s, t = s - s.mean(), t - t.mean()
            terms.append(1 - (s * t).sum() / (s.norm() * t.norm()))
        out.append(torch.stack(terms).mean())
    return torch.stack(out)


def test_pkd_is_one_minus_pearson_r_in_float64():
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 5, 6, 7), torch.randn(3, 5, 6, 7)
    got = pkd_loss_per_image(student.double(), teacher.double(), eps=1e-12)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, reference_pkd_per_image(student, teacher),
                               rtol=1e-10, atol=1e-10)
    # the map's mean over the positions is the per-image term
    loss_map = pkd_loss_map(student, teacher)
    assert loss_map.shape == (3, 6, 7)
    torch.testing.assert_close(loss_map.mean(dim=(1, 2)),
                               pkd_loss_per_image(student, teacher))
    # identical maps: 0; standardised channels: mean 0, variance 1
    assert pkd_loss_per_image(student, student).abs().max() < 1e-6
    norm = standardize_channels(student.double(), eps=0.)
    torch.testing.assert_close(norm.mean(dim=(2, 3)),
                               torch.zeros(3, 5, dtype=torch.float64))
    torch.testing.assert_close(norm.var(dim=(2, 3), correction=0),
                               torch.ones(3, 5, dtype=torch.float64))


def test_pkd_gradient_and_teacher_detached():
    torch.manual_seed(1)
    student = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s: pkd_loss_map(s, teacher.detach()), (student, ))
    pkd_loss_map(student, teacher).sum().backward()
    assert teacher.grad is None and torch.isfinite(student.grad).all()


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_pkd_low_precision_inputs_compute_in_float32(dtype):
    torch.manual_seed(2)
    student, teacher = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    low = pkd_loss_map(student.to(dtype), teacher.to(dtype))
    assert low.dtype == torch.float32
    ref = pkd_loss_map(student.to(dtype).float(), teacher.to(dtype).float())
    torch.testing.assert_close(low, ref)


def test_pkd_extreme_inputs():
    torch.manual_seed(3)
    student, teacher = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    base = pkd_loss_per_image(student, teacher)
    # scale-free while the standard deviations dwarf eps (1e-6); float32
    # squares of 1e15 are still finite
    for scale in (1e-2, 1e15):
        torch.testing.assert_close(
            pkd_loss_per_image(student * scale, teacher * scale), base,
            rtol=1e-3, atol=1e-4)
    # far below eps a map counts as constant (as in mmrazor): 1/2 per channel
    torch.testing.assert_close(
        pkd_loss_per_image(student * 1e-12, teacher), torch.full((2, ), 0.5),
        rtol=1e-4, atol=1e-4)
    # a constant channel standardises to zeros: finite loss and gradient
    flat = torch.full((1, 2, 4, 4), 7.0, requires_grad=True)
    loss = pkd_loss_per_image(flat, torch.randn(1, 2, 4, 4))
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(flat.grad).all()
    torch.testing.assert_close(loss, torch.tensor([0.5]))  # (0 - z)^2 / 2
    # a NaN stays in its own image
    student[0, 0, 0, 0] = float('nan')
    values = pkd_loss_per_image(student, teacher)
    assert torch.isnan(values[0]) and torch.isfinite(values[1])


def test_weighted_level_loss_and_weight_maps():
    torch.manual_seed(4)
    loss_map = torch.rand(2, 3, 4)
    assert weighted_level_loss(loss_map) == loss_map.mean()
    ones = torch.ones(2, 3, 4)
    torch.testing.assert_close(weighted_level_loss(loss_map, ones),
                               loss_map.mean())
    per_image = torch.tensor([0.2, 0.6])
    torch.testing.assert_close(
        weighted_level_loss(loss_map, per_image),
        weighted_level_loss(loss_map, per_image[:, None, None].expand(2, 3,
                                                                      4)))
    # normalised weights: invariant to their scale, mean 1
    torch.testing.assert_close(
        weighted_level_loss(loss_map, per_image, normalize=True),
        weighted_level_loss(loss_map, per_image * 7, normalize=True))
    torch.testing.assert_close(
        weighted_level_loss(loss_map, per_image, normalize=True),
        (loss_map.mean(dim=(1, 2)) * per_image / per_image.mean()).mean())
    assert weighted_level_loss(loss_map, torch.zeros(2), normalize=True) == 0
    # rows (image, y, x, anchor) -> per-location means over the kept anchors
    rows = torch.arange(2 * 3 * 4 * 2, dtype=torch.float32)
    mask = torch.ones_like(rows, dtype=torch.bool)
    mask[1::2] = False  # keep anchor 0 only
    mask[:2] = False  # location (0, 0, 0): no anchor kept
    weights = location_weight_map(rows, mask, 2, 3, 4)
    expected = rows.reshape(2, 3, 4, 2)[..., 0].clone()
    expected[0, 0, 0] = 0
    torch.testing.assert_close(weights, expected)
    index = torch.tensor([0, 0, 1, 1, 1])
    torch.testing.assert_close(
        image_weights(torch.tensor([1., 3., 2., 4., 100.]),
                      torch.tensor([True, True, True, True, False]), index, 3),
        torch.tensor([2., 3., 0.]))


def test_eapkd_loss_module():
    torch.manual_seed(5)
    student = [torch.randn(2, 4, 8, 8, requires_grad=True),
               torch.randn(2, 4, 4, 4, requires_grad=True)]
    teacher = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)]
    loss = EAPKDLoss(weight_mode='none', loss_weight=6.)
    expected = 6 * sum(pkd_loss_map(s, t).mean()
                       for s, t in zip(student, teacher))
    torch.testing.assert_close(loss(student, teacher), expected)
    weights = [torch.rand(2), torch.rand(2, 4, 4)]
    weighted = EAPKDLoss(normalize_weights=False)(student, teacher,
                                                  weights=weights)
    torch.testing.assert_close(
        weighted, sum(weighted_level_loss(pkd_loss_map(s, t), w)
                      for s, t, w in zip(student, teacher, weights)))
    weighted.backward()
    assert all(s.grad is not None for s in student)
    # the connector maps the student's channels to the teacher's
    with_connector = EAPKDLoss(student_channels=4, teacher_channels=6)
    assert with_connector.connector.weight.shape == (6, 4, 1, 1)
    wide = [torch.randn(2, 6, 8, 8), torch.randn(2, 6, 4, 4)]
    with_connector(student, wide).backward()
    assert with_connector.connector.weight.grad is not None
    with pytest.raises(ValueError, match='set student_channels=4 and '
                       'teacher_channels=6'):
        loss(student, wide)
    with pytest.raises(ValueError, match='connector takes 6 channels'):
        EAPKDLoss(student_channels=6, teacher_channels=6)(student, wide)
    with pytest.raises(ValueError, match='give both student_channels'):
        EAPKDLoss(student_channels=4)
    with pytest.raises(ValueError, match='ea_granularity must be one of'):
        EAPKDLoss(ea_granularity='pixel')
    with pytest.raises(ValueError, match='weight_mode must be one of'):
        EAPKDLoss(weight_mode='entropy')
    with pytest.raises(ValueError, match='2 student and 1 teacher levels'):
        loss(student, teacher[:1])
    with pytest.raises(ValueError, match=r'weights of level 1 have shape'):
        EAPKDLoss()(student, teacher, weights=[torch.rand(2),
                                               torch.rand(2, 8, 8)])


# --------------------------------------------------------- level matching
def test_levels_are_paired_by_stride():
    def levels(*strides):
        return [FeatureLevel(s, 256) for s in strides]

    # Faster R-CNN P2-P6 teacher, RetinaNet P3-P7 student: P3-P6
    assert match_levels(levels(8, 16, 32, 64, 128),
                        levels(4, 8, 16, 32, 64)) == [(0, 1), (1, 2), (2, 3),
                                                      (3, 4)]
    with pytest.raises(FeatureLevelError, match='No level of the student'):
        match_levels(levels(8, 16), levels(4, 32))
    with pytest.raises(FeatureLevelError, match='two levels of the same'):
        match_levels(levels(8, 8), levels(8))


def test_feature_levels_measure_strides_and_channels():
    frcnn = MODELS.build(Config.fromfile(str(FRCNN_TEACHER)).model)
    retina = MODELS.build(Config.fromfile(str(RETINA)).model)
    frcnn.train()
    assert feature_levels(frcnn) == [FeatureLevel(s, 64)
                                     for s in (4, 8, 16, 32, 64)]
    assert frcnn.training  # put back in its mode
    assert feature_levels(retina) == [FeatureLevel(s, 32)
                                      for s in (4, 8, 16, 32)]


# ------------------------------------------------------------ distillers
def model_config(path, **head):
    cfg = Config.fromfile(str(path)).model
    if 'stacked_convs' in cfg.get('bbox_head', {}):
        cfg.bbox_head.update(stacked_convs=1, **head)
    return cfg


def save_random(cfg, path, seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model


def distiller(student_cfg, teacher_cfg, ckpt, **extra):
    cfg = copy.deepcopy(student_cfg)
    kind = ('RoIDistillTwoStageDetector' if 'roi_head' in cfg else
            'DenseDistillSingleStageDetector')
    cfg.update(type=kind, teacher=dict(config=dict(model=teacher_cfg),
                                       checkpoint=str(ckpt)), **extra)
    return MODELS.build(cfg)


def batch(model, seed=0):
    torch.manual_seed(seed)
    packed = demo_mm_inputs(2, [(3, 128, 160), (3, 96, 128)],
                            num_items=[3, 2], num_classes=NUM_CLASSES)
    data = model.data_preprocessor(packed, True)
    return data['inputs'], data['data_samples']


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('features')
    save_random(model_config(RETINA), tmp / 'retina.pth', seed=3)
    save_random(model_config(FRCNN_TEACHER), tmp / 'frcnn_teacher.pth')
    save_random(model_config(FRCNN), tmp / 'frcnn.pth', seed=3)
    return tmp


def hetero(ckpts, **loss):
    """Tiny RetinaNet student, synthetic Faster R-CNN teacher, PKD."""
    return distiller(model_config(RETINA), model_config(FRCNN_TEACHER),
                     ckpts / 'frcnn_teacher.pth',
                     distill_terms=dict(feat=dict(PKD, **CONNECTOR, **loss)))


def test_features_compared_are_both_extract_feat_outputs(ckpts):
    """The step's features are the student's and the teacher's own
    extract_feat outputs on the batch; the loss is PKD over the paired
    levels through the connector."""
    model = hetero(ckpts, loss_weight=6.0)
    assert model.feature_level_pairs == [(0, 0), (1, 1), (2, 2), (3, 3)]
    inputs, samples = batch(model)
    recorded = model.distill_inputs(inputs, samples).features
    with torch.no_grad():
        direct_t = model.teacher.extract_feat(inputs)
        student_eval = copy.deepcopy(model)
        direct_s = student_eval.extract_feat(inputs)  # BN in train mode too
    assert len(recorded.teacher) == 5 and len(recorded.student) == 4
    for got, want in zip(recorded.teacher, direct_t):
        torch.testing.assert_close(got, want)
    for got, want in zip(recorded.student, direct_s):
        assert got.requires_grad
        torch.testing.assert_close(got.detach(), want)
    losses = model.distill_losses([], recorded)
    loss = model.distill_terms.feat
    expected = 6 * sum(
        pkd_loss_map(loss.connector(recorded.student[s]),
                     recorded.teacher[t]).mean()
        for s, t in model.feature_level_pairs)
    torch.testing.assert_close(losses['loss_kd_feat'], expected)


def count_forward(module):
    calls = []
    module.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_heterogeneous_teacher_runs_extract_feat_only(ckpts):
    model = hetero(ckpts)
    assert not model.uses_teacher_head
    teacher = model.teacher
    rpn, roi = count_forward(teacher.rpn_head), count_forward(
        teacher.roi_head.bbox_head)
    neck, backbone = count_forward(teacher.neck), count_forward(
        teacher.backbone)
    student_head = count_forward(model.bbox_head)
    inputs, samples = batch(model)
    losses = model.loss(inputs, samples)
    assert (len(rpn), len(roi), len(neck), len(backbone)) == (0, 0, 1, 1)
    assert len(student_head) == 1
    assert set(losses) == {'loss_cls', 'loss_bbox', 'teacher_unusable',
                           'loss_kd_feat'}
    total = sum(sum(v) if isinstance(v, list) else v
                for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert model.distill_terms.feat.connector.weight.grad is not None


def test_reverse_heterogeneous_pair_retinanet_teacher_frcnn_student(ckpts):
    """A RetinaNet teacher for a Faster R-CNN student: PKD only, P2-P5
    paired, the teacher's dense head never runs."""
    model = distiller(model_config(FRCNN), model_config(RETINA),
                      ckpts / 'retina.pth', distill_terms=dict(feat=PKD))
    assert model.feature_level_pairs == [(0, 0), (1, 1), (2, 2), (3, 3)]
    head = count_forward(model.teacher.bbox_head)
    losses = model.loss(*batch(model))
    assert not head and losses['loss_kd_feat'].requires_grad
    assert 'loss_rpn_cls' in losses and 'loss_kd_cls' not in losses


def test_heterogeneous_pair_faster_rcnn_teacher_gfl_student(ckpts):
    """A GFL student (box distributions, quality focal loss) of the same
    Faster R-CNN teacher: PKD only, the teacher's RPN and RoI head never
    run."""
    model = distiller(model_config(GFL), model_config(FRCNN_TEACHER),
                      ckpts / 'frcnn_teacher.pth',
                      distill_terms=dict(feat=dict(PKD, **CONNECTOR)))
    assert model.feature_level_pairs == [(0, 0), (1, 1), (2, 2), (3, 3)]
    rpn, roi = count_forward(model.teacher.rpn_head), count_forward(
        model.teacher.roi_head.bbox_head)
    losses = model.loss(*batch(model))
    assert not rpn and not roi
    assert {'loss_dfl', 'loss_kd_feat'} <= set(losses)


def test_heterogeneous_refusals_name_the_terms_before_the_checkpoint(ckpts):
    retina, teacher = model_config(RETINA), model_config(FRCNN_TEACHER)
    refused = {
        'cls': dict(cls=dict(type='SigmoidEAKDLoss'),
                    feat=dict(PKD, **CONNECTOR)),
        'feat': dict(feat=dict(PKD, **CONNECTOR, weight_mode='ea')),
    }
    for name, terms in refused.items():
        with pytest.raises(UnsupportedPairError) as error:
            distiller(retina, teacher, MISSING, distill_terms=terms)
        message = str(error.value)
        assert 'dense distillation needs a SingleStageDetector' in message
        assert f'distill_terms.{name} (' in message
        assert 'feature terms only, with weight_mode=\'none\'' in message
    # channels that differ without a connector; levels with no stride in
    # common (a student FPN from P5 on, a teacher cut to P2-P4)
    with pytest.raises(FeatureLevelError, match='set student_channels=32, '
                       'teacher_channels=64'):
        distiller(retina, teacher, MISSING, distill_terms=dict(feat=PKD))
    with pytest.raises(FeatureLevelError, match='connector maps 16 to 64'):
        distiller(retina, teacher, MISSING, distill_terms=dict(
            feat=dict(PKD, student_channels=16, teacher_channels=64)))
    short = copy.deepcopy(teacher)
    short.neck.update(num_outs=3, end_level=2)
    far = copy.deepcopy(retina)
    far.neck.update(start_level=3, num_outs=2)
    far.bbox_head.anchor_generator.strides = [32, 64]
    with pytest.raises(FeatureLevelError, match=r'student strides \[32, 64\]'
                       r', teacher strides \[4, 8, 16\]'):
        distiller(far, short, MISSING,
                  distill_terms=dict(feat=dict(PKD, **CONNECTOR)))


def test_granularity_and_entropy_source_refusals(ckpts):
    frcnn = model_config(FRCNN)
    with pytest.raises(UnsupportedPairError,
                       match="ea_granularity='location', but the "
                       'StandardRoIHead .* per image only'):
        distiller(frcnn, frcnn, MISSING, distill_terms=dict(
            cls=dict(type='EAKDLoss'),
            feat=dict(type='EAPKDLoss', ea_granularity='location')))
    retina = model_config(RETINA)
    with pytest.raises(ValueError, match='takes its EA entropies from the '
                       'classification term distill_terms.cls'):
        distiller(retina, retina, MISSING, distill_terms=dict(
            cls=dict(type='SigmoidEAKDLoss'),
            feat=dict(type='EAPKDLoss', entropy_temperature=2.0)))


def count_entropies(monkeypatch):
    calls = []
    original = functional.binary_softened_entropy

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(functional, 'binary_softened_entropy', counted)
    return calls


def test_ea_feature_weights_reuse_the_cls_entropies(ckpts, monkeypatch):
    """EA-PKD adds no entropy computation to a step with a cls term (2
    calls: teacher and student), computes them once without one, and its
    weights are the cls term's at the locations it distils, per location
    (mean over a position's anchors) or per image."""
    retina = model_config(RETINA)
    calls = count_entropies(monkeypatch)
    feat = dict(type='EAPKDLoss', normalize_weights=False)
    models = {
        name: distiller(retina, retina, ckpts / 'retina.pth',
                        distill_terms=terms)
        for name, terms in (
            ('cls', dict(cls=dict(type='SigmoidEAKDLoss'))),
            ('both', dict(cls=dict(type='SigmoidEAKDLoss'), feat=feat)),
            ('feat', dict(feat=feat)))
    }
    for model in models.values():
        model.load_state_dict(models['cls'].state_dict())
    calls.clear()
    models['cls'].loss(*batch(models['cls']))
    assert len(calls) == 2

    model = models['both']
    inputs = model.distill_inputs(*batch(model))
    (group, ) = inputs.groups
    weights = functional.sigmoid_ea_statistics(group.student,
                                               group.teacher).ea_weight
    shapes = group.samples.shapes
    sizes = [s[0] * s[2] * s[3] * 3 for s in shapes]  # 3 anchors
    weights = (weights * group.valid).split(sizes)
    valid = group.valid.float().split(sizes)
    expected_maps = {
        'location': [
            rows.reshape(s[0], s[2], s[3], 3).sum(dim=3) /
            kept.reshape(s[0], s[2], s[3], 3).sum(dim=3).clamp(min=1)
            for rows, kept, s in zip(weights, valid, shapes)
        ],
        'image': [torch.stack([
            torch.cat([r.reshape(s[0], -1)[i]
                       for r, s in zip(weights, shapes)]).sum() /
            torch.cat([k.reshape(s[0], -1)[i]
                       for k, s in zip(valid, shapes)]).sum()
            for i in range(2)])] * len(shapes),
    }
    for granularity, maps in expected_maps.items():
        losses = {}
        for name in ('both', 'feat'):
            models[name].distill_terms.feat.ea_granularity = granularity
            calls.clear()
            losses[name] = models[name].loss(*batch(models[name]))
            assert len(calls) == 2, (granularity, name)
        both, alone = losses['both'], losses['feat']
        # the same weights whether taken from the cls term or computed
        torch.testing.assert_close(both['ea_weight_feat'],
                                   both['ea_weight_cls'])
        torch.testing.assert_close(alone['ea_weight_feat'],
                                   both['ea_weight_feat'])
        torch.testing.assert_close(alone['loss_kd_feat'],
                                   both['loss_kd_feat'])
        expected = EAPKDLoss(normalize_weights=False)(
            list(inputs.features.student), list(inputs.features.teacher),
            weights=maps)
        got = model.distill_losses(inputs.groups, inputs.features)
        torch.testing.assert_close(got['loss_kd_feat'], expected)


def test_a_step_distils_any_subset_of_the_models_own_terms(ckpts):
    """``loss(..., terms)`` with a subset of ``model.terms()`` distils only
    those terms, a feature term included (alone it computes its EA
    entropies itself: the same weights at the cls term's default T');
    all of them give the model's own step; a feature term that is not the
    model's own is refused (its levels were never paired); a plain PKD
    term alone runs no teacher head."""
    retina = model_config(RETINA)
    model = distiller(retina, retina, ckpts / 'retina.pth', distill_terms=dict(
        cls=dict(type='SigmoidEAKDLoss'),
        feat=dict(type='EAPKDLoss', normalize_weights=False)))
    inputs, samples = batch(model)
    cls, feat = model.terms()
    own = model.loss(inputs, samples)
    expected = {
        'cls': {'loss_kd_cls', 'ea_weight_cls'},
        'feat': {'loss_kd_feat', 'ea_weight_feat'},
    }
    for term in (cls, feat):
        losses = model.loss(inputs, samples, [term])
        kd_keys = {key for key in losses if key.endswith(('_cls', '_feat'))
                   and key != 'loss_cls'}
        assert expected[term.name] <= kd_keys, term.name
        assert all(key.endswith(f'_{term.name}') for key in kd_keys), kd_keys
        for key in kd_keys:
            torch.testing.assert_close(losses[key], own[key], msg=key)
    both = model.loss(inputs, samples, model.terms())
    assert set(both) == set(own)
    for key, value in own.items():
        torch.testing.assert_close(both[key], value, msg=key)

    foreign = copy.deepcopy(feat.loss)
    with pytest.raises(ValueError, match='compares features but is not one '
                       'of the model.s own terms'):
        model.loss(inputs, samples, [feat._replace(loss=foreign)])
    with pytest.raises(ValueError, match='compares features but is not one'):
        model.distill_losses([], terms=[feat._replace(loss=foreign)])

    plain = distiller(retina, retina, ckpts / 'retina.pth', distill_terms=dict(
        cls=dict(type='SigmoidEAKDLoss'), feat=dict(PKD)))
    head = count_forward(plain.teacher.bbox_head)
    _, pkd = plain.terms()
    losses = plain.loss(inputs, samples, [pkd])
    assert len(head) == 0 and 'loss_kd_feat' in losses
    assert 'loss_kd_cls' not in losses


def test_roi_student_weighs_features_per_image(ckpts):
    """A Faster R-CNN student: per-image weights, the mean EA weight of each
    image's sampled RoIs."""
    frcnn = model_config(FRCNN)
    model = distiller(frcnn, frcnn, ckpts / 'frcnn.pth', distill_terms=dict(
        cls=dict(type='EAKDLoss'),
        feat=dict(type='EAPKDLoss', normalize_weights=False)))
    inputs = model.distill_inputs(*batch(model))
    (group, ) = inputs.groups
    rows = functional.ea_statistics(group.student, group.teacher,
                                    entropy_temperature=3.0).ea_weight
    image = group.samples.rois[:, 0].long()
    per_image = torch.stack(
        [rows[(image == i) & group.valid].mean() for i in range(2)])
    expected = EAPKDLoss(normalize_weights=False)(
        list(inputs.features.student), list(inputs.features.teacher),
        weights=[per_image] * 5)
    got = model.distill_losses(inputs.groups, inputs.features)
    torch.testing.assert_close(got['loss_kd_feat'], expected)
    torch.testing.assert_close(got['ea_weight_feat'], got['ea_weight_cls'])


def roi_feature_loss(model, inputs):
    """EA-weighted PKD on each stage's RoI features, written out: per stage
    the student's box RoI extractor on both detectors' first 4 levels at
    the stage's RoIs, the mean over RoIs of the RoI's weight times its PKD
    term, times the stage's loss weight, summed."""
    total = 0
    for group in inputs.groups:
        rows = functional.ea_statistics(group.student, group.teacher,
                                        entropy_temperature=3.0).ea_weight
        extractor = model.roi_head.bbox_roi_extractor
        if isinstance(extractor, torch.nn.ModuleList):
            extractor = extractor[group.samples.stage]
        rois = group.samples.rois
        student = extractor(inputs.features.student[:4], rois)
        teacher = extractor(inputs.features.teacher[:4], rois)
        assert student.shape == (rois.size(0), 32, 7, 7)
        per_roi = pkd_loss_per_image(student, teacher)
        total = total + group.weight * (rows * group.valid * per_roi).mean()
    return total


def test_roi_granularity_weighs_each_sampled_roi_on_its_features(
        ckpts, tmp_path):
    """ea_granularity='roi': PKD on the RoI features of the sampled RoIs,
    each RoI weighted by its EA weight; a Cascade student sums its stages
    with their loss weights (1, 0.5, 0.25). Dense heads refuse it."""
    feat = dict(type='EAPKDLoss', ea_granularity='roi',
                normalize_weights=False)
    terms = dict(cls=dict(type='EAKDLoss'), feat=feat)
    frcnn, cascade = model_config(FRCNN), model_config(CASCADE)
    save_random(cascade, tmp_path / 'cascade.pth', seed=3)
    for cfg, ckpt, stages in ((frcnn, ckpts / 'frcnn.pth', 1),
                              (cascade, tmp_path / 'cascade.pth', 3)):
        model = distiller(cfg, cfg, ckpt, distill_terms=terms)
        inputs = model.distill_inputs(*batch(model))
        assert len(inputs.groups) == stages
        got = model.distill_losses(inputs.groups, inputs.features)
        torch.testing.assert_close(got['loss_kd_feat'],
                                   roi_feature_loss(model, inputs))
        got['loss_kd_feat'].backward()
        assert model.backbone.conv1.weight.grad is not None
    retina = model_config(RETINA)
    with pytest.raises(UnsupportedPairError, match="ea_granularity='roi'"):
        distiller(retina, retina, MISSING, distill_terms=dict(feat=feat))


def test_connector_stays_out_of_the_plain_student_checkpoint(ckpts):
    """Training checkpoints keep the connector beside the student's
    state_dict (for resuming); the state_dict loads strictly into the plain
    student."""
    model = hetero(ckpts)
    state = model.state_dict()
    assert 'distill_terms.feat.connector.weight' in state
    checkpoint = {'state_dict': dict(state), 'meta': {}}
    hook = DistillStateCheckpointHook()
    hook.before_save_checkpoint(None, checkpoint)
    assert set(checkpoint[DISTILL_STATE_DICT]) == {
        'distill_terms.feat.connector.weight',
        'distill_terms.feat.connector.bias'
    }
    plain = MODELS.build(student_model_config(
        dict(model_config(RETINA), type='DenseDistillSingleStageDetector',
             distill_terms={})))
    plain.load_state_dict(checkpoint['state_dict'], strict=True)
    hook.after_load_checkpoint(None, checkpoint)
    assert DISTILL_STATE_DICT not in checkpoint
    model.load_state_dict(checkpoint['state_dict'], strict=True)


def test_pkd_weight_is_mmrazors_scale():
    """With one image (mmrazor standardises over the batch and positions,
    here over the positions) and unit loss_weight, PKD is mmrazor's
    formula up to its unbiased standard deviation: (M - 1) / M."""
    torch.manual_seed(6)
    student, teacher = torch.randn(1, 4, 5, 6), torch.randn(1, 4, 5, 6)

    def mmrazor_norm(feat):  # its definition, written out
        flat = feat.permute(1, 0, 2, 3).reshape(4, -1)
        flat = (flat - flat.mean(-1, keepdim=True)) / (
            flat.std(-1, keepdim=True) + 1e-6)
        return flat

    theirs = ((mmrazor_norm(student) - mmrazor_norm(teacher))**2).mean() / 2
    ours = EAPKDLoss(weight_mode='none')([student], [teacher])
    m = 30
    torch.testing.assert_close(ours * (m - 1) / m, theirs, rtol=1e-4,
                               atol=1e-5)
    assert math.isclose(float(ours), float(pkd_loss_per_image(student,
                                                               teacher)),
                        rel_tol=1e-6)
