r"""Complete verification by branch and bound over the undecided units (issue #8, "complete mode").

The problem, per example, is :math:`\min_{\|\delta\|_p \le \tau} y f(x+\delta)`.
As in :mod:`fpsim.certify.linear`, with :math:`v_i = y u_i`, :math:`t_i = v_i +
\langle y w_i, \delta\rangle` and the odd unit :math:`s(t) = \phi(t - b_i) -
\phi(-t - b_i)` (ReLU or smoothed ReLU, biases held fixed in the ball),

.. math::

    y f(x+\delta) = \sum_i s(t_i), \qquad t_i \in [v_i - r_i, v_i + r_i],\ r_i = \tau\|w_i\|_q .

**Nodes.**  A node of the search restricts each :math:`t_i` to an interval
:math:`I_i = [l_i, h_i]` (the root: the natural intervals above); a split of
unit :math:`i` at a point :math:`p \in (l_i, h_i)` makes two children,
:math:`t_i \le p` and :math:`t_i \ge p`, which together cover the parent.

**Node bound (Lagrangian dual, as in beta-CROWN).**  Writing the node problem
as :math:`\min \sum_i s(t_i)` over :math:`\delta` in the ball and :math:`t_i \in
I_i`, subject to :math:`t_i = v_i + \langle y w_i, \delta\rangle`, and dualising
these equalities with :math:`\lambda \in \mathbb R^m`,

.. math::

    \min_{\rm node} \sum_i s(t_i) \ \ge\ D(\lambda) = \sum_i \min_{t \in I_i}\big[s(t) - \lambda_i (t - v_i)\big]
        \;-\; \tau \Big\|\sum_i \lambda_i\, y w_i\Big\|_q

for **every** :math:`\lambda` (weak duality: for a feasible :math:`(\delta, t)`
the added terms vanish, and the two minima are taken over larger sets; the
minimum of a linear function over the ball is :math:`-\tau\|\cdot\|_q` by
Hölder).  It is the CROWN bound of :mod:`fpsim.certify.linear` with the
slopes free in :math:`\mathbb R` and the split constraints folded into the
intervals: a slope outside :math:`[0, 1]` acts as a beta-CROWN multiplier of an
active split.  A unit on which :math:`s` is affine over :math:`I_i` and that
was never split has its constraint implied by the ball; its :math:`\lambda_i`
is fixed to that slope (the dual of the problem without that constraint,
which has the same value).  :math:`D` is concave; it is maximised by L-BFGS-B
on a smoothed lower bound of it (:func:`fpsim.kernels.bab_dual`, smoothing
annealed to zero) and the **exact** :math:`D` is evaluated at the point found:
the optimiser's accuracy affects tightness, never soundness.  A child's bound
is the maximum of its own :math:`D` and its parent's bound (the child's set is
a subset), and the root's starts from the best-of of
:func:`fpsim.certify.bounds.certified_margins`: so this bound is never below
the existing certificates.

**Exact at the leaves.**  The dual :math:`\max_\lambda D` equals the minimum
of the node problem with each :math:`s` replaced by its convex envelope on
:math:`I_i` (strong duality of a convex problem with linear coupling,
compact sets).  :math:`s` is convex on any interval inside
:math:`[-b_i, \infty)` (zero, then :math:`\phi(t - b_i)`) and affine on
:math:`(-\infty, -b_i - \varrho]`, so the envelope is :math:`s` itself unless
:math:`I_i` meets the concave region :math:`(-b_i - \varrho, -b_i)` (for the
ReLU: unless :math:`-b_i` is inside :math:`I_i`).  Those units are the
*undecided* ones, the only ones split.  For the ReLU one split per unit
(at :math:`p = -b_i`) reaches a leaf, where the bound is the exact minimum:
with a budget of :math:`2^{k+1}` nodes (:math:`k` undecided units) the
search is complete.  (The unit's third piece, :math:`t > b_i`, needs no split:
it lies in the convex part.)  For the smoothed ReLU the concave region is
bisected, the gap shrinking quadratically; leaves are reached only up to
that gap, so the search converges rather than terminates.

**Branching.**  Best first (the open node with the lowest bound); in it, the
undecided unit with the largest envelope gap at its split point,
:math:`s(p) - \breve s(p)` (:func:`fpsim.kernels.envelope_tangent`), an
upper bound on what that unit's relaxation loses.

**Counterexamples.**  At every node the smoothed dual's primal point
:math:`\delta = -\tau \nabla_a \|a\|_q` (and the vertex of the exact dual) are
polished by a few projected-gradient steps on the real margin; the lowest
margin found is an upper bound on the worst case, attained by a point in
the ball.  ``"refuted"`` means the net itself, evaluated in its dtype at that
point, gives :math:`y f \le 0`.
"""
from __future__ import annotations

