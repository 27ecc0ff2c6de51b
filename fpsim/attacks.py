r"""Norm-bounded attacks on a classifier (``docs/MODEL.md`` §5).

Every attack returns a perturbation :math:`\delta` of shape ``(n, d)`` with
:math:`\|\delta_b\|_p \le \tau` (to float rounding) for :math:`p \in \{2, \infty\}`:

* :func:`fgm` -- one step along the loss gradient :math:`g = \nabla_x \ell`:
  :math:`\delta = \tau g/\|g\|_2` (:math:`\ell_2`) or :math:`\tau \operatorname{sign} g`
  (:math:`\ell_\infty`).
* :func:`pgd` -- a run from :math:`\delta = 0` and random starts in the ball,
  :math:`S` steps in the same steepest-ascent direction with APGD's step
  schedule (halving with momentum and checkpoints; or a fixed step),
  projection onto the ball, the most damaging iterate kept.
* :func:`dense_direction` -- the data-aware attack along :math:`v = M w^*`:
  :math:`\delta = -y \tau v/\|v\|_2` or :math:`-y \tau \operatorname{sign} v`.

:func:`attack_margins` runs them all, :func:`attack_margin` takes the worst
per example (the upper end of robust accuracy) and :func:`first_breaker`
names the attack that broke each example.

:func:`fgm` and :func:`pgd` work on any object with ``forward(x) -> (n,)``
and ``input_grad(x, y) -> (n, d)`` (the baselines use them too); on a
:class:`~fpsim.network.TwoLayerNet` the PGD loop reuses one
:class:`~fpsim.network.Workspace`.
"""
from __future__ import annotations

import numpy as np

from . import kernels
from ._validation import (check_array, check_choice, check_float, check_int, check_labels,
                          check_norm, check_random_state)
from .network import TwoLayerNet, Workspace


def fgm(net, x, y, norm, tau):
    r"""Fast gradient method: one full step of radius :math:`\tau` along the loss gradient.

    .. math::

        \delta = \tau\, g / \|g\|_2 \ (\ell_2;\ \delta = 0 \text{ if } g = 0), \qquad
        \delta = \tau \operatorname{sign} g \ (\ell_\infty), \qquad g = \nabla_x \ell(y f(x))

    Parameters
    ----------
    net : object
        Classifier with ``forward(x) -> (n,)`` and ``input_grad(x, y) -> (n, d)``.
    x : (n, d) array_like
        Inputs.
    y : (n,) array_like of {-1, +1}
        Labels.
    norm : {2, "2", "l2", "inf", numpy.inf}
        Attack norm :math:`p`.
    tau : float
        Radius :math:`\tau \ge 0`.

    Returns
    -------
    delta : (n, d) ndarray
        Perturbations, in the dtype of ``x``.
    """
    x, y, inf_norm, tau = _check_attack(x, y, norm, tau)
    delta = np.zeros_like(x)
    kernels.ascend_project(delta, _Oracle(net, x, y).gradient(x), tau, tau, inf_norm)
    return delta


#: PGD step-size schedules: APGD's halving with momentum and checkpoints, or a fixed step.
SCHEDULES = ("apgd", "fixed")
#: Attack objectives: the logistic loss :math:`\ell(yf)` or the margin loss :math:`-yf`.
LOSSES = ("logistic", "margin")


