import numpy as np
import pytest
from hypothesis import given, strategies as st

from fpsim import SparseCodingModel, TwoLayerNet
from fpsim.attacks import pgd, random_in_ball
from fpsim._validation import stream
from fpsim.certify import (METHODS, certified_margins, critical_radius, exact_robust_accuracy, refined_curve,
                           robust_accuracy, robust_curve)
from fpsim.strategies import nets, problems, seeds

NORMS = [2, np.inf]


def _tiny(seed, d, m, theta, n=6, **act):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, d)) * rng.uniform(0.2, 2.0, size=(m, 1))
    if m > 1:  # a shared direction, so that units move together (dense-mixture-like)
        W[: m // 2] += rng.standard_normal(d)
    net = TwoLayerNet(W, threshold=theta, **act)
    x = rng.standard_normal((n, d))
    y = np.where(rng.random(n) < 0.5, -1, 1)
    return net, x, y


def tiny(norm=None, activation=None):
    """Tiny float64 nets (d <= 4, m <= 6, half the rows often sharing a direction), six inputs."""
    net = nets(max_m=6, max_d=4, threshold_kind="relative", max_threshold=0.8, dtype=np.float64,
               activation=activation)
    return problems(net=net, n=6, norm=norm, tau=st.floats(0.0, 0.6))


@given(problem=tiny(norm=np.inf, activation="relu"), seed=seeds())
def test_certificate_exact_and_attack_are_ordered_on_tiny_linf_nets(problem, seed):
    net, x, y, _, tau = problem
    result = robust_accuracy(net, x, y, "inf", tau, pgd_steps=10, restarts=2, rng=seed)
    exact = exact_robust_accuracy(net, x, y, tau)
    # HiGHS works to an absolute feasibility tolerance of 1e-6 on the problem scaled to max|w| = 1;
    # scaled back, the objective is exact up to 1e-6 times the weight scale and the l1 reach of the rows.
    solver = 1e-6 * max(1.0, np.abs(net.W).max()) * (1.0 + np.abs(net.W).sum())
    # The MILP's minimiser is feasible and attains the reported minimum.
    assert np.all(np.abs(exact.delta) <= tau + 1e-9)
    np.testing.assert_allclose(y * net.forward(x + exact.delta), exact.min_margin, atol=solver)
    # certified margin <= exact minimum <= attacked margin, for every bound separately.
    for name, bound in certified_margins(net, x, y, "inf", tau).items():
        assert np.all(bound <= exact.min_margin + solver), name
    assert np.all(exact.min_margin <= result.attack_margin + solver)
    # certified => exactly robust => survived every attack; so lower <= exact <= upper.
    assert np.all(~result.certified | exact.robust)
    tie = exact.robust & ~result.survived & (exact.min_margin < 1e-6)  # a margin within rounding of 0
    assert not np.any(exact.robust & ~result.survived & ~tie)
    assert result.lower <= exact.accuracy <= result.upper + tie.mean()


@given(problem=tiny(), seed=seeds())
def test_no_perturbation_in_the_ball_goes_below_the_certified_margin(problem, seed):
    net, x, y, norm, tau = problem
    result = robust_accuracy(net, x, y, norm, tau, pgd_steps=5, restarts=1, rng=seed)
    rng = np.random.default_rng(seed)
    inf_norm = norm == np.inf
    trials = [random_in_ball(rng, x.shape, inf_norm, tau, x.dtype) for _ in range(50)]
    # Points on the boundary (and vertices for l_inf), where the worst case lives.
    for delta in trials[:25]:
        scale = np.abs(delta).max(axis=1, keepdims=True) if inf_norm else np.linalg.norm(
            delta, axis=1, keepdims=True)
        delta *= tau / np.maximum(scale, 1e-300)
    trials += [tau * np.sign(rng.standard_normal(x.shape)) for _ in range(10)] if inf_norm else []
    trials.append(pgd(net, x, y, norm, tau, steps=20, restarts=3, rng=seed + 1))
    for delta in trials:
        margin = y * net.forward(x + delta)
        assert np.all(margin >= result.certified_margin - 1e-9)
        assert np.all(margin[result.certified] > 0)
    assert np.all(result.attack_margin >= result.certified_margin - 1e-9)
    assert np.all(~result.certified | result.survived)


@pytest.mark.parametrize("norm", NORMS)
def test_single_linear_unit_is_certified_exactly(norm):
    # One unit with threshold 0 is f(x) = <w, x>: the worst margin is y f(x) - tau ||w||_q.
    rng = np.random.default_rng(0)
    w = rng.standard_normal(5)
    net = TwoLayerNet(w[None, :], threshold=0.0)
    x = rng.standard_normal((30, 5))
    y = np.where(rng.random(30) < 0.5, -1, 1)
    tau = 0.3
    worst = y * (x @ w) - tau * np.linalg.norm(w, ord=1 if norm == np.inf else 2)
    result = robust_accuracy(net, x, y, norm, tau, rng=0)
    np.testing.assert_allclose(result.certified_margin, worst, atol=1e-12)
    np.testing.assert_allclose(result.attack_margin, worst, atol=1e-9)
    assert result.lower == result.upper == np.mean(worst > 0)


def test_joint_bounds_beat_the_per_unit_bound_when_units_are_nearly_orthogonal():
    # Many active, nearly orthogonal units: the per-unit bound charges every unit its
    # full tau ||w_i||, the Gram / spectral bounds charge only about sqrt(m) of them.
    d, m = 64, 32
    rng = np.random.default_rng(1)
    W = np.linalg.qr(rng.standard_normal((d, d)))[0][:m]
    net = TwoLayerNet(W, threshold=0.0)
    x = rng.standard_normal((20, d))
    y = np.where(net.forward(x) >= 0, 1, -1)
    bounds = certified_margins(net, x, y, 2, 0.1)
    assert np.all(bounds["gram"] >= bounds["per_unit"])
    assert np.all(bounds["spectral"] > bounds["per_unit"] + 0.1 * 0.1 * m / 2)
    result = robust_accuracy(net, x, y, 2, 0.1, rng=0)
    assert set(result.method) <= set(METHODS) | {""}
    assert np.all((result.method != "") == result.certified)


@pytest.mark.parametrize("norm", NORMS)
def test_interval_on_a_sparse_coding_sample(norm):
    model = SparseCodingModel(32, 3, margin=0.3, seed=2)
    x, y, _ = model.sample(60, np.random.default_rng(0))
    net = TwoLayerNet(np.vstack([model.dictionary.T[:16], model.dense_direction[None, :]]), threshold=0.1)
    tau = 0.2 if norm == 2 else 0.03
    first = robust_accuracy(net, x, y, norm, tau, model=model, rng=np.random.default_rng(7))
    again = robust_accuracy(net, x, y, norm, tau, model=model, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(first.attack_margin, again.attack_margin)
    assert 0.0 <= first.lower <= first.upper <= net.accuracy(x, y)
    assert first.gap == pytest.approx(first.upper - first.lower)
    assert first.lower == np.mean(first.certified) and first.upper == np.mean(first.survived)


@pytest.mark.parametrize("tau", [0.2, 0.25])
def test_complete_mode_only_narrows_the_interval_and_its_certificates_survive_attacks(tau):
    # a small clean-trained net past its threshold (tau > theta): the bounds leave examples open
    from fpsim import train_clean
    from fpsim.config import build, preset
    model, net0 = build(preset("quick", d=60, m=120, k=6, threshold=0.15))
    net, _ = train_clean(net0, model, 200, 128, 1.0, seed=0, progress=False)
    x, y, _ = model.sample(60, stream(0, "eval"))
    plain = robust_accuracy(net, x, y, 2, tau, model=model, rng=np.random.default_rng(7))
    full = robust_accuracy(net, x, y, 2, tau, model=model, rng=np.random.default_rng(7), node_budget=16)
    assert plain.undecided is None and full.undecided is not None
    assert plain.lower < full.lower <= full.upper <= plain.upper
    assert np.all(full.certified >= plain.certified) and np.all(full.certified <= full.survived)
    opened = ~plain.certified & plain.survived
    assert full.undecided == int((opened & ~full.certified & full.survived).sum())
    assert np.all((full.method == "branch_and_bound") == (full.certified & ~plain.certified))
    assert np.all((full.broken_by == "branch_and_bound") == (plain.survived & ~full.survived))
    proved = full.method == "branch_and_bound"   # a long attack from many starts never breaks these
    delta = pgd(net, x[proved], y[proved], 2, tau, steps=100, restarts=8, rng=np.random.default_rng(1))
    assert np.all(y[proved] * net.forward(x[proved] + delta) > 0)
    with pytest.raises(ValueError, match="node_budget"):
        robust_accuracy(net, x, y, 2, tau, node_budget=0)


def test_curve_lower_end_is_non_increasing_and_critical_radius_interpolates():
    net, x, y = _tiny(3, 4, 6, 0.3, n=40)
    curve = robust_curve(net, x, y, 2, np.linspace(0.0, 1.0, 6), pgd_steps=5, restarts=1, rng=0)
    assert np.all(np.diff(curve["lower"]) <= 0)
    assert np.all(curve["lower"] <= curve["upper"])
    radii = critical_radius({"taus": [0.0, 1.0, 2.0], "lower": [1.0, 0.6, 0.2], "upper": [1.0, 0.9, 0.8]})
    assert radii["lower"] == pytest.approx(1.25)
    assert np.isnan(radii["upper"])
    assert np.isnan(critical_radius({"taus": [1.0, 2.0], "lower": [0.4, 0.1], "upper": [0.4, 0.1]})["lower"])


def test_refined_curve_adds_radii_inside_the_crossing_step_only():
    net, x, y = _tiny(3, 4, 6, 0.3, n=40)
    taus = np.linspace(0.0, 2.0, 5)
    coarse = robust_curve(net, x, y, 2, taus, pgd_steps=3, restarts=1, rng=stream(0, "attack"))
    curve = refined_curve(net, x, y, 2, taus, 3, pgd_steps=3, restarts=1, seed=0)
    assert np.all(np.diff(curve["taus"]) > 0) and set(taus) <= set(curve["taus"])
    at_coarse = np.isin(curve["taus"], taus)
    np.testing.assert_array_equal(curve["lower"][at_coarse], coarse["lower"])  # certificates: no randomness
    crossings = [r for r in critical_radius(coarse).values() if not np.isnan(r)]
    steps = {int(np.searchsorted(taus, r)) for r in crossings}   # the coarse step holding each crossing
    added = curve["taus"][~at_coarse]
    assert len(added) == 3 * len(steps)
    for j in steps:
        inside = added[(added > taus[j - 1]) & (added < taus[j])]
        np.testing.assert_allclose(inside, np.linspace(taus[j - 1], taus[j], 5)[1:-1])


def test_exact_solver_finds_the_minimum_beside_a_unit_1e5_times_smaller():
    # threshold 0 makes both units linear: min y f = (x2 - tau)(1 + 1e-5); HiGHS's presolve returned 0 here
    net = TwoLayerNet(np.array([[0.0, 1.0], [0.0, 1e-5]]), threshold=0.0)
    exact = exact_robust_accuracy(net, np.array([[0.0, 0.5]]), np.array([1]), 0.5625)
    np.testing.assert_allclose(exact.min_margin, [(0.5 - 0.5625) * (1 + 1e-5)], rtol=1e-6)


def test_bad_arguments_are_refused():
    net, x, y = _tiny(0, 3, 4, 0.2)
    with pytest.raises(TypeError, match="TwoLayerNet"):
        robust_accuracy(object(), x, y, 2, 0.1)
    with pytest.raises(ValueError, match="norm"):
        robust_accuracy(net, x, y, 3, 0.1)
    with pytest.raises(ValueError, match="tau"):
        certified_margins(net, x, y, 2, -1.0)
    with pytest.raises(ValueError, match="taus"):
        robust_curve(net, x, y, 2, [0.2, 0.1])
    with pytest.raises(ValueError, match="max_units=2"):
        exact_robust_accuracy(net, x, y, 0.1, max_units=2)
    with pytest.raises(ValueError, match="max_dim=2"):
        exact_robust_accuracy(net, x, y, 0.1, max_dim=2)
    smooth = TwoLayerNet(net.W, threshold=0.2, activation="smooth")
    with pytest.raises(ValueError, match="relu"):
        exact_robust_accuracy(smooth, x, y, 0.1)


def test_lazy_spectral_bound_certifies_exactly_what_exhaustive_solving_does():
    """The eigen-solve is skipped only where it cannot change the certified set."""
    from fpsim import SparseCodingModel, TwoLayerNet, certify, kernels, train_clean
    model = SparseCodingModel(60, 3, seed=0, dtype=np.float64)
    net, _ = train_clean(TwoLayerNet.random(80, 60, threshold=0.3, seed=1, dtype=np.float64),
                         model, 300, 64, 0.5)
    x, y, _ = model.sample(300, 2)
    W = net.W
    gram = W @ W.T
    bias = net.bias()
    u = x @ W.T
    f = np.empty(len(y))
    kernels.soft_threshold_units(u, bias, net.q, 0.0, f, np.empty_like(u))
    for tau in (0.05, 0.15, 0.3):
        bounds, slack = certify.bounds._certify(*certify._common.check_certify(net, x, y, 2, tau))
        drop = np.empty_like(u)
        kernels.unit_drops(u, y.astype(float), tau * np.linalg.norm(W, axis=1), bias, net.q, 0.0, drop)
        exhaustive = y * f - np.array([tau * np.sqrt(len(s) * certify.bounds._largest_eigenvalue(W, gram, s))
                                       for s in (np.flatnonzero(row) for row in drop > 0)])
        assert np.all(bounds["spectral"] <= exhaustive + 1e-9)  # never tighter than the exact bound
        fast = np.max([bounds[k] for k in bounds], axis=0) > slack
        others = np.max([bounds[k] for k in bounds if k != "spectral"], axis=0)
        full = np.maximum(others, exhaustive) > slack
        np.testing.assert_array_equal(fast, full)


@pytest.mark.parametrize("scale", [1e-186, 1e-120, 1e-20, 1.0, 1e120])
@pytest.mark.parametrize("norm", NORMS)
def test_tiny_or_huge_weights_never_certify_a_broken_example(scale, norm):
    # W W^T underflows for |w| ~ 1e-160: the second-order bounds must not read that as "nothing moves".
    rng = np.random.default_rng(1)
    W = scale * rng.standard_normal((6, 3))
    net = TwoLayerNet(W, threshold=0.0)
    x = rng.standard_normal((40, 3))
    y = np.where(rng.random(40) < 0.5, -1, 1)
    result = robust_accuracy(net, x, y, norm, 0.5, rng=0)
    assert np.all(~result.certified | result.survived)
    for name, bound in certified_margins(net, x, y, norm, 0.5).items():
        assert np.all(bound <= result.attack_margin + 1e-9 * np.abs(result.attack_margin)), name
    # A linear net (threshold 0) is certified exactly: y f(x) - tau ||sum_i w_i||_q for every scale.
    total = W.sum(axis=0)
    exact = y * (x @ total) - 0.5 * scale * np.linalg.norm(total / scale, ord=1 if norm == np.inf else 2)
    assert np.all(result.certified_margin >= exact - 1e-9 * np.abs(exact))
