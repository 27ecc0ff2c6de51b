import warnings

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from fpsim import Threshold, TwoLayerNet
from fpsim import kernels

ACTIVATIONS = [dict(activation="relu"), dict(activation="smooth", q=2.0, rho=0.2),
               dict(activation="smooth", q=3.0, rho=0.5)]


def _unit(u, bias, net):
    f = np.empty(u.shape[0])
    slope = np.empty_like(u)
    kernels.soft_threshold_units(u, bias, net.q, net.rho_effective, f, slope)
    return f, slope


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_unit_is_odd_and_non_decreasing(act):
    net = TwoLayerNet(np.ones((1, 1)), **act)
    u = np.linspace(-3, 3, 601)[:, None]
    bias = np.array([0.7])
    f, slope = _unit(u, bias, net)
    f_neg, _ = _unit(-u, bias, net)
    np.testing.assert_allclose(f_neg, -f, atol=1e-15)
    assert np.all(np.diff(f) >= 0)
    assert np.all(slope >= 0) and np.all(slope <= 1)
    assert np.all(f[np.abs(u[:, 0]) <= 0.7] == 0)  # dead zone of the soft threshold
    if act["activation"] == "relu":
        np.testing.assert_allclose(f, np.sign(u[:, 0]) * np.maximum(np.abs(u[:, 0]) - 0.7, 0))


def _fd_check(net, x, y, lam, bias):
    loss, grad = net.loss_grad(x, y, lam, bias=bias)
    grad = grad.copy()
    gx = net.input_grad(x, y, bias=bias).copy()
    eps = 1e-6
    W = net.W.copy()
    num = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        for sgn in (1, -1):
            W2 = W.copy()
            W2[idx] += sgn * eps
            net.W = W2
            num[idx] += sgn * net.loss(x, y, lam, bias=bias) / (2 * eps)
    net.W = W
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)
    # per-example input gradient of l(y f(x)) = n * d(mean loss)/dx_b
    num_x = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        for sgn in (1, -1):
            x2 = x.copy()
            x2[idx] += sgn * eps
            num_x[idx] += sgn * net.loss(x2, y, 0.0, bias=bias) * len(y) / (2 * eps)
    np.testing.assert_allclose(gx, num_x, rtol=1e-5, atol=1e-7)


@given(m=st.integers(1, 5), d=st.integers(1, 5), n=st.integers(1, 4), theta=st.floats(0, 1.5),
       lam=st.sampled_from([0.0, 0.1]), act=st.sampled_from(ACTIVATIONS),
       seed=st.integers(0, 10**6))
def test_gradients_match_finite_differences(m, d, n, theta, lam, act, seed):
    rng = np.random.default_rng(seed)
    net = TwoLayerNet(rng.standard_normal((m, d)), threshold=theta, **act)
    x = rng.standard_normal((n, d))
    y = rng.choice([-1, 1], n)
    bias = net.bias()
    u = x @ net.W.T
    kinks = [bias, -bias]
    if act["activation"] == "smooth":
        kinks += [bias + net.rho, -bias - net.rho]
    # stay away from the kinks, where the derivative is not defined
    assume(min(np.abs(u - k).min() for k in kinks) > 1e-3)
    _fd_check(net, x, y, lam, bias)


def test_relative_and_absolute_bias():
    W = np.array([[3.0, 4.0], [0.0, 1.0]])
    assert np.allclose(TwoLayerNet(W, threshold=0.5).bias(), [2.5, 0.5])
    assert np.allclose(TwoLayerNet(W, threshold=Threshold(0.5, kind="absolute")).bias(), [0.5, 0.5])