def pgd(net, x, y, norm, tau, steps=10, step_size=None, restarts=1, rng=None, zero_start=True,
        schedule="apgd", loss="logistic", units=None, gram=None):
    r"""Projected gradient ascent of the loss in the ball: a run from :math:`\delta = 0` and random restarts.

    Each run starts at :math:`\delta^{(0)} = 0` (the first run, when
    ``zero_start``) or uniformly in the ball (``restarts`` runs) and takes
    :math:`S` steps along the steepest-ascent direction
    :math:`d(g) = g/\|g\|_2` (:math:`\ell_2`) or :math:`\operatorname{sign} g`
    (:math:`\ell_\infty`) of :math:`g = \nabla_x L`, with :math:`\Pi` the
    projection onto the ball.

    * ``schedule="apgd"`` (Croce & Hein 2020, "APGD"): per example a step
      :math:`\eta_b^{(0)} = 2\tau` (or ``step_size``), so the first step reaches
      the sphere whatever :math:`S`; then

      .. math::

          z = \Pi\big(\delta^{(s)} + \eta\, d(g^{(s)})\big), \qquad
          \delta^{(s+1)} = \Pi\big(\delta^{(s)} + \tfrac34 (z - \delta^{(s)})
                                   + \tfrac14 (\delta^{(s)} - \delta^{(s-1)})\big);

      at the checkpoints :math:`w_0 = 0,\ w_{j+1} = w_j + h_j` with
      :math:`h_0 = \lceil 0.22 S\rceil`, :math:`h_{j+1} = \max(h_j - \lceil 0.03 S\rceil, \lceil 0.06 S\rceil)`,
      an example whose objective rose in fewer than :math:`0.75\, h_j` of the
      last :math:`h_j` steps, or whose step and best objective have not changed
      since the previous checkpoint, halves :math:`\eta_b` and restarts from
      its best iterate.
    * ``schedule="fixed"``: :math:`\delta^{(s+1)} = \Pi(\delta^{(s)} + \alpha\, d(g^{(s)}))`,
      :math:`\alpha` = ``step_size`` (default :math:`2.5\tau/S`; from a random
      start in high dimension this ends near :math:`0.93\tau` along the attack
      direction, hence the APGD default).

    The objective :math:`L` is the logistic loss :math:`\log(1 + e^{-yf})` or
    the margin loss :math:`-y f`.  For this binary classifier both gradients
    point the same way (:math:`\nabla \ell = \sigma(-yf)\,\nabla(-yf)`) and
    the step is normalised, so the two give the same iterates, except where the
    sigmoid underflows (large margins, float32): there the logistic gradient
    is 0 and only the margin loss still moves.  Per example the iterate of
    lowest margin :math:`y f(x + \delta)` over all steps and runs is returned.

    Parameters
    ----------
    net : object
        Classifier with ``forward(x) -> (n,)`` and ``input_grad(x, y) -> (n, d)``.
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    norm : {2, "2", "l2", "inf", numpy.inf}
    tau : float
        Radius :math:`\tau \ge 0`.
    steps : int, default 10
        Steps :math:`S \ge 1` per run.
    step_size : float, optional
        ``"apgd"``: the initial :math:`\eta > 0` (default :math:`2\tau`);
        ``"fixed"``: :math:`\alpha > 0` (default :math:`2.5\tau/S`).
    restarts : int, default 1
        Number of random starts (``>= 0``; ``>= 1`` without ``zero_start``).
    rng : numpy.random.Generator or int, optional
        Source of the random starts (default: ``default_rng(0)``).
    zero_start : bool, default True
        Add a run from :math:`\delta = 0`.
    schedule : {"apgd", "fixed"}, default "apgd"
    loss : {"logistic", "margin"}, default "logistic"
    units : (n, m) ndarray, optional
        :class:`~fpsim.network.TwoLayerNet` only: receives the pre-activations
        :math:`(x + \delta) W^\top` at the returned :math:`\delta` (the net's
        dtype), so that a training step at :math:`x + \delta` need not form
        them again.  They are kept from the last evaluation where that was the
        returned iterate, and formed for the other rows.
    gram : fpsim.network.Gram, optional
        :math:`K = W W^\top` of a :class:`~fpsim.network.TwoLayerNet`'s current
        weights (``schedule="fixed"``, :math:`\ell_2`, logistic loss only).
        While it is current (and ``x`` is in the net's dtype), each run forms :math:`X W^\top` and
        :math:`\delta^{(0)} W^\top` once and then follows the pre-activations
        of its iterates through :math:`K` (:func:`fpsim.kernels.gram_advance`)
        at the iterations where that pays (:meth:`fpsim.network.Gram.pays`):
        the same iterates as without it up to float rounding, fewer products
        with :math:`W`.

    Returns
    -------
    delta : (n, d) ndarray
        The most damaging perturbation found per example.
    """
    x, y, inf_norm, tau = _check_attack(x, y, norm, tau)
    steps = check_int("steps", steps, 1)
    zero_start = bool(zero_start)
    restarts = check_int("restarts", restarts, 0 if zero_start else 1)
    schedule = check_choice("schedule", schedule, SCHEDULES)
    loss = check_choice("loss", loss, LOSSES)
    if step_size is None:
        step_size = 2.0 * tau if schedule == "apgd" else 2.5 * tau / steps
    else:
        step_size = check_float("step_size", step_size, 0, closed=(False, True))
    rng = check_random_state(0 if rng is None else rng)
    oracle = _Oracle(net, x, y, loss)
    if gram is not None:
        if oracle.ws is None or inf_norm or schedule != "fixed" or loss != "logistic":
            raise ValueError("gram needs a TwoLayerNet, norm 2, schedule='fixed' and loss='logistic'")
        gram.check_fits(net)
        if gram.current and x.dtype == net.dtype:  # K follows x + delta exactly, not its rounding to x's dtype
            oracle.follow(gram)
    if units is not None:
        if oracle.ws is None:
            raise TypeError(f"units needs a TwoLayerNet, got {type(net).__name__}")
        if units.shape != (x.shape[0], net.m) or units.dtype != net.dtype or not units.flags.c_contiguous:
            raise ValueError(f"units must be a C-contiguous {net.dtype} array of shape {(x.shape[0], net.m)}, "
                             f"got {units.dtype} {units.shape}")
    best = np.zeros_like(x)
    best_margin = np.full(x.shape[0], np.inf)
    run = _apgd_run if schedule == "apgd" else _fixed_run
    starts = [None] * zero_start + [rng] * restarts
    for start in starts:
        delta = np.zeros_like(x) if start is None else random_in_ball(start, x.shape, inf_norm, tau, x.dtype)
        kept = run(oracle, x, delta, steps, step_size, tau, inf_norm, best, best_margin, units)
    if units is not None:
        stale = np.flatnonzero(~kept)   # rows whose best iterate is not the last one evaluated
        if stale.size:
            units[stale] = net.preactivations(x[stale] + best[stale])
    return best


