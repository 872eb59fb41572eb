# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Acceptance tests of the EA-KD loss family (issues 3 and 12).

The references below are written from the equations (EA-KD paper eq. 3 and
8-12; DKD and logit standardization from their papers) in float64 numpy with
plain loops; they never call the code under test.
"""
import contextlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SYNTHETIC_CONFIGS
from hypothesis import given, settings
from hypothesis import strategies as st
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmdet_eakd.losses import (EA_STAT_NAMES, WEIGHT_MODES, EADKDLoss,
                               EAKDLoss, EAStats, dkd_loss_per_sample,
                               ea_dkd_loss_per_sample, ea_kd_loss_per_sample,
                               ea_statistics, entropy_weights,
                               kd_loss_per_sample, softened_entropy,
                               standardize_logits)

NEG_INF = float('-inf')
EPS32 = torch.finfo(torch.float32).eps

# --------------------------------------------------------------------------
# Independent float64 references
# --------------------------------------------------------------------------


def ref_log_softmax(z, temperature):
    """Row-wise log softmax of z / T in float64 (-inf entries allowed)."""
    x = np.asarray(z, dtype=np.float64) / temperature
    out = np.empty_like(x)
    for n, row in enumerate(x):
        m = row.max()
        out[n] = row - m - math.log(sum(math.exp(v - m) for v in row))
    return out


def ref_entropy(z, temperature):
    """Eq. 8: H = -sum_i p_i log p_i, p = softmax(z / T')."""
    log_p = ref_log_softmax(z, temperature)
    return np.array([
        -sum(math.exp(lp) * lp for lp in row if lp > NEG_INF)
        for row in log_p
    ])


def ref_weights(h_t, h_s, mode, h_ub):
    """Eq. 9-11 (Table 9 variants)."""
    h_t, h_s = np.asarray(h_t), np.asarray(h_s)
    if mode == 'none':
        return np.ones_like(h_t)
    if mode == 'base':
        return h_t
    interact = h_t * h_s / h_ub
    if mode == 'interact':
        return interact
    return (h_t + interact) / 2


def ref_kd(zs, zt, temperature):
    """Eq. 3: sum_i p_T,i log(p_T,i / p_S,i) * T^2, per sample."""
    lps, lpt = ref_log_softmax(zs, temperature), ref_log_softmax(
        zt, temperature)
    out = []
    for row_s, row_t in zip(lps, lpt):
        out.append(
            sum(
                math.exp(lt) * (lt - ls) for ls, lt in zip(row_s, row_t)
                if lt > NEG_INF) * temperature**2)
    return np.array(out)


def _log_sum_exp(values):
    values = [v for v in values if v > NEG_INF]
    if not values:
        return NEG_INF
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def _kl_from_logs(log_p, log_q):
    return sum(
        math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q)
        if lp > NEG_INF)


def ref_dkd(zs, zt, labels, alpha, beta, temperature):
    """DKD per sample: (alpha * TCKD + beta * NCKD) * T^2.

    TCKD: KL of [p_target, sum of the other p]; NCKD: KL of the softmax over
    the non-target logits only (0 if the teacher has none that is finite).
    """
    lps, lpt = ref_log_softmax(zs, temperature), ref_log_softmax(
        zt, temperature)
    out = []
    for n, g in enumerate(labels):
        others = [i for i in range(lps.shape[1]) if i != g]
        tckd = _kl_from_logs(
            [lpt[n, g], _log_sum_exp(lpt[n, others])],
            [lps[n, g], _log_sum_exp(lps[n, others])])
        nckd = 0.0
        if np.isfinite(zt[n, others]).any():
            nckd = _kl_from_logs(
                ref_log_softmax(zt[n:n + 1, others], temperature)[0],
                ref_log_softmax(zs[n:n + 1, others], temperature)[0])
        out.append((alpha * tckd + beta * nckd) * temperature**2)
    return np.array(out)


def official_dkd_batch(zs, zt, labels, alpha, beta, temperature):
    """The batch-mean DKD formulation of the official DKD code (torch)."""
    gt = torch.zeros_like(zs).scatter_(1, labels[:, None], 1).bool()
    ps = F.softmax(zs / temperature, dim=1)
    pt = F.softmax(zt / temperature, dim=1)
    bs = torch.stack([(ps * gt).sum(1), (ps * ~gt).sum(1)], dim=1)
    bt = torch.stack([(pt * gt).sum(1), (pt * ~gt).sum(1)], dim=1)
    n = zs.shape[0]
    tckd = F.kl_div(torch.log(bs), bt, reduction='sum') * temperature**2 / n
    pt2 = F.softmax(zt / temperature - 1000.0 * gt, dim=1)
    lps2 = F.log_softmax(zs / temperature - 1000.0 * gt, dim=1)
    nckd = F.kl_div(lps2, pt2, reduction='sum') * temperature**2 / n
    return alpha * tckd + beta * nckd


def ref_standardize(z, eps=1e-7):
    """Z-score per row with the unbiased std (authors' code)."""
    z = np.asarray(z, dtype=np.float64)
    std = z.std(1, ddof=1, keepdims=True)
    return (z - z.mean(1, keepdims=True)) / (std + eps)


def torch_kd_per_sample(zs, zt, temperature):
    """KD in plain torch, for gradient comparisons."""
    lps = F.log_softmax(zs / temperature, dim=1)
    lpt = F.log_softmax(zt / temperature, dim=1)
    return (lpt.exp() * (lpt - lps)).sum(1) * temperature**2


def logits(n, c, scale=3.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, generator=g, dtype=torch.float64) *
            scale).to(dtype)


