# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""EA-KD losses: pure math in :mod:`.functional` (classification),
:mod:`.ld_functional` (box distributions) and :mod:`.feature_functional`
(features), the classifier kinds (:mod:`.classifier`), registered
modules."""
from .classifier import CLASSIFIER_KINDS, SIGMOID, SOFTMAX, ClassifierKind
from .ea_kd_loss import (CLASS_LOGITS, LOSS_TYPES, EADKDLoss, EAKDLoss,
                         SigmoidEAKDLoss)
from .ea_ld_loss import BOX_DISTRIBUTION, EALDLoss
from .feature_functional import (FEATURE_NORM_EPS, image_weights,
                                 location_weight_map, pkd_loss_map,
                                 pkd_loss_per_image, standardize_channels,
                                 weighted_level_loss)
from .functional import (EA_STAT_NAMES, SIGMOID_ENTROPY_TEMPERATURE,
                         SIGMOID_ENTROPY_UPPER_BOUND, STANDARDIZATION_EPS,
                         WEIGHT_MODES, EAStats, binary_softened_entropy,
                         dkd_loss_per_sample, ea_dkd_loss_per_sample,
                         ea_kd_loss_per_sample, ea_statistics, entropy_weights,
                         kd_loss_per_sample, sigmoid_ea_kd_loss_per_sample,
                         sigmoid_ea_statistics, sigmoid_kd_loss_per_sample,
                         softened_entropy, standardize_logits)
from .ld_functional import (BIN_REDUCTIONS, GFL_REG_MAX,
                            LD_ENTROPY_TEMPERATURE, LD_TEMPERATURE, NUM_EDGES,
                            LossAndStats, ea_ld_loss_and_statistics,
                            ea_ld_loss_per_location, ea_ld_statistics,
                            edge_entropies, edge_logits,
                            ld_entropy_upper_bound, ld_loss_per_edge,
                            ld_loss_per_location, location_entropy,
                            usable_box_rows)
from .pkd_loss import EA_GRANULARITIES, FEATURES, EAPKDLoss

__all__ = [
    'ClassifierKind', 'SOFTMAX', 'SIGMOID', 'CLASSIFIER_KINDS',
    'CLASS_LOGITS', 'LOSS_TYPES', 'EAKDLoss', 'EADKDLoss',
    'SigmoidEAKDLoss',
    'WEIGHT_MODES',
    'STANDARDIZATION_EPS', 'SIGMOID_ENTROPY_TEMPERATURE',
    'SIGMOID_ENTROPY_UPPER_BOUND', 'EAStats', 'EA_STAT_NAMES', 'ea_statistics',
    'softened_entropy', 'entropy_weights', 'kd_loss_per_sample',
    'dkd_loss_per_sample', 'standardize_logits', 'ea_kd_loss_per_sample',
    'ea_dkd_loss_per_sample', 'binary_softened_entropy',
    'sigmoid_kd_loss_per_sample', 'sigmoid_ea_statistics',
    'sigmoid_ea_kd_loss_per_sample', 'EALDLoss', 'BOX_DISTRIBUTION',
    'BIN_REDUCTIONS', 'GFL_REG_MAX', 'LD_ENTROPY_TEMPERATURE',
    'LD_TEMPERATURE',
    'NUM_EDGES', 'LossAndStats', 'ld_entropy_upper_bound', 'edge_logits',
    'edge_entropies', 'location_entropy', 'ld_loss_per_edge',
    'ld_loss_per_location', 'ea_ld_statistics', 'ea_ld_loss_and_statistics',
    'ea_ld_loss_per_location', 'usable_box_rows', 'EAPKDLoss', 'FEATURES',
    'EA_GRANULARITIES', 'FEATURE_NORM_EPS', 'standardize_channels',
    'pkd_loss_map', 'pkd_loss_per_image', 'weighted_level_loss',
    'location_weight_map', 'image_weights'
]