def _keep(margin, delta, best, best_margin, tol=0.0):
    """Record ``delta`` where ``margin`` beats ``best_margin`` by more than ``tol`` (per example); returns the mask."""
    better = margin < best_margin - tol
    best_margin[better] = margin[better]
    best[better] = delta[better]
    return better


def _fixed_run(oracle, x, delta, steps, alpha, tau, inf_norm, best, best_margin, units=None):
    """One fixed-step PGD run from ``delta`` (updated), recording into ``best``/``best_margin``.

    Returns the rows whose ``best`` is the last iterate (its pre-activations are in ``units``, if given).
    """
    x_adv = np.empty_like(x)
    oracle.start(delta)
    for _ in range(steps):
        margin, grad = oracle.margin_gradient(np.add(x, delta, out=x_adv))
        _keep(margin, delta, best, best_margin)
        kernels.ascend_project(delta, grad, alpha, tau, inf_norm, oracle.factors)
        oracle.moved()
    return _keep(oracle.margin(np.add(x, delta, out=x_adv), units), delta, best, best_margin)


def apgd_checkpoints(steps):
    r"""The iterations at which APGD may halve its step: :math:`w_1 < w_2 < \dots < S` (see :func:`pgd`)."""
    height = max(int(np.ceil(0.22 * steps)), 1)
    decrease, least = max(int(np.ceil(0.03 * steps)), 1), max(int(np.ceil(0.06 * steps)), 1)
    points, at = [], height
    while at < steps:
        points.append(at)
        height = max(height - decrease, least)
        at += height
    return points


