"""tools/train.py and tools/test.py run this package's runner whatever the
config's runner_type says, or refuse with the reason."""
import subprocess
import sys

import pytest
from conftest import ROOT, TINY, data_overrides, python_tool, run_tool
from mmengine.config import Config
from mmengine.runner import FlexibleRunner, Runner

from mmdet_eakd.engine import EAKDRunner, StudentRunner, tool_runner_class
from mmdet_eakd.engine.mmdet_tools import requested_runner_class


class _OwnRunner(EAKDRunner):
    pass


@pytest.mark.parametrize('requested, required, chosen', [
    (_OwnRunner, EAKDRunner, _OwnRunner),   # a subclass keeps the fixes
    (EAKDRunner, EAKDRunner, EAKDRunner),
    (Runner, EAKDRunner, EAKDRunner),       # ours is a Runner, with fixes
    (EAKDRunner, StudentRunner, StudentRunner),
    (Runner, StudentRunner, StudentRunner),
])
def test_tool_runner_class(requested, required, chosen):
    assert tool_runner_class(requested, required) is chosen


@pytest.mark.parametrize('requested, required', [
    (FlexibleRunner, EAKDRunner),
    (_OwnRunner, StudentRunner),
])
def test_other_runners_are_refused(requested, required):
    with pytest.raises(TypeError,
                       match=f'which is not a {required.__name__}.*silently '
                       f'drop.*runner_type={required.__name__}'):
        tool_runner_class(requested, required)


def test_runner_type_resolves_in_mmdet_scope():
    import mmdet_eakd  # noqa: F401  (registers EAKDRunner)
    for name, cls in (('EAKDRunner', EAKDRunner), ('Runner', Runner),
                      ('FlexibleRunner', FlexibleRunner)):
        assert requested_runner_class(Config(dict(runner_type=name))) is cls
    with pytest.raises(KeyError, match="'NoSuchRunner' is not a registered"):
        requested_runner_class(Config(dict(runner_type='NoSuchRunner')))


def test_train_with_runner_type_runner_keeps_the_fixes(tmp_path,
                                                       synthetic_root):
    """runner_type='Runner' used to make mmdet's tool build a plain Runner:
    its checkpoints did not load with plain torch.load."""
    cfg = tmp_path / 'runner_type.py'
    cfg.write_text(f"_base_ = '{TINY}'\n{data_overrides(synthetic_root)}"
                   "runner_type = 'Runner'\n"
                   'train_cfg = dict(max_epochs=1, val_interval=5)\n')
    result = run_tool(python_tool('train.py') +
                      [str(cfg), '--work-dir', str(tmp_path / 'work')],
                      cwd=ROOT)
    assert 'runner_type Runner: running EAKDRunner' in result.stdout
    load = subprocess.run(
        [sys.executable, '-c',
         f"import torch; torch.load('{tmp_path / 'work' / 'epoch_1.pth'}')"],
        capture_output=True, text=True)
    assert load.returncode == 0, load.stderr[-2000:]


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_runner_without_the_fixes_is_refused(tmp_path, tool):
    cfg = tmp_path / 'flexible.py'
    cfg.write_text(f"_base_ = '{TINY}'\nrunner_type = 'FlexibleRunner'\n")
    args = [str(cfg), '--work-dir', str(tmp_path / 'work')]
    if tool == 'test.py':
        args.insert(1, str(tmp_path / 'unused.pth'))
    result = subprocess.run(python_tool(tool) + args, cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode != 0
    required = 'EAKDRunner' if tool == 'train.py' else 'StudentRunner'
    assert (f'FlexibleRunner, which is not a {required}. This tool runs '
            f'{required}') in result.stderr
