"""Seeds x methods studies of EA-KD: paired runs, statistics and reports."""
from .methods import COMPARISONS, METHODS, REGIMES, Method, Regime
from .pipeline import run_study
from .stats import PairedDifference, Summary, paired_difference, summarize

__all__ = [
    'COMPARISONS', 'METHODS', 'REGIMES', 'Method', 'Regime', 'run_study',
    'PairedDifference', 'Summary', 'paired_difference', 'summarize'
]
