# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Tests of EA localization distillation (EA-LD) on box distributions
(issue 17, item 2): :mod:`mmdet_eakd.losses.ld_functional` and ``EALDLoss``.

The references below are written from the formulas in float64 numpy with
plain loops over locations, edges and bins; they never call the code under
test. mmdet's own ``KnowledgeDistillationKLDivLoss`` and ``LDHead`` are the
anchor of the normalisation.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdet_eakd.losses import (
    BIN_REDUCTIONS, BOX_DISTRIBUTION, EA_STAT_NAMES, GFL_REG_MAX,
    LD_ENTROPY_TEMPERATURE, LD_TEMPERATURE, LOSS_TYPES, NUM_EDGES,
    WEIGHT_MODES, EALDLoss, EAStats, LossAndStats, ea_ld_loss_and_statistics,
    ea_ld_loss_per_location, ea_ld_statistics, edge_entropies, edge_logits,
    ld_entropy_upper_bound, ld_loss_per_edge, ld_loss_per_location,
    location_entropy)
from mmdet_eakd.losses import ld_functional

INF = float('inf')
NAN = float('nan')
EPS32 = torch.finfo(torch.float32).eps
LOG17 = math.log(17)

# --------------------------------------------------------------------------
# Independent float64 references (numpy, plain loops)
# --------------------------------------------------------------------------


def ref_log_softmax(row, temperature):
    """log softmax(row / T) of one edge, float64; -inf bins allowed."""
    x = [float(v) / temperature for v in row]
    m = max(x)
    lse = m + math.log(sum(math.exp(v - m) for v in x))
    return [v - lse for v in x]


def ref_edges(z, reg_max):
    """(N, 4 * (reg_max + 1)) -> list of locations, each 4 lists of bins."""
    z = np.asarray(torch.as_tensor(z).detach().double().cpu())
    bins = reg_max + 1
    return [[list(row[e * bins:(e + 1) * bins]) for e in range(4)]
            for row in z]


def ref_entropy(z, reg_max, temperature):
    """Per location: (1/4) sum_e -sum_i p_ei log p_ei, p_e = softmax."""
    out = []
    for edges in ref_edges(z, reg_max):
        total = 0.0
        for edge in edges:
            lp = ref_log_softmax(edge, temperature)
            total += -sum(math.exp(v) * v for v in lp if v > -INF)
        out.append(total / 4)
    return np.array(out)


def ref_ld_edges(zs, zt, reg_max, temperature, bin_reduction='mean'):
    """Per location and edge: T^2 KL(p_T || p_S), bins summed or averaged."""
    out = []
    for s_edges, t_edges in zip(ref_edges(zs, reg_max), ref_edges(zt,
                                                                  reg_max)):
        row = []
        for s_edge, t_edge in zip(s_edges, t_edges):
            lps = ref_log_softmax(s_edge, temperature)
            lpt = ref_log_softmax(t_edge, temperature)
            kl = sum(
                math.exp(b) * (b - a) for a, b in zip(lps, lpt) if b > -INF)
            if bin_reduction == 'mean':
                kl /= reg_max + 1
            row.append(kl * temperature**2)
        out.append(row)
    return np.array(out).reshape(-1, 4)


def ref_weights(h_t, h_s, mode, h_ub):
    """The four weight modes of EA-KD (paper eq. 9-11, Table 9)."""
    if mode == 'none':
        return np.ones_like(h_t)
    if mode == 'base':
        return h_t
    if mode == 'interact':
        return h_t * h_s / h_ub
    return (h_t + h_t * h_s / h_ub) / 2


def logits(n, reg_max=GFL_REG_MAX, scale=3.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 4 *
                        (reg_max + 1), generator=g, dtype=torch.float64) *
            scale).to(dtype)


def as_double(value):
    """A float64 tensor of a tensor, an array or a list (lists and arrays
    never pass through float32)."""
    if isinstance(value, torch.Tensor):
        return value.detach().double()
    return torch.from_numpy(np.asarray(value, dtype=np.float64))


def close(actual, expected, rtol=1e-12, atol=1e-12):
    torch.testing.assert_close(as_double(actual),
                               as_double(expected),
                               rtol=rtol,
                               atol=atol)


def test_reference_on_a_hand_computed_location():
    # reg_max = 1: two bins per edge. Teacher edges (0, 0) -> p = (1/2,
    # 1/2); student edges (log 3, 0) at T = 1 -> q = (3/4, 1/4).
    zt = torch.zeros(1, 8, dtype=torch.float64)
    zs = torch.tensor([[math.log(3), 0.0] * 4], dtype=torch.float64)
    kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    h_s = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    close(ref_ld_edges(zs, zt, 1, 1.0, 'sum'), np.full((1, 4), kl))
    close(ref_ld_edges(zs, zt, 1, 1.0, 'mean'), np.full((1, 4), kl / 2))
    close(ref_entropy(zt, 1, 1.0), [math.log(2)])
    close(ref_entropy(zs, 1, 1.0), [h_s])


# --------------------------------------------------------------------------
# Functions vs references
# --------------------------------------------------------------------------


def test_edge_layout_is_gfl_integral_layout():
    """Edge e of a location is the e-th (reg_max + 1)-block of its row: the
    rows mmdet's ``Integral`` (and ``LDHead``) read."""
    from mmdet.models.dense_heads.gfl_head import Integral
    z = logits(5, reg_max=7, seed=1, dtype=torch.float32)
    edges = edge_logits(z, 7)
    assert edges.shape == (5, 4, 8)
    expected = Integral(7)(z)  # (5, 4) expected distances
    bins = torch.arange(8, dtype=torch.float32)
    close((edges.softmax(-1) * bins).sum(-1), expected, rtol=1e-6, atol=1e-6)
    # a location whose only sure edge is the right one (e = 2) at bin 5
    one = torch.full((1, 32), -INF)
    one[0, [0, 8, 16 + 5, 24]] = 0.0
    h = edge_entropies(one, reg_max=7)
    assert torch.equal(h, torch.zeros(1, 4))
    close(Integral(7)(one), [[0.0, 0.0, 5.0, 0.0]])


