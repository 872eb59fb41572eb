"""The T' sweep: its statistics (pure) and the tool on a dense config."""
import json
import math

import pytest
import torch
from conftest import (ROOT, SYNTHETIC_CONFIGS, data_overrides, python_tool,
                      run_tool)
from scipy import stats as scipy_stats

from mmdet_eakd.analysis.temperature import (confident_mask,
                                             outrank_probability,
                                             positive_mask, temperature_sweep)
from mmdet_eakd.losses import (SIGMOID, SOFTMAX, binary_softened_entropy,
                               sigmoid_kd_loss_per_sample)


def test_outrank_probability_is_the_mann_whitney_statistic():
    torch.manual_seed(0)
    weights = torch.randint(0, 6, (40, )).float()  # many ties
    positive = torch.rand(40) < 0.3
    expected = scipy_stats.mannwhitneyu(
        weights[~positive].numpy(), weights[positive].numpy()).statistic
    assert outrank_probability(weights, positive) == pytest.approx(
        expected / (positive.sum().item() * (~positive).sum().item()))
    ranked = torch.tensor([0., 1., 2., 3.])
    assert outrank_probability(ranked, ranked > 1.5) == 0  # positives on top
    assert outrank_probability(ranked, ranked < 1.5) == 1
    with pytest.raises(ValueError, match='needs positive and background'):
        outrank_probability(ranked, torch.zeros(4, dtype=torch.bool))


def test_masks_follow_each_classifier_s_background_label():
    labels = torch.tensor([0, 2, 3])
    assert positive_mask(labels, 3, SIGMOID).tolist() == [True, True, False]
    assert positive_mask(labels, 4, SOFTMAX).tolist() == [True, True, False]
    teacher = torch.tensor([[3., -3.], [-3., -3.]])
    assert confident_mask(teacher, SIGMOID).tolist() == [True, False]
    softmax = torch.tensor([[5., 0., 0.], [0., 0., 5.]])  # bg column last
    assert confident_mask(softmax, SOFTMAX).tolist() == [True, False]


def test_sweep_on_known_sigmoid_logits():
    """Confident background (every logit -6) and uncertain positives (one
    class at +1): at T' = 1 positives weigh far more, and a larger T' gives
    background a larger share of the weighted loss."""
    background = torch.full((90, 4), -6.)
    positives = torch.full((10, 4), -6.)
    positives[:, 0] = 1.
    teacher = torch.cat([background, positives])
    student = teacher + 0.5
    labels = torch.cat([torch.full((90, ), 4), torch.zeros(10)]).long()
    rows = temperature_sweep(student, teacher, labels, [1.0, 3.0], SIGMOID)
    assert [r['entropy_temperature'] for r in rows] == [1.0, 3.0]
    kd = sigmoid_kd_loss_per_sample(student, teacher)
    for row, t in zip(rows, (1.0, 3.0)):
        h_t = binary_softened_entropy(teacher, t)
        h_s = binary_softened_entropy(student, t)
        w = h_t * (1 + h_s / math.log(2)) / 2
        assert row['weight_fg'] == pytest.approx(w[90:].mean().item(),
                                                 rel=1e-5)
        assert row['weight_bg'] == pytest.approx(w[:90].mean().item(),
                                                 rel=1e-5)
        assert row['ea_fg_share'] == pytest.approx(
            ((w * kd)[90:].sum() / (w * kd).sum()).item(), rel=1e-5)
        assert row['ea_over_kd'] == pytest.approx(
            ((w * kd).sum() / kd.sum()).item(), rel=1e-5)
        assert row['kd_fg_share'] == pytest.approx(
            (kd[90:].sum() / kd.sum()).item(), rel=1e-5)
        assert row['bg_outranks_fg'] == 0
        # teacher top score sigmoid(1) = 0.73: every positive is confident
        assert row['bg_outranks_confident_fg'] == 0
    assert rows[0]['weight_fg'] / rows[0]['weight_bg'] > rows[1][
        'weight_fg'] / rows[1]['weight_bg']
    assert rows[0]['ea_fg_share'] > rows[1]['ea_fg_share']


def test_tool_sweeps_a_dense_config(synthetic_root, tmp_path):
    from mmengine.config import Config

    from mmdet_eakd.utils import write_random_teacher_checkpoint
    write_random_teacher_checkpoint(
        Config.fromfile(str(SYNTHETIC_CONFIGS /
                            'eakd_gfl_teacher_tiny_synthetic.py')),
        tmp_path / 'teacher.pth')
    cfg = tmp_path / 'eakd.py'
    cfg.write_text(
        f"_base_ = '{SYNTHETIC_CONFIGS / 'eakd_gfl_teacher_tiny_synthetic.py'}'"
        f'\n{data_overrides(synthetic_root, batch_size=2)}')
    out = tmp_path / 'sweep.json'
    stdout = run_tool(python_tool('sweep_entropy_temperature.py') + [
        str(cfg), '--teacher-checkpoint', str(tmp_path / 'teacher.pth'),
        '--temperatures', '1', '3', '--num-batches', '2', '--out', str(out)
    ], cwd=ROOT).stdout
    result = json.loads(out.read_text())
    assert result['batches'] == 2 and result['classifier'] == 'sigmoid'
    assert result['samples'] > result['positives'] > 0
    assert [r['entropy_temperature'] for r in result['rows']] == [1.0, 3.0]
    assert "| T' |" in stdout and '| 3 |' in stdout
    # a missing checkpoint is a clear usage error
    with pytest.raises(AssertionError, match='does not exist'):
        run_tool(python_tool('sweep_entropy_temperature.py') + [
            str(cfg), '--teacher-checkpoint', str(tmp_path / 'nope.pth')
        ], cwd=ROOT)
