"""``mmdet_eakd::`` config names: every shipped config by its repository path,
in ``_base_`` (with the teacher config inside) and on the tools' command line.

The installed wheel is checked in test_wheel.py; these tests run against the
suite's editable install (``mmdet_eakd/.mim`` links to the checkout's configs).
"""
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, data_overrides, run_tool
from mmengine.config import Config

import mmdet_eakd
from mmdet_eakd import registry
from mmdet_eakd.scope import CONFIG_PREFIX, config_dir, config_path

KD_SYNTHETIC = f'{CONFIG_PREFIX}synthetic/kd_frcnn_teacher_tiny_synthetic.py'


def test_every_shipped_config_has_a_name():
    shipped = sorted(p.relative_to(ROOT / 'configs')
                     for p in (ROOT / 'configs').rglob('*.py'))
    assert len(shipped) > 40
    for relative in shipped:
        path = config_path(f'mmdet_eakd::configs/{relative.as_posix()}')
        assert path == str(config_dir() / relative)
        assert (ROOT / 'configs' / relative).read_text() == open(path).read()


def test_config_path_of_other_names():
    plain = str(ROOT / 'configs' / 'eakd_frcnn_r101_r18.py')
    assert config_path(plain) == plain
    mmdet_name = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
    assert config_path(mmdet_name).endswith(
        '/mmdet/.mim/configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    # the spelling without the repository's configs/ folder is corrected
    with pytest.raises(FileNotFoundError,
                       match='Did you mean mmdet_eakd::configs/'
                       'eakd_frcnn_r101_r18.py'):
        config_path('mmdet_eakd::eakd_frcnn_r101_r18.py')
    with pytest.raises(FileNotFoundError, match="After mmdet_eakd:: comes"):
        config_path('mmdet_eakd::configs/no_such_config.py')
    with pytest.raises(ValueError, match="config scope 'nope'"):
        config_path('nope::configs/eakd_frcnn_r101_r18.py')


def test_scope_nodes_are_children_of_mmdet():
    """mmengine builds an inherited type dict (``_scope_='mmdet_eakd'``) from
    the node it finds for the scope: ours, under mmdet's of the same name."""
    nodes = [value for value in vars(registry).values()
             if isinstance(value, registry.ChildRegistry)]
    assert len(nodes) == 20
    for node in nodes:
        root = node.parent.parent
        with root.switch_scope_and_registry('mmdet_eakd') as found:
            assert found is node, node.name


def test_base_by_name_builds_model_and_data(tmp_path, synthetic_root):
    """A user config that inherits a shipped distillation config by name:
    its teacher config resolves beside the shipped copy, and its model,
    data set and metric build from the mmdet_eakd scope (mmengine's root
    registries, its fallback, know no CocoDataset)."""
    from mmengine.registry import DATASETS, METRICS, MODELS

    from mmdet_eakd.utils import write_random_teacher_checkpoint
    user = tmp_path / 'user.py'
    user.write_text(f"_base_ = '{KD_SYNTHETIC}'\n"
                    f'{data_overrides(synthetic_root)}')
    cfg = Config.fromfile(str(user))
    assert cfg.model.teacher.config == str(
        config_dir() / 'synthetic' / 'frcnn_teacher_synthetic.py')
    assert cfg.model._scope_ == 'mmdet_eakd'
    assert cfg.train_dataloader.dataset._scope_ == 'mmdet_eakd'
    cfg.model.teacher.checkpoint = str(
        write_random_teacher_checkpoint(cfg, tmp_path / 'teacher.pth'))
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'RoIDistillTwoStageDetector'
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert type(dataset).__name__ == 'CocoDataset' and len(dataset) == 24
    metric = METRICS.build(cfg.val_evaluator)
    assert type(metric).__name__ == 'CocoMetric'


def test_train_tool_takes_a_name_and_refuses_a_wrong_one(tmp_path,
                                                         synthetic_root):
    """``tools/train.py`` (``python -m mmdet_eakd.train``) trains a config
    given by name; a wrong name ends in one line that gives the right one."""
    from mmdet_eakd.utils import write_random_teacher_checkpoint
    teacher = write_random_teacher_checkpoint(
        Config.fromfile(config_path(KD_SYNTHETIC)), tmp_path / 'teacher.pth')
    root = f'{synthetic_root}/'
    result = run_tool([
        sys.executable, '-m', 'mmdet_eakd.train', KD_SYNTHETIC, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options',
        f'model.teacher.checkpoint={teacher}',
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/instances_val.json',
        'train_cfg.max_epochs=1', 'train_dataloader.batch_size=12',
        'default_hooks.logger.interval=1'
    ], cwd=tmp_path)
    assert '[1][2/2]' in result.stdout + result.stderr
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()
    failed = subprocess.run(
        [sys.executable, '-m', 'mmdet_eakd.train',
         'mmdet_eakd::eakd_frcnn_r101_r18.py'],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"error: 'mmdet_eakd::eakd_frcnn_r101_r18.py' names "
        f"{config_dir().parent / 'eakd_frcnn_r101_r18.py'}, which does not "
        'exist. Did you mean mmdet_eakd::configs/eakd_frcnn_r101_r18.py?'
    ]


def test_mmengine_finds_the_package_folder():
    """mmengine reads a scope's configs from
    ``get_installed_path(MODULE2PACKAGE[scope])/.mim``: the package's folder,
    also for the suite's editable install (whose distribution would give
    ``site-packages/mmdet_eakd``, which does not exist)."""
    from mmengine.config.utils import MODULE2PACKAGE
    from mmengine.utils import get_installed_path
    installed = Path(get_installed_path(MODULE2PACKAGE['mmdet_eakd']))
    assert installed.resolve() == Path(mmdet_eakd.__file__).resolve().parent
    assert (installed / '.mim' / 'model-index.yml').is_file()
