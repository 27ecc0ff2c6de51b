r"""Robust accuracy as a certified interval (``docs/MODEL.md`` §5).

Robust accuracy at :math:`(p, \tau)` is :math:`\Pr[y f(x+\delta) > 0\ \forall
\|\delta\|_p \le \tau]`.  :func:`robust_accuracy` brackets it:

* **upper end** -- accuracy under the strongest of PGD with restarts, FGM
  and (given the data model) the dense-direction attack, per example;
* **lower end** -- the fraction of examples with a *sound* certificate.

The certificates all follow from one lemma.  Write :math:`s_i` for unit
:math:`i` (non-decreasing and 1-Lipschitz in :math:`u_i = \langle w_i,
x\rangle`, for the ReLU and the smoothed ReLU alike), :math:`r_i = \tau
\|w_i\|_q` (:math:`q` the dual norm of :math:`p`, so :math:`|\Delta u_i| \le
r_i` in the ball), and the per-unit worst case

.. math::

    \text{drop}_i = y\, s_i(u_i) - y\, s_i(u_i - y r_i) \ \ge 0 .

A unit that is non-decreasing and 1-Lipschitz changes the margin by at least
:math:`\min(0, y\langle w_i, \delta\rangle)`.  So for any set :math:`S` of
units, those outside :math:`S` lose at most their own
:math:`\text{drop}_i` and those inside at most
:math:`(-y\langle w_i, \delta\rangle)_+`:

.. math::

    y f(x+\delta) \ \ge\ y f(x) - \sum_{i \notin S} \text{drop}_i
        - \sup_{\|\delta\|_p \le \tau} \sum_{i \in S} (-y\langle w_i, \delta\rangle)_+ ,

and with :math:`\rho_2 = \sup \|\delta\|_2` (:math:`\tau` for :math:`\ell_2`,
:math:`\tau\sqrt d` for :math:`\ell_\infty`) and :math:`G = W W^\top`

.. math::

    \sup_\delta \sum_{i\in S} (-y\langle w_i, \delta\rangle)_+
    = \max_{T \subseteq S} \sup_\delta \Big\langle -y \sum_{i \in T} w_i, \delta \Big\rangle
    \le \rho_2 \max_{T \subseteq S} \Big\|\sum_{i\in T} w_i\Big\|_2
    \le \rho_2 \min\Big(\sqrt{\textstyle\sum_{i,j\in S}(G_{ij})_+},\ \sqrt{|S|}\,\sigma_{\max}(W_S)\Big).

(This is the local Lipschitz bound of MODEL.md §5,
:math:`\sum_{i\in S}|\langle w_i, \delta\rangle| \le \tau\sqrt{|S|}\sigma_{\max}(W_S)`,
made one-sided.)

Three instances are computed per example and the best one is kept:

* ``"per_unit"`` -- :math:`S = \emptyset`: :math:`y f(x+\delta) \ge \sum_i y
  s_i(u_i - y r_i)`, the per-unit monotone bound;
* ``"gram"`` -- the best prefix :math:`S_t` of the units ordered by
  :math:`\text{drop}_i / r_i` (units that move fully through the ball
  first), with the :math:`(G)_+` bound (:func:`fpsim.kernels.joint_lipschitz_drop`);
* ``"spectral"`` -- :math:`S` = all units with :math:`\text{drop}_i > 0`
  (a subset of the units that can be active somewhere in the ball,
  :math:`|u_i| + r_i > b_i`; every other unit never lowers the margin), with
  the :math:`\sigma_{\max}` bound: the local spectral bound of MODEL.md §5.

The biases are held fixed in the ball: for the relative threshold
:math:`b_i = \theta\|w_i\|` depends on :math:`W` only.

:func:`exact_robust_accuracy` solves the :math:`\ell_\infty` problem exactly
as a mixed-integer linear program for small ReLU networks, to validate both
ends.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import scipy.linalg
import scipy.optimize

from . import kernels
from ._validation import (check_array, check_float, check_int, check_labels, check_norm,
                          check_random_state)
from .attacks import attack_margin
from .network import TwoLayerNet

#: Names of the certificates, in the order ties are resolved.
METHODS = ("per_unit", "gram", "spectral")


@dataclasses.dataclass(frozen=True)
class RobustAccuracy:
    r"""Robust accuracy at :math:`(p, \tau)` as an interval ``[lower, upper]``.

    Attributes
    ----------
    norm : {2, inf}
    tau : float
    lower : float
        Fraction of examples certified robust (sound).
    upper : float
        Fraction that are clean-correct and survive every attack.
    certified : (n,) bool ndarray
    survived : (n,) bool ndarray
    method : (n,) str ndarray
        The certificate (one of :data:`METHODS`) that certified each example;
        ``""`` where none did.
    certified_margin : (n,) float64 ndarray
        Certified lower bound on :math:`\min_{\|\delta\|_p \le \tau} y f(x+\delta)`.
    attack_margin : (n,) float64 ndarray
        Lowest margin :math:`y f(x+\delta)` reached by the attacks (and :math:`\delta = 0`).
    """

    norm: float
    tau: float
    lower: float
    upper: float
    certified: np.ndarray
    survived: np.ndarray
    method: np.ndarray
    certified_margin: np.ndarray
    attack_margin: np.ndarray

    @property
    def gap(self):
        """``upper - lower``: how much of robust accuracy is undecided."""
        return self.upper - self.lower


@dataclasses.dataclass(frozen=True)
class ExactRobustness:
    r"""Exact :math:`\ell_\infty` robustness of each example (:func:`exact_robust_accuracy`).

    Attributes
    ----------
    tau : float
    min_margin : (n,) float64 ndarray
        :math:`\min_{\|\delta\|_\infty \le \tau} y f(x+\delta)`.
    robust : (n,) bool ndarray
        ``min_margin > 0``.
    delta : (n, d) float64 ndarray
        A minimising perturbation per example.
    """

    tau: float
    min_margin: np.ndarray
    robust: np.ndarray
    delta: np.ndarray

    @property
    def accuracy(self):
        """Fraction of examples robust at ``tau``."""
        return float(np.mean(self.robust))


def certified_margins(net, x, y, norm, tau):
    r"""Sound lower bounds on the worst-case margin, per example and per certificate.

    Parameters
    ----------
    net : TwoLayerNet
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    norm : {2, "2", "l2", "inf", numpy.inf}
    tau : float
        Radius :math:`\tau \ge 0`.

    Returns
    -------
    bounds : dict of (n,) float64 ndarray
        For each name in :data:`METHODS`, a lower bound on
        :math:`\min_{\|\delta\|_p \le \tau} y f(x+\delta)` (see the module docstring).
    """
    return _certify(*_check_certify(net, x, y, norm, tau))[0]


def _certify(net, x, y, norm, tau):
    r""":func:`certified_margins` on validated input; also returns the rounding slack ``(n,)``.

    The slack bounds the float rounding of the net's own evaluation in its dtype,
    :math:`(d + m)\,\varepsilon \sum_i (|u_i| + r_i)`.
    """
    W = net.W.astype(np.float64)
    n, d = x.shape
    bias = net.bias().astype(np.float64)
    yf = y.astype(np.float64)
    u = x.astype(np.float64) @ W.T
    radius = tau * np.linalg.norm(W, ord=1 if norm == np.inf else 2, axis=1)
    radius2 = tau * (np.sqrt(d) if norm == np.inf else 1.0)
    q, rho = net.q, net.rho_effective

    f = np.empty(n)
    kernels.soft_threshold_units(u, bias, q, rho, f, np.empty_like(u))
    base = yf * f
    drop = np.empty_like(u)
    kernels.unit_drops(u, yf, radius, bias, q, rho, drop)

    moving = drop > 0
    counts = moving.sum(axis=1)
    share = np.where(moving, drop / np.maximum(radius, 1e-300), -1.0)
    order = np.argsort(-share, axis=1, kind="stable")
    gram = W @ W.T
    joint = np.empty(n)
    kernels.joint_lipschitz_drop(drop, order, counts, np.maximum(gram, 0.0), radius2, joint)

    bounds = {"per_unit": base - drop.sum(axis=1), "gram": base - joint}
    slack = (d + net.m) * np.finfo(net.dtype).eps * (np.abs(u).sum(axis=1) + radius.sum())
    bounds["spectral"] = _spectral_bound(W, gram, moving, base, radius2,
                                         np.maximum(bounds["per_unit"], bounds["gram"]), slack)
    return bounds, slack


def robust_accuracy(net, x, y, norm, tau, model=None, pgd_steps=20, restarts=2, rng=None):
    r"""Robust accuracy at :math:`(p, \tau)` as a certified interval.

    Parameters
    ----------
    net : TwoLayerNet
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    norm : {2, "2", "l2", "inf", numpy.inf}
        Attack norm :math:`p`.
    tau : float
        Radius :math:`\tau \ge 0`.
    model : SparseCodingModel or (d,) array_like, optional
        Adds the dense-direction attack along :math:`M w^*` to the upper end.
    pgd_steps : int, default 20
        PGD steps per restart.
    restarts : int, default 2
        PGD random restarts.
    rng : numpy.random.Generator or int, optional
        Source of the PGD starts (default: ``default_rng(0)``).

    Returns
    -------
    RobustAccuracy
        ``lower`` is the certified fraction (an example counts when its best
        certificate exceeds the float rounding of the net's own evaluation,
        :math:`(d + m)\,\varepsilon_{\rm dtype} \sum_i (|u_i| + r_i)`, so that
        ``certified`` implies ``survived``); ``upper`` is the attacked accuracy.
    """
    net, x, y, norm, tau = _check_certify(net, x, y, norm, tau)
    pgd_steps = check_int("pgd_steps", pgd_steps, 1)
    restarts = check_int("restarts", restarts, 1)
    rng = check_random_state(0 if rng is None else rng)

    bounds, slack = _certify(net, x, y, norm, tau)
    stacked = np.stack([bounds[name] for name in METHODS])
    best = stacked.argmax(axis=0)
    certified_margin = stacked.max(axis=0)
    certified = certified_margin > slack
    method = np.where(certified, np.asarray(METHODS)[best], "")

    worst = attack_margin(net, x, y, norm, tau, model=model, pgd_steps=pgd_steps, restarts=restarts,
                          rng=rng)
    survived = worst > 0
    return RobustAccuracy(norm=norm, tau=tau, lower=float(certified.mean()), upper=float(survived.mean()),
                          certified=certified, survived=survived, method=method,
                          certified_margin=certified_margin, attack_margin=worst)


def robust_curve(net, x, y, norm, taus, model=None, pgd_steps=20, restarts=2, rng=None):
    r"""Certified interval of robust accuracy over a range of radii.

    Parameters
    ----------
    net, x, y, norm, model, pgd_steps, restarts
        As in :func:`robust_accuracy`.
    taus : (t,) array_like
        Radii :math:`\tau \ge 0`, increasing.
    rng : numpy.random.Generator or int, optional
        One generator shared by all radii (default: ``default_rng(0)``).

    Returns
    -------
    curve : dict
        ``taus``, ``lower``, ``upper``: ``(t,)`` float64 arrays.
    """
    taus = check_array("taus", taus, 1, dtype=np.float64)
    if taus.size == 0 or (taus < 0).any() or (np.diff(taus) <= 0).any():
        raise ValueError(f"taus must be a non-empty, strictly increasing array of radii >= 0, got {taus}")
    rng = check_random_state(0 if rng is None else rng)
    results = [robust_accuracy(net, x, y, norm, tau, model=model, pgd_steps=pgd_steps,
                               restarts=restarts, rng=rng) for tau in taus]
    return {"taus": taus, "lower": np.array([r.lower for r in results]),
            "upper": np.array([r.upper for r in results])}


def critical_radius(curve, level=0.5):
    r"""Radius :math:`\tau` at which each end of a robust-accuracy curve falls below ``level``.

    Linear interpolation between the two radii around the first crossing.

    Parameters
    ----------
    curve : dict
        From :func:`robust_curve` (``taus``, ``lower``, ``upper``).
    level : float, default 0.5
        Accuracy level in ``(0, 1)``.

    Returns
    -------
    radii : dict
        ``lower`` and ``upper``: the crossing radius of each end, ``nan`` if
        that end does not cross ``level`` inside the sampled radii (it stays
        at or above it, or is already below it at the first radius).
    """
    level = check_float("level", level, 0, 1, closed=(False, False))
    taus = np.asarray(curve["taus"], dtype=np.float64)
    return {end: _crossing(taus, np.asarray(curve[end], dtype=np.float64), level)
            for end in ("lower", "upper")}


def exact_robust_accuracy(net, x, y, tau, max_units=32, max_dim=64, time_limit=10.0):
    r"""Exact :math:`\ell_\infty` robustness of a small ReLU network by mixed-integer programming.

    Per example, solves :math:`\min_{\|\delta\|_\infty \le \tau} y f(x+\delta)`
    with :func:`scipy.optimize.milp`.  Each unit contributes
    :math:`y\,[\mathrm{ReLU}(t^+) - \mathrm{ReLU}(t^-)]` with :math:`t^\pm = \pm
    u_i - b_i` affine in :math:`\delta`, :math:`u_i \in [u_i^0 - \tau\|w_i\|_1,
    u_i^0 + \tau\|w_i\|_1]`.  A ReLU with a positive objective weight is
    convex in the minimisation and is encoded exactly by
    :math:`a \ge 0, a \ge t`; one with a negative weight gets the big-M
    encoding with a binary :math:`z`: :math:`a \le t - l(1-z)`,
    :math:`a \le h z` (:math:`[l, h]` the interval bounds of :math:`t`).
    ReLUs whose interval does not straddle 0 are affine and need neither.
    So there is at most one binary per unit.

    Parameters
    ----------
    net : TwoLayerNet
        ReLU activation only.
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    tau : float
        :math:`\ell_\infty` radius :math:`\tau \ge 0`.
    max_units : int, default 32
        Size limit: refuse networks with more than ``max_units`` units
        (at most one binary variable each).
    max_dim : int, default 64
        Size limit: refuse inputs of dimension ``d > max_dim``.
    time_limit : float, default 10.0
        Seconds allowed per example; a solve that does not prove optimality
        in time raises RuntimeError.

    Returns
    -------
    ExactRobustness
    """
    net, x, y, _, tau = _check_certify(net, x, y, np.inf, tau)
    max_units = check_int("max_units", max_units, 1)
    max_dim = check_int("max_dim", max_dim, 1)
    time_limit = check_float("time_limit", time_limit, 0, closed=(False, True))
    if net.activation != "relu":
        raise ValueError(f"exact_robust_accuracy needs activation='relu', got {net.activation!r}")
    if net.m > max_units:
        raise ValueError(f"exact_robust_accuracy is limited to m <= max_units={max_units} units "
                         f"(one binary each), got m={net.m}")
    if net.d > max_dim:
        raise ValueError(f"exact_robust_accuracy is limited to d <= max_dim={max_dim}, got d={net.d}")
    W = net.W.astype(np.float64)
    bias = net.bias().astype(np.float64)
    u = x.astype(np.float64) @ W.T
    radius = tau * np.abs(W).sum(axis=1)
    margins, deltas = [], []
    for b in range(x.shape[0]):
        margin, delta = _solve_exact(W, bias, u[b], radius, float(y[b]), tau, time_limit)
        margins.append(margin)
        deltas.append(delta)
    margins = np.array(margins)
    return ExactRobustness(tau=tau, min_margin=margins, robust=margins > 0, delta=np.array(deltas))


def _solve_exact(W, bias, u, radius, y, tau, time_limit):
    """One example of :func:`exact_robust_accuracy`: returns ``(min margin, minimiser)``."""
    m, d = W.shape
    linear = np.zeros(d)    # objective coefficients of delta
    constant = 0.0
    relus = []              # (objective weight, w, offset, low, high) of each straddling ReLU
    for i in range(m):
        for sign in (1.0, -1.0):
            weight = y * sign                         # objective weight of ReLU(t), t = <w, delta> + offset
            w, offset = sign * W[i], sign * u[i] - bias[i]
            low, high = offset - radius[i], offset + radius[i]
            if high <= 0:
                continue                              # 0 throughout the ball
            if low >= 0:                              # affine throughout the ball: t itself
                linear += weight * w
                constant += weight * offset
                continue
            relus.append((weight, w, offset, low, high))
    n_a = len(relus)
    n_z = sum(weight < 0 for weight, *_ in relus)     # concave in the minimisation: one binary each
    n_var = d + n_a + n_z
    rows, lows, highs = [], [], []

    def constrain(coefficients, low, high):
        row = np.zeros(n_var)
        for index, value in coefficients:
            row[index] = value
        rows.append(row)
        lows.append(low)
        highs.append(high)

    for a, (_, w, offset, _, _) in enumerate(relus):  # a >= t
        constrain([(slice(0, d), -w), (d + a, 1.0)], offset, np.inf)
    z = d + n_a
    for a, (weight, w, offset, low, high) in enumerate(relus):
        if weight < 0:                                # a <= t - low (1 - z),  a <= high z
            constrain([(slice(0, d), -w), (d + a, 1.0), (z, -low)], -np.inf, offset - low)
            constrain([(d + a, 1.0), (z, -high)], -np.inf, 0.0)
            z += 1
    cost = np.concatenate([linear, [r[0] for r in relus], np.zeros(n_z)])
    bounds = scipy.optimize.Bounds(np.concatenate([np.full(d, -tau), np.zeros(n_a + n_z)]),
                                   np.concatenate([np.full(d, tau), [r[4] for r in relus], np.ones(n_z)]))
    integrality = np.concatenate([np.zeros(d + n_a), np.ones(n_z)])
    constraints = scipy.optimize.LinearConstraint(np.array(rows), lows, highs) if rows else ()
    started = time.perf_counter()
    result = scipy.optimize.milp(cost, integrality=integrality, bounds=bounds, constraints=constraints,
                                 options={"time_limit": time_limit, "mip_rel_gap": 0.0})
    if result.status != 0:
        raise RuntimeError(f"exact_robust_accuracy: MILP not solved to optimality "
                           f"({result.message}; {time.perf_counter() - started:.1f}s, "
                           f"time_limit={time_limit}s); raise time_limit or shrink the net")
    return float(result.fun + constant), result.x[:d].copy()


def _spectral_bound(W, gram, moving, base, radius2, best_other, slack):
    r"""The ``"spectral"`` bound :math:`y f(x) - \rho_2 \sqrt{|S|}\,\sigma_{\max}(W_S)`, eigen-solving only where it decides.

    :math:`\sigma_{\max}(W_S) \le \sigma_{\max}(W)` gives a sound bound for
    every example from one SVD.  Rayleigh quotients give cheap lower bounds,
    :math:`\sigma_{\max}(W_S)^2 \ge \max\big(\max_{i\in S}\|w_i\|^2,\
    \|W_S v_1\|^2,\ \|\sum_{i\in S} w_i\|^2/|S|\big)` (:math:`v_1` the top
    right singular vector of :math:`W`), hence an optimistic bound no exact
    solve can beat.  The exact per-example eigenvalue problem is solved only
    where that optimistic bound would certify (exceeds ``slack``) and neither
    the cheap spectral bound nor ``best_other`` (the other certificates)
    already does: the certified set is exactly what solving everywhere gives.
    """
    size = moving.sum(axis=1)
    _, sigma, vt = np.linalg.svd(W, full_matrices=False)
    sigma_all = sigma[0] * (1.0 + 1e-9)
    mask = moving.astype(np.float64)
    lower_sq = np.maximum.reduce([
        (mask * np.einsum("ij,ij->i", W, W)).max(axis=1),
        mask @ (W @ vt[0]) ** 2,
        np.einsum("bj,bj->b", mask @ gram, mask) / np.maximum(size, 1)])
    bound = base - radius2 * np.sqrt(size) * sigma_all
    optimistic = base - radius2 * np.sqrt(size * lower_sq)
    undecided = (optimistic > slack) & (np.maximum(best_other, bound) <= slack)
    for b in np.flatnonzero(undecided):
        units = np.flatnonzero(moving[b])
        bound[b] = base[b] - radius2 * np.sqrt(len(units) * _largest_eigenvalue(W, gram, units))
    return bound


def _largest_eigenvalue(W, gram, units):
    r""":math:`\sigma_{\max}(W_S)^2` for the rows ``units``, from the smaller Gram matrix, rounded up."""
    if len(units) == 0:
        return 0.0
    rows = W[units]
    small = gram[np.ix_(units, units)] if len(units) <= W.shape[1] else rows.T @ rows
    top = scipy.linalg.eigvalsh(small, subset_by_index=[len(small) - 1] * 2)[0]
    return max(top, 0.0) * (1.0 + 1e-9) + 1e-300


def _crossing(taus, values, level):
    """First radius where ``values`` falls from ``>= level`` to ``< level``, linearly interpolated."""
    if values[0] < level:
        return float("nan")
    below = np.flatnonzero(values < level)
    if below.size == 0:
        return float("nan")
    j = below[0]
    t0, t1, v0, v1 = taus[j - 1], taus[j], values[j - 1], values[j]
    return float(t0 + (v0 - level) / (v0 - v1) * (t1 - t0))


def _check_certify(net, x, y, norm, tau):
    """Validate the common arguments; returns ``(net, x, y, norm, tau)``."""
    if not isinstance(net, TwoLayerNet):
        raise TypeError(f"net must be a TwoLayerNet (certificates need its units), got {type(net).__name__}")
    x = check_array("x", x, 2, dtype=net.dtype, shape=(None, net.d))
    y = check_labels("y", y, x.shape[0])
    return net, x, y, check_norm(norm), check_float("tau", tau, 0)
