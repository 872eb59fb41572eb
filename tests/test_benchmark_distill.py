"""tools/benchmark_distill.py: output format and that every variant ran.

Not a timed test: a tiny configuration (demo configs, 64x64 image, one step).
"""
import json
import math

import pytest
from conftest import SYNTHETIC_CONFIGS, load_tool, python_tool, run_tool

EAKD_CFG = SYNTHETIC_CONFIGS / 'eakd_frcnn_teacher_tiny_synthetic.py'



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
    assert res['config'] == str(EAKD_CFG)
    assert res['num_rois'] > 0
    assert set(res['variants']) == set(tool.VARIANTS)
    for name, row in res['variants'].items():
        assert len(row['times_s']) == 1, name
        assert row['median_s'] > 0, name
        assert row['peak_memory_mib'] is not None, name
    ratios = res['ratios']
    for key in ('eakd_over_kd', 'eadkd_over_dkd',
                'eakd_minus_student_over_teacher_forward', 'naive_over_eakd'):
        assert math.isfinite(ratios[key]), key
    assert set(ratios['memory_over_student']) == set(tool.VARIANTS)
    assert ratios['memory_over_student']['student'] == pytest.approx(1.0)
    assert set(res['targets_met']) == {
        f'{key} {op} {bound}' for key, (op, bound) in tool.TARGETS.items()
    }


@pytest.mark.parametrize('argv, match', [
    (['--steps', '0'], '--steps must be >= 1'),
    (['--warmup', '-1'], '--warmup must be >= 0'),
    (['--device', 'tpu'], '--device must be cpu or cuda'),
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