import dataclasses
import heapq

import numpy as np
import scipy.optimize

from .. import kernels
from .._validation import check_float, check_int
from ..attacks import reference_margin
from ._common import check_certify, unit_weights
from .bounds import _certify
from .linear import _unit_values

#: Default number of nodes (dual solves) per example.
NODE_BUDGET = 64
#: Projected-gradient steps that polish each node's primal point on the real net.
POLISH_STEPS = 8
#: Box on the multipliers (unit weight scale); any box is sound, the dual is unbounded only on empty nodes.
MULTIPLIER_BOX = 1e3
#: Smoothing levels of the dual, relative to :math:`\sum_i r_i` (annealed; the exact dual is kept).
SMOOTHING = (1e-2, 1e-4, 1e-6, 1e-8)
#: Envelope gap (relative to :math:`\sum_i r_i`) below which a unit counts as decided.
GAP_FLOOR = 1e-10

STATUSES = ("certified", "refuted", "undecided", "skipped")


@dataclasses.dataclass(frozen=True)
class CompleteMargins:
    r"""Result of :func:`complete_margins`, per example.

    Attributes
    ----------
    margin : (n,) float64 ndarray
        Certified lower bound on :math:`\min_{\|\delta\|_p\le\tau} y f(x+\delta)`
        (``nan`` for skipped rows).
    upper : (n,) float64 ndarray
        :math:`y f(x+\delta)` at ``delta``, read by :func:`fpsim.attacks.reference_margin`
        (float64, as the certificates): a margin the net really takes in the ball
        (``nan`` for skipped rows).
    status : (n,) str ndarray
        ``"certified"`` (``margin`` above the rounding slack), ``"refuted"``
        (``upper <= 0``), ``"undecided"`` (node budget exhausted first) or
        ``"skipped"`` (not in ``rows``).
    nodes : (n,) int64 ndarray
        Nodes (dual solves) spent.
    delta : (n, d) float64 ndarray
        The perturbation reaching ``upper`` (zeros for skipped rows).
    """

    margin: np.ndarray
    upper: np.ndarray
    status: np.ndarray
    nodes: np.ndarray
    delta: np.ndarray

    def counts(self):
        """``{status: number of examples}`` over :data:`STATUSES`."""
        return {name: int(np.sum(self.status == name)) for name in STATUSES}


def complete_margins(net, x, y, norm, tau, node_budget=NODE_BUDGET, dictionary=None, rows=None, gap=None):
    r"""Branch and bound over the undecided units: a certified bound, a counterexample, or "undecided".

    Parameters
    ----------
    net : TwoLayerNet
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    norm : {2, "2", "l2", "inf", numpy.inf}
    tau : float
        Radius :math:`\tau \ge 0`.
    node_budget : int, default :data:`NODE_BUDGET`
        Nodes (dual solves, the root included) allowed per example, ``>= 1``.
    dictionary : (d, d) array_like, optional
        Passed to the starting certificates (:func:`fpsim.certify.certified_margins`).
    rows : (n,) bool array_like or sequence of int, optional
        The examples to search (e.g. those :func:`fpsim.certify.robust_accuracy`
        leaves uncertified); the others are ``"skipped"``.  Default: all.
    gap : float, optional
        ``None`` (default): stop an example as soon as it is decided
        (certified or refuted).  A number :math:`\ge 0`: search until the lower
        bound is within ``gap`` of the best margin found (the exact worst case,
        up to ``gap``, when the budget allows).

    Returns
    -------
    CompleteMargins

    Notes
    -----
    The derivation is in the module docstring.  Examples are searched one by
    one (a Python loop over examples and nodes; the node's dual in Numba), so
    call it on the few examples the cheap certificates leave open.
    """
    net, x, y, norm, tau = check_certify(net, x, y, norm, tau)
    node_budget = check_int("node_budget", node_budget, 1)
    gap = None if gap is None else check_float("gap", gap, 0)
    n = x.shape[0]
    if rows is None:
        rows = np.arange(n)
    else:
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (n,):
                raise ValueError(f"rows as a mask must have shape ({n},), got {rows.shape}")
            rows = np.flatnonzero(rows)
        elif rows.size and (not np.issubdtype(rows.dtype, np.integer) or rows.ndim != 1
                            or rows.min() < -n or rows.max() >= n):
            raise ValueError(f"rows must be a boolean mask of shape ({n},) or indices in [0, {n}), got {rows!r}")
        rows = np.unique(np.asarray(rows, dtype=np.int64) % n) if rows.size else np.zeros(0, np.int64)
    if rows.size == 0:
        return search_rows(net, x, y, norm, tau, rows, np.zeros(0), np.zeros(0), node_budget, gap)
    start, slack = _certify(net, x[rows], y[rows], norm, tau, dictionary=dictionary)
    return search_rows(net, x, y, norm, tau, rows, np.maximum.reduce(list(start.values())), slack,
                       node_budget, gap)


