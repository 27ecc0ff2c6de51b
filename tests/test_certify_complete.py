"""Branch and bound (fpsim.certify.complete): sound against the MILP and attacks, exact on tiny ReLU nets."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fpsim import TwoLayerNet, kernels
from fpsim.attacks import pgd, random_in_ball
from fpsim.certify import certified_margins, exact_robust_accuracy
from fpsim.certify.complete import complete_margins
from fpsim.strategies import gaussian_batches, nets, radii, seeds
from fpsim.testing import assert_sound, rounding_tolerance


def _problem(data, norm, activation, max_m=5, max_d=5, max_n=3):
    """A small net (float64), a batch of inputs and a radius either side of the threshold radius.

    Inputs of scale drawn in [0.1, 1] keep pre-activations near the thresholds, where units are
    undecided and the search has to branch (with unit-scale inputs most examples settle at the root).
    """
    net = data.draw(nets(m=st.integers(2, max_m), d=st.integers(2, max_d), activation=activation,
                         dtype=np.float64, max_threshold=0.8))
    x, y = data.draw(gaussian_batches(net.d, max_n=max_n, scale=data.draw(st.floats(0.1, 1.0))))
    return net, x, y, norm, float(data.draw(radii(net, norm)))


def _scale(net, x, norm, tau):
    """Size of the margins in play: :math:`\\sum_i |u_i| + \\tau\\|w_i\\|_q + b_i` per example."""
    return rounding_tolerance(net, x, norm, tau) / ((net.d + net.m) * np.finfo(net.dtype).eps)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_branch_and_bound_reaches_the_milp_on_tiny_relu_nets(data):
    # (a) lower <= exact, never certifies what the MILP refutes; (b) with a sufficient budget
    # (2^(m+1) nodes: one split per unit reaches a leaf) the search is decided and exact.
    net, x, y, norm, tau = _problem(data, np.inf, "relu", max_m=6, max_d=6, max_n=4)
    exact = exact_robust_accuracy(net, x, y, tau).min_margin
    size = _scale(net, x, norm, tau)
    result = complete_margins(net, x, y, norm, tau, node_budget=2 ** (net.m + 1), gap=1e-9 * size.max())
    tol = rounding_tolerance(net, x, norm, tau)
    assert (result.margin <= exact + tol).all(), (result.margin, exact)
    assert not (result.status == "certified")[exact <= 0].any()
    assert (result.upper >= exact - tol).all()           # a margin the net takes in the ball
    assert (exact - result.margin <= 1e-6 * size).all(), (result.margin, exact)
    clear = np.abs(exact) > 1e-6 * size
    np.testing.assert_array_equal(result.status[clear], np.where(exact > 0, "certified", "refuted")[clear])


@settings(max_examples=15, deadline=None)
@given(data=st.data(), activation=st.sampled_from(["relu", "smooth"]), budget=st.integers(1, 12))
def test_any_budget_is_sound_and_tighter_than_the_cheap_certificates(data, activation, budget):
    # (a) for every budget (an undecided search included), both activations, l-inf: the MILP for
    # the ReLU, attacks for the smoothed ReLU; (d) never below the best-of of certified_margins
    net, x, y, norm, tau = _problem(data, np.inf, activation)
    result = complete_margins(net, x, y, norm, tau, node_budget=budget)
    assert_sound(lambda *problem: result.margin, net, x, y, norm, tau, restarts=3)
    cheap = np.maximum.reduce(list(certified_margins(net, x, y, norm, tau).values()))
    assert (result.margin >= np.minimum(cheap, result.upper) - rounding_tolerance(net, x, norm, tau)).all()
    assert (result.nodes <= budget).all()
    refuted = result.status == "refuted"
    assert (result.upper[refuted] <= 0).all()
    np.testing.assert_array_less(np.abs(result.delta).max(axis=1), tau * (1 + 1e-12) + 1e-300)


@settings(max_examples=15, deadline=None)
@given(data=st.data(), activation=st.sampled_from(["relu", "smooth"]), seed=seeds())
def test_l2_certificates_survive_sampling_and_pgd(data, activation, seed):
    # (c) no point sampled in the l2 ball and no PGD attack flips a certified example; the
    # counterexamples are real (in the ball, margin <= 0 on the net)
    net, x, y, norm, tau = _problem(data, 2, activation)
    result = complete_margins(net, x, y, norm, tau, node_budget=40)
    tol = rounding_tolerance(net, x, norm, tau)
    rng = np.random.default_rng(seed)
    lowest = y * net.forward(x)
    for _ in range(30):
        delta = random_in_ball(rng, x.shape, False, tau, x.dtype)
        length = np.linalg.norm(delta, axis=1, keepdims=True)
        for point in (delta, tau * delta / np.maximum(length, 1e-300)):   # inside and on the sphere
            lowest = np.minimum(lowest, y * net.forward(x + point))
    attacked = pgd(net, x, y, 2, tau, steps=30, restarts=2, rng=rng)
    lowest = np.minimum(lowest, y * net.forward(x + attacked))
    assert (result.margin <= lowest + tol).all()
    assert not (lowest[result.status == "certified"] <= 0).any()
    cheap = np.maximum.reduce(list(certified_margins(net, x, y, norm, tau).values()))
    assert not ((cheap > tol) & (result.status != "certified")).any()
    refuted = result.status == "refuted"
    assert (np.linalg.norm(result.delta[refuted], axis=1) <= tau * (1 + 1e-9)).all()
    assert (y[refuted] * net.forward(x[refuted] + result.delta[refuted]) <= 0).all()


def test_a_beyond_threshold_example_the_cheap_bounds_miss_is_decided():
    # tau above theta: the cheap certificates leave examples open, branch and bound decides
    # them all on this 6-unit net, in agreement with the MILP
    rng = np.random.default_rng(17)      # a seed where two such examples occur (most seeds have one)
    net = TwoLayerNet(rng.standard_normal((6, 5)), threshold=0.3)
    x = rng.standard_normal((12, 5))
    y = np.where(net.forward(x) >= 0, 1, -1)
    tau = 0.6
    cheap = np.maximum.reduce(list(certified_margins(net, x, y, np.inf, tau).values()))
    exact = exact_robust_accuracy(net, x, y, tau).robust
    assert (exact & (cheap <= 0)).any()              # the case this search exists for
    result = complete_margins(net, x, y, np.inf, tau, node_budget=128)
    assert (result.status != "undecided").all()
    np.testing.assert_array_equal(result.status == "certified", exact)
    only = complete_margins(net, x, y, np.inf, tau, rows=cheap <= 0)
    assert (only.status[cheap > 0] == "skipped").all() and np.isnan(only.margin[cheap > 0]).all()
    np.testing.assert_array_equal(only.status[cheap <= 0], result.status[cheap <= 0])
    assert sum(only.counts().values()) == len(x)


def test_the_node_dual_at_zero_smoothing_is_the_line_offset_of_linear():
    # the exact dual's per-unit minimum is unit_line_offsets' (for slopes in and out of [0, 1])
    rng = np.random.default_rng(0)
    m = 7
    v, radius, bias = rng.normal(size=m), rng.uniform(0, 2, m), rng.uniform(0, 1, m)
    lam = rng.uniform(-1.5, 2.5, m)
    for rho in (0.0, 0.4):
        offset, argmin = np.empty((1, m)), np.empty((1, m))
        kernels.unit_line_offsets(v[None], radius, bias, lam[None], 3.0, rho, offset, argmin)
        for i in range(m):
            grad, delta = np.empty(1), np.empty(1)
            value = kernels.bab_dual(lam[i:i + 1], np.array([i]), v - radius, v + radius, v, bias, 3.0, rho,
                                     np.zeros((m, 1)), np.zeros(1), 0.0, False, 0.0, grad, delta)
            assert value == pytest.approx(offset[0, i], abs=1e-12)
            assert -grad[0] == pytest.approx(argmin[0, i], abs=1e-12)
            smoothed = kernels.bab_dual(lam[i:i + 1], np.array([i]), v - radius, v + radius, v, bias, 3.0, rho,
                                        np.zeros((m, 1)), np.zeros(1), 0.0, False, 1e-2, grad, delta)
            assert value - 1e-2 * np.log(4) - 1e-12 <= smoothed <= value + 1e-12   # a lower bound


def test_arguments_are_checked():
    net = TwoLayerNet(np.eye(2), threshold=0.1)
    x, y = np.ones((2, 2)), np.array([1, -1])
    with pytest.raises(ValueError, match="node_budget"):
        complete_margins(net, x, y, 2, 0.1, node_budget=0)
    with pytest.raises(TypeError, match="node_budget"):
        complete_margins(net, x, y, 2, 0.1, node_budget=2.5)
    with pytest.raises(ValueError, match="rows"):
        complete_margins(net, x, y, 2, 0.1, rows=[5])
    with pytest.raises(ValueError, match="gap"):
        complete_margins(net, x, y, 2, 0.1, gap=-1.0)
    empty = complete_margins(net, x, y, 2, 0.1, rows=[])
    assert empty.counts()["skipped"] == 2
