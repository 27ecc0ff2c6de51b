"""C6 baselines: exact robust accuracy of the linear model, gradients, training."""
import itertools

import numpy as np
import pytest

from fpsim import attacks
from fpsim.baselines import (LinearClassifier, NTKClassifier, PolynomialClassifier, linear_critical_radius,
                             train_baseline)
from fpsim.certify import critical_radius, robust_accuracy
from fpsim.data import SparseCodingModel
from fpsim.network import TwoLayerNet


def samples(d, n, seed=0, k=3, **kw):
    data = SparseCodingModel(d, k, seed=seed, dtype=np.float64, **kw)
    x, y, _ = data.sample(n, seed + 100)
    return data, x, y


def ntk(d=10, m=14, seed=0):
    net = TwoLayerNet.random(m, d, sigma0=0.5, threshold=0.2, seed=seed, dtype=np.float64)
    model = NTKClassifier(net)
    model.delta[:] = 0.3 * np.random.default_rng(seed + 1).standard_normal(model.delta.shape)
    return net, model


def all_models(d=10):
    poly2 = PolynomialClassifier(d, degree=2, rank=4, sigma0=0.5, seed=1)
    poly3 = PolynomialClassifier(d, degree=3, rank=5, sigma0=0.5, seed=2)
    poly3.e[:] = np.linspace(-0.5, 0.5, 5)
    poly3.c[:] = 0.2
    return [LinearClassifier(d, sigma0=1.0, seed=3), poly2, poly3, ntk(d)[1]]


# -- the linear model's exact robust accuracy ---------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_linear_linf_robust_margin_equals_worst_vertex(seed):
    d, tau = 6, 0.15
    _, x, y = samples(d, 30, seed=seed, k=2)
    model = LinearClassifier(d, sigma0=1.0, seed=seed)
    model.c[:] = 0.1
    vertices = tau * np.array(list(itertools.product((-1.0, 1.0), repeat=d)))   # (2^d, d)
    worst = np.min(y[:, None] * ((x @ model.u)[:, None] + vertices @ model.u + model.c[0]), axis=1)
    np.testing.assert_allclose(model.certified_margin(x, y, "inf", tau), worst, atol=1e-12)
    robust = robust_accuracy(model, x, y, "inf", tau, pgd_steps=5)
    assert robust.lower == robust.upper == np.mean(worst > 0)   # the attacks find the exact worst case
    np.testing.assert_array_equal(robust.method, np.where(worst > 0, "exact", ""))


def test_linear_l2_robust_margin_is_attained_and_never_beaten():
    d, tau = 8, 0.3
    _, x, y = samples(d, 40, seed=1)
    model = LinearClassifier(d, sigma0=1.0, seed=1)
    exact = model.certified_margin(x, y, 2, tau)
    worst_delta = -tau * y[:, None] * model.u / np.linalg.norm(model.u)
    np.testing.assert_allclose(y * model.forward(x + worst_delta), exact, atol=1e-12)
    np.testing.assert_allclose(attacks.fgm(model, x, y, 2, tau), worst_delta, atol=1e-12)
    np.testing.assert_allclose(attacks.fgm(model, x, y, "inf", tau),
                               -tau * y[:, None] * np.sign(model.u), atol=1e-15)
    rng = np.random.default_rng(0)
    for _ in range(20):
        delta = attacks.random_in_ball(rng, x.shape, False, tau, np.float64)
        assert (y * model.forward(x + delta) >= exact - 1e-12).all()


