"""Every checkpoint a shipped config reads at start has a loader here, offline.

The COCO students initialise from ``torchvision://resnet18`` or
``open-mmlab://mmdet/mobilenet_v2``, and the teachers load from
``https://`` URLs. Nothing is downloaded: each name must resolve to one of
mmengine's registered checkpoint loaders and, for ``torchvision://`` and
``open-mmlab://``, to a model that loader knows (which needs torchvision for
the first). Without torchvision the test fails and says how to get it.
"""
import sys

import pytest
from conftest import ROOT
from mmengine.config import Config

from mmdet_eakd.downloads import TORCHVISION_FIX, check_checkpoint_name
from mmdet_eakd.utils import pretrained_checkpoints

CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py')
                 if '_base_' not in p.parts)


def shipped_checkpoints():
    """(config, key, checkpoint) of every shipped config's start-up reads."""
    found = []
    for path in CONFIGS:
        cfg = Config.fromfile(str(path))
        for key, checkpoint in pretrained_checkpoints(cfg.to_dict()).items():
            found.append((path.relative_to(ROOT), key, checkpoint))
    return found


CHECKPOINTS = shipped_checkpoints()


def resolve(checkpoint: str, where: str = '') -> str:
    """:func:`check_checkpoint_name`, failing (not erroring) with the fix
    when torchvision is missing."""
    try:
        return check_checkpoint_name(checkpoint)
    except ModuleNotFoundError as error:
        pytest.fail(f'{where}{error}', pytrace=False)


def test_the_coco_configs_name_what_the_card_says():
    """The walk finds the students' pretrained backbones and the teachers'
    checkpoints (so the resolution test below checks something)."""
    by_config = {(str(config), key): checkpoint
                 for config, key, checkpoint in CHECKPOINTS}
    student = 'model.backbone.init_cfg.checkpoint'
    assert by_config[('configs/eakd_frcnn_r101_r18.py', student)] == \
        'torchvision://resnet18'
    assert by_config[('configs/student_gfl_r18.py', student)] == \
        'torchvision://resnet18'
    assert by_config[('configs/eakd_frcnn_r50_mv2.py', student)] == \
        'open-mmlab://mmdet/mobilenet_v2'
    teacher = by_config[('configs/eakd_frcnn_r101_r18.py',
                         'model.teacher.checkpoint')]
    assert teacher.startswith('https://download.openmmlab.com/')
    for path in CONFIGS:
        if Config.fromfile(str(path)).model.get('teacher') and \
                'synthetic' not in path.parts:
            assert (path.relative_to(ROOT), 'model.teacher.checkpoint') in {
                (c, k) for c, k, _ in CHECKPOINTS}, path


@pytest.mark.parametrize(
    'config, key, checkpoint',
    [c for c in CHECKPOINTS if '://' in c[2]],
    ids=lambda value: str(value))
def test_every_pretrained_uri_resolves_offline(config, key, checkpoint):
    loader = resolve(checkpoint, f'{config} {key}: ')
    expected = {
        'torchvision://': 'load_from_torchvision',
        'open-mmlab://': 'load_from_openmmlab',
        'https://': 'load_from_http',
    }
    scheme = next(s for s in expected if checkpoint.startswith(s))
    assert loader == expected[scheme], (config, key, checkpoint)


def test_unknown_names_and_schemes_are_refused():
    resolve('torchvision://resnet18')  # fails with the fix without it
    with pytest.raises(ValueError, match="'resnet19' is not in torchvision"):
        check_checkpoint_name('torchvision://resnet19')
    with pytest.raises(ValueError, match="'mmdet/mobilenet_v3' is not in "
                       "mmengine's list"):
        check_checkpoint_name('open-mmlab://mmdet/mobilenet_v3')
    with pytest.raises(ValueError, match='no checkpoint loader is registered '
                       'for hf://'):
        check_checkpoint_name('hf://some/model')
    # torchvision's weight names work too, as in mmengine's loader
    assert check_checkpoint_name('torchvision://ResNet18_Weights.IMAGENET1K_V1'
                                 ) == 'load_from_torchvision'
    assert check_checkpoint_name('work_dirs/epoch_12.pth') == \
        'load_from_local'


def test_a_missing_torchvision_says_how_to_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, 'torchvision', None)  # import fails
    with pytest.raises(ModuleNotFoundError) as error:
        check_checkpoint_name('torchvision://resnet18')
    assert 'needs torchvision, which does not load here' in str(error.value)
    assert TORCHVISION_FIX in str(error.value)