@pytest.mark.parametrize('dtype,rtol,atol', [(torch.float64, 1e-11, 1e-12),
                                             (torch.float32, 2e-5, 2e-6)])
@pytest.mark.parametrize('reg_max', [16, 7])
@pytest.mark.parametrize('bin_reduction', BIN_REDUCTIONS)
def test_ld_terms_match_reference(dtype, rtol, atol, reg_max, bin_reduction):
    zs = logits(9, reg_max, seed=2, dtype=dtype)
    zt = logits(9, reg_max, scale=5, seed=3, dtype=dtype)
    for temperature in (1.0, 10.0):
        expected = ref_ld_edges(zs, zt, reg_max, temperature, bin_reduction)
        per_edge = ld_loss_per_edge(zs,
                                    zt,
                                    reg_max=reg_max,
                                    temperature=temperature,
                                    bin_reduction=bin_reduction)
        assert per_edge.shape == (9, 4) and per_edge.dtype == dtype
        close(per_edge, expected, rtol=rtol, atol=atol)
        close(ld_loss_per_location(zs,
                                   zt,
                                   reg_max=reg_max,
                                   temperature=temperature,
                                   bin_reduction=bin_reduction),
              expected.mean(1),
              rtol=rtol,
              atol=atol)
    for temperature in (0.5, 1.0, 3.0):
        h = edge_entropies(zs, reg_max=reg_max, temperature=temperature)
        assert h.shape == (9, 4) and h.dtype == dtype
        close(location_entropy(zs, reg_max=reg_max, temperature=temperature),
              ref_entropy(zs, reg_max, temperature),
              rtol=rtol,
              atol=atol)


@pytest.mark.parametrize('mode', WEIGHT_MODES)
@pytest.mark.parametrize('reg_max', [16, 3])
def test_statistics_and_loss_match_reference(mode, reg_max):
    zs = logits(11, reg_max, seed=4)
    zt = logits(11, reg_max, scale=2, seed=5)
    h_ub = math.log(reg_max + 1)
    assert ld_entropy_upper_bound(reg_max) == h_ub
    h_t = ref_entropy(zt, reg_max, 1.5)
    h_s = ref_entropy(zs, reg_max, 1.5)
    w = ref_weights(h_t, h_s, mode, h_ub)
    ld = ref_ld_edges(zs, zt, reg_max, 4.0).mean(1)
    kwargs = dict(reg_max=reg_max, entropy_temperature=1.5, weight_mode=mode)
    stats = ea_ld_statistics(zs, zt, **kwargs)
    assert isinstance(stats, EAStats)
    close(stats.entropy_t, h_t)
    close(stats.entropy_s, h_s)
    close(stats.ea_weight, w)
    loss = ea_ld_loss_per_location(zs, zt, temperature=4.0, **kwargs)
    close(loss, w * ld, rtol=1e-11)
    both = ea_ld_loss_and_statistics(zs, zt, temperature=4.0, **kwargs)
    assert isinstance(both, LossAndStats)
    assert torch.equal(both.loss, loss)
    assert all(torch.equal(a, b) for a, b in zip(both.stats, stats))
    # 'sum' over the bins is reg_max + 1 times mmdet's 'mean'
    close(ea_ld_loss_per_location(zs,
                                  zt,
                                  temperature=4.0,
                                  bin_reduction='sum',
                                  **kwargs), (reg_max + 1) * w * ld,
          rtol=1e-11)
    # an explicit bound replaces log(reg_max + 1)
    stats = ea_ld_statistics(zs, zt, entropy_upper_bound=0.5, **kwargs)
    close(stats.ea_weight, ref_weights(h_t, h_s, mode, 0.5))


def test_defaults():
    assert (GFL_REG_MAX, LD_TEMPERATURE, LD_ENTROPY_TEMPERATURE,
            NUM_EDGES) == (16, 10.0, 1.0, 4)
    zs, zt = logits(6, seed=6), logits(6, seed=7)
    h_t = ref_entropy(zt, 16, 1.0)
    h_s = ref_entropy(zs, 16, 1.0)
    w = ref_weights(h_t, h_s, 'ea', LOG17)
    close(ea_ld_statistics(zs, zt).ea_weight, w)
    ld = ref_ld_edges(zs, zt, 16, 10.0, 'mean').mean(1)
    close(ea_ld_loss_per_location(zs, zt), w * ld, rtol=1e-11)
    module = EALDLoss()
    assert (module.weight_mode, module.temperature, module.entropy_temperature,
            module.reg_max, module.loss_weight, module.entropy_upper_bound,
            module.bin_reduction, module.reduction,
            module.check_finite) == ('ea', 10.0, 1.0, 16, 0.25, None, 'mean',
                                     'mean', False)
    assert module.num_bins == 17
    close(module(zs, zt), 0.25 * (w * ld).mean(), rtol=1e-11)


