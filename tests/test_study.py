"""The study tool end to end in its short mode (real, tiny training runs).

One session-scoped study (regime ``frcnn-short``: 2 seeds x KD, EA-KD) is
shared by the tests: its report must hold exactly the paired statistics of the
runs' own results, a rerun must skip every run, a retrained run must give the
bit-identical result (determinism), and the demo reuses the same runs.
"""
import json
import math
import shutil

import pytest
from conftest import ROOT, python_tool, run_tool
from PIL import Image
from pycocotools.coco import COCO
from scipy import stats as scipy_stats

from mmdet_eakd.study.methods import REGIMES
from mmdet_eakd.study.noise import split_halves, subset_ap
from mmdet_eakd.study.runner import write_json
from mmdet_eakd.study.stats import seeds_for_halfwidth

SEEDS = ('0', '1')
METHODS = ('KD', 'EA-KD')


@pytest.fixture(scope='session')
def short_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('study')
    args = python_tool('study.py') + [
        '--regime', 'frcnn-short', '--seeds', *SEEDS, '--methods', *METHODS,
        '--jobs', '2', '--work-dir', str(tmp / 'study'), '--data-root',
        str(tmp / 'data'), '--record-dir', str(tmp / 'record')
    ]
    first = run_tool(args, cwd=ROOT, timeout=1800).stdout
    return args, tmp, first


def _result(work, method, seed):
    return json.loads(
        (work / 'runs' / method / f'seed{seed}' / 'result.json').read_text())


def test_report_holds_the_paired_statistics_of_the_runs(short_study):
    _, tmp, stdout = short_study
    work = tmp / 'study'
    assert 'training the teacher' in stdout
    assert 'done KD/seed0' in stdout and 'done EA-KD/seed1' in stdout
    data = json.loads((work / 'study.json').read_text())
    assert data['seeds'] == [0, 1] and list(data['per_seed']) == list(METHODS)
    for method in METHODS:
        for i, seed in enumerate(SEEDS):
            result = _result(work, method, seed)
            metrics = result['metrics']
            # one evaluation, at the end (epoch 1): the curve is that point
            assert result['curve'] == [[1] + [
                round(100 * metrics[k], 2)
                for k in ('coco/bbox_mAP', 'coco/bbox_mAP_50',
                          'coco/bbox_mAP_75')
            ]]
            for key, label in (('coco/bbox_mAP', 'AP'),
                               ('coco/bbox_mAP_50', 'AP50'),
                               ('coco/bbox_mAP_75', 'AP75')):
                assert data['per_seed'][method][label][i] == pytest.approx(
                    100 * metrics[key])
    (comp, ) = data['comparisons']
    assert (comp['method'], comp['reference']) == ('EA-KD', 'KD')
    diffs = [data['per_seed']['EA-KD']['AP50'][i] -
             data['per_seed']['KD']['AP50'][i] for i in range(2)]
    mean = sum(diffs) / 2
    sd = abs(diffs[0] - diffs[1]) / math.sqrt(2)
    half = scipy_stats.t.ppf(0.975, 1) * sd / math.sqrt(2)  # 12.706 sd / 1.414
    assert comp['AP50']['mean'] == pytest.approx(mean, abs=1e-9)
    assert comp['AP50']['ci_low'] == pytest.approx(mean - half, abs=1e-9)
    assert comp['AP50']['ci_high'] == pytest.approx(mean + half, abs=1e-9)
    # power: the seeds a +-0.3 AP interval needs at the measured paired sd
    assert comp['seeds_for_target'] == seeds_for_halfwidth(
        comp['AP']['std'], 0.3)
    # evaluation noise from the AP of each run's kept detections on two
    # halves of the validation set
    gt = COCO(str(tmp / 'data' / 'annotations' / 'instances_val.json'))
    half_a, half_b = split_halves(gt.getImgIds())
    assert sorted(half_a + half_b) == sorted(gt.getImgIds())
    halves = {}
    for method in METHODS:
        for seed in SEEDS:
            run = work / 'runs' / method / f'seed{seed}'
            detections = json.loads(
                (run / 'predictions.bbox.json').read_text())
            full = subset_ap(gt, detections, gt.getImgIds())
            assert full['AP'] == pytest.approx(
                100 * _result(work, method, seed)['metrics']['coco/bbox_mAP'],
                abs=0.051)  # CocoMetric logs AP rounded to 3 decimals
            halves[method, seed] = [
                subset_ap(gt, detections, ids)['AP']
                for ids in (half_a, half_b)
            ]
    for method in METHODS:
        a, b = zip(*[halves[method, s] for s in SEEDS])
        assert data['eval_noise_std'][method] == pytest.approx(
            abs((a[0] - b[0]) - (a[1] - b[1])) / math.sqrt(2) / 2)
    d = [[halves['EA-KD', s][h] - halves['KD', s][h] for h in (0, 1)]
         for s in SEEDS]
    assert comp['eval_noise_std'] == pytest.approx(
        abs((d[0][0] - d[0][1]) - (d[1][0] - d[1][1])) / math.sqrt(2) / 2)
    table = (work / 'study.md').read_text()
    assert '| EA-KD − KD |' in table and '| KD |' in table
    assert 'seeds for ±0.3' in table and 'eval-noise sd of ΔAP' in table
    assert table in stdout  # printed as well
    with Image.open(work / 'study.png') as image:
        assert image.size[0] > 600 and image.size[1] > 300


