"""tools/analyze_entropy.py and its pure statistics module."""
import json
import math

import pytest
import torch
from conftest import SYNTHETIC_CONFIGS, load_tool
from mmengine.config import Config
from PIL import Image

from mmdet_eakd.analysis import (describe, loss_share_summary, quartile_edges,
                                 quartile_index, quartile_shares,
                                 top_fraction_mask, upper_tail_shares)
from mmdet_eakd.losses.functional import entropy_weights

TEACHER_CFG = SYNTHETIC_CONFIGS / 'frcnn_teacher_synthetic.py'
STUDENT_CFG = SYNTHETIC_CONFIGS / 'frcnn_tiny_synthetic.py'
#: RoIs sampled per image by the synthetic configs' train_cfg.rcnn sampler.
ROIS_PER_IMAGE = Config.fromfile(
    str(STUDENT_CFG)).model.train_cfg.rcnn.sampler.num
PLOTS = ('entropy_hist.png', 'loss_share_quartiles.png',
         'ea_weight_entropy.png')
TAILS = ('Q4', 'Q3+Q4', 'Q2+Q3+Q4')



# ---------------------------------------------------------------- pure stats


def test_quartile_edges_index_and_known_shares():
    values = torch.arange(8.)
    edges = quartile_edges(values)
    assert edges.tolist() == pytest.approx([0, 1.75, 3.5, 5.25, 7])
    index = quartile_index(values, edges)
    assert index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    loss = torch.tensor([1., 1., 2., 2., 3., 3., 4., 4.])
    shares = quartile_shares(loss, index)
    assert shares.tolist() == pytest.approx([.1, .2, .3, .4])
    assert upper_tail_shares(shares) == pytest.approx(
        {'Q4': .4, 'Q3+Q4': .7, 'Q2+Q3+Q4': .9})


def test_quartile_index_puts_edge_values_in_the_lower_quartile():
    values = torch.tensor([0., 1., 1., 1., 2.])  # ties at the median
    edges = quartile_edges(values)
    assert quartile_index(values, edges).tolist() == [0, 0, 0, 0, 3]


def test_loss_share_summary_sums_to_one_and_counts():
    torch.manual_seed(0)
    h_t = torch.rand(101)
    summary = loss_share_summary(h_t, {'a': torch.rand(101),
                                       'b': torch.rand(101)})
    assert sum(summary['quartile_counts']) == 101
    assert len(summary['quartile_edges']) == 5
    for method in ('a', 'b'):
        shares = [summary['shares'][method][q] for q in ('Q1', 'Q2', 'Q3',
                                                         'Q4')]
        assert sum(shares) == pytest.approx(1.0)
        assert summary['shares'][method]['upper_tail']['Q4'] == shares[3]


def test_shares_reject_bad_losses():
    index = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match='total loss is 0'):
        quartile_shares(torch.zeros(3), index)
    with pytest.raises(ValueError, match='negative'):
        quartile_shares(torch.tensor([1., -1., 1.]), index)
    with pytest.raises(ValueError, match='empty'):
        quartile_edges(torch.zeros(0))
    with pytest.raises(ValueError, match='NaN'):
        quartile_edges(torch.tensor([0., float('nan')]))


def test_top_fraction_and_describe():
    values = torch.arange(20.)
    assert top_fraction_mask(values).nonzero().flatten().tolist() == [18, 19]
    assert int(top_fraction_mask(torch.arange(5.)).sum()) == 1  # ceil(0.5)
    stats = describe(torch.tensor([1., 2., 3., 4., 5.]))
    assert stats['count'] == 5 and stats['mean'] == pytest.approx(3)
    assert stats['median'] == pytest.approx(3)
    assert stats['std'] == pytest.approx(math.sqrt(2))


def tail_shares(h_t, loss):
    """Upper-tail shares (Q4, Q3+Q4, Q2+Q3+Q4) of ``loss`` by H_T quartile."""
    index = quartile_index(h_t, quartile_edges(h_t))
    return upper_tail_shares(quartile_shares(loss, index))


def test_weights_monotone_in_h_t_move_share_up():
    """Theorem: a weight that is a non-decreasing function of H_T moves loss
    share to every upper tail of the H_T quartiles.

    For a tail U and the rest L, every weight in U is >= every weight in L,
    so the loss-weighted mean weight of U is >= that of L, which is the same
    as sum_U(w L) / sum(w L) >= sum_U(L) / sum(L). This covers w_base = H_T
    and w_EA at a constant H_S; it holds for any losses.
    """
    torch.manual_seed(0)
    upper = math.log(5)
    for _ in range(20):
        h_t = torch.rand(400) * upper
        kd = torch.rand(400) ** 3
        constant_h_s = torch.full_like(h_t, float(torch.rand(1)) * upper)
        for mode in ('base', 'ea'):
            w = entropy_weights(h_t, constant_h_s, mode,
                                entropy_upper_bound=upper)
            weighted, plain = tail_shares(h_t, w * kd), tail_shares(h_t, kd)
            for tail in TAILS:
                assert weighted[tail] >= plain[tail] - 1e-12