def test_module_matches_reference_with_reductions():
    zs, zt = logits(8, 5, seed=8), logits(8, 5, scale=4, seed=9)
    extra = torch.rand(8,
                       dtype=torch.float64,
                       generator=torch.Generator().manual_seed(0))
    h_ub = math.log(6)
    for mode in WEIGHT_MODES:
        w = ref_weights(ref_entropy(zt, 5, 2.0), ref_entropy(zs, 5, 2.0), mode,
                        h_ub)
        per_location = torch.as_tensor(
            0.5 * w * ref_ld_edges(zs, zt, 5, 3.0, 'sum').mean(1))
        module = EALDLoss(weight_mode=mode,
                          temperature=3.0,
                          entropy_temperature=2.0,
                          reg_max=5,
                          loss_weight=0.5,
                          bin_reduction='sum')
        close(module(zs, zt), per_location.mean(), rtol=1e-11)
        close(module(zs, zt, reduction_override='sum'),
              per_location.sum(),
              rtol=1e-11)
        close(module(zs, zt, reduction_override='none'),
              per_location,
              rtol=1e-11)
        close(module(zs, zt, weight=extra), (per_location * extra).mean(),
              rtol=1e-11)
        close(module(zs, zt, weight=extra, avg_factor=5.0),
              (per_location * extra).sum() / (5.0 + EPS32),
              rtol=1e-11)
        loss, stats = module.loss_and_stats(zs, zt, weight=extra)
        assert torch.equal(loss, module(zs, zt, weight=extra))
        close(stats.ea_weight, w)
        ea = module.ea_stats(zs, zt)
        assert all(torch.equal(a, b) for a, b in zip(ea, stats))


# --------------------------------------------------------------------------
# mmdet's LD
# --------------------------------------------------------------------------


def test_edge_term_is_mmdet_kd_kl_div_loss():
    """``bin_reduction='mean'`` per edge is mmdet's KD term on the edge's
    row (KL averaged over the bins, times T^2); 'sum' is (reg_max + 1)
    times it."""
    from mmdet.models.losses import KnowledgeDistillationKLDivLoss
    zs, zt = logits(7, seed=10), logits(7, scale=5, seed=11)
    mmdet_kd = KnowledgeDistillationKLDivLoss(reduction='none',
                                              loss_weight=1.0,
                                              T=10)
    expected = mmdet_kd(zs.reshape(-1, 17), zt.reshape(-1, 17)).reshape(7, 4)
    close(ld_loss_per_edge(zs, zt), expected, rtol=1e-12)
    close(ld_loss_per_edge(zs, zt, bin_reduction='sum'),
          17 * expected,
          rtol=1e-12)


@pytest.mark.parametrize('dtype,rtol', [(torch.float64, 1e-12),
                                        (torch.float32, 1e-5)])
def test_weight_mode_none_reproduces_mmdet_ld(dtype, rtol):
    """LDHead's call: the location's cls-score weight on its 4 edge rows,
    ``avg_factor=4.0``, ``loss_weight=0.25``, ``T=10``: a weighted sum over
    the locations of the mean edge term, divided by ``(4 + eps) / 4``."""
    from mmdet.models.losses import KnowledgeDistillationKLDivLoss
    zs, zt = logits(13, seed=12, dtype=dtype), logits(13,
                                                      scale=4,
                                                      seed=13,
                                                      dtype=dtype)
    w = torch.rand(13, generator=torch.Generator().manual_seed(1)).to(dtype)
    mmdet_ld = KnowledgeDistillationKLDivLoss(loss_weight=0.25,
                                              T=10)(zs.reshape(-1, 17),
                                                    zt.reshape(-1, 17),
                                                    weight=w[:, None].expand(
                                                        -1, 4).reshape(-1),
                                                    avg_factor=4.0)
    ours = EALDLoss(weight_mode='none', reduction='sum')(zs, zt, weight=w)
    close(ours * 4 / (4 + EPS32), mmdet_ld, rtol=rtol, atol=0)
    # the same through 'mean' with LDHead's avg_factor, per edge row count
    ours = EALDLoss(weight_mode='none')(zs, zt, weight=w, avg_factor=4.0)
    close(4 * ours, mmdet_ld, rtol=rtol, atol=0)