def test_rerun_skips_finished_runs_and_retrain_is_deterministic(short_study):
    args, tmp, _ = short_study
    work = tmp / 'study'
    again = run_tool(args, cwd=ROOT, timeout=1800).stdout
    assert '4 of 4 runs already done, skipped' in again
    assert 'reusing cached teacher' in again
    assert '[study] training' not in again

    # Retrain one run from scratch: the same seed gives the same numbers.
    run = work / 'runs' / 'EA-KD' / 'seed1'
    before = _result(work, 'EA-KD', 1)
    old_scalars = next(run.glob('*/vis_data/scalars.json')).read_text()
    shutil.rmtree(run)
    (tmp / 'record' / 'runs' / 'EA-KD' / 'seed1.json').unlink()
    third = run_tool(args, cwd=ROOT, timeout=1800).stdout
    assert '3 of 4 runs already done' in third
    after = _result(work, 'EA-KD', 1)
    assert after['metrics'] == before['metrics']
    new_scalars = next(run.glob('*/vis_data/scalars.json')).read_text()
    losses = [[{k: v for k, v in json.loads(line).items()
                if k.startswith('loss') or k in ('ea_weight', 'entropy_t')}
               for line in text.splitlines()]
              for text in (old_scalars, new_scalars)]
    assert losses[0] == losses[1] and any(losses[0])


def test_record_lets_another_checkout_skip_what_it_holds(short_study):
    """With --record-dir, a study in another folder, with its data
    generated elsewhere and no teacher cache, trains nothing that the record
    holds: the teacher's weights and every run's result come from the record
    (keys leave out where the study and its data lie)."""
    args, tmp, _ = short_study
    record = tmp / 'record'
    teacher = json.loads((record / 'teacher' / 'result.json').read_text())
    assert (record / 'teacher' / 'teacher.pth').is_file()
    recorded = {(m, s): json.loads(
        (record / 'runs' / m / f'seed{s}.json').read_text())
        for m in METHODS for s in SEEDS}
    for (method, seed), result in recorded.items():
        assert result['key'] == _result(tmp / 'study', method, seed)['key']
        assert len(result['halves']) == 2
    elsewhere = args[:args.index('--work-dir')] + [
        '--work-dir', str(tmp / 'elsewhere'), '--data-root',
        str(tmp / 'data_elsewhere'), '--record-dir', str(record)]
    out = run_tool(elsewhere, cwd=ROOT, timeout=1800).stdout
    assert 'teacher taken from the record' in out
    assert '4 of 4 runs already done, skipped' in out
    assert '[study] training' not in out
    assert not (tmp / 'elsewhere' / 'runs').exists()
    moved = json.loads((tmp / 'elsewhere' / 'study.json').read_text())
    kept = json.loads((record / 'study.json').read_text())
    for key in ('per_seed', 'comparisons', 'teacher', 'eval_noise_std'):
        assert moved[key] == kept[key]
    assert moved['teacher']['AP'] == pytest.approx(
        100 * teacher['metrics']['coco/bbox_mAP'])
    for i, seed in enumerate(SEEDS):
        assert moved['per_seed']['KD']['AP'][i] == pytest.approx(
            100 * recorded['KD', seed]['metrics']['coco/bbox_mAP'])
    # the wall time adds up in the record over every invocation (this one and
    # the fixture's at least; other tests rerun the study too); the threads
    # are the runs' own, not those of the invocation that trained nothing
    times = json.loads((record / 'wall_time.json').read_text())
    assert len(times) >= 2 and kept['wall_time_s'] == pytest.approx(
        sum(times), abs=0.2)
    assert kept['threads_per_job'] == max(r['threads']
                                          for r in recorded.values())


def test_recorded_result_of_another_key_does_not_count(tmp_path):
    run = _fake_run(tmp_path / 'work', key='k2')
    run.record_file = tmp_path / 'record' / 'KD' / 'seed0.json'
    write_json(run.record_file, dict(key='k1', metrics={}))
    assert run.done() is None
    write_json(run.record_file, dict(key='k2', metrics={'x': 1}))
    assert run.done() == dict(key='k2', metrics={'x': 1})


