"""tools/benchmark_distill.py: output format and that every variant ran.

Not a timed test: a tiny configuration (demo configs, 64x64 image, one step).
"""
import json
import math

import pytest
from conftest import SYNTHETIC_CONFIGS, load_tool, python_tool, run_tool

EAKD_CFG = SYNTHETIC_CONFIGS / 'eakd_frcnn_teacher_tiny_synthetic.py'
CASCADE_CFG = SYNTHETIC_CONFIGS / 'cascade_eakd_teacher_tiny_synthetic.py'
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


@pytest.mark.parametrize('argv, match', [
    (['--steps', '0'], '--steps must be >= 1'),
    (['--warmup', '-1'], '--warmup must be >= 0'),
    (['--device', 'tpu'], '--device must be cpu or cuda'),
    (['--img-size', '96x'], '--img-size must be a side (e.g. 320) or WxH'),
    (['--img-size', '0x64'], '--img-size sides must be >= 1'),
    (['--variants', 'kd', 'fast'], "unknown --variants ['fast']"),
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