def test_weight_mode_none_reproduces_mmdet_ld_head():
    """``LDHead.loss_by_feat_single`` on one FPN level: its ``loss_ld`` is
    ``EALDLoss(weight_mode='none', reduction='sum')`` on the positive
    locations with the max sigmoid cls score as weight."""
    from mmdet.models.dense_heads import LDHead
    torch.manual_seed(0)
    head = LDHead(num_classes=3,
                  in_channels=8,
                  feat_channels=32,
                  stacked_convs=1,
                  anchor_generator=dict(type='AnchorGenerator',
                                        ratios=[1.0],
                                        octave_base_scale=8,
                                        scales_per_octave=1,
                                        strides=[8]),
                  loss_cls=dict(type='QualityFocalLoss',
                                use_sigmoid=True,
                                beta=2.0,
                                loss_weight=1.0),
                  loss_dfl=dict(type='DistributionFocalLoss',
                                loss_weight=0.25),
                  loss_ld=dict(type='KnowledgeDistillationKLDivLoss',
                               loss_weight=0.25,
                               T=10),
                  reg_max=16,
                  loss_bbox=dict(type='GIoULoss', loss_weight=2.0)).double()
    size, stride = 4, 8
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64),
                            torch.arange(size, dtype=torch.float64),
                            indexing='ij')
    centers = torch.stack([xs.flatten(), ys.flatten()], 1) * stride + 4
    anchors = torch.cat([centers - 32, centers + 32], 1)[None]
    cls_score = torch.randn(1, 3, size, size, dtype=torch.float64)
    bbox_pred = torch.randn(1, 68, size, size, dtype=torch.float64) * 2
    soft_targets = torch.randn(1, 68, size, size, dtype=torch.float64) * 3
    labels = torch.tensor([[3, 0, 3, 2, 1, 3, 3, 0, 3, 3, 2, 3, 3, 3, 1, 3]])
    extent = torch.rand(1, 16, 4, dtype=torch.float64) * 40 + 4
    bbox_targets = torch.cat(
        [centers - extent[0, :, :2], centers + extent[0, :, 2:]], 1)[None]
    _, _, _, loss_ld, _ = head.loss_by_feat_single(
        anchors,
        cls_score,
        bbox_pred,
        labels,
        torch.ones(1, 16, dtype=torch.float64),
        bbox_targets, (stride, stride),
        soft_targets,
        avg_factor=6.0)
    pos = (labels[0] < 3).nonzero()[:, 0]
    student = bbox_pred.permute(0, 2, 3, 1).reshape(-1, 68)[pos]
    teacher = soft_targets.permute(0, 2, 3, 1).reshape(-1, 68)[pos]
    weight = cls_score.permute(0, 2, 3, 1).reshape(-1, 3).sigmoid().amax(1)
    ours = EALDLoss(weight_mode='none', reduction='sum')(student,
                                                         teacher,
                                                         weight=weight[pos])
    close(ours * 4 / (4 + EPS32), loss_ld, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------
# One computation of the entropies
# --------------------------------------------------------------------------


@pytest.mark.parametrize('mode', WEIGHT_MODES)
def test_loss_and_statistics_compute_the_entropies_once(mode, monkeypatch):
    calls = []
    real = ld_functional.softened_entropy

    def counting(logits, temperature):
        calls.append(logits.shape)
        return real(logits, temperature)

    monkeypatch.setattr(ld_functional, 'softened_entropy', counting)
    zs, zt = logits(6, seed=14), logits(6, seed=15)
    module = EALDLoss(weight_mode=mode, reduction='none')
    loss, stats = module.loss_and_stats(zs, zt)
    # one call for the teacher's 24 edges, one for the student's
    assert calls == [(24, 17), (24, 17)]
    # the statistics are the ones that weighted this very loss
    assert torch.equal(loss,
                       0.25 * stats.ea_weight * ld_loss_per_location(zs, zt))
    calls.clear()
    assert torch.equal(module(zs, zt), loss)
    assert len(calls) == (0 if mode == 'none' else 2)
    calls.clear()
    ea_ld_loss_and_statistics(zs, zt, weight_mode=mode)
    assert len(calls) == 2


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 6),
       reg_max=st.integers(1, 20),
       temperature=st.floats(0.5, 20.0),
       entropy_temperature=st.floats(0.2, 5.0),
       log_scale=st.floats(-2.0, 3.0),
       mode=st.sampled_from(WEIGHT_MODES),
       seed=st.integers(0, 2**31 - 1))
def test_properties(n, reg_max, temperature, entropy_temperature, log_scale,
                    mode, seed):
    scale = 10**log_scale
    zs = logits(n, reg_max, scale, seed, torch.float32)
    zt = logits(n, reg_max, scale, seed + 1, torch.float32)
    h_ub = math.log(reg_max + 1)
    kwargs = dict(reg_max=reg_max,
                  temperature=temperature,
                  entropy_temperature=entropy_temperature,
                  weight_mode=mode)
    loss, stats = ea_ld_loss_and_statistics(zs, zt, **kwargs)
    assert loss.shape == (n, ) and all(v.shape == (n, ) for v in stats)
    # 0 <= H <= log(reg_max + 1), up to float32 rounding
    for h in (stats.entropy_t, stats.entropy_s):
        assert bool(((h >= 0) & (h <= h_ub * (1 + 1e-6))).all())
    # the weights' ranges; 'none' is plain LD
    if mode == 'none':
        assert torch.equal(stats.ea_weight, torch.ones(n))
        assert torch.equal(
            loss,
            ld_loss_per_location(zs,
                                 zt,
                                 reg_max=reg_max,
                                 temperature=temperature))
    else:
        assert bool(((stats.ea_weight >= 0) & (stats.ea_weight <= h_ub *
                                               (1 + 1e-6))).all())
    ld = ld_loss_per_location(zs, zt, reg_max=reg_max, temperature=temperature)
    assert torch.equal(loss, stats.ea_weight * ld)
    # KL >= 0 up to the float32 rounding of the log-probs, 0 for equal
    # logits (exactly: the log-probs cancel)
    max_abs = zs.abs().amax(1).maximum(zt.abs().amax(1))
    tol = 8 * EPS32 * temperature**2 * (max_abs / temperature + h_ub + 1)
    assert bool(torch.isfinite(ld).all()) and bool((ld >= -tol).all())
    same = ea_ld_loss_per_location(zt, zt, **kwargs)
    assert torch.equal(same, torch.zeros(n))
    # adding a constant to all bins of an edge changes no distribution
    g = torch.Generator().manual_seed(seed)
    width = 4 * (reg_max + 1)
    shift_t = (torch.randn(n, 4, 1, generator=g) * 50).expand(
        -1, -1, reg_max + 1).reshape(n, width)
    shift_s = (torch.randn(n, 4, 1, generator=g) * 50).expand(
        -1, -1, reg_max + 1).reshape(n, width)
    loss2, stats2 = ea_ld_loss_and_statistics(zs + shift_s, zt + shift_t,
                                              **kwargs)
    atol = 1e-4 * (1 + scale / temperature) * temperature**2
    torch.testing.assert_close(loss2, loss, rtol=1e-3, atol=atol)
    for a, b in zip(stats2, stats):
        torch.testing.assert_close(a,
                                   b,
                                   rtol=1e-3,
                                   atol=1e-4 *
                                   (1 + scale / entropy_temperature))
    # permuting the 4 edges (both nets alike) and the locations
    perm = torch.randperm(4, generator=g)
    order = torch.randperm(n, generator=g)

    def permuted(z):
        return edge_logits(z,
                           reg_max)[order][:,
                                           perm].reshape(n, 4 * (reg_max + 1))

    loss3, stats3 = ea_ld_loss_and_statistics(permuted(zs), permuted(zt),
                                              **kwargs)
    torch.testing.assert_close(loss3, loss[order])
    for a, b in zip(stats3, stats):
        torch.testing.assert_close(a, b[order])