def test_fgm_training_step_is_the_exact_robust_loss_gradient():
    """Danskin: with the closed-form worst case, the adversarial step is the robust-loss gradient."""
    d, tau = 8, 0.2
    _, x, y = samples(d, 50, seed=2)
    model = LinearClassifier(d, sigma0=1.0, seed=2)

    def robust_loss(u, c):
        margin = y * (x @ u + c) - tau * np.linalg.norm(u)
        return np.mean(np.logaddexp(0.0, -margin))

    _, grads = model.loss_grad(x + attacks.fgm(model, x, y, 2, tau), y)
    h = 1e-6
    fd_u = [(robust_loss(model.u + h * e, model.c[0]) - robust_loss(model.u - h * e, model.c[0])) / (2 * h)
            for e in np.eye(d)]
    fd_c = (robust_loss(model.u, model.c[0] + h) - robust_loss(model.u, model.c[0] - h)) / (2 * h)
    np.testing.assert_allclose(grads[0], fd_u, atol=1e-8)
    np.testing.assert_allclose(grads[1], [fd_c], atol=1e-8)


# -- gradients --------------------------------------------------------------------
@pytest.mark.parametrize("index", range(4), ids=["linear", "poly2", "poly3", "ntk"])
def test_input_grad_matches_central_differences(index):
    d = 10
    model = all_models(d)[index]
    _, x, y = samples(d, 6, seed=4)
    grad = model.input_grad(x, y)
    h = 1e-6
    for j in range(d):
        step = np.zeros_like(x)
        step[:, j] = h
        loss_plus = np.logaddexp(0.0, -y * model.forward(x + step))
        loss_minus = np.logaddexp(0.0, -y * model.forward(x - step))
        np.testing.assert_allclose(grad[:, j], (loss_plus - loss_minus) / (2 * h), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("index", range(4), ids=["linear", "poly2", "poly3", "ntk"])
def test_param_grads_match_central_differences(index):
    d = 10
    model = all_models(d)[index]
    _, x, y = samples(d, 8, seed=5)
    lam = 0.05
    _, grads = model.loss_grad(x, y, weight_decay=lam)
    h = 1e-6
    rng = np.random.default_rng(0)
    for param, grad in zip(model.params, grads):
        assert grad.shape == param.shape
        for flat in rng.choice(param.size, size=min(param.size, 6), replace=False):
            index_ = np.unravel_index(flat, param.shape)
            saved = param[index_]
            param[index_] = saved + h
            plus = model.loss_grad(x, y, weight_decay=lam)[0]
            param[index_] = saved - h
            minus = model.loss_grad(x, y, weight_decay=lam)[0]
            param[index_] = saved
            assert grad[index_] == pytest.approx((plus - minus) / (2 * h), abs=1e-7, rel=1e-6)


def test_quadratic_polynomial_is_the_quadratic_form_it_claims():
    d = 7
    model = PolynomialClassifier(d, degree=2, rank=3, seed=6)
    model.e[:] = [0.3, -0.2, 0.1]
    model.c[:] = -0.4
    _, x, _ = samples(d, 10, seed=6)
    Q = (model.V.T * model.signs) @ model.V
    lin = model.u + 2 * (model.signs * model.e) @ model.V
    const = model.c[0] + model.signs @ model.e ** 2
    expected = np.einsum("bi,ij,bj->b", x, Q, x) + x @ lin + const
    np.testing.assert_allclose(model.forward(x), expected, atol=1e-12)


def test_ntk_equals_the_network_at_initialisation():
    d = 10
    net, model = ntk(d, m=20, seed=7)
    model.delta[:] = 0.0
    _, x, y = samples(d, 15, seed=7)
    np.testing.assert_allclose(model.forward(x), net.forward(x), atol=1e-12)
    np.testing.assert_allclose(model.input_grad(x, y), net.input_grad(x, y), atol=1e-12)


def test_ntk_is_linear_in_delta():
    d = 10
    _, model = ntk(d, seed=8)
    _, x, _ = samples(d, 12, seed=8)
    f_delta = model.forward(x)
    delta = model.delta.copy()
    model.delta[:] = 0.0
    f0 = model.forward(x)
    model.delta[:] = 2 * delta
    np.testing.assert_allclose(model.forward(x) - f0, 2 * (f_delta - f0), atol=1e-12)


@pytest.mark.parametrize("norm", [2, np.inf])
def test_linear_critical_radius_is_the_crossing_of_the_exact_curve(norm):
    model = SparseCodingModel(40, 2, magnitude=(1.0, 1.2), margin=0.5, seed=3)
    linear, _ = train_baseline(LinearClassifier(40, seed=1), model, steps=150,
                               batch=64, lr=1.0, seed=3)
    x, y, _ = model.sample(401, np.random.default_rng(7))
    radius = linear_critical_radius(linear, x, y, norm)
    taus = np.linspace(0.0, 2 * radius, 4001)
    exact = np.array([np.mean(linear.certified_margin(x, y, norm, tau) > 0) for tau in taus])
    crossing = critical_radius({"taus": taus, "lower": exact, "upper": exact})["lower"]
    assert abs(crossing - radius) <= taus[1]   # odd n: the median is an example's own radius
    # and it is where fpsim.certify.robust_accuracy (exact for a linear model) drops below 1/2
    above = robust_accuracy(linear, x, y, norm, 0.99 * radius, pgd_steps=1, restarts=1)
    below = robust_accuracy(linear, x, y, norm, 1.01 * radius, pgd_steps=1, restarts=1)
    assert above.lower >= 0.5 > below.lower


def test_linear_critical_radius_counts_misclassified_examples_as_zero():
    linear = LinearClassifier(2)
    linear.u[:] = [3.0, 4.0]
    x = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    assert linear_critical_radius(linear, x, [1, 1, 1], 2) == pytest.approx(3.0 / 5.0)
    assert linear_critical_radius(linear, x, [1, -1, 1], 2) == 0.0
    assert linear_critical_radius(linear, x, [1, 1, 1], np.inf) == pytest.approx(3.0 / 7.0)
    with pytest.raises(TypeError, match="LinearClassifier"):
        linear_critical_radius(object(), x, [1, 1, 1], 2)



# -- training ---------------------------------------------------------------------
def test_linear_training_is_accurate_and_deterministic():
    data = SparseCodingModel(40, 3, margin=0.3, seed=0, dtype=np.float64)
    x, y, _ = data.sample(1000, 99)
    model = LinearClassifier(40, seed=0)
    assert model.accuracy(x, y) < 0.7
    a, history = train_baseline(model, data, steps=200, batch=64, lr=0.5, seed=3, record_every=1)
    b, _ = train_baseline(model, data, steps=200, batch=64, lr=0.5, seed=3)
    assert a.accuracy(x, y) > 0.95
    losses = np.array(history["loss"])
    assert len(losses) == 200 and losses[-20:].mean() < losses[:20].mean()
    assert history["accuracy"][-1] > 0.95  # held-out accuracy, recorded as for the network
    np.testing.assert_array_equal(a.u, b.u)
    assert np.all(model.u == LinearClassifier(40, seed=0).u)        # the input model is untouched


@pytest.mark.parametrize("seed", range(3))
def test_adversarial_training_improves_the_linear_models_exact_robustness(seed):
    """l_inf at tau = 0.05 (clean model: ~39 % robust; adversarial: ~60 %): same seed, same batches."""
    tau = 0.05
    data = SparseCodingModel(40, 3, margin=0.3, seed=0, dtype=np.float64)
    x, y, _ = data.sample(2000, 99)
    start = LinearClassifier(40, seed=seed)
    clean, _ = train_baseline(start, data, steps=300, batch=64, lr=0.5, seed=seed)
    adv, _ = train_baseline(start, data, steps=300, batch=64, lr=0.5, tau=tau, norm="inf",
                            attack="fgm", seed=seed)
    robust_clean, robust_adv = (robust_accuracy(m, x, y, "inf", tau, pgd_steps=2).lower for m in (clean, adv))
    assert robust_adv >= robust_clean + 0.1

    def robust_loss(model):
        return np.mean(np.logaddexp(0.0, -model.certified_margin(x, y, "inf", tau)))

    assert robust_loss(adv) < robust_loss(clean)


@pytest.mark.parametrize("make", [lambda d: PolynomialClassifier(d, degree=3, rank=4, seed=0),
                                  lambda d: ntk(d, m=16, seed=0)[1]], ids=["poly3", "ntk"])
def test_pgd_adversarial_training_runs_and_reports_an_upper_bound(make):
    d, tau = 10, 0.2
    data, x, y = samples(d, 200, seed=9)
    model = make(d)
    kwargs = dict(steps=20, batch=32, lr=0.05, tau=tau, attack="pgd", attack_kwargs={"steps": 3}, seed=1)
    a, history = train_baseline(model, data, **kwargs)
    b, _ = train_baseline(model, data, **kwargs)
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(p, q)
    assert np.isfinite(history["loss"]).all()
    robust = robust_accuracy(a, x, y, 2, tau, model=data, pgd_steps=5, rng=0)
    assert robust.lower == 0.0 and not robust.method.any()
    assert robust.upper <= a.accuracy(x, y)
    assert (robust.attack_margin <= y * a.forward(x)).all()


# -- validation -------------------------------------------------------------------
def test_validation_errors_name_the_parameter():
    data = SparseCodingModel(10, 2, seed=0)
    model = LinearClassifier(10)
    with pytest.raises(ValueError, match="lr must lie in"):
        train_baseline(model, data, steps=1, batch=2, lr=0.0)
    with pytest.raises(ValueError, match="tau must lie in"):
        train_baseline(model, data, steps=1, batch=2, lr=0.1, tau=-1.0)
    with pytest.raises(ValueError, match="attack must be one of"):
        train_baseline(model, data, steps=1, batch=2, lr=0.1, tau=0.1, attack="cw")
    with pytest.raises(ValueError, match="does not match"):
        train_baseline(LinearClassifier(11), data, steps=1, batch=2, lr=0.1)
    with pytest.raises(TypeError, match="model must be"):
        train_baseline(object(), data, steps=1, batch=2, lr=0.1)
    with pytest.raises(ValueError, match="x must have shape"):
        model.forward(np.ones((3, 9)))
    with pytest.raises(ValueError, match="degree must lie in"):
        PolynomialClassifier(10, degree=1)
    with pytest.raises(ValueError, match="activation='relu' only"):
        NTKClassifier(TwoLayerNet.random(3, 10, activation="smooth"))
    with pytest.raises(TypeError, match="TwoLayerNet"):
        NTKClassifier(model)
    with pytest.raises(TypeError, match="net must be a TwoLayerNet or a classifier with forward"):
        robust_accuracy(object(), np.ones((2, 10)), [1, -1], 2, 0.1)


def test_resumed_baseline_training_matches_an_uninterrupted_one(tmp_path):
    """Baselines train in the network's SGD loop, so they checkpoint and resume bit for bit."""
    d = 10
    data, _, _ = samples(d, 10, seed=9)
    kwargs = dict(steps=20, batch=16, lr=0.05, tau=0.2, attack="pgd", attack_kwargs={"steps": 2}, seed=1,
                  eval_size=30, record_every=5, checkpoint_every=10)
    model = PolynomialClassifier(d, degree=2, rank=3, seed=0)
    path = tmp_path / "baseline.npz"
    whole, history = train_baseline(model, data, checkpoint=path, **kwargs)
    assert path.exists()  # left at step 10 of 20, as if the run had stopped there
    resumed, history_resumed = train_baseline(model, data, checkpoint=path, **kwargs)
    for p, q in zip(whole.params, resumed.params):
        np.testing.assert_array_equal(p, q)
    assert history == history_resumed and history["step"] == [5, 10, 15, 20]


def test_divergence_is_a_clear_error():
    from fpsim import SparseCodingModel
    from fpsim.baselines import PolynomialClassifier, train_baseline
    model = SparseCodingModel(20, 2, seed=0)
    with pytest.raises(FloatingPointError, match="diverged.*lower lr"):
        with np.errstate(all="ignore"):
            train_baseline(PolynomialClassifier(20, degree=3, seed=0), model, steps=50, batch=32, lr=1e6)
