"""Foundation: registration, configs, train/test tools, resume, CPU DDP."""
import os
import subprocess
import sys

import pytest
import torch
from conftest import (NUMPY_MULTIARRAY, ROOT, TINY, data_overrides,
                      free_port, pickled_globals, python_tool, read_scalars,
                      read_test_metrics, run_tool, with_numpy_module)
from mmengine.config import Config


def test_import_registers_modules():
    import mmdet_eakd  # noqa: F401
    from mmdet.registry import MODELS, RUNNERS
    for name in ('RoIDistillTwoStageDetector', 'EAKDLoss', 'EADKDLoss'):
        assert MODELS.get(name) is not None, name
    assert RUNNERS.get('EAKDRunner') is not None


def test_custom_imports_config_builds(tmp_path):
    """A config with only the custom_imports line builds our modules."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg_file = tmp_path / 'loss_cfg.py'
    cfg_file.write_text(
        "custom_imports = dict(imports=['mmdet_eakd'], "
        'allow_failed_imports=False)\n'
        "loss = dict(type='EAKDLoss', temperature=2.0)\n")
    cfg = Config.fromfile(str(cfg_file))
    loss = MODELS.build(cfg.loss)
    assert type(loss).__name__ == 'EAKDLoss'


def test_synthetic_config_classes_match_generator():
    from mmdet_eakd.datasets import CLASSES
    cfg = Config.fromfile(str(TINY))
    assert tuple(cfg.metainfo.classes) == tuple(CLASSES)
    assert cfg.model.roi_head.bbox_head.num_classes == len(CLASSES)


@pytest.mark.parametrize('logger, expected', [
    (None, 'MainProcessLoggerHook'),  # mmengine's default logger
    (dict(type='LoggerHook', interval=7), 'MainProcessLoggerHook'),
    (dict(type='MainProcessLoggerHook', interval=7), 'MainProcessLoggerHook'),
])
def test_test_metrics_are_written_by_rank_0_only(tmp_path, synthetic_root,
                                                 monkeypatch, logger,
                                                 expected):
    """Every rank of mmengine's LoggerHook writes a distributed test's
    metrics JSON (a race on one file); EAKDRunner's logger lets rank 0 alone
    write it, with the configured arguments."""
    from mmengine.hooks import LoggerHook

    from mmdet_eakd.engine import EAKDRunner, hooks
    cfg = Config.fromfile(str(TINY))
    cfg.merge_from_dict(dict(work_dir=str(tmp_path)))
    if logger is None:
        cfg.default_hooks.pop('logger')
    else:
        cfg.default_hooks.logger = logger
    runner = EAKDRunner.from_cfg(cfg)
    (hook, ) = [h for h in runner.hooks if isinstance(h, LoggerHook)]
    assert type(hook).__name__ == expected
    assert hook.interval == (logger or dict(interval=10))['interval']
    written = []
    monkeypatch.setattr(LoggerHook, 'after_test_epoch',
                        lambda self, runner, metrics=None: written.append(1))
    for main, calls in ((False, []), (True, [1])):
        monkeypatch.setattr(hooks, 'is_main_process', lambda: main)
        hook.after_test_epoch(runner, {'coco/bbox_mAP': 0.5})
        assert written == calls


def test_a_disabled_logger_stays_disabled(tmp_path):
    from mmengine.hooks import LoggerHook

    from mmdet_eakd.engine import EAKDRunner
    cfg = Config.fromfile(str(TINY))
    cfg.merge_from_dict(dict(work_dir=str(tmp_path)))
    cfg.default_hooks.logger = None
    runner = EAKDRunner.from_cfg(cfg)
    assert not [h for h in runner.hooks if isinstance(h, LoggerHook)]


def test_train_and_test_report_coco_ap(trained_tiny, tmp_path):
    cfg, work_dir = trained_tiny
    assert (work_dir / 'epoch_2.pth').is_file()
    val = [r for r in read_scalars(work_dir) if 'coco/bbox_mAP' in r]
    assert val, 'training did not evaluate'
    result = run_tool(
        python_tool('test.py') +
        [str(cfg), str(work_dir / 'epoch_2.pth'), '--work-dir',
         str(tmp_path / 'test')], cwd=ROOT)
    metrics = [r for r in read_test_metrics(tmp_path / 'test')
               if 'coco/bbox_mAP' in r]
    assert len(metrics) == 1
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        assert 0.0 <= metrics[0][key] <= 1.0
    assert 'Average Precision' in result.stdout


PROBE = """
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class ResumeProbeHook(Hook):
    def __init__(self, out):
        self.out = out

    def before_train(self, runner):
        torch.save(dict(
            epoch=runner.epoch, iter=runner.iter,
            optimizer=runner.optim_wrapper.state_dict(),
            hub_types=sorted({type(v).__name__ for v in
                              runner.message_hub.log_scalars.values()}),
            schedulers=[s.state_dict() for s in runner.param_schedulers]),
            self.out)
