# Copyright (c) mmdet-eakd contributors. All rights reserved.
"""Tests of the sigmoid (independent Bernoulli) EA-KD path (issue 11, item 1).

The references below are written from the formulas in float64 torch with a
textbook stable ``log sigmoid`` (``-(max(-x, 0) + log1p(exp(-|x|)))``) and
explicit "0 * log 0 = 0" masks; they never call the code under test (nor
``F.logsigmoid``).
"""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdet_eakd.losses import (EA_STAT_NAMES, SIGMOID_ENTROPY_TEMPERATURE,
                               SIGMOID_ENTROPY_UPPER_BOUND, WEIGHT_MODES,
                               EAStats, SigmoidEAKDLoss,
                               binary_softened_entropy, entropy_weights,
                               sigmoid_ea_kd_loss_per_sample,
                               sigmoid_ea_statistics,
                               sigmoid_kd_loss_per_sample, softened_entropy)

INF = float('inf')
NAN = float('nan')
LOG2 = math.log(2)
EPS32 = torch.finfo(torch.float32).eps

# --------------------------------------------------------------------------
# Independent float64 references
# --------------------------------------------------------------------------


def ref_log_sigmoid(x):
    """log sigmoid(x) = -softplus(-x), textbook stable form, float64."""
    x = x.double()
    return -(torch.clamp(-x, min=0) + torch.log1p(torch.exp(-x.abs())))


def ref_bernoulli(z, temperature):
    """(p, log p, q, log q) of p = sigmoid(z / T), q = 1 - p."""
    x = z.detach().double() / temperature
    log_p, log_q = ref_log_sigmoid(x), ref_log_sigmoid(-x)
    return log_p.exp(), log_p, log_q.exp(), log_q


def ref_entropy(z, temperature):
    """H = (1/C) sum_c h(p_c), h(p) = -p log p - (1-p) log(1-p)."""
    p, log_p, q, log_q = ref_bernoulli(z, temperature)
    zero = torch.zeros_like(p)
    h = (torch.where(p > 0, -p * log_p, zero) +
         torch.where(q > 0, -q * log_q, zero))
    return h.mean(1)


def ref_kd(zs, zt, temperature):
    """T^2 sum_c KL(Bern(p_T,c) || Bern(p_S,c)), p = sigmoid(z / T)."""
    pt, lpt, qt, lqt = ref_bernoulli(zt, temperature)
    _, lps, _, lqs = ref_bernoulli(zs, temperature)
    zero = torch.zeros_like(pt)
    kl = (torch.where(pt > 0, pt * (lpt - lps), zero) +
          torch.where(qt > 0, qt * (lqt - lqs), zero))
    return kl.sum(1) * temperature**2


def ref_weights(h_t, h_s, mode, h_ub=LOG2):
    """Eq. 9-11 (Table 9 variants) with the sigmoid bound log 2."""
    if mode == 'none':
        return torch.ones_like(h_t)
    if mode == 'base':
        return h_t
    interact = h_t * h_s / h_ub
    if mode == 'interact':
        return interact
    return (h_t + interact) / 2


def logits(n, c, scale=3.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, generator=g, dtype=torch.float64) *
            scale).to(dtype)


def close(actual, expected, rtol=1e-12, atol=1e-12):
    torch.testing.assert_close(
        actual.double(), expected.double(), rtol=rtol, atol=atol)


def test_reference_equals_the_naive_formula_on_moderate_logits():
    # The stable reference is the plain formula where the latter is exact.
    z = logits(5, 7, scale=2, seed=100)
    p = torch.sigmoid(z / 2.0)
    naive = -(p * p.log() + (1 - p) * (1 - p).log()).mean(1)
    close(ref_entropy(z, 2.0), naive, rtol=1e-12)


# --------------------------------------------------------------------------
# Functions vs references
# --------------------------------------------------------------------------


@pytest.mark.parametrize('dtype,rtol,atol', [(torch.float64, 1e-12, 1e-13),
                                             (torch.float32, 1e-5, 1e-6)])
@pytest.mark.parametrize('temperature', [0.5, 1.0, 3.0])
def test_binary_entropy_matches_reference(dtype, rtol, atol, temperature):
    z = logits(9, 80, scale=4, seed=1, dtype=dtype)
    out = binary_softened_entropy(z, temperature)
    assert out.shape == (9, ) and out.dtype == dtype
    close(out, ref_entropy(z, temperature), rtol=rtol, atol=atol)


