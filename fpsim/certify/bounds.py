r"""Sound lower bounds on the worst-case margin (``docs/MODEL.md`` §5).

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

Five instances are computed per example and the best one is kept:

* ``"per_unit"`` -- :math:`S = \emptyset`: :math:`y f(x+\delta) \ge \sum_i y
  s_i(u_i - y r_i)`, the per-unit monotone bound;
* ``"gram"`` -- the best prefix :math:`S_t` of the units ordered by
  :math:`\text{drop}_i / r_i` (units that move fully through the ball
  first), with the :math:`(G)_+` bound (:func:`fpsim.kernels.joint_lipschitz_drop`);
* ``"spectral"`` -- :math:`S` = all units with :math:`\text{drop}_i > 0`
  (a subset of the units that can be active somewhere in the ball,
  :math:`|u_i| + r_i > b_i`; every other unit never lowers the margin), with
  the :math:`\sigma_{\max}` bound: the local spectral bound of MODEL.md §5;
* ``"linear"`` -- a line below each unit on its input interval, closed over
  the ball with the dual norm (CROWN), its slopes optimised per example
  (α-CROWN's idea, via the relaxed primal): :mod:`fpsim.certify.linear`, with
  its derivation.  CROWN's slopes everywhere; optimised only where every
  other bound (``"split"`` included) leaves the example uncertified.
* ``"split"`` -- beyond the threshold (:math:`\tau \ge \theta`, where the
  bounds above collapse): inactive units cost quadratically, not linearly,
  and share the ball with the active ones (:mod:`fpsim.certify.beyond`).
  Evaluated only on the examples the bounds above (linear with CROWN's
  slopes) leave uncertified (``-inf`` elsewhere), in the basis of the data model's dictionary when one
  is given.

The biases are held fixed in the ball: for the relative threshold
:math:`b_i = \theta\|w_i\|` depends on :math:`W` only.

:func:`exact_robust_accuracy` solves the :math:`\ell_\infty` problem exactly
as a mixed-integer linear program for small ReLU networks, to validate both
ends.
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ._common import check_certify, top_eigenpair, unit_weights
from .beyond import orthonormal_basis, split_margins
from .linear import LINEAR_ITERATIONS, _linear_bound

#: Names of the certificates, in the order ties are resolved.
METHODS = ("per_unit", "gram", "spectral", "linear", "split")


def certified_margins(net, x, y, norm, tau, dictionary=None):
    r"""Sound lower bounds on the worst-case margin, per example and per certificate.

    Parameters
    ----------
    net : TwoLayerNet
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    norm : {2, "2", "l2", "inf", numpy.inf}
    tau : float
        Radius :math:`\tau \ge 0`.
    dictionary : (d, d) array_like, optional
        Basis for the ``"split"`` bound (the data model's :math:`M`; any
        orthogonal matrix is sound, the identity is used when ``None``).

    Returns
    -------
    bounds : dict of (n,) float64 ndarray
        For each name in :data:`METHODS`, a lower bound on
        :math:`\min_{\|\delta\|_p \le \tau} y f(x+\delta)` (see the module docstring).
    """
    return _certify(*check_certify(net, x, y, norm, tau), dictionary=dictionary)[0]


def _certify(net, x, y, norm, tau, dictionary=None):
    r""":func:`certified_margins` on validated input; also returns the rounding slack ``(n,)``.

    The slack bounds the float64 rounding of the evaluation the attacks read
    (:meth:`fpsim.network.TwoLayerNet.forward64`, the same float64 arithmetic
    on the same stored weights and biases as these bounds),
    :math:`(d + m)\,\varepsilon_{64} \sum_i (|u_i| + r_i)`.
    """
    W = net.W.astype(np.float64)
    n, d = x.shape
    bias = net.bias().astype(np.float64)
    yf = y.astype(np.float64)
    u = x.astype(np.float64) @ W.T
    scale, unit_W = unit_weights(W)       # norms and second-order quantities at unit scale (no underflow)
    unit_u, unit_bias = u / scale, bias / scale
    radius = tau * scale * np.linalg.norm(unit_W, ord=1 if norm == np.inf else 2, axis=1)
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
    gram = unit_W @ unit_W.T
    slack = (d + net.m) * np.finfo(np.float64).eps * (np.abs(u).sum(axis=1) + radius.sum())
    joint = np.empty(n)   # (a drop of base - slack or more certifies nothing: the scan may stop there)
    kernels.joint_lipschitz_drop(drop, order, counts, np.maximum(gram, 0.0), radius2 * scale, base - slack, joint)

    bounds = {"per_unit": base - drop.sum(axis=1), "gram": base - joint}
    cheap = np.maximum(bounds["per_unit"], bounds["gram"])
    # Cheapest first; each later bound is evaluated only where the earlier ones leave an example
    # uncertified (the certified set is what evaluating everything everywhere would give).
    def linear(rows, iterations):
        return scale * _linear_bound(unit_W, unit_bias, unit_u[rows], yf[rows], radius / scale, tau,
                                     norm == np.inf, q, rho / scale, iterations, target=slack[rows] / scale)

    everything = np.arange(n)
    bounds["linear"] = linear(everything, 0)              # CROWN's slopes (fpsim.certify.linear)
    bounds["spectral"] = _spectral_bound(unit_W, gram, moving, base, radius2 * scale,
                                         np.maximum(cheap, bounds["linear"]), slack)
    bounds["split"] = np.full(n, -np.inf)
    rows = everything[np.maximum.reduce([bounds[name] for name in bounds]) <= slack]
    if rows.size:                                         # beyond the threshold (fpsim.certify.beyond)
        bounds["split"][rows] = scale * split_margins(unit_W, unit_bias, yf[rows, None] * unit_u[rows],
                                                      base[rows] / scale,
                                                      radius2, orthonormal_basis(dictionary, d), gram=gram,
                                                      target=slack[rows] / scale)
    rows = rows[bounds["split"][rows] <= slack[rows]]
    if rows.size:                                         # slopes optimised for the example (alpha-CROWN's idea)
        bounds["linear"][rows] = np.maximum(bounds["linear"][rows], linear(rows, LINEAR_ITERATIONS))
    return bounds, slack


def _spectral_bound(W, gram, moving, base, radius2, best_other, slack):
    r"""The ``"spectral"`` bound :math:`y f(x) - \rho_2 \sqrt{|S|}\,\sigma_{\max}(W_S)`, eigen-solving only where it decides.

    ``W`` may be the weights divided by a scale :math:`c` (``gram`` is then
    :math:`WW^\top` of the scaled rows) when ``radius2`` is :math:`c\rho_2`.

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
    top, v1 = top_eigenpair(W.T @ W)
    sigma_all = np.sqrt(top)
    mask = moving.astype(np.float64)
    lower_sq = np.maximum.reduce([
        (mask * np.einsum("ij,ij->i", W, W)).max(axis=1),
        mask @ (W @ v1) ** 2,
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
    return top_eigenpair(gram[np.ix_(units, units)] if len(units) <= W.shape[1] else rows.T @ rows)[0]
