# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""EA-KD losses: pure math in :mod:`.functional`, registered modules."""
from .ea_kd_loss import EADKDLoss, EAKDLoss
from .functional import (EA_STAT_NAMES, STANDARDIZATION_EPS, WEIGHT_MODES,
                         EAStats, dkd_loss_per_sample, ea_dkd_loss_per_sample,
                         ea_kd_loss_per_sample, ea_statistics, entropy_weights,
                         kd_loss_per_sample, softened_entropy,
                         standardize_logits)

__all__ = [
    'EAKDLoss', 'EADKDLoss', 'WEIGHT_MODES', 'STANDARDIZATION_EPS',
    'EAStats', 'EA_STAT_NAMES', 'ea_statistics', 'softened_entropy',
    'entropy_weights', 'kd_loss_per_sample', 'dkd_loss_per_sample',
    'standardize_logits', 'ea_kd_loss_per_sample', 'ea_dkd_loss_per_sample'
]
