"""RTMDet students: the adapter, alignment checks, EMA, pipeline switch, resume.

Tiny RTMDet (``configs/synthetic/rtmdet_tiny_synthetic.py``: CSPNeXt,
PAFPN, ``RTMDetSepBNHead``) students and random teachers written here.
The contract test (tests/test_adapter_contract.py) checks that a teacher
with the student's weights gives what the student's loss used.
"""
import copy

import pytest
import torch
from conftest import (ROOT, SYNTHETIC_CONFIGS, data_overrides, free_port,
                      python_tool, read_scalars, read_test_metrics, run_tool)
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm

import mmdet_eakd  # noqa: F401
from mmdet.models.dense_heads import AnchorHead, RTMDetSepBNHead
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmdet_eakd.distill import (UnsupportedPairError, adapter_for,
                                load_teacher_config)
from mmdet_eakd.distill.adapters import (DenseAlignmentError, RTMDetAdapter,
                                         register_adapter)
from mmdet_eakd.engine import mmdet_tool_candidates

register_all_modules()
NUM_CLASSES = 8
PLAIN = SYNTHETIC_CONFIGS / 'rtmdet_tiny_synthetic.py'
TEACHER = SYNTHETIC_CONFIGS / 'rtmdet_teacher_synthetic.py'
EAKD = SYNTHETIC_CONFIGS / 'eakd_rtmdet_teacher_tiny_synthetic.py'
GFL = SYNTHETIC_CONFIGS / 'gfl_tiny_synthetic.py'


def model_config(path=PLAIN):
    return Config.fromfile(str(path)).model


def ins_config():
    """The tiny RTMDet with an RTMDet-Ins head (8 prototypes, Dice loss)."""
    cfg = model_config()
    head = cfg.bbox_head
    head.update(type='RTMDetInsSepBNHead', num_prototypes=8,
                dyconv_channels=8,
                loss_mask=dict(type='DiceLoss', loss_weight=2.0, eps=5e-6,
                               reduction='mean'))
    head.pop('exp_on_reg')
    cfg.test_cfg.mask_thr_binary = 0.5
    cfg.data_preprocessor.pad_mask = True
    return cfg