def test_demo_short_mode_reuses_the_study_runs(short_study):
    _, tmp, _ = short_study
    work = tmp / 'study'
    out = run_tool(python_tool('demo.py') + [
        '--short', '--seeds', *SEEDS, '--work-dir', str(work), '--data-root',
        str(tmp / 'data')
    ], cwd=ROOT, timeout=1800).stdout
    # KD and EA-KD runs of the study are reused; only the baselines train.
    assert '4 of 6 runs already done, skipped' in out
    assert 'done student/seed0' in out and 'done student/seed1' in out
    data = json.loads((work / 'study.json').read_text())
    assert list(data['per_seed']) == ['student', 'KD', 'EA-KD']
    assert [(c['method'], c['reference']) for c in data['comparisons']] == [
        ('KD', 'student'), ('EA-KD', 'student'), ('EA-KD', 'KD')]
    assert '| EA-KD − KD |' in out and 'EA-KD demo' in out
    assert "[demo] regime 'frcnn-short' (--short)" in out


def test_control_arms_measured_weight_and_foreground_rois(short_study):
    """KD-xEA trains after EA-KD with loss_weight = the mean EA weight the
    EA-KD runs logged; KD-fg distils the foreground RoIs."""
    args, tmp, _ = short_study
    work = tmp / 'study'
    out = run_tool(python_tool('study.py') + [
        '--regime', 'frcnn-short', '--seeds', *SEEDS, '--methods', 'EA-KD',
        'KD-xEA', 'KD-fg', '--jobs', '2', '--work-dir', str(work),
        '--data-root', str(tmp / 'data')
    ], cwd=ROOT, timeout=1800).stdout
    assert '2 of 4 runs already done' in out  # EA-KD reused
    weights = [_result(work, 'EA-KD', s)['ea_weight'] for s in SEEDS]
    assert all(w is not None and 0 < w < math.log(9) for w in weights)
    for seed in SEEDS:
        config = (work / 'runs' / 'KD-xEA' / f'seed{seed}' /
                  'config.py').read_text()
        assert f"loss_weight={round(sum(weights) / 2, 4)}" in config
        assert "weight_mode='none'" in config
        fg = (work / 'runs' / 'KD-fg' / f'seed{seed}' / 'config.py').read_text()
        assert "distill_rois='foreground'" in fg
    data = json.loads((work / 'study.json').read_text())
    pairs = [(c['method'], c['reference']) for c in data['comparisons']]
    assert ('EA-KD', 'KD-xEA') in pairs and ('EA-KD', 'KD-fg') in pairs
    with pytest.raises(Exception, match='KD-xEA \\(needs EA-KD\\)'):
        from mmdet_eakd.study import REGIMES
        from mmdet_eakd.study.methods import resolve_methods
        resolve_methods(['KD', 'KD-xEA'], REGIMES['frcnn-short'])


def test_study_rejects_bad_methods_and_seeds(tmp_path):
    from mmdet_eakd.study import REGIMES, run_study
    from mmdet_eakd.study.methods import resolve_methods
    frcnn, gfl = REGIMES['frcnn-short'], REGIMES['gfl-short']
    with pytest.raises(ValueError, match="unknown method"):
        resolve_methods(['KD', 'FitNet'], frcnn)
    with pytest.raises(ValueError, match='listed twice'):
        resolve_methods(['KD', 'KD'], frcnn)
    # DKD has no sigmoid loss: a dense (sigmoid) regime refuses it by name
    with pytest.raises(ValueError, match=r"\['DKD'\] have no sigmoid loss"):
        resolve_methods(['KD', 'DKD'], gfl)
    # ... and a softmax (RoI) regime has no location options
    with pytest.raises(ValueError, match=r"\['KD-pos'\] have no softmax"):
        resolve_methods(['KD', 'KD-pos'], frcnn)
    assert [m.name for m in resolve_methods(gfl.methods, gfl)] == list(
        gfl.methods)
    with pytest.raises(ValueError, match='distinct non-negative'):
        run_study(REGIMES['frcnn-short'], ['KD'], [0, 0], tmp_path)


