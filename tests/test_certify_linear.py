import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fpsim import TwoLayerNet, kernels
from fpsim.attacks import pgd, random_in_ball
from fpsim.certify import exact_robust_accuracy, robust_accuracy
from fpsim.certify.linear import linear_bound

NORMS = [2, np.inf]
ACTIVATIONS = [dict(activation="relu"), dict(activation="smooth", q=2.0, rho=0.3),
               dict(activation="smooth", q=3.0, rho=0.2)]


def _tiny(seed, d, m, theta, n=6, **act):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, d)) * rng.uniform(0.2, 2.0, size=(m, 1))
    if m > 1:  # a shared direction, so that units move together
        W[: m // 2] += rng.standard_normal(d)
    net = TwoLayerNet(W, threshold=theta, **act)
    x = rng.standard_normal((n, d))
    y = np.where(rng.random(n) < 0.5, -1, 1)
    return net, x, y


tiny = dict(seed=st.integers(0, 2**16), d=st.integers(1, 5), m=st.integers(1, 6),
            theta=st.floats(0.0, 0.8), tau=st.floats(0.0, 0.8))


@settings(max_examples=40, deadline=None)
@given(**tiny)
def test_linear_bound_never_exceeds_the_exact_linf_minimum(seed, d, m, theta, tau):
    net, x, y = _tiny(seed, d, m, theta)
    exact = exact_robust_accuracy(net, x, y, tau)
    for iterations in (0, 12):
        assert np.all(linear_bound(net, x, y, "inf", tau, iterations=iterations) <= exact.min_margin + 1e-6)


@settings(max_examples=40, deadline=None)
@given(norm=st.sampled_from(NORMS), act=st.sampled_from(ACTIVATIONS), **tiny)
def test_no_perturbation_goes_below_the_linear_bound(seed, d, m, theta, tau, norm, act):
    # tau ranges over radii below and well above the thresholds theta ||w_i||.
    net, x, y = _tiny(seed, d, m, theta, **act)
    bound = linear_bound(net, x, y, norm, tau)
    rng = np.random.default_rng(seed)
    inf_norm = norm == np.inf
    trials = [random_in_ball(rng, x.shape, inf_norm, tau, x.dtype) for _ in range(20)]
    for delta in trials[:10]:  # on the boundary, where the worst case lives
        scale = np.abs(delta).max(axis=1, keepdims=True) if inf_norm else np.linalg.norm(
            delta, axis=1, keepdims=True)
        delta *= tau / np.maximum(scale, 1e-300)
    trials.append(pgd(net, x, y, norm, tau, steps=20, restarts=2, rng=seed, loss="margin"))
    for delta in trials:
        assert np.all(y * net.forward(x + delta) >= bound - 1e-9)


@settings(max_examples=30, deadline=None)
@given(norm=st.sampled_from(NORMS), act=st.sampled_from(ACTIVATIONS), **tiny)
def test_linear_bound_is_never_below_the_per_unit_bound(seed, d, m, theta, tau, norm, act):
    # Slope 0 for every unit reproduces the per-unit bound exactly; the optimised slopes only improve on it.
    net, x, y = _tiny(seed, d, m, theta, **act)
    u, bias, yf = x @ net.W.T, net.bias(), y.astype(float)
    radius = tau * np.linalg.norm(net.W, ord=1 if norm == np.inf else 2, axis=1)
    drop, f = np.empty_like(u), np.empty(len(y))
    kernels.unit_drops(u, yf, radius, bias, net.q, net.rho_effective, drop)
    kernels.soft_threshold_units(u.copy(), bias, net.q, net.rho_effective, f, np.empty_like(u))
    per_unit = yf * f - drop.sum(axis=1)
    assert np.all(linear_bound(net, x, y, norm, tau, iterations=0) >= per_unit - 1e-12)


@given(act=st.sampled_from(ACTIVATIONS), bias=st.floats(0.0, 1.0),
       centre=st.floats(-2.0, 2.0), radius=st.floats(0.0, 2.0), slope=st.floats(0.0, 1.0))
def test_unit_line_lies_below_the_unit_and_touches_it(act, bias, centre, radius, slope):
    q, rho = act.get("q", 2.0), act.get("rho", 0.0) if act["activation"] == "smooth" else 0.0
    offset, argmin = np.empty((1, 1)), np.empty((1, 1))
    kernels.unit_line_offsets(np.array([[centre]]), np.array([radius]), np.array([bias]), np.array([[slope]]),
                              q, rho, offset, argmin)
    t = centre + np.linspace(-radius, radius, 401)
    values = np.empty((401, 1))
    kernels.unit_line_offsets(t[:, None], np.zeros(1), np.array([bias]), np.zeros((401, 1)), q, rho, values,
                              np.empty((401, 1)))
    gap = values[:, 0] - (offset[0, 0] + slope * (t - centre))
    assert gap.min() >= -1e-12                    # the line is below the unit on the interval
    assert abs(argmin[0, 0]) <= radius + 1e-12    # ... and touches it at the reported point
    touch = np.empty((1, 1))
    kernels.unit_line_offsets(np.array([[centre + argmin[0, 0]]]), np.zeros(1), np.array([bias]),
                              np.zeros((1, 1)), q, rho, touch, np.empty((1, 1)))
    assert touch[0, 0] - (offset[0, 0] + slope * argmin[0, 0]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_linear_bound_is_exact_on_a_linear_net_and_certifies_in_robust_accuracy(norm):
    # Threshold 0: f(x) = <sum_i w_i, x>, every unit linear on its interval: the bound is the exact minimum.
    rng = np.random.default_rng(0)
    net = TwoLayerNet(rng.standard_normal((4, 6)), threshold=0.0)
    x = rng.standard_normal((30, 6))
    y = np.where(rng.random(30) < 0.5, -1, 1)
    v = net.W.sum(axis=0)
    worst = y * (x @ v) - 0.2 * np.linalg.norm(v, ord=1 if norm == np.inf else 2)
    np.testing.assert_allclose(linear_bound(net, x, y, norm, 0.2), worst, atol=1e-10)
    result = robust_accuracy(net, x, y, norm, 0.2, rng=0)
    assert result.lower == pytest.approx(np.mean(worst > 0))


def test_optimised_slopes_beat_the_starting_slopes_on_a_wide_net():
    # Many units straddling their thresholds: the fixed CROWN slopes are loose, the optimised ones are not.
    rng = np.random.default_rng(3)
    d, m = 30, 60
    net = TwoLayerNet(rng.standard_normal((m, d)) / np.sqrt(d), threshold=0.3)
    x = rng.standard_normal((40, d))
    y = np.where(net.forward(x) >= 0, 1, -1)
    fixed = linear_bound(net, x, y, np.inf, 0.02, iterations=0)
    tuned = linear_bound(net, x, y, np.inf, 0.02, iterations=12)
    assert np.all(tuned >= fixed)
    assert np.mean(tuned - fixed) > 0
    with pytest.raises(ValueError, match="iterations"):
        linear_bound(net, x, y, 2, 0.1, iterations=-1)


@pytest.mark.parametrize("norm", NORMS)
def test_early_stopping_certifies_exactly_what_full_optimisation_does(norm):
    # A row stops once its bound passes the target or the relaxed primal falls to it (weak duality):
    # neither can change which rows end above the target.
    from fpsim.certify.linear import _linear_bound
    rng = np.random.default_rng(7)
    d, m = 20, 40
    net = TwoLayerNet(rng.standard_normal((m, d)) / np.sqrt(d), threshold=0.3)
    x = rng.standard_normal((200, d))
    y = np.where(net.forward(x) >= 0, 1, -1)
    W, bias, u = net.W, net.bias(), x @ net.W.T
    tau = 0.3 if norm == 2 else 0.3 / np.sqrt(d)
    radius = tau * np.linalg.norm(W, ord=1 if norm == np.inf else 2, axis=1)
    args = (W, bias, u, y.astype(float), radius, tau, norm == np.inf, net.q, 0.0, 12)
    full = _linear_bound(*args)
    early = _linear_bound(*args, target=np.zeros(len(y)))
    assert 0 < np.sum(full > 0) < len(y)
    clear = np.abs(full) > 1e-6  # away from float-rounding ties at the target
    np.testing.assert_array_equal((early > 0)[clear], (full > 0)[clear])


def test_robust_accuracy_names_the_attack_that_broke_each_example():
    from fpsim.attacks import ATTACK_NAMES
    net, x, y = _tiny(4, 5, 6, 0.2, n=60)
    result = robust_accuracy(net, x, y, 2, 0.5, pgd_steps=10, rng=0)
    assert set(result.broken_by) <= set(ATTACK_NAMES) | {""}
    np.testing.assert_array_equal(result.broken_by == "", result.survived)
    assert 0 < result.upper < 1