def test_ea_weights_can_move_share_down_when_h_s_reverses_the_order():
    """w_EA = H_T (1 + H_S / H_ub) / 2 is monotone in H_T only at fixed H_S:
    a confident student (H_S = 0) on the highest-H_T RoIs halves their weight,
    so EA-KD can give Q4 *less* share than KD. The tool's test therefore
    proves its EA-KD assertion from the data (see below), not in general."""
    upper = math.log(5)
    h_t = torch.tensor([1.0] * 6 + [1.1] * 2)
    h_s = torch.tensor([upper] * 6 + [0.0] * 2)
    kd = torch.ones(8)
    w_ea = entropy_weights(h_t, h_s, 'ea', entropy_upper_bound=upper)
    assert tail_shares(h_t, w_ea * kd)['Q4'] < tail_shares(h_t, kd)['Q4']


# --------------------------------------------------------------- the tool


@pytest.fixture(scope='module')
def spread_teacher_ckpt(tmp_path_factory):
    """A random-init teacher whose RoI classifier is scaled up 100x.

    A plain random-init teacher predicts a near-uniform distribution on every
    RoI (all H_T within 1e-3 of log C), so its quartiles would sort noise; the
    scaled classifier spreads H_T over most of [0, log C] like a trained one.
    """
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    teacher = MODELS.build(Config.fromfile(str(TEACHER_CFG)).model)
    teacher.init_weights()
    with torch.no_grad():
        teacher.roi_head.bbox_head.fc_cls.weight.mul_(100)
    path = tmp_path_factory.mktemp('teacher') / 'teacher.pth'
    torch.save({'state_dict': teacher.state_dict(), 'meta': {}}, path)
    return path


def data_options(root):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={root}/',
            'train_dataloader.batch_size=2']


def ea_share_lower_bound(base_share: float, scale_min: float) -> float:
    """Lower bound of an EA-KD tail share from the w_base share of that tail.

    w_EA = H_T * s with s = (1 + H_S / H_ub) / 2 in [scale_min, 1]. With
    A = sum_U H_T L and B = sum_rest H_T L (so base_share = A / (A + B)):
    sum_U w L >= scale_min * A and sum_rest w L <= B, hence the EA share
    sum_U w L / sum w L >= scale_min A / (scale_min A + B).
    """
    return scale_min * base_share / (scale_min * base_share + 1 - base_share)


def test_tool_plots_and_summary(synthetic_root, spread_teacher_ckpt,
                                tmp_path, capsys):
    out_dir = tmp_path / 'out'
    max_rois = 3 * ROIS_PER_IMAGE + 5  # < the 2 batches x 2 images sampled
    status = load_tool('analyze_entropy').main([
        str(TEACHER_CFG), str(spread_teacher_ckpt), '--student-config',
        str(STUDENT_CFG), '--num-batches', '2', '--max-rois', str(max_rois),
        '--out-dir', str(out_dir)
    ] + data_options(synthetic_root))
    output = capsys.readouterr()
    assert status == 0, output.err
    assert 'Loss share of Q4' in output.out
    assert '2/2' in output.out  # the progress bar ran to the end
    for name in PLOTS:
        with Image.open(out_dir / name) as image:
            image.verify()
            assert image.size[0] > 300 and image.size[1] > 300
    summary = json.loads((out_dir / 'summary.json').read_text())
    counts = summary['counts']
    assert counts['rois'] == max_rois
    assert counts['foreground'] + counts['background'] == max_rois
    assert counts['foreground'] > 0 and counts['batches'] == 2
    assert summary['student']['note'] == 'student: random init'
    assert summary['top10']['count'] == math.ceil(0.1 * max_rois)
    log_c = math.log(9)  # 8 classes + background
    assert summary['entropy_upper_bound'] == pytest.approx(log_c)

    shares = summary['shares']
    for method in ('kd', 'ea_kd', 'base'):
        assert sum(shares[method][q] for q in ('Q1', 'Q2', 'Q3', 'Q4')) == \
            pytest.approx(1.0, abs=1e-9)
    kd, ea, base = (shares[m]['upper_tail'] for m in ('kd', 'ea_kd', 'base'))
    # The teacher's entropies are spread, so the quartiles mean something.
    h_t = summary['entropy_teacher']['all']
    assert h_t['q3'] - h_t['q1'] > 0.2
    # The random-init student's logits are ~0: H_S ~ log C on every RoI, so
    # the EA scale s = (1 + H_S / log C) / 2 of w_EA = H_T * s is ~1.
    scale_min = (1 + summary['entropy_student']['all']['min'] / log_c) / 2
    assert scale_min > 0.99
    for tail in TAILS:
        # w_base = H_T is monotone in H_T: always at least KD's share
        # (test_weights_monotone_in_h_t_move_share_up).
        assert base[tail] >= kd[tail] - 1e-9
        # Always true for w_EA (see ea_share_lower_bound) ...
        bound = ea_share_lower_bound(base[tail], scale_min)
        assert ea[tail] >= bound - 1e-9
        # ... and on these RoIs the bound clears KD's share (s ~ 1, and the
        # spread H_T gives w_base a clear margin over KD), which proves:
        assert bound >= kd[tail]
        assert ea[tail] >= kd[tail]
    # Q3+Q4 is where the paper reads the shift (Fig. 5): a clear one here.
    assert ea['Q3+Q4'] > kd['Q3+Q4'] + 0.05