def _apgd_run(oracle, x, delta, steps, eta0, tau, inf_norm, best, best_margin, units=None):
    """One APGD run from ``delta`` (updated), recording into ``best``/``best_margin``.

    Returns the rows whose ``best`` is the last iterate (its pre-activations are in ``units``, if given).
    """
    n = x.shape[0]
    x_adv = np.empty_like(x)
    run_best, run_margin = delta.copy(), np.full(n, np.inf)
    margin, grad = oracle.margin_gradient(np.add(x, delta, out=x_adv))
    grad = grad.copy()  # the oracle's buffer is reused by the next call
    best_grad = grad.copy()
    _keep(margin, delta, run_best, run_margin)
    # changes within the float rounding of the margin do not count, so that neither the schedule nor the
    # iterate kept hinges on rounding (e.g. the same attack through the net's sparse and dense backward)
    tol = 64 * np.finfo(x.dtype).eps * np.maximum(np.abs(margin), np.finfo(x.dtype).tiny)
    eta = np.full(n, eta0)
    previous, work = delta.copy(), np.empty_like(delta)
    kernels.momentum_ascend(delta, previous, grad, eta, tau, inf_norm, 1.0, work)
    checkpoints = set(apgd_checkpoints(steps))
    rises = np.zeros(n, dtype=np.int64)
    since, eta_then, margin_then = 0, eta.copy(), run_margin.copy()
    for s in range(1, steps):
        new_margin, new_grad = oracle.margin_gradient(np.add(x, delta, out=x_adv))
        rises += new_margin < margin - tol
        margin = new_margin
        grad[:] = new_grad
        better = _keep(margin, delta, run_best, run_margin, tol)
        best_grad[better] = grad[better]
        since += 1
        if s in checkpoints:
            halve = (rises < 0.75 * since) | ((eta == eta_then) & (run_margin >= margin_then - tol))
            eta_then, margin_then = eta.copy(), run_margin.copy()
            eta[halve] *= 0.5
            delta[halve] = run_best[halve]
            grad[halve] = best_grad[halve]
            previous[halve] = run_best[halve]  # restart without momentum
            rises[:] = 0
            since = 0
        kernels.momentum_ascend(delta, previous, grad, eta, tau, inf_norm, 0.75, work)
    last = _keep(oracle.margin(np.add(x, delta, out=x_adv), units), delta, run_best, run_margin, tol)
    return last & _keep(run_margin, run_best, best, best_margin)


def dense_direction(model_or_direction, x, y, norm, tau):
    r"""Dense-direction attack along the label direction :math:`v = M w^*`.

    .. math::

        \delta_b = -y_b\, \tau\, v / \|v\|_2 \ (\ell_2), \qquad
        \delta_b = -y_b\, \tau \operatorname{sign} v \ (\ell_\infty)

    Parameters
    ----------
    model_or_direction : SparseCodingModel or (d,) array_like
        A model (its ``dense_direction`` :math:`M w^*/\|M w^*\|` is used) or
        the direction :math:`v` itself (any non-zero scale).
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    norm : {2, "2", "l2", "inf", numpy.inf}
    tau : float
        Radius :math:`\tau \ge 0`.

    Returns
    -------
    delta : (n, d) ndarray
    """
    x, y, inf_norm, tau = _check_attack(x, y, norm, tau)
    v = getattr(model_or_direction, "dense_direction", model_or_direction)
    v = check_array("direction", v, 1, dtype=np.float64, shape=(x.shape[1],))
    length = np.linalg.norm(v)
    if length == 0:
        raise ValueError("direction must be non-zero")
    unit = np.sign(v) if inf_norm else v / length
    return (-tau * y[:, None].astype(np.float64) * unit).astype(x.dtype)


#: Attacks usable in adversarial training.
ATTACKS = ("fgm", "pgd")