def labels_for(n, c, seed=0):
    g = torch.Generator().manual_seed(seed + 1000)
    labels = torch.randint(0, c, (n, ), generator=g)
    if n:
        labels[0] = c - 1  # always include a background RoI
    return labels


def np_(t):
    return t.detach().double().numpy()


# --------------------------------------------------------------------------
# Functions vs references
# --------------------------------------------------------------------------


@pytest.mark.parametrize('dtype,rtol,atol', [(torch.float64, 1e-12, 1e-12),
                                             (torch.float32, 1e-5, 1e-6)])
@pytest.mark.parametrize('temperature', [0.5, 1.0, 3.0, 8.0])
def test_softened_entropy_matches_reference(dtype, rtol, atol, temperature):
    z = logits(9, 81, scale=4, seed=1, dtype=dtype)
    out = softened_entropy(z, temperature)
    assert out.shape == (9, ) and out.dtype == dtype
    np.testing.assert_allclose(
        np_(out), ref_entropy(np_(z), temperature), rtol=rtol, atol=atol)


@pytest.mark.parametrize('mode', WEIGHT_MODES)
def test_entropy_weights_match_reference(mode):
    z_t, z_s = logits(11, 81, seed=2), logits(11, 81, seed=3)
    h_t, h_s = softened_entropy(z_t, 3.0), softened_entropy(z_s, 3.0)
    h_ub = math.log(81)
    w = entropy_weights(h_t, h_s, mode, entropy_upper_bound=h_ub)
    expected = ref_weights(
        ref_entropy(np_(z_t), 3.0), ref_entropy(np_(z_s), 3.0), mode, h_ub)
    np.testing.assert_allclose(np_(w), expected, rtol=1e-12)


def test_entropy_weights_rejects_unknown_mode():
    h = torch.ones(3)
    with pytest.raises(ValueError, match=r"mode must be one of \('ea'"):
        entropy_weights(h, h, 'entropy', entropy_upper_bound=1.0)


@pytest.mark.parametrize('dtype,rtol,atol', [(torch.float64, 1e-11, 1e-12),
                                             (torch.float32, 2e-5, 2e-6)])
@pytest.mark.parametrize('temperature', [1.0, 2.0, 4.0])
def test_kd_matches_reference(dtype, rtol, atol, temperature):
    zs = logits(10, 81, seed=4, dtype=dtype)
    zt = logits(10, 81, scale=5, seed=5, dtype=dtype)
    out = kd_loss_per_sample(zs, zt, temperature)
    assert out.shape == (10, ) and out.dtype == dtype
    np.testing.assert_allclose(
        np_(out), ref_kd(np_(zs), np_(zt), temperature), rtol=rtol, atol=atol)


@pytest.mark.parametrize('dtype,rtol,atol', [(torch.float64, 1e-10, 1e-12),
                                             (torch.float32, 5e-5, 5e-6)])
@pytest.mark.parametrize('alpha,beta,temperature', [(1.0, 0.25, 1.0),
                                                    (0.5, 2.0, 4.0),
                                                    (1.0, 8.0, 2.0)])
def test_dkd_matches_reference(dtype, rtol, atol, alpha, beta, temperature):
    zs = logits(12, 81, seed=6, dtype=dtype)
    zt = logits(12, 81, scale=5, seed=7, dtype=dtype)
    labels = labels_for(12, 81)
    out = dkd_loss_per_sample(zs, zt, labels, alpha, beta, temperature)
    assert out.shape == (12, ) and out.dtype == dtype
    expected = ref_dkd(
        np_(zs), np_(zt), labels.numpy(), alpha, beta, temperature)
    np.testing.assert_allclose(np_(out), expected, rtol=rtol, atol=atol)