def test_entropy_maximum_is_log_bins_and_zero_for_a_sure_edge():
    uniform = torch.zeros(3, 68, dtype=torch.float64)
    close(location_entropy(uniform), np.full(3, LOG17))
    z = logits(4, seed=16)
    assert (location_entropy(z, temperature=3.0) > location_entropy(z)).all()
    sure = torch.full((2, 68), -INF, dtype=torch.float64)
    sure[:, [3, 17 + 3, 34 + 16, 51]] = 0.0
    assert torch.equal(location_entropy(sure),
                       torch.zeros(2, dtype=torch.float64))
    # a sure teacher gives weight 0 in 'ea', 'base' and 'interact'
    for mode in ('ea', 'base', 'interact'):
        stats = ea_ld_statistics(z[:2], sure, weight_mode=mode)
        assert torch.equal(stats.ea_weight, torch.zeros(2,
                                                        dtype=torch.float64))


def test_ld_is_zero_only_for_equal_distributions():
    zt = logits(5, seed=17)
    assert torch.equal(ld_loss_per_location(zt, zt),
                       torch.zeros(5, dtype=torch.float64))
    zs = zt.clone()
    zs[torch.arange(5), torch.arange(5) * 13] += 1e-2
    assert (ld_loss_per_location(zs, zt) > 0).all()


def test_large_temperature_matches_the_small_logit_expansion():
    # For |z| / T -> 0: T^2 KL(p_T || p_S) -> (1/2) Var_uniform(z_T - z_S)
    # per edge (the softmax's Fisher metric at the uniform distribution).
    zs, zt = logits(3, 4, seed=18), logits(3, 4, seed=19)
    d = edge_logits(zt - zs, 4)
    expected = (0.5 * d.var(dim=2, unbiased=False)).mean(1)
    close(ld_loss_per_location(zs,
                               zt,
                               reg_max=4,
                               temperature=1e4,
                               bin_reduction='sum'),
          expected,
          rtol=1e-3)


# --------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------


@pytest.mark.parametrize('mode', WEIGHT_MODES)
def test_teacher_gets_no_gradient_and_weights_none(mode):
    zs = logits(5, seed=20).requires_grad_()
    zt = logits(5, seed=21).requires_grad_()
    assert location_entropy(zt).requires_grad  # the entropy itself is
    module = EALDLoss(weight_mode=mode)
    loss, stats = module.loss_and_stats(zs, zt)
    assert stats._fields == EA_STAT_NAMES
    for value in stats:  # ... the weight and statistics are not
        assert value.shape == (5, ) and not value.requires_grad
    for value in module.ea_stats(zs, zt):
        assert not value.requires_grad
    loss.backward()
    assert zt.grad is None and zs.grad is not None


@pytest.mark.parametrize('mode', WEIGHT_MODES)
@pytest.mark.parametrize('bin_reduction', BIN_REDUCTIONS)
def test_gradient_equals_constant_weighted_ld(mode, bin_reduction):
    reg_max, n, temperature = 6, 10, 3.0
    zs, zt = logits(n, reg_max, seed=22), logits(n, reg_max, scale=5, seed=23)
    w = torch.as_tensor(
        ref_weights(ref_entropy(zt, reg_max,
                                2.0), ref_entropy(zs, reg_max, 2.0), mode,
                    math.log(reg_max + 1)))
    s1 = zs.clone().requires_grad_()
    EALDLoss(weight_mode=mode,
             temperature=temperature,
             entropy_temperature=2.0,
             reg_max=reg_max,
             loss_weight=1.0,
             bin_reduction=bin_reduction)(s1, zt).backward()
    # d/dz_S of T^2 KL(p_T || softmax(z_S / T)) = T (p_S - p_T) per edge;
    # then / 4 (edges), / (reg_max + 1) ('mean' bins), / n (mean).
    q = edge_logits(zs / temperature, reg_max).softmax(-1)
    p = edge_logits(zt / temperature, reg_max).softmax(-1)
    per_bin = reg_max + 1 if bin_reduction == 'mean' else 1
    analytic = (w[:, None, None] * temperature * (q - p) /
                (4 * per_bin * n)).reshape(n, -1)
    close(s1.grad, analytic, rtol=1e-10, atol=1e-14)


def test_gradcheck_float64():
    zs = logits(3, 3, seed=24).requires_grad_()
    zt = logits(3, 3, scale=4, seed=25)
    w_const = location_entropy(zt, reg_max=3).detach()
    assert torch.autograd.gradcheck(
        lambda s: w_const * ld_loss_per_location(
            s, zt, reg_max=3, temperature=2.0), zs)
    assert torch.autograd.gradcheck(
        lambda s: location_entropy(s, reg_max=3, temperature=1.5), zs)
    # 'base' weights depend on the teacher only: the module is then an
    # ordinary differentiable function of the student logits.
    assert torch.autograd.gradcheck(
        EALDLoss(weight_mode='base', temperature=2.0, reg_max=3), (zs, zt))
    # with 'ea' the weight depends on the student but is detached: finite
    # differences see it change, the analytic gradient must not.
    assert not torch.autograd.gradcheck(EALDLoss(reg_max=3, temperature=2.0),
                                        (zs, zt),
                                        raise_exception=False)


