"""The numba kernels against plain NumPy transcriptions of their equations, and determinism."""
import os

import numba
import numpy as np
import pytest
import scipy.special

from fpsim import SparseCodingModel, Threshold, TwoLayerNet, kernels, pgd, train_adversarial, train_clean
from fpsim._threads import thread_limit
from fpsim.train import DenseStep


def phi(t, q, rho):
    """Smoothed ReLU (ReLU for rho = 0) and its derivative, MODEL.md §3, by cases."""
    t = np.asarray(t, np.float64)
    if rho == 0:
        return np.maximum(t, 0.0), (t > 0).astype(np.float64)
    smooth = (t > 0) & (t < rho)
    value = np.where(t >= rho, t - (1 - 1 / q) * rho, 0.0)
    slope = np.where(t >= rho, 1.0, 0.0)
    r = np.clip(t / rho, 0, 1)
    value = np.where(smooth, np.clip(t, 0, rho) ** q / (q * rho ** (q - 1)), value)
    slope = np.where(smooth, r ** (q - 1), slope)
    return value, slope


ACTIVATIONS = [(2.0, 0.0), (2.0, 0.3), (3.0, 0.3), (2.5, 1.0)]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("q, rho", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_soft_threshold_units_matches_formula(rng, q, rho, dtype):
    n, m = 7, 50
    u = rng.normal(0, 0.6, (n, m)).astype(dtype)
    u[0, :5] = 0.0                                   # exactly at the origin
    bias = rng.uniform(0, 0.5, m).astype(dtype)
    bias[:3] = 0.0                                   # b = 0: the linear-through-origin case
    u[1, 5:10] = bias[5:10]                          # exactly at the threshold
    u[2, 5:10] = -bias[5:10]
    pos, dpos = phi(u.astype(np.float64) - bias, q, rho)
    neg, dneg = phi(-u.astype(np.float64) - bias, q, rho)
    f, slope = np.empty(n, dtype), np.empty((n, m), dtype)
    kernels.soft_threshold_units(u, bias, q, rho, f, slope)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(f, (pos - neg).sum(axis=1), rtol=tol, atol=tol)
    np.testing.assert_allclose(slope, dpos + dneg, rtol=tol, atol=tol)
    # the unit is odd in u and its slope even
    f_neg = np.empty(n, dtype)
    kernels.soft_threshold_units(-u, bias, q, rho, f_neg, slope)
    np.testing.assert_array_equal(f_neg, -f)


def test_soft_threshold_units_in_place(rng):
    u = rng.normal(0, 1, (5, 30)).astype(np.float32)
    bias = rng.uniform(0, 1, 30).astype(np.float32)
    f, slope = np.empty(5, np.float32), np.empty_like(u)
    kernels.soft_threshold_units(u, bias, 2.0, 0.0, f, slope)
    f2 = np.empty(5, np.float32)
    kernels.soft_threshold_units(u, bias, 2.0, 0.0, f2, u)   # out_slope aliases u
    np.testing.assert_array_equal(f2, f)
    np.testing.assert_array_equal(u, slope)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logistic_loss_coefficients_matches_formula(rng, dtype):
    f = np.array([0.0, 1.5, -2.0, 80.0, -80.0, 1e4, -1e4], dtype)
    y = np.array([1, -1, -1, 1, 1, -1, 1], dtype)
    slope = rng.uniform(0, 2, (len(f), 9)).astype(dtype)
    expected_coef = (-y * scipy.special.expit(-y.astype(np.float64) * f))[:, None] * slope
    expected_loss = np.logaddexp(0, -y.astype(np.float64) * f).sum()
    loss = kernels.logistic_loss_coefficients(f, y, slope)
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    np.testing.assert_allclose(slope, expected_coef, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-30)


def sparse_codes(rng, n, d, density, dtype):
    return (rng.normal(size=(n, d)) * (rng.random((n, d)) < density)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_rows_times_is_the_matrix_product(rng, dtype):
    z = sparse_codes(rng, 9, 40, 0.1, dtype)
    z[3] = 0.0                                       # an empty row gives a zero row
    rows = rng.normal(size=(40, 17)).astype(dtype)
    out = np.full((9, 17), np.nan, dtype)
    kernels.sparse_rows_times(z, rows, out)
    np.testing.assert_allclose(out, z.astype(np.float64) @ rows, rtol=1e-5, atol=1e-5)
    assert not out[3].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_rank_update_is_the_outer_product_sum(rng, dtype):
    z = sparse_codes(rng, 9, 40, 0.1, dtype)
    coef = rng.normal(size=(9, 17)).astype(dtype)
    rows = rng.normal(size=(40, 17)).astype(dtype)
    expected = rows + (-0.3) * (z.astype(np.float64).T @ coef)
    for scale in (-0.3, dtype(-0.3)):                # a float64 or a rows-dtype scale: same update
        updated = rows.copy()
        kernels.sparse_rank_update(z, coef, scale, updated)
        np.testing.assert_allclose(updated, expected, rtol=1e-5, atol=1e-5)
    untouched = ~z.any(axis=0)                       # atoms absent from the batch keep their rows
    np.testing.assert_array_equal(updated[untouched], rows[untouched])


def test_sparse_codes_place_each_value_once_and_score_like_dense_rows(rng):
    n, d = 50, 30
    counts = rng.binomial(d, 0.3, size=n)
    counts[0], counts[1] = 0, d                      # empty and full rows
    total = counts.sum()
    values = rng.uniform(1, 2, total).astype(np.float32)
    positions = np.empty(total, np.int64)
    kernels.code_positions(counts, rng.random(total), d, positions)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for b in range(n):                               # distinct positions in range, every one for a full row
        row = positions[offsets[b]:offsets[b + 1]]
        assert len(set(row.tolist())) == counts[b] and ((0 <= row) & (row < d)).all()
    rows = np.flatnonzero(rng.random(n) < 0.6)
    z = np.zeros((len(rows), d), np.float32)
    kernels.place_codes(counts, positions, values, rows, z)
    np.testing.assert_array_equal((z != 0).sum(axis=1), counts[rows])
    for r, b in enumerate(rows):
        np.testing.assert_array_equal(z[r, positions[offsets[b]:offsets[b + 1]]], values[offsets[b]:offsets[b + 1]])
    w = rng.normal(size=d)
    scores = np.empty(n)
    kernels.code_scores(counts, positions, values, w, scores)
    dense = np.zeros((n, d), np.float32)
    kernels.place_codes(counts, positions, values, np.arange(n), dense)
    np.testing.assert_allclose(scores, dense.astype(np.float64) @ w, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_code_values_match_the_numpy_expression_bit_for_bit(rng, dtype):
    # the fused kernel replaced signs * minimum(U / sqrt(k), 1) in numpy: same values, same sample stream
    bits = rng.integers(0, 2, size=5000, dtype=np.int8)
    magnitudes = rng.uniform(1.0, 6.0, size=5000)                # some capped at 1 (U/sqrt(k) > 1)
    values = np.empty(5000, dtype)
    kernels.code_values(bits, magnitudes, np.sqrt(16.0), values)
    expected = ((bits * 2.0 - 1.0) * np.minimum(magnitudes / np.sqrt(16.0), 1.0)).astype(dtype)
    assert (np.abs(values) == 1).any()
    np.testing.assert_array_equal(values, expected)


def test_code_positions_are_uniform_subsets():
    # Floyd's algorithm: every 2-subset of 5 positions equally likely (chi-square over the 10 subsets)
    rng = np.random.default_rng(4)
    n = 20000
    counts = np.full(n, 2, np.int64)
    positions = np.empty(2 * n, np.int64)
    kernels.code_positions(counts, rng.random(2 * n), 5, positions)
    pairs = np.sort(positions.reshape(n, 2), axis=1)
    _, observed = np.unique(pairs[:, 0] * 5 + pairs[:, 1], return_counts=True)
    assert len(observed) == 10
    chi2 = ((observed - n / 10) ** 2 / (n / 10)).sum()
    assert chi2 < 27.9                               # the 0.999 quantile of chi-square(9)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_dense_step_is_sgd_on_loss_grad(weight_decay):
    model = SparseCodingModel(30, 3, seed=1)
    net = TwoLayerNet.random(20, 30, threshold=0.2, seed=2)
    x, y, z = model.sample(16, 3)
    loss, grad = net.loss_grad(x, y, weight_decay)
    expected = net.W - 0.5 * grad
    stepper = DenseStep(net.copy(), 16)
    assert stepper.step(x, y, z, 0.5, weight_decay) == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(stepper.weights(), expected, rtol=1e-5, atol=1e-7)


def test_negative_bias_is_refused():
    net = TwoLayerNet.random(4, 3, seed=0)
    with pytest.raises(ValueError, match="bias"):
        net.forward(np.ones((2, 3)), bias=-np.ones(4, np.float32))


def _short_run():
    """A short clean run on both paths, a PGD attack and l2 adversarial training (K = W W^T followed)."""
    model = SparseCodingModel(192, 6, seed=3)
    net = TwoLayerNet.random(384, 192, threshold=Threshold(0.2), seed=4)
    dense, _ = train_clean(net, model, 12, 128, 0.5, path="dense", weight_decay=1e-3, eval_size=64)
    dictionary, _ = train_clean(net, model, 12, 128, 0.5, path="dictionary", eval_size=64)
    x, y, _ = model.sample(128, 5)
    delta = pgd(dense, x, y, 2, 0.2, steps=3, rng=6)
    adversarial, _ = train_adversarial(dense, model, 6, 128, 0.5, tau=0.2, weight_decay=1e-3, eval_size=64,
                                       robust_eval_size=8, record_every=6)
    return dense.W, dictionary.W, delta, adversarial.W


@pytest.mark.parametrize("crossover", [0.0, 1.0])  # backward by dense BLAS / over the active pairs
def test_results_are_deterministic_across_numba_thread_counts(monkeypatch, crossover):
    """1 and 2 numba threads give the same bits: every parallel kernel splits work by output row.

    BLAS is held at one thread in both runs: OpenBLAS's ``sgemm`` itself is
    not bit-reproducible across its thread counts (its single-thread kernels
    round differently), which no fpsim code can change.
    """
    import fpsim.network
    from threadpoolctl import threadpool_limits
    monkeypatch.setattr(fpsim.network, "SPARSE_CROSSOVER", crossover)
    monkeypatch.setattr(fpsim.network, "GRAM_CROSSOVER", crossover)  # 1: adversarial training follows K
    previous = numba.get_num_threads()
    runs = []
    try:
        with threadpool_limits(limits=1):
            for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
                numba.set_num_threads(threads)
                runs.append(_short_run())
    finally:
        numba.set_num_threads(previous)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def _sparse_coefficients(rng, n, m, fraction, dtype):
    """A coefficient matrix with about ``fraction`` non-zeros, some rows and columns empty."""
    coef = (rng.standard_normal((n, m)) * (rng.random((n, m)) < fraction)).astype(dtype)
    coef[0] = 0.0
    coef[:, -1] = 0.0
    return coef


def _pairs(coef, capacity=None):
    n, m = coef.shape
    capacity = n * m if capacity is None else capacity
    lists = (np.empty(n + 1, np.int64), np.empty(capacity, np.int32), np.empty(capacity, coef.dtype),
             np.empty(m + 1, np.int64), np.empty(capacity, np.int32), np.empty(capacity, coef.dtype))
    return kernels.active_pairs(coef, capacity, *lists), lists


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_active_pairs_lists_every_nonzero_in_both_orders(rng, dtype):
    coef = _sparse_coefficients(rng, 13, 17, 0.2, dtype)
    nnz, (row_ptr, col, row_val, col_ptr, row, col_val) = _pairs(coef)
    assert nnz == np.count_nonzero(coef)
    rebuilt_rows, rebuilt_cols = np.zeros_like(coef), np.zeros_like(coef)
    for b in range(13):
        span = slice(row_ptr[b], row_ptr[b + 1])
        assert np.all(np.diff(col[span]) > 0)  # units increasing within a row
        rebuilt_rows[b, col[span]] = row_val[span]
    for i in range(17):
        span = slice(col_ptr[i], col_ptr[i + 1])
        assert np.all(np.diff(row[span]) > 0)  # examples increasing within a unit
        rebuilt_cols[row[span], i] = col_val[span]
    np.testing.assert_array_equal(rebuilt_rows, coef)
    np.testing.assert_array_equal(rebuilt_cols, coef)
    assert row_ptr[-1] == col_ptr[-1] == nnz


def test_active_pairs_gives_up_above_capacity(rng):
    coef = _sparse_coefficients(rng, 40, 30, 0.3, np.float64)
    nnz = np.count_nonzero(coef)
    assert _pairs(coef, nnz)[0] == nnz
    assert _pairs(coef, nnz - 1)[0] == -1
    dense = np.ones((40, 30))
    assert _pairs(dense, 40 * 30 // 10)[0] == -1  # clearly dense: stops after a few rows
    assert _pairs(np.zeros((40, 30)), 0)[0] == 0


@pytest.mark.parametrize("density", [0.3, 0.9])  # 0.9: lists longer than four, both loops of add_scaled_rows
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.9])
def test_csc_rows_update_is_the_transposed_product(rng, dtype, beta, density):
    coef = _sparse_coefficients(rng, 12, 9, density, dtype)
    x = rng.standard_normal((12, 7)).astype(dtype)
    out = rng.standard_normal((9, 7)).astype(dtype)
    expected = (0.0 if beta == 0 else beta * out.astype(np.float64)) - 0.3 * coef.T.astype(np.float64) @ x
    if beta == 0:
        out[...] = np.nan  # overwritten, never read
    _, (_, _, _, col_ptr, row, col_val) = _pairs(coef)
    kernels.csc_rows_update(col_ptr, row, col_val, x, dtype(-0.3), dtype(beta), out)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("density", [0.3, 0.9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_csr_rows_times_is_the_product(rng, dtype, density):
    coef = _sparse_coefficients(rng, 12, 9, density, dtype)
    W = rng.standard_normal((9, 7)).astype(dtype)
    out = np.full((12, 7), np.nan, dtype)
    _, (row_ptr, col, row_val, _, _, _) = _pairs(coef)
    kernels.csr_rows_times(row_ptr, col, row_val, W, out)
    np.testing.assert_allclose(out, coef.astype(np.float64) @ W, rtol=1e-5, atol=1e-5)
    assert np.all(out[0] == 0)  # an example without active units has zero gradient


@pytest.mark.parametrize("density", [0.1, 0.9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gram_update_is_the_gram_matrix_of_the_stepped_weights(rng, dtype, density):
    """K <- beta^2 K + alpha (C^T R + R^T C), R = beta U + alpha/2 G C, is (beta W + alpha C^T X)(...)^T."""
    n, m, d = 11, 2 * kernels.GRAM_TILE + 5, 13   # three tiles, the last one partial
    coef = _sparse_coefficients(rng, n, m, density, dtype)
    W, x = rng.standard_normal((m, d)).astype(dtype), rng.standard_normal((n, d)).astype(dtype)
    alpha, beta = -0.3, 0.9
    r = (beta * (x @ W.T) + alpha / 2 * (x @ x.T) @ coef).astype(dtype)
    gram = (W @ W.T).astype(dtype)
    _, (row_ptr, col, row_val, col_ptr, row, col_val) = _pairs(coef)
    kernels.gram_update(gram, dtype(beta * beta), dtype(alpha), col_ptr, row, col_val, row_ptr, col, row_val, r)
    stepped = beta * W.astype(np.float64) + alpha * coef.T.astype(np.float64) @ x
    expected = stepped @ stepped.T
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gram, expected, rtol=tol, atol=tol * np.abs(expected).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gram_advance_follows_the_preactivations_of_the_l2_step(rng, dtype):
    """After delta <- c (delta + a C W): p = delta W^T and u = x W^T + p, through K = W W^T."""
    n, m, d = 9, 15, 7
    coef = _sparse_coefficients(rng, n, m, 0.4, dtype)
    W = rng.standard_normal((m, d)).astype(dtype)
    x, delta = rng.standard_normal((n, d)).astype(dtype), rng.standard_normal((n, d)).astype(dtype)
    factors = np.column_stack([rng.uniform(0, 2, n), rng.uniform(0.5, 1, n)]).astype(dtype)
    q, p, u = x @ W.T, delta @ W.T, np.full((n, m), np.nan, dtype)
    _, (row_ptr, col, row_val, _, _, _) = _pairs(coef)
    kernels.gram_advance(row_ptr, col, row_val, W @ W.T, factors, q, p, u)
    moved = factors[:, 1:] * (delta + factors[:, :1] * (coef @ W))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p, moved @ W.T, **tol)
    np.testing.assert_allclose(u, (x + moved) @ W.T, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ascend_project_reports_the_factors_of_its_l2_step(rng, dtype):
    delta = rng.standard_normal((6, 8)).astype(dtype)
    grad = rng.standard_normal((6, 8)).astype(dtype)
    grad[0] = 0.0                                   # no gradient: a = 0
    delta[1] *= 1e-3                                # inside the ball after the step: c = 1
    old, factors = delta.copy(), np.full((6, 2), np.nan, dtype)
    kernels.ascend_project(delta, grad, 0.5, 1.0, False, factors)
    assert factors[0, 0] == 0 and factors[1, 1] == 1
    np.testing.assert_allclose(delta, factors[:, 1:] * (old + factors[:, :1] * grad), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(factors[2:, 0], 0.5 / np.linalg.norm(grad[2:], axis=1), rtol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_joint_lipschitz_drop_is_the_minimum_over_every_prefix(seed):
    """The kernel stops scanning early; the minimum is the one over all prefixes, written out in NumPy."""
    rng = np.random.default_rng(seed)
    n, m = 6, 40
    W = rng.standard_normal((m, 9))
    gram_pos = np.maximum(W @ W.T, 0.0)
    drop = np.where(rng.random((n, m)) < 0.7, rng.exponential(1.0, (n, m)), 0.0)
    order = np.argsort(-drop, axis=1, kind="stable")
    counts = (drop > 0).sum(axis=1)
    radius2 = rng.uniform(0.01, 0.5)
    out, stopped = np.empty(n), np.empty(n)
    kernels.joint_lipschitz_drop(drop, order, counts, gram_pos, radius2, np.full(n, np.inf), out)
    give_up = rng.uniform(0.0, 2.0, n) * out               # some below the minimum, some above
    kernels.joint_lipschitz_drop(drop, order, counts, gram_pos, radius2, give_up, stopped)
    np.testing.assert_array_equal(stopped < give_up, out < give_up)   # the same examples certify
    assert np.all(stopped >= out)                          # a minimum over fewer prefixes: still a bound
    np.testing.assert_array_equal(stopped[out < give_up], out[out < give_up])
    for b in range(n):
        values = [drop[b].sum()]                           # t = 0: every unit by its own worst case
        for t in range(1, counts[b] + 1):
            inside = order[b, :t]
            rest = drop[b].sum() - drop[b, inside].sum()
            values.append(max(rest, 0.0) + radius2 * np.sqrt(gram_pos[np.ix_(inside, inside)].sum()))
        assert out[b] == pytest.approx(min(values), rel=1e-12, abs=1e-12)


def test_default_threads_honours_the_environment_and_the_affinity_mask(monkeypatch):
    from fpsim._threads import available_cores, default_threads
    monkeypatch.delenv("FPSIM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = available_cores()
    assert default_threads() == cores
    assert default_threads(workers=2) == max(cores // 2, 1)
    assert default_threads(workers=10 * cores) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("FPSIM_THREADS", "5")  # fpsim's own variable wins
    assert default_threads() == 5
    with thread_limit(None):
        assert numba.get_num_threads() == min(5, numba.config.NUMBA_NUM_THREADS)
    monkeypatch.setenv("FPSIM_THREADS", "zero")
    with pytest.raises(ValueError, match="FPSIM_THREADS"):
        default_threads()
    with pytest.raises(ValueError, match="workers"):
        default_threads(workers=0)


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_importing_fpsim_makes_idle_openmp_threads_sleep_unless_told_otherwise(preset, expected):
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    out = subprocess.run([sys.executable, "-c", "import os, fpsim; print(os.environ['OMP_WAIT_POLICY'])"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == expected
