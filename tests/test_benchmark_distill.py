"""tools/benchmark_distill.py: output format and that every variant ran.

Not a timed test: a tiny configuration (demo configs, 64x64 image, one step).
"""
import json
import math

import pytest
from conftest import SYNTHETIC_CONFIGS, load_tool, python_tool, run_tool

EAKD_CFG = SYNTHETIC_CONFIGS / 'eakd_frcnn_teacher_tiny_synthetic.py'
CASCADE_CFG = SYNTHETIC_CONFIGS / 'cascade_eakd_teacher_tiny_synthetic.py'
#: cls (SigmoidEAKDLoss), box (EALDLoss), feat (EAPKDLoss) on a GFL pair.
TERMS_CFG = SYNTHETIC_CONFIGS / 'eakd_eald_eapkd_gfl_teacher_tiny_synthetic.py'
TERM_NAMES = ('cls', 'box', 'feat')
ROOT = SYNTHETIC_CONFIGS.parents[1]


def _check_result(res, tool, config, steps, memory, variants=None):
    variants = variants or tool.VARIANTS
    assert res['config'] == str(config)
    assert res['num_rois'] > 0
    assert set(res['variants']) == set(variants)
    for name, row in res['variants'].items():
        assert len(row['times_s']) == steps, name
        assert row['median_s'] > 0, name
        assert (row['peak_memory_mib'] is not None) == memory, name
    ratios, intervals = res['ratios'], res['ratio_intervals']
    for key, (names, _) in tool.RATIOS.items():
        if not set(names) <= set(variants):
            assert key not in ratios, key
            continue
        assert math.isfinite(ratios[key]), key
        low, high = intervals[key]
        assert low <= ratios[key] <= high, key
    assert set(res['targets']) == {
        f'{key} {op} {bound}' for key, (op, bound) in tool.TARGETS.items()
    }
    return ratios


def test_tiny_run_writes_all_variants_and_ratios(tmp_path):
    tool = load_tool('benchmark_distill')
    out = tmp_path / 'bench.json'
    result = run_tool(
        python_tool('benchmark_distill.py') + [
            '--config', str(EAKD_CFG), '--img-size', '64', '--batch-size',
            '1', '--steps', '1', '--warmup', '0', '--memory-steps', '1',
            '--memory-jobs', '2', '--json', str(out)
        ],
        cwd=tmp_path, timeout=300)
    assert 'eakd_over_kd' in result.stdout
    data = json.loads(out.read_text())
    assert {'cpu', 'cpu_count', 'torch', 'device'} <= set(data['machine'])
    (res, ) = data['results']
    ratios = _check_result(res, tool, EAKD_CFG, steps=1, memory=True)
    assert set(ratios['memory_over_student']) == set(tool.VARIANTS)
    assert ratios['memory_over_student']['student'] == pytest.approx(1.0)
    # one round never resolves a target
    assert {t['verdict'] for t in res['targets'].values()} == {'not resolved'}


def test_cascade_run_gives_intervals_and_verdicts(tmp_path):
    """Cascade R-CNN (every variant, the naive one per teacher stage) over
    enough rounds for verdicts; the RoIs of all three stages are counted."""
    tool = load_tool('benchmark_distill')
    out = tmp_path / 'bench.json'
    result = run_tool(
        python_tool('benchmark_distill.py') + [
            '--config', str(CASCADE_CFG), '--img-size', '64',
            '--batch-size', '1', '--steps', '5', '--warmup', '0',
            '--memory-steps', '0', '--json', str(out)
        ],
        cwd=tmp_path, timeout=300)
    (res, ) = json.loads(out.read_text())['results']
    _check_result(res, tool, CASCADE_CFG, steps=5, memory=False)
    assert 'eakd_over_kd' in result.stdout and '[' in result.stdout
    for target in res['targets'].values():
        assert target['verdict'] in ('met', 'MISSED', 'not resolved')
        low, high = target['interval']
        assert low <= high


