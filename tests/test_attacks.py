import numpy as np
import pytest
from hypothesis import given, strategies as st

from fpsim import SparseCodingModel, TwoLayerNet
from fpsim.attacks import (ATTACK_NAMES, apgd_checkpoints, attack_margin, attack_margins, dense_direction, fgm,
                           first_breaker, pgd, random_in_ball)

NORMS = [2, np.inf]


class Linear:
    """Duck-typed linear classifier f(x) = <v, x> with the logistic-loss input gradient."""

    def __init__(self, v):
        self.v = np.asarray(v, dtype=np.float64)

    def forward(self, x):
        return np.asarray(x, dtype=np.float64) @ self.v

    def input_grad(self, x, y):
        margin = y * self.forward(x)
        return (-y / (1.0 + np.exp(margin)))[:, None] * self.v[None, :]


class Wrapped:
    """A TwoLayerNet seen only through forward/input_grad (no workspace path)."""

    def __init__(self, net):
        self.net = net

    def forward(self, x):
        return self.net.forward(x)

    def input_grad(self, x, y):
        return self.net.input_grad(x, y)


def _problem(seed, n=40, d=8, m=12, theta=0.3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    net = TwoLayerNet((rng.standard_normal((m, d)) / np.sqrt(d)).astype(dtype), threshold=theta)
    x = rng.standard_normal((n, d)).astype(dtype)
    y = np.where(rng.random(n) < 0.5, -1, 1)
    return net, x, y


def _margin(net, x, y, delta):
    return y * net.forward(x + delta)


def _norms(delta, norm):
    return np.linalg.norm(delta.astype(np.float64), ord=norm, axis=1)


@given(seed=st.integers(0, 2**16), norm=st.sampled_from(NORMS), tau=st.floats(0.0, 3.0),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_every_attack_stays_in_its_ball(seed, norm, tau, dtype):
    net, x, y = _problem(seed, n=16, dtype=dtype)
    model = SparseCodingModel(8, 2, seed=seed % 7)
    deltas = [fgm(net, x, y, norm, tau), pgd(net, x, y, norm, tau, steps=4, restarts=2, rng=seed),
              dense_direction(model, x, y, norm, tau), random_in_ball(np.random.default_rng(seed), x.shape,
                                                                       norm == np.inf, tau, dtype)]
    for delta in deltas:
        assert delta.shape == x.shape and delta.dtype == x.dtype
        assert np.all(_norms(delta, norm) <= tau * (1 + 1e-5) + 1e-12)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("kind", ["net", "wrapped", "linear"])
def test_attacks_on_a_linear_model_reach_the_closed_form_worst_case(norm, kind):
    # Threshold 0 makes every unit s(u) = u, so f(x) = <sum_i w_i, x> is linear and
    # min_{||delta||_p <= tau} y f(x + delta) = y f(x) - tau ||sum_i w_i||_q exactly.
    net, x, y = _problem(3, theta=0.0)
    v = net.W.sum(axis=0)
    tau = 0.4
    worst = y * (x @ v) - tau * np.linalg.norm(v, ord=1 if norm == np.inf else 2)
    classifier = {"net": net, "wrapped": Wrapped(net), "linear": Linear(v)}[kind]
    np.testing.assert_allclose(_margin(classifier, x, y, fgm(classifier, x, y, norm, tau)), worst,
                               rtol=1e-10, atol=1e-10)
    pgd_margin = _margin(classifier, x, y, pgd(classifier, x, y, norm, tau, rng=0))
    assert np.all(pgd_margin >= worst - 1e-10)
    # the APGD step 2 tau reaches the sphere (the vertex for l_inf) in one step: the exact worst case
    np.testing.assert_allclose(pgd_margin, worst, atol=1e-9)
    old = _margin(classifier, x, y, pgd(classifier, x, y, norm, tau, rng=0, zero_start=False, schedule="fixed"))
    if norm == 2:  # the old fixed step from a random start ends short of the sphere, within 20 %
        assert np.all(old - worst <= 0.2 * tau * np.linalg.norm(v)) and np.any(old > worst + 1e-6)
    dense = dense_direction(v, x, y, norm, tau)
    np.testing.assert_allclose(_margin(net, x, y, dense), worst, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("norm", NORMS)
def test_pgd_is_at_least_as_damaging_as_fgm(norm):
    rng = np.random.default_rng(5)
    d, m = 20, 40
    net = TwoLayerNet(rng.standard_normal((m, d)) / np.sqrt(d), threshold=0.5)
    x = rng.standard_normal((200, d))
    y = np.where(net.forward(x) >= 0, 1, -1)  # clean-correct everywhere
    tau = 0.5 if norm == 2 else 0.5 / np.sqrt(d)
    fgm_margin = _margin(net, x, y, fgm(net, x, y, norm, tau))
    pgd_margin = _margin(net, x, y, pgd(net, x, y, norm, tau, steps=10, restarts=2, rng=1))
    assert pgd_margin.mean() < fgm_margin.mean()
    assert np.mean(pgd_margin < 0) >= np.mean(fgm_margin < 0)


def test_pgd_keeps_the_most_damaging_iterate_and_is_deterministic():
    net, x, y = _problem(11)
    kw = dict(steps=3, zero_start=False)
    first = pgd(net, x, y, 2, 0.5, restarts=3, rng=np.random.default_rng(4), **kw)
    again = pgd(net, x, y, 2, 0.5, restarts=3, rng=np.random.default_rng(4), **kw)
    other = pgd(net, x, y, 2, 0.5, restarts=3, rng=np.random.default_rng(5), **kw)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    single = pgd(net, x, y, 2, 0.5, restarts=1, rng=np.random.default_rng(4), **kw)
    # The first restart of the 3-restart run is the 1-restart run: more restarts never do worse.
    assert np.all(_margin(net, x, y, first) <= _margin(net, x, y, single) + 1e-12)


def test_workspace_path_matches_duck_typed_path():
    net, x, y = _problem(2, dtype=np.float32)
    fast = pgd(net, x, y, np.inf, 0.2, steps=5, rng=3)
    slow = pgd(Wrapped(net), x, y, np.inf, 0.2, steps=5, rng=3)
    np.testing.assert_array_equal(fast, slow)


def test_zero_gradient_gives_zero_l2_step():
    net, x, y = _problem(1, theta=100.0)  # every unit dead: f = 0 and grad = 0 around x
    np.testing.assert_array_equal(fgm(net, x, y, "l2", 0.3), 0.0)
    np.testing.assert_array_equal(fgm(net, x, y, "inf", 0.3), 0.0)


def test_dense_direction_uses_the_model_label_direction():
    model = SparseCodingModel(16, 2, seed=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 16))
    y = np.array([1, -1, 1, 1, -1])
    v = model.dictionary @ model.w_star
    np.testing.assert_allclose(dense_direction(model, x, y, 2, 0.7), -0.7 * y[:, None] * v / np.linalg.norm(v))
    np.testing.assert_allclose(dense_direction(3 * v, x, y, "inf", 0.7), -0.7 * y[:, None] * np.sign(v))


def test_bad_arguments_are_refused():
    net, x, y = _problem(0)
    with pytest.raises(ValueError, match="norm"):
        fgm(net, x, y, 1, 0.1)
    with pytest.raises(ValueError, match="tau"):
        pgd(net, x, y, 2, -0.1)
    with pytest.raises(ValueError, match="steps"):
        pgd(net, x, y, 2, 0.1, steps=0)
    with pytest.raises(ValueError, match="restarts"):
        pgd(net, x, y, 2, 0.1, restarts=-1)
    with pytest.raises(ValueError, match="step_size"):
        pgd(net, x, y, 2, 0.1, step_size=0.0)
    with pytest.raises(ValueError, match="restarts"):
        pgd(net, x, y, 2, 0.1, restarts=0, zero_start=False)
    with pytest.raises(ValueError, match="schedule"):
        pgd(net, x, y, 2, 0.1, schedule="adam")
    with pytest.raises(ValueError, match="loss"):
        pgd(net, x, y, 2, 0.1, loss="hinge")
    with pytest.raises(ValueError, match="y"):
        fgm(net, x, np.zeros(len(y)), 2, 0.1)
    with pytest.raises(TypeError, match="input_grad"):
        fgm(object(), x, y, 2, 0.1)
    with pytest.raises(ValueError, match="direction"):
        dense_direction(np.zeros(x.shape[1]), x, y, 2, 0.1)
    with pytest.raises(ValueError, match="direction"):
        dense_direction(np.ones(3), x, y, 2, 0.1)


def test_attack_margin_is_the_worst_of_the_attacks():
    net, x, y = _problem(8)
    model = SparseCodingModel(8, 2, seed=1)
    worst = attack_margin(net, x, y, 2, 0.3, model=model, pgd_steps=5, restarts=1, rng=0)
    candidates = [np.zeros_like(x), fgm(net, x, y, 2, 0.3), pgd(net, x, y, 2, 0.3, steps=5, restarts=0),
                  pgd(net, x, y, 2, 0.3, steps=5, rng=0, zero_start=False), dense_direction(model, x, y, 2, 0.3)]
    np.testing.assert_allclose(worst, np.min([_margin(net, x, y, d) for d in candidates], axis=0), atol=1e-12)
    assert np.all(worst <= y * net.forward(x))
    margins = attack_margins(net, x, y, 2, 0.3, model=model, pgd_steps=5, restarts=1, rng=0)
    assert tuple(margins) == ATTACK_NAMES
    np.testing.assert_array_equal(worst, np.min(list(margins.values()), axis=0))
    with pytest.raises(ValueError, match="pgd_steps"):
        attack_margin(net, x, y, 2, 0.3, pgd_steps=0)


def test_first_breaker_names_the_attack_of_lowest_margin():
    margins = {"clean": np.array([1.0, -1.0, 2.0, 0.5]), "fgm": np.array([0.5, -2.0, -0.1, 0.4]),
               "pgd_zero": np.array([0.2, -3.0, -0.3, 0.5])}
    np.testing.assert_array_equal(first_breaker(margins), ["", "pgd_zero", "pgd_zero", ""])
    margins["fgm"][3] = 0.0  # a margin of exactly 0 is broken (robust means y f > 0)
    assert first_breaker(margins)[3] == "fgm"


def test_margin_and_logistic_losses_give_the_same_iterates_in_float64():
    # grad l = sigma(-yf) grad(-yf) and the steps are normalised: same direction, same iterates.
    net, x, y = _problem(6)
    for norm in NORMS:
        logistic = pgd(net, x, y, norm, 0.4, steps=8, rng=2)
        margin = pgd(net, x, y, norm, 0.4, steps=8, rng=2, loss="margin")
        np.testing.assert_allclose(margin, logistic, atol=1e-9)
        np.testing.assert_allclose(pgd(Wrapped(net), x, y, norm, 0.4, steps=8, rng=2, loss="margin"), margin,
                                   atol=1e-9)


def test_margin_loss_still_moves_where_the_logistic_gradient_underflows():
    # float32 and margins of ~100: sigma(-yf) ~ e^-100 underflows to 0, the logistic gradient vanishes.
    rng = np.random.default_rng(0)
    net = TwoLayerNet((30.0 * rng.standard_normal((6, 5))).astype(np.float32), threshold=0.0)
    x = rng.standard_normal((20, 5)).astype(np.float32)
    x = x[np.abs(net.forward(x)) > 110]
    y = np.where(net.forward(x) >= 0, 1, -1)
    assert len(x) > 0
    stuck = pgd(net, x, y, 2, 0.5, steps=3, restarts=0)
    moved = pgd(net, x, y, 2, 0.5, steps=3, restarts=0, loss="margin")
    np.testing.assert_array_equal(stuck, 0.0)
    assert np.all(_margin(net, x, y, moved) < y * net.forward(x))


def test_apgd_checkpoints_shrink_to_the_minimum_spacing():
    points = apgd_checkpoints(100)
    assert points[0] == 22 and all(0 < p < 100 for p in points)
    gaps = np.diff([0] + points)
    assert np.all(np.diff(gaps) <= 0) and gaps.min() == 6
    assert apgd_checkpoints(1) == []


@pytest.mark.parametrize("norm", NORMS)
def test_new_attack_breaks_at_least_as_many_examples_as_the_old_one_on_a_clean_net(norm):
    from fpsim import train_clean
    model = SparseCodingModel(60, 3, seed=0, dtype=np.float64)
    net, _ = train_clean(TwoLayerNet.random(80, 60, threshold=0.3, seed=1, dtype=np.float64), model, 300, 64, 0.5)
    x, y, _ = model.sample(300, 2)
    tau = 0.5 if norm == 2 else 0.5 / np.sqrt(60)
    old = np.minimum(_margin(net, x, y, fgm(net, x, y, norm, tau)),
                     _margin(net, x, y, pgd(net, x, y, norm, tau, steps=20, restarts=2, rng=0, zero_start=False,
                                            schedule="fixed")))
    new = attack_margin(net, x, y, norm, tau, pgd_steps=20, restarts=2, rng=0)
    assert 0 < np.sum(old <= 0) <= np.sum(new <= 0)
    assert np.mean(new) < np.mean(old)


@pytest.mark.parametrize("schedule, restarts, zero_start", [("fixed", 1, False), ("fixed", 3, False),
                                                             ("apgd", 2, True)])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pgd_units_are_the_preactivations_at_the_returned_perturbation(schedule, restarts, zero_start, norm, dtype):
    net, x, y = _problem(5, n=60, dtype=dtype)
    kw = dict(steps=6, restarts=restarts, zero_start=zero_start, schedule=schedule)
    plain = pgd(net, x, y, norm, 0.6, rng=np.random.default_rng(2), **kw)
    units = np.full((len(x), net.m), np.nan, dtype)
    delta = pgd(net, x, y, norm, 0.6, rng=np.random.default_rng(2), units=units, **kw)
    np.testing.assert_array_equal(delta, plain)          # asking for the units changes nothing else
    np.testing.assert_allclose(units, net.preactivations(x + delta), rtol=0, atol=8 * np.finfo(dtype).eps)


def test_pgd_units_need_a_two_layer_net_and_the_right_buffer():
    net, x, y = _problem(0)
    with pytest.raises(TypeError, match="units"):
        pgd(Wrapped(net), x, y, 2, 0.1, units=np.empty((len(x), net.m)))
    with pytest.raises(ValueError, match="units"):
        pgd(net, x, y, 2, 0.1, units=np.empty((len(x), net.m + 1)))
    with pytest.raises(ValueError, match="units"):
        pgd(net, x, y, 2, 0.1, units=np.empty((len(x), net.m), np.float32))


def _atom_net(dtype, activation="relu", m=80):
    """Atom-aligned units plus a small dense mixture (few active units per example, as after clean training)."""
    model = SparseCodingModel(40, 4, seed=1)
    W = np.repeat(model.dictionary.T, m // 40, axis=0) + 0.05 * np.random.default_rng(2).standard_normal((m, 40))
    net = TwoLayerNet(W.astype(dtype), threshold=0.3, activation=activation)
    x, y, _ = model.sample(32, 3)
    return net, x.astype(dtype), y


@pytest.mark.parametrize("activation", ["relu", "smooth"])
@pytest.mark.parametrize("restarts", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pgd_through_the_gram_matrix_gives_the_same_iterates(monkeypatch, activation, restarts, dtype):
    """l2 fixed-step PGD with its pre-activations followed through K = W W^T agrees with forming them."""
    import fpsim.kernels
    import fpsim.network
    from fpsim.network import Gram
    monkeypatch.setattr(fpsim.network, "GRAM_CROSSOVER", 1.0)  # follow K whatever it costs at this size
    net, x, y = _atom_net(dtype, activation)
    calls = []
    advance = fpsim.kernels.gram_advance
    monkeypatch.setattr(fpsim.kernels, "gram_advance", lambda *a: (calls.append(1), advance(*a)))
    gram = Gram(net.m, dtype)
    gram.refresh(net.W)
    kw = dict(steps=5, restarts=restarts, zero_start=False, schedule="fixed")
    formed_units, followed_units = (np.empty((len(x), net.m), dtype) for _ in range(2))
    formed = pgd(net, x, y, 2, 0.5, rng=np.random.default_rng(2), units=formed_units, **kw)
    followed = pgd(net, x, y, 2, 0.5, rng=np.random.default_rng(2), units=followed_units, gram=gram, **kw)
    assert len(calls) == 5 * restarts                   # every step was followed through K
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(followed, formed, rtol=0, atol=1e3 * eps)
    np.testing.assert_allclose(followed_units, net.preactivations(x + followed), rtol=0, atol=1e3 * eps)
    gram.current = False                                # a stale K is not used: the products are formed
    np.testing.assert_array_equal(pgd(net, x, y, 2, 0.5, rng=np.random.default_rng(2), gram=gram, **kw),
                                  pgd(net, x, y, 2, 0.5, rng=np.random.default_rng(2), **kw))
    assert len(calls) == 5 * restarts


def test_pgd_gram_needs_l2_fixed_steps_and_a_matching_matrix():
    from fpsim.network import Gram
    net, x, y = _atom_net(np.float32)
    gram = Gram(net.m, np.float32)
    for kw in (dict(norm=np.inf, schedule="fixed"), dict(norm=2, schedule="apgd"),
               dict(norm=2, schedule="fixed", loss="margin")):
        with pytest.raises(ValueError, match="gram needs"):
            pgd(net, x, y, tau=0.1, gram=gram, **kw)
    with pytest.raises(ValueError, match="gram must be"):
        pgd(net, x, y, 2, 0.1, schedule="fixed", gram=Gram(net.m, np.float64))
    with pytest.raises(ValueError, match="gram needs"):
        pgd(Wrapped(net), x, y, 2, 0.1, schedule="fixed", gram=gram)


def test_pgd_forms_the_products_where_following_k_does_not_pay(monkeypatch):
    """At the default crossover this small net (|A| / (n d) ~ 0.2) is cheaper to multiply directly."""
    import fpsim.kernels
    from fpsim.network import Gram
    net, x, y = _atom_net(np.float32)
    calls = []
    monkeypatch.setattr(fpsim.kernels, "gram_advance", lambda *a: calls.append(1))
    gram = Gram(net.m, np.float32)
    gram.refresh(net.W)
    kw = dict(steps=5, zero_start=False, schedule="fixed")
    followed = pgd(net, x, y, 2, 0.5, rng=np.random.default_rng(2), gram=gram, **kw)
    assert calls == []
    np.testing.assert_allclose(followed, pgd(net, x, y, 2, 0.5, rng=np.random.default_rng(2), **kw),
                               rtol=0, atol=1e3 * np.finfo(np.float32).eps)