# --------------------------------------------------------------------------
# Precision and extreme input
# --------------------------------------------------------------------------


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    zs = logits(12, seed=26, dtype=dtype).requires_grad_()
    zt = logits(12, scale=4, seed=27, dtype=dtype)
    up_s, up_t = zs.detach().float(), zt.float()
    assert torch.equal(location_entropy(zs), location_entropy(up_s))
    assert torch.equal(ld_loss_per_edge(zs, zt), ld_loss_per_edge(up_s, up_t))
    for mode in WEIGHT_MODES:
        module = EALDLoss(weight_mode=mode)
        loss, stats = module.loss_and_stats(zs, zt)
        assert loss.dtype == torch.float32
        up_loss, up_stats = module.loss_and_stats(up_s, up_t)
        assert torch.equal(loss, up_loss)
        assert all(torch.equal(a, b) for a, b in zip(stats, up_stats))
        assert stats.ea_weight.dtype == torch.float32
        loss.backward()
        assert zs.grad.dtype == dtype and torch.isfinite(zs.grad).all()
        zs.grad = None
    # and close to the float64 reference of the rounded inputs
    ref = ref_ld_edges(up_s, up_t, 16, 10.0).mean(1)
    close(ld_loss_per_location(zs, zt), ref, rtol=1e-5, atol=1e-6)
    # and to the float32 logits before rounding, up to the rounding's
    # effect (measured: <= 7e-4 relative for fp16, 7e-3 for bf16)
    rtol = 2e-3 if dtype == torch.float16 else 2e-2
    orig_s = logits(12, seed=26, dtype=torch.float32)
    orig_t = logits(12, scale=4, seed=27, dtype=torch.float32)
    for mode in WEIGHT_MODES:
        module = EALDLoss(weight_mode=mode, reduction='none')
        close(module(zs, zt), module(orig_s, orig_t), rtol=rtol, atol=0)
    # a mixed pair is compared in float32; autocast does not lower it
    assert EALDLoss()(up_s, zt).dtype == torch.float32
    with torch.autocast('cpu', dtype=torch.bfloat16):
        auto = EALDLoss()(up_s, up_t)
    assert torch.equal(auto, EALDLoss()(up_s, up_t))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_extreme_logits_are_finite_and_exact(dtype):
    # float32: the KL of nearby distributions at T = 10 is a difference of
    # log-probs of order 1, so its relative rounding is ~ eps / KL
    rtol, atol = (1e-10, 1e-10) if dtype == torch.float64 else (5e-5, 1e-5)
    reg_max, big = 3, 1e4
    # locations: large magnitudes; -inf bins in both (the same ones);
    # -inf bins in the teacher only; a sure (one-bin) teacher edge
    zt = torch.tensor([[
        big, -big, 0.0, big, -big, -big, 3.0, big, 1.0, 2.0, 3.0, 4.0, -big,
        big, -big, big
    ],
                       [
                           -INF, 1.0, 2.0, -INF, 0.0, 0.0, 0.0, 0.0, -INF,
                           -INF, 5.0, 1.0, 3.0, -INF, -INF, -INF
                       ],
                       [
                           -INF, -INF, -INF, 2.0, big, 0.0, -big, 1.0, 0.5,
                           -INF, 0.5, 0.5, -2.0, -1.0, 0.0, 1.0
                       ]],
                      dtype=dtype)
    zs = torch.tensor([[
        -big, big, 2.0, -big, big, 0.0, -big, 3.0, -1.0, -2.0, -3.0, -4.0, big,
        -big, 0.0, -big
    ],
                       [
                           -INF, 3.0, -1.0, -INF, 1.0, 2.0, 3.0, 4.0, -INF,
                           -INF, 0.0, 0.0, -2.0, -INF, -INF, -INF
                       ],
                       [
                           5.0, 4.0, -big, 3.0, 2.0, 1.0, 0.0, -1.0, -big, 2.0,
                           2.0, big, 0.0, 0.0, 0.0, 0.0
                       ]],
                      dtype=dtype,
                      requires_grad=True)
    for temperature in (1.0, 10.0):
        kwargs = dict(reg_max=reg_max, temperature=temperature)
        ld_edges = ld_loss_per_edge(zs, zt, **kwargs)
        h_s = location_entropy(zs, reg_max=reg_max, temperature=temperature)
        h_t = location_entropy(zt, reg_max=reg_max, temperature=temperature)
        for value, expected in ((ld_edges,
                                 ref_ld_edges(zs, zt, reg_max, temperature)),
                                (h_s, ref_entropy(zs, reg_max, temperature)),
                                (h_t, ref_entropy(zt, reg_max, temperature))):
            assert torch.isfinite(value).all()
            close(value, expected, rtol=rtol, atol=atol)
        module = EALDLoss(reg_max=reg_max, temperature=temperature)
        loss, stats = module.loss_and_stats(zs, zt)
        assert torch.isfinite(loss) and all(
            torch.isfinite(v).all() for v in stats)
        (loss + ld_edges.sum() + h_s.sum()).backward()
        assert torch.isfinite(zs.grad).all()
        # bins that are -inf in both get no gradient
        assert (zs.grad[1, [0, 3, 8, 9, 13, 14, 15]] == 0).all()
        zs.grad = None
    # the teacher's sure edge (location 1, edge 3: one finite bin) has
    # entropy 0, and the student's matching sure edge a zero LD term
    assert edge_entropies(zt, reg_max=reg_max)[1, 3] == 0
    assert ld_edges[1, 3] == 0