def save_random(cfg, path, seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    torch.save({'state_dict': model.state_dict()}, path)
    return model


def distiller(student_cfg, teacher_cfg, ckpt, **extra):
    cfg = copy.deepcopy(student_cfg)
    cfg.update(
        type='DenseDistillRTMDet',
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


def test_the_rtmdet_adapter_is_found_along_the_head_mro():
    """RTMDetHead is an ATSSHead (an AnchorHead, the dense adapter's key):
    the registry takes the most specific class, whatever the import order;
    a head with no adapter is named with the supported classes."""
    rtmdet = MODELS.build(model_config())
    assert type(rtmdet.bbox_head).__name__ == 'RTMDetSepBNHead'
    assert isinstance(adapter_for(rtmdet), RTMDetAdapter)
    gfl = MODELS.build(model_config(GFL))
    assert type(adapter_for(gfl)).__name__ == 'DenseHeadAdapter'
    yolo = MODELS.build(load_teacher_config(
        'mmdet::yolo/yolov3_d53_8xb8-320-273e_coco.py').model)
    with pytest.raises(UnsupportedPairError,
                       match=r'YOLOV3 has no distillation adapter; supported '
                       r'head families: AnchorHead, .*RTMDetHead.*'
                       r'Its head is a YOLOV3Head'):
        adapter_for(yolo)
    with pytest.raises(ValueError, match='AnchorHead already has the adapter '
                       'DenseHeadAdapter; RTMDetAdapter cannot take it'):
        register_adapter(head_types=(AnchorHead, ))(RTMDetAdapter)


def test_captured_logits_equal_a_direct_head_call_in_one_pass(tmp_path):
    """With the student's weights as the teacher's, the logits the student's
    QFL received equal the teacher's head called directly and flattened by
    hand (level, image, position); each head runs once."""
    cfg = model_config()
    plain = save_random(cfg, tmp_path / 'same.pth')
    model = distiller(cfg, cfg, tmp_path / 'same.pth')
    model.load_state_dict(plain.state_dict())
    model.train()
    for module in model.modules():  # the teacher's (eval) BN statistics
        if isinstance(module, _BatchNorm):
            module.eval()
    inputs, samples = batch(model)
    calls = {'student': 0, 'teacher': 0}
    handles = [
        head.register_forward_hook(
            lambda *args, role=role: calls.__setitem__(role, calls[role] + 1))
        for role, head in (('student', model.bbox_head),
                           ('teacher', model.teacher.bbox_head))
    ]
    out = model.distill_inputs(inputs, samples)
    for handle in handles:
        handle.remove()
    assert calls == {'student': 1, 'teacher': 1}
    (group, ) = out.groups
    with torch.no_grad():
        direct = model.teacher.bbox_head(model.teacher.extract_feat(inputs))[0]
    manual = torch.cat(
        [d.permute(0, 2, 3, 1).reshape(-1, NUM_CLASSES) for d in direct])
    torch.testing.assert_close(group.teacher, manual, rtol=0, atol=0)
    torch.testing.assert_close(group.student.detach(), manual, rtol=0, atol=0)
    # one point per position at strides 8, 16, 32 of the padded batch
    height, width = inputs.shape[2:]
    assert group.labels.shape == (
        2 * sum((height // s) * (width // s) for s in (8, 16, 32)), )
    positive = group.labels < NUM_CLASSES
    assert positive.any()
    # the points of the smaller image's padding do not count in the loss
    assert group.valid.any() and not group.valid.all()
    # the same distributions: no KL anywhere
    assert model.distill_losses(out.groups)['loss_kd'].item() == 0


def _edited(edit):
    cfg = model_config(TEACHER)
    edit(cfg)
    return cfg


@pytest.mark.parametrize('teacher_cfg,error,match', [
    (_edited(lambda c: c.bbox_head.update(num_classes=5)),
     DenseAlignmentError, 'teacher classifies 5 classes but the student 8'),
    (_edited(lambda c: c.bbox_head.anchor_generator.update(
        strides=[8, 16, 32, 64])), DenseAlignmentError, 'different strides'),
    (_edited(lambda c: c.bbox_head.anchor_generator.update(offset=0.5)),
     DenseAlignmentError, 'different point offsets'),
    (_edited(lambda c: c.data_preprocessor.update(pad_size_divisor=64)),
     None, None),
    (model_config(GFL), UnsupportedPairError,
     "teacher's head is GFLHead; this dense distillation family supports "
     'RTMDetHead, RTMDetSepBNHead'),
])
def test_misaligned_teachers_are_refused_by_name(teacher_cfg, error, match,
                                                 tmp_path):
    """Classes, strides and point offsets must agree (before the teacher's
    checkpoint is read); a teacher of another family is named. A different
    padding divisor is the student's batch, not a misalignment."""
    ckpt = tmp_path / 'missing.pth'
    if error is None:
        save_random(teacher_cfg, ckpt)
        distiller(model_config(), teacher_cfg, ckpt)
        return
    with pytest.raises(error, match=match):
        distiller(model_config(), teacher_cfg, ckpt)


@MODELS.register_module(force=True)
class RewrittenLossRTMDetHead(RTMDetSepBNHead):
    """An RTMDet head whose loss is its own (it may reorder or drop the
    points its classification loss sees)."""

    def loss_by_feat(self, *args, **kwargs):
        return super().loss_by_feat(*args, **kwargs)


def test_unsupported_rtmdet_students_and_terms_are_refused_by_name(tmp_path):
    """A head that rewrites RTMDet's loss and a box-distribution (LD) term
    (RTMDet regresses distances, no edge distributions) are refused before
    the teacher is built; RTMDet-Ins heads (the class loss of RTMDet, plus
    masks) are accepted."""
    rewritten = model_config()
    rewritten.bbox_head.type = 'RewrittenLossRTMDetHead'
    with pytest.raises(UnsupportedPairError,
                       match="student's head is RewrittenLossRTMDetHead; .*"
                       'supports RTMDetHead, RTMDetSepBNHead, RTMDetInsHead '
                       'and RTMDetInsSepBNHead .*keep their loss_by_feat / '
                       'loss_by_feat_single'):
        distiller(rewritten, model_config(), tmp_path / 'missing.pth')
    with pytest.raises(UnsupportedPairError,
                       match=r"distill_terms.box \(EALDLoss\) distils "
                       "box-edge distributions, but the student's "
                       'RTMDetSepBNHead predicts none'):
        distiller(model_config(), model_config(), tmp_path / 'missing.pth',
                  distill_loss=None,
                  distill_terms=dict(
                      cls=dict(type='SigmoidEAKDLoss'),
                      box=dict(type='EALDLoss')))


def test_rtmdet_ins_student_distils_classes_and_trains_masks(tmp_path):
    """An RTMDet-Ins student (teacher: an RTMDet) gets the RTMDet adapter:
    its class logits are distilled, its mask loss trains as usual."""
    save_random(model_config(TEACHER), tmp_path / 't.pth', seed=1)
    model = distiller(ins_config(), model_config(TEACHER), tmp_path / 't.pth')
    assert isinstance(model.adapter, RTMDetAdapter)
    model.train()
    torch.manual_seed(0)
    packed = demo_mm_inputs(2, [(3, 128, 160), (3, 96, 128)],
                            num_items=[3, 2], num_classes=NUM_CLASSES,
                            with_mask=True)
    data = model.data_preprocessor(packed, True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert losses['loss_kd'] > 0 and losses['loss_mask'] > 0
    losses['loss_kd'].backward()
    assert model.bbox_head.rtm_cls[0].weight.grad.abs().sum() > 0
    assert model.bbox_head.rtm_kernel[0].weight.grad is None


@pytest.mark.parametrize('granularity', ['image', 'location'])
def test_the_feature_term_applies_on_the_neck(tmp_path, granularity):
    """EA-KD + EA-PKD on an RTMDet student: the PKD term compares the
    CSPNeXtPAFPN levels (32 -> 64 channels through the connector), weighted
    by the classification term's EA weights (per image or per location),
    and its gradient reaches the student's neck but not the teacher."""
    teacher_cfg = model_config(TEACHER)
    save_random(teacher_cfg, tmp_path / 't.pth')
    model = distiller(
        model_config(), teacher_cfg, tmp_path / 't.pth', distill_loss=None,
        distill_terms=dict(
            cls=dict(type='SigmoidEAKDLoss', weight_mode='ea'),
            feat=dict(type='EAPKDLoss', weight_mode='ea',
                      ea_granularity=granularity, loss_weight=6.0,
                      student_channels=32, teacher_channels=64)))
    model.train()
    losses = model.loss(*batch(model))
    feat = losses['loss_kd_feat']
    assert torch.isfinite(feat) and feat > 0
    # the feature term's mean weight is the classification term's
    assert torch.allclose(losses['ea_weight_feat'], losses['ea_weight_cls'])
    feat.backward()
    neck_grads = [p.grad for p in model.neck.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in neck_grads)
    assert all(p.grad is None for p in model.teacher.parameters())


def test_ema_averages_the_student_only(tmp_path):
    """mmdet's ExpMomentumEMA (what RTMDet's EMAHook uses) deep-copies the
    distiller: the copy shares the frozen teacher, and its state dict, its
    averaged parameters and buffers are the student's only; an update
    leaves the teacher as it was."""
    from mmdet.models.layers import ExpMomentumEMA
    save_random(model_config(TEACHER), tmp_path / 't.pth', seed=1)
    model = distiller(model_config(), model_config(TEACHER),
                      tmp_path / 't.pth')
    teacher_before = copy.deepcopy(model.teacher.state_dict())
    ema = ExpMomentumEMA(model, momentum=0.5, update_buffers=True)
    assert ema.module.teacher is model.teacher
    assert set(ema.state_dict()) == {'steps'} | {
        f'module.{key}' for key in model.state_dict()}
    assert len(list(ema.parameters())) == len(list(model.parameters()))
    ema.update_parameters(model)  # the first update copies the student
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    ema.update_parameters(model)
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    student = dict(model.named_parameters())
    averaged = dict(ema.module.named_parameters())
    assert set(averaged) == set(student)
    name = 'bbox_head.rtm_cls.0.weight'
    assert not torch.equal(averaged[name], student[name])


def _train(config, work_dir, *options):
    """tools/dist_train.sh on ``config``: 2 CPU processes (DDP, gloo)."""
    return run_tool([
        'bash', str(ROOT / 'tools' / 'dist_train.sh'), str(config), '2',
        '--work-dir', str(work_dir), *options
    ], cwd=ROOT, env={'PORT': free_port()})


@pytest.fixture(scope='module')
def rtmdet_runs(tmp_path_factory, synthetic_root):
    """Two epochs of EA-KD with EMA and the pipeline switch at epoch 1 on 2
    CPU processes (8 training images, 2 per process and step: 2 iterations
    an epoch, no validation), and the second epoch again, resumed from the
    first epoch's checkpoint (what a run killed after it leaves) in another
    work dir. The switched (stage-2)
    pipeline has no random transform, so that the resumed epoch sees the
    same data as the uninterrupted one."""
    tmp = tmp_path_factory.mktemp('rtmdet_runs')
    save_random(model_config(TEACHER), tmp / 'teacher.pth', seed=1)
    config = tmp / 'distill.py'
    config.write_text(
        f"_base_ = '{EAKD}'\n"
        f'{data_overrides(synthetic_root, batch_size=2)}'
        "train_dataloader['dataset']['indices'] = 8\n"
        f"model = dict(teacher=dict(config='{TEACHER}', "
        f"checkpoint='{tmp / 'teacher.pth'}'))\n"
        'train_pipeline_stage2 = [\n'
        "    dict(type='LoadImageFromFile'),\n"
        "    dict(type='LoadAnnotations', with_bbox=True),\n"
        "    dict(type='Resize', scale=(160, 160), keep_ratio=True),\n"
        "    dict(type='PackDetInputs')]\n"
        'custom_hooks = [\n'
        "    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002,"
        ' update_buffers=True, priority=49),\n'
        "    dict(type='PipelineSwitchHook', switch_epoch=1,"
        ' switch_pipeline=train_pipeline_stage2)]\n'
        'train_cfg = dict(max_epochs=2)\n'
        'val_cfg = None\nval_dataloader = None\nval_evaluator = None\n'
        'default_hooks = dict(logger=dict(interval=1), '
        'checkpoint=dict(interval=1))\n'
        'randomness = dict(seed=0)\n')
    whole = _train(config, tmp / 'whole')
    resumed = _train(config, tmp / 'resumed', '--resume',
                     str(tmp / 'whole' / 'epoch_1.pth'))
    return dict(whole=tmp / 'whole', resumed=tmp / 'resumed',
                whole_log=whole.stdout + whole.stderr,
                resume_log=resumed.stdout + resumed.stderr)


def test_ema_and_pipeline_switch_train_under_distillation(rtmdet_runs):
    """The DDP run logs EA-KD every iteration, switches the pipeline at
    epoch 1, and saves an EMA of the student only (no teacher weights
    anywhere)."""
    assert 'Switch pipeline now!' in rtmdet_runs['whole_log']
    records = [r for r in read_scalars(rtmdet_runs['whole'])
               if 'loss_kd' in r]
    assert {r['epoch'] for r in records} == {1, 2}
    # 8 images / (2 processes x 2 images): 2 iterations an epoch
    assert max(r['iter'] for r in records if r['epoch'] == 1) == 2
    assert all(r['loss_kd'] > 0 and 0 < r['ea_weight'] for r in records)
    checkpoint = torch.load(rtmdet_runs['whole'] / 'epoch_2.pth',
                            map_location='cpu')
    state, ema = checkpoint['state_dict'], checkpoint['ema_state_dict']
    assert not any('teacher' in key for key in [*state, *ema])
    assert set(ema) == {'steps'} | {f'module.{key}' for key in state}


def test_resume_with_ema_equals_an_uninterrupted_run(rtmdet_runs):
    """Resumed from the first epoch's checkpoint (EMA state, optimizer,
    schedule and the pipeline switch restored), the second DDP epoch ends
    exactly where the uninterrupted one ends."""
    assert 'resumed epoch: 1' in rtmdet_runs['resume_log']
    assert 'Switch pipeline now!' in rtmdet_runs['resume_log']
    whole = torch.load(rtmdet_runs['whole'] / 'epoch_2.pth',
                       map_location='cpu')
    parts = torch.load(rtmdet_runs['resumed'] / 'epoch_2.pth',
                       map_location='cpu')
    for key in ('state_dict', 'ema_state_dict'):
        assert whole[key].keys() == parts[key].keys()
        for name, value in whole[key].items():
            torch.testing.assert_close(parts[key][name], value, rtol=0,
                                       atol=0, msg=f'{key}.{name}')


def test_the_distilled_checkpoint_is_a_plain_rtmdet(rtmdet_runs,
                                                    synthetic_root, tmp_path):
    """mmdet's own tools/test.py evaluates the EMA checkpoint with the plain
    student config, and DetInferencer builds an RTMDet from it."""
    from mmdet.apis import DetInferencer
    ckpt = rtmdet_runs['whole'] / 'epoch_2.pth'
    plain_cfg = tmp_path / 'plain.py'
    plain_cfg.write_text(f"_base_ = '{PLAIN}'\n"
                         f'{data_overrides(synthetic_root)}')
    mmdet_test = next(p for p in mmdet_tool_candidates('test') if p.is_file())
    run_tool([python_tool('test.py')[0], str(mmdet_test), str(plain_cfg),
              str(ckpt), '--work-dir', str(tmp_path / 'mmdet')], cwd=ROOT)
    assert any('coco/bbox_mAP' in record
               for record in read_test_metrics(tmp_path / 'mmdet'))
    inferencer = DetInferencer(model=str(PLAIN), weights=str(ckpt),
                               device='cpu', show_progress=False)
    assert type(inferencer.model).__name__ == 'RTMDet'
    image = sorted((synthetic_root / 'val').glob('*.png'))[0]
    prediction = inferencer(str(image), no_save_vis=True,
                            return_vis=False)['predictions'][0]
    assert len(prediction['bboxes']) == len(prediction['scores'])


def test_rtmdet_study_regime_builds_its_arms(tmp_path):
    """The ``rtmdet`` / ``rtmdet-short`` regimes train the synthetic RTMDet
    configs with sigmoid losses (no DKD); every arm's config is the KD
    config with its loss settings."""
    from mmdet_eakd.study import METHODS, REGIMES
    from mmdet_eakd.study.methods import resolve_methods
    from mmdet_eakd.study.runner import method_config
    for name in ('rtmdet', 'rtmdet-short'):
        regime = REGIMES[name]
        assert regime.methods == ('student', 'KD', 'EA-KD')
        with pytest.raises(ValueError, match="no sigmoid loss"):
            resolve_methods(['DKD'], regime)
        for method, mode in (('KD', 'none'), ('EA-KD', 'ea')):
            config = method_config(METHODS[method], regime, tmp_path / 'data',
                                   0, tmp_path / 'init.pth',
                                   tmp_path / 'teacher.pth')
            model = config.model
            assert model.type == 'DenseDistillRTMDet'
            assert model.bbox_head.type == 'RTMDetSepBNHead'
            assert model.teacher.config.endswith(
                '/rtmdet_teacher_synthetic.py')
            assert model.distill_loss.type == 'SigmoidEAKDLoss'
            assert model.distill_loss.weight_mode == mode
            assert config.train_cfg.max_epochs == regime.student_epochs
