"""Diagnostics of EA-KD (pure numeric summaries, no mmdet import)."""
from .entropy_stats import (QUARTILES, describe, loss_share_summary,
                            quartile_edges, quartile_index, quartile_shares,
                            top_fraction_mask, upper_tail_shares)

__all__ = [
    'QUARTILES', 'describe', 'loss_share_summary', 'quartile_edges',
    'quartile_index', 'quartile_shares', 'top_fraction_mask',
    'upper_tail_shares'
]