def search_rows(net, x, y, norm, tau, rows, start, slack, node_budget, gap=None):
    """:func:`complete_margins` on validated input, from given starting bounds.

    For a caller that has the best-of certificates already
    (:func:`fpsim.certify.robust_accuracy`): ``rows`` ``(r,)`` int64 indices,
    ``start`` ``(r,)`` their best certified margins and ``slack`` ``(r,)``
    their rounding slacks, as :func:`fpsim.certify.bounds._certify` gives them.
    """
    n = x.shape[0]
    margin, upper = np.full(n, np.nan), np.full(n, np.nan)
    status = np.full(n, "skipped", dtype="<U9")
    nodes = np.zeros(n, np.int64)
    delta = np.zeros((n, net.d))
    if rows.size == 0:
        return CompleteMargins(margin, upper, status, nodes, delta)
    search = _Search(net, norm, tau)
    for k, b in enumerate(rows):
        lower, best, step, count = search.run(x[b], float(y[b]), start[k], slack[k], node_budget, gap)
        real = float(reference_margin(net, x[b:b + 1], y[b:b + 1], step[None], norm, tau)[0])
        margin[b], upper[b], nodes[b], delta[b] = min(lower, real), real, count, step
        status[b] = "certified" if lower > slack[k] else "refuted" if real <= 0 else "undecided"
    return CompleteMargins(margin, upper, status, nodes, delta)