def test_dkd_target_prob_near_one_is_finite_and_accurate():
    # p_target = 1 - 1e-13 in float64: log(1 - p) must not be log(0).
    zt = torch.tensor([[30.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    zs = torch.tensor([[2.0, 0.5, 0.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([0])
    out = dkd_loss_per_sample(zs, zt, labels, 1.0, 1.0, 1.0)
    expected = ref_dkd(np_(zs), np_(zt), [0], 1.0, 1.0, 1.0)
    np.testing.assert_allclose(np_(out), expected, rtol=1e-9)
    out32 = dkd_loss_per_sample(zs.float(), (zt * 10).float(), labels)
    assert torch.isfinite(out32).all()


@pytest.mark.parametrize('temperature', [1.0, 4.0])
def test_plain_dkd_module_equals_official_formulation(temperature):
    zs, zt = logits(16, 81, seed=8), logits(16, 81, scale=5, seed=9)
    labels = labels_for(16, 81)
    loss = EADKDLoss(
        weight_mode='none', temperature=temperature)(zs, zt, labels)
    official = official_dkd_batch(zs, zt, labels, 1.0, 0.25, temperature)
    torch.testing.assert_close(loss, official, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        loss.item(),
        ref_dkd(np_(zs), np_(zt), labels.numpy(), 1.0, 0.25,
                temperature).mean(),
        rtol=1e-10)


@pytest.mark.parametrize('temperature', [1.0, 4.0])
def test_plain_kd_module_equals_unweighted_kd(temperature):
    zs, zt = logits(16, 81, seed=10), logits(16, 81, scale=5, seed=11)
    loss = EAKDLoss(weight_mode='none', temperature=temperature)(zs, zt)
    np.testing.assert_allclose(
        loss.item(),
        ref_kd(np_(zs), np_(zt), temperature).mean(),
        rtol=1e-11)
    # ... and F.kl_div's batchmean, the textbook plain KD.
    textbook = F.kl_div(
        F.log_softmax(zs / temperature, 1),
        F.softmax(zt / temperature, 1),
        reduction='batchmean') * temperature**2
    torch.testing.assert_close(loss, textbook, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize('loss_type', ['kd', 'dkd'])
@pytest.mark.parametrize('mode', ['ea', 'base', 'interact'])
def test_weighted_module_matches_reference(loss_type, mode):
    zs, zt = logits(14, 81, seed=12), logits(14, 81, scale=5, seed=13)
    labels = labels_for(14, 81)
    h_ub = math.log(81)
    w = ref_weights(
        ref_entropy(np_(zt), 3.0), ref_entropy(np_(zs), 3.0), mode, h_ub)
    if loss_type == 'kd':
        module = EAKDLoss(weight_mode=mode, temperature=2.0, loss_weight=0.7)
        loss = module(zs, zt)
        term = ref_kd(np_(zs), np_(zt), 2.0)
    else:
        module = EADKDLoss(weight_mode=mode, temperature=2.0, loss_weight=0.7)
        loss = module(zs, zt, labels)
        term = ref_dkd(np_(zs), np_(zt), labels.numpy(), 1.0, 0.25, 2.0)
    np.testing.assert_allclose(loss.item(), 0.7 * (w * term).mean(),
                               rtol=1e-10)
    stats = module.ea_stats(zs, zt)
    np.testing.assert_allclose(np_(stats.ea_weight), w, rtol=1e-11)
    np.testing.assert_allclose(
        np_(stats.entropy_t), ref_entropy(np_(zt), 3.0), rtol=1e-11)
    np.testing.assert_allclose(
        np_(stats.entropy_s), ref_entropy(np_(zs), 3.0), rtol=1e-11)
    # the per-sample functions are the same math
    assert torch.equal(stats.ea_weight, ea_statistics(
        zs, zt, weight_mode=mode).ea_weight)
    per_sample = module(zs, zt, labels, reduction_override='none')
    np.testing.assert_allclose(np_(per_sample), 0.7 * w * term, rtol=1e-10)


def test_standardize_logits_matches_reference():
    z = logits(6, 81, scale=7, seed=14)
    np.testing.assert_allclose(
        np_(standardize_logits(z)), ref_standardize(np_(z)), rtol=1e-12)
    const = torch.full((2, 5), 3.5)
    assert torch.equal(standardize_logits(const), torch.zeros(2, 5))


def test_logit_standardization_in_module_matches_reference():
    zs, zt = logits(10, 81, scale=2, seed=15), logits(10, 81, scale=9, seed=16)
    ss, st_ = ref_standardize(np_(zs)), ref_standardize(np_(zt))
    w = ref_weights(
        ref_entropy(st_, 3.0), ref_entropy(ss, 3.0), 'ea', math.log(81))
    loss = EAKDLoss(logit_standardization=True, temperature=2.0)(zs, zt)
    np.testing.assert_allclose(
        loss.item(), (w * ref_kd(ss, st_, 2.0)).mean(), rtol=1e-10)
    labels = labels_for(10, 81)
    loss = EADKDLoss(logit_standardization=True)(zs, zt, labels)
    np.testing.assert_allclose(
        loss.item(),
        (w * ref_dkd(ss, st_, labels.numpy(), 1.0, 0.25, 1.0)).mean(),
        rtol=1e-10)


# --------------------------------------------------------------------------
# Limit cases of eq. 13a-c (large-magnitude logits, float32)
# --------------------------------------------------------------------------


def one_hot_logits(n, c, magnitude=1e4):
    z = torch.zeros(n, c)
    z[torch.arange(n), torch.arange(n) % c] = magnitude
    return z


def test_eq13_limits():
    c, h_ub = 81, math.log(81)
    uniform = torch.zeros(4, c)
    one_hot = one_hot_logits(4, c)
    other = logits(4, c, scale=3, seed=17, dtype=torch.float32)

    def weight(z_t, z_s, mode='ea'):
        return entropy_weights(
            softened_entropy(z_t, 3.0),
            softened_entropy(z_s, 3.0),
            mode,
            entropy_upper_bound=h_ub)

    # 13a: both uniform -> H_ub
    torch.testing.assert_close(
        weight(uniform, uniform), torch.full((4, ), h_ub), rtol=1e-6, atol=0)
    # 13b: teacher uniform, student one-hot -> H_ub / 2
    torch.testing.assert_close(
        weight(uniform, one_hot),
        torch.full((4, ), h_ub / 2),
        rtol=1e-6,
        atol=0)
    # 13c: teacher one-hot -> 0 whatever the student
    for z_s in (uniform, one_hot, other):
        for mode in ('ea', 'base', 'interact'):
            assert torch.equal(weight(one_hot, z_s, mode), torch.zeros(4))
    # the module reports the same weights
    stats = EAKDLoss().ea_stats(uniform, one_hot)
    assert torch.equal(stats.ea_weight, torch.zeros(4))
    stats = EAKDLoss().ea_stats(one_hot, uniform)
    torch.testing.assert_close(
        stats.ea_weight, torch.full((4, ), h_ub / 2), rtol=1e-6, atol=0)


# --------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------


@pytest.mark.parametrize('mode', WEIGHT_MODES)
def test_weights_and_stats_carry_no_gradient(mode):
    zs = logits(5, 81, seed=18).requires_grad_()
    zt = logits(5, 81, seed=19).requires_grad_()
    h_t, h_s = softened_entropy(zt, 3.0), softened_entropy(zs, 3.0)
    assert h_t.requires_grad  # the entropy itself is differentiable ...
    w = entropy_weights(h_t, h_s, mode, entropy_upper_bound=math.log(81))
    assert not w.requires_grad and w.grad_fn is None  # ... the weight is not
    module = EAKDLoss(weight_mode=mode)
    loss = module(zs, zt)
    stats = module.ea_stats(zs, zt)
    assert isinstance(stats, EAStats)
    assert stats._fields == EA_STAT_NAMES == ('ea_weight', 'entropy_t',
                                              'entropy_s')
    for value in stats:
        assert value.shape == (5, ) and not value.requires_grad
    loss.backward()
    assert zt.grad is None  # the teacher never gets gradient
    assert zs.grad is not None


@pytest.mark.parametrize('mode', WEIGHT_MODES)
def test_gradient_equals_constant_weighted_kd(mode):
    zs, zt = logits(20, 81, seed=20), logits(20, 81, scale=5, seed=21)
    w_const = torch.from_numpy(
        ref_weights(
            ref_entropy(np_(zt), 3.0), ref_entropy(np_(zs), 3.0), mode,
            math.log(81)))
    s1 = zs.clone().requires_grad_()
    EAKDLoss(weight_mode=mode, temperature=2.0)(s1, zt).backward()
    s2 = zs.clone().requires_grad_()
    (w_const * torch_kd_per_sample(s2, zt, 2.0)).sum().div(20).backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-10, atol=1e-14)


def test_gradcheck_float64():
    zs = logits(6, 7, seed=22).requires_grad_()
    zt = logits(6, 7, scale=4, seed=23)
    labels = labels_for(6, 7)
    w_const = softened_entropy(zt, 3.0).detach()
    assert torch.autograd.gradcheck(
        lambda s: (w_const * kd_loss_per_sample(s, zt, 2.0)).sum() / 6, zs)
    assert torch.autograd.gradcheck(
        lambda s: dkd_loss_per_sample(s, zt, labels, 1.0, 0.25, 2.0).sum(),
        zs)
    # 'base' weights depend on the teacher only: the module is then an
    # ordinary differentiable function of the student logits.
    assert torch.autograd.gradcheck(
        EAKDLoss(weight_mode='base', temperature=2.0), (zs, zt))
    assert torch.autograd.gradcheck(
        lambda s: EADKDLoss(weight_mode='base')(s, zt, labels), zs)
    assert torch.autograd.gradcheck(
        EAKDLoss(weight_mode='base', logit_standardization=True), (zs, zt))


def test_ea_weight_is_detached_not_differentiated():
    # Finite differences see H_S change with the student logits; the
    # analytic gradient must not (w is a constant), so gradcheck fails.
    zs = logits(6, 7, seed=24).requires_grad_()
    zt = logits(6, 7, scale=2, seed=25)
    assert not torch.autograd.gradcheck(
        EAKDLoss(weight_mode='ea'), (zs, zt), raise_exception=False)


# --------------------------------------------------------------------------
# Property-based tests
# --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 12),
    c=st.integers(1, 90),
    temperature=st.floats(0.1, 10.0),
    entropy_temperature=st.floats(0.1, 10.0),
    log_scale=st.floats(-3.0, 4.0),
    mode=st.sampled_from(WEIGHT_MODES),
    seed=st.integers(0, 2**31 - 1))
def test_properties(n, c, temperature, entropy_temperature, log_scale, mode,
                    seed):
    zs = logits(n, c, 10**log_scale, seed, torch.float32)
    zt = logits(n, c, 10**log_scale, seed + 1, torch.float32)
    labels = torch.randint(
        0, c, (n, ), generator=torch.Generator().manual_seed(seed))
    h_ub = math.log(c)
    kwargs = dict(
        temperature=temperature,
        entropy_temperature=entropy_temperature,
        weight_mode=mode)
    kd = ea_kd_loss_per_sample(zs, zt, **kwargs)
    dkd = ea_dkd_loss_per_sample(zs, zt, labels, **kwargs)
    stats = ea_statistics(
        zs, zt, entropy_temperature=entropy_temperature, weight_mode=mode)
    # Weights and entropies in [0, H_ub], up to float32 rounding of a sum
    # of C terms (relative 1e-6).
    bound = h_ub * (1 + 1e-6) + 1e-7
    for h in (stats.entropy_t, stats.entropy_s):
        assert h.shape == (n, ) and bool(((h >= 0) & (h <= bound)).all())
    if mode == 'none':
        assert torch.equal(stats.ea_weight, torch.ones(n))
    else:
        assert bool(((stats.ea_weight >= 0) &
                     (stats.ea_weight <= bound)).all())
    # Losses finite and >= 0. KL >= 0 holds exactly in real arithmetic; the
    # float32 sum p (log p - log q) may round below 0 by the absolute error
    # of the log-probs (a few eps * (|z| / T + log C)) times T^2 * w, so
    # that much (8 eps) and no more is tolerated; nothing is clamped.
    max_abs = zs.abs().amax(1).maximum(zt.abs().amax(1))
    tol = 8 * EPS32 * temperature**2 * (max_abs / temperature + h_ub + 1)
    for loss in (kd, dkd):
        assert loss.shape == (n, )
        assert bool(torch.isfinite(loss).all())
        assert bool((loss >= -tol * stats.ea_weight.clamp(min=1)).all())
    # ... and the weights of the statistics are those of the losses.
    torch.testing.assert_close(
        kd, stats.ea_weight * kd_loss_per_sample(zs, zt, temperature))


# --------------------------------------------------------------------------
# Bad and extreme input
# --------------------------------------------------------------------------

S = torch.randn(4, 81)  # student logits
T = torch.randn(4, 81)  # teacher logits
L = torch.tensor([0, 5, 80, 3])  # labels


@pytest.mark.parametrize(
    'call,error,match',
    [
        (lambda: EAKDLoss()(S, torch.randn(4, 80)), ValueError,
         r'teacher_logits has shape \(4, 80\) but student_logits has shape '
         r'\(4, 81\)'),
        (lambda: EAKDLoss()(S.long(), T), TypeError, 'student_logits'),
        (lambda: EAKDLoss()(S, T.int()), TypeError, 'teacher_logits'),
        (lambda: EAKDLoss()(S, T.numpy()), TypeError, 'teacher_logits'),
        (lambda: EAKDLoss()(S[0], T[0]), ValueError, 'student_logits'),
        (lambda: EAKDLoss().ea_stats(S, T[:3]), ValueError,
         'teacher_logits has shape'),
        (lambda: EADKDLoss()(S, T), ValueError, 'needs labels'),
        # the label range is checked without a host sync: on the CPU a
        # RuntimeError at once (a device-side assertion on a GPU)
        (lambda: EADKDLoss()(S, T, torch.tensor([0, 5, 81, 3])),
         RuntimeError, r'labels must lie in \[0, 80\]'),
        (lambda: EADKDLoss()(S, T, torch.tensor([0, 5, -1, 3])),
         RuntimeError, r'labels must lie in \[0, 80\]'),
        (lambda: EADKDLoss()(S, T, L.float()), TypeError,
         'labels must be an integer tensor'),
        (lambda: EADKDLoss()(S, T, L.bool()), TypeError,
         'labels must be an integer tensor'),
        (lambda: EADKDLoss()(S, T, L[:3]), ValueError,
         r'labels must have shape \(4,\)'),
        (lambda: EAKDLoss()(S, T, weight=torch.ones(5)), ValueError,
         r'weight must be None or a tensor of shape \(4,\)'),
        (lambda: EAKDLoss()(S, T, reduction_override='avg'), ValueError,
         'reduction_override'),
    ])
def test_bad_input_raises_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize('cls,kwargs,name', [
    (EAKDLoss, dict(temperature=0.0), 'temperature'),
    (EAKDLoss, dict(temperature=float('inf')), 'temperature'),
    (EAKDLoss, dict(temperature=True), 'temperature'),
    (EAKDLoss, dict(entropy_temperature=-3.0), 'entropy_temperature'),
    (EAKDLoss, dict(weight_mode='EA'), 'weight_mode'),
    (EAKDLoss, dict(entropy_upper_bound=0.0), 'entropy_upper_bound'),
    (EAKDLoss, dict(entropy_upper_bound=-1), 'entropy_upper_bound'),
    (EAKDLoss, dict(loss_weight=-1.0), 'loss_weight'),
    (EAKDLoss, dict(reduction='batchmean'), 'reduction'),
    (EAKDLoss, dict(logit_standardization='yes'), 'logit_standardization'),
    (EAKDLoss, dict(check_finite=1), 'check_finite'),
    (EADKDLoss, dict(alpha=-0.1), 'alpha'),
    (EADKDLoss, dict(beta=float('nan')), 'beta'),
    (EADKDLoss, dict(temperature=0), 'temperature'),
])
def test_bad_constructor_args_raise(cls, kwargs, name):
    with pytest.raises(ValueError, match=f'^{name} must be'):
        cls(**kwargs)


def _nonfinite_cases():
    """(student, teacher, message) pairs that only check_finite rejects."""
    nan_teacher = T.masked_fill(T > 1, float('nan'))
    inf_student = S.clone().index_put_((torch.tensor([1]), torch.tensor([3])),
                                       torch.tensor(float('inf')))
    all_neg_inf = S.clone().index_fill_(0, torch.tensor([2]), NEG_INF)
    neg_inf_student = S.clone().index_fill_(1, torch.tensor([7]), NEG_INF)
    return [
        (S, nan_teacher, 'teacher_logits contains NaN or \\+inf'),
        (inf_student, T, r'student_logits contains NaN or \+inf values '
         r'\(row 1\)'),
        (all_neg_inf, T, r'student_logits has a row whose logits are all '
         r'-inf \(row 2\)'),
        (neg_inf_student, T, r'student_logits is -inf where teacher_logits '
         r'is not \(row 0, class 7\)'),
    ]


@pytest.mark.parametrize('student,teacher,match', _nonfinite_cases())
def test_check_finite_rejects_bad_values(student, teacher, match):
    for cls, args in ((EAKDLoss, ()), (EADKDLoss, (L, ))):
        with pytest.raises(ValueError, match=match):
            cls(check_finite=True)(student, teacher, *args)
        with pytest.raises(ValueError, match=match):
            cls(check_finite=True).ea_stats(student, teacher)
        # by default the values are not read: no exception
        cls()(student, teacher, *args)
        cls().ea_stats(student, teacher)


@pytest.mark.parametrize('mode', WEIGHT_MODES)
@pytest.mark.parametrize('standardize', [False, True])
def test_training_path_reads_no_values_on_the_host(mode, standardize):
    """Forward, ``ea_stats`` and backward run on meta tensors, which have
    no values: any host read (``.item()``, ``.tolist()``, ``bool(t)``, the
    label range) would raise, and on a GPU would be a host sync."""
    zs = torch.empty(8, 81, device='meta', requires_grad=True)
    zt = torch.empty(8, 81, device='meta')
    labels = torch.empty(8, dtype=torch.long, device='meta')
    for module, args in (
        (EAKDLoss(weight_mode=mode, logit_standardization=standardize), ()),
        (EADKDLoss(weight_mode=mode, logit_standardization=standardize),
         (labels, )),
    ):
        loss = module(zs, zt, *args)
        means = module.ea_stats(zs, zt).means()
        loss.backward()
        assert loss.shape == () and zs.grad.shape == (8, 81)
        assert set(means) == set(EA_STAT_NAMES)
        zs.grad = None
    # reading values on meta tensors does raise: check_finite reads them
    with pytest.raises(RuntimeError, match='meta'):
        EAKDLoss(check_finite=True)(zs, zt)


def test_non_finite_logits_poison_their_rows_only_like_cross_entropy():
    """A NaN / +inf student logit (e.g. an fp16 overflow) gives a NaN loss,
    not an exception, and NaN gradient for that RoI's row only.

    mmdet's ``CrossEntropyLoss`` on the same logits behaves alike: NaN loss,
    NaN gradient row for the bad RoI, the clean gradient for the others. The
    NaN row then reaches the parameters through backprop either way, so
    GradScaler sees non-finite gradients and skips the step.
    """
    from mmdet.models.losses import CrossEntropyLoss
    zs = logits(6, 9, seed=42, dtype=torch.float32)
    zt = logits(6, 9, scale=4, seed=43, dtype=torch.float32)
    labels = labels_for(6, 9)
    bad_rows = torch.tensor([1, 4])
    bad = zs.clone()
    bad[1, 2] = float('inf')
    bad[4, 0] = float('nan')
    good = torch.ones(6, dtype=torch.bool).index_fill_(0, bad_rows, False)
    for module, args in ((EAKDLoss(), ()), (EADKDLoss(), (labels, )),
                         (EAKDLoss(logit_standardization=True), ()),
                         (CrossEntropyLoss(), None)):
        def gradient(student):
            student = student.clone().requires_grad_()
            if args is None:  # mmdet's CrossEntropyLoss(cls_score, label)
                loss = module(student, labels)
            else:
                loss = module(student, zt, *args)
            loss.backward()
            return loss, student.grad

        clean_loss, clean_grad = gradient(zs)
        loss, grad = gradient(bad)
        assert torch.isfinite(clean_loss) and torch.isnan(loss)
        assert torch.isnan(grad[bad_rows]).all(dim=1).all()
        torch.testing.assert_close(grad[good], clean_grad[good])
        if args is not None:
            stats, clean = module.ea_stats(bad, zt), module.ea_stats(zs, zt)
            assert torch.equal(stats.entropy_t, clean.entropy_t)
            for name in ('ea_weight', 'entropy_s'):
                assert torch.isnan(getattr(stats, name)[bad_rows]).all()
                assert torch.equal(
                    getattr(stats, name)[good], getattr(clean, name)[good])


@pytest.mark.parametrize('mode', WEIGHT_MODES)
@pytest.mark.parametrize('avg_factor', [None, 3.0])
def test_empty_batch_gives_connected_zero(mode, avg_factor):
    zs = torch.zeros(0, 81, requires_grad=True)
    zt = torch.zeros(0, 81)
    for module, args in ((EAKDLoss(weight_mode=mode), ()),
                         (EADKDLoss(weight_mode=mode),
                          (torch.zeros(0, dtype=torch.long), ))):
        loss = module(zs, zt, *args, avg_factor=avg_factor)
        assert loss.shape == () and loss.item() == 0.0
        assert loss.grad_fn is not None
        loss.backward()
        assert zs.grad.shape == (0, 81)
        stats = module.ea_stats(zs, zt)
        assert all(v.shape == (0, ) for v in stats)
        # a step without RoIs still logs a number per statistic
        assert stats.means() == dict.fromkeys(EA_STAT_NAMES, 0.0)
        per_sample = module(zs, zt, *args, reduction_override='none')
        assert per_sample.shape == (0, )


def test_weight_avg_factor_and_reductions():
    zs, zt = logits(8, 81, seed=26), logits(8, 81, scale=4, seed=27)
    extra = torch.rand(8, dtype=torch.float64)
    w = ref_weights(
        ref_entropy(np_(zt), 3.0), ref_entropy(np_(zs), 3.0), 'ea',
        math.log(81))
    weighted = 0.5 * w * ref_kd(np_(zs), np_(zt), 1.0) * extra.numpy()
    module = EAKDLoss(loss_weight=0.5)
    np.testing.assert_allclose(
        np_(module(zs, zt, weight=extra, reduction_override='none')),
        weighted,
        rtol=1e-10)
    np.testing.assert_allclose(
        module(zs, zt, weight=extra, reduction_override='sum').item(),
        weighted.sum(),
        rtol=1e-10)
    np.testing.assert_allclose(
        module(zs, zt, weight=extra).item(), weighted.mean(), rtol=1e-10)
    np.testing.assert_allclose(
        module(zs, zt, weight=extra, avg_factor=5.0).item(),
        weighted.sum() / (5.0 + EPS32),
        rtol=1e-10)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    zs = logits(16, 81, seed=28, dtype=dtype).requires_grad_()
    zt = logits(16, 81, scale=4, seed=29, dtype=dtype)
    labels = labels_for(16, 81)
    for module, args in ((EAKDLoss(), ()), (EADKDLoss(), (labels, ))):
        loss = module(zs, zt, *args)
        assert loss.dtype == torch.float32
        # identical to the float32 computation on the (exactly) upcast values
        assert torch.equal(loss, module(zs.float(), zt.float(), *args))
        loss.backward()
        assert zs.grad.dtype == dtype and torch.isfinite(zs.grad).all()
        zs.grad = None
    # a mixed pair (fp16 teacher, float32 student) is compared in float32
    mixed = EAKDLoss()(zs.float(), zt)
    assert mixed.dtype == torch.float32
    with torch.autocast('cpu', dtype=torch.bfloat16):
        auto = EAKDLoss()(zs.float(), zt.float())
    assert auto.dtype == torch.float32
    assert torch.equal(auto, EAKDLoss()(zs.float(), zt.float()))


@pytest.mark.parametrize('mode', ['ea', 'none'])
def test_large_magnitude_logits(mode):
    zs = logits(12, 81, scale=1e4, seed=30, dtype=torch.float32)
    zt = logits(12, 81, scale=1e4, seed=31, dtype=torch.float32)
    labels = labels_for(12, 81)
    w = ref_weights(
        ref_entropy(np_(zt), 3.0), ref_entropy(np_(zs), 3.0), mode,
        math.log(81))
    zs.requires_grad_()
    loss = EAKDLoss(weight_mode=mode)(zs, zt)
    expected = (w * ref_kd(np_(zs), np_(zt), 1.0)).mean()
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5, atol=1e-3)
    dkd = EADKDLoss(weight_mode=mode)(zs, zt, labels)
    expected = (w * ref_dkd(np_(zs), np_(zt), labels.numpy(), 1.0, 0.25,
                            1.0)).mean()
    np.testing.assert_allclose(dkd.item(), expected, rtol=1e-5, atol=1e-3)
    (loss + dkd).backward()
    assert torch.isfinite(zs.grad).all()


def test_neg_inf_entries():
    zs, zt = logits(6, 9, seed=32), logits(6, 9, scale=4, seed=33)
    labels = torch.tensor([0, 1, 8, 3, 4, 8])
    # class 5 impossible for both, class 6 impossible for the teacher only
    zs_inf = zs.clone().index_fill_(1, torch.tensor([5]), NEG_INF)
    zt_inf = zt.clone().index_fill_(1, torch.tensor([5, 6]), NEG_INF)
    zs_inf.requires_grad_()
    kd = kd_loss_per_sample(zs_inf, zt_inf, 2.0)
    dkd = dkd_loss_per_sample(zs_inf, zt_inf, labels, 1.0, 0.5, 2.0)
    np.testing.assert_allclose(
        np_(kd), ref_kd(np_(zs_inf), np_(zt_inf), 2.0), rtol=1e-12)
    np.testing.assert_allclose(
        np_(dkd),
        ref_dkd(np_(zs_inf), np_(zt_inf), labels.numpy(), 1.0, 0.5, 2.0),
        rtol=1e-12)
    # a class that is -inf in both is the same as no class at all
    keep = [0, 1, 2, 3, 4, 6, 7, 8]
    remapped = torch.tensor([0, 1, 7, 3, 4, 7])
    torch.testing.assert_close(
        kd, kd_loss_per_sample(zs[:, keep], zt_inf[:, keep], 2.0))
    torch.testing.assert_close(
        dkd,
        dkd_loss_per_sample(zs[:, keep], zt_inf[:, keep], remapped, 1.0, 0.5,
                            2.0))
    torch.testing.assert_close(
        softened_entropy(zs_inf, 3.0), softened_entropy(zs[:, keep], 3.0))
    # standardization ignores the -inf entries and keeps them
    std = standardize_logits(zs_inf)
    assert torch.isneginf(std[:, 5]).all()
    torch.testing.assert_close(std[:, keep], standardize_logits(zs[:, keep]))
    module = EAKDLoss(logit_standardization=True, check_finite=True)
    loss = module(zs_inf, zt_inf)
    stats = module.ea_stats(zs_inf, zt_inf)
    (loss + kd.sum() + dkd.sum()).backward()
    assert torch.isfinite(zs_inf.grad).all()
    assert torch.equal(zs_inf.grad[:, 5], torch.zeros(6, dtype=zs.dtype))
    assert all(torch.isfinite(v).all() for v in stats)
    # a teacher without any finite non-target logit has NCKD = 0
    zt_one = torch.full((1, 4), NEG_INF).index_fill_(1, torch.tensor([2]), 1.)
    dkd_one = dkd_loss_per_sample(zs[:1, :4], zt_one, torch.tensor([2]),
                                  alpha=0.0, beta=1.0)
    assert dkd_one.item() == 0.0


@pytest.mark.parametrize('mode', WEIGHT_MODES)
def test_single_class(mode):
    zs = torch.randn(5, 1, requires_grad=True)
    zt = torch.randn(5, 1)
    labels = torch.zeros(5, dtype=torch.long)
    assert torch.equal(softened_entropy(zs, 3.0), torch.zeros(5))
    assert torch.equal(standardize_logits(zs), torch.zeros(5, 1))
    expected_weight = torch.ones(5) if mode == 'none' else torch.zeros(5)
    for module, args in ((EAKDLoss(weight_mode=mode), ()),
                         (EADKDLoss(weight_mode=mode), (labels, )),
                         (EAKDLoss(weight_mode=mode,
                                   logit_standardization=True), ())):
        loss = module(zs, zt, *args)
        assert loss.item() == 0.0
        assert torch.equal(module.ea_stats(zs, zt).ea_weight,
                           expected_weight)
        loss.backward()
        assert torch.isfinite(zs.grad).all()


class _CPUAmpOptimWrapper(AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` with torch's GradScaler on the CPU.

    Stands in for ``AmpOptimWrapper`` on a GPU, whose constructor refuses a
    machine without one: ``backward`` (``scaler.scale(loss).backward()``),
    ``step`` (``scaler.step`` skips ``optimizer.step`` when a gradient is
    inf/NaN, then ``scaler.update`` halves the scale) and the skip decision
    are mmengine's and ``torch.amp.GradScaler``'s own code, run on the CPU.
    It does not autocast (mmcv's CPU RoIAlign has no half kernel): the fp16
    overflow itself is simulated by a hook that writes +inf into the
    student's classification logits.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        OptimWrapper.__init__(self, optimizer=optimizer)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu')
        self.cast_dtype = None

    @contextlib.contextmanager
    def optim_context(self, model: torch.nn.Module):
        with OptimWrapper.optim_context(self, model):
            yield


def test_overflow_in_a_training_step_is_skipped_not_raised(tmp_path):
    """A student logit overflows to +inf in one step of the tiny EA-KD
    config: the step runs to the optimizer wrapper, which skips it (the
    parameters stay unchanged, the loss scale backs off), and the next step
    trains. The loss used to raise ``ValueError('student_logits contains NaN
    or +inf values')`` and end the run.
    """
    from mmdet.testing import demo_mm_inputs
    from mmdet_eakd.utils import build_offline_model

    model = build_offline_model(
        SYNTHETIC_CONFIGS / 'eakd_frcnn_teacher_tiny_synthetic.py', tmp_path)
    model.train()
    optim = _CPUAmpOptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    torch.manual_seed(0)
    data = demo_mm_inputs(
        batch_size=2, image_shapes=[(3, 160, 160), (3, 128, 160)],
        num_items=[3, 2], num_classes=4)

    def overflow(module, args, output):
        cls_score, bbox_pred = output
        index = (torch.tensor([0]), torch.tensor([1]))
        return cls_score.index_put(index, torch.tensor(float('inf'))), \
            bbox_pred

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    scale = optim.loss_scaler.get_scale()
    handle = model.roi_head.bbox_head.register_forward_hook(overflow)
    try:
        log = model.train_step(data, optim)
    finally:
        handle.remove()
    assert not torch.isfinite(log['loss_kd'])
    assert set(EA_STAT_NAMES) <= set(log)
    assert optim.loss_scaler.get_scale() == scale / 2
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name
    # the run goes on
    log = model.train_step(data, optim)
    assert torch.isfinite(log['loss_kd']) and torch.isfinite(log['loss'])
    assert all(torch.isfinite(log[name]) for name in EA_STAT_NAMES)
    assert not all(
        torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_registered_in_mmdet_models():
    from mmdet.registry import MODELS
    loss = MODELS.build(dict(type='EAKDLoss', temperature=2.0))
    assert isinstance(loss, EAKDLoss) and loss.temperature == 2.0
    loss = MODELS.build(dict(type='EADKDLoss', beta=0.5, weight_mode='none'))
    assert isinstance(loss, EADKDLoss) and loss.beta == 0.5


def test_benchmark_script_smoke(tmp_path, capsys):
    path = Path(__file__).parents[1] / 'tools' / 'benchmark_losses.py'
    spec = importlib.util.spec_from_file_location('benchmark_losses', path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out_json = tmp_path / 'bench.json'
    results = bench.main([
        '--n', '16', '--c', '5', '--repeats', '2', '--inner', '1',
        '--warmup', '1', '--json',
        str(out_json)
    ])
    printed = capsys.readouterr().out
    assert 'EA-KD / KD' in printed and 'EA-DKD / DKD' in printed
    assert json.loads(out_json.read_text()) == results
    assert set(results['median_ms']) == {
        'ea_kd', 'kd', 'ea_dkd', 'dkd', 'ea_kd_stats', 'kd_torch'
    }
    assert results['n'] == 16 and results['c'] == 5
    assert results['ratio_ea_kd_over_kd'] > 0
    assert results['ratio_ea_dkd_over_dkd'] > 0
    assert results['ratio_stats_overhead'] > 0
    assert 'EA-KD loss_and_stats / EA-KD' in printed


@pytest.mark.parametrize('mode', WEIGHT_MODES)
@pytest.mark.parametrize('reduction', ['none', 'mean', 'sum'])
def test_loss_and_stats_is_forward_and_ea_stats_in_one_pass(
        mode, reduction, monkeypatch):
    """``loss_and_stats`` gives exactly ``forward``'s loss and ``ea_stats``'s
    statistics (every loss, mode and reduction), computing each entropy once
    (2 calls: teacher and student) where the two calls compute them again."""
    from mmdet_eakd.losses import SigmoidEAKDLoss, functional
    zs = logits(7, 9, seed=3, dtype=torch.float32)
    zt = logits(7, 9, scale=3, seed=4, dtype=torch.float32)
    labels = labels_for(7, 9)
    calls = []
    for name in ('softened_entropy', 'binary_softened_entropy'):
        original = getattr(functional, name)
        monkeypatch.setattr(
            functional, name,
            lambda *a, original=original: calls.append(1) or original(*a))
    for module, args in ((EAKDLoss(weight_mode=mode), ()),
                         (EADKDLoss(weight_mode=mode), (labels, )),
                         (SigmoidEAKDLoss(weight_mode=mode), ())):
        calls.clear()
        loss, stats = module.loss_and_stats(zs, zt, *args,
                                            reduction_override=reduction)
        assert len(calls) == 2
        assert torch.equal(loss, module(zs, zt, *args,
                                        reduction_override=reduction))
        for ours, theirs in zip(stats, module.ea_stats(zs, zt)):
            assert torch.equal(ours, theirs)
