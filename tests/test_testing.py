"""fpsim.testing: the oracle is honest, unsound bounds are caught, sound ones pass."""
import numpy as np
import pytest
from hypothesis import Phase, assume, given, settings, strategies as st

from fpsim import TwoLayerNet
from fpsim.certify import METHODS, certified_margins
from fpsim.strategies import nets, problems, seeds
from fpsim.testing import (assert_close_to_finite_differences, assert_sound, assert_tighter,
                           rounding_tolerance, worst_case)

INNER = settings(max_examples=50, deadline=None, database=None,
                 phases=[Phase.generate, Phase.shrink])  # a failing inner run need not "explain"


def per_unit(net, x, y, norm, tau):
    return certified_margins(net, x, y, norm, tau)["per_unit"]


def gram(net, x, y, norm, tau):
    return certified_margins(net, x, y, norm, tau)["gram"]


def per_unit_half_radius(net, x, y, norm, tau):
    """Deliberately unsound: the per-unit bound at half the radius."""
    return per_unit(net, x, y, norm, tau / 2)


def best_of(net, x, y, norm, tau):
    return np.max(list(certified_margins(net, x, y, norm, tau).values()), axis=0)


def test_unsound_bound_is_caught_under_hypothesis():
    @INNER
    @given(problem=problems())
    def halved_radius_is_sound(problem):
        assert_sound(per_unit_half_radius, *problem, pgd_steps=10, restarts=2)

    with pytest.raises(AssertionError, match="per_unit_half_radius is unsound") as caught:
        halved_radius_is_sound()
    message = str(caught.value)
    assert "delta=" in message and "W=[[" in message  # a counterexample one can rebuild


@settings(max_examples=30)
@given(problem=problems(), seed=seeds())
def test_library_certificates_pass_against_the_oracle(problem, seed):
    for name in METHODS:
        def bound(*args, name=name):
            return certified_margins(*args)[name]
        assert_sound(bound, *problem, rng=seed)


@settings(max_examples=20)
@given(problem=problems(net=nets(activation="relu", max_m=5, max_d=4), norm=np.inf), seed=seeds())
def test_exact_oracle_is_attained_and_at_most_the_attacks(problem, seed):
    net, x, y, norm, tau = problem
    exact = worst_case(*problem)
    attacked = worst_case(*problem, exact=False, pgd_steps=10, restarts=2, rng=seed)
    tol = rounding_tolerance(net, x, norm, tau)
    for found in (exact, attacked):
        assert np.all(np.abs(found.delta) <= tau * (1 + 1e-6) + 1e-12)
        np.testing.assert_allclose(found.margin, y * net.forward64(x.astype(np.float64) + found.delta),
                                   rtol=1e-6, atol=1e-9)
    assert exact.exact and (not attacked.exact or tau == 0)
    assert np.all(exact.margin <= attacked.margin + tol + 1e-7)


@given(problem=problems(norm=2), seed=seeds())
def test_attack_oracle_is_no_better_than_the_clean_margin(problem, seed):
    net, x, y, norm, tau = problem
    found = worst_case(*problem, rng=seed)
    assert not found.exact or tau == 0
    assert np.all(found.margin <= y * net.forward64(x))  # the float64 function the certificates bound
    assert np.all(np.linalg.norm(found.delta.astype(np.float64), axis=1) <= tau * (1 + 1e-5) + 1e-12)


def test_a_certificate_for_a_broken_example_is_reported():
    net = TwoLayerNet(np.array([[1.0]]), threshold=0.0)
    x, y = np.array([[0.1]]), np.array([1])  # margin 0.1 - tau under the worst delta = -tau

    def claims_robust(net, x, y, norm, tau):
        return np.full(len(y), 0.05)

    with pytest.raises(AssertionError, match="certifies an example the oracle breaks") as caught:
        assert_sound(claims_robust, net, x, y, np.inf, 0.5)
    assert "bound 0.05 > margin -0.4" in str(caught.value) and "milp" in str(caught.value)
    # the exact bound itself passes, with the exact oracle
    bounds, oracle = assert_sound(per_unit, net, x, y, np.inf, 0.5)
    assert oracle.exact and bounds[0] == pytest.approx(-0.4) and oracle.margin[0] == pytest.approx(-0.4)


def test_malformed_bounds_are_reported():
    net = TwoLayerNet(np.ones((2, 3)), threshold=0.1)
    x, y = np.zeros((4, 3)), np.ones(4)
    with pytest.raises(AssertionError, match="one bound per example"):
        assert_sound(lambda *a: np.zeros(3), net, x, y, 2, 0.1)
    with pytest.raises(AssertionError, match="NaN"):
        assert_sound(lambda *a: np.full(4, np.nan), net, x, y, 2, 0.1)
    with pytest.raises(ValueError, match="exact=True"):
        worst_case(net, x, y, 2, 0.1, exact=True)


@given(problem=problems())
def test_gram_and_best_of_are_tighter_than_per_unit(problem):
    assert_tighter(gram, per_unit, *problem)
    assert_tighter(best_of, gram, *problem)


def test_assert_tighter_catches_a_looser_bound():
    net = TwoLayerNet(np.array([[1.0, 0.0], [0.0, 1.0]]), threshold=0.0)
    x, y = np.array([[1.0, 1.0]]), np.array([1])
    with pytest.raises(AssertionError, match="per_unit is not tighter than per_unit_half_radius"):
        assert_tighter(per_unit, per_unit_half_radius, net, x, y, 2, 0.5)
    with pytest.raises(AssertionError, match="never strictly tighter"):
        assert_tighter(per_unit, per_unit, net, x, y, 2, 0.5, strict=True)


@settings(max_examples=20)
@given(net=nets(dtype=np.float64, max_m=4, max_d=3), data=st.data())
def test_input_gradient_matches_finite_differences(net, data):
    x = data.draw(problems(net=net, tau=0.0)).x
    y = np.ones(len(x))
    bias = net.bias()
    u = np.abs(x @ net.W.T)
    kinks = [bias] + ([bias + net.rho] if net.activation == "smooth" else [])
    assume(min(np.abs(u - k).min() for k in kinks) > 1e-3)  # at a kink there is no derivative
    n = len(y)

    def total_loss(x_):
        return net.loss(x_, y, bias=bias) * n

    assert_close_to_finite_differences(total_loss, x, net.input_grad(x, y, bias=bias).copy())
    with pytest.raises(AssertionError, match="central differences"):
        assert_close_to_finite_differences(total_loss, x, net.input_grad(x, y, bias=bias) * 1.1 + 1e-3)
