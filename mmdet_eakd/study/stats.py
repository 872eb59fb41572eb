"""Statistics of a seeds x methods study: spread per method, paired differences.

Pure numpy / scipy, no mmdet imports. A study trains every method once per
seed from the same initial weights, data order and teacher, so two methods are
compared *per seed* (a paired design): the per-seed differences cancel what a
seed does to both methods alike (a lucky initialisation, an easy data order).

The interval of a mean paired difference is the two-sided Student-t interval
``mean +- t_{(1 + confidence) / 2, n - 1} * sd / sqrt(n)`` of the ``n``
per-seed differences (``sd`` with ``n - 1`` degrees of freedom). It assumes the
differences are roughly normal; with 3-10 seeds a bootstrap interval would be
too narrow (it cannot reach beyond the observed differences), so the t-interval
is the honest choice here.
"""
import math
from dataclasses import asdict, dataclass
from typing import Dict, Sequence, Tuple

import numpy as np
from scipy import stats as _scipy_stats


@dataclass(frozen=True)
class Summary:
    """Mean and spread of one metric of one method over seeds.

    Attributes:
        n (int): Number of seeds.
        mean (float): Mean over seeds.
        std (float): Sample standard deviation (``n - 1`` degrees of freedom);
            ``nan`` for a single seed.
        min (float): Smallest value.
        max (float): Largest value.
    """
    n: int
    mean: float
    std: float
    min: float
    max: float

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-seed differences ``a - b`` with its t-interval.

    Attributes:
        n (int): Number of paired seeds.
        mean (float): Mean difference.
        std (float): Sample standard deviation of the differences
            (``nan`` when ``n < 2``).
        ci_low (float): Lower end of the two-sided interval (``nan`` when
            ``n < 2``).
        ci_high (float): Upper end.
        confidence (float): Confidence level of the interval, e.g. 0.95.
        wins (int): Seeds with ``a > b``.
        losses (int): Seeds with ``a < b``.
    """
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    confidence: float
    wins: int
    losses: int

    @property
    def verdict(self) -> str:
        """``'a > b'``, ``'a < b'`` when the interval excludes 0, else
        ``'not resolved'``."""
        if self.ci_low > 0:
            return 'a > b'
        if self.ci_high < 0:
            return 'a < b'
        return 'not resolved'

    def as_dict(self) -> Dict[str, float]:
        return dict(asdict(self), verdict=self.verdict,
                    interval='student-t')


#: Where :func:`seeds_for_halfwidth` gives up by default.
MAX_SEEDS = 100_000


def _as_vector(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f'{name} must be a non-empty 1-D sequence of numbers, '
                         f'got shape {array.shape}.')
    if not np.isfinite(array).all():
        raise ValueError(f'{name} holds non-finite values: {array.tolist()}.')
    return array


def summarize(values: Sequence[float]) -> Summary:
    """Mean, sample standard deviation, min and max of per-seed values.

    Args:
        values (Sequence[float]): One value per seed, shape (n,).

    Returns:
        Summary: ``std`` uses ``n - 1`` degrees of freedom (``nan`` if n = 1).
    """
    x = _as_vector(values, 'values')
    std = float(x.std(ddof=1)) if x.size > 1 else math.nan
    return Summary(n=int(x.size), mean=float(x.mean()), std=std,
                   min=float(x.min()), max=float(x.max()))


def t_interval_halfwidth(std: float, n: int, confidence: float = 0.95) -> float:
    """Half-width of the two-sided Student-t interval of a mean.

    Args:
        std (float): Sample standard deviation (``n - 1`` degrees of freedom).
        n (int): Sample size, >= 2.
        confidence (float): Confidence level in (0, 1).

    Returns:
        float: ``t_{(1 + confidence) / 2, n - 1} * std / sqrt(n)``.
    """
    if n < 2:
        raise ValueError(f'a t-interval needs at least 2 values, got n={n}.')
    if not 0 < confidence < 1:
        raise ValueError(f'confidence must be in (0, 1), got {confidence}.')
    quantile = float(_scipy_stats.t.ppf((1 + confidence) / 2, n - 1))
    return quantile * std / math.sqrt(n)


def paired_difference(a: Sequence[float], b: Sequence[float],
                      confidence: float = 0.95) -> PairedDifference:
    """Mean per-seed difference ``a - b`` and its two-sided t-interval.

    Args:
        a (Sequence[float]): Values of method A, one per seed, shape (n,).
        b (Sequence[float]): Values of method B for the same seeds, same
            order, shape (n,).
        confidence (float): Confidence level of the interval. Defaults to 0.95.

    Returns:
        PairedDifference: With ``nan`` spread and interval when n = 1.
    """
    x, y = _as_vector(a, 'a'), _as_vector(b, 'b')
    if x.shape != y.shape:
        raise ValueError('paired values need one value per seed on both '
                         f'sides, got {x.size} and {y.size}.')
    diff = x - y
    mean = float(diff.mean())
    if diff.size > 1:
        std = float(diff.std(ddof=1))
        half = t_interval_halfwidth(std, diff.size, confidence)
        low, high = mean - half, mean + half
    else:
        std = low = high = math.nan
    return PairedDifference(
        n=int(diff.size), mean=mean, std=std, ci_low=low, ci_high=high,
        confidence=confidence, wins=int((diff > 0).sum()),
        losses=int((diff < 0).sum()))


def seeds_for_halfwidth(std: float, halfwidth: float,
                        confidence: float = 0.95,
                        max_seeds: int = MAX_SEEDS) -> int:
    """The fewest seeds whose paired t-interval is at most ``+-halfwidth``.

    The smallest ``n >= 2`` with ``t_{(1 + confidence) / 2, n - 1} * std /
    sqrt(n) <= halfwidth``: the power statement of a study whose paired
    differences have standard deviation ``std`` (e.g. measured in pilots).
    The half-width falls with ``n``, so ``n`` is found by bisection.

    Args:
        std (float): Standard deviation of the per-seed paired differences.
        halfwidth (float): Wanted half-width of the interval, > 0.
        confidence (float): Level of the interval.
        max_seeds (int): Give up beyond this many seeds.

    Returns:
        int: The number of seeds.

    Raises:
        ValueError: ``std`` < 0 or not finite, ``halfwidth`` <= 0, or more
            than ``max_seeds`` seeds needed.
    """
    if not (math.isfinite(std) and std >= 0):
        raise ValueError(f'std must be finite and >= 0, got {std}.')
    if not halfwidth > 0:
        raise ValueError(f'halfwidth must be > 0, got {halfwidth}.')
    if t_interval_halfwidth(std, max_seeds, confidence) > halfwidth:
        raise ValueError(f'more than {max_seeds} seeds are needed for +-'
                         f'{halfwidth} at std {std}.')
    low, high = 1, max_seeds  # the half-width is > target at low, <= at high
    while high - low > 1:
        mid = (low + high) // 2
        if t_interval_halfwidth(std, mid, confidence) <= halfwidth:
            high = mid
        else:
            low = mid
    return high


def std_interval(std: float, n: int,
                 confidence: float = 0.95) -> Tuple[float, float]:
    """Two-sided chi-square interval of a standard deviation.

    For ``n`` normal values with sample sd ``std``, ``(n - 1) std^2 /
    sigma^2`` is chi-square with ``n - 1`` degrees of freedom; the interval
    of ``sigma`` follows. It says how far a seed count computed from a
    pilot's sd (:func:`seeds_for_halfwidth`) can be off.

    Args:
        std (float): Sample standard deviation (``n - 1`` degrees of freedom).
        n (int): Sample size, >= 2.
        confidence (float): Confidence level in (0, 1).

    Returns:
        tuple[float, float]: The lower and upper limit.
    """
    if n < 2:
        raise ValueError(f'an sd interval needs at least 2 values, got n={n}.')
    if not 0 < confidence < 1:
        raise ValueError(f'confidence must be in (0, 1), got {confidence}.')
    df = n - 1
    upper_q = float(_scipy_stats.chi2.ppf((1 + confidence) / 2, df))
    lower_q = float(_scipy_stats.chi2.ppf((1 - confidence) / 2, df))
    return std * math.sqrt(df / upper_q), std * math.sqrt(df / lower_q)


def half_split_noise_std(half_a: Sequence[float],
                         half_b: Sequence[float]) -> float:
    """Evaluation noise of a full-set metric from its two disjoint halves.

    A metric measured on two random halves of a validation set, ``a_i`` and
    ``b_i`` for run (or paired difference) ``i``: the halves' noises are
    independent and each has twice the variance of the full set's, so
    ``var(a - b) = 4 var_full`` and the full set's noise standard deviation
    is ``sd(a - b) / 2`` (``sd`` over the runs, ``n - 1`` degrees of
    freedom, so that a systematic difference between the halves cancels).

    Args:
        half_a (Sequence[float]): The metric on half A, per run.
        half_b (Sequence[float]): On half B, same runs, same order.

    Returns:
        float: The noise standard deviation of the metric on the full set
        (``nan`` for fewer than 2 runs).
    """
    a = _as_vector(half_a, 'half_a')
    b = _as_vector(half_b, 'half_b')
    if a.shape != b.shape:
        raise ValueError(f'half_a and half_b need one value per run each, '
                         f'got {a.size} and {b.size}.')
    if a.size < 2:
        return math.nan
    return float(np.std(a - b, ddof=1) / 2)
