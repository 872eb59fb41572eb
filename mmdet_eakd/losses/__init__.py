# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""EA-KD losses: pure math in :mod:`.functional`, registered modules."""
from .ea_kd_loss import LOSS_TYPES, EADKDLoss, EAKDLoss, SigmoidEAKDLoss
from .functional import (EA_STAT_NAMES, SIGMOID_ENTROPY_TEMPERATURE,
                         SIGMOID_ENTROPY_UPPER_BOUND, STANDARDIZATION_EPS,
                         WEIGHT_MODES, EAStats, binary_softened_entropy,
                         dkd_loss_per_sample, ea_dkd_loss_per_sample,
                         ea_kd_loss_per_sample, ea_statistics, entropy_weights,
                         kd_loss_per_sample, sigmoid_ea_kd_loss_per_sample,
                         sigmoid_ea_statistics, sigmoid_kd_loss_per_sample,
                         softened_entropy, standardize_logits)

__all__ = [
    'LOSS_TYPES', 'EAKDLoss', 'EADKDLoss', 'SigmoidEAKDLoss', 'WEIGHT_MODES',
    'STANDARDIZATION_EPS', 'SIGMOID_ENTROPY_TEMPERATURE',
    'SIGMOID_ENTROPY_UPPER_BOUND', 'EAStats', 'EA_STAT_NAMES', 'ea_statistics',
    'softened_entropy', 'entropy_weights', 'kd_loss_per_sample',
    'dkd_loss_per_sample', 'standardize_logits', 'ea_kd_loss_per_sample',
    'ea_dkd_loss_per_sample', 'binary_softened_entropy',
    'sigmoid_kd_loss_per_sample', 'sigmoid_ea_statistics',
    'sigmoid_ea_kd_loss_per_sample'
]