def test_dense_regime_trains_sigmoid_losses_end_to_end(tmp_path):
    """The study tool runs a dense (GFL, sigmoid) regime: its teacher, the
    sigmoid KD loss and an entropy-temperature arm, through real runs. Run
    from another directory, its relative data and work dirs land there, and
    its runs train the package's shipped configs."""
    work = tmp_path / 'study'
    out = run_tool(python_tool('study.py') + [
        '--regime', 'gfl-short', '--seeds', '0', '--methods', 'KD',
        'EA-KD-T3', '--jobs', '2', '--work-dir', 'study', '--data-root', 'data'
    ], cwd=tmp_path, timeout=1800).stdout
    assert 'done KD/seed0' in out and 'done EA-KD-T3/seed0' in out
    assert (tmp_path / 'data' / 'synthetic_manifest.json').is_file()
    from mmdet_eakd.scope import config_dir
    from mmengine.config import Config

    from mmdet_eakd.losses import SIGMOID_ENTROPY_TEMPERATURE
    kd, arm = (Config.fromfile(str(work / 'runs' / m / 'seed0' / 'config.py'))
               .model for m in ('KD', 'EA-KD-T3'))
    assert kd.distill_loss.type == arm.distill_loss.type == 'SigmoidEAKDLoss'
    assert kd.teacher.config == str(
        config_dir() / 'synthetic' / 'gfl_teacher_synthetic.py')
    assert (kd.distill_loss.weight_mode, arm.distill_loss.weight_mode) == (
        'none', 'ea')
    assert 'entropy_temperature' not in kd.distill_loss  # the loss's default
    assert SIGMOID_ENTROPY_TEMPERATURE != 3.0
    assert arm.distill_loss.entropy_temperature == 3.0
    assert kd.test_cfg.score_thr == arm.test_cfg.score_thr == 0.0
    log = (work / 'runs' / 'EA-KD-T3' / 'seed0' / 'train.log').read_text()
    assert 'kd_fg_share' in log and 'loss_dfl' in log
    data = json.loads((work / 'study.json').read_text())
    assert [(c['method'], c['reference']) for c in data['comparisons']] == [
        ('EA-KD-T3', 'KD')]


def test_method_overrides_merge_into_the_kd_config(tmp_path):
    """Each arm's override (loss type, weight mode, T', locations, loss
    weight, the regime's score threshold) is merged into the KD config's
    model, whose other settings stay (the teacher's config beside the study's
    teacher checkpoint); the config file a run trains reads back the same."""
    from mmengine.config import Config

    from mmdet_eakd.study import METHODS, REGIMES
    from mmdet_eakd.study.runner import method_config
    regime = REGIMES['gfl-short']
    expected = {
        'KD': dict(weight_mode='none'),
        'EA-KD-T3': dict(weight_mode='ea', entropy_temperature=3.0),
        'KD-pos': dict(weight_mode='none'),
        'KD-x0.1': dict(weight_mode='none', loss_weight=0.1),
    }
    data, init = tmp_path / 'data', tmp_path / 'init.pth'
    for name, loss in expected.items():
        config = method_config(METHODS[name], regime, data, 0, init,
                               tmp_path / 'teacher.pth')
        path = tmp_path / f'{name}.py'
        config.dump(path)
        cfg = Config.fromfile(str(path))
        assert cfg.to_dict() == config.to_dict(), name
        model = cfg.model
        assert model.type == 'DenseDistillSingleStageDetector'
        assert model.teacher.checkpoint == str(tmp_path / 'teacher.pth')
        assert model.teacher.config.endswith('/gfl_teacher_synthetic.py')
        assert model.distill_loss.type == 'SigmoidEAKDLoss'
        for key, value in loss.items():
            assert model.distill_loss[key] == value, (name, key)
        assert model.distill_loss.get('loss_weight', 1.0) == loss.get(
            'loss_weight', 1.0)
        assert model.distill_locations == ('positives' if name == 'KD-pos'
                                           else 'all')
        assert model.test_cfg.score_thr == 0.0
        assert model.bbox_head.type == 'GFLHead'
        assert cfg.load_from == str(init)
        assert cfg.train_dataloader.dataset.data_root == f'{data}/'
        assert cfg.test_evaluator.ann_file == (
            f'{data}/annotations/instances_val.json')
        assert cfg.train_cfg.max_epochs == regime.student_epochs


def test_feature_arms_add_a_pkd_term(tmp_path):
    """PKD, EA-PKD and EA-KD+EA-PKD replace the KD config's loss by named
    terms: feat (EAPKDLoss at weight 6, with the regime's 32 -> 64
    connector) and, for EA-KD+EA-PKD, cls (the KD config's loss as EA-KD);
    the Faster R-CNN arms build with a teacher of the regime."""
    import copy

    import torch
    from mmengine.config import Config

    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmdet_eakd.losses import SOFTMAX
    from mmdet_eakd.study import METHODS, REGIMES
    from mmdet_eakd.study.methods import resolve_methods
    from mmdet_eakd.study.runner import method_config
    register_all_modules()
    names = ('PKD', 'EA-PKD', 'EA-KD+EA-PKD')
    data, init = tmp_path / 'data', tmp_path / 'init.pth'
    teacher = tmp_path / 'teacher.pth'
    for regime_name in ('frcnn-short', 'gfl-short'):
        regime = REGIMES[regime_name]
        assert [m.name for m in resolve_methods(names, regime)] == list(names)
        for name in names:
            model = method_config(METHODS[name], regime, data, 0, init,
                                  teacher).model
            assert model.distill_loss is None
            feat = model.distill_terms.feat
            assert feat == dict(
                type='EAPKDLoss', loss_weight=6.0, student_channels=32,
                teacher_channels=64,
                weight_mode='none' if name == 'PKD' else 'ea')
            cls = model.distill_terms.get('cls')
            assert (cls is None) == (name != 'EA-KD+EA-PKD')
            if cls is not None:
                assert cls.weight_mode == 'ea' and cls.temperature == 1.0
                assert cls.type == ('EAKDLoss' if regime.classifier ==
                                    SOFTMAX else 'SigmoidEAKDLoss')
            if regime_name == 'frcnn-short':
                teacher_cfg = Config.fromfile(model.teacher.config).model
                torch.save({'state_dict': MODELS.build(
                    teacher_cfg).state_dict()}, teacher)
                built = MODELS.build(copy.deepcopy(model))
                assert [t.name for t in built.terms()] == list(
                    model.distill_terms)


