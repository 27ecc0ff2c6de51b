"""The beyond-threshold ("split") certificate: sound against the exact solver and attacks, useful past theta."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fpsim import SparseCodingModel, TwoLayerNet, kernels
from fpsim.attacks import random_in_ball
from fpsim.certify import certified_margins, robust_accuracy
from fpsim.certify.beyond import orthonormal_basis
from fpsim.finite_size import ideal_net
from fpsim.strategies import batches, near_ideal_nets, radii, seeds, sparse_coding_models
from fpsim.testing import worst_case

def _near_ideal_problem(data, max_d, max_m, norm, activation=None, exact_only=False):
    """A near-ideal net (one atom per unit plus a dense mixture) with inputs of its own model, and a radius."""
    # narrow magnitudes and a label margin, and two to three units per atom, so that the nets are
    # robust past their threshold often enough for the bound to be positive and the test to bite
    d = data.draw(st.integers(4, max_d))
    model = data.draw(sparse_coding_models(d=d, k=st.floats(1.0, max(1.0, d / 4)), dictionary="random",
                                           magnitude=(1.0, 1.2), teacher=(0.5, 1.0), margin=0.3,
                                           dtype=np.float64))
    net = data.draw(near_ideal_nets(model, dense=st.floats(0.0, 0.4),
                                    m=st.integers(2 * model.d, min(3 * model.d, max_m)),
                                    activation="relu" if exact_only else activation))
    x, y, _ = data.draw(batches(model, n=st.integers(1, 6)))
    tau = data.draw(radii(net, norm, max_factor=1.5))  # below, or up to 1.5x above, the threshold radius
    return model, net, x.astype(np.float64), y, tau


@settings(max_examples=40, deadline=None)
@given(data=st.data(), norm=st.sampled_from([2, np.inf]), activation=st.sampled_from([None, "relu", "smooth"]))
def test_split_bound_is_never_above_a_margin_reached_in_the_ball(data, norm, activation):
    model, net, x, y, tau = _near_ideal_problem(data, 24, 72, norm, activation)
    split = certified_margins(net, x, y, norm, tau, dictionary=model.dictionary)["split"]
    lowest = worst_case(net, x, y, norm, tau, model=model, exact=False).margin
    rng = np.random.default_rng(data.draw(seeds()))
    inf_norm = norm == np.inf
    for _ in range(100):                             # the boundary, where the worst case lives
        delta = random_in_ball(rng, x.shape, inf_norm, tau, x.dtype)
        scale = np.abs(delta).max(axis=1, keepdims=True) if inf_norm else np.linalg.norm(delta, axis=1, keepdims=True)
        delta *= tau / np.maximum(scale, 1e-300)
        lowest = np.minimum(lowest, y * net.forward(x + delta))
    assert np.all(split <= lowest + 1e-9), (split - lowest).max()


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_split_bound_is_below_the_exact_linf_minimum(data):
    model, net, x, y, tau = _near_ideal_problem(data, 6, 18, np.inf, exact_only=True)
    exact = worst_case(net, x, y, np.inf, tau)
    assert exact.exact
    solver = 1e-6 * max(1.0, np.abs(net.W).max()) * (1.0 + np.abs(net.W).sum())  # HiGHS's tolerance, scaled
    for basis in (model.dictionary, None):
        bounds = certified_margins(net, x, y, "inf", tau, dictionary=basis)
        assert np.all(bounds["split"] <= exact.margin + solver)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ratio", [1.2, 1.6])
def test_positive_split_bounds_past_the_threshold_hold_against_the_strongest_search(seed, ratio):
    # Where the bound is positive (the case that matters), no search in the ball may go below it:
    # the ideal net of fpsim.finite_size with each row mixed with a little of M w*.
    model = SparseCodingModel(64, 3, magnitude=(1.0, 1.2), margin=0.8, support="exact", seed=seed)
    net = ideal_net(model, threshold=0.5 / np.sqrt(3))
    W = net.W.astype(np.float64)
    W += 0.05 * np.linalg.norm(W, axis=1, keepdims=True) * np.sign(W @ model.dense_direction)[:, None] \
        * model.dense_direction
    net.W = W
    x, y, _ = model.sample(40, seed + 1)
    x = x.astype(np.float64)
    tau = ratio * 0.5 / np.sqrt(3)
    split = certified_margins(net, x, y, 2, tau, dictionary=model.dictionary)["split"]
    assert (split > 0).mean() > 0.5                        # the bound bites here
    lowest = worst_case(net, x, y, 2, tau, model=model).margin
    assert np.all(split <= lowest + 1e-9), (split - lowest).max()


def test_split_certifies_an_ideal_net_past_the_threshold_where_the_other_bounds_cannot():
    # d = 256, k = 4 exactly, theta = 0.5/sqrt(k) < tau = 0.6/sqrt(k): every unit can switch on in the ball.
    model = SparseCodingModel(256, 4, magnitude=(1.0, 1.2), margin=1.0, support="exact", seed=3)
    W = model.w_star[:, None] * model.dictionary.T
    net = TwoLayerNet(W, threshold=0.5 / 2)
    x, y, _ = model.sample(300, 4)
    tau = 0.6 / 2
    result = robust_accuracy(net, x, y, 2, tau, model=model, rng=0)
    others = certified_margins(net, x, y, 2, tau)
    slack_free = np.maximum.reduce([others[name] for name in ("per_unit", "gram", "spectral")])
    assert (slack_free > 0).mean() == 0.0                  # the old bounds collapse past theta
    assert result.lower > 0.9, result.lower                # the split bound does not
    assert set(result.method[result.certified]) == {"split"}
    assert np.all(~result.certified | result.survived)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_giving_up_on_hopeless_examples_certifies_the_same_ones(data):
    """With a target, the kernel skips examples whose linear part alone reaches it; the certified set stays."""
    from fpsim.certify.beyond import split_margins
    model, net, x, y, tau = _near_ideal_problem(data, 24, 72, 2)
    W = net.W.astype(np.float64)
    bias = net.bias().astype(np.float64)
    yu = y[:, None] * (x @ W.T)
    base = y * net.forward64(x)
    basis = orthonormal_basis(model.dictionary, model.d)
    target = np.abs(base) * data.draw(st.floats(0.0, 1.0))   # any target: the same decisions either way
    full = split_margins(W, bias, yu, base, tau, basis)
    stopped = split_margins(W, bias, yu, base, tau, basis, target=target)
    np.testing.assert_array_equal(stopped > target, full > target)
    assert np.all(stopped[stopped > target] <= full[stopped > target])  # it may stop trying thresholds early


@pytest.mark.parametrize("seed", range(20))
def test_trust_region_max_is_the_maximum_on_the_disk(seed):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(2) * rng.uniform(0, 3)
    root = rng.standard_normal((2, 2))
    H = root @ root.T * rng.uniform(0, 5)
    radius = rng.uniform(0.05, 2.0)
    bound = kernels.trust_region_max(g[0], g[1], H[0, 0], H[0, 1], H[1, 1], radius)
    angle = np.linspace(0, 2 * np.pi, 200001)
    v = radius * np.stack([np.cos(angle), np.sin(angle)])
    best = (g @ v + np.einsum("ik,ij,jk->k", v, H, v)).max()   # convex: the maximum is on the circle
    assert bound >= best - 1e-12
    assert bound <= best + 1e-6 * (1 + abs(best))           # and the S-procedure is exact


def test_orthonormal_basis_is_orthonormal_to_float64():
    M = SparseCodingModel(50, 3, seed=1).dictionary.astype(np.float32)
    Q = orthonormal_basis(M, 50)
    np.testing.assert_allclose(Q.T @ Q, np.eye(50), atol=1e-13)
    assert np.abs(Q - M).max() < 1e-5


def test_orthonormal_basis_is_kept_for_the_same_dictionary_only():
    M = SparseCodingModel(30, 3, seed=2).dictionary
    first = orthonormal_basis(M, 30)
    assert orthonormal_basis(M.copy(), 30) is first          # same bytes: the SVD is not repeated
    other = M.copy()
    other[0, 0] += 1e-3
    changed = orthonormal_basis(other, 30)
    assert changed is not first and np.abs(changed - first).max() > 1e-5
    assert not changed.flags.writeable
    assert orthonormal_basis(M.astype(np.float32), 30) is not first  # dtype is part of the key