def perturbation(net, x, y, attack, norm, tau, rng=None, steps=10, step_size=None, restarts=1, units=None,
                 gram=None):
    r"""Perturbation :math:`\delta` of the named attack (``"fgm"`` or ``"pgd"``) -- the one switch
    used by adversarial training of the network and of the baselines.

    ``steps``, ``step_size``, ``restarts`` and ``rng`` go to :func:`pgd`
    (FGM has none), which runs here as in training so far: random starts only,
    fixed step.  ``units`` (a :class:`~fpsim.network.TwoLayerNet`'s
    ``(n, m)`` buffer) receives :math:`(x + \delta) W^\top` as in :func:`pgd`;
    ``gram`` goes to :func:`pgd` (:math:`\ell_2` only; FGM ignores it).
    Returns ``(n, d)``.
    """
    check_choice("attack", attack, ATTACKS)
    if attack == "fgm":
        delta = fgm(net, x, y, norm, tau)
        if units is not None:
            net.preactivations(x + delta, out=units)
        return delta
    return pgd(net, x, y, norm, tau, steps=steps, step_size=step_size, restarts=restarts, rng=rng,
               zero_start=False, schedule="fixed", units=units, gram=gram)


#: Names of the attacks of the upper end (:func:`attack_margins`), in the order ties are resolved.
ATTACK_NAMES = ("clean", "fgm", "pgd_zero", "pgd_random", "dense_direction")


def attack_margins(net, x, y, norm, tau, model=None, pgd_steps=20, restarts=2, rng=None):
    r"""Margin :math:`y f(x + \delta)` reached by each attack of the upper end, per example.

    The attacks (:data:`ATTACK_NAMES`): ``"clean"`` (:math:`\delta = 0`),
    :func:`fgm`, ``"pgd_zero"`` (:func:`pgd`, APGD schedule, one run from
    :math:`\delta = 0` on the margin loss), ``"pgd_random"`` (:func:`pgd`,
    APGD schedule, ``restarts`` random starts on the logistic loss) and, given
    ``model``, :func:`dense_direction`.

    Parameters
    ----------
    net, x, y, norm, tau, model, pgd_steps, restarts, rng
        As in :func:`attack_margin` (``restarts >= 0`` here: 0 skips ``"pgd_random"``).

    Returns
    -------
    margins : dict of (n,) float64 ndarray
        One entry per attack run, keyed by its name.
    """
    x, y, _, _ = _check_attack(x, y, norm, tau)
    pgd_steps = check_int("pgd_steps", pgd_steps, 1)
    restarts = check_int("restarts", restarts, 0)
    deltas = {"clean": np.zeros_like(x), "fgm": fgm(net, x, y, norm, tau),
              "pgd_zero": pgd(net, x, y, norm, tau, steps=pgd_steps, restarts=0, loss="margin")}
    if restarts:
        deltas["pgd_random"] = pgd(net, x, y, norm, tau, steps=pgd_steps, restarts=restarts, rng=rng,
                                   zero_start=False)
    if model is not None:
        deltas["dense_direction"] = dense_direction(model, x, y, norm, tau)
    return {name: reference_margin(net, x, y, delta, norm, tau) for name, delta in deltas.items()}


def reference_margin(net, x, y, delta, norm, tau):
    r"""Margin :math:`y f(x + \delta)` of an attack's :math:`\delta`, read as the certificates read it.

    :math:`\delta` is brought into the ball in float64 (an attack's float32
    projection can overshoot the radius by a rounding) and, for a
    :class:`~fpsim.network.TwoLayerNet`, :math:`f` is
    :meth:`~fpsim.network.TwoLayerNet.forward64`, the real function the
    certificates bound: so a certified example is never "broken" by a
    rounding of the net's own evaluation.  Other classifiers use their ``forward``.

    Parameters
    ----------
    net : TwoLayerNet or classifier
    x : (n, d) ndarray
    y : (n,) ndarray of {-1, +1}
    delta : (n, d) ndarray
    norm : {2, inf}
    tau : float

    Returns
    -------
    (n,) float64 ndarray
    """
    step = np.asarray(delta, dtype=np.float64)
    if check_norm(norm) == np.inf:
        step = np.clip(step, -tau, tau)
    else:
        length = np.linalg.norm(step, axis=1)
        step = step * np.where(length > tau, tau / np.maximum(length, 1e-300), 1.0)[:, None]
    point = x.astype(np.float64) + step
    f = net.forward64(point) if isinstance(net, TwoLayerNet) else net.forward(point.astype(x.dtype))
    return y * np.asarray(f, dtype=np.float64)