def test_student_neg_inf_where_the_teacher_is_not_is_documented_meaningless():
    zt = logits(3, 3, seed=28, dtype=torch.float32)
    zs = logits(3, 3, seed=29, dtype=torch.float32)
    zs[1, 5] = -INF
    loss = EALDLoss(reg_max=3, reduction='none')(zs, zt)
    assert torch.isinf(loss[1]) or loss[1] > 1e30
    assert torch.isfinite(loss[[0, 2]]).all()


@pytest.mark.parametrize('bad', [
    'teacher_nan', 'student_nan', 'teacher_pos_inf', 'teacher_edge_all_neg_inf'
])
def test_non_finite_location_poisons_only_itself(bad):
    zs = logits(6, seed=30, dtype=torch.float32)
    zt = logits(6, scale=4, seed=31, dtype=torch.float32)
    bad_s, bad_t = zs.clone(), zt.clone()
    if bad == 'teacher_nan':
        bad_t[2, 20] = NAN
    elif bad == 'student_nan':
        bad_s[2, 40] = NAN
    elif bad == 'teacher_pos_inf':
        bad_t[2, 3] = INF
    else:
        bad_t[2, 17:34] = -INF
    good = torch.tensor([True, True, False, True, True, True])
    module = EALDLoss(reduction='none')

    def run(student, teacher):
        student = student.clone().requires_grad_()
        loss, stats = module.loss_and_stats(student, teacher)
        loss.sum().backward()
        return loss, student.grad, stats

    clean_loss, clean_grad, clean_stats = run(zs, zt)
    loss, grad, stats = run(bad_s, bad_t)
    assert torch.isfinite(clean_loss).all()
    assert torch.isnan(loss[2])
    assert torch.equal(loss[good], clean_loss[good])
    assert torch.isnan(grad[2]).any()
    assert torch.equal(grad[good], clean_grad[good])
    for name in EA_STAT_NAMES:
        assert torch.equal(
            getattr(stats, name)[good],
            getattr(clean_stats, name)[good])
    assert torch.isnan(stats.ea_weight[2])
    # a mean over locations is NaN (the step is skipped by GradScaler)
    assert torch.isnan(EALDLoss()(bad_s, bad_t))


@pytest.mark.parametrize('mode', WEIGHT_MODES)
def test_training_path_reads_no_values_on_the_host(mode):
    """Forward, ``loss_and_stats`` and backward run on meta tensors (which
    have no values): any host read would raise, and on a GPU be a sync."""
    zs = torch.empty(8, 68, device='meta', requires_grad=True)
    zt = torch.empty(8, 68, device='meta')
    weight = torch.empty(8, device='meta')
    module = EALDLoss(weight_mode=mode)
    loss, stats = module.loss_and_stats(zs, zt, weight=weight, avg_factor=3.0)
    means = stats.means()
    (loss + module(zs, zt)).backward()
    assert loss.shape == () and zs.grad.shape == (8, 68)
    assert set(means) == set(EA_STAT_NAMES)
    with pytest.raises(RuntimeError, match='meta'):
        EALDLoss(check_finite=True)(zs, zt)


@pytest.mark.parametrize('mode', WEIGHT_MODES)
@pytest.mark.parametrize('avg_factor', [None, 3.0])
def test_empty_batch_gives_connected_zero(mode, avg_factor):
    zs = torch.zeros(0, 68, requires_grad=True)
    zt = torch.zeros(0, 68)
    module = EALDLoss(weight_mode=mode)
    loss, stats = module.loss_and_stats(zs, zt, avg_factor=avg_factor)
    assert loss.shape == () and loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert zs.grad.shape == (0, 68)
    assert stats.means() == dict.fromkeys(EA_STAT_NAMES, 0.0)
    assert module(zs, zt, reduction_override='none').shape == (0, )


# --------------------------------------------------------------------------
# Checks and registry
# --------------------------------------------------------------------------

S = torch.randn(4, 68)
T = torch.randn(4, 68)


def _put(logits, row, col, value):
    out = logits.clone()
    out[row, col] = value
    return out


def _edge(logits, row, edge, value):
    out = logits.clone()
    out[row, edge * 17:(edge + 1) * 17] = value
    return out


@pytest.mark.parametrize('student,teacher,match', [
    (_put(S, 2, 40, NAN), T,
     r'student_logits contains NaN or \+inf values \(location 2, edge 2\)'),
    (S, _put(T, 1, 16, INF),
     r'teacher_logits contains NaN or \+inf values \(location 1, edge 0\)'),
    (S, _edge(T, 3, 3, -INF),
     r'teacher_logits has an edge whose logits are all -inf \(location 3, '
     r'edge 3\); it is not a probability distribution'),
    (_put(S, 0, 18, -INF), T,
     r'student_logits is -inf where teacher_logits is not \(location 0, '
     r'edge 1, bin 1\); KL\(p_T \|\| p_S\) would be infinite'),
])
def test_check_finite_rejects_bad_values(student, teacher, match):
    with pytest.raises(ValueError, match=match):
        EALDLoss(check_finite=True)(student, teacher)
    with pytest.raises(ValueError, match=match):
        EALDLoss(check_finite=True).loss_and_stats(student, teacher)
    with pytest.raises(ValueError, match=match):
        EALDLoss(check_finite=True).ea_stats(student, teacher)
    # by default the values are not read: no exception
    EALDLoss()(student, teacher)


def test_check_finite_accepts_agreeing_neg_inf_bins():
    teacher = _put(_put(T, 0, 3, -INF), 2, 50, -INF)
    student = _put(_put(S, 0, 3, -INF), 1, 7, 1e4)
    module = EALDLoss(check_finite=True)
    assert torch.isfinite(module(student, teacher))