def test_localization_arms_add_an_ld_term(tmp_path):
    """LD, EA-LD, KD+LD, EA-KD+LD and EA-KD+EA-LD build named terms: box
    (EALDLoss with mmdet's LD settings, T = 10, weight 0.25, the arm's
    weight mode) and, with a logit loss, cls (the KD config's sigmoid loss
    with the arm's weight mode); the GFL arms build with a teacher of the
    regime; RoI regimes refuse them by name."""
    import copy

    import torch
    from mmengine.config import Config

    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmdet_eakd.study import METHODS, REGIMES
    from mmdet_eakd.study.methods import resolve_methods
    from mmdet_eakd.study.runner import method_config
    register_all_modules()
    arms = {'LD': (None, 'none'), 'EA-LD': (None, 'ea'),
            'KD+LD': ('none', 'none'), 'EA-KD+LD': ('ea', 'none'),
            'EA-KD+EA-LD': ('ea', 'ea')}
    regime = REGIMES['gfl-short']
    assert [m.name for m in resolve_methods(list(arms), regime)] == list(arms)
    data, init = tmp_path / 'data', tmp_path / 'init.pth'
    teacher = tmp_path / 'teacher.pth'
    teacher_cfg = Config.fromfile(
        method_config(METHODS['LD'], regime, data, 0, init,
                      teacher).model.teacher.config).model
    torch.save({'state_dict': MODELS.build(teacher_cfg).state_dict()},
               teacher)
    for name, (cls_mode, box_mode) in arms.items():
        model = method_config(METHODS[name], regime, data, 0, init,
                              teacher).model
        assert model.distill_loss is None
        assert model.distill_terms.box == dict(
            type='EALDLoss', temperature=10.0, loss_weight=0.25,
            weight_mode=box_mode)
        cls = model.distill_terms.get('cls')
        assert (cls is None) == (cls_mode is None), name
        if cls is not None:
            assert cls.type == 'SigmoidEAKDLoss'
            assert cls.weight_mode == cls_mode
        built = MODELS.build(copy.deepcopy(model))
        assert [t.name for t in built.terms()] == list(model.distill_terms)
    with pytest.raises(ValueError, match=r"\['EA-LD'\] have no softmax"):
        resolve_methods(['EA-LD'], REGIMES['frcnn-short'])


def test_killed_run_resumes_from_its_last_checkpoint(short_study):
    # A run killed after its last checkpoint but before its result: the
    # rerun resumes it (no retraining) and reads its metrics from the logs.
    args, tmp, _ = short_study
    work = tmp / 'study'
    before = _result(work, 'KD', 0)
    (work / 'runs' / 'KD' / 'seed0' / 'result.json').unlink()
    (tmp / 'record' / 'runs' / 'KD' / 'seed0.json').unlink()
    again = run_tool(args, cwd=ROOT, timeout=1800).stdout
    assert '3 of 4 runs already done' in again
    assert 'KD/seed0 resumes from its last checkpoint' in again
    after = _result(work, 'KD', 0)
    assert after['resumed'] is True and before['resumed'] is False
    assert after['metrics'] == before['metrics']
    assert after['curve'] == before['curve']
    assert after['ea_weight'] == before['ea_weight']


def _fake_run(tmp_path, key='k1'):
    from mmengine.config import Config

    from mmdet_eakd.study.runner import Run
    return Run(name='KD/seed0', seed=0, work_dir=tmp_path / 'run',
               config=Config(), epochs=6, key=key, threads=1)


def test_a_run_another_process_trains_is_waited_for_not_retrained(
        tmp_path):
    """While another process holds a run's lock, ``run_all`` waits; when
    that process has finished the run (same key), it is skipped."""
    import fcntl
    import threading

    from mmdet_eakd.study.runner import run_all
    run = _fake_run(tmp_path, key='k1')
    run.work_dir.mkdir(parents=True)
    lines = []
    waiting = threading.Event()

    def log(line):
        lines.append(line)
        if 'being trained by another process' in line:
            waiting.set()

    with open(run.work_dir / '.lock', 'w') as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        results = {}
        worker = threading.Thread(
            target=lambda: results.update(run_all([run], jobs=1, log=log)))
        worker.start()
        assert waiting.wait(30)
        assert worker.is_alive()  # it waits, it does not train
        write_json(run.result_file, dict(key='k1', metrics={'m': 1.0}))
        fcntl.flock(other, fcntl.LOCK_UN)
    worker.join(30)
    assert not worker.is_alive()
    assert results == {'KD/seed0': dict(key='k1', metrics={'m': 1.0})}
    assert any('finished meanwhile by another process' in line
               for line in lines)
    assert not (run.work_dir / 'train.log').exists()