@pytest.mark.parametrize('dtype,rtol,atol', [(torch.float64, 1e-11, 1e-12),
                                             (torch.float32, 2e-5, 2e-6)])
@pytest.mark.parametrize('temperature', [1.0, 2.0, 4.0])
def test_kd_matches_reference(dtype, rtol, atol, temperature):
    zs = logits(10, 80, seed=4, dtype=dtype)
    zt = logits(10, 80, scale=5, seed=5, dtype=dtype)
    out = sigmoid_kd_loss_per_sample(zs, zt, temperature)
    assert out.shape == (10, ) and out.dtype == dtype
    close(out, ref_kd(zs, zt, temperature), rtol=rtol, atol=atol)


@pytest.mark.parametrize('mode', WEIGHT_MODES)
@pytest.mark.parametrize('entropy_temperature', [1.0, 3.0])
def test_statistics_and_loss_match_reference(mode, entropy_temperature):
    zs, zt = logits(11, 80, seed=2), logits(11, 80, scale=5, seed=3)
    h_t = ref_entropy(zt, entropy_temperature)
    h_s = ref_entropy(zs, entropy_temperature)
    w = ref_weights(h_t, h_s, mode)
    stats = sigmoid_ea_statistics(
        zs, zt, entropy_temperature=entropy_temperature, weight_mode=mode)
    assert isinstance(stats, EAStats)
    close(stats.entropy_t, h_t)
    close(stats.entropy_s, h_s)
    close(stats.ea_weight, w)
    loss = sigmoid_ea_kd_loss_per_sample(
        zs,
        zt,
        temperature=2.0,
        entropy_temperature=entropy_temperature,
        weight_mode=mode)
    close(loss, w * ref_kd(zs, zt, 2.0), rtol=1e-11)
    # an explicit bound replaces log 2
    stats = sigmoid_ea_statistics(
        zs,
        zt,
        entropy_temperature=entropy_temperature,
        weight_mode=mode,
        entropy_upper_bound=0.25)
    close(stats.ea_weight, ref_weights(h_t, h_s, mode, h_ub=0.25))


def test_defaults():
    assert SIGMOID_ENTROPY_UPPER_BOUND == LOG2
    zs, zt = logits(6, 8, seed=6), logits(6, 8, seed=7)
    stats = sigmoid_ea_statistics(zs, zt)
    close(stats.entropy_t, ref_entropy(zt, SIGMOID_ENTROPY_TEMPERATURE))
    close(stats.ea_weight,
          ref_weights(stats.entropy_t, stats.entropy_s, 'ea', LOG2))
    module = SigmoidEAKDLoss()
    assert module.entropy_temperature == SIGMOID_ENTROPY_TEMPERATURE
    assert module.temperature == 1.0 and module.weight_mode == 'ea'
    assert module.reduction == 'mean' and not module.check_finite
    assert module.entropy_upper_bound is None
    assert torch.equal(module.ea_stats(zs, zt).ea_weight, stats.ea_weight)


def test_module_matches_reference_with_reductions():
    zs, zt = logits(8, 20, seed=8), logits(8, 20, scale=4, seed=9)
    extra = torch.rand(8, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(0))
    for mode in WEIGHT_MODES:
        w = ref_weights(ref_entropy(zt, 2.0), ref_entropy(zs, 2.0), mode)
        per_sample = 0.5 * w * ref_kd(zs, zt, 3.0)
        module = SigmoidEAKDLoss(
            loss_weight=0.5,
            temperature=3.0,
            entropy_temperature=2.0,
            weight_mode=mode)
        close(module(zs, zt), per_sample.mean(), rtol=1e-11)
        close(module(zs, zt, reduction_override='sum'), per_sample.sum(),
              rtol=1e-11)
        close(module(zs, zt, reduction_override='none'), per_sample,
              rtol=1e-11)
        close(module(zs, zt, weight=extra), (per_sample * extra).mean(),
              rtol=1e-11)
        close(module(zs, zt, weight=extra, avg_factor=5.0),
              (per_sample * extra).sum() / (5.0 + EPS32), rtol=1e-11)
        # labels are accepted and unused, as for EAKDLoss
        labels = torch.zeros(8, dtype=torch.long)
        assert torch.equal(module(zs, zt, labels), module(zs, zt))
        module = SigmoidEAKDLoss(
            temperature=3.0,
            entropy_temperature=2.0,
            weight_mode=mode,
            reduction='sum')
        close(module(zs, zt), 2 * per_sample.sum(), rtol=1e-11)
        stats = module.ea_stats(zs, zt)
        close(stats.ea_weight, w)


