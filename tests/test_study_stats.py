"""Study statistics against values computed by hand (t table, textbook sums)."""
import math

import pytest

from mmdet_eakd.study.stats import (half_split_noise_std, paired_difference,
                                    seeds_for_halfwidth, std_interval,
                                    summarize, t_interval_halfwidth)


def test_summarize_by_hand():
    # mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5; 5 / 3
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert (s.n, s.mean, s.min, s.max) == (4, 2.5, 1.0, 4.0)
    assert s.std == pytest.approx(math.sqrt(5 / 3), rel=1e-12)


def test_summarize_single_seed_has_no_spread():
    s = summarize([17.5])
    assert s.mean == 17.5 and math.isnan(s.std)


def test_t_halfwidth_matches_t_table():
    # t_{0.975, 2} = 4.303, t_{0.975, 4} = 2.776 (printed t tables)
    assert t_interval_halfwidth(1.0, 3) == pytest.approx(4.303 / math.sqrt(3),
                                                         abs=1e-3)
    assert t_interval_halfwidth(2.0, 5) == pytest.approx(2 * 2.776 / math.sqrt(5),
                                                         abs=1e-3)
    # t_{0.95, 9} = 1.833 (90% two-sided)
    assert t_interval_halfwidth(1.0, 10, confidence=0.90) == pytest.approx(
        1.833 / math.sqrt(10), abs=1e-3)


def test_paired_difference_resolved_by_hand():
    # differences 0.5, 1.5, 1.0, 1.0: mean 1.0, sd sqrt(0.5 / 3) = 0.40825,
    # half-width t_{0.975, 3} * sd / 2 = 3.182 * 0.40825 / 2 = 0.6495
    d = paired_difference([10.5, 11.5, 12.0, 9.0], [10.0, 10.0, 11.0, 8.0])
    assert d.n == 4 and d.mean == pytest.approx(1.0)
    assert d.std == pytest.approx(math.sqrt(0.5 / 3))
    assert d.ci_low == pytest.approx(1.0 - 0.6495, abs=1e-3)
    assert d.ci_high == pytest.approx(1.0 + 0.6495, abs=1e-3)
    assert (d.wins, d.losses, d.verdict) == (4, 0, 'a > b')
    assert d.as_dict()['interval'] == 'student-t'


def test_paired_difference_uses_pairs_not_groups():
    # The same values unpaired would overlap widely; paired, B is always 1 lower.
    a = [20.0, 15.0, 25.0]
    d = paired_difference(a, [x - 1.0 for x in a])
    assert d.mean == pytest.approx(1.0) and d.std == pytest.approx(0.0)
    assert d.ci_low == pytest.approx(1.0) and d.verdict == 'a > b'


def test_paired_difference_not_resolved_and_negative():
    # differences 1, -1, 2: mean 2/3, sd sqrt(7/3) = 1.5275, half 4.303 *
    # 1.5275 / sqrt(3) = 3.795 -> the interval contains 0
    d = paired_difference([1.0, -1.0, 2.0], [0.0, 0.0, 0.0])
    assert d.mean == pytest.approx(2 / 3)
    assert d.ci_low == pytest.approx(2 / 3 - 3.795, abs=2e-3)
    assert (d.wins, d.losses, d.verdict) == (2, 1, 'not resolved')
    neg = paired_difference([0.0, 0.0, 0.0], [1.0, 1.2, 0.9])
    assert neg.verdict == 'a < b' and neg.losses == 3


def test_paired_difference_single_seed_has_no_interval():
    d = paired_difference([2.0], [1.0])
    assert d.mean == 1.0 and math.isnan(d.ci_low) and d.verdict == 'not resolved'


@pytest.mark.parametrize('a, b, match', [
    ([1.0, 2.0], [1.0], 'one value per seed'),
    ([], [], 'non-empty'),
    ([1.0, float('nan')], [1.0, 2.0], 'non-finite'),
])
def test_paired_difference_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_difference(a, b)


def test_t_interval_needs_two_values():
    with pytest.raises(ValueError, match='at least 2'):
        t_interval_halfwidth(1.0, 1)