class _Search:
    """The per-net constants of the search, at unit weight scale (:func:`unit_weights`)."""

    def __init__(self, net, norm, tau):
        self.scale, self.W = unit_weights(net.W)
        self.bias = net.bias().astype(np.float64) / self.scale
        self.q, self.rho = net.q, net.rho_effective / self.scale
        self.tau, self.inf_norm = tau, norm == np.inf
        self.radius = tau * np.linalg.norm(self.W, ord=1 if self.inf_norm else 2, axis=1)
        self.size = max(float(self.radius.sum()), 1e-300)
        self.grad = np.empty(self.W.shape[0])
        self.work = np.empty(self.W.shape[1])

    # -- pieces ---------------------------------------------------------------------------
    def _affine(self, low, high):
        r"""Units on which :math:`s` is affine over :math:`[l_i, h_i]`, and that slope."""
        b, rho = self.bias, self.rho
        ones = (high <= -b - rho) | (low >= b + rho) | ((rho == 0) & (b == 0))
        affine = ones | (high <= low) | ((low >= -b) & (high <= b))
        return affine, np.where(ones, 1.0, 0.0)

    def _split_points(self, low, high):
        r"""Split point :math:`p_i` and envelope gap :math:`s(p_i) - \breve s(p_i)` of each unit (gap 0: decided)."""
        b, rho = self.bias, self.rho
        if rho > 0:
            left, right = np.maximum(low, -b - rho), np.minimum(high, -b)
            open_ = left < right
            point = 0.5 * (left + right)
        else:
            open_ = (low < -b) & (high > -b) & (b > 0)
            point = -b
        point = np.where(open_, point, low)
        centre, half = 0.5 * (low + high), 0.5 * (high - low)
        touch, slope = np.empty((1, len(low))), np.empty((1, len(low)))
        kernels.envelope_tangent(centre[None], half, b, self.q, rho, touch, slope)
        values = _unit_values(np.stack([point, low]), b, self.q, rho)
        envelope = np.where(point <= touch[0], values[1] + slope[0] * (point - low), values[0])
        score = np.where(open_, values[0] - envelope, 0.0)
        return point, np.where(score > GAP_FLOOR * self.size, score, 0.0)

    def _margin(self, v, rows, delta):
        """Margin and its gradient in delta, at unit scale (float64)."""
        t = (v + rows @ delta)[None]
        value, slope = np.empty(1), np.empty_like(t)
        kernels.soft_threshold_units(t, self.bias, self.q, self.rho, value, slope)
        return float(value[0]), slope[0] @ rows

    def _polish(self, v, rows, delta):
        """A few projected-gradient steps on the real margin from ``delta``; returns the best ``(margin, delta)``."""
        delta = delta[None].copy()
        kernels.ascend_project(delta, np.zeros_like(delta), 0.0, self.tau, self.inf_norm)  # into the ball
        best, best_delta = np.inf, delta[0].copy()
        step = 0.5 * self.tau
        for _ in range(POLISH_STEPS + 1):
            value, g = self._margin(v, rows, delta[0])
            if value < best:
                best, best_delta = value, delta[0].copy()
            kernels.ascend_project(delta, -g[None], step, self.tau, self.inf_norm)
            step *= 0.6
        return best, best_delta

    # -- one node -------------------------------------------------------------------------
    def _node(self, v, rows, low, high, split, lam, threshold):
        r"""Best exact :math:`D(\lambda)` found at a node, the multipliers, and primal candidates."""
        affine, slope = self._affine(low, high)
        free = np.flatnonzero(~affine | split)
        fixed = np.flatnonzero(affine & ~split)
        const = float(_unit_values(v[None], self.bias, self.q, self.rho)[0, fixed].sum())
        a0 = slope[fixed] @ rows[fixed]
        lam = lam.copy()
        lam[fixed] = slope[fixed]
        args = (free, low, high, v, self.bias, self.q, self.rho, rows, a0, self.tau, self.inf_norm)
        candidates = []
        if free.size == 0:
            best = const + kernels.bab_dual(np.zeros(0), *args, 0.0, self.grad[:0], self.work)
            return best, lam, [self.work.copy()]
        grad = self.grad[:free.size]

        def negative(point, sigma):
            value = kernels.bab_dual(point, *args, sigma, grad, self.work)
            return -value, -grad

        x0 = lam[free]
        best = const + kernels.bab_dual(x0, *args, 0.0, grad, self.work)
        candidates.append(self.work.copy())
        best_lam = x0.copy()
        bounds = [(-MULTIPLIER_BOX, MULTIPLIER_BOX)] * free.size
        for level in SMOOTHING:
            if best > threshold:
                break
            sigma = level * self.size
            result = scipy.optimize.minimize(negative, x0, args=(sigma,), jac=True, method="L-BFGS-B", bounds=bounds,
                                             options=dict(maxiter=200, ftol=1e-13, gtol=1e-13 * self.size))
            x0 = result.x
            kernels.bab_dual(x0, *args, sigma, grad, self.work)
            candidates.append(self.work.copy())          # the smoothed primal point
            exact = const + kernels.bab_dual(x0, *args, 0.0, grad, self.work)
            candidates.append(self.work.copy())          # the vertex of the exact dual
            if exact > best:
                best, best_lam = exact, x0.copy()
        lam[free] = best_lam
        return best, lam, candidates

    # -- one example ----------------------------------------------------------------------
    def run(self, x, y, start, slack, budget, gap):
        r"""Search one example; returns ``(lower, upper, delta, nodes)`` in the net's scale (upper at unit-scale float64)."""
        scale = self.scale
        v = y * (self.W @ x.astype(np.float64))
        rows = y * self.W
        low, high = v - self.radius, v + self.radius
        split = np.zeros(len(v), dtype=bool)
        upper, best_delta = self._polish(v, rows, np.zeros(self.W.shape[1]))

        def threshold():
            return slack / scale if gap is None else upper - gap / scale

        def visit(low, high, split, lam, parent):
            nonlocal upper, best_delta
            bound, lam, candidates = self._node(v, rows, low, high, split, lam, threshold())
            if bound <= threshold():    # the node may hold a counterexample: look for one
                for point in candidates:
                    value, step = self._polish(v, rows, point)
                    if value < upper:
                        upper, best_delta = value, step
            return max(bound, parent), lam

        chord = np.clip((_unit_values((v + self.radius)[None], self.bias, self.q, self.rho)
                         - _unit_values((v - self.radius)[None], self.bias, self.q, self.rho))[0]
                        / np.maximum(2 * self.radius, 1e-300), 0.0, 1.0)
        bound, lam = visit(low, high, split, chord, start / scale)
        count, order = 1, 1
        heap = [(bound, 0, low, high, split, lam)]
        closed = np.inf                 # lowest bound of the nodes discarded as settled
        while heap:
            if gap is None and upper <= 0:
                break                   # refuted (confirmed on the net by the caller)
            if heap[0][0] > threshold():
                closed = min(closed, heap[0][0])
                heapq.heappop(heap)
                continue
            point, score = self._split_points(heap[0][2], heap[0][3])
            if not score.any():         # a leaf: its bound is exact up to the envelope floor
                closed = min(closed, heap[0][0])
                heapq.heappop(heap)
                continue
            if count + 2 > budget:
                break
            bound, _, low, high, split, lam = heapq.heappop(heap)
            unit = int(np.argmax(score))
            child_split = split.copy()
            child_split[unit] = True
            for side in (0, 1):
                child_low, child_high = low.copy(), high.copy()
                if side == 0:
                    child_high[unit] = point[unit]
                else:
                    child_low[unit] = point[unit]
                child_bound, child_lam = visit(child_low, child_high, child_split, lam, bound)
                count += 1
                heapq.heappush(heap, (child_bound, order, child_low, child_high, child_split, child_lam))
                order += 1
        lower = min([closed] + [node[0] for node in heap])
        lower = min(lower, upper)       # the worst case is at most a margin the net takes
        return lower * scale, upper * scale, best_delta, count
