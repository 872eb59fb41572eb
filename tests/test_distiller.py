"""The RoI distiller: data flow, frozen teacher, checkpoints, errors."""
import copy

import pytest
import torch
from conftest import SYNTHETIC_CONFIGS, record_loss_calls
from mmengine.config import Config
from mmengine.optim import OptimWrapper

import mmdet_eakd  # noqa: F401
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmdet_eakd.distill import input_format, renormalize_for_teacher
from mmdet_eakd.models import student_model_config

register_all_modules()
TEACHER_CFG = SYNTHETIC_CONFIGS / 'frcnn_teacher_synthetic.py'
EAKD_CFG = SYNTHETIC_CONFIGS / 'eakd_frcnn_teacher_tiny_synthetic.py'


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    """A randomly initialised teacher saved as a local checkpoint."""
    torch.manual_seed(0)
    teacher = MODELS.build(Config.fromfile(str(TEACHER_CFG)).model)
    teacher.init_weights()
    path = tmp_path_factory.mktemp('teacher') / 'teacher.pth'
    torch.save({'state_dict': teacher.state_dict(), 'meta': {}}, path)
    return path


def distill_model_cfg(teacher_ckpt, **loss):
    cfg = Config.fromfile(str(EAKD_CFG))
    cfg.model.teacher.checkpoint = str(teacher_ckpt)
    cfg.model.distill_loss.update(loss)
    return cfg.model


@pytest.fixture
def model(teacher_ckpt):
    torch.manual_seed(1)
    model = MODELS.build(distill_model_cfg(teacher_ckpt))
    model.init_weights()
    return model


def batch(seed=0, shapes=((3, 160, 160), (3, 128, 160))):
    torch.manual_seed(seed)
    return demo_mm_inputs(
        batch_size=len(shapes), image_shapes=list(shapes), num_items=[3, 2],
        num_classes=8)


def test_train_step_losses_and_frozen_teacher(model):
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01,
                                         momentum=0.9))
    teacher_before = copy.deepcopy(model.teacher.state_dict())
    model.train()
    log1 = model.train_step(batch(0), optim)
    log2 = model.train_step(batch(1), optim)
    for log in (log1, log2):
        for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox',
                    'loss_kd', 'ea_weight', 'entropy_t', 'entropy_s', 'loss'):
            assert key in log, key
            assert torch.isfinite(log[key]), key
        # statistics are logged, not summed into the total loss
        detection = sum(float(v) for k, v in log.items()
                        if k.startswith('loss_'))
        assert float(log['loss']) == pytest.approx(detection, rel=1e-5)
        # EA weight lies in [0, log C]
        assert 0 <= log['ea_weight'] <= torch.log(torch.tensor(9.0))
    assert not model.teacher.training
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    teacher_params = {id(p) for p in model.teacher.parameters()}
    optimized = {id(p) for g in optim.optimizer.param_groups
                 for p in g['params']}
    assert not teacher_params & optimized
    assert all(not p.requires_grad for p in model.teacher.parameters())
    assert not any('teacher' in k for k in model.state_dict())


