"""Cascade R-CNN distillation: per-stage RoIs, teacher calls, weights, errors.

Also the adapter interface shared by every head family.
"""
import pytest
import torch
from conftest import SYNTHETIC_CONFIGS, record_loss_calls
from mmengine.config import Config
from mmengine.optim import OptimWrapper

import mmdet_eakd  # noqa: F401
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmdet_eakd.distill import (UnsupportedPairError, adapter_for,
                                student_model_config)
from mmdet_eakd.distill.adapters import call_arguments

register_all_modules()
CASCADE_TEACHER_CFG = SYNTHETIC_CONFIGS / 'cascade_teacher_synthetic.py'
FRCNN_TEACHER_CFG = SYNTHETIC_CONFIGS / 'frcnn_teacher_synthetic.py'
CASCADE_EAKD_CFG = SYNTHETIC_CONFIGS / 'cascade_eakd_teacher_tiny_synthetic.py'
CASCADE_PLAIN_CFG = SYNTHETIC_CONFIGS / 'cascade_tiny_synthetic.py'
NUM_CLASSES = Config.fromfile(
    str(CASCADE_PLAIN_CFG)).model.roi_head.bbox_head[0].num_classes


def _random_checkpoint(config, path):
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(config)).model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Randomly initialised Cascade and Faster R-CNN teachers on disk."""
    tmp = tmp_path_factory.mktemp('teachers')
    return {
        'cascade': (CASCADE_TEACHER_CFG,
                    _random_checkpoint(CASCADE_TEACHER_CFG,
                                       tmp / 'cascade.pth')),
        'frcnn': (FRCNN_TEACHER_CFG,
                  _random_checkpoint(FRCNN_TEACHER_CFG, tmp / 'frcnn.pth')),
    }


def build(checkpoints, teacher='cascade', edit=None):
    cfg = Config.fromfile(str(CASCADE_EAKD_CFG))
    config, ckpt = checkpoints[teacher]
    cfg.model.teacher = dict(config=str(config), checkpoint=str(ckpt))
    if edit:
        edit(cfg)
    torch.manual_seed(1)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.train()


def batch(seed=0, num_items=(3, 2)):
    torch.manual_seed(seed)
    return demo_mm_inputs(
        batch_size=2, image_shapes=[(3, 160, 160), (3, 128, 160)],
        num_items=list(num_items), num_classes=NUM_CLASSES)


class StageSpy:
    """Independent hooks: what each student stage received and produced."""

    def __init__(self, roi_head):
        self.rois, self.head_calls, self.cls_scores = {}, {}, {}
        for stage, (extractor, head) in enumerate(
                zip(roi_head.bbox_roi_extractor, roi_head.bbox_head)):
            extractor.register_forward_pre_hook(
                lambda m, args, s=stage: self._on_extractor(s, args))
            head.register_forward_hook(
                lambda m, args, out, s=stage: self._on_head(s, out))

    def _on_extractor(self, stage, args):
        # (returns None: a pre-hook's return value would replace the args)
        self.rois.setdefault(stage, args[1])

    def _on_head(self, stage, out):
        self.head_calls[stage] = self.head_calls.get(stage, 0) + 1
        self.cls_scores[stage] = out[0]


@pytest.mark.parametrize('teacher', ['cascade', 'frcnn'])
def test_stage_rois_are_classified_by_the_teacher(checkpoints, teacher):
    """Per stage, the teacher logits equal mmdet's own box forward of the
    teacher on that stage's RoIs (its stage s for a Cascade teacher, its one
    box head for a Faster R-CNN teacher); each student box head runs once."""
    model = build(checkpoints, teacher)
    spy = StageSpy(model.roi_head)
    data = model.data_preprocessor(batch(0), True)
    groups = model.distill_inputs(data['inputs'], data['data_samples']).groups
    assert [g.name for g in groups] == ['s0', 's1', 's2']
    assert spy.head_calls == {0: 1, 1: 1, 2: 1}
    # stages sample their own RoIs (IoU 0.5 / 0.6 / 0.7 assigners)
    assert not torch.equal(spy.rois[0], spy.rois[1])
    with torch.no_grad():
        feats = model.teacher.extract_feat(data['inputs'])
        for stage, group in enumerate(groups):
            assert torch.equal(group.student, spy.cls_scores[stage])
            assert group.student.grad_fn is not None
            assert torch.equal(group.samples.rois, spy.rois[stage])
            if teacher == 'cascade':
                direct = model.teacher.roi_head._bbox_forward(
                    stage, feats, spy.rois[stage])['cls_score']
            else:
                direct = model.teacher.roi_head._bbox_forward(
                    feats, spy.rois[stage])['cls_score']
            assert torch.equal(group.teacher, direct)
            assert group.teacher.shape == (len(spy.rois[stage]),
                                           NUM_CLASSES + 1)
            assert group.weight == model.roi_head.stage_loss_weights[stage]
            assert group.valid.all()
            assert group.labels.max() == NUM_CLASSES


def test_stage_kd_is_weighted_logged_and_counted_once(checkpoints):
    model = build(checkpoints)
    data = model.data_preprocessor(batch(1), True)
    seen = record_loss_calls(model.distill_loss)
    losses = model.loss(data['inputs'], data['data_samples'])
    weights = model.roi_head.stage_loss_weights
    assert len(seen) == 3
    for stage, call in enumerate(seen):
        expected = weights[stage] * model.distill_loss(
            call['student'], call['teacher'], call['labels'])
        torch.testing.assert_close(losses[f's{stage}.loss_kd'], expected)
    torch.testing.assert_close(
        losses['loss_kd'], sum(losses[f's{s}.loss_kd'] for s in range(3)))
    # per-stage terms are logged, not summed a second time into the total
    total, log_vars = model.parse_losses(losses)
    summed = sum(
        float(sum(v) if isinstance(v, list) else v)  # RPN: one per level
        for k, v in losses.items()
        if 'loss' in k and not k.endswith('.loss_kd'))
    assert float(total) == pytest.approx(summed, rel=1e-5)
    assert {'s0.loss_kd', 's1.loss_kd', 's2.loss_kd', 'loss_kd',
            'ea_weight'} <= set(log_vars)
    assert float(log_vars['s1.loss_kd']) == pytest.approx(
        float(losses['s1.loss_kd']))


def test_train_step_updates_student_only(checkpoints):
    model = build(checkpoints, 'frcnn')
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    log = model.train_step(batch(2), optim)
    for key in ('s0.loss_cls', 's2.loss_bbox', 's0.loss_kd', 's2.loss_kd',
                'loss_kd', 'entropy_t'):
        assert torch.isfinite(log[key]), key
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not any('teacher' in k for k in model.state_dict())


def test_early_ending_cascade(checkpoints):
    """No proposals and no ground truth: stage 0 has no RoIs and the cascade
    stops there (mmdet's refine_bboxes returns None); KD is a zero still
    connected to the graph, and only s0 is logged."""

    def no_proposals(cfg):
        cfg.model.train_cfg.rpn_proposal.min_bbox_size = 1e5

    model = build(checkpoints, edit=no_proposals)
    data = model.data_preprocessor(batch(3, num_items=(0, 0)), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert 's0.loss_kd' in losses and 's1.loss_kd' not in losses
    assert 's1.loss_cls' not in losses
    assert float(losses['loss_kd']) == 0
    assert losses['loss_kd'].requires_grad
    losses['loss_kd'].backward()


def test_plain_student_is_cascade_rcnn(checkpoints):
    model = build(checkpoints)
    student_cfg = student_model_config(
        Config.fromfile(str(CASCADE_EAKD_CFG)).model)
    assert student_cfg['type'] == 'CascadeRCNN'
    assert 'teacher' not in student_cfg
    plain = MODELS.build(Config.fromfile(str(CASCADE_PLAIN_CFG)).model)
    plain.load_state_dict(model.state_dict(), strict=True)
    assert type(plain).__name__ == 'CascadeRCNN'


def _sigmoid_stage(cfg):
    cfg.model.roi_head.bbox_head[1].loss_cls = dict(
        type='FocalLoss', use_sigmoid=True, loss_weight=1.0)


def _two_stage_teacher(cfg):
    teacher = Config.fromfile(str(CASCADE_TEACHER_CFG))
    teacher.model.roi_head.num_stages = 2
    teacher.model.roi_head.stage_loss_weights = [1, 0.5]
    teacher.model.roi_head.bbox_head = teacher.model.roi_head.bbox_head[:2]
    cfg.model.teacher.config = teacher.to_dict()


@pytest.mark.parametrize('edit, match', [
    (_sigmoid_stage, "student's box head of stage 1 classifies with sigmoid"),
    (_two_stage_teacher, "teacher's cascade has 2 stages but the student's 3"),
])
def test_unsupported_pairs_are_named(checkpoints, edit, match):
    with pytest.raises(UnsupportedPairError, match=match):
        build(checkpoints, edit=edit)


def test_adapter_is_chosen_from_the_head():
    cascade = MODELS.build(Config.fromfile(str(CASCADE_PLAIN_CFG)).model)
    frcnn = MODELS.build(Config.fromfile(str(FRCNN_TEACHER_CFG)).model)
    assert type(adapter_for(cascade)).__name__ == 'CascadeRoIAdapter'
    assert type(adapter_for(frcnn)).__name__ == 'StandardRoIAdapter'
    with pytest.raises(UnsupportedPairError,
                       match='Linear has no distillation adapter; supported '
                       'head families: .*CascadeRoIHead.*StandardRoIHead'):
        adapter_for(torch.nn.Linear(1, 1))


def test_call_arguments_by_name_whatever_mmdet_passes():
    """Hooks read an argument by name whether it came by position or by
    keyword (defaults applied)."""
    cascade = MODELS.build(Config.fromfile(str(CASCADE_PLAIN_CFG)).model)
    extractor = cascade.roi_head.bbox_roi_extractor[0]
    feats, rois = (torch.zeros(1),), torch.zeros(2, 5)
    by_position = call_arguments(extractor, (feats, rois), {})
    by_keyword = call_arguments(extractor, (), dict(rois=rois, feats=feats))
    for arguments in (by_position, by_keyword):
        assert arguments['rois'] is rois and arguments['feats'] is feats
        assert arguments['roi_scale_factor'] is None
