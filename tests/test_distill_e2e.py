"""A distillation run end to end: DDP training, resume, plain-student testing."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (ROOT, SYNTHETIC_CONFIGS, TINY, data_overrides,
                      free_port, python_tool, read_scalars,
                      read_test_metrics, run_tool)

from mmdet_eakd.engine import mmdet_tool_candidates

EAKD = SYNTHETIC_CONFIGS / 'eakd_frcnn_teacher_tiny_synthetic.py'


def distill_then_resume(tmp, base, teacher_dir, synthetic_root, extra='',
                        teacher_config=TINY, teacher_checkpoint=None):
    """Train ``base`` (a distillation config) 1 epoch on 2 CPU processes (DDP,
    gloo) from the suite's trained tiny teacher (or ``teacher_config`` /
    ``teacher_checkpoint``), then resume it to 2 epochs in one process.
    Returns the config, the work dir and the resumed run's log."""
    cfg = tmp / 'distill.py'
    checkpoint = teacher_checkpoint or teacher_dir / 'epoch_2.pth'
    cfg.write_text(
        f"_base_ = '{base}'\n"
        f'{data_overrides(synthetic_root, batch_size=2)}'
        f"model = dict(teacher=dict(config='{teacher_config}', "
        f"checkpoint='{checkpoint}'))\n"
        'train_cfg = dict(max_epochs=1, val_interval=1)\n'
        'default_hooks = dict(logger=dict(interval=1), '
        'checkpoint=dict(interval=1))\n'
        'randomness = dict(seed=0)\n' + extra)
    work_dir = tmp / 'work'
    run_tool([
        'bash', str(ROOT / 'tools' / 'dist_train.sh'), str(cfg), '2',
        '--work-dir', str(work_dir)
    ], cwd=ROOT, env={'PORT': free_port()})
    resumed = run_tool(
        python_tool('train.py') + [
            str(cfg), '--work-dir', str(work_dir), '--resume', '--cfg-options',
            'train_cfg.max_epochs=2', 'train_cfg.val_interval=2'
        ], cwd=ROOT)
    return cfg, work_dir, resumed.stdout + resumed.stderr


def resumed_records(work_dir, resume_log):
    """The logged ``loss_kd`` records of a :func:`distill_then_resume` run,
    after checking the resume: epoch 1 on 2 ranks (24 images / (2 x 2) = 6
    iterations), epoch 2 in one process. Returns them with the epoch-2
    checkpoint's state dict, which must hold no teacher weights."""
    assert 'resumed epoch: 1' in resume_log
    records = [r for r in read_scalars(work_dir) if 'loss_kd' in r]
    assert {r['epoch'] for r in records} == {1, 2}
    assert max(r['iter'] for r in records if r['epoch'] == 1) == 6
    state = torch.load(work_dir / 'epoch_2.pth',
                       map_location='cpu')['state_dict']
    assert not any('teacher' in key for key in state)
    return records, state


@pytest.fixture(scope='module')
def distilled(tmp_path_factory, synthetic_root, trained_tiny):
    """EA-KD from the suite's trained tiny detector, DDP then resumed."""
    return distill_then_resume(
        tmp_path_factory.mktemp('distill'), EAKD, trained_tiny[1],
        synthetic_root,
        # the README's snippet: EA statistics also go to TensorBoard
        extra="visualizer = dict(type='DetLocalVisualizer', vis_backends=["
        "dict(type='LocalVisBackend'), "
        "dict(type='TensorboardVisBackend')])\n")


def test_distillation_trains_under_ddp_and_resumes(distilled):
    _, work_dir, resume_log = distilled
    records, _ = resumed_records(work_dir, resume_log)
    # EA statistics are logged next to the losses
    log_c = torch.log(torch.tensor(9.)).item()  # C = 8 classes + background
    for record in records:
        assert 0 <= record['ea_weight'] <= log_c
        assert record['entropy_t'] >= 0 and record['entropy_s'] >= 0
    assert sorted(p.name for p in work_dir.glob('*.pth')) == [
        'epoch_1.pth', 'epoch_2.pth'
    ]


def test_ea_statistics_reach_tensorboard(distilled):
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    _, work_dir, _ = distilled
    event_dirs = sorted(work_dir.glob('*/vis_data'))
    tags = set()
    for event_dir in event_dirs:
        accumulator = EventAccumulator(str(event_dir))
        accumulator.Reload()
        tags |= set(accumulator.Tags()['scalars'])
    assert {'loss_kd', 'ea_weight', 'entropy_t', 'entropy_s'} <= tags, tags


def _coco(work_dir):
    metrics = [r for r in read_test_metrics(work_dir) if 'coco/bbox_mAP' in r]
    assert len(metrics) == 1
    return {k: v for k, v in metrics[0].items() if k.startswith('coco/')}


