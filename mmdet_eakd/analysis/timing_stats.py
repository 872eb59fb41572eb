"""Intervals for ratios of interleaved benchmark timings (no mmdet import).

A benchmark runs every variant once per round, in an order that rotates, for
``n`` rounds. A ratio such as ``median(eakd) / median(kd)`` is a statistic of
the per-variant medians; its interval is a percentile bootstrap over rounds:
resample ``n`` rounds with replacement (all variants of a round together, so
slow and fast rounds stay paired), recompute the statistic, and take the
``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles. A target is called
met or missed only when the whole interval lies on one side of its bound.
"""
import random
import statistics
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

#: Per-variant medians -> the statistic (e.g. a ratio).
Statistic = Callable[[Mapping[str, float]], float]

MET, MISSED, NOT_RESOLVED = 'met', 'MISSED', 'not resolved'
#: Fewer rounds than this never resolve a target (a bootstrap over one or
#: two rounds gives a degenerate interval).
MIN_ROUNDS = 5


def _medians(times: Mapping[str, Sequence[float]],
             rounds: Sequence[int]) -> Dict[str, float]:
    return {
        name: statistics.median([values[r] for r in rounds])
        for name, values in times.items()
    }


def bootstrap_interval(times: Mapping[str, Sequence[float]],
                       statistic: Statistic,
                       level: float = 0.95,
                       resamples: int = 2000,
                       seed: int = 0) -> Tuple[float, float, float]:
    """Point value and percentile-bootstrap interval of a timing statistic.

    Args:
        times (Mapping[str, Sequence[float]]): Seconds per round of each
            variant the statistic needs; all of the same length ``n``
            (round ``r`` of every variant ran in the same round).
        statistic (Callable): Maps per-variant medians to a number.
        level (float): Coverage of the interval. Defaults to 0.95.
        resamples (int): Bootstrap resamples. Defaults to 2000.
        seed (int): Seed of the resampling. Defaults to 0.

    Returns:
        tuple[float, float, float]: The statistic of all rounds, and the lower
        and upper ends of its interval.
    """
    lengths = {len(values) for values in times.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError('every variant needs the same number (>= 1) of '
                         f'rounds, got {sorted(lengths)}')
    if not 0 < level < 1:
        raise ValueError(f'level must be in (0, 1), got {level}')
    num_rounds = lengths.pop()
    point = statistic(_medians(times, range(num_rounds)))
    rng = random.Random(seed)
    draws = sorted(
        statistic(_medians(times, rng.choices(range(num_rounds),
                                              k=num_rounds)))
        for _ in range(resamples))
    tail = (1 - level) / 2
    low = draws[int(tail * (resamples - 1))]
    high = draws[int(round((1 - tail) * (resamples - 1)))]
    return point, low, high


def verdict(low: float, high: float, op: str, bound: float) -> str:
    """``'met'`` / ``'MISSED'`` when the interval lies on one side of
    ``bound``, ``'not resolved'`` when it straddles it.

    Args:
        low (float): Lower end of the interval.
        high (float): Upper end.
        op (str): ``'<='`` (target: statistic <= bound) or ``'>'``.
        bound (float): The target's bound.
    """
    if op == '<=':
        if high <= bound:
            return MET
        return MISSED if low > bound else NOT_RESOLVED
    if op == '>':
        if low > bound:
            return MET
        return MISSED if high <= bound else NOT_RESOLVED
    raise ValueError(f"op must be '<=' or '>', got {op!r}")


def rounds_to_resolve(times: Mapping[str, Sequence[float]],
                      statistic: Statistic, op: str, bound: float,
                      min_rounds: int = MIN_ROUNDS,
                      **bootstrap_args) -> Optional[int]:
    """The fewest leading rounds from which on the verdict stays resolved.

    The verdict of the first ``k`` rounds is computed for every
    ``k >= min_rounds``; the answer is the smallest ``k`` such that the
    verdicts of ``k, k + 1, ..., n`` rounds are all the same resolved one.

    Returns:
        int | None: That ``k``, or None if all ``n`` rounds do not resolve it.
    """
    num_rounds = len(next(iter(times.values())))
    verdicts: List[str] = []
    for k in range(min_rounds, num_rounds + 1):
        prefix = {name: list(values)[:k] for name, values in times.items()}
        _, low, high = bootstrap_interval(prefix, statistic, **bootstrap_args)
        verdicts.append(verdict(low, high, op, bound))
    if not verdicts or verdicts[-1] == NOT_RESOLVED:
        return None
    first = len(verdicts) - 1
    while first > 0 and verdicts[first - 1] == verdicts[-1]:
        first -= 1
    return min_rounds + first


def judge_target(times: Mapping[str, Sequence[float]], statistic: Statistic,
                 op: str, bound: float, min_rounds: int = MIN_ROUNDS,
                 **bootstrap_args) -> Dict[str, object]:
    """A timing statistic, its interval and the target's verdict.

    Args:
        times, statistic: See :func:`bootstrap_interval`.
        op (str), bound (float): The target, see :func:`verdict`.
        min_rounds (int): Fewer rounds give ``'not resolved'``.
        **bootstrap_args: ``level``, ``resamples``, ``seed``.

    Returns:
        dict: ``value``, ``interval`` ([low, high]), ``verdict`` and
        ``rounds_to_resolve`` (see :func:`rounds_to_resolve`).
    """
    value, low, high = bootstrap_interval(times, statistic, **bootstrap_args)
    num_rounds = len(next(iter(times.values())))
    return dict(
        value=value,
        interval=[low, high],
        verdict=(verdict(low, high, op, bound)
                 if num_rounds >= min_rounds else NOT_RESOLVED),
        rounds_to_resolve=rounds_to_resolve(
            times, statistic, op, bound, min_rounds=min_rounds,
            **bootstrap_args))