def test_teacher_sees_exactly_the_student_rois(model):
    """Teacher logits come from the teacher's RoI head on the student's RoIs,
    and the student's box head runs once per step."""
    seen = {}
    calls = []

    def on_extractor(module, args):
        seen.setdefault('rois', args[1])

    def on_bbox_head(module, args, out):
        calls.append(out[0])

    loss_calls = record_loss_calls(model.distill_loss)
    # pre-hooks return None: they must not replace the arguments
    model.roi_head.bbox_roi_extractor.register_forward_pre_hook(on_extractor)
    model.roi_head.bbox_head.register_forward_hook(on_bbox_head)
    model.train()
    data = model.data_preprocessor(batch(2), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    (call, ) = loss_calls
    seen.update(call)
    assert len(calls) == 1
    # the box head's logits of that one pass (its valid rows: all of them)
    assert torch.equal(seen['student'], calls[0])
    with torch.no_grad():
        feats = model.teacher.extract_feat(data['inputs'])
        direct = model.teacher.roi_head._bbox_forward(
            feats, seen['rois'])['cls_score']
    assert torch.equal(seen['teacher'], direct)
    assert seen['teacher'].shape == (len(seen['rois']), 9)
    # sampled RoIs: foreground labels 0..7 and background label 8
    assert set(seen['labels'].tolist()) >= {8}
    assert seen['labels'].max() == 8 and seen['labels'].min() >= 0
    assert losses['loss_kd'].requires_grad


def test_no_teacher_loss_path_runs(model):
    """The teacher runs no RPN and samples nothing: no train_cfg, no losses."""
    ran = []
    model.teacher.rpn_head.register_forward_hook(
        lambda *a: ran.append('rpn'))
    model.train()
    data = model.data_preprocessor(batch(3), True)
    model.loss(data['inputs'], data['data_samples'])
    assert ran == []
    assert model.teacher.train_cfg is None


def test_student_loss_and_other_terms_through_the_public_api(model):
    """``student_loss`` is the plain detector's loss (no teacher runs);
    ``build_terms`` + ``loss(..., terms)`` distil with other terms and leave
    the model's own as they were; a term the pair cannot serve is refused
    by name, as in a config."""
    model.train()
    data = model.data_preprocessor(batch(4), True)
    inputs, samples = data['inputs'], data['data_samples']
    ran = []
    model.teacher.backbone.register_forward_hook(
        lambda *a: ran.append('teacher'))
    torch.manual_seed(0)
    student = model.student_loss(inputs, samples)
    assert ran == [] and 'loss_kd' not in student
    plain = MODELS.build(student_model_config(Config.fromfile(
        str(EAKD_CFG)).model))
    plain.load_state_dict(model.state_dict())
    plain.train()
    torch.manual_seed(0)
    expected = plain.loss(inputs, samples)
    assert set(student) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(student[key], value, msg=key)

    own = model.distill_loss
    (kd, ) = model.build_terms(
        distill_loss=dict(type='EAKDLoss', weight_mode='none',
                          loss_weight=3.0))
    assert model.distill_loss is own and kd.loss is not own
    inputs_pair = model.distill_inputs(inputs, samples)
    with_kd = model.distill_losses(inputs_pair.groups, terms=[kd])
    with_own = model.distill_losses(inputs_pair.groups)
    # the same keys; the term's loss_weight scales its loss
    assert set(with_kd) == set(with_own)
    (kd_1, ) = model.build_terms(
        distill_loss=dict(type='EAKDLoss', weight_mode='none'))
    with_kd_1 = model.distill_losses(inputs_pair.groups, terms=[kd_1])
    assert float(with_kd_1['loss_kd']) > 0
    torch.testing.assert_close(with_kd['loss_kd'], 3.0 * with_kd_1['loss_kd'])
    losses = model.loss(inputs, samples, [kd])
    assert {'loss_kd', 'loss_cls', 'loss_rpn_cls'} <= set(losses)
    with pytest.raises(TypeError, match='made for sigmoid'):
        model.build_terms(distill_loss=dict(type='SigmoidEAKDLoss'))


def test_checkpoint_is_plain_student(model, tmp_path):
    student_cfg = student_model_config(Config.fromfile(str(EAKD_CFG)).model)
    assert 'teacher' not in student_cfg and 'distill_loss' not in student_cfg
    student = MODELS.build(student_cfg)
    student.load_state_dict(model.state_dict(), strict=True)
    plain = MODELS.build(
        Config.fromfile(str(SYNTHETIC_CONFIGS / 'frcnn_tiny_synthetic.py'))
        .model)
    plain.load_state_dict(model.state_dict(), strict=True)


def test_deepcopy_shares_the_frozen_teacher(model):
    """EMA hooks deep-copy the model: the student is copied, the teacher is
    shared (no second copy of its weights)."""
    copied = copy.deepcopy(model)
    assert copied.teacher is model.teacher
    assert copied.roi_head is not model.roi_head
    for key, value in model.state_dict().items():
        assert torch.equal(value, copied.state_dict()[key])
        assert value.data_ptr() != copied.state_dict()[key].data_ptr()
    copied.train()
    log = copied.train_step(
        batch(6), OptimWrapper(torch.optim.SGD(copied.parameters(), lr=0.01)))
    assert torch.isfinite(log['loss_kd'])


def test_teacher_follows_student_device_and_mode(model):
    model.train()
    assert not model.teacher.training
    model.to(torch.float64)
    assert next(model.teacher.parameters()).dtype == torch.float64
    model.to(torch.float32)


def test_low_precision_logits_give_float32_loss(teacher_ckpt):
    """Under AMP the box head emits fp16/bf16 logits; the KD loss stays
    float32. (mmcv's CPU nms refuses bf16, so on CPU the student's logits are
    cast by a hook; the teacher runs under its own bf16 autocast option.)"""
    model = MODELS.build(
        dict(distill_model_cfg(teacher_ckpt), teacher_autocast='bf16'))
    model.roi_head.bbox_head.register_forward_hook(
        lambda m, args, out: (out[0].to(torch.bfloat16), out[1]))
    loss_calls = record_loss_calls(model.distill_loss)
    model.train()
    data = model.data_preprocessor(batch(4), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    (seen, ) = loss_calls
    assert seen['student'].dtype == torch.bfloat16
    assert seen['teacher'].dtype == torch.float32
    assert losses['loss_kd'].dtype == torch.float32
    assert torch.isfinite(losses['loss_kd'])
    losses['loss_kd'].backward()


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='mmengine allows AmpOptimWrapper on GPU only')
def test_amp_optim_wrapper_step(model):
    from mmengine.optim import AmpOptimWrapper
    model.cuda().train()
    optim = AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01))
    log = model.train_step(batch(4), optim)
    assert torch.isfinite(log['loss_kd'])
    assert next(model.teacher.parameters()).is_cuda