"""


def test_resume_continues_run(trained_tiny, tmp_path):
    """--resume on torch >= 2.6 continues from epoch 2 with its state.

    Without the checkpoint allowlist, torch.load raises UnpicklingError.
    """
    cfg, work_dir = trained_tiny
    assert torch.__version__ >= '2.6'
    (tmp_path / 'resume_probe.py').write_text(PROBE)
    probe = tmp_path / 'probe.pth'
    resume_cfg = tmp_path / 'resume.py'
    resume_cfg.write_text(
        f"_base_ = '{cfg}'\n"
        "custom_imports = dict(imports=['mmdet_eakd', 'resume_probe'], "
        'allow_failed_imports=False)\n'
        f"custom_hooks = [dict(type='ResumeProbeHook', out='{probe}')]\n"
        'train_cfg = dict(max_epochs=3, val_interval=3)\n')
    resumed = tmp_path / 'resumed'
    # resume from the 2-epoch checkpoint into a fresh work dir, train to 3
    result = run_tool(
        python_tool('train.py') + [
            str(resume_cfg), '--work-dir', str(resumed), '--resume',
            str(work_dir / 'epoch_2.pth')
        ],
        cwd=ROOT,
        env={'PYTHONPATH': f'{ROOT}:{tmp_path}'})
    ckpt2 = torch.load(work_dir / 'epoch_2.pth', map_location='cpu')
    iters_per_epoch = ckpt2['meta']['iter'] // 2
    log = result.stdout + result.stderr
    assert f'resumed epoch: 2, iter: {2 * iters_per_epoch}' in log
    # the state the resumed run started from is the saved one
    state = torch.load(probe, map_location='cpu')
    assert (state['epoch'], state['iter']) == (2, 2 * iters_per_epoch)
    saved, loaded = ckpt2['optimizer'], state['optimizer']
    assert saved['param_groups'] == loaded['param_groups']
    assert saved['state'].keys() == loaded['state'].keys()
    for key, buffers in saved['state'].items():  # e.g. AdamW's exp_avg
        assert buffers.keys() == loaded['state'][key].keys()
        for name, value in buffers.items():
            assert torch.equal(torch.as_tensor(value),
                               torch.as_tensor(loaded['state'][key][name]))
    assert state['schedulers'] == ckpt2['param_schedulers']
    # the message hub was restored with its HistoryBuffers
    assert state['hub_types'] == ['HistoryBuffer']
    # only epoch 3 was trained, with the lr after milestones 1 and 2 (0.01x;
    # a schedule restarted from scratch would give 1x)
    records = [r for r in read_scalars(resumed) if 'lr' in r]
    assert records and all(r['epoch'] == 3 for r in records)
    base_lr = saved['param_groups'][0]['initial_lr']
    assert all(r['lr'] == pytest.approx(0.01 * base_lr) for r in records)
    ckpt3 = torch.load(resumed / 'epoch_3.pth', map_location='cpu')
    assert ckpt3['meta']['epoch'] == 3
    assert ckpt3['meta']['iter'] == 3 * iters_per_epoch


def test_dist_train_two_cpu_processes(tmp_path, synthetic_root):
    """tools/dist_train.sh CONFIG 2 trains with gloo on a CPU-only torch."""
    cfg = tmp_path / 'dist.py'
    cfg.write_text(f"_base_ = '{TINY}'\n"
                   f'{data_overrides(synthetic_root, batch_size=2)}'
                   'train_cfg = dict(max_epochs=1, val_interval=1)\n'
                   'default_hooks = dict(logger=dict(interval=1))\n')
    work_dir = tmp_path / 'work'
    result = run_tool([
        'bash', str(ROOT / 'tools' / 'dist_train.sh'), str(cfg), '2',
        '--work-dir', str(work_dir)
    ], cwd=ROOT, env={'PORT': free_port()})
    log = result.stdout + result.stderr
    assert 'gloo' in log
    # 24 images, 2 ranks x 2 images per step: each rank runs 6 iterations
    assert '[1][6/6]' in log
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['epoch_1.pth']
    ckpt = torch.load(work_dir / 'epoch_1.pth', map_location='cpu')
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])


def test_checkpoints_load_with_plain_torch(trained_tiny):
    """A fresh interpreter without mmdet_eakd reads a training checkpoint of
    tools/train.py with torch.load's default weights_only=True."""
    _, work_dir = trained_tiny
    code = ('import torch; c = torch.load(%r); '
            "print(sorted(c), len(c['state_dict']))" %
            str(work_dir / 'epoch_2.pth'))
    result = subprocess.run([sys.executable, '-c', code], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'message_hub'" in result.stdout and "'optimizer'" in result.stdout


@pytest.fixture(scope='module')
def plain_mmdet_run(tmp_path_factory, synthetic_root):
    """One epoch trained by mmdet's own tools/train.py without this package:
    its checkpoint is a plain mmengine one (HistoryBuffers, numpy)."""
    from mmdet_eakd.engine import mmdet_tool_candidates
    tmp = tmp_path_factory.mktemp('plain')
    mmdet_train = next(p for p in mmdet_tool_candidates('train')
                       if p.is_file())
    cfg = tmp / 'plain.py'
    cfg.write_text(f"_base_ = '{TINY}'\n{data_overrides(synthetic_root)}"
                   'train_cfg = dict(max_epochs=1, val_interval=5)\n')
    run_tool([sys.executable, str(mmdet_train), str(cfg), '--work-dir',
              str(tmp / 'work')], cwd=ROOT)
    return mmdet_train, cfg, tmp / 'work' / 'epoch_1.pth'


def loads_with_plain_torch(checkpoint) -> subprocess.CompletedProcess:
    """torch.load (weights_only=True) of ``checkpoint`` in a fresh process
    that never imports mmdet_eakd."""
    return subprocess.run(
        [sys.executable, '-c', f"import torch; torch.load('{checkpoint}')"],
        capture_output=True, text=True)


@pytest.mark.parametrize('module', NUMPY_MULTIARRAY)
def test_resume_from_a_plain_mmdet_checkpoint(plain_mmdet_run, tmp_path,
                                              module):
    """A checkpoint written by mmdet's own tools/train.py (HistoryBuffers,
    numpy) resumes with tools/train.py thanks to the narrow allowlist, whether
    its pickle names numpy 1's or numpy 2's multiarray module."""
    _, cfg, plain = plain_mmdet_run
    plain_load = loads_with_plain_torch(plain)
    assert plain_load.returncode != 0
    assert 'UnpicklingError' in plain_load.stderr
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    crafted = with_numpy_module(plain, module, work_dir / 'epoch_1.pth')
    assert f'{module} _reconstruct' in pickled_globals(crafted)
    result = run_tool(
        python_tool('train.py') + [
            str(cfg), '--work-dir', str(work_dir), '--resume', str(crafted),
            '--cfg-options', 'train_cfg.max_epochs=2'
        ], cwd=ROOT)
    assert 'resumed epoch: 1' in result.stdout + result.stderr
    assert (work_dir / 'epoch_2.pth').is_file()


def test_mmdet_train_with_custom_imports(plain_mmdet_run, tmp_path):
    """mmdet's own tools/train.py with custom_imports=['mmdet_eakd'] resumes
    a plain checkpoint (the allowlist comes with the import), but writes
    plain mmengine checkpoints again (no torch-safe checkpoints: those come
    with EAKDRunner, which mmdet's tool does not use)."""
    mmdet_train, cfg, plain = plain_mmdet_run
    resume_cfg = tmp_path / 'custom_imports.py'
    resume_cfg.write_text(
        f"_base_ = '{cfg}'\n"
        "custom_imports = dict(imports=['mmdet_eakd'], "
        'allow_failed_imports=False)\n'
        'train_cfg = dict(max_epochs=2)\n')
    work_dir = tmp_path / 'work'
    result = run_tool([
        sys.executable, str(mmdet_train), str(resume_cfg), '--work-dir',
        str(work_dir), '--resume', str(plain)
    ], cwd=ROOT)
    assert 'resumed epoch: 1' in result.stdout + result.stderr
    written = loads_with_plain_torch(work_dir / 'epoch_2.pth')
    assert written.returncode != 0 and 'UnpicklingError' in written.stderr


def test_mmdet_train_with_custom_imports_has_no_cpu_ddp(tmp_path,
                                                         synthetic_root):
    """The CPU distributed fix lives in EAKDRunner: mmdet's own
    tools/train.py with custom_imports=['mmdet_eakd'] still fails in
    mmengine's init_dist (torch.cuda.set_device) on a CPU-only torch."""
    from mmdet_eakd.engine import mmdet_tool_candidates
    mmdet_train = next(p for p in mmdet_tool_candidates('train')
                       if p.is_file())
    cfg = tmp_path / 'custom_imports.py'
    cfg.write_text(f"_base_ = '{TINY}'\n{data_overrides(synthetic_root)}"
                   "custom_imports = dict(imports=['mmdet_eakd'], "
                   'allow_failed_imports=False)\n')
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=1',
         f'--master_port={free_port()}', str(mmdet_train), str(cfg), '--launcher',
         'pytorch', '--work-dir', str(tmp_path / 'work')],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert result.returncode != 0
    assert 'set_device' in result.stderr and 'gloo' not in result.stdout
