"""Diagnostics of EA-KD and benchmark statistics (pure, no mmdet import)."""
from .entropy_stats import (QUARTILES, describe, loss_share_summary,
                            quartile_edges, quartile_index, quartile_shares,
                            top_fraction_mask, upper_tail_shares)
from .timing_stats import (MET, MIN_ROUNDS, MISSED, NOT_RESOLVED,
                           bootstrap_interval, judge_target, rounds_to_resolve,
                           verdict)

__all__ = [
    'QUARTILES', 'describe', 'loss_share_summary', 'quartile_edges',
    'quartile_index', 'quartile_shares', 'top_fraction_mask',
    'upper_tail_shares', 'MET', 'MIN_ROUNDS', 'MISSED', 'NOT_RESOLVED',
    'bootstrap_interval', 'judge_target', 'rounds_to_resolve', 'verdict'
]