def test_report_by_hand(tmp_path):
    """build_report on given per-seed metrics: summaries, pairs, Markdown."""
    import json

    from mmdet_eakd.study import REGIMES
    from mmdet_eakd.study.report import build_report, write_report
    ap = {'student': [0.170, 0.180, 0.160], 'KD': [0.190, 0.200, 0.175],
          'EA-KD': [0.200, 0.205, 0.190]}
    results = {f'{m}/seed{s}': dict(
        metrics={'coco/bbox_mAP': v, 'coco/bbox_mAP_50': 2 * v,
                 'coco/bbox_mAP_75': v / 2}, train_time_s=60.0)
        for m, values in ap.items() for s, v in enumerate(values)}
    report = build_report(REGIMES['frcnn'], list(ap), [0, 1, 2], results,
                          teacher_metrics={'coco/bbox_mAP': 0.4,
                                           'coco/bbox_mAP_50': 0.6,
                                           'coco/bbox_mAP_75': 0.45},
                          wall_time_s=600.0, jobs=2, threads=1)
    data = report.data
    # KD - student: 2.0, 2.0, 1.5 points -> mean 1.8333, sd sqrt(1/12)
    kd, ea_student, ea = data['comparisons']
    assert (kd['method'], kd['reference']) == ('KD', 'student')
    assert (ea_student['method'], ea_student['reference']) == ('EA-KD',
                                                               'student')
    # EA-KD - student: 3.0, 2.5, 3.0 points
    assert ea_student['AP']['mean'] == pytest.approx(8.5 / 3)
    assert kd['AP']['mean'] == pytest.approx(11 / 6)
    assert kd['AP']['std'] == pytest.approx(math.sqrt(1 / 12))
    half = 4.303 * math.sqrt(1 / 12) / math.sqrt(3)
    assert kd['AP']['ci_low'] == pytest.approx(11 / 6 - half, abs=1e-3)
    # EA-KD - KD: 1.0, 0.5, 1.5 -> mean 1.0, sd 0.5; AP50 doubles it
    assert ea['AP']['mean'] == pytest.approx(1.0) and ea['AP']['std'] == \
        pytest.approx(0.5)
    assert ea['AP50']['mean'] == pytest.approx(2.0)
    # half-width 4.303 * 0.5 / sqrt(3) = 1.242: 3 wins, yet not resolved
    assert ea['AP']['verdict'] == 'not resolved' and ea['AP']['wins'] == 3
    assert kd['AP']['verdict'] == 'a > b'
    assert data['summary']['KD']['AP']['mean'] == pytest.approx(18.8333, 1e-4)
    assert data['teacher']['AP'] == pytest.approx(40.0)
    assert data['total_train_time_s'] == 540.0
    md = report.markdown
    assert '| KD | 18.83 ± 1.26 |' in md
    assert '| EA-KD − KD | +1.00 [-0.24, +2.24] |' in md
    assert '| KD − student | +1.83 [+1.12, +2.55] |' in md
    write_report(report, tmp_path)
    stored = json.loads((tmp_path / 'study.json').read_text())
    assert stored['comparisons'][2]['AP']['mean'] == pytest.approx(1.0)
    assert (tmp_path / 'study.png').stat().st_size > 10_000


def test_report_shows_each_seed_s_learning_curve():
    from mmdet_eakd.study import REGIMES
    from mmdet_eakd.study.report import build_report
    curves = {0: [[6, 10.0, 0, 0], [12, 20.0, 0, 0]],
              1: [[6, 14.0, 0, 0], [12, 30.0, 0, 0]]}
    results = {f'student/seed{s}': dict(
        metrics={'coco/bbox_mAP': c[-1][1] / 100, 'coco/bbox_mAP_50': 0.5,
                 'coco/bbox_mAP_75': 0.1}, train_time_s=1.0, curve=c)
        for s, c in curves.items()}
    md = build_report(REGIMES['frcnn'], ['student'], [0, 1], results,
                      teacher_metrics=None, wall_time_s=1.0, jobs=1,
                      threads=1).markdown
    assert '| student (2 seeds) | 12.0 | 25.0 |' in md
    assert '| student, seed 0 | 10.0 | 20.0 |' in md
    assert '| student, seed 1 | 14.0 | 30.0 |' in md


