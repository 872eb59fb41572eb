"""Where EA-LD puts its weight against the IoU: the statistics (pure), the
IoU targets the dense capture keeps, and the tool on a KD + LD config."""
import json

import numpy as np
import pytest
import torch
from conftest import (ROOT, SYNTHETIC_CONFIGS, data_overrides, python_tool,
                      run_tool)
from scipy import stats as scipy_stats

from mmdet_eakd.analysis.box_weights import (box_weights_by_iou,
                                             rank_correlation)


def test_rank_correlation_is_spearman_with_ties():
    torch.manual_seed(0)
    x = torch.randint(0, 5, (60, )).float()  # many ties
    y = x + torch.randn(60)
    expected = scipy_stats.spearmanr(x.numpy(), y.numpy()).statistic
    assert rank_correlation(x, y) == pytest.approx(expected, abs=1e-12)
    assert rank_correlation(x, -x) == pytest.approx(-1.0)
    assert np.isnan(rank_correlation(torch.ones(5), torch.arange(5.)))
    with pytest.raises(ValueError, match='1-d of one length'):
        rank_correlation(torch.ones(3), torch.ones(4))


def test_box_weights_by_iou_against_numpy():
    gen = torch.Generator().manual_seed(1)
    iou = torch.rand(40, generator=gen)
    weight = 1.0 - iou + 0.1 * torch.rand(40, generator=gen)
    ld = torch.rand(40, generator=gen)
    entropy = torch.rand(40, generator=gen)
    out = box_weights_by_iou(weight, ld, iou, entropy)
    edges = np.percentile(iou.numpy(), [0, 25, 50, 75, 100])
    assert out['iou_edges'] == pytest.approx(edges)
    index = np.digitize(iou.numpy(), edges[1:4], right=True)
    w, l, e = weight.double().numpy(), ld.double().numpy(), entropy.numpy()
    for q in range(4):
        part = index == q
        assert part.sum() == 10
        assert out['mean_iou'][q] == pytest.approx(iou.numpy()[part].mean())
        assert out['mean_weight'][q] == pytest.approx(w[part].mean())
        assert out['mean_entropy_t'][q] == pytest.approx(e[part].mean())
        assert out['ld_share'][q] == pytest.approx(l[part].sum() / l.sum())
        assert out['ea_ld_share'][q] == pytest.approx(
            (w * l)[part].sum() / (w * l).sum())
    # the weight falls with the IoU here: low-IoU locations weigh more
    assert out['spearman_weight_iou'] < -0.8
    assert out['mean_weight'][0] > out['mean_weight'][3]
    assert out['ea_ld_share'][0] > out['ld_share'][0]
    assert out['positives'] == 40
    with pytest.raises(ValueError, match='ld has shape'):
        box_weights_by_iou(weight, ld[:5], iou, entropy)
    with pytest.raises(ValueError, match='quartiles need'):
        box_weights_by_iou(*(v[:3] for v in (weight, ld, iou, entropy)))


def _tiny_gfl_distiller(tmp_path, head='GFLHead'):
    """A tiny dense distiller (GFL with an LD term, or RetinaNet) whose
    teacher has the student's weights."""
    from test_distill_terms import (KD, LD, dense_config, distiller,
                                    gfl_config, save_random)
    if head == 'GFLHead':
        cfg = gfl_config()
        terms = dict(cls=KD, box=LD)
    else:
        cfg = dense_config('retina')
        terms = dict(cls=KD)
    save_random(cfg, tmp_path / 'same.pth')
    model = distiller(cfg, cfg, tmp_path / 'same.pth', distill_terms=terms)
    model.load_state_dict(
        torch.load(tmp_path / 'same.pth')['state_dict'], strict=False)
    return model


def test_dense_capture_keeps_the_iou_targets_gfl_s_loss_received(tmp_path):
    """``DenseSamples.quality`` is the score target ``loss_cls`` received
    (GFL's quality focal loss: the IoU of the student's decoded box with
    its object), location by location; a head whose loss takes labels only
    (RetinaNet) has none."""
    from test_distill_terms import batch
    model = _tiny_gfl_distiller(tmp_path)
    model.train()
    received = []
    handle = model.bbox_head.loss_cls.register_forward_pre_hook(
        lambda m, args: received.append(args[1][1]))
    (group, ) = model.distill_inputs(*batch(model)).groups
    handle.remove()
    quality = group.samples.quality
    torch.testing.assert_close(quality, torch.cat(received).reshape(-1),
                               rtol=0, atol=0)
    positive = group.labels < 8
    assert 0 < int(positive.sum()) < len(positive)
    assert not quality[~positive].any()
    assert bool(((quality[positive] > 0) & (quality[positive] <= 1)).all())
    assert not quality.requires_grad

    retina = _tiny_gfl_distiller(tmp_path, head='RetinaHead')
    retina.train()
    (group, ) = retina.distill_inputs(*batch(retina)).groups
    assert group.samples.quality is None


def test_tool_reports_ea_ld_weights_by_iou(synthetic_root, tmp_path):
    from mmengine.config import Config

    from mmdet_eakd.utils import write_random_teacher_checkpoint
    write_random_teacher_checkpoint(
        Config.fromfile(str(SYNTHETIC_CONFIGS /
                            'kd_ld_gfl_teacher_tiny_synthetic.py')),
        tmp_path / 'teacher.pth')
    cfg = tmp_path / 'kd_ld.py'
    cfg.write_text(
        f"_base_ = '{SYNTHETIC_CONFIGS / 'kd_ld_gfl_teacher_tiny_synthetic.py'}'"
        f'\n{data_overrides(synthetic_root, batch_size=2)}')
    out = tmp_path / 'box.json'
    stdout = run_tool(python_tool('analyze_box_entropy.py') + [
        str(cfg), '--teacher-checkpoint', str(tmp_path / 'teacher.pth'),
        '--num-batches', '2', '--out', str(out)
    ], cwd=ROOT).stdout
    result = json.loads(out.read_text())
    assert result['batches'] == 2 and result['positives'] >= 4
    assert sum(result['ld_share']) == pytest.approx(1.0)
    assert sum(result['ea_ld_share']) == pytest.approx(1.0)
    assert -1 <= result['spearman_weight_iou'] <= 1
    assert '| IoU quartile |' in stdout and '| Q4 |' in stdout
    # a config without a box term is refused by name
    plain = tmp_path / 'kd.py'
    plain.write_text(
        f"_base_ = '{SYNTHETIC_CONFIGS / 'eakd_gfl_teacher_tiny_synthetic.py'}'"
        f'\n{data_overrides(synthetic_root, batch_size=2)}')
    with pytest.raises(AssertionError, match='box-distribution terms'):
        run_tool(python_tool('analyze_box_entropy.py') + [
            str(plain), '--teacher-checkpoint', str(tmp_path / 'teacher.pth'),
            '--num-batches', '1'
        ], cwd=ROOT)