def test_softmax_formulas_do_not_fit_sigmoid_heads():
    """A background location of a sigmoid head: every class unlikely.

    A softmax over its C logits calls it maximally uncertain (uniform over
    the classes, entropy log C); its own Bernoulli predictions are confident
    (p = sigmoid(-5) ~ 0.007 each), so its binary entropy is small. This is
    why dense heads have their own entropy.
    """
    c = 80
    background = torch.full((3, c), -5.0)
    foreground = background.clone()
    foreground[:, 7] = 5.0  # one confident class
    assert torch.allclose(softened_entropy(background, 1.0),
                          torch.full((3, ), math.log(c)))
    h_bg = binary_softened_entropy(background, 1.0)
    close(h_bg, ref_entropy(background, 1.0), rtol=1e-6)
    assert (h_bg < 0.06 * LOG2).all()
    # softmax: background is the most uncertain; sigmoid: it is as
    # confident as a location with one confident foreground class.
    assert (softened_entropy(background, 1.0) >
            softened_entropy(foreground, 1.0) + 1).all()
    close(binary_softened_entropy(foreground, 1.0), h_bg, rtol=1e-6)


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 10),
    c=st.integers(1, 90),
    temperature=st.floats(0.1, 10.0),
    log_scale=st.floats(-3.0, 4.0),
    mode=st.sampled_from(WEIGHT_MODES),
    seed=st.integers(0, 2**31 - 1))