def test_report_eval_noise_of_a_difference_reads_each_seed():
    """The eval noise of a paired difference: sd over seeds of (ΔAP on half
    A − ΔAP on half B) / 2, each seed's own halves."""
    from mmdet_eakd.study import REGIMES
    from mmdet_eakd.study.report import build_report
    halves = {'student/seed0': (38.0, 37.0), 'KD/seed0': (42.0, 42.0),
              'student/seed1': (43.0, 40.0), 'KD/seed1': (50.0, 50.0),
              'student/seed2': (41.0, 40.0), 'KD/seed2': (45.0, 44.0)}
    results = {name: dict(metrics={'coco/bbox_mAP': sum(h) / 200,
                                   'coco/bbox_mAP_50': 0.5,
                                   'coco/bbox_mAP_75': 0.1},
                          train_time_s=1.0)
               for name, h in halves.items()}
    data = build_report(REGIMES['frcnn'], ['student', 'KD'], [0, 1, 2],
                        results, teacher_metrics=None, wall_time_s=1.0,
                        jobs=1, threads=1, halves=halves).data
    # (ΔA − ΔB) per seed: -1, -3, 0 -> sd 1.5275, / 2
    (comp, ) = [c for c in data['comparisons'] if c['method'] == 'KD']
    assert comp['eval_noise_std'] == pytest.approx(1.527525 / 2, rel=1e-5)


def test_seeds_for_halfwidth_is_the_smallest_n():
    """The smallest n with t_{0.975, n-1} sd / sqrt(n) <= halfwidth."""
    for sd, target in ((0.81, 0.3), (0.5, 0.3), (0.2, 0.3), (1.0, 0.5)):
        n = seeds_for_halfwidth(sd, target)
        assert t_interval_halfwidth(sd, n) <= target
        assert n == 2 or t_interval_halfwidth(sd, n - 1) > target
    # by hand: sd 0.81 -> 31 seeds (t_30 = 2.042: 2.042 * 0.81 / sqrt(31)
    # = 0.297; t_29 = 2.045: 2.045 * 0.81 / sqrt(30) = 0.302)
    assert seeds_for_halfwidth(0.81, 0.3) == 31
    assert seeds_for_halfwidth(0.0, 0.3) == 2
    with pytest.raises(ValueError, match='halfwidth must be > 0'):
        seeds_for_halfwidth(0.5, 0)
    with pytest.raises(ValueError, match='more than 10 seeds'):
        seeds_for_halfwidth(5.0, 0.1, max_seeds=10)
    # large counts too (bisection): sd 2.23 -> 215, the frcnn-conv pilot's
    assert seeds_for_halfwidth(2.23, 0.3) == 215
    big = seeds_for_halfwidth(14.0, 0.3)
    assert t_interval_halfwidth(14.0, big) <= 0.3 < t_interval_halfwidth(
        14.0, big - 1)


def test_std_interval_by_hand():
    """chi-square table, 2 degrees of freedom: chi2_{0.025} = 0.0506,
    chi2_{0.975} = 7.378; 9: 2.700 and 19.023."""
    low, high = std_interval(2.0, 3)
    assert low == pytest.approx(2.0 * math.sqrt(2 / 7.3778), rel=1e-4)
    assert high == pytest.approx(2.0 * math.sqrt(2 / 0.050636), rel=1e-4)
    low, high = std_interval(1.0, 10)
    assert (low, high) == (pytest.approx(math.sqrt(9 / 19.0228), rel=1e-4),
                           pytest.approx(math.sqrt(9 / 2.7004), rel=1e-4))
    with pytest.raises(ValueError, match='at least 2 values'):
        std_interval(1.0, 1)