def _detections(prefix):
    """The boxes CocoMetric kept (``{prefix}.bbox.json``), in a fixed order."""
    records = json.loads(Path(f'{prefix}.bbox.json').read_text())
    return sorted((r['image_id'], r['category_id'], r['score'], r['bbox'])
                  for r in records)


def test_student_evaluates_the_same_everywhere(distilled, synthetic_root,
                                               tmp_path):
    """tools/test.py on the distillation config (no teacher: its checkpoint
    path does not even exist), on the plain student config, mmdet's own
    tools/test.py on the plain student config, and tools/dist_test.sh with 2
    processes keep the same detections and give the same COCO numbers."""
    _, work_dir, _ = distilled
    ckpt = str(work_dir / 'epoch_2.pth')
    # every box is kept: a 2-epoch student scores below the 0.05 default
    keep_all = 'test_cfg=dict(rcnn=dict(score_thr=0.0))'
    distill_cfg = tmp_path / 'distill_test.py'
    distill_cfg.write_text(
        f"_base_ = '{EAKD}'\n{data_overrides(synthetic_root)}"
        "model = dict(teacher=dict(checkpoint='/nonexistent/teacher.pth'), "
        f'{keep_all})\n')
    plain_cfg = tmp_path / 'plain_test.py'
    plain_cfg.write_text(f"_base_ = '{TINY}'\n{data_overrides(synthetic_root)}"
                         f'model = dict({keep_all})\n')
    mmdet_test = next(p for p in mmdet_tool_candidates('test') if p.is_file())

    def args(name, cfg):
        return [str(cfg), ckpt, '--work-dir', str(tmp_path / name),
                '--cfg-options',
                f'test_evaluator.outfile_prefix={tmp_path / name}/det']

    results, detections = {}, {}
    for name, tool, cfg in (
        ('ours_distill_cfg', python_tool('test.py'), distill_cfg),
        ('ours_plain_cfg', python_tool('test.py'), plain_cfg),
        ('mmdet_plain_cfg', [python_tool('test.py')[0], str(mmdet_test)],
         plain_cfg),
    ):
        run_tool(tool + args(name, cfg), cwd=ROOT)
        results[name] = _coco(tmp_path / name)
        detections[name] = _detections(tmp_path / name / 'det')
    # and the 2-process CPU launch of tools/dist_test.sh
    run_tool(['bash', str(ROOT / 'tools' / 'dist_test.sh')] +
             args('dist', distill_cfg)[:2] + ['2'] + args('dist', distill_cfg)[2:],
             cwd=ROOT, env={'PORT': free_port()})
    results['dist_distill_cfg'] = _coco(tmp_path / 'dist')
    detections['dist_distill_cfg'] = _detections(tmp_path / 'dist' / 'det')
    reference = detections.pop('ours_plain_cfg')
    assert len(reference) > 100  # boxes on every image, not an empty set
    for name, boxes in detections.items():
        assert [b[:2] for b in boxes] == [b[:2] for b in reference], name
        assert np.allclose([[b[2], *b[3]] for b in boxes],
                           [[b[2], *b[3]] for b in reference],
                           atol=1e-4), name
    assert results['ours_distill_cfg'] == results['ours_plain_cfg']
    assert results['ours_plain_cfg'] == results['mmdet_plain_cfg']
    assert results['dist_distill_cfg'] == results['ours_plain_cfg']
    assert set(results['mmdet_plain_cfg']) >= {
        'coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'
    }


def test_det_inferencer_loads_the_distilled_checkpoint(distilled,
                                                      synthetic_root):
    from mmdet.apis import DetInferencer
    _, work_dir, _ = distilled
    inferencer = DetInferencer(
        model=str(TINY), weights=str(work_dir / 'epoch_2.pth'), device='cpu',
        show_progress=False)
    image = sorted((synthetic_root / 'val').glob('*.png'))[0]
    result = inferencer(str(image), no_save_vis=True, return_vis=False)
    prediction = result['predictions'][0]
    assert len(prediction['bboxes']) == len(prediction['scores']) == len(
        prediction['labels'])


CASCADE_EAKD = SYNTHETIC_CONFIGS / 'cascade_eakd_frcnn_teacher_tiny_synthetic.py'
CASCADE_PLAIN = SYNTHETIC_CONFIGS / 'cascade_tiny_synthetic.py'


@pytest.fixture(scope='module')
def distilled_cascade(tmp_path_factory, synthetic_root, trained_tiny):
    """EA-KD from the suite's trained tiny Faster R-CNN into the tiny Cascade
    R-CNN (the teacher classifies every stage's RoIs), DDP then resumed."""
    _, work_dir, log = distill_then_resume(
        tmp_path_factory.mktemp('distill_cascade'), CASCADE_EAKD,
        trained_tiny[1], synthetic_root)
    return work_dir, log


