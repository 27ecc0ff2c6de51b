import numpy as np
import pytest
from hypothesis import given, strategies as st

from fpsim import SparseCodingModel, TrainingData
from fpsim.strategies import seeds, sparse_coding_models


@pytest.mark.parametrize("kind,d", [("identity", 16), ("random", 30), ("hadamard", 32)])
def test_dictionary_is_orthogonal(kind, d):
    M = SparseCodingModel(d, 3, dictionary=kind, seed=4).dictionary
    np.testing.assert_allclose(M.T @ M, np.eye(d), atol=1e-12)


@given(model=sparse_coding_models(d=st.integers(8, 120), dictionary="random", noise=0.0,
                                  magnitude=(1.0, 2.0), margin=0.0, dtype=np.float64),
       seed=seeds(2**31))
def test_code_statistics(model, seed):
    k = model.k
    n = 4000
    x, y, z = model.sample(n, seed)
    nnz = (z != 0).sum(axis=1)
    # mean of a Binomial(d, k/d): standard error sqrt(k (1 - k/d) / n)
    assert abs(nnz.mean() - k) < 5 * np.sqrt(k / n) + 1e-9
    values = np.abs(z[z != 0])
    assert values.min() >= 1 / np.sqrt(k) - 1e-12 and values.max() <= 1 + 1e-12
    signs = np.sign(z[z != 0])
    assert abs(signs.mean()) < 5 / np.sqrt(len(signs))
    np.testing.assert_array_equal(y, np.where(z @ model.w_star >= 0, 1, -1))
    np.testing.assert_allclose(x, z @ model.dictionary.T, atol=1e-12)


def test_support_is_uniform_over_coordinates():
    model = SparseCodingModel(10, 3, seed=0, dtype=np.float64)
    z, _ = model.sample_codes(20000, 1)
    freq = (z != 0).mean(axis=0)
    np.testing.assert_allclose(freq, 0.3, atol=5 * np.sqrt(0.3 * 0.7 / 20000))


def test_noise_statistics():
    d, sigma = 64, 0.5
    model = SparseCodingModel(d, 4, noise=sigma, seed=0, dtype=np.float64)
    x, _, z = model.sample(5000, 3)
    xi = x - z @ model.dictionary.T
    assert abs(xi.mean()) < 5 * sigma / np.sqrt(d * xi.size)
    assert abs(xi.var() / (sigma**2 / d) - 1) < 0.05


def test_margin_is_respected():
    model = SparseCodingModel(50, 5, margin=0.5, seed=1, dtype=np.float64)
    _, y, z = model.sample(2000, 2)
    score = z @ model.w_star
    assert np.all(np.abs(score) >= 0.5)
    np.testing.assert_array_equal(np.sign(score), y)


def test_same_seed_same_samples():
    model = SparseCodingModel(40, 4, seed=3)
    a = model.sample(100, 7)
    b = model.sample(100, np.random.default_rng(7))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(model.sample(100, 8)[0], a[0])


def test_fixed_training_set_batches_come_from_the_set():
    model = SparseCodingModel(20, 2, seed=0)
    data = TrainingData(model, 50, np.random.default_rng(0))
    x, y, z = data.batch(30)
    rows = {tuple(r) for r in data.fixed[0]}
    assert all(tuple(r) in rows for r in x)


@pytest.mark.parametrize("kwargs,match", [
    (dict(d=1, k=1), "d must lie in"),
    (dict(d=10, k=10), "k must lie in"),
    (dict(d=10, k=0.5), "k must lie in"),
    (dict(d=10, k=2, dictionary="dct"), "dictionary must be one of"),
    (dict(d=12, k=2, dictionary="hadamard"), "power of two"),
    (dict(d=10, k=2, noise=-1), "noise must lie in"),
    (dict(d=10, k=2, margin=float("nan")), "margin must be finite"),
    (dict(d=10, k=2, magnitude=(2, 1)), r"magnitude\[1\] must lie in"),
])
def test_bad_model_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseCodingModel(**kwargs)


def test_bad_sample_sizes():
    model = SparseCodingModel(10, 2)
    with pytest.raises(ValueError, match="n must lie in"):
        model.sample(0)
    with pytest.raises(TypeError, match="n must be an integer"):
        model.sample(2.5)
    with pytest.raises(TypeError, match="d must be an integer"):
        SparseCodingModel(10.0, 2)
    with pytest.raises(ValueError, match="margin=.* too large"):
        SparseCodingModel(10, 1, margin=100.0).sample(5)


@pytest.mark.parametrize("k, magnitude, noise, support", [
    (9, (1.0, 1.2), 0.0, "bernoulli"), (16, (1.0, 1.2), 0.3, "exact"), (2, (1.0, 2.0), 0.0, "bernoulli"),
    (1, (0.5, 3.0), 0.0, "bernoulli"), (4, (1.0, 1.0), 0.5, "exact")])
def test_mean_square_norm_matches_samples(k, magnitude, noise, support):
    # (1, (0.5, 3)) and (2, (1, 2)) clip magnitudes at 1; (1, 1) is the equal-magnitude case
    from fpsim.data import mean_square_norm
    model = SparseCodingModel(200, k, magnitude=magnitude, noise=noise, support=support, seed=1,
                              dtype=np.float64)
    x, _, _ = model.sample(20000, np.random.default_rng(0))
    squares = (x ** 2).sum(axis=1)
    error = 4 * squares.std() / np.sqrt(len(squares)) + 1e-12
    assert abs(mean_square_norm(k, magnitude, noise) - squares.mean()) < error
    with pytest.raises(ValueError, match="magnitude"):
        mean_square_norm(k, (2.0, 1.0))


def test_scores_before_margin_are_the_teacher_scores_of_the_codes_drawn():
    # without a margin the sampler keeps every code of its one round: the same draws, scored densely
    model = SparseCodingModel(60, 5, magnitude=(1.0, 2.0), seed=2)
    scores = model.scores_before_margin(300, np.random.default_rng(7))
    z, y = model.sample_codes(300, np.random.default_rng(7))
    np.testing.assert_allclose(scores, z.astype(np.float64) @ model.w_star, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.where(scores >= 0, 1, -1), y)
    with pytest.raises(ValueError, match="n"):
        model.scores_before_margin(0)