def test_threshold_ramp():
    th = Threshold(0.1, end=0.3, ramp_steps=10)
    assert th.at(0) == 0.1 and th.at(10) == 0.3 and th.at(100) == 0.3
    assert np.isclose(th.at(5), 0.2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_finite_at_extreme_margins(dtype):
    net = TwoLayerNet(np.array([[1.0]], dtype=dtype), threshold=0.0)
    x = np.array([[1e4], [-1e4], [1e4], [-1e4]], dtype=dtype)
    y = np.array([1, 1, -1, -1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = net.loss_grad(x, y)
        gx = net.input_grad(x, y)
    assert np.isfinite(loss) and np.all(np.isfinite(grad)) and np.all(np.isfinite(gx))
    # two examples at margin -1e4 contribute 1e4 each to the sum
    assert np.isclose(loss, (2 * 1e4 + 2 * np.log1p(np.exp(-1e4))) / 4, rtol=1e-6)
    assert grad.dtype == dtype


def test_float32_and_float64_agree():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((20, 10))
    x = rng.standard_normal((30, 10))
    y = rng.choice([-1, 1], 30)
    l64, g64 = TwoLayerNet(W, threshold=0.2).loss_grad(x, y)
    l32, g32 = TwoLayerNet(W.astype(np.float32), threshold=0.2).loss_grad(x.astype(np.float32), y)
    assert abs(l64 - l32) < 1e-5
    np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-4)


def test_random_init_is_seeded():
    a = TwoLayerNet.random(5, 7, seed=3).W
    np.testing.assert_array_equal(a, TwoLayerNet.random(5, 7, seed=3).W)
    assert not np.array_equal(a, TwoLayerNet.random(5, 7, seed=4).W)
    assert np.isclose(TwoLayerNet.random(400, 100, seed=0, dtype=np.float64).W.std(), 1 / 100, rtol=0.02)


def test_bad_network_input():
    net = TwoLayerNet.random(3, 4)
    with pytest.raises(ValueError, match="x must have shape"):
        net.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="x contains NaN"):
        net.forward(np.full((2, 4), np.nan))
    with pytest.raises(TypeError, match="x must be a real"):
        net.forward(np.zeros((2, 4), dtype=complex))
    with pytest.raises(ValueError, match="y must contain only"):
        net.loss_grad(np.zeros((2, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match="W contains NaN"):
        net.W = np.full((3, 4), np.inf)
    with pytest.raises(ValueError, match="W must have shape"):
        net.W = np.zeros((4, 3))
    with pytest.raises(ValueError, match="activation must be one of"):
        TwoLayerNet(np.zeros((2, 2)), activation="tanh")
    with pytest.raises(ValueError, match="q must lie in"):
        TwoLayerNet(np.zeros((2, 2)), activation="smooth", q=1.5)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        TwoLayerNet.random(2, 2, dtype=np.int32)
    with pytest.raises(ValueError, match="threshold must lie in"):
        TwoLayerNet(np.zeros((2, 2)), threshold=-0.1)


@pytest.mark.parametrize("act", ACTIVATIONS[:2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_backward_equals_dense_backward(monkeypatch, act, dtype):
    """Gradients, the SGD step, FGM and PGD (both norms) agree whichever backward path is taken."""
    import fpsim.network
    from fpsim import SparseCodingModel, fgm, pgd
    model = SparseCodingModel(40, 4, seed=1)
    # atom-aligned units plus a small dense mixture: few active units per example, as after clean training
    W = np.repeat(model.dictionary.T, 2, axis=0) + 0.05 * np.random.default_rng(2).standard_normal((80, 40))
    net = TwoLayerNet(W.astype(dtype), threshold=0.3, **act)
    x, y, _ = model.sample(32, 3)
    x = x.astype(dtype)
    results = {}
    for crossover in (0.0, 1.0):
        monkeypatch.setattr(fpsim.network, "SPARSE_CROSSOVER", crossover)
        ws = fpsim.network.Workspace(32, 80, 40, net.dtype)
        loss, grad = net.loss_grad(x, y, 0.01, workspace=ws)
        assert (ws.nnz >= 0) == (crossover == 1.0)  # the path actually taken
        stepped = net.copy()
        step_loss = stepped.sgd_step(x, y, 0.5, 0.01, workspace=ws)
        results[crossover] = dict(
            loss=loss, grad=grad.copy(), step_loss=step_loss, W=stepped.W,
            input_grad=net.input_grad(x, y, workspace=ws).copy(),
            **{f"{a}_{p}": attack(net, x, y, p, 0.2) for p in (2, np.inf)
               for a, attack in (("fgm", fgm), ("pgd", lambda *args: pgd(*args, steps=4, rng=5)))})
    active = np.count_nonzero(ws.u) / ws.u.size
    assert 0 < active < 0.5  # a sparse regime that exercises both lists
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for key, dense in results[0.0].items():
        np.testing.assert_allclose(results[1.0][key], dense, **tol, err_msg=key)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_step_with_given_preactivations_is_the_same_step(dtype):
    rng = np.random.default_rng(4)
    net = TwoLayerNet(rng.standard_normal((30, 10)).astype(dtype), threshold=0.5)
    x, y = rng.standard_normal((16, 10)).astype(dtype), rng.choice([-1, 1], 16)
    units = net.preactivations(x)
    kept = units.copy()
    given, formed = net.copy(), net.copy()
    assert given.sgd_step(x, y, 0.3, 0.01, units=units) == formed.sgd_step(x, y, 0.3, 0.01)
    np.testing.assert_array_equal(given.W, formed.W)
    np.testing.assert_array_equal(units, kept)  # read, not modified
    with pytest.raises(ValueError, match="units"):
        net.sgd_step(x, y, 0.3, units=units[:, :5])


def test_sparse_path_is_chosen_by_the_active_fraction():
    from fpsim.network import Workspace
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 10)), rng.choice([-1, 1], 64)
    for theta, sparse in ((0.0, False), (100.0, True)):  # every unit active / none active
        net = TwoLayerNet(rng.standard_normal((30, 10)), threshold=theta)
        ws = Workspace(64, 30, 10, net.dtype, crossover=0.1)
        net.input_grad(x, y, workspace=ws)
        assert (ws.nnz >= 0) == sparse
        assert ws.active_fraction == (0.0 if sparse else 1.0)
    with pytest.raises(ValueError, match="crossover"):
        Workspace(4, 3, 2, np.float64, crossover=1.5)


def test_random_net_too_large_for_memory_is_refused_before_allocating():
    with pytest.raises(ValueError, match=r"m=1000000, d=100000.*GiB"):
        TwoLayerNet.random(m=10**6, d=10**5)


@pytest.mark.parametrize("activation", ["relu", "smooth"])
def test_forward64_is_the_float64_function_of_the_stored_weights(activation):
    rng = np.random.default_rng(3)
    net = TwoLayerNet(rng.standard_normal((30, 20)).astype(np.float32), threshold=0.2, activation=activation)
    x = rng.standard_normal((50, 20))
    f64 = net.forward64(x)
    assert f64.dtype == np.float64
    twin = TwoLayerNet(net.W.astype(np.float64), threshold=0.2, activation=activation)
    # same weights, biases rounded to the net's dtype: equal to float64 rounding, not float32's
    np.testing.assert_allclose(f64, twin.forward(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(f64, net.forward(x.astype(np.float32)), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="x"):
        net.forward64(x[:, :5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gram_follows_sparse_steps_and_is_stale_after_a_dense_one(monkeypatch, dtype):
    """K = W W^T carried through sparse SGD steps (units given or not) stays W W^T; a dense step stales it,
    and so does a sparse step where following K does not pay."""
    import fpsim.network
    from fpsim import SparseCodingModel
    from fpsim.network import Gram, Workspace
    monkeypatch.setattr(fpsim.network, "GRAM_CROSSOVER", 1.0)
    model = SparseCodingModel(40, 4, seed=1)
    W = np.repeat(model.dictionary.T, 2, axis=0) + 0.05 * np.random.default_rng(2).standard_normal((80, 40))
    net = TwoLayerNet(W.astype(dtype), threshold=0.3)
    gram = Gram(80, dtype)
    gram.refresh(net.W)
    ws = Workspace(32, 80, 40, net.dtype, crossover=1.0)
    plain = net.copy()
    for step in range(20):
        x, y, _ = model.sample(32, step)
        x = x.astype(dtype)
        units = net.preactivations(x) if step % 2 else None
        net.sgd_step(x, y, 0.5, 0.01, workspace=ws, units=units, gram=gram)
        plain.sgd_step(x, y, 0.5, 0.01, workspace=ws, units=units)
        assert ws.nnz >= 0 and gram.current
    np.testing.assert_array_equal(net.W, plain.W)        # following K changes nothing in the step
    exact = net.W.astype(np.float64) @ net.W.T.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gram.matrix, exact, rtol=0, atol=tol * np.abs(exact).max())
    net.sgd_step(x, y, 0.5, workspace=Workspace(32, 80, 40, net.dtype, crossover=0.0), gram=gram)
    assert not gram.current
    gram.refresh(net.W)
    assert gram.pays(ws.nnz, 32, 40)
    monkeypatch.setattr(fpsim.network, "GRAM_CROSSOVER", 0.5 * ws.nnz / (32 * 40))
    net.sgd_step(x, y, 0.5, workspace=ws, gram=gram)
    assert ws.nnz >= 0 and not gram.pays(ws.nnz, 32, 40) and not gram.current
    with pytest.raises(ValueError, match="m must"):
        Gram(0, dtype)
    with pytest.raises(ValueError, match="gram must be"):   # checked before the kernels index it
        net.sgd_step(x, y, 0.5, workspace=ws, gram=Gram(79, dtype))


def test_gram_is_due_every_refresh_interval_while_wanted_and_at_every_checkpoint():
    """K is formed again every Gram.REFRESH steps only while following it pays, and at every checkpoint step."""
    from fpsim.network import Gram
    gram = Gram(3, np.float64)
    steps = range(3 * Gram.REFRESH)
    checkpoints = [t for t in steps if t % 70 == 0]
    due = [t for t in steps if gram.due(t, checkpoint_every=70)]
    assert due == sorted(set(checkpoints) | {0, Gram.REFRESH, 2 * Gram.REFRESH})
    gram.wanted = False
    assert [t for t in steps if gram.due(t, checkpoint_every=70)] == checkpoints
    assert not any(gram.due(t) for t in range(3 * Gram.REFRESH))