@pytest.mark.parametrize(
    'call,error,match',
    [
        (lambda: EALDLoss()(S, torch.randn(4, 72)), ValueError,
         r'teacher_logits must have shape \(N, 4 \* \(reg_max \+ 1\)\) = '
         r'\(N, 68\) for reg_max=16, got shape \(4, 72\) \(72 columns would '
         r'be the box distributions of a head with reg_max=17\)$'),
        (lambda: EALDLoss(reg_max=7)(S, T), ValueError,
         r'student_logits must have shape \(N, 4 \* \(reg_max \+ 1\)\) = '
         r'\(N, 32\) for reg_max=7, got shape \(4, 68\) \(68 columns would '
         r'be the box distributions of a head with reg_max=16\)$'),
        (lambda: EALDLoss()(S.reshape(-1, 17), T.reshape(-1, 17)), ValueError,
         r'got shape \(16, 17\); per-edge rows \(N \* 4, reg_max \+ 1\) '
         r'must be reshaped to one row per location$'),
        (lambda: EALDLoss()(torch.randn(4, 80), torch.randn(4, 80)),
         ValueError, r'student_logits must have shape .* got shape '
         r'\(4, 80\) \(80 columns would be the box distributions of a head '
         r'with reg_max=19\)$'),
        (lambda: EALDLoss()(torch.randn(4, 3), torch.randn(4, 3)), ValueError,
         r'got shape \(4, 3\)$'),
        (lambda: EALDLoss()(S[0], T[0]), ValueError,
         r'student_logits must have shape \(N, 4 \* \(reg_max \+ 1\)\)'),
        (lambda: EALDLoss()(S, T[:3]), ValueError,
         r'teacher_logits has shape \(3, 68\) but student_logits has shape '
         r'\(4, 68\); both must be \(N, 4 \* \(reg_max \+ 1\)\) = \(N, 68\) '
         r'for reg_max=16$'),
        (lambda: EALDLoss().ea_stats(S, T[:3]), ValueError,
         'teacher_logits has shape'),
        (lambda: EALDLoss()(S.long(), T), TypeError, 'student_logits'),
        (lambda: EALDLoss()(S, [[0.0]]), TypeError, 'teacher_logits'),
        (lambda: EALDLoss()(S, T, weight=torch.ones(16)), ValueError,
         r'weight must be None or a floating-point tensor of shape \(4,\) '
         r'\(one weight per location\), got torch.Size\(\[16\]\)'),
        (lambda: EALDLoss()(S, T, weight=torch.ones(4, dtype=torch.long)),
         ValueError, 'weight must be None or a floating-point tensor'),
        # the classification losses' (student, teacher, labels) call
        (lambda: EALDLoss()
         (S, T, torch.zeros(4, dtype=torch.long)), TypeError, 'positional'),
        (lambda: EALDLoss()
         (S, T, reduction_override='avg'), ValueError, 'reduction_override'),
        (lambda: EALDLoss()(S, T, avg_factor=2.0, reduction_override='sum'),
         ValueError, 'avg_factor can not be used with reduction="sum"'),
        (lambda: ld_loss_per_edge(S, T, bin_reduction='batchmean'), ValueError,
         r"bin_reduction must be one of \('mean', 'sum'\)"),
        (lambda: ea_ld_statistics(S, T, weight_mode='EA'), ValueError,
         'mode must be one of'),
    ])
def test_bad_input_raises_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize('kwargs,match', [
    (dict(temperature=0.0), 'temperature must be a finite number > 0'),
    (dict(temperature=float('inf')), 'temperature must be'),
    (dict(entropy_temperature=-1.0), 'entropy_temperature must be'),
    (dict(weight_mode='EA'), 'weight_mode must be one of'),
    (dict(reg_max=0), 'reg_max must be an int >= 1, got 0'),
    (dict(reg_max=16.0), 'reg_max must be an int >= 1, got 16.0'),
    (dict(reg_max=True), 'reg_max must be an int >= 1'),
    (dict(entropy_upper_bound=0.0),
     r'entropy_upper_bound must be None \(log\(reg_max \+ 1\)\) or a finite '
     r'number > 0'),
    (dict(loss_weight=-1.0), 'loss_weight must be'),
    (dict(bin_reduction='batchmean'), 'bin_reduction must be one of'),
    (dict(reduction='batchmean'), 'reduction must be'),
    (dict(check_finite=1), 'check_finite must be a bool'),
])
def test_bad_constructor_args_raise(kwargs, match):
    with pytest.raises(ValueError, match=f'^{match}'):
        EALDLoss(**kwargs)


def test_registered_and_declares_what_it_distils():
    from mmdet.registry import MODELS
    loss = MODELS.build(
        dict(type='EALDLoss',
             weight_mode='base',
             temperature=5.0,
             entropy_temperature=2.0,
             reg_max=7,
             loss_weight=0.5))
    assert isinstance(loss, EALDLoss)
    assert (loss.weight_mode, loss.temperature, loss.entropy_temperature,
            loss.reg_max, loss.loss_weight) == ('base', 5.0, 2.0, 7, 0.5)
    # not a classification loss: no classifier kind, no LOSS_TYPES entry
    assert loss.distills == BOX_DISTRIBUTION == 'box_distribution'
    assert getattr(loss, 'classifier', None) is None
    assert all('EALDLoss' not in types.values()
               for types in LOSS_TYPES.values())
    zs, zt = logits(3, 7, seed=32), logits(3, 7, seed=33)
    w = ref_entropy(zt, 7, 2.0)
    close(loss(zs, zt),
          0.5 * (w * ref_ld_edges(zs, zt, 7, 5.0).mean(1)).mean(),
          rtol=1e-11)
