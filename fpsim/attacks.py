r"""Norm-bounded attacks on a classifier (``docs/MODEL.md`` §5).

Every attack returns a perturbation :math:`\delta` of shape ``(n, d)`` with
:math:`\|\delta_b\|_p \le \tau` (to float rounding) for :math:`p \in \{2, \infty\}`:

* :func:`fgm` -- one step along the loss gradient :math:`g = \nabla_x \ell`:
  :math:`\delta = \tau g/\|g\|_2` (:math:`\ell_2`) or :math:`\tau \operatorname{sign} g`
  (:math:`\ell_\infty`).
* :func:`pgd` -- random start in the ball, :math:`S` steps of size
  :math:`\alpha` in the same steepest-ascent direction, projection onto the
  ball, the most damaging iterate kept, with restarts.
* :func:`dense_direction` -- the data-aware attack along :math:`v = M w^*`:
  :math:`\delta = -y \tau v/\|v\|_2` or :math:`-y \tau \operatorname{sign} v`.

:func:`attack_margin` takes the worst of them per example: the upper end of
robust accuracy.

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


def pgd(net, x, y, norm, tau, steps=10, step_size=None, restarts=1, rng=None):
    r"""Projected gradient descent on the margin, with random starts and restarts.

    Each restart draws :math:`\delta^{(0)}` uniformly from the ball and iterates

    .. math::

        \delta^{(s+1)} = \Pi_{\|\cdot\|_p \le \tau}\big(\delta^{(s)} + \alpha\, d(g^{(s)})\big),
        \qquad g^{(s)} = \nabla_x \ell\big(y f(x + \delta^{(s)})\big),

    with :math:`d(g) = g/\|g\|_2` (:math:`\ell_2`) or :math:`\operatorname{sign} g`
    (:math:`\ell_\infty`).  Per example the iterate of lowest margin
    :math:`y f(x + \delta)` over all steps (the start included) and restarts
    is returned.

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
        Steps :math:`S \ge 1` per restart.
    step_size : float, optional
        :math:`\alpha > 0`; default :math:`2.5\tau/S`.
    restarts : int, default 1
        Number of random starts (``>= 1``).
    rng : numpy.random.Generator or int, optional
        Source of the random starts (default: ``default_rng(0)``).

    Returns
    -------
    delta : (n, d) ndarray
        The most damaging perturbation found per example.
    """
    x, y, inf_norm, tau = _check_attack(x, y, norm, tau)
    steps = check_int("steps", steps, 1)
    restarts = check_int("restarts", restarts, 1)
    step_size = 2.5 * tau / steps if step_size is None else check_float(
        "step_size", step_size, 0, closed=(False, True))
    rng = check_random_state(0 if rng is None else rng)
    oracle = _Oracle(net, x, y)
    best = np.zeros_like(x)
    best_margin = np.full(x.shape[0], np.inf)
    x_adv = np.empty_like(x)

    def keep(margin, delta):
        better = margin < best_margin
        best_margin[better] = margin[better]
        best[better] = delta[better]

    for _ in range(restarts):
        delta = random_in_ball(rng, x.shape, inf_norm, tau, x.dtype)
        for _ in range(steps):
            margin, grad = oracle.margin_gradient(np.add(x, delta, out=x_adv))
            keep(margin, delta)
            kernels.ascend_project(delta, grad, step_size, tau, inf_norm)
        keep(oracle.margin(np.add(x, delta, out=x_adv)), delta)
    return best


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


def perturbation(net, x, y, attack, norm, tau, rng=None, steps=10, step_size=None, restarts=1):
    r"""Perturbation :math:`\delta` of the named attack (``"fgm"`` or ``"pgd"``) -- the one switch
    used by adversarial training of the network and of the baselines.

    ``steps``, ``step_size``, ``restarts`` and ``rng`` go to :func:`pgd`
    (FGM has none).  Returns ``(n, d)``.
    """
    check_choice("attack", attack, ATTACKS)
    if attack == "fgm":
        return fgm(net, x, y, norm, tau)
    return pgd(net, x, y, norm, tau, steps=steps, step_size=step_size, restarts=restarts, rng=rng)


def attack_margin(net, x, y, norm, tau, model=None, pgd_steps=20, restarts=2, rng=None):
    r"""Lowest margin :math:`y f(x + \delta)` per example over the attacks of the upper end.

    The candidates are :math:`\delta = 0`, :func:`fgm`, :func:`pgd` and, given
    ``model``, :func:`dense_direction`; an example survives when the result
    is positive.  Used by :func:`fpsim.certify.robust_accuracy`.

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
        PGD steps per restart.
    restarts : int, default 2
        PGD random restarts.
    rng : numpy.random.Generator or int, optional
        Source of the PGD starts (default: ``default_rng(0)``).

    Returns
    -------
    margin : (n,) float64 ndarray
    """
    x, y, _, _ = _check_attack(x, y, norm, tau)
    pgd_steps = check_int("pgd_steps", pgd_steps, 1)
    restarts = check_int("restarts", restarts, 1)
    deltas = [np.zeros_like(x), fgm(net, x, y, norm, tau),
              pgd(net, x, y, norm, tau, steps=pgd_steps, restarts=restarts, rng=rng)]
    if model is not None:
        deltas.append(dense_direction(model, x, y, norm, tau))
    oracle = _Oracle(net, x, y)
    return np.min([oracle.margin(x + delta) for delta in deltas], axis=0)


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
    direction = rng.standard_normal(shape)
    length = np.linalg.norm(direction, axis=1, keepdims=True)
    radius = tau * rng.random((n, 1)) ** (1.0 / d)
    return (direction * (radius / np.maximum(length, 1e-300))).astype(dtype)


class _Oracle:
    """Margins and loss gradients of a classifier at perturbed inputs, for one batch ``(x, y)``."""

    def __init__(self, net, x, y):
        for method in ("forward", "input_grad"):
            if not callable(getattr(net, method, None)):
                raise TypeError(f"net must have forward(x) and input_grad(x, y) methods; "
                                f"{type(net).__name__} has no {method}")
        self.net = net
        self.y = y
        self.ws = self.bias = None
        if isinstance(net, TwoLayerNet):  # reuse buffers; biases depend on W only: compute them once
            self.ws = Workspace(x.shape[0], net.m, net.d, net.dtype)
            self.bias = net.bias()

    def gradient(self, x_adv):
        """Loss gradients ``(n, d)`` at ``x_adv``."""
        if self.ws is None:
            return np.asarray(self.net.input_grad(x_adv, self.y))
        return self.net.input_grad(x_adv, self.y, bias=self.bias, workspace=self.ws)

    def margin(self, x_adv):
        """Margins :math:`y f(x_{adv})` ``(n,)`` as float64."""
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