def test_renormalize_for_caffe_teacher_is_exact():
    """A batch normalised by the student converts exactly to what the
    teacher's own preprocessor makes of the raw images (padding included)."""
    student_cfg = dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32)
    # pad_value and the channel order left to mmdet's defaults
    teacher_cfg = dict(
        type='DetDataPreprocessor', mean=[103.53, 116.28, 123.675],
        std=[1.0, 1.0, 1.0], pad_size_divisor=64)
    student_pre, teacher_pre = (MODELS.build(student_cfg),
                                MODELS.build(teacher_cfg))
    raw = batch(5, shapes=((3, 100, 150), (3, 70, 90)))
    student = student_pre(copy.deepcopy(raw), False)
    teacher = teacher_pre(copy.deepcopy(raw), False)
    converted = renormalize_for_teacher(
        student['inputs'], student['data_samples'],
        input_format(student_cfg, 'student'),
        input_format(teacher_cfg, 'teacher'))
    assert converted.shape == teacher['inputs'].shape == (2, 3, 128, 192)
    torch.testing.assert_close(converted, teacher['inputs'], atol=2e-4,
                               rtol=0)


@pytest.mark.parametrize('edit, match', [
    ('missing_file', 'does not exist'),
    ('keys', 'Missing keys: .*roi_head.bbox_head.fc_cls.weight.*'
     'Unexpected keys: .*not_a_layer.weight'),
    ('num_classes', 'teacher classifies 3 classes but the student 8'),
    ('roi_head', "teacher's RoI head is CascadeRoIHead but the student's is "
     'a StandardRoIHead'),
    ('no_checkpoint', 'checkpoint is not set'),
])
def test_teacher_errors(teacher_ckpt, tmp_path, edit, match):
    cfg = distill_model_cfg(teacher_ckpt)
    if edit == 'missing_file':
        cfg.teacher.checkpoint = str(tmp_path / 'nope.pth')
    elif edit == 'keys':
        state = torch.load(teacher_ckpt)['state_dict']
        del state['roi_head.bbox_head.fc_cls.weight']
        state['not_a_layer.weight'] = torch.zeros(1)
        bad = tmp_path / 'bad.pth'
        torch.save({'state_dict': state}, bad)
        cfg.teacher.checkpoint = str(bad)
    elif edit == 'num_classes':
        teacher_cfg = Config.fromfile(str(TEACHER_CFG))
        teacher_cfg.model.roi_head.bbox_head.num_classes = 3
        cfg.teacher.config = teacher_cfg.to_dict()
    elif edit == 'roi_head':
        cfg.teacher.config = 'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py'
    elif edit == 'no_checkpoint':
        cfg.teacher.checkpoint = None
    with pytest.raises((FileNotFoundError, KeyError, ValueError, TypeError),
                       match=match):
        MODELS.build(cfg)