def attack_margin(net, x, y, norm, tau, model=None, pgd_steps=20, restarts=2, rng=None):
    r"""Lowest margin :math:`y f(x + \delta)` per example over the attacks of the upper end.

    The minimum over :func:`attack_margins`: :math:`\delta = 0`, :func:`fgm`,
    :func:`pgd` from :math:`\delta = 0` and from ``restarts`` random starts
    (APGD step schedule) and, given ``model``, :func:`dense_direction`; an
    example survives when the result is positive.  Used by
    :func:`fpsim.certify.robust_accuracy`.

    Parameters
    ----------
    net : object
        Classifier with ``forward(x) -> (n,)`` and ``input_grad(x, y) -> (n, d)``.
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    norm : {2, "2", "l2", "inf", numpy.inf}
    tau : float
        Radius :math:`\tau \ge 0`.
    model : SparseCodingModel or (d,) array_like, optional
        Adds the dense-direction attack along :math:`M w^*`.
    pgd_steps : int, default 20
        PGD steps per run.
    restarts : int, default 2
        PGD random restarts (besides the run from :math:`\delta = 0`; ``>= 1``).
    rng : numpy.random.Generator or int, optional
        Source of the PGD starts (default: ``default_rng(0)``).

    Returns
    -------
    margin : (n,) float64 ndarray
    """
    restarts = check_int("restarts", restarts, 1)
    margins = attack_margins(net, x, y, norm, tau, model=model, pgd_steps=pgd_steps, restarts=restarts,
                             rng=rng)
    return np.min(list(margins.values()), axis=0)


def first_breaker(margins):
    r"""Per example, the attack (a key of ``margins``) of lowest margin; ``""`` if none went :math:`\le 0`.

    Ties go to the first name in ``margins``' order (``"clean"`` first: an
    example already misclassified is not credited to an attack).

    Parameters
    ----------
    margins : dict of (n,) ndarray
        From :func:`attack_margins`.

    Returns
    -------
    broken_by : (n,) str ndarray
    """
    names = list(margins)
    stacked = np.stack([margins[name] for name in names])
    worst = stacked.argmin(axis=0)
    return np.where(stacked.min(axis=0) <= 0, np.asarray(names)[worst], "")


def random_in_ball(rng, shape, inf_norm, tau, dtype):
    r"""Points drawn uniformly from the ball :math:`\{\|\delta\|_p \le \tau\}`, one per row.

    :math:`\ell_\infty`: every coordinate uniform on :math:`[-\tau, \tau]`;
    :math:`\ell_2`: a uniform direction times radius :math:`\tau U^{1/d}`.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (int, int)
        ``(n, d)``.
    inf_norm : bool
        ``True`` for :math:`p = \infty`.
    tau : float
    dtype : numpy dtype

    Returns
    -------
    delta : (n, d) ndarray
    """
    n, d = shape
    if inf_norm:
        return rng.uniform(-tau, tau, size=shape).astype(dtype)
    # drawn in the data's dtype when it is float32/float64 (half the time at d = 2000 in float32)
    dtype = np.dtype(dtype)
    direction = rng.standard_normal(shape, dtype=dtype if dtype in (np.float32, np.float64) else np.float64)
    length = np.linalg.norm(direction, axis=1, keepdims=True).astype(np.float64)
    radius = tau * rng.random((n, 1)) ** (1.0 / d)
    direction *= (radius / np.maximum(length, 1e-300)).astype(direction.dtype)
    return direction.astype(dtype, copy=False)


