"""How the entropy temperature ``T'`` ranks foreground against background.

EA-KD's weight is meant to favour informative samples. For a dense (sigmoid)
head most locations are background; a ``T'`` that flattens the scores enough
gives confident background locations more weight than positives. These pure
functions (torch and scipy, no mmdet) measure that for a set of distilled
samples and a list of temperatures; ``tools/sweep_entropy_temperature.py``
feeds them the logit pairs of real training steps.
"""
from typing import Dict, List, Sequence

from scipy import stats as scipy_stats
from torch import Tensor

from ..losses.classifier import ClassifierKind

#: Top teacher score from which a positive counts as confident.
CONFIDENT_SCORE = 0.5


def positive_mask(labels: Tensor, num_logits: int,
                  classifier: ClassifierKind) -> Tensor:
    """Samples assigned to an object.

    Args:
        labels (Tensor): Shape (N,), long; background is
            ``classifier.num_classes(C)``: the last softmax column
            (``C - 1``) or, for sigmoid heads, ``C`` (= num_classes).
        num_logits (int): C, the logits per sample.
        classifier (ClassifierKind): The logits' classifier kind.

    Returns:
        Tensor: Shape (N,), bool.
    """
    return (labels >= 0) & (labels < classifier.num_classes(num_logits))


def outrank_probability(weights: Tensor, positive: Tensor) -> float:
    """P(a random background sample weighs more than a random positive).

    The Mann-Whitney U of the two groups (scipy's ``mannwhitneyu``, ties
    count 1/2) over the number of pairs, i.e.
    ``1 - AUROC`` of the weight as a foreground score: 0.5 means the weight
    does not tell them apart, above 0.5 background outweighs positives.

    Args:
        weights (Tensor): Shape (N,).
        positive (Tensor): Shape (N,), bool; both groups non-empty.

    Returns:
        float: In [0, 1].
    """
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        raise ValueError('outrank_probability needs positive and background '
                         f'samples, got {num_pos} and {num_neg}.')
    background = weights[~positive].double().cpu().numpy()
    u_background = scipy_stats.mannwhitneyu(
        background, weights[positive].double().cpu().numpy()).statistic
    return float(u_background / (num_pos * num_neg))


def confident_mask(teacher: Tensor, classifier: ClassifierKind,
                   threshold: float = CONFIDENT_SCORE) -> Tensor:
    """Samples whose teacher's top class score is at least ``threshold``
    (``classifier.top_object_score``: sigmoid ``max_c sigmoid(z_c)``;
    softmax the top probability over the object classes, background
    excluded)."""
    return classifier.top_object_score(teacher) >= threshold


def temperature_sweep(student: Tensor, teacher: Tensor, labels: Tensor,
                      temperatures: Sequence[float],
                      classifier: ClassifierKind,
                      weight_mode: str = 'ea',
                      temperature: float = 1.0) -> List[Dict[str, float]]:
    """The EA weights of the samples at each ``T'``, by foreground/background.

    Args:
        student (Tensor): Student logits, shape (N, C).
        teacher (Tensor): Teacher logits, shape (N, C).
        labels (Tensor): Shape (N,), see :func:`positive_mask`.
        temperatures (Sequence[float]): The ``T'`` values.
        classifier (ClassifierKind): The logits' classifier kind (which
            formulas).
        weight_mode (str): EA weight mode. Defaults to ``'ea'``.
        temperature (float): KD temperature ``T``. Defaults to 1.0.

    Returns:
        list[dict]: Per ``T'``: ``entropy_temperature``; ``weight_fg`` /
        ``weight_bg`` (mean weight of positives / background);
        ``bg_outranks_fg`` (:func:`outrank_probability`) and
        ``bg_outranks_confident_fg`` (the same against the positives the
        teacher scores >= :data:`CONFIDENT_SCORE`, NaN if there are none;
        background = all non-positives in both); ``ea_fg_share``
        (share of the weighted KD loss on positives) and ``kd_fg_share``
        (the same for plain KD, which has no ``T'``); ``ea_over_kd``: the
        weighted KD loss over the plain one (``sum w KD / sum KD``).
    """
    kd = classifier.kd_loss_per_sample(student, teacher, temperature)
    positive = positive_mask(labels, student.size(1), classifier)
    kd_fg_share = float(kd[positive].sum() / kd.sum())
    confident = positive & confident_mask(teacher, classifier)
    compared = confident | ~positive
    rows = []
    for entropy_temperature in temperatures:
        weights = classifier.ea_statistics(
            student, teacher, entropy_temperature=entropy_temperature,
            weight_mode=weight_mode).ea_weight
        weighted = weights * kd
        rows.append(
            dict(entropy_temperature=float(entropy_temperature),
                 weight_fg=float(weights[positive].mean()),
                 weight_bg=float(weights[~positive].mean()),
                 bg_outranks_fg=outrank_probability(weights, positive),
                 bg_outranks_confident_fg=(
                     outrank_probability(weights[compared],
                                         confident[compared])
                     if confident.any() else float('nan')),
                 ea_fg_share=float(weighted[positive].sum() / weighted.sum()),
                 ea_over_kd=float(weighted.sum() / kd.sum()),
                 kd_fg_share=kd_fg_share))
    return rows