def test_properties(n, c, temperature, log_scale, mode, seed):
    zs = logits(n, c, 10**log_scale, seed, torch.float32)
    zt = logits(n, c, 10**log_scale, seed + 1, torch.float32)
    h = binary_softened_entropy(zs, temperature)
    # 0 <= H <= log 2, up to float32 rounding of a mean of C terms
    assert h.shape == (n, )
    assert bool(((h >= 0) & (h <= LOG2 * (1 + 1e-6))).all())
    # h(z) = h(-z): exactly, the two Bernoulli terms swap
    assert torch.equal(binary_softened_entropy(-zs, temperature), h)
    # class-permutation invariance
    perm = torch.randperm(c, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(
        binary_softened_entropy(zs[:, perm], temperature), h)
    kd = sigmoid_kd_loss_per_sample(zs, zt, temperature)
    torch.testing.assert_close(
        sigmoid_kd_loss_per_sample(zs[:, perm], zt[:, perm], temperature),
        kd)
    # KL >= 0 up to the float32 rounding of the log-probs (a few eps times
    # (|z| / T + 1) per class, times T^2), and exactly 0 for equal logits
    max_abs = zs.abs().amax(1).maximum(zt.abs().amax(1))
    tol = 8 * EPS32 * c * temperature**2 * (max_abs / temperature + 1)
    assert bool(torch.isfinite(kd).all()) and bool((kd >= -tol).all())
    assert torch.equal(
        sigmoid_kd_loss_per_sample(zs, zs, temperature), torch.zeros(n))
    stats = sigmoid_ea_statistics(
        zs, zt, entropy_temperature=temperature, weight_mode=mode)
    if mode == 'none':
        assert torch.equal(stats.ea_weight, torch.ones(n))
    else:
        assert bool(((stats.ea_weight >= 0) &
                     (stats.ea_weight <= LOG2 * (1 + 1e-6))).all())
    torch.testing.assert_close(
        sigmoid_ea_kd_loss_per_sample(
            zs, zt, entropy_temperature=temperature, weight_mode=mode),
        stats.ea_weight * sigmoid_kd_loss_per_sample(zs, zt))


def test_entropy_maximum_is_log2_at_zero_logits():
    zero = torch.zeros(3, 5, dtype=torch.float64)
    close(binary_softened_entropy(zero, 1.0),
          torch.full((3, ), LOG2, dtype=torch.float64))
    # any non-zero logit lowers it; a larger T' raises it towards log 2
    z = zero.clone()
    z[:, 2] = 0.1
    assert (binary_softened_entropy(z, 1.0) < LOG2).all()
    z = logits(4, 6, seed=10)
    assert (binary_softened_entropy(z, 3.0) >
            binary_softened_entropy(z, 1.0)).all()


def test_kd_is_zero_only_for_equal_logits():
    zt = logits(6, 5, seed=11)
    assert torch.equal(sigmoid_kd_loss_per_sample(zt, zt), torch.zeros(6))
    zs = zt.clone()
    zs[torch.arange(6), torch.arange(6) % 5] += 1e-3
    assert (sigmoid_kd_loss_per_sample(zs, zt) > 0).all()


def test_single_class():
    # C = 1 is one Bernoulli: its entropy is h(p), not 0 as for softmax
    zs = torch.tensor([[0.0], [2.0], [-3.0]], dtype=torch.float64)
    zt = torch.tensor([[1.0], [-1.0], [-3.0]], dtype=torch.float64)
    close(binary_softened_entropy(zs, 1.0), ref_entropy(zs, 1.0))
    close(binary_softened_entropy(zs, 1.0)[0],
          torch.tensor(LOG2, dtype=torch.float64))
    module = SigmoidEAKDLoss(reduction='none')
    w = ref_weights(ref_entropy(zt, 1.0), ref_entropy(zs, 1.0), 'ea')
    close(module(zs, zt), w * ref_kd(zs, zt, 1.0))
    assert module(zs, zt)[2] == 0


def test_kd_at_large_temperature_matches_the_small_logit_expansion():
    # For |z| / T -> 0: KL(Bern(p_T) || Bern(p_S)) ~ (dp)^2 / (2 p (1 - p))
    # with p = 1/2, dp = (z_T - z_S) / (4 T), so T^2 KL -> (z_T - z_S)^2 / 8.
    zs, zt = logits(5, 6, seed=12), logits(5, 6, seed=13)
    expected = ((zt - zs)**2).sum(1) / 8
    close(sigmoid_kd_loss_per_sample(zs, zt, 1e4), expected, rtol=1e-5)
    assert not torch.allclose(
        sigmoid_kd_loss_per_sample(zs, zt, 1.0), expected, rtol=0.1)


# --------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------


@pytest.mark.parametrize('mode', WEIGHT_MODES)
def test_teacher_gets_no_gradient_and_weights_none(mode):
    zs = logits(5, 10, seed=14).requires_grad_()
    zt = logits(5, 10, seed=15).requires_grad_()
    h_t = binary_softened_entropy(zt, 1.0)
    assert h_t.requires_grad  # the entropy itself is differentiable ...
    w = entropy_weights(
        h_t, binary_softened_entropy(zs, 1.0), mode, entropy_upper_bound=LOG2)
    assert not w.requires_grad  # ... the weight is not
    module = SigmoidEAKDLoss(weight_mode=mode)
    stats = module.ea_stats(zs, zt)
    assert stats._fields == EA_STAT_NAMES
    for value in stats:
        assert value.shape == (5, ) and not value.requires_grad
    module(zs, zt).backward()
    assert zt.grad is None and zs.grad is not None


@pytest.mark.parametrize('mode', WEIGHT_MODES)
def test_gradient_equals_constant_weighted_kd(mode):
    zs, zt = logits(20, 12, seed=16), logits(20, 12, scale=5, seed=17)
    w_const = ref_weights(ref_entropy(zt, 2.0), ref_entropy(zs, 2.0), mode)
    s1 = zs.clone().requires_grad_()
    SigmoidEAKDLoss(
        weight_mode=mode, temperature=3.0, entropy_temperature=2.0)(
            s1, zt).backward()
    # d/dz_S of T^2 sum_c KL = T (sigmoid(z_S / T) - sigmoid(z_T / T))
    analytic = (w_const[:, None] * 3.0 *
                (torch.sigmoid(zs / 3.0) - torch.sigmoid(zt / 3.0)) / 20)
    close(s1.grad, analytic, rtol=1e-10, atol=1e-14)


def test_gradcheck_float64():
    zs = logits(6, 7, seed=18).requires_grad_()
    zt = logits(6, 7, scale=4, seed=19)
    w_const = binary_softened_entropy(zt, 1.0).detach()
    assert torch.autograd.gradcheck(
        lambda s: (w_const * sigmoid_kd_loss_per_sample(s, zt, 2.0)).sum(),
        zs)
    # 'base' weights depend on the teacher only: the module is then an
    # ordinary differentiable function of the student logits.
    assert torch.autograd.gradcheck(
        SigmoidEAKDLoss(weight_mode='base', temperature=2.0), (zs, zt))
    # with 'ea' the weight depends on the student but is detached:
    # finite differences see it change, the analytic gradient must not.
    assert not torch.autograd.gradcheck(
        SigmoidEAKDLoss(weight_mode='ea'), (zs, zt), raise_exception=False)


# --------------------------------------------------------------------------
# Precision and extreme input
# --------------------------------------------------------------------------


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    zs = logits(16, 20, seed=20, dtype=dtype).requires_grad_()
    zt = logits(16, 20, scale=4, seed=21, dtype=dtype)
    up_s, up_t = zs.detach().float(), zt.float()
    assert torch.equal(
        binary_softened_entropy(zs, 1.0), binary_softened_entropy(up_s, 1.0))
    assert torch.equal(
        sigmoid_kd_loss_per_sample(zs, zt), sigmoid_kd_loss_per_sample(
            up_s, up_t))
    for mode in WEIGHT_MODES:
        module = SigmoidEAKDLoss(weight_mode=mode)
        loss = module(zs, zt)
        assert loss.dtype == torch.float32
        assert torch.equal(loss, module(up_s, up_t))
        stats, up = module.ea_stats(zs, zt), module.ea_stats(up_s, up_t)
        assert all(torch.equal(a, b) for a, b in zip(stats, up))
        assert stats.ea_weight.dtype == torch.float32
        loss.backward()
        assert zs.grad.dtype == dtype and torch.isfinite(zs.grad).all()
        zs.grad = None
    # a mixed pair is compared in float32; autocast does not lower it
    assert SigmoidEAKDLoss()(up_s, zt).dtype == torch.float32
    with torch.autocast('cpu', dtype=torch.bfloat16):
        auto = SigmoidEAKDLoss()(up_s, up_t)
    assert torch.equal(auto, SigmoidEAKDLoss()(up_s, up_t))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_extreme_logits_are_finite_and_exact(dtype):
    big = 1e4
    # rows: large magnitudes; infinities in both; infinite teacher only;
    # all -inf (no class present) in both; mixed signs and zeros
    zt = torch.tensor(
        [[big, -big, big, 3.0], [INF, -INF, INF, -2.0],
         [INF, -INF, 0.5, -INF], [-INF, -INF, -INF, -INF],
         [-big, big, 0.0, -INF]],
        dtype=dtype)
    zs = torch.tensor(
        [[-big, big, 2.0, -big], [INF, -INF, 1.0, -2.0],
         [3.0, -4.0, -big, 2.0], [-INF, -INF, -INF, -INF],
         [-big, 2.0, big, -5.0]],
        dtype=dtype,
        requires_grad=True)
    for temperature in (1.0, 4.0):
        h_s = binary_softened_entropy(zs, temperature)
        kd = sigmoid_kd_loss_per_sample(zs, zt, temperature)
        for value, expected in ((h_s, ref_entropy(zs, temperature)),
                                (binary_softened_entropy(zt, temperature),
                                 ref_entropy(zt, temperature)),
                                (kd, ref_kd(zs, zt, temperature))):
            assert torch.isfinite(value).all()
            close(value, expected, rtol=1e-6, atol=1e-6)
        loss = SigmoidEAKDLoss(temperature=temperature)(zs, zt)
        (loss + kd.sum() + h_s.sum()).backward()
        assert torch.isfinite(zs.grad).all()
        # an infinite student logit that agrees with the teacher: zero
        # gradient; KD gradient T (p_S - p_T) elsewhere
        assert (zs.grad[1, [0, 1]] == 0).all() and (zs.grad[3] == 0).all()
        zs.grad = None
    # the all -inf row: entropy and KD 0 (every class surely absent)
    assert h_s[3] == 0 and kd[3] == 0


def test_disagreeing_infinite_student_is_documented_meaningless():
    # Student +inf or -inf where the teacher is not the same infinity:
    # KL(Bern(p_T) || Bern(p_S)) is infinite; the value is huge or inf and
    # the class gets no gradient (documented). Other rows are untouched.
    zt = torch.tensor([[0.0, 1.0], [0.0, 1.0], [INF, 2.0]])
    zs = torch.tensor([[INF, 1.0], [-INF, 1.0], [-INF, 2.0]],
                      requires_grad=True)
    kd = sigmoid_kd_loss_per_sample(zs, zt)
    assert (kd > 1e30).all()
    kd[:2].sum().backward()
    assert (zs.grad[:, 0] == 0).all()
    # the agreeing class keeps its (zero) gradient p_S - p_T
    torch.testing.assert_close(zs.grad[:, 1], torch.zeros(3), atol=1e-7,
                               rtol=0)


def test_nan_poisons_its_own_row_only():
    zs = logits(6, 9, seed=22, dtype=torch.float32)
    zt = logits(6, 9, scale=4, seed=23, dtype=torch.float32)
    bad = zs.clone()
    bad[1, 2] = NAN
    bad_t = zt.clone()
    bad_t[4, 0] = NAN
    good = torch.tensor([True, False, True, True, False, True])
    module = SigmoidEAKDLoss(reduction='none')

    def run(student, teacher):
        student = student.clone().requires_grad_()
        loss = module(student, teacher)
        loss.sum().backward()
        return loss, student.grad, module.ea_stats(student, teacher)

    clean_loss, clean_grad, clean_stats = run(zs, zt)
    loss, grad, stats = run(bad, bad_t)
    assert torch.isfinite(clean_loss).all()
    assert torch.isnan(loss[~good]).all()
    assert torch.equal(loss[good], clean_loss[good])
    assert torch.isnan(grad[1]).all()
    assert torch.equal(grad[good], clean_grad[good])
    for name in EA_STAT_NAMES:
        assert torch.equal(
            getattr(stats, name)[good],
            getattr(clean_stats, name)[good])
    assert torch.isnan(stats.entropy_s[1]) and torch.isnan(stats.entropy_t[4])
    assert torch.isnan(stats.ea_weight[~good]).all()


@pytest.mark.parametrize('mode', WEIGHT_MODES)
def test_training_path_reads_no_values_on_the_host(mode):
    """Forward, ``ea_stats`` and backward run on meta tensors (which have no
    values): any host read would raise, and on a GPU would be a sync."""
    zs = torch.empty(8, 80, device='meta', requires_grad=True)
    zt = torch.empty(8, 80, device='meta')
    module = SigmoidEAKDLoss(weight_mode=mode)
    loss = module(zs, zt)
    means = module.ea_stats(zs, zt).means()
    loss.backward()
    assert loss.shape == () and zs.grad.shape == (8, 80)
    assert set(means) == set(EA_STAT_NAMES)
    with pytest.raises(RuntimeError, match='meta'):
        SigmoidEAKDLoss(check_finite=True)(zs, zt)


@pytest.mark.parametrize('mode', WEIGHT_MODES)
@pytest.mark.parametrize('avg_factor', [None, 3.0])
def test_empty_batch_gives_connected_zero(mode, avg_factor):
    zs = torch.zeros(0, 80, requires_grad=True)
    zt = torch.zeros(0, 80)
    module = SigmoidEAKDLoss(weight_mode=mode)
    loss = module(zs, zt, avg_factor=avg_factor)
    assert loss.shape == () and loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert zs.grad.shape == (0, 80)
    stats = module.ea_stats(zs, zt)
    assert stats.means() == dict.fromkeys(EA_STAT_NAMES, 0.0)


# --------------------------------------------------------------------------
# Checks and registry
# --------------------------------------------------------------------------

S = torch.randn(4, 80)
T = torch.randn(4, 80)


def _put(logits, row, col, value):
    return logits.clone().index_put_((torch.tensor([row]), torch.tensor(
        [col])), torch.tensor(value))


@pytest.mark.parametrize('student,teacher,match', [
    (_put(S, 2, 5, NAN), T, r'student_logits contains NaN \(row 2, class 5\)'),
    (S, _put(T, 1, 7, NAN), r'teacher_logits contains NaN \(row 1, class 7\)'),
    (_put(S, 3, 4, INF), T, r'student_logits is \+inf where teacher_logits '
     r'is not \(row 3, class 4\)'),
    (_put(S, 0, 9, -INF), _put(T, 0, 9, INF),
     r'student_logits is -inf where teacher_logits is not \(row 0, class '
     r'9\); KL\(Bern\(p_T\) \|\| Bern\(p_S\)\) would be infinite'),
])
def test_check_finite_rejects_bad_values(student, teacher, match):
    with pytest.raises(ValueError, match=match):
        SigmoidEAKDLoss(check_finite=True)(student, teacher)
    with pytest.raises(ValueError, match=match):
        SigmoidEAKDLoss(check_finite=True).ea_stats(student, teacher)
    # by default the values are not read: no exception
    SigmoidEAKDLoss()(student, teacher)
    SigmoidEAKDLoss().ea_stats(student, teacher)


def test_check_finite_accepts_valid_infinities():
    # infinite teacher logits, agreeing infinities and all -inf rows are
    # valid sigmoid predictions (probability exactly 1 or 0)
    teacher = _put(_put(T, 0, 1, INF), 1, 2, -INF)
    teacher[3] = -INF
    student = _put(_put(S, 1, 2, -INF), 2, 3, INF)
    student[3] = -INF
    teacher = _put(teacher, 2, 3, INF)
    module = SigmoidEAKDLoss(check_finite=True)
    assert torch.isfinite(module(student, teacher))
    assert all(torch.isfinite(v).all() for v in module.ea_stats(
        student, teacher))


@pytest.mark.parametrize(
    'call,error,match',
    [
        (lambda: SigmoidEAKDLoss()(S, torch.randn(4, 79)), ValueError,
         r'teacher_logits has shape \(4, 79\) but student_logits has shape '
         r'\(4, 80\); both must be \(N, num_classes\)$'),
        (lambda: SigmoidEAKDLoss()(S[0], T[0]), ValueError,
         r'student_logits must have shape \(N, num_classes\) with at least '),
        (lambda: SigmoidEAKDLoss().ea_stats(S, T[:3]), ValueError,
         'teacher_logits has shape'),
        (lambda: SigmoidEAKDLoss()(S.long(), T), TypeError,
         'student_logits'),
        (lambda: SigmoidEAKDLoss()(S, T, weight=torch.ones(5)), ValueError,
         r'weight must be None or a tensor of shape \(4,\)'),
        (lambda: SigmoidEAKDLoss()(S, T, reduction_override='avg'),
         ValueError, 'reduction_override'),
    ])
def test_bad_input_raises_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize('kwargs,match', [
    (dict(temperature=0.0), 'temperature must be a finite number > 0'),
    (dict(temperature=float('inf')), 'temperature must be'),
    (dict(entropy_temperature=-1.0), 'entropy_temperature must be'),
    (dict(weight_mode='EA'), 'weight_mode must be one of'),
    (dict(entropy_upper_bound=0.0),
     r'entropy_upper_bound must be None \(log 2\) or a finite number > 0'),
    (dict(loss_weight=-1.0), 'loss_weight must be'),
    (dict(reduction='batchmean'), 'reduction must be'),
    (dict(check_finite=1), 'check_finite must be a bool'),
])
def test_bad_constructor_args_raise(kwargs, match):
    with pytest.raises(ValueError, match=f'^{match}'):
        SigmoidEAKDLoss(**kwargs)


def test_no_logit_standardization_argument():
    # sigmoid probabilities are not shift/scale invariant: no such option
    with pytest.raises(TypeError, match='logit_standardization'):
        SigmoidEAKDLoss(logit_standardization=True)


def test_registered_in_mmdet_models():
    from mmdet.registry import MODELS
    loss = MODELS.build(
        dict(
            type='SigmoidEAKDLoss',
            temperature=2.0,
            entropy_temperature=1.5,
            weight_mode='base',
            loss_weight=0.5))
    assert isinstance(loss, SigmoidEAKDLoss)
    assert (loss.temperature, loss.entropy_temperature, loss.weight_mode,
            loss.loss_weight) == (2.0, 1.5, 'base', 0.5)
    zs, zt = logits(3, 4, seed=24), logits(3, 4, seed=25)
    w = ref_entropy(zt, 1.5)
    close(loss(zs, zt), 0.5 * (w * ref_kd(zs, zt, 2.0)).mean(), rtol=1e-11)