class _Oracle:
    """Margins and loss gradients of a classifier at perturbed inputs, for one batch ``(x, y)``.

    ``loss="logistic"``: gradients of :math:`\\log(1 + e^{-yf})`; ``"margin"``: of :math:`-y f`.
    """

    def __init__(self, net, x, y, loss="logistic"):
        for method in ("forward", "input_grad"):
            if not callable(getattr(net, method, None)):
                raise TypeError(f"net must have forward(x) and input_grad(x, y) methods; "
                                f"{type(net).__name__} has no {method}")
        self.net = net
        self.y = y
        self.loss = loss
        self.x = x
        self.ws = self.bias = None
        self.gram = self.factors = None
        if isinstance(net, TwoLayerNet):  # reuse buffers; biases depend on W only: compute them once
            self.ws = Workspace(x.shape[0], net.m, net.d, net.dtype)
            self.bias = net.bias()
            self.minus_y = -y.astype(net.dtype)[:, None]

    # -- pre-activations followed through K = W W^T (fpsim.network.Gram) --------------------
    def follow(self, gram):
        """Take the pre-activations of the iterates from ``gram`` (see :func:`pgd`)."""
        shape = self.ws.u.shape
        self.gram = gram
        self.factors = np.empty((shape[0], 2), self.ws.u.dtype)   # (a_b, c_b) of each l2 step
        self.q = self.net.preactivations(self.x)                    # X W^T, once for every run
        self.p, self.u = np.empty(shape, self.ws.u.dtype), np.empty(shape, self.ws.u.dtype)

    def start(self, delta):
        r"""A run starts at ``delta``: :math:`p = \delta W^\top`, :math:`u = q + p` (when following)."""
        if self.gram is not None:
            self.net.preactivations(delta, out=self.p)
            np.add(self.q, self.p, out=self.u)

    def moved(self):
        """The iterate took the step of :attr:`factors` along the last gradient: follow it (when following)."""
        if self.gram is None:
            return
        ws = self.ws
        if self.gram.pays(ws.nnz, ws.u.shape[0], ws.grad_x.shape[1]):  # the last gradient was C W over few active pairs
            kernels.gram_advance(ws.row_ptr, ws.col, ws.row_val, self.gram.matrix, self.factors,
                                 self.q, self.p, self.u)
        else:  # the product with W is cheaper here: form it from now on, as without K
            self.gram = self.factors = None

    def gradient(self, x_adv):
        """Loss gradients ``(n, d)`` at ``x_adv``."""
        if self.gram is not None:
            return self.net.input_grad(x_adv, self.y, bias=self.bias, workspace=self.ws, units=self.u)
        if self.ws is None:
            grad = np.asarray(self.net.input_grad(x_adv, self.y))
            if self.loss == "margin":  # grad(-yf) = grad(l) / sigma(-yf) = grad(l) (1 + e^{yf})
                margin = self.margin(x_adv)
                grad = grad * (1.0 + np.exp(np.minimum(margin, 700.0)))[:, None]
            return grad
        if self.loss == "logistic":
            return self.net.input_grad(x_adv, self.y, bias=self.bias, workspace=self.ws)
        self.net._units(x_adv, self.bias, self.ws)  # ws.u = unit slopes, ws.f = f
        np.multiply(self.ws.u, self.minus_y, out=self.ws.u)
        return np.matmul(self.ws.u, self.net.W, out=self.ws.grad_x)

    def margin(self, x_adv, units=None):
        """Margins :math:`y f(x_{adv})` ``(n,)`` as float64 (``units``: receives the pre-activations)."""
        if self.gram is not None:
            if units is not None:
                np.copyto(units, self.u)
            self.net._activate(self.u, self.bias, self.ws)
            return self.y * self.ws.f.astype(np.float64)
        if units is not None:
            self.net._units(x_adv, self.bias, self.ws, units)
            return self.y * self.ws.f.astype(np.float64)
        f = self.net.forward(x_adv) if self.ws is None else self.net.forward(x_adv, bias=self.bias)
        return self.y * np.asarray(f, dtype=np.float64)

    def margin_gradient(self, x_adv):
        """Margins and loss gradients at ``x_adv`` (one pass on a TwoLayerNet)."""
        grad = self.gradient(x_adv)
        if self.ws is None:
            return self.margin(x_adv), grad
        return self.y * self.ws.f.astype(np.float64), grad


def _check_attack(x, y, norm, tau):
    """Validate the common attack arguments; returns ``(x, y, inf_norm, tau)``."""
    x = check_array("x", x, 2)
    y = check_labels("y", y, x.shape[0])
    inf_norm = check_norm(norm) == np.inf
    tau = check_float("tau", tau, 0)
    return x, y, inf_norm, tau
