"""The public hypothesis strategies: valid objects, the documented structure, shrinking, reproducibility."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, seed, settings, strategies as st

from fpsim.config import Config, build
from fpsim.metrics import dictionary_view
from fpsim.strategies import (batches, configs, invalid_configs, near_ideal_nets, nets, norms, problems,
                              radii, sparse_coding_models, threshold_radius, trained_nets)
from fpsim.testing import worst_case


@given(model=sparse_coding_models(), data=st.data())
def test_models_are_valid_and_their_margin_is_reachable(model, data):
    x, y, z = data.draw(batches(model, n=20))
    assert x.shape == z.shape == (20, model.d) and x.dtype == model.dtype
    score = z.astype(np.float64) @ model.w_star
    np.testing.assert_array_equal(y, np.where(score >= 0, 1, -1))
    assert np.all(np.abs(score) >= model.margin)
    if model.dictionary_kind == "hadamard":
        assert model.d & (model.d - 1) == 0
    if model.noise == 0:
        np.testing.assert_allclose(x, z @ model.dictionary.T.astype(model.dtype), atol=1e-5)


@given(model=sparse_coding_models(d=st.integers(3, 12), dtype=np.float64), rho=st.floats(0.0, 0.9),
       data=st.data())
def test_near_ideal_nets_have_the_dense_mixture_they_are_asked_for(model, rho, data):
    net = data.draw(near_ideal_nets(model, rho))
    view = dictionary_view(net.W, model.dictionary, model.w_star)
    np.testing.assert_allclose(view.dense_share, rho / np.sqrt(1 + rho**2), atol=1e-9)
    assert np.all(view.principal_agrees)  # each unit's atom carries the teacher's sign
    if rho > 0.01:
        np.testing.assert_allclose(view.dense_alignment, 1.0, atol=1e-9)
    assert 0.3 / np.sqrt(model.k) - 1e-12 <= net.threshold.start <= 0.7 / np.sqrt(model.k) + 1e-12


@settings(max_examples=10)
@given(model=sparse_coding_models(d=st.integers(2, 8)), data=st.data())
def test_trained_nets_took_their_steps(model, data):
    net = data.draw(trained_nets(model, max_steps=3))
    assert 1 <= net.step <= 3 and net.d == model.d and net.dtype == model.dtype
    assert np.isfinite(net.W).all()


@given(net=nets(activation="relu", dtype=np.float64), side=st.sampled_from(["below", "above"]),
       data=st.data())
def test_radii_lie_on_the_side_of_the_threshold_they_claim(net, side, data):
    """At x = 0: below the threshold radius no unit can switch on (f = 0 on the whole l_inf ball);
    strictly above it one can, and for a single unit the exact worst case is then negative."""
    tau = data.draw(radii(net, np.inf, side=side))
    critical = threshold_radius(net, np.inf)
    x, y = np.zeros((1, net.d)), np.ones(1)
    margin = worst_case(net, x, y, np.inf, tau).margin[0]
    if side == "below":
        assert tau < critical or tau == critical == 0
        assert margin == 0.0
    elif np.isfinite(critical):  # (all rows zero: no unit can ever switch on)
        assert tau >= critical
        if net.m == 1 and tau > critical + 1e-3 and np.abs(net.W).max() > 1e-3:
            assert margin < 0


@given(problem=problems())
def test_problems_are_consistent(problem):
    net, x, y, norm, tau = problem
    assert x.shape == (len(y), net.d) and x.dtype == net.dtype
    assert norm in (2, np.inf) and tau >= 0
    assert set(np.unique(y)) <= {-1, 1}
    assert "W=[[" in repr(problem)  # the weights are shown, so a shrunk example can be rebuilt


@settings(max_examples=15)
@given(config=configs())
def test_drawn_configs_are_valid_and_build(config):
    config.validate()
    assert Config(**config.to_dict()) == config
    model, net = build(config)
    assert model.d == net.d == config.d and net.m == config.m


@given(case=invalid_configs())
def test_invalid_configs_are_refused_naming_the_field(case):
    changes, field = case
    with pytest.raises((ValueError, TypeError), match=field):
        Config(**changes)


SHRINK = settings(database=None, phases=[Phase.generate, Phase.shrink])  # no slow "explain" phase


def test_strategies_shrink_to_small_readable_examples():
    net = find(nets(), lambda net: net.m >= 2, settings=SHRINK)
    assert (net.m, net.d, net.activation, net.dtype) == (2, 1, "relu", np.float64)
    np.testing.assert_array_equal(net.W, 0.0)
    assert net.threshold.start == 0.0
    model = find(sparse_coding_models(), lambda model: model.d >= 3, settings=SHRINK)
    assert (model.d, model.k, model.dictionary_kind, model.noise, model.margin, model.seed) == (
        3, 1.0, "identity", 0.0, 0.0, 0)
    assert find(norms(), lambda norm: True, settings=SHRINK) == 2
    problem = find(problems(), lambda p: p.tau > 0, settings=SHRINK)
    assert problem.net.m == 1 and len(problem.y) == 1


def _first_examples(strategy):
    seen = []

    @seed(20251125)
    @settings(max_examples=5, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value):
        seen.append(repr(value))

    collect()
    return seen


@pytest.mark.parametrize("make", [lambda: problems(), lambda: sparse_coding_models(),
                                  lambda: problems(model=sparse_coding_models(d=4), net=nets(d=4))])
def test_examples_are_reproducible_from_the_hypothesis_seed(make):
    np.random.seed(1)  # global numpy state must play no part
    first = _first_examples(make())
    np.random.seed(2)
    assert _first_examples(make()) == first


def test_import_without_hypothesis_names_the_test_extra():
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "import fpsim.testing\n"  # the oracles do not need hypothesis
            "try:\n    import fpsim.strategies\nexcept ImportError as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "fpsim[test]" in out and "hypothesis" in out
