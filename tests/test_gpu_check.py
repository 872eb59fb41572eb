"""tools/gpu_check.py: the offline bundle and the CPU dry run of the check.

The bundle is fetched from PyPI (as on any machine that prepares it); the
dry run installs it with ``--no-index`` into a fresh Python 3.12
environment, skips the mmcv build and the CUDA parts, and writes the report.
"""
import glob
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import ROOT, load_tool, python_tool, run_tool

tool = load_tool('gpu_check')


@pytest.fixture(scope='module')
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('gpu') / 'bundle'
    run_tool(python_tool('gpu_check.py') + ['bundle', '--out', str(out)],
             cwd=ROOT, timeout=600)
    return out


def test_bundle_is_complete_and_small(bundle):
    manifest = json.loads((bundle / 'manifest.json').read_text())
    names = {tool.canonical(Path(name).name.split('-')[0])
             for name in manifest['files']}
    for line in tool.requirement_names(tool.BUNDLE_REQUIREMENTS):
        assert tool.canonical(line.split('==')[0]) in names, line
    assert tool.MMCV_SDIST in manifest['files']
    assert manifest['total_mib'] < tool.MAX_BUNDLE_MIB
    # every wheel is for the target: pure Python or cp312 manylinux x86_64
    for name in manifest['files']:
        if name.endswith('.whl'):
            assert ('py3-none-any' in name or 'py2.py3-none-any' in name
                    or ('cp312' in name and 'x86_64' in name)), name
    # requirement closure: bundle + the image list satisfy everything
    assert tool.missing_requirements(bundle, None) == []


def test_missing_dependency_is_named(bundle, tmp_path):
    """Without termcolor's wheel, mmengine's requirement is unmet: the
    check names the package and the requirement."""
    copy = tmp_path / 'bundle'
    shutil.copytree(bundle, copy)
    (wheel, ) = (copy / 'wheels').glob('termcolor-*.whl')
    wheel.unlink()
    problems = tool.missing_requirements(copy, None)
    assert problems and all('termcolor' in p for p in problems)
    assert any(p.startswith('mmengine needs termcolor') for p in problems)
    # a version the requirement excludes is named too
    installed = {name: version for name, (version, _)
                 in tool.bundle_requirements(bundle).items()}
    installed.update({tool.canonical(n): '1.0'
                      for n in tool.requirement_names(tool.IMAGE_REQUIREMENTS)})
    installed['mmengine'] = '0.1.0'
    problems = tool.missing_requirements(bundle, installed)
    assert any('mmcv needs mmengine' in p and "['0.1.0']" in p
               for p in problems), problems


def test_thc_patch_only_where_torch_lacks_the_shim(tmp_path):
    src = tmp_path / 'mmcv'
    header = src / 'mmcv/ops/csrc/common/pytorch_cuda_helper.hpp'
    header.parent.mkdir(parents=True)
    header.write_text('#include <THC/THCAtomics.cuh>\n#include <x.h>\n')
    include = tmp_path / 'include'
    (include / 'THC').mkdir(parents=True)
    (include / 'THC' / 'THCAtomics.cuh').write_text('')
    assert tool.patch_mmcv_for_torch(src, include) == []
    shutil.rmtree(include / 'THC')
    assert tool.patch_mmcv_for_torch(src, include) == [
        'mmcv/ops/csrc/common/pytorch_cuda_helper.hpp'
    ]
    assert header.read_text() == '#include <ATen/cuda/Atomic.cuh>\n#include <x.h>\n'


def test_first_errors_of_a_build_log(tmp_path):
    log = tmp_path / 'build.log'
    log.write_text('[1/3] nvcc a.cu\n'
                   'a.cu(12): error: identifier "x" is undefined\n'
                   'warning: something\n'
                   'b.h:3:10: fatal error: THC/THCAtomics.cuh: No such file\n'
                   'ninja: build stopped: subcommand failed.\n')
    assert tool.first_errors(log) == [
        'a.cu(12): error: identifier "x" is undefined',
        'b.h:3:10: fatal error: THC/THCAtomics.cuh: No such file',
    ]


def python312() -> str:
    """A Python 3.12 of this machine (pyenv keeps versions that are not
    activated under its root), else ``python3.12`` (the tool then installs
    with ``pip --python-version 3.12``, the closest it can do)."""
    pyenv = os.environ.get('PYENV_ROOT', os.path.expanduser('~/.pyenv'))
    candidates = [shutil.which('python3.12')] + sorted(
        glob.glob(f'{pyenv}/versions/3.12*/bin/python3.12'))
    for candidate in filter(None, candidates):
        if tool.runs_python(candidate, '3.12'):
            return candidate
    return 'python3.12'


def test_dry_run_installs_the_bundle_and_writes_the_report(bundle, tmp_path):
    report = tmp_path / 'report'
    python = python312()
    result = run_tool(python_tool('gpu_check.py') + [
        'run', '--dry-run', '--bundle', str(bundle), '--report-dir',
        str(report), '--work-dir', str(tmp_path / 'work'), '--python',
        sys.executable, '--install-python', python
    ], cwd=ROOT, timeout=900)
    assert 'report:' in result.stdout
    data = json.loads((report / 'gpu_check.json').read_text())
    stages = {s['name']: s for s in data['stages']}
    assert list(stages) == ['environment', 'install', 'build_mmcv', 'stack',
                            'cuda_tests', 'train_amp_resume', 'benchmark']
    assert {s['status'] for s in stages.values()} == {'ok'}, stages
    install = stages['install']['details']
    assert install['unmet_requirements'] == []
    if tool.runs_python(python, '3.12'):
        assert install['fresh_env'].startswith('Python 3.12')
    assert any(d.startswith('mmdet-3.3.0') for d in install['installed'])
    # the THC include is patched where torch has no THC shim (its CPU
    # build); its CUDA build still ships the shim, and nothing is patched
    import torch
    shim = Path(torch.__file__).parent / 'include' / 'THC' / 'THCAtomics.cuh'
    assert bool(stages['build_mmcv']['details']['patches']) != shim.is_file()
    # CUDA tests skip here; on a CUDA machine a skip fails the stage
    counts = stages['cuda_tests']['details']['counts']
    assert counts['skipped'] >= 5 and counts['failed'] == 0
    bench = stages['benchmark']['details']['results']
    assert set(bench) == {*tool.DRY_PAIRS, tool.DRY_TERMS_PAIR}
    terms = bench.pop(tool.DRY_TERMS_PAIR)
    assert set(terms['median_s']) == set(tool.TERMS_VARIANTS)
    value, low, high = terms['ratios'][
        'terms_minus_student_over_teacher_forward']
    assert low <= value <= high
    for result in bench.values():
        assert set(result['median_s']) == set(tool.BENCH_VARIANTS) | {
            'teacher_forward_amp', 'eakd_amp'}
        value, low, high = result['ratios']['eakd_amp_over_eakd']
        assert low <= value <= high
    train = stages['train_amp_resume']['details']
    assert train['resumed_at_middle'] and train['finite']
    assert train['loss_kd_logged']
    markdown = (report / 'gpu_check.md').read_text()
    assert markdown.startswith('# GPU check (dry run)')
    for name in stages:
        assert f'| {name} | ok |' in markdown
