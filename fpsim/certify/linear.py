r"""Linear-relaxation bound on the worst-case margin (CROWN, with slopes optimised as in α-CROWN).

Derivation.  Write :math:`u_i = \langle w_i, x\rangle`, :math:`r_i = \tau
\|w_i\|_q` (:math:`q` the dual norm of :math:`p`) and
:math:`s(t) = \phi(t - b_i) - \phi(-t - b_i)` for unit :math:`i` (the soft
threshold: two ReLUs, or two smoothed ReLUs).  Since :math:`s` is odd,
:math:`y\, s(u) = s(y u)`, so with :math:`v_i = y u_i` and
:math:`t_i = v_i + y\langle w_i, \delta\rangle \in [v_i - r_i, v_i + r_i]`
(:math:`|\langle w_i, \delta\rangle| \le r_i` in the ball, Hölder)

.. math::

    y f(x + \delta) = \sum_i s(t_i).

For any slope :math:`\lambda_i` let

.. math::

    c_i(\lambda_i) = \min_{|t - v_i| \le r_i} \big[s(t) - \lambda_i (t - v_i)\big]
    \quad\Longrightarrow\quad
    s(t_i) \ \ge\ c_i(\lambda_i) + \lambda_i\, y \langle w_i, \delta\rangle

on the whole ball: a line below the unit on its input interval, the best
one of that slope (:func:`fpsim.kernels.unit_line_offsets` computes the
1-D minimum exactly: :math:`s` is concave for :math:`t \le 0` and convex for
:math:`t \ge 0`, so four candidate points suffice).  Summing over the units
and minimising the linear part over the ball with the dual norm,

.. math::

    \min_{\|\delta\|_p \le \tau} y f(x+\delta) \ \ge\
    B(\lambda) = \sum_i c_i(\lambda_i) - \tau \Big\|\sum_i \lambda_i\, y\, w_i\Big\|_q ,

sound for **every** :math:`\lambda`.  This is the CROWN bound of the network
with the unit's own relaxation (one line for the two ReLUs of a unit, at
least as tight as bounding each ReLU separately), exact on the intervals
because the pre-activations are linear in :math:`\delta`.  :math:`B` is
concave in :math:`\lambda` (a sum of minima of affine functions minus a norm
of a linear map), so projected supergradient ascent on :math:`\lambda \in [0,
1]^m` (the slopes of a non-decreasing 1-Lipschitz unit) approaches its
maximum, the linear-programming relaxation of the unit-wise convex hulls,
as α-CROWN does; every iterate is a sound bound and the best is kept.
Supergradient (Danskin):

.. math::

    \frac{\partial B}{\partial \lambda_i} = -(t_i^\star - v_i)
        - \tau\, y\, \langle g, w_i\rangle, \qquad
    g = \begin{cases} a / \|a\|_2 & p = 2 \\ \operatorname{sign} a & p = \infty \end{cases},
    \quad a = \sum_i \lambda_i y w_i,

with :math:`t_i^\star` the minimiser in :math:`c_i`.  :math:`\lambda = 0` gives
:math:`B = \sum_i s(v_i - r_i)`, the per-unit bound, which is therefore never
beaten from below.  Starting slopes (CROWN's choice, best per example of):
:math:`0`, the slope :math:`s'(v_i)` at the clean point, and the chord slope
:math:`(s(v_i + r_i) - s(v_i - r_i)) / (2 r_i)`.
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ._common import check_certify, unit_weights
from .._validation import check_int

#: Primal steps used by the ``"linear"`` certificate (converged on the quick preset's nets at 10).
LINEAR_ITERATIONS = 12


def linear_bound(net, x, y, norm, tau, iterations=LINEAR_ITERATIONS):
    r"""Linear-relaxation (CROWN / α-CROWN) lower bound on :math:`\min_{\|\delta\|_p \le \tau} y f(x+\delta)`.

    Parameters
    ----------
    net : TwoLayerNet
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    norm : {2, "2", "l2", "inf", numpy.inf}
    tau : float
        Radius :math:`\tau \ge 0`.
    iterations : int, default :data:`LINEAR_ITERATIONS`
        Steps of the relaxed primal that set the slopes (0: CROWN's starting slopes only).

    Returns
    -------
    bound : (n,) float64 ndarray
        Sound lower bound (module docstring), up to the float rounding of the
        net's own evaluation.
    """
    net, x, y, norm, tau = check_certify(net, x, y, norm, tau)
    iterations = check_int("iterations", iterations, 0)
    scale, unit_W = unit_weights(net.W)
    u = x.astype(np.float64) @ unit_W.T
    radius = tau * np.linalg.norm(unit_W, ord=1 if norm == np.inf else 2, axis=1)
    return scale * _linear_bound(unit_W, net.bias().astype(np.float64) / scale, u, y.astype(np.float64), radius,
                                 tau, norm == np.inf, net.q, net.rho_effective / scale, iterations)


def _linear_bound(W, bias, u, yf, radius, tau, inf_norm, q, rho, iterations, refine=None, target=None):
    r"""The bound on float64 arrays; slopes are optimised only for the rows where ``refine`` is True.

    Parameters
    ----------
    W : (m, d) float64 array
    bias, radius : (m,) float64 arrays
    u : (n, m) float64 array
        Pre-activations at the clean inputs.
    yf : (n,) float64 array
    tau : float
    inf_norm : bool
    q, rho : float
    iterations : int
    refine : (n,) bool array, optional
        Rows to optimise (default all); the others keep the best starting slopes.
    target : (n,) float64 array, optional
        A row stops being optimised once its bound exceeds ``target`` or the
        relaxed primal shows that no slopes can (see :func:`_primal_dual`).

    Returns
    -------
    bound : (n,) float64 ndarray
    """
    v = yf[:, None] * u
    slope_at = np.empty_like(v)
    kernels.soft_threshold_units(v, bias, q, rho, np.empty(len(v)), slope_at)
    chord = np.clip((_unit_values(v + radius, bias, q, rho) - _unit_values(v - radius, bias, q, rho))
                    / np.maximum(2.0 * radius, 1e-300), 0.0, 1.0)
    best = np.full(len(v), -np.inf)
    for start in (np.zeros_like(v), slope_at, chord):
        np.maximum(best, _dual_value(W, v, radius, bias, yf, start, tau, inf_norm, q, rho)[0], out=best)
    rows = np.arange(len(v)) if refine is None else np.flatnonzero(refine)
    if target is not None:
        target = np.asarray(target, dtype=np.float64)
        rows = rows[best[rows] <= target[rows]]
    if iterations > 0 and rows.size:
        best[rows] = np.maximum(best[rows], _primal_dual(W, v[rows], radius, bias, yf[rows], tau, inf_norm, q,
                                                         rho, iterations, None if target is None else target[rows]))
    return best


def _primal_dual(W, v, radius, bias, yf, tau, inf_norm, q, rho, iterations, target):
    r"""Slopes from the relaxed primal: the best :math:`B(\lambda(\delta^{(k)}))` over a descent on :math:`\delta`.

    The relaxed problem :math:`\min_{\|\delta\|_p\le\tau} F(\delta)`,
    :math:`F(\delta) = \sum_i \breve s_i(v_i + y\langle w_i, \delta\rangle)` with
    :math:`\breve s_i` the convex envelope of the unit on its interval
    (:func:`fpsim.kernels.envelope_tangent`), is convex; at its minimiser the
    slopes :math:`\lambda_i = \breve s_i'(t_i)` make :math:`B(\lambda)` equal to
    it (strong duality).  Projected descent on :math:`\delta` (the momentum step
    of APGD, step :math:`\tau` decaying to :math:`\tau/100`) gives at each
    iterate slopes :math:`\lambda(\delta) \in [0, 1]^m` and so a sound bound
    :math:`B(\lambda(\delta))`; so does the average of the slopes of the second
    half of the iterates (at kinks, where the iterates oscillate, it approaches
    the optimal slope inside the subdifferential).  The best per row is returned.

    Weak duality, :math:`B(\lambda) \le F(\delta)` for all slopes and all
    :math:`\delta` in the ball (each line lies below :math:`\breve s_i`), lets a
    row stop early: once :math:`B > ` ``target`` (settled) or
    :math:`F(\delta^{(k)}) \le` ``target`` (no slopes can exceed it); ``target=None``: no early stop.
    """
    n, m = v.shape
    point, tangent = np.empty_like(v), np.empty_like(v)
    kernels.envelope_tangent(v, radius, bias, q, rho, point, tangent)
    low_value = _unit_values(v - radius, bias, q, rho)  # s(l): the envelope is s(l) + tangent (t - l) below point
    delta = np.zeros((n, W.shape[1]))
    previous, work = delta.copy(), np.empty_like(delta)
    eta = np.full(n, tau)
    decay = 0.01 ** (1.0 / max(iterations - 1, 1))
    out = np.full(n, -np.inf)
    live = np.arange(n)   # rows still optimised; the local arrays below hold these rows only
    best, average, count = out.copy(), np.zeros_like(v), 0
    for k in range(iterations):
        t = delta @ W.T
        t *= yf[live, None]
        t += v
        slope = np.empty_like(t)
        kernels.soft_threshold_units(t, bias, q, rho, np.empty(len(live)), slope)
        below = t < point
        np.copyto(slope, tangent, where=below)
        value, a = _dual_value(W, v, radius, bias, yf[live], slope, tau, inf_norm, q, rho)
        np.maximum(best, value, out=best)
        if k >= iterations // 2:  # ergodic average of the late slopes: near the dual optimum at kinks
            average += slope
            count += 1
        if target is None:
            done = np.zeros(len(live), dtype=bool)
        else:
            primal = np.where(below, low_value + tangent * (t - (v - radius)),
                              _unit_values(t, bias, q, rho)).sum(axis=1)
            done = (best > target) | (primal <= target)
        if done.any():
            out[live[done]] = best[done]
            keep = ~done
            live, v, point, tangent, low_value = live[keep], v[keep], point[keep], tangent[keep], low_value[keep]
            delta, previous, work, eta = delta[keep], previous[keep], work[keep], eta[keep]
            best, average, target, a = best[keep], average[keep], target[keep], a[keep]  # target is not None here
            if live.size == 0:
                return out
        # dF/d(delta) = a: descend F, i.e. ascend along -a
        kernels.momentum_ascend(delta, previous, np.negative(a, out=a), eta, tau, inf_norm, 0.75, work)
        eta *= decay
    if count:
        best = np.maximum(best, _dual_value(W, v, radius, bias, yf[live], average / count, tau, inf_norm, q,
                                            rho)[0])
    out[live] = best
    return out


def _unit_values(t, bias, q, rho):
    """Unit values :math:`s_i(t_{bi})` ``(n, m)``: the line kernel with radius 0 (the minimum over one point)."""
    value, argmin = np.empty_like(t), np.empty_like(t)
    kernels.unit_line_offsets(t, np.zeros(t.shape[1]), bias, np.zeros_like(t), q, rho, value, argmin)
    return value


def _dual_value(W, v, radius, bias, yf, slope, tau, inf_norm, q, rho):
    r""":math:`B(\lambda)` per row, and :math:`a = \sum_i \lambda_i y w_i` ``(n, d)``."""
    offset, argmin = np.empty_like(v), np.empty_like(v)
    kernels.unit_line_offsets(v, radius, bias, slope, q, rho, offset, argmin)
    a = (slope * yf[:, None]) @ W
    dual = np.abs(a).sum(axis=1) if inf_norm else np.sqrt(np.einsum("bj,bj->b", a, a))
    return offset.sum(axis=1) - tau * dual, a