def test_dense_run_times_the_sigmoid_variants(tmp_path):
    """A dense (GFL, sigmoid) config: KD and EA-KD with SigmoidEAKDLoss, no
    DKD variants (no sigmoid DKD), every location of the batch counted."""
    tool = load_tool('benchmark_distill')
    config = SYNTHETIC_CONFIGS / 'eakd_gfl_teacher_tiny_synthetic.py'
    out = tmp_path / 'bench.json'
    result = run_tool(
        python_tool('benchmark_distill.py') + [
            '--config', str(config), '--img-size', '64', '--batch-size', '1',
            '--steps', '1', '--warmup', '0', '--memory-steps', '0', '--json',
            str(out)
        ],
        cwd=tmp_path, timeout=300)
    (res, ) = json.loads(out.read_text())['results']
    dense = ['student', 'teacher_forward', 'kd', 'eakd', 'naive']
    _check_result(res, tool, config, steps=1, memory=False, variants=dense)
    # 64 x 64 input, strides 4-32, one anchor per location
    assert res['num_rois'] == sum((64 // s)**2 for s in (4, 8, 16, 32))
    assert 'eakd_over_kd' in result.stdout
    assert 'eadkd_over_dkd' not in result.stdout


def test_tools_hold_no_capture_logic():
    """The benchmark and the analysis tool go through the package's public
    API: no hooks of their own, no private methods of the model."""
    for name in ('benchmark_distill.py', 'analyze_entropy.py',
                 'sweep_entropy_temperature.py'):
        source = (ROOT / 'tools' / name).read_text()
        for needle in ('register_forward', '_bbox_forward', '_capture',
                       'roi_head.'):
            assert needle not in source, (name, needle)


def test_variant_subset_sizes_and_teacher_autocast(tmp_path):
    """What the GPU check runs: a subset of the variants, a WxH image size,
    and the teacher-autocast variants (a model copy with the same weights);
    ratios of variants that did not run are left out."""
    tool = load_tool('benchmark_distill')
    out = tmp_path / 'bench.json'
    variants = ['student', 'teacher_forward', 'eakd', 'teacher_forward_amp',
                'eakd_amp']
    result = run_tool(
        python_tool('benchmark_distill.py') + [
            '--config', str(EAKD_CFG), '--img-size', '96x64', '--batch-size',
            '1', '--steps', '2', '--warmup', '0', '--memory-steps', '0',
            '--teacher-autocast', 'bf16', '--variants', *variants,
            '--json', str(out)
        ],
        cwd=tmp_path, timeout=300)
    (res, ) = json.loads(out.read_text())['results']
    assert res['img_size'] == [64, 96] and res['teacher_autocast'] == 'bf16'
    assert list(res['variants']) == variants
    assert 'images 1 x 96x64 (WxH)' in result.stdout
    ratios = res['ratios']
    assert 'eakd_over_kd' not in ratios and 'naive_over_eakd' not in ratios
    for key in ('teacher_forward_amp_over_teacher_forward',
                'eakd_amp_over_eakd',
                'eakd_amp_minus_student_over_teacher_forward_amp',
                'eakd_minus_student_over_teacher_forward'):
        low, high = res['ratio_intervals'][key]
        assert low <= ratios[key] <= high, key
    assert set(res['targets']) == {
        'eakd_minus_student_over_teacher_forward <= 1.1'}


def test_named_terms_run_times_each_term_and_their_sum(tmp_path):
    """A config with named terms (cls EA-KD, box EA-LD, feat EA-PKD): the
    student, the teacher forward, each term alone and all together, with
    each one's extra cost over the student step and the sum's over the
    teacher forward, as ratios with intervals; no targets."""
    tool = load_tool('benchmark_distill')
    out = tmp_path / 'bench.json'
    result = run_tool(
        python_tool('benchmark_distill.py') + [
            '--config', str(TERMS_CFG), '--img-size', '64', '--batch-size',
            '1', '--steps', '2', '--warmup', '0', '--memory-steps', '0',
            '--json', str(out)
        ],
        cwd=tmp_path, timeout=300)
    (res, ) = json.loads(out.read_text())['results']
    variants = ['student', 'teacher_forward'] + [
        f'term:{name}' for name in TERM_NAMES] + ['terms']
    assert list(res['variants']) == variants
    assert res['num_rois'] > 0
    for name, row in res['variants'].items():
        assert len(row['times_s']) == 2, name
        assert all(math.isfinite(t) and t > 0 for t in row['times_s']), name
        assert row['median_s'] > 0, name
    expected = tool.terms_ratios(TERM_NAMES)
    assert set(expected) == {
        'term:cls_minus_student_over_student',
        'term:box_minus_student_over_student',
        'term:feat_minus_student_over_student',
        'terms_minus_student_over_student',
        'terms_minus_student_over_teacher_forward',
    }
    ratios, intervals = res['ratios'], res['ratio_intervals']
    assert set(ratios) == set(expected) | {'memory_over_student'}
    for key in expected:
        assert math.isfinite(ratios[key]), key
        low, high = intervals[key]
        assert low <= ratios[key] <= high, key
        assert key in result.stdout
    assert res['targets'] == {}
    assert 'term:feat' in result.stdout


@pytest.fixture(scope='module')
def terms_bench(tmp_path_factory):
    """The benchmark's models and batch for TERMS_CFG (64 x 64, 1 image)."""
    from mmdet_eakd.utils import offline_config, register_modules
    from mmdet_eakd.utils.benchmark import DistillBench
    register_modules()
    work_dir = tmp_path_factory.mktemp('terms_bench')
    cfg = offline_config(str(TERMS_CFG), str(work_dir), seed=0)
    variants = ['student', 'teacher_forward'] + [
        f'term:{name}' for name in TERM_NAMES] + ['terms']
    return DistillBench(cfg, variants, (64, 64), 1, 'cpu', 0)


def test_a_term_step_distils_that_term_only(terms_bench, monkeypatch):
    """The step of ``term:<name>`` trains on that term's losses only (the
    other terms' keys are absent, so it would fail if every term always
    ran); ``terms`` on all three; the student step on none."""
    bench = terms_bench
    stepped = []
    update = bench._update
    monkeypatch.setattr(
        bench, '_update',
        lambda model, optim, losses: (stepped.append(set(losses)),
                                      update(model, optim, losses)))
    bench.run('student')
    (student, ) = stepped
    student |= {'teacher_unusable'}
    assert not any(key.startswith('loss_kd') for key in student)
    for name in TERM_NAMES:
        stepped.clear()
        assert bench.run(f'term:{name}') > 0
        (keys, ) = stepped
        distilled = keys - student
        assert {f'loss_kd_{name}', f'ea_weight_{name}'} <= distilled, name
        assert all(key.endswith(f'_{name}') for key in distilled), (
            name, distilled)
    stepped.clear()
    bench.run('terms')
    (keys, ) = stepped
    assert {f'loss_kd_{name}' for name in TERM_NAMES} <= keys


@pytest.mark.parametrize('config, variants, match', [
    (TERMS_CFG, ['student', 'dkd'],
     r"distils named distill_terms \(cls, box, feat\); the variants "
     r"\['dkd'\] swap .* Nor would \['dkd'\] run on this sigmoid family: "
     r'DKD has no sigmoid loss \(term cls is SigmoidEAKDLoss\)\. Time each '
     r'term alone and all together instead: --variants student '
     r'teacher_forward term:cls term:box term:feat terms'),
    (TERMS_CFG, ['eakd', 'naive'],
     r"the variants \['eakd', 'naive'\] swap the type and weight mode of "
     r'one distill_loss'),
    (TERMS_CFG, ['term:nope'],
     r"has no variants \['term:nope'\] \(its variants: \['student', "
     r"'teacher_forward', 'term:cls'"),
    (EAKD_CFG, ['student', 'term:cls', 'terms'],
     r"has one distill_loss and no named distill_terms, so it has no "
     r"variants \['term:cls', 'terms'\] .* Time its KD / EA-KD variants "
     r"instead: \['student', 'teacher_forward', 'kd', 'eakd', 'dkd'"),
])
def test_variants_a_config_cannot_run_fail_clearly(tmp_path, config,
                                                   variants, match):
    """A variant of one distill_loss asked of named terms (e.g. DKD on a
    sigmoid GFL), a term the config lacks, or named-term variants asked of
    one distill_loss: refused with the cause and the fix."""
    tool = load_tool('benchmark_distill')
    settings = tool.settings_from(tool.parse_args(
        ['--config', str(config), '--variants', *variants]))
    with pytest.raises(ValueError, match=match):
        tool.benchmark_config(str(config), settings, str(tmp_path))


def test_term_variants_are_accepted_by_the_command_line():
    tool = load_tool('benchmark_distill')
    args = tool.parse_args(['--config', str(TERMS_CFG), '--variants',
                            'student', 'term:cls', 'term:feat', 'terms'])
    assert args.variants == ['student', 'term:cls', 'term:feat', 'terms']


@pytest.mark.parametrize('argv, match', [
    (['--steps', '0'], '--steps must be >= 1'),
    (['--warmup', '-1'], '--warmup must be >= 0'),
    (['--device', 'tpu'], '--device must be cpu or cuda'),
    (['--img-size', '96x'], '--img-size must be a side (e.g. 320) or WxH'),
    (['--img-size', '0x64'], '--img-size sides must be >= 1'),
    (['--variants', 'kd', 'fast'], "unknown --variants ['fast']"),
    (['--variants', 'term:', 'term:1x'],
     "unknown --variants ['term:', 'term:1x']"),
    (['--variants', 'eakd_amp'], 'need --teacher-autocast'),
    (['--variants', 'eakd_cl'], 'need --channels-last'),
])
def test_bad_args_fail_clearly(argv, match, capsys):
    tool = load_tool('benchmark_distill')
    with pytest.raises(SystemExit):
        tool.parse_args(['--config', str(EAKD_CFG)] + argv)
    assert match in capsys.readouterr().err


def test_missing_config_fails_clearly(capsys):
    tool = load_tool('benchmark_distill')
    with pytest.raises(SystemExit):
        tool.parse_args(['--config', 'nope.py'])
    assert "config 'nope.py' does not exist" in capsys.readouterr().err