def test_work_dir_resumes_only_a_run_of_the_same_key(tmp_path):
    from mmdet_eakd.study.runner import prepare_work_dir, resumable
    run = _fake_run(tmp_path)
    assert prepare_work_dir(run) is False  # empty: a fresh start
    work = run.work_dir
    (work / '20261201_101010' / 'vis_data').mkdir(parents=True)
    (work / 'epoch_3.pth').write_bytes(b'x')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_3.pth'))
    (work / 'predictions.bbox.json').write_text('[]')
    (work / 'config.py').write_text('x = 1')
    assert resumable(run) and prepare_work_dir(run) is True
    assert (work / 'epoch_3.pth').is_file()  # nothing removed on resume
    # A dangling pointer (checkpoint gone) does not resume.
    (work / 'epoch_3.pth').unlink()
    assert not resumable(run)
    (work / 'epoch_3.pth').write_bytes(b'x')
    # Another key (changed config, weights or teacher): its checkpoint, logs
    # and predictions go, the new key is recorded, the rest stays.
    other = _fake_run(tmp_path, key='k2')
    assert not resumable(other) and prepare_work_dir(other) is False
    assert sorted(p.name for p in work.iterdir()) == ['config.py',
                                                      'started.json']
    assert json.loads((work / 'started.json').read_text()) == {'key': 'k2'}


def test_logged_mean_counts_a_relogged_iteration_once(tmp_path):
    from mmdet_eakd.study.runner import evaluations, logged_mean
    first = tmp_path / '20261201_100000' / 'vis_data'
    second = tmp_path / '20261201_110000' / 'vis_data'
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    ap = 'coco/bbox_mAP'
    metrics = {ap: 0.1, 'coco/bbox_mAP_50': 0.2, 'coco/bbox_mAP_75': 0.05}
    # iterations 10, 20 logged; killed after 20, resumed from the checkpoint
    # at 10: 20 is logged again with another value.
    first.joinpath('scalars.json').write_text('\n'.join(
        json.dumps(r) for r in [dict(ea_weight=1.0, step=10),
                                dict(metrics, step=1),
                                dict(ea_weight=3.0, step=20)]))
    second.joinpath('scalars.json').write_text('\n'.join(
        json.dumps(r) for r in [dict(ea_weight=2.0, step=20),
                                dict(metrics, step=2)]))
    assert logged_mean(tmp_path, 'ea_weight') == pytest.approx(1.5)
    assert [epoch for epoch, _ in evaluations(tmp_path)] == [1, 2]


def test_epoch_means_of_the_logged_statistics(tmp_path):
    from mmdet_eakd.study.runner import logged_epoch_means
    first = tmp_path / '20261201_100000' / 'vis_data'
    second = tmp_path / '20261201_110000' / 'vis_data'
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    records = [
        dict(ea_weight=1.0, ea_weight_fg=2.0, loss_cls=9.0, epoch=1, step=1),
        dict(ea_weight=3.0, ea_weight_fg=4.0, loss_cls=9.0, epoch=1, step=2),
        {'coco/bbox_mAP': 0.1, 'step': 1},
        dict(ea_weight=5.0, epoch=2, step=3),
        dict(ea_weight=8.0, epoch=3, step=5),  # killed; resumed at step 4
    ]
    first.joinpath('scalars.json').write_text('\n'.join(
        json.dumps(r) for r in records))
    second.joinpath('scalars.json').write_text('\n'.join(
        json.dumps(r) for r in [dict(ea_weight=6.0, epoch=3, step=4),
                                dict(ea_weight=7.0, epoch=3, step=5)]))
    assert logged_epoch_means(tmp_path) == dict(
        ea_weight=[2.0, 5.0, 6.5], ea_weight_fg=[3.0, None, None])


def test_short_study_results_keep_the_epoch_statistics(short_study):
    from mmdet_eakd.study.runner import logged_epoch_means
    _, tmp, _ = short_study
    for method in METHODS:
        run = tmp / 'study' / 'runs' / method / 'seed0'
        result = _result(tmp / 'study', method, 0)
        stats = result['stats_by_epoch']
        assert stats == logged_epoch_means(run)
        assert {'loss_kd', 'ea_weight', 'ea_weight_fg', 'ea_weight_bg',
                'entropy_t', 'entropy_s'} <= set(stats)
        assert stats['ea_weight'][0] == pytest.approx(result['ea_weight'])