def test_cascade_trains_under_ddp_and_resumes(distilled_cascade):
    records, state = resumed_records(*distilled_cascade)
    for record in records:
        # per-stage KD (times stage_loss_weights) is logged beside the total
        stages = [record[f's{s}.loss_kd'] for s in range(3)]
        assert sum(stages) == pytest.approx(record['loss_kd'], rel=1e-3,
                                            abs=1e-6)
        assert record['s0.loss_cls'] > 0
    assert any(key.startswith('roi_head.bbox_head.2.') for key in state)


def check_plain_checkpoint(plain, ckpt, model_type, synthetic_root, tmp_path,
                           extra=''):
    """A distilled checkpoint is a plain checkpoint of ``plain`` (a config,
    plus ``extra`` text): mmdet's own tools/test.py evaluates it and
    DetInferencer builds a ``model_type`` from it and predicts."""
    from mmdet.apis import DetInferencer
    plain_cfg = tmp_path / 'plain_test.py'
    plain_cfg.write_text(
        f"_base_ = '{plain}'\n{data_overrides(synthetic_root)}{extra}")
    mmdet_test = next(p for p in mmdet_tool_candidates('test') if p.is_file())
    run_tool([python_tool('test.py')[0], str(mmdet_test), str(plain_cfg),
              str(ckpt), '--work-dir', str(tmp_path / 'mmdet')], cwd=ROOT)
    assert 'coco/bbox_mAP' in _coco(tmp_path / 'mmdet')

    inferencer = DetInferencer(
        model=str(plain), weights=str(ckpt), device='cpu',
        show_progress=False)
    assert type(inferencer.model).__name__ == model_type
    image = sorted((synthetic_root / 'val').glob('*.png'))[0]
    prediction = inferencer(str(image), no_save_vis=True,
                            return_vis=False)['predictions'][0]
    assert len(prediction['bboxes']) == len(prediction['scores'])


def test_cascade_checkpoint_runs_with_mmdet_tools(distilled_cascade,
                                                  synthetic_root, tmp_path):
    """The distilled checkpoint is a plain Cascade R-CNN checkpoint."""
    work_dir, _ = distilled_cascade
    check_plain_checkpoint(CASCADE_PLAIN, work_dir / 'epoch_2.pth',
                           'CascadeRCNN', synthetic_root, tmp_path)


GFL_EAKD = SYNTHETIC_CONFIGS / 'eakd_gfl_teacher_tiny_synthetic.py'
GFL_PLAIN = SYNTHETIC_CONFIGS / 'gfl_tiny_synthetic.py'
GFL_TEACHER = SYNTHETIC_CONFIGS / 'gfl_teacher_synthetic.py'


@pytest.fixture(scope='module')
def distilled_gfl(tmp_path_factory, synthetic_root):
    """EA-KD per location into the tiny GFL from a (random) GFL teacher,
    DDP then resumed."""
    from mmengine.config import Config

    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    tmp = tmp_path_factory.mktemp('distill_gfl')
    torch.manual_seed(0)
    teacher = MODELS.build(Config.fromfile(str(GFL_TEACHER)).model)
    teacher.init_weights()
    torch.save({'state_dict': teacher.state_dict()}, tmp / 'teacher.pth')
    _, work_dir, log = distill_then_resume(
        tmp, GFL_EAKD, None, synthetic_root, teacher_config=GFL_TEACHER,
        teacher_checkpoint=tmp / 'teacher.pth')
    return work_dir, log


def test_dense_distillation_trains_under_ddp_and_resumes(distilled_gfl):
    records, _ = resumed_records(*distilled_gfl)
    log_2 = torch.log(torch.tensor(2.)).item()  # sigmoid EA: H_ub = log 2
    for record in records:
        assert 0 <= record['ea_weight'] <= log_2
        assert 0 <= record['entropy_t'] <= log_2
        assert record['kd_fg_share'] + record['kd_bg_share'] == pytest.approx(
            1, abs=1e-3)
        assert record['loss_kd'] > 0 and record['loss_dfl'] > 0


def test_dense_checkpoint_runs_with_mmdet_tools(distilled_gfl, synthetic_root,
                                                tmp_path):
    """The distilled checkpoint is a plain GFL checkpoint. (Two epochs leave
    a GFL's quality scores below the default 0.05 threshold: every box is
    kept, so that COCO AP is defined.)"""
    work_dir, _ = distilled_gfl
    check_plain_checkpoint(GFL_PLAIN, work_dir / 'epoch_2.pth', 'GFL',
                           synthetic_root, tmp_path,
                           extra='model = dict(test_cfg=dict(score_thr=0.0))\n')
