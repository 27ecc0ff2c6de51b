"""Metrics of MODEL.md §6 on hand-built weights with known answers."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fpsim import metrics
from fpsim.data import make_dictionary


def orthogonal(d, seed):
    return make_dictionary(d, "random", np.random.default_rng(seed))


# -- C1 ----------------------------------------------------------------------
def test_cos_to_init_known_values():
    W0 = np.array([[1.0, 0, 0], [0, 2.0, 0], [1.0, 1.0, 0], [1.0, 0, 0]])
    W = np.array([[3.0, 3.0, 0], [0, -5.0, 0], [0, 0, 7.0], [0, 0, 0]])
    c = metrics.cos_to_init(W, W0)
    np.testing.assert_allclose(c, [1 / np.sqrt(2), 1.0, 0.0, 0.0], atol=1e-15)
    assert metrics.median_abs_cos(W, W0) == pytest.approx(np.median(c))


def test_cos_to_init_validates():
    with pytest.raises(ValueError, match="W must have shape"):
        metrics.cos_to_init(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="W_init must be 2-dimensional"):
        metrics.cos_to_init(np.ones((3, 4)), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        metrics.cos_to_init(np.full((2, 2), np.nan), np.ones((2, 2)))


# -- C4 ----------------------------------------------------------------------
def test_purification_recovers_constructed_beta_and_residual():
    rng = np.random.default_rng(0)
    m, d = 6, 10
    W_adv = rng.standard_normal((m, d))
    beta = np.array([2.0, -1.5, 0.5, 0.0, 3.0, -0.1])
    V = rng.standard_normal((m, d))
    V -= (np.einsum("ij,ij->i", V, W_adv) / np.einsum("ij,ij->i", W_adv, W_adv))[:, None] * W_adv
    W = beta[:, None] * W_adv + V
    p = metrics.purification(W, W_adv)
    np.testing.assert_allclose(p.beta, beta, atol=1e-12)
    np.testing.assert_allclose(p.residual_norm, np.linalg.norm(V, axis=1), rtol=1e-10)
    np.testing.assert_allclose(p.principal_norm, np.abs(beta) * np.linalg.norm(W_adv, axis=1),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(p.purified, p.principal_norm > p.residual_norm)
    assert p.fraction_purified == np.mean(p.purified)
    assert set(p.summary()) == {"fraction_purified", "median_cos", "median_beta"}


@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.01, 3.0))
def test_purified_iff_abs_cos_above_inv_sqrt2(seed, scale):
    rng = np.random.default_rng(seed)
    W_adv = rng.standard_normal((40, 5))
    W = rng.choice([-1.0, 1.0], size=(40, 1)) * W_adv + scale * rng.standard_normal((40, 5))
    p = metrics.purification(W, W_adv)
    np.testing.assert_array_equal(p.purified, np.abs(p.cos) > 1 / np.sqrt(2))
    np.testing.assert_allclose(p.principal_norm ** 2 + p.residual_norm ** 2,
                               np.linalg.norm(W, axis=1) ** 2, rtol=1e-9)


def test_purification_refuses_zero_rows():
    W_adv = np.eye(3)
    W_adv[1] = 0
    with pytest.raises(ValueError, match="W_adv has 1 zero rows"):
        metrics.purification(np.ones((3, 3)), W_adv)


# -- C5 ----------------------------------------------------------------------
def test_dictionary_view_one_atom_plus_dense_mixture():
    d = 12
    M = orthogonal(d, 1)
    rng = np.random.default_rng(2)
    w_star = rng.choice([-1.0, 1.0], d) * rng.uniform(0.5, 1.0, d)
    j0 = 4
    dense = 0.1 * w_star.copy()
    dense[j0] = 0.0
    a = [dense.copy() for _ in range(3)]
    a[0][j0] = 2.0 * np.sign(w_star[j0])       # agrees with the teacher, dense along +w*
    a[1][j0] = -2.0 * np.sign(w_star[j0])      # disagrees with the teacher
    a[2] = -a[0]                               # dense mixture along -w*
    W = np.array(a) @ M.T                      # w_i = M a_i
    view = metrics.dictionary_view(W, M, w_star)
    norm = np.linalg.norm(a[0])
    np.testing.assert_array_equal(view.principal[:, 0], [j0, j0, j0])
    np.testing.assert_allclose(view.dense_share, np.linalg.norm(dense) / norm, rtol=1e-10)
    np.testing.assert_allclose(view.top_atom_share, 2.0 / norm, rtol=1e-10)
    np.testing.assert_allclose(view.dense_alignment, [1.0, 1.0, -1.0], atol=1e-10)
    np.testing.assert_array_equal(view.principal_agrees, [True, False, False])
    s = view.summary()
    assert s["median_dense_alignment"] == pytest.approx(1.0)
    assert s["fraction_principal_agrees"] == pytest.approx(1 / 3)


def test_dictionary_view_two_principal_atoms():
    d = 8
    M = orthogonal(d, 3)
    w_star = np.ones(d)
    a = np.zeros(d)
    a[[1, 6]] = [3.0, -2.0]
    a[[0, 2]] = [0.4, 0.3]
    view = metrics.dictionary_view((M @ a)[None, :], M, w_star, n_principal=2)
    np.testing.assert_array_equal(view.principal, [[1, 6]])
    assert view.dense_share[0] == pytest.approx(0.5 / np.linalg.norm(a))
    expected = np.zeros(d)
    expected[[0, 2]] = [0.4, 0.3]
    teacher = np.ones(d)
    teacher[[1, 6]] = 0
    assert view.dense_alignment[0] == pytest.approx(expected @ teacher / (0.5 * np.sqrt(d - 2)))


def test_atom_coverage_counts_one_atom_neurons_per_atom():
    d = 5
    M = orthogonal(d, 4)
    A = np.zeros((5, d))
    A[0, 0], A[1, 0], A[2, 2] = 1.0, -2.0, 1.0        # one-atom neurons: two on atom 0, one on atom 2
    A[3, [3, 4, 1]] = [1.0, 0.8, 0.8]                 # top share 0.66 (under half the energy): not one-atom
    A[4, [1, 4]] = [1.0, 0.5]                         # top share 0.894: one-atom, on atom 1
    view = metrics.dictionary_view(A @ M.T, M, np.ones(d))
    np.testing.assert_array_equal(view.atom_coverage(), [2, 1, 1, 0, 0])
    np.testing.assert_array_equal(view.atom_coverage(min_share=0.9), [2, 0, 1, 0, 0])
    assert view.summary()["fraction_atoms_uncovered"] == pytest.approx(0.4)


def test_dictionary_view_validates():
    with pytest.raises(ValueError, match="orthogonal"):
        metrics.dictionary_view(np.ones((2, 3)), 2 * np.eye(3), np.ones(3))
    with pytest.raises(ValueError, match="n_principal must lie in"):
        metrics.dictionary_view(np.ones((2, 3)), np.eye(3), np.ones(3), n_principal=3)
    with pytest.raises(ValueError, match="w_star must have shape"):
        metrics.dictionary_view(np.ones((2, 3)), np.eye(3), np.ones(4))


# -- C7 ----------------------------------------------------------------------
def test_rank_one_update_has_all_energy_in_top_one():
    rng = np.random.default_rng(4)
    W = rng.standard_normal((20, 9))
    W_adv = W + np.outer(rng.standard_normal(20), rng.standard_normal(9))
    s = metrics.update_spectrum(W, W_adv, top=1)
    assert s.top_energy == pytest.approx(1.0, abs=1e-12)
    assert s.singular_values.shape == (9,)
    assert s.energy[-1] == pytest.approx(1.0)
    assert metrics.update_spectrum(W[:3], W_adv[:3]).top == 3     # default min(5, m, d)


def test_flat_spectrum_energy_is_r_over_rank():
    Q = orthogonal(10, 5)
    s = metrics.update_spectrum(np.zeros((10, 10)), 3.0 * Q, top=4)
    assert s.top_energy == pytest.approx(0.4)
    np.testing.assert_allclose(s.singular_values, 3.0)


def test_update_spectrum_validates():
    with pytest.raises(ValueError, match="no spectrum"):
        metrics.update_spectrum(np.ones((3, 2)), np.ones((3, 2)), top=1)
    with pytest.raises(ValueError, match="top must lie in"):
        metrics.update_spectrum(np.ones((3, 2)), np.zeros((3, 2)), top=3)


def test_update_split_separates_own_atom_growth_from_a_rank_one_rest():
    # Clean neuron i sits on atom j_i (plus a small mixture); the update grows each own atom by
    # g_i and adds a rank-1 term u v^T with v zero on every own atom: own share and the rest's
    # rank are known exactly.
    rng = np.random.default_rng(6)
    m, d = 8, 12
    M = orthogonal(d, 7)
    own = rng.permutation(d)[:m]
    A = 0.05 * rng.standard_normal((m, d))
    A[np.arange(m), own] = rng.choice([-1, 1], m) * rng.uniform(1, 2, m)
    growth = rng.uniform(0.2, 1.0, m)
    u, v = rng.standard_normal(m), rng.standard_normal(d)
    v[own] = 0.0
    D = np.outer(u, v)
    D[np.arange(m), own] = growth * A[np.arange(m), own]
    W, W_adv = A @ M.T, (A + D) @ M.T
    split = metrics.update_split(W, W_adv, M, top=1)
    own_power = np.sum((growth * A[np.arange(m), own]) ** 2)
    assert split.own_atom_share == pytest.approx(own_power / (own_power + (u @ u) * (v @ v)), rel=1e-10)
    np.testing.assert_allclose(split.own_atom_growth, growth, rtol=1e-10)
    assert split.rest.top_energy == pytest.approx(1.0, abs=1e-10)
    # the whole update is full rank: its own top-1 share is well below 1
    assert metrics.update_spectrum(W, W_adv, top=1).top_energy < 0.9
    assert split.summary()["rest_top_energy"] == pytest.approx(1.0, abs=1e-10)


def test_update_split_validates():
    with pytest.raises(ValueError, match="cannot be split"):
        metrics.update_split(np.ones((3, 2)), np.ones((3, 2)), np.eye(2))
    with pytest.raises(ValueError, match="orthogonal"):
        metrics.update_split(np.ones((3, 2)), np.zeros((3, 2)), 2 * np.eye(2))
    only_own = metrics.update_split(np.eye(3), 2 * np.eye(3), np.eye(3))
    assert only_own.own_atom_share == 1.0 and only_own.rest is None


# -- dense direction -----------------------------------------------------------
def test_fit_slope_recovers_a_power_law():
    rng = np.random.default_rng(0)
    sizes = np.array([50.0, 100.0, 200.0, 400.0, 800.0])
    for exponent in (-0.5, 0.0, -1.0):
        radii = 3.0 * sizes**exponent * np.exp(0.01 * rng.standard_normal(sizes.size))
        assert metrics.fit_slope(sizes, radii) == pytest.approx(exponent, abs=0.03)
    assert np.isnan(metrics.fit_slope(sizes, [1.0, np.nan, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="two distinct"):
        metrics.fit_slope([100.0, 100.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="shape of sizes"):
        metrics.fit_slope([100.0, 200.0], [1.0])
