# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""The classifier kinds (issue 17): what softmax and sigmoid heads differ
in, owned by :data:`SOFTMAX` and :data:`SIGMOID`."""
import copy
import inspect
import math
import pickle

import pytest
import torch

from mmdet_eakd.losses import (CLASSIFIER_KINDS, LOSS_TYPES, SIGMOID,
                               SIGMOID_ENTROPY_TEMPERATURE,
                               SIGMOID_ENTROPY_UPPER_BOUND, SOFTMAX, EAKDLoss,
                               SigmoidEAKDLoss, binary_softened_entropy,
                               entropy_weights,
                               softened_entropy)

INF = float('inf')
NAN = float('nan')


def default(cls, name):
    """The default of argument ``name`` of ``cls``'s constructor."""
    return inspect.signature(cls).parameters[name].default


def test_names_and_formatting():
    assert CLASSIFIER_KINDS == (SOFTMAX, SIGMOID)
    assert [kind.name for kind in CLASSIFIER_KINDS] == ['softmax', 'sigmoid']
    for kind in CLASSIFIER_KINDS:
        assert str(kind) == repr(kind) == kind.name
    assert f'made for {SIGMOID}' == 'made for sigmoid'
    assert repr([SOFTMAX, SIGMOID]) == '[softmax, sigmoid]'


def test_copies_are_the_same_kind():
    """A deep copy or a pickled kind (a regime copied, a benchmark worker)
    still equals, hashes and looks up as the original."""
    for kind in CLASSIFIER_KINDS:
        for clone in (copy.deepcopy(kind), pickle.loads(pickle.dumps(kind))):
            assert clone == kind and hash(clone) == hash(kind)
            assert LOSS_TYPES[clone] is LOSS_TYPES[kind]
    assert SOFTMAX != SIGMOID


def test_background_column_and_num_classes():
    """Softmax: C = num_classes + 1, background last; sigmoid: C =
    num_classes; either way the background label is num_classes."""
    assert SOFTMAX.background_column and not SIGMOID.background_column
    assert SOFTMAX.num_classes(81) == 80
    assert SIGMOID.num_classes(80) == 80
    assert (SOFTMAX.class_dim, SIGMOID.class_dim) == ('num_classes + 1',
                                                      'num_classes')


def test_entropy_upper_bounds_are_the_entropies_maxima():
    """``H_ub``: ``log C`` for softmax (uniform logits reach it), ``log 2``
    for sigmoid whatever C (all-zero logits reach it)."""
    for num_logits in (2, 5, 81):
        zeros = torch.zeros(1, num_logits, dtype=torch.float64)
        assert SOFTMAX.entropy_upper_bound(num_logits) == math.log(num_logits)
        assert SIGMOID.entropy_upper_bound(num_logits) == (
            SIGMOID_ENTROPY_UPPER_BOUND)
        assert softened_entropy(zeros, 3.0).item() == pytest.approx(
            SOFTMAX.entropy_upper_bound(num_logits))
        assert binary_softened_entropy(zeros, 1.0).item() == pytest.approx(
            SIGMOID.entropy_upper_bound(num_logits))
    assert SIGMOID_ENTROPY_UPPER_BOUND == math.log(2)
    assert (SOFTMAX.default_upper_bound,
            SIGMOID.default_upper_bound) == ('log C', 'log 2')


def test_statistics_use_the_kind_s_defaults():
    """A kind's EA statistics at its default ``H_ub`` are the entropy
    weights at :meth:`entropy_upper_bound`; its ``entropy_temperature`` is
    its losses' default ``T'``."""
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 5), torch.randn(6, 5)
    for kind in CLASSIFIER_KINDS:
        stats = kind.ea_statistics(student, teacher,
                                   entropy_temperature=2.0,
                                   weight_mode='interact')
        torch.testing.assert_close(
            stats.ea_weight,
            entropy_weights(stats.entropy_t, stats.entropy_s, 'interact',
                            entropy_upper_bound=kind.entropy_upper_bound(5)))
        assert kind.kd_loss_per_sample(student, teacher, 2.0).shape == (6, )
    assert SOFTMAX.entropy_temperature == 3.0
    assert SIGMOID.entropy_temperature == SIGMOID_ENTROPY_TEMPERATURE
    assert default(EAKDLoss, 'entropy_temperature') == 3.0
    assert default(SigmoidEAKDLoss, 'entropy_temperature') == (
        SIGMOID_ENTROPY_TEMPERATURE)
    assert EAKDLoss.classifier is SOFTMAX
    assert SigmoidEAKDLoss.classifier is SIGMOID


def test_usable_rows():
    """Softmax rows need a finite maximum (no NaN, no +inf, not all -inf);
    sigmoid rows only no NaN (+-inf are probabilities 1 and 0)."""
    logits = torch.tensor([[0.5, -1.0, 2.0], [-INF, 1.0, 0.0],
                           [NAN, 0.0, 0.0], [INF, 0.0, 0.0],
                           [-INF, -INF, -INF]])
    assert SOFTMAX.usable_rows(logits).tolist() == [
        True, True, False, False, False
    ]
    assert SIGMOID.usable_rows(logits).tolist() == [
        True, True, False, True, True
    ]


def test_top_object_score():
    """Softmax: the top probability without the background column (the
    last); sigmoid: the top ``sigmoid(z_c)`` over every column."""
    logits = torch.tensor([[0., 0., 10.], [2., 0., 0.]])
    top = SOFTMAX.top_object_score(logits)
    probabilities = logits.softmax(dim=1)
    torch.testing.assert_close(
        top, torch.stack([probabilities[0, 0], probabilities[1, 0]]))
    torch.testing.assert_close(
        SIGMOID.top_object_score(logits),
        torch.tensor([10., 2.]).sigmoid())
