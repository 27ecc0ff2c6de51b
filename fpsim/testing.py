r"""Oracles and assertions for testing bounds on the worst-case margin.

A *bound* here is any function ``bound_fn(net, x, y, norm, tau) -> (n,)``
claiming, per example, a lower bound on the worst-case margin

.. math::

    \underline{m}_b \ \le\ \min_{\|\delta\|_p \le \tau} y_b f(x_b + \delta)

(every certificate of :mod:`fpsim.certify` is one).  This module checks such
claims against an oracle that searches the ball:

* :func:`worst_case` -- the lowest margin found, with the perturbation that
  reaches it: exact (mixed-integer programming,
  :func:`fpsim.certify.exact_robust_accuracy`) for tiny ReLU nets under
  :math:`\ell_\infty`, otherwise the strongest attacks (PGD with restarts,
  FGM, optionally the dense-direction attack).  **An attack oracle can only
  find violations, never prove their absence**: a bound that passes
  :func:`assert_sound` against attacks is not thereby proved sound.
* :func:`assert_sound` -- raises AssertionError with a counterexample
  (example, :math:`\delta`, margin reached, bound claimed) when the oracle
  drives a margin below the bound, or when a positive bound (a certificate
  of robustness) meets an example the oracle breaks.
* :func:`assert_tighter` -- one bound at least as large as another on every
  example.
* :func:`assert_close_to_finite_differences` -- an analytic gradient
  against central differences.

The assertions need neither hypothesis nor pytest; with
:mod:`fpsim.strategies` they become property-based tests
(``docs/testing-bounds.md``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ._validation import check_array, check_float, check_int, check_labels, check_norm
from .attacks import dense_direction, fgm, pgd, reference_margin
from .certify import exact_robust_accuracy
from .network import TwoLayerNet

__all__ = ["WorstCase", "assert_close_to_finite_differences", "assert_sound", "assert_tighter",
           "rounding_tolerance", "worst_case"]

#: Size limits of the exact oracle (those of :func:`fpsim.certify.exact_robust_accuracy`).
EXACT_MAX_UNITS = 32
EXACT_MAX_DIM = 64


@dataclasses.dataclass(frozen=True)
class WorstCase:
    r"""What an oracle found: the lowest margin per example and a perturbation reaching it.

    Attributes
    ----------
    margin : (n,) float64 ndarray
        :math:`y f(x + \delta)` evaluated by the net itself at ``delta``: an
        upper bound on the worst-case margin that is actually attained.
    delta : (n, d) ndarray
        The perturbations, inside the ball (to float rounding).
    exact : bool
        ``True`` when the search was complete (MILP): ``margin`` is then the
        worst case up to solver tolerance.  ``False`` for attacks, which can
        miss the worst case.
    method : (n,) str ndarray
        Which search produced each row: ``"milp"``, ``"clean"`` (:math:`\delta = 0`),
        ``"fgm"``, ``"pgd"``, ``"pgd-long-steps"`` or ``"dense"``.
    """

    margin: np.ndarray
    delta: np.ndarray
    exact: bool
    method: np.ndarray


def _check(net, x, y, norm, tau):
    if not isinstance(net, TwoLayerNet):
        raise TypeError(f"net must be a TwoLayerNet, got {type(net).__name__}")
    x = check_array("x", x, 2, dtype=net.dtype, shape=(None, net.d))
    y = check_labels("y", y, x.shape[0])
    return x, y, check_norm(norm), check_float("tau", tau, 0)


def worst_case(net, x, y, norm, tau, exact="auto", model=None, pgd_steps=40, restarts=5, rng=0,
               time_limit=10.0):
    r"""Lowest margin :math:`y f(x+\delta)`, :math:`\|\delta\|_p \le \tau`, that an oracle finds.

    ``exact="auto"`` solves the problem exactly (mixed-integer programming,
    :func:`fpsim.certify.exact_robust_accuracy`) when it can: :math:`\ell_\infty`,
    ReLU activation, at most 32 units and 64 dimensions.  Otherwise (:math:`\ell_2`,
    the smoothed ReLU, larger nets, or a MILP that does not finish in
    ``time_limit``) it takes, per example, the worst of :math:`\delta = 0`,
    FGM, PGD with ``restarts`` random starts of ``pgd_steps`` steps, PGD with
    long steps (:math:`\alpha = \tau`, which reaches the vertices of the
    :math:`\ell_\infty` ball) and, given ``model``, the dense-direction attack.

    An attack oracle can only find violations of a bound, never prove that
    there are none: ``exact`` in the result says which kind of answer this is.

    Parameters
    ----------
    net : TwoLayerNet
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    norm : {2, "2", "l2", "inf", numpy.inf}
    tau : float
        Radius :math:`\tau \ge 0`.
    exact : {"auto", True, False}
        ``True`` requires the MILP (ValueError when it does not apply);
        ``False`` uses attacks only.
    model : SparseCodingModel or (d,) array_like, optional
        Adds the dense-direction attack along :math:`M w^*`.
    pgd_steps, restarts : int
        PGD budget of the attack oracle.
    rng : int or numpy.random.Generator, default 0
        Source of the PGD starts.
    time_limit : float, default 10.0
        Seconds per example for the MILP.

    Returns
    -------
    WorstCase
    """
    x, y, norm, tau = _check(net, x, y, norm, tau)
    if exact not in ("auto", True, False):
        raise ValueError(f"exact must be one of ['auto', True, False], got {exact!r}")
    pgd_steps = check_int("pgd_steps", pgd_steps, 1)
    restarts = check_int("restarts", restarts, 1)
    n = x.shape[0]
    applicable = (norm == np.inf and net.activation == "relu" and net.m <= EXACT_MAX_UNITS
                  and net.d <= EXACT_MAX_DIM)
    if exact is True and not applicable:
        raise ValueError("exact=True needs norm=inf, activation='relu', m <= 32 and d <= 64 "
                         f"(got norm={norm}, activation={net.activation!r}, m={net.m}, d={net.d})")
    if tau == 0:
        return WorstCase(reference_margin(net, x, y, np.zeros_like(x), norm, tau), np.zeros_like(x), True,
                         np.full(n, "clean"))
    if exact is not False and applicable:
        try:
            solved = exact_robust_accuracy(net, x, y, tau, max_units=EXACT_MAX_UNITS,
                                           max_dim=EXACT_MAX_DIM, time_limit=time_limit)
        except RuntimeError:
            if exact is True:
                raise
        else:  # clip the solver's tolerance away: the margin is one the net really takes in the ball
            delta = np.clip(solved.delta, -tau, tau)
            return WorstCase(reference_margin(net, x, y, delta, norm, tau), delta, True, np.full(n, "milp"))
    names = ["clean", "fgm", "pgd", "pgd-long-steps"]
    deltas = [np.zeros_like(x), fgm(net, x, y, norm, tau),
              pgd(net, x, y, norm, tau, steps=pgd_steps, restarts=restarts, rng=rng),
              pgd(net, x, y, norm, tau, steps=max(pgd_steps // 4, 1), step_size=tau, restarts=restarts,
                  rng=rng)]
    if model is not None:
        names.append("dense")
        deltas.append(dense_direction(model, x, y, norm, tau))
    margins = np.array([reference_margin(net, x, y, delta, norm, tau) for delta in deltas])
    best = np.argmin(margins, axis=0)
    rows = np.arange(n)
    delta = np.array(deltas)[best, rows]
    return WorstCase(margins[best, rows], delta, False, np.array(names)[best])


def rounding_tolerance(net, x, norm, tau):
    r"""Float rounding allowed when comparing a bound with a margin, per example ``(n,)``.

    .. math::

        (d + m)\,\varepsilon \Big(\sum_i |u_i| + \tau\|w_i\|_q + b_i\Big) + 10^{-12},

    :math:`\varepsilon` the machine epsilon of the net's dtype: a bound under
    test may be computed in that dtype.  (The margins here are read in float64,
    :func:`fpsim.attacks.reference_margin`, and fpsim's own certificates keep
    the float64 slack, so for them this tolerance is generous.)
    """
    x, _, norm, tau = _check(net, x, np.ones(np.shape(x)[0]), norm, tau)
    W = net.W.astype(np.float64)
    u = np.abs(x.astype(np.float64) @ W.T)
    radius = tau * np.linalg.norm(W, ord=1 if norm == np.inf else 2, axis=1)
    scale = u.sum(axis=1) + radius.sum() + net.bias().astype(np.float64).sum()
    return (net.d + net.m) * np.finfo(net.dtype).eps * scale + 1e-12


def _bounds(name, fn, net, x, y, norm, tau):
    values = np.asarray(fn(net, x, y, norm, tau), dtype=np.float64)
    if values.shape != (x.shape[0],):
        raise AssertionError(f"{name} must return one bound per example, shape ({x.shape[0]},); "
                             f"got shape {values.shape}")
    if np.isnan(values).any():
        raise AssertionError(f"{name} returned NaN for examples {np.flatnonzero(np.isnan(values)).tolist()}")
    return values


def _describe(net, x, y, norm, tau, b):
    show = dict(precision=6, separator=", ", max_line_width=10**6, threshold=200)
    weights = (f"W={np.array2string(net.W, **show)}".replace("\n", "") if net.W.size <= 200
               else f"m={net.m}, d={net.d}")
    return (f"  net: TwoLayerNet({weights}, threshold={net.threshold!r}, activation={net.activation!r}"
            + (f", q={net.q:g}, rho={net.rho:g}" if net.activation == "smooth" else "")
            + f", dtype={net.dtype})\n"
            f"  norm={norm}, tau={tau!r}\n"
            f"  example {b}: x={np.array2string(x[b], **show)}, y={int(y[b])}")


def assert_sound(bound_fn, net, x, y, norm, tau, tol=None, oracle=None, **oracle_options):
    r"""Check that ``bound_fn`` never claims more than the worst case an oracle finds.

    ``bound_fn(net, x, y, norm, tau)`` must return ``(n,)`` lower bounds on
    :math:`\min_{\|\delta\|_p \le \tau} y f(x+\delta)`.  With :math:`m_b` the
    margin reached by the oracle (:func:`worst_case`) and :math:`t_b` the
    rounding tolerance (:func:`rounding_tolerance`), the assertion fails when,
    for some example,

    * :math:`\underline m_b > m_b + t_b`: the bound is above a margin the net
      really takes in the ball; or
    * :math:`\underline m_b > t_b` and :math:`m_b \le 0`: a certificate of
      robustness for an example the oracle breaks.

    The message gives the example, the perturbation :math:`\delta` (and its
    norm), the margin it reaches, the bound claimed and the net's weights:
    enough to reproduce the counterexample by hand.

    With the exact (MILP) oracle a pass means the bound held on these
    examples; with attacks (:math:`\ell_2`, smoothed ReLU, larger nets) it only
    means that no violation was found.

    Parameters
    ----------
    bound_fn : callable
        ``bound_fn(net, x, y, norm, tau) -> (n,)``.
    net, x, y, norm, tau
        As for :func:`worst_case`.
    tol : float or (n,) array_like, optional
        Allowed excess; default :func:`rounding_tolerance`.
    oracle : WorstCase, optional
        A precomputed :func:`worst_case` result for the same arguments.
    **oracle_options
        Passed to :func:`worst_case` (``exact``, ``model``, ``pgd_steps``,
        ``restarts``, ``rng``, ``time_limit``).

    Returns
    -------
    bounds : (n,) float64 ndarray
    oracle : WorstCase

    Raises
    ------
    AssertionError
        With the counterexample, when the bound is violated.
    """
    x, y, norm, tau = _check(net, x, y, norm, tau)
    name = getattr(bound_fn, "__name__", "bound_fn")
    bounds = _bounds(name, bound_fn, net, x, y, norm, tau)
    if oracle is None:
        oracle = worst_case(net, x, y, norm, tau, **oracle_options)
    tol = rounding_tolerance(net, x, norm, tau) if tol is None else np.broadcast_to(
        np.asarray(tol, dtype=np.float64), bounds.shape)
    excess = bounds - oracle.margin - tol
    above = excess > 0
    broken = (bounds > tol) & (oracle.margin <= 0)
    if above.any() or broken.any():
        b = int(np.argmax(np.where(above | broken, excess, -np.inf)))
        kind = "exact (MILP)" if oracle.exact else "attack"
        what = ("certifies an example the oracle breaks" if broken[b]
                else "exceeds a margin the net takes in the ball")
        delta = oracle.delta[b].astype(np.float64)
        raise AssertionError(
            f"{name} is unsound: its bound {what} ({int((above | broken).sum())} of {len(bounds)} "
            f"examples violated)\n"
            f"  bound {float(bounds[b])!r} > margin {float(oracle.margin[b])!r} reached by {oracle.method[b]} "
            f"({kind} oracle), excess {bounds[b] - oracle.margin[b]:.3g}, tolerance {float(tol[b]):.3g}\n"
            f"  delta={np.array2string(delta, precision=6, separator=', ', max_line_width=10**6)}, "
            f"||delta||_{'inf' if norm == np.inf else 2} = {np.linalg.norm(delta, ord=norm):.6g}\n"
            + _describe(net, x, y, norm, tau, b))
    return bounds, oracle


def assert_tighter(tighter, looser, net, x, y, norm, tau, tol=None, strict=False):
    r"""Check that bound ``tighter`` is at least bound ``looser`` on every example.

    Both are ``bound_fn(net, x, y, norm, tau) -> (n,)`` lower bounds;
    "tighter" means larger: :math:`a_b \ge b_b - t_b` for every example
    (:math:`t_b` as in :func:`assert_sound`).  With ``strict=True`` it must
    also be strictly larger (by more than :math:`t_b`) on at least one example.

    Returns
    -------
    a, b : (n,) float64 ndarray
        The two bounds.
    """
    x, y, norm, tau = _check(net, x, y, norm, tau)
    names = [getattr(fn, "__name__", label) for fn, label in ((tighter, "tighter"), (looser, "looser"))]
    a = _bounds(names[0], tighter, net, x, y, norm, tau)
    b = _bounds(names[1], looser, net, x, y, norm, tau)
    tol = rounding_tolerance(net, x, norm, tau) if tol is None else np.broadcast_to(
        np.asarray(tol, dtype=np.float64), a.shape)
    worse = a < b - tol
    if worse.any():
        i = int(np.argmax(np.where(worse, b - a, -np.inf)))
        raise AssertionError(f"{names[0]} is not tighter than {names[1]} on {int(worse.sum())} of "
                             f"{len(a)} examples: {float(a[i])!r} < {float(b[i])!r} (by {b[i] - a[i]:.3g}, "
                             f"tolerance {float(tol[i]):.3g})\n" + _describe(net, x, y, norm, tau, i))
    if strict and not (a > b + tol).any():
        raise AssertionError(f"{names[0]} is never strictly tighter than {names[1]} "
                             f"(largest gain {np.max(a - b):.3g})")
    return a, b


def assert_close_to_finite_differences(fun, x, grad, eps=1e-6, rtol=1e-5, atol=1e-7):
    r"""Check a gradient against central differences, entry by entry.

    .. math::

        \frac{\partial F}{\partial x_j} \approx \frac{F(x + h e_j) - F(x - h e_j)}{2h}

    Parameters
    ----------
    fun : callable
        ``fun(x) -> float``, the scalar function :math:`F`.  Evaluate it in
        float64: differences of size ``eps`` mean nothing in float32.
    x : array_like
        Point of any shape (e.g. ``(n, d)`` inputs or ``(m, d)`` weights).
    grad : array_like or callable
        The claimed gradient (same shape as ``x``) or ``grad(x)``.
    eps : float, default 1e-6
        Step :math:`h`.
    rtol, atol : float
        As in :func:`numpy.testing.assert_allclose`.  Near a kink of
        :math:`F` (a unit at its threshold) the difference quotient is not a
        derivative: keep test points away from kinks.

    Returns
    -------
    numeric : ndarray
        The central differences.

    Raises
    ------
    AssertionError
        Naming the worst entry.
    """
    x = np.array(x, dtype=np.float64)
    eps = check_float("eps", eps, 0, closed=(False, True))
    claimed = np.asarray(grad(x.copy()) if callable(grad) else grad, dtype=np.float64)
    if claimed.shape != x.shape:
        raise AssertionError(f"gradient has shape {claimed.shape}, x has shape {x.shape}")
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        numeric[index] = (float(fun(x + step)) - float(fun(x - step))) / (2 * eps)
    error = np.abs(claimed - numeric) - (atol + rtol * np.abs(numeric))
    if (error > 0).any():
        worst = np.unravel_index(int(np.argmax(error)), x.shape)
        raise AssertionError(f"gradient differs from central differences at {int((error > 0).sum())} of "
                             f"{x.size} entries; worst at index {tuple(int(i) for i in worst)}: claimed "
                             f"{float(claimed[worst])!r}, finite differences {float(numeric[worst])!r} (h={eps:g}, "
                             f"rtol={rtol:g}, atol={atol:g})")
    return numeric
