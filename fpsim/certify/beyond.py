r"""A certificate beyond the threshold: the ``"split"`` bound (``docs/MODEL.md`` §5).

The bounds of :mod:`fpsim.certify.bounds` charge every unit that can switch
on somewhere in the ball as if it moved linearly with :math:`\delta`.  Once
:math:`\tau \ge \theta` that is every unit, and they collapse.  This model
has more structure: an inactive unit lowers the margin only by switching on
past its *harmful* threshold :math:`-y b_i`, a gap :math:`g_i = b_i + y u_i`
(:math:`\ge b_i - |u_i|`) away, and then loses at most

.. math::

    (-y a_i - g_i)_+ \;\le\; (|a_i| - g_i)_+ \;\le\; \frac{a_i^2}{4 g_i},
    \qquad a_i = \langle w_i, \delta\rangle ,

(because :math:`t^2/(4g) - t + g = (t/(2\sqrt g) - \sqrt g)^2 \ge 0`), which
is quadratic, not linear, in :math:`\delta`: an attacker cannot align
:math:`\delta` with many nearly orthogonal units at once, and what it spends
on the units that are already active it cannot spend again on switching
others on.  :func:`split_margins` makes both points into a bound; the
derivation is in :func:`fpsim.kernels.split_drop` and
:func:`fpsim.kernels.trust_region_max`.  It uses only that each unit is odd,
non-decreasing, 1-Lipschitz and :math:`|s_i(u)| \le (|u| - b_i)_+`, true of
the ReLU and of the smoothed ReLU, and that the basis is orthonormal; it holds
for any orthonormal basis (the data model's dictionary :math:`M` makes it
tight, as each trained unit then lies mostly on one coordinate).

For :math:`\ell_\infty` the ball is enclosed in the :math:`\ell_2` ball of
radius :math:`\tau\sqrt d` (sound, and weak in high dimension).
"""
from __future__ import annotations

import hashlib

import numpy as np

from .. import kernels
from ._common import top_eigenpair

#: Share of a unit's squared norm on its principal coordinate above which it is "strong".
STRONG_SHARE = 0.75
#: Class thresholds tried per example (every value is sound; the best bound is kept).
KAPPAS = (0.1, 0.3)
ETAS = (0.6, 0.3)


def orthonormal_basis(dictionary, d):
    r"""An exactly (to float64) orthonormal basis close to ``dictionary``; identity if ``None``.

    The polar factor :math:`U V^\top` of :math:`M = U \Sigma V^\top`: the
    certificate's soundness needs :math:`M^\top M = I`, not that ``M`` be the
    data model's dictionary, so float32 dictionaries are re-orthonormalised here.

    The last basis is kept, keyed by a digest of the dictionary's bytes: a
    robust-accuracy curve certifies at many radii with one dictionary, and the
    :math:`O(d^3)` SVD (a minute at :math:`d = 4000`) is then done once.

    Returns
    -------
    (d, d) float64 ndarray
        Columns are the basis vectors (read-only).
    """
    if dictionary is None:
        return np.eye(d)
    dictionary = np.ascontiguousarray(dictionary)
    key = (dictionary.shape, dictionary.dtype.str, hashlib.blake2b(dictionary, digest_size=16).digest())
    entry = _BASIS_CACHE.get("last")  # one (key, basis) pair, read and replaced whole (threads may share it)
    if entry is None or entry[0] != key:
        left, _, right = np.linalg.svd(dictionary.astype(np.float64))
        basis = left @ right
        basis.flags.writeable = False
        entry = _BASIS_CACHE["last"] = (key, basis)
    return entry[1]


_BASIS_CACHE = {}


def split_margins(W, bias, yu, base, radius2, basis, gram=None, kappas=KAPPAS, etas=ETAS, target=None):
    r"""The ``"split"`` lower bound on :math:`\min_{\|\delta\|_2 \le R} y f(x+\delta)`, per example.

    Parameters
    ----------
    W : (m, d) float64 ndarray
    bias : (m,) float64 ndarray
        :math:`b_i`; the bound needs :math:`b_i > 0` (it returns ``-inf`` otherwise).
    yu : (n, m) float64 ndarray
        :math:`y_b u_{bi} = y_b \langle w_i, x_b\rangle` (the label tells which
        threshold an inactive unit must cross to lower the margin).
    base : (n,) float64 ndarray
        :math:`y_b f(x_b)`.
    radius2 : float
        :math:`R`, the :math:`\ell_2` radius of (a ball enclosing) the perturbation set.
    basis : (d, d) float64 ndarray
        Orthonormal columns (:func:`orthonormal_basis`).
    gram : (m, m) float64 ndarray, optional
        :math:`WW^\top`, when the caller has it already (formed here otherwise).
    kappas, etas : sequence of float
        Class thresholds of :func:`fpsim.kernels.split_drop`; the best is kept.
    target : (n,) float64 ndarray, optional
        Once an example's bound exceeds its target (the certification slack),
        the remaining thresholds are not tried for it (they could only raise a
        bound that already certifies); where a cheap floor of the bound (its
        value at two points of the disk) shows that it cannot exceed the
        target, the example's bound is :math:`-\infty`
        (:func:`fpsim.kernels.split_drop`'s ``give_up``) -- the same examples
        certified, far less work on the hopeless ones.

    Returns
    -------
    (n,) float64 ndarray
        :math:`y f(x) - \text{drop}`, best over the thresholds.
    """
    n = yu.shape[0]
    if radius2 == 0:
        return base.copy()
    if not (bias > 0).all():
        return np.full(n, -np.inf)
    coef = W @ basis
    sq = np.einsum("ij,ij->i", W, W)
    top = np.argmax(np.abs(coef), axis=1)
    alpha = np.abs(coef[np.arange(len(top)), top])
    resid = np.sqrt(np.maximum(sq - alpha ** 2, 0.0)) * (1.0 + 1e-9) + 1e-12 * np.sqrt(sq)
    strong = alpha ** 2 >= STRONG_SHARE * sq
    norms = np.sqrt(sq) * (1.0 + 1e-9)
    gram = W @ W.T if gram is None else gram
    weak = coef[~strong]
    best = np.full(n, -np.inf)
    # a drop of at least give_up leaves the margin at or below its target: the kernel may stop early there
    give_up = np.full(n, np.inf) if target is None else base - np.asarray(target, dtype=np.float64)
    target = np.full(n, np.inf) if target is None else np.asarray(target, dtype=np.float64)
    for eta in etas:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            scaled = weak / np.sqrt(4.0 * (1.0 - eta) * bias[~strong])[:, None]
            weak_quad = scaled.T @ scaled
        if not np.isfinite(weak_quad).all():      # thresholds so small that the quadratic overflows
            continue
        weak_top = top_eigenpair(weak_quad)[0] if len(scaled) else 0.0
        for kappa in kappas:
            rows = np.flatnonzero(best <= target)
            if rows.size == 0:
                return best
            drop = np.empty(rows.size)
            kernels.split_drop(yu[rows], bias, top, alpha, resid, strong, norms, gram, coef, weak_quad, weak_top,
                               float(radius2), float(kappa), float(eta), give_up[rows], drop)
            best[rows] = np.maximum(best[rows], base[rows] - np.where(np.isnan(drop), np.inf, drop))
    return best