@pytest.mark.parametrize('name', sorted(REGIMES))
def test_each_regime_distils_exactly_its_plain_student(name):
    # The paired comparison is fair only if the distilling arms train the
    # student of the `student` arm: same model fields (bar the detector type
    # and the distillation keys), data, optimizer and schedule.
    from mmengine.config import Config

    from mmdet_eakd.scope import config_path
    regime = REGIMES[name]
    plain = Config.fromfile(config_path(regime.student_config)).to_dict()
    kd = Config.fromfile(config_path(regime.kd_config)).to_dict()
    distill_keys = {'type', 'teacher', 'distill_loss', 'distill_terms',
                    'distill_locations', 'distill_rois'}
    assert {k: v for k, v in kd['model'].items() if k not in distill_keys} \
        == {k: v for k, v in plain['model'].items() if k != 'type'}
    for key in ('train_dataloader', 'val_dataloader', 'optim_wrapper',
                'param_scheduler', 'train_cfg', 'randomness'):
        assert kd.get(key) == plain.get(key), key


@pytest.mark.parametrize('name', sorted(REGIMES))
def test_each_default_arm_trains_the_regime_student(name, tmp_path):
    # Every arm a regime runs by default resolves (its loss exists for the
    # regime's classifiers and heads) and trains the regime's own student,
    # for the student schedule, from the shared initial weights; the
    # distilling arms read the regime's teacher config.
    from mmengine.config import Config

    from mmdet_eakd.scope import config_path
    from mmdet_eakd.study.methods import resolve_methods
    from mmdet_eakd.study.runner import method_config
    regime = REGIMES[name]
    plain = Config.fromfile(config_path(regime.student_config)).model
    teacher = config_path(regime.teacher_config)
    for method in resolve_methods(list(regime.methods), regime):
        measured = 0.5 if method.loss_weight_from is not None else None
        config = method_config(method, regime, tmp_path / 'data', 0,
                               tmp_path / 'init.pth',
                               tmp_path / 'teacher.pth',
                               loss_weight=measured)
        for part in ('backbone', 'neck', 'bbox_head', 'roi_head'):
            assert config.model.get(part) == plain.get(part), (method, part)
        assert config.train_cfg.max_epochs == regime.student_epochs
        assert config.load_from == str(tmp_path / 'init.pth')
        if method.distills:
            assert config.model.teacher.config == teacher, method.name


def _partial_run(tmp_path, work, key='k1'):
    from mmengine.config import Config

    from mmdet_eakd.study.runner import Run
    return Run(name='KD/seed0', seed=0, work_dir=tmp_path / work,
               config=Config(), epochs=6, key=key, threads=1,
               record_file=tmp_path / 'record' / 'runs' / 'KD' /
               'seed0.json')


def _fake_training_state(run, epoch):
    """What a training run leaves in its work dir after ``epoch``."""
    from mmdet_eakd.study.runner import STARTED_FILE
    work = run.work_dir
    work.mkdir(parents=True, exist_ok=True)
    write_json(work / STARTED_FILE, dict(key=run.key))
    for old in work.glob('epoch_*.pth'):
        old.unlink()
    checkpoint = work / f'epoch_{epoch}.pth'
    checkpoint.write_bytes(bytes([epoch]) * 64)
    (work / 'last_checkpoint').write_text(str(checkpoint))
    logs = work / '20261202_101010' / 'vis_data'
    logs.mkdir(parents=True, exist_ok=True)
    (logs / 'scalars.json').write_text(f'{{"epoch": {epoch}}}\n')
    (work / 'train.log').write_text(f'log up to epoch {epoch}\n')
    (work / 'predictions.bbox.json').write_text('[]')