def test_tool_samples_with_the_teacher_without_student(
        synthetic_root, spread_teacher_ckpt, tmp_path, capsys):
    tool = load_tool('analyze_entropy')
    out_dir = tmp_path / 'out'
    status = tool.main([
        str(TEACHER_CFG), str(spread_teacher_ckpt), '--num-batches', '1',
        '--out-dir', str(out_dir), '--cfg-options',
        f'train_dataloader.dataset.data_root={synthetic_root}/',
        'train_dataloader.batch_size=1'
    ])
    assert status == 0, capsys.readouterr().err
    summary = json.loads((out_dir / 'summary.json').read_text())
    assert 'RoIs from the teacher' in summary['student']['note']
    # 1 image, sampled by the teacher's train_cfg.rcnn sampler
    teacher_rois = Config.fromfile(
        str(TEACHER_CFG)).model.train_cfg.rcnn.sampler.num
    assert summary['counts']['rois'] == teacher_rois
    assert all((out_dir / name).is_file() for name in PLOTS)


def test_tool_errors(spread_teacher_ckpt, tmp_path, capsys, write_config):
    tool = load_tool('analyze_entropy')
    missing = str(tmp_path / 'missing.pth')
    assert tool.main([str(TEACHER_CFG), missing]) == 1
    assert 'Teacher checkpoint' in capsys.readouterr().err
    assert tool.main([
        str(TEACHER_CFG), str(spread_teacher_ckpt), '--student-config',
        str(STUDENT_CFG), '--student-checkpoint', missing
    ]) == 1
    assert 'Student checkpoint' in capsys.readouterr().err
    three_classes = write_config(
        TEACHER_CFG, 'model = dict(roi_head=dict(bbox_head=dict('
        'num_classes=3)))\n')
    assert tool.main([
        str(three_classes), str(spread_teacher_ckpt), '--student-config',
        str(STUDENT_CFG)
    ]) == 1
    assert 'classifies 3 classes but the student 8' in capsys.readouterr().err
    # a dense student: pointed to the dense tool instead of a TypeError
    assert tool.main([
        str(TEACHER_CFG), str(spread_teacher_ckpt), '--student-config',
        str(STUDENT_CFG.parent / 'gfl_tiny_synthetic.py')
    ]) == 1
    assert 'sweep_entropy_temperature.py' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main([str(TEACHER_CFG), missing, '--student-checkpoint', missing])


def test_tool_collects_every_cascade_stage(synthetic_root, spread_teacher_ckpt,
                                           tmp_path, capsys):
    """A Cascade R-CNN student: the RoIs of all its stages (each stage samples
    its own), classified by the Faster R-CNN teacher's one box head."""
    out_dir = tmp_path / 'out'
    status = load_tool('analyze_entropy').main([
        str(TEACHER_CFG), str(spread_teacher_ckpt), '--student-config',
        str(SYNTHETIC_CONFIGS / 'cascade_tiny_synthetic.py'), '--num-batches',
        '1', '--out-dir', str(out_dir), '--cfg-options',
        f'train_dataloader.dataset.data_root={synthetic_root}/',
        'train_dataloader.batch_size=1'
    ])
    assert status == 0, capsys.readouterr().err
    summary = json.loads((out_dir / 'summary.json').read_text())
    # one image: more RoIs than one stage samples
    assert summary['counts']['rois'] > ROIS_PER_IMAGE