def test_report_power_rows_give_the_sd_interval_and_its_seed_counts():
    from mmdet_eakd.study import REGIMES
    from mmdet_eakd.study.report import build_report
    ap = {'student': [0.30, 0.40, 0.35], 'KD': [0.33, 0.45, 0.38]}
    results = {f'{m}/seed{s}': dict(
        metrics={'coco/bbox_mAP': v, 'coco/bbox_mAP_50': 0.5,
                 'coco/bbox_mAP_75': 0.1}, train_time_s=1.0)
        for m, values in ap.items() for s, v in enumerate(values)}
    report = build_report(REGIMES['frcnn'], ['student', 'KD'], [0, 1, 2],
                          results, teacher_metrics=None, wall_time_s=1.0,
                          jobs=1, threads=1)
    (comp, ) = report.data['comparisons']
    # KD - student: 3, 5, 3 points -> sd 1.1547
    sd = math.sqrt(4 / 3)
    assert comp['AP']['std'] == pytest.approx(sd)
    low, high = std_interval(sd, 3)
    assert comp['std_interval'] == [pytest.approx(low), pytest.approx(high)]
    assert comp['seeds_for_target'] == seeds_for_halfwidth(sd, 0.3)
    assert comp['seeds_for_target_interval'] == [
        seeds_for_halfwidth(low, 0.3), seeds_for_halfwidth(high, 0.3)]
    row = (f'| KD − student | {sd:.2f} [{low:.2f}, {high:.2f}] | '
           f'{seeds_for_halfwidth(sd, 0.3)} [{seeds_for_halfwidth(low, 0.3)}'
           f', {seeds_for_halfwidth(high, 0.3)}] |')
    assert row in report.markdown
    # an sd whose upper limit needs more than MAX_SEEDS seeds: '>100000'
    from mmdet_eakd.study.report import _seeds_for_target
    assert _seeds_for_target(200.0, 0.95) is None
    with pytest.raises(ValueError, match='std must be finite'):
        _seeds_for_target(float('nan'), 0.95)


def test_half_split_noise_std_by_hand():
    """sd(a - b) / 2: a constant offset between the halves cancels."""
    a = [30.0, 31.0, 29.0]
    b = [28.0, 30.0, 27.0]  # a - b = 2, 1, 2: sd = 0.57735
    assert half_split_noise_std(a, b) == pytest.approx(0.57735 / 2, rel=1e-4)
    assert half_split_noise_std([5.0, 6.0], [4.0, 5.0]) == 0.0
    assert math.isnan(half_split_noise_std([1.0], [2.0]))
    with pytest.raises(ValueError, match='one value per run'):
        half_split_noise_std([1.0, 2.0], [1.0])


def test_report_gives_the_logged_statistics_over_training():
    """Per distilling method: each statistic at the first, middle and last
    epoch and over training, the mean over seeds of the runs' epoch means;
    a method whose runs logged nothing (the student) has no rows; runs of
    different schedules are refused."""
    from mmdet_eakd.study import REGIMES
    from mmdet_eakd.study.report import build_report
    stats = {0: dict(ea_weight=[1.0, 2.0, 3.0, 4.0, 5.0],
                     ea_weight_fg=[2.0, 2.0, 2.0, 2.0, 2.0]),
             1: dict(ea_weight=[3.0, 4.0, 5.0, 6.0, 7.0],
                     ea_weight_fg=[4.0, 4.0, 4.0, 4.0, 4.0])}
    results = {}
    for seed in (0, 1):
        for method in ('student', 'EA-KD'):
            results[f'{method}/seed{seed}'] = dict(
                metrics={'coco/bbox_mAP': 0.3, 'coco/bbox_mAP_50': 0.5,
                         'coco/bbox_mAP_75': 0.1}, train_time_s=1.0,
                stats_by_epoch=stats[seed] if method == 'EA-KD' else None)
    report = build_report(REGIMES['frcnn'], ['student', 'EA-KD'], [0, 1],
                          results, teacher_metrics=None, wall_time_s=1.0,
                          jobs=1, threads=1)
    table = report.data['over_training']
    assert list(table) == ['EA-KD']
    weight = table['EA-KD']['ea_weight']
    # seeds' epoch 1: 1, 3; epoch 3: 3, 5; epoch 5: 5, 7; means 3 and 5
    assert (weight['first'], weight['middle'], weight['last'],
            weight['mean']) == (2.0, 4.0, 6.0, 4.0)
    assert weight['epochs'] == [1, 3, 5] and weight['seeds'] == 2
    assert table['EA-KD']['ea_weight_fg']['mean'] == 3.0
    assert ('| EA-KD | ea_weight | 2 (ep 1) | 4 (ep 3) | 6 (ep 5) | 4 |'
            in report.markdown)
    results['EA-KD/seed1']['stats_by_epoch'] = dict(ea_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match='different numbers of epochs'):
        build_report(REGIMES['frcnn'], ['student', 'EA-KD'], [0, 1],
                     results, teacher_metrics=None, wall_time_s=1.0, jobs=1,
                     threads=1)