def test_a_recorded_snapshot_resumes_the_run_on_another_machine(tmp_path):
    """The record keeps an unfinished run's key, last checkpoint and logs;
    a fresh work dir (another machine) with the same key resumes from them,
    a run of another key ignores them, and a new snapshot replaces the old
    one whole."""
    from mmdet_eakd.study.runner import (STARTED_FILE, prepare_work_dir,
                                         recorded_partial, resumable,
                                         snapshot_partial)
    first = _partial_run(tmp_path, 'machine1')
    _fake_training_state(first, 3)
    partial = snapshot_partial(first)
    assert partial == tmp_path / 'record' / 'runs' / 'KD' / 'seed0.partial'
    assert sorted(p.name for p in partial.iterdir()) == [
        '20261202_101010', 'epoch_3.pth', 'last_checkpoint', STARTED_FILE,
        'train.log']  # no predictions: not needed to resume
    _fake_training_state(first, 6)
    snapshot_partial(first)
    assert not (partial / 'epoch_3.pth').exists()
    assert (partial / 'last_checkpoint').read_text() == 'epoch_6.pth'
    assert [p.name for p in partial.parent.iterdir()] == ['seed0.partial']

    other_key = _partial_run(tmp_path, 'machine2', key='k2')
    assert recorded_partial(other_key) is None
    assert prepare_work_dir(other_key) is False
    assert not (other_key.work_dir / 'epoch_6.pth').exists()

    second = _partial_run(tmp_path, 'machine3')
    assert recorded_partial(second) == partial
    assert prepare_work_dir(second) is True
    assert resumable(second)
    pointer = (second.work_dir / 'last_checkpoint').read_text()
    assert pointer == str(second.work_dir / 'epoch_6.pth')
    assert (second.work_dir / 'epoch_6.pth').read_bytes() == bytes([6]) * 64
    assert (second.work_dir / '20261202_101010' / 'vis_data' /
            'scalars.json').read_text() == '{"epoch": 6}\n'
    assert (second.work_dir / 'train.log').read_text() == \
        'log up to epoch 6\n'
    with pytest.raises(ValueError, match='no snapshot'):
        snapshot_partial(_fake_run(tmp_path))
    # the training removed the named checkpoint meanwhile: the snapshot
    # before stays, whole, and nothing is left beside it
    (second.work_dir / 'epoch_6.pth').unlink()
    assert snapshot_partial(second) is None
    assert (partial / 'epoch_6.pth').read_bytes() == bytes([6]) * 64
    assert [p.name for p in partial.parent.iterdir()] == ['seed0.partial']


def test_a_run_snapshots_its_checkpoints_and_resumes_elsewhere(
        tmp_path, synthetic_root, monkeypatch):
    """A recorded 2-epoch run keeps its epoch-1 checkpoint in the record
    while it trains and drops it when done; from that snapshot alone a run
    in a fresh work dir resumes at epoch 2, with epoch 1's evaluation read
    from the snapshot's logs."""
    from mmdet_eakd.study import runner
    regime = REGIMES['frcnn-short']
    config = runner.run_config(regime.student_config, synthetic_root, 2,
                               seed=0, eval_interval=1)
    config.default_hooks.logger.interval = 1  # a line every iteration
    monkeypatch.setattr(runner, 'RESUME_INTERVAL', 1)
    kept = []
    snapshot = runner.snapshot_partial

    def keep_a_copy(run):
        partial = snapshot(run)
        if partial is not None:
            kept.append(tmp_path / f'copy{len(kept)}')
            shutil.copytree(partial, kept[-1])
        return partial

    monkeypatch.setattr(runner, 'snapshot_partial', keep_a_copy)
    record = tmp_path / 'record' / 'seed0.json'

    def make_run(work):
        return runner.Run(name='student/seed0', seed=0,
                          work_dir=tmp_path / work, config=config, epochs=2,
                          key='k', threads=1, record_file=record)

    whole = runner.train(make_run('machine1'))
    assert [p.name for p in record.parent.iterdir()] == ['seed0.json']
    assert len(kept) == 1
    assert (kept[0] / 'last_checkpoint').read_text() == 'epoch_1.pth'
    record.unlink()
    shutil.copytree(kept[0], record.with_suffix('.partial'))
    resumed = runner.train(make_run('machine2'))
    log = (tmp_path / 'machine2' / 'train.log').read_text()
    assert 'resumed epoch: 1' in log
    assert resumed['resumed'] is True and whole['resumed'] is False
    assert [row[0] for row in resumed['curve']] == [1, 2]
    assert resumed['curve'][0] == whole['curve'][0]
    assert [p.name for p in record.parent.iterdir()] == ['seed0.json']


def test_a_folder_of_another_regime_is_refused_before_training(tmp_path):
    """A study folder or record holds runs by method and seed only: a study
    of another regime pointed at it would replace them, so it is refused by
    name (from the folder's regime.json, or an older report's study.json)
    before anything is written there; a folder of its own regime is marked
    and accepted again."""
    from mmdet_eakd.study.pipeline import REGIME_FILE, claim_folder, run_study
    regime = REGIMES['frcnn-short']
    record = tmp_path / 'record'
    write_json(record / 'study.json', dict(regime=dict(name='frcnn-conv')))
    with pytest.raises(ValueError,
                       match=r"--record-dir .*record holds the study of "
                       r"regime 'frcnn-conv'.*regime 'frcnn-short'"):
        run_study(regime, ['KD'], [0], tmp_path / 'work', record_dir=record,
                  data_root=str(tmp_path / 'data'))
    assert not (tmp_path / 'data').exists()
    assert sorted(p.name for p in record.iterdir()) == ['study.json']

    work = tmp_path / 'work'  # claimed by the refused call: frcnn-short's
    assert json.loads((work / REGIME_FILE).read_text()) == dict(
        regime='frcnn-short')
    claim_folder(work, regime, '--work-dir')
    with pytest.raises(ValueError, match=r"--work-dir .*'frcnn-short'.*"
                       r"regime 'gfl-short'"):
        claim_folder(work, REGIMES['gfl-short'], '--work-dir')