def _one_loss_step(teacher_ckpt, **model_fields):
    """A distiller (seed 1, ``model_fields`` set) after one ``loss`` call on
    a batch of 4: (model, losses, what its distillation loss received)."""
    cfg = distill_model_cfg(teacher_ckpt)
    cfg.update(model_fields)
    torch.manual_seed(1)
    model = MODELS.build(cfg)
    model.init_weights()
    calls = record_loss_calls(model.distill_loss)
    model.train()
    data = model.data_preprocessor(batch(4), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    (call, ) = calls
    return model, losses, call


def test_foreground_rois_distil_only_the_foreground(teacher_ckpt):
    """``distill_rois='foreground'``: the KD loss is the mean per-RoI term
    over the RoIs sampled as objects; background RoIs are masked out (their
    rows reach the loss as zeros)."""
    model, losses, call = _one_loss_step(teacher_ckpt,
                                         distill_rois='foreground')
    labels = call['labels']
    foreground = labels < 8
    assert 0 < int(foreground.sum()) < len(labels)
    assert not call['student'][~foreground].any()
    assert call['student'][foreground].abs().sum() > 0
    per_roi = model.distill_loss(call['student'], call['teacher'], labels,
                                 reduction_override='none')
    assert torch.allclose(losses['loss_kd'], per_roi[foreground].mean())
    # the plain student config drops the option
    cfg = distill_model_cfg(teacher_ckpt)
    cfg.distill_rois = 'foreground'
    assert 'distill_rois' not in student_model_config(cfg)


def test_ea_weight_is_logged_apart_for_foreground_and_background(
        teacher_ckpt):
    """``ea_weight_fg`` / ``ea_weight_bg``: the mean EA weight over the RoIs
    sampled as objects / as background, from the same per-RoI weights as
    ``ea_weight`` (their count-weighted mean)."""
    model, losses, call = _one_loss_step(teacher_ckpt)
    foreground = call['labels'] < 8
    assert 0 < int(foreground.sum()) < len(foreground)
    weights = model.distill_loss.ea_stats(call['student'],
                                          call['teacher']).ea_weight
    assert not torch.allclose(weights[foreground].mean(),
                              weights[~foreground].mean())
    torch.testing.assert_close(losses['ea_weight_fg'],
                               weights[foreground].mean())
    torch.testing.assert_close(losses['ea_weight_bg'],
                               weights[~foreground].mean())
    torch.testing.assert_close(losses['ea_weight'], weights.mean())


def test_unknown_distill_rois_is_refused(teacher_ckpt):
    cfg = distill_model_cfg(teacher_ckpt)
    cfg.distill_rois = 'positives'
    with pytest.raises(ValueError, match="distill_rois must be one of"):
        MODELS.build(cfg)


def test_foreground_rois_keep_the_feature_terms(teacher_ckpt):
    """With ``distill_rois='foreground'`` a feature term still gets the
    step's features (the selection replaces the groups only)."""
    cfg = Config.fromfile(
        str(SYNTHETIC_CONFIGS / 'eakd_pkd_frcnn_teacher_tiny_synthetic.py'))
    cfg.model.teacher.checkpoint = str(teacher_ckpt)
    cfg.model.distill_rois = 'foreground'
    torch.manual_seed(1)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    data = model.data_preprocessor(batch(5), True)
    inputs = model.distill_inputs(data['inputs'], data['data_samples'])
    assert inputs.features is not None
    losses = model.loss(data['inputs'], data['data_samples'])
    assert torch.isfinite(losses['loss_kd_feat']) and losses['loss_kd_feat'] > 0
    assert torch.isfinite(losses['loss_kd_cls'])
