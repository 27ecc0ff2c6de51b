"""The beyond-threshold ("split") certificate: sound against the exact solver and attacks, useful past theta."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fpsim import SparseCodingModel, TwoLayerNet, kernels
from fpsim.attacks import pgd, random_in_ball
from fpsim.certify import certified_margins, exact_robust_accuracy, robust_accuracy
from fpsim.certify.beyond import orthonormal_basis

ACTIVATIONS = [dict(activation="relu"), dict(activation="smooth", q=2.0, rho=0.05)]


def _near_ideal(seed, d, k, theta, mix, per_atom=1, n=8, **act):
    """A net of one-atom units (unit on atom j weighted by w*_j) plus a dense mixture of relative size ``mix``."""
    model = SparseCodingModel(d, k, magnitude=(1.0, 1.2), margin=0.5, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    atoms = np.tile(np.arange(d), per_atom)
    W = model.w_star[atoms, None] * model.dictionary[:, atoms].T * rng.uniform(0.5, 1.5, (len(atoms), 1))
    W += mix * np.linalg.norm(W, axis=1, keepdims=True) * (
        np.sign(model.w_star[atoms])[:, None] * model.dense_direction + 0.3 * rng.standard_normal(W.shape) / np.sqrt(d))
    net = TwoLayerNet(W, threshold=theta, **act)
    x, y, _ = model.sample(n, rng)
    return model, net, x.astype(np.float64), y


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), d=st.integers(4, 24), per_atom=st.integers(1, 2), mix=st.floats(0.0, 0.4),
       theta_k=st.floats(0.2, 0.8), tau_over_theta=st.floats(0.3, 3.0), norm=st.sampled_from([2, np.inf]),
       act=st.sampled_from(ACTIVATIONS))
def test_split_bound_is_never_above_a_margin_reached_in_the_ball(seed, d, per_atom, mix, theta_k, tau_over_theta,
                                                                 norm, act):
    k = max(1.0, d / 6)
    theta = theta_k / np.sqrt(k)
    tau = tau_over_theta * theta / (np.sqrt(d) if norm == np.inf else 1.0)
    model, net, x, y = _near_ideal(seed, d, k, theta, mix, per_atom, **act)
    split = certified_margins(net, x, y, norm, tau, dictionary=model.dictionary)["split"]
    rng = np.random.default_rng(seed)
    inf_norm = norm == np.inf
    lowest = y * net.forward(x)
    for _ in range(200):
        delta = random_in_ball(rng, x.shape, inf_norm, tau, x.dtype)
        scale = np.abs(delta).max(axis=1, keepdims=True) if inf_norm else np.linalg.norm(delta, axis=1, keepdims=True)
        delta *= tau / np.maximum(scale, 1e-300)          # the boundary, where the worst case lives
        lowest = np.minimum(lowest, y * net.forward(x + delta))
    for start in range(2):
        delta = pgd(net, x, y, norm, tau, steps=30, step_size=tau / 4, restarts=2, rng=seed + start)
        lowest = np.minimum(lowest, y * net.forward(x + delta))
    assert np.all(split <= lowest + 1e-9), (split - lowest).max()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), d=st.integers(2, 6), per_atom=st.integers(1, 2), mix=st.floats(0.0, 0.5),
       theta=st.floats(0.05, 0.6), tau=st.floats(0.0, 0.5))
def test_split_bound_is_below_the_exact_linf_minimum(seed, d, per_atom, mix, theta, tau):
    model, net, x, y = _near_ideal(seed, d, 1.0, theta, mix, per_atom, n=4)
    exact = exact_robust_accuracy(net, x, y, tau)
    for basis in (model.dictionary, None):
        bounds = certified_margins(net, x, y, "inf", tau, dictionary=basis)
        assert np.all(bounds["split"] <= exact.min_margin + 1e-7)


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
