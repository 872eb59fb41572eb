"""Bootstrap intervals and verdicts of benchmark ratios (pure functions)."""
import random

import pytest

from mmdet_eakd.analysis import (MET, MISSED, NOT_RESOLVED, bootstrap_interval,
                                 judge_target, rounds_to_resolve, verdict)


def ratio(medians):
    return medians['a'] / medians['b']


def noisy_rounds(true_ratio, noise, rounds, seed=0):
    """Per-round times whose machine load drifts alike for both variants."""
    rng = random.Random(seed)
    times = {'a': [], 'b': []}
    for _ in range(rounds):
        load = 1 + rng.uniform(0, 0.5)
        times['b'].append(load * (1 + rng.gauss(0, noise)))
        times['a'].append(load * true_ratio * (1 + rng.gauss(0, noise)))
    return times


def test_interval_contains_point_and_shrinks_with_rounds():
    few = noisy_rounds(1.0, 0.05, 6)
    many = noisy_rounds(1.0, 0.05, 60)
    for times in (few, many):
        point, low, high = bootstrap_interval(times, ratio)
        assert low <= point <= high
    width = (lambda t: bootstrap_interval(t, ratio)[2] -
             bootstrap_interval(t, ratio)[1])
    assert width(many) < width(few)


def test_identical_rounds_give_a_point_interval():
    times = {'a': [2.0] * 5, 'b': [1.0] * 5}
    assert bootstrap_interval(times, ratio) == (2.0, 2.0, 2.0)


@pytest.mark.parametrize('low, high, op, expected', [
    (0.95, 1.01, '<=', MET),
    (1.03, 1.10, '<=', MISSED),
    (0.99, 1.04, '<=', NOT_RESOLVED),
    (1.01, 1.20, '>', MET),
    (0.80, 0.99, '>', MISSED),
    (0.90, 1.10, '>', NOT_RESOLVED),
])
def test_verdict_needs_the_whole_interval_on_one_side(low, high, op,
                                                      expected):
    bound = 1.02 if op == '<=' else 1.0
    assert verdict(low, high, op, bound) == expected


def test_noise_around_the_bound_is_not_resolved():
    """A true ratio equal to the bound with noisy rounds: no verdict, even
    though the point estimate lands on one side."""
    times = noisy_rounds(1.02, 0.08, 8, seed=3)
    judged = judge_target(times, ratio, '<=', 1.02)
    assert judged['verdict'] == NOT_RESOLVED
    assert judged['rounds_to_resolve'] is None


def test_clear_difference_resolves_and_says_when():
    times = noisy_rounds(0.9, 0.02, 20, seed=1)
    judged = judge_target(times, ratio, '<=', 1.02)
    assert judged['verdict'] == MET
    k = judged['rounds_to_resolve']
    assert 5 <= k <= 20
    assert k == rounds_to_resolve(times, ratio, '<=', 1.02)
    # from k rounds on, the leading rounds alone already resolve it
    prefix = {name: values[:k] for name, values in times.items()}
    assert judge_target(prefix, ratio, '<=', 1.02)['verdict'] == MET


def test_too_few_rounds_never_resolve():
    times = {'a': [1.0] * 3, 'b': [2.0] * 3}
    assert judge_target(times, ratio, '<=', 1.02)['verdict'] == NOT_RESOLVED


def test_bad_input_is_named():
    with pytest.raises(ValueError, match='same number'):
        bootstrap_interval({'a': [1.0, 2.0], 'b': [1.0]}, ratio)
    with pytest.raises(ValueError, match="op must be '<=' or '>'"):
        verdict(0.0, 1.0, '<', 1.0)
