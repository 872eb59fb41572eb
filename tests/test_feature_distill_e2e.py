"""A heterogeneous pair end to end: a Faster R-CNN teacher distils its FPN
features (PKD, through a 1x1 connector) into a RetinaNet student, trained
with 2-process CPU DDP, resumed, and evaluated as a plain RetinaNet by
mmdet's own tools/test.py and DetInferencer."""
import pytest
import torch
from conftest import SYNTHETIC_CONFIGS, read_scalars
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from test_distill_e2e import check_plain_checkpoint, distill_then_resume

from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmdet_eakd.engine.hooks import DISTILL_STATE_DICT

HETERO = SYNTHETIC_CONFIGS / 'pkd_frcnn_retinanet_teacher_tiny_synthetic.py'
FRCNN_TEACHER = SYNTHETIC_CONFIGS / 'frcnn_teacher_synthetic.py'
RETINA = SYNTHETIC_CONFIGS / 'retinanet_tiny_synthetic.py'
CONNECTOR = ('distill_terms.feat.connector.weight',
             'distill_terms.feat.connector.bias')


@pytest.fixture(scope='module')
def distilled_hetero(tmp_path_factory, synthetic_root):
    """PKD from a (random) synthetic Faster R-CNN teacher into the tiny
    RetinaNet, DDP then resumed."""
    register_all_modules()
    tmp = tmp_path_factory.mktemp('distill_hetero')
    torch.manual_seed(0)
    teacher = MODELS.build(Config.fromfile(str(FRCNN_TEACHER)).model)
    teacher.init_weights()
    torch.save({'state_dict': teacher.state_dict()}, tmp / 'teacher.pth')
    _, work_dir, log = distill_then_resume(
        tmp, HETERO, None, synthetic_root, teacher_config=FRCNN_TEACHER,
        teacher_checkpoint=tmp / 'teacher.pth')
    return work_dir, log


def test_heterogeneous_pair_trains_under_ddp_and_resumes(distilled_hetero):
    work_dir, log = distilled_hetero
    assert 'resumed epoch: 1' in log
    records = [r for r in read_scalars(work_dir) if 'loss_kd_feat' in r]
    assert {r['epoch'] for r in records} == {1, 2}
    # 24 images / (2 processes x 2 images) = 6 iterations in epoch 1
    assert max(r['iter'] for r in records if r['epoch'] == 1) == 6
    for record in records:
        # loss_weight 6 x 4 paired levels x (1 - r), r in [-1, 1]
        assert 0 < record['loss_kd_feat'] < 6 * 4 * 2
        assert record['teacher_unusable'] == 0
        assert not any(key.endswith('_cls') and key != 'loss_cls'
                       for key in record)
    # the connector is trained and kept for resuming, beside the plain
    # student's state_dict
    first, second = (torch.load(work_dir / f'epoch_{e}.pth',
                                map_location='cpu') for e in (1, 2))
    for checkpoint in (first, second):
        assert set(checkpoint[DISTILL_STATE_DICT]) == set(CONNECTOR)
        assert not any(key.startswith(('teacher', 'distill'))
                       for key in checkpoint['state_dict'])
    assert not torch.equal(first[DISTILL_STATE_DICT][CONNECTOR[0]],
                           second[DISTILL_STATE_DICT][CONNECTOR[0]])
    plain = MODELS.build(Config.fromfile(str(RETINA)).model)
    load_checkpoint(plain, str(work_dir / 'epoch_2.pth'), map_location='cpu',
                    strict=True, logger='silent')


def test_heterogeneous_checkpoint_runs_with_mmdet_tools(
        distilled_hetero, synthetic_root, tmp_path):
    """The distilled checkpoint is a plain RetinaNet checkpoint."""
    work_dir, _ = distilled_hetero
    check_plain_checkpoint(RETINA, work_dir / 'epoch_2.pth', 'RetinaNet',
                           synthetic_root, tmp_path,
                           extra='model = dict(test_cfg=dict(score_thr=0.))\n')
