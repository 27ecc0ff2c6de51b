r"""Low-complexity baselines for C6 (``docs/MODEL.md`` §7).

Three models that, by the theory, cannot be robust at radius :math:`\tau`
however they are trained:

* :class:`LinearClassifier` :math:`f(x) = \langle u, x\rangle + c`, with exact
  robust accuracy;
* :class:`PolynomialClassifier`, a low-rank polynomial of degree :math:`p`;
* :class:`NTKClassifier`, the first-order linearisation of a
  :class:`~fpsim.network.TwoLayerNet` at its initialisation.

All share the logistic loss :math:`\ell = \log(1 + e^{-y f(x)})` and the
interface the attacks of :mod:`fpsim.attacks` use: ``forward(x) -> (n,)`` and
``input_grad(x, y) -> (n, d)`` (the per-example :math:`\nabla_x \ell`), and
``certified_margin(x, y, norm, tau)`` with its ``certificate`` name, so
:func:`fpsim.certify.robust_accuracy` reports their interval as for the network
(exact for the linear model, attacked upper end only for the others).
:func:`train_baseline` trains any of them cleanly or adversarially with the
network's SGD loop, :func:`fpsim.train.run_sgd`, and the stepper
:class:`BaselineStep`.  Parameters and arithmetic are float64.
"""
from __future__ import annotations

import copy

import numpy as np

from . import attacks, kernels
from ._validation import (check_array, check_choice, check_float, check_int, check_labels,
                          check_norm, check_random_state, validate_parameter)
from .network import TwoLayerNet
from .train import run_sgd



def _logistic(f, y):
    r"""Summed logistic loss and per-example :math:`c_b = \partial\ell_b/\partial f_b = -y_b\sigma(-y_b f_b)`.

    Uses :func:`fpsim.kernels.logistic_loss_coefficients` with a single unit of slope 1.
    """
    coef = np.ones((f.shape[0], 1))
    loss = kernels.logistic_loss_coefficients(f, y.astype(np.float64), coef)
    return loss, coef[:, 0]


class Baseline:
    r"""Common part of the baselines: logistic loss, its gradients, accuracy.

    A subclass defines ``params`` (a list of float64 arrays, updated in place
    by :func:`train_baseline`) and three methods on validated float64 inputs:
    ``_forward(x)`` :math:`\to f` ``(n,)``, ``_param_grads(x, c)`` :math:`\to
    [\sum_b c_b\, \partial f_b / \partial \theta]` (one array per parameter) and
    ``_input_grads(x, c)`` :math:`\to c_b \nabla_x f(x_b)` ``(n, d)``.
    A subclass that knows its worst case also overrides :meth:`certified_margin`
    and names it in ``certificate``.
    """

    d: int
    params: list
    #: SGD steps taken (:func:`fpsim.train.run_sgd` counts them).
    step = 0
    #: Name of the sound lower bound :meth:`certified_margin` computes (None: no certificate).
    certificate = None

    def _inputs(self, x):
        return check_array("x", x, 2, dtype=np.float64, shape=(None, self.d))

    def forward(self, x):
        """Output :math:`f(x)` ``(n,)`` for inputs ``x`` ``(n, d)``."""
        return self._forward(self._inputs(x))

    def accuracy(self, x, y):
        """Fraction of ``(x, y)`` with :math:`y f(x) > 0`."""
        x = self._inputs(x)
        y = check_labels("y", y, x.shape[0])
        return float(np.mean(y * self._forward(x) > 0))

    def loss_grad(self, x, y, weight_decay=0.0):
        r"""Mean logistic loss plus :math:`(\lambda/2)\|\theta\|^2` and its gradient.

        .. math::

            L = \frac1n \sum_b \ell_b + \frac\lambda2 \|\theta\|^2, \qquad
            \nabla_\theta L = \frac1n \sum_b -y_b\,\sigma(-y_b f_b)\,\nabla_\theta f(x_b) + \lambda\theta

        Returns
        -------
        loss : float
        grads : list of ndarray
            One per entry of ``params``, same shapes.
        """
        x = self._inputs(x)
        n = x.shape[0]
        y = check_labels("y", y, n)
        lam = check_float("weight_decay", weight_decay, 0)
        total, coef = _logistic(self._forward(x), y)
        loss = total / n
        grads = self._param_grads(x, coef / n)
        if lam > 0:
            loss += 0.5 * lam * sum(float(np.vdot(p, p)) for p in self.params)
            grads = [g + lam * p for g, p in zip(grads, self.params)]
        return float(loss), grads

    def input_grad(self, x, y):
        r"""Per-example input gradient, ``(n, d)``.

        .. math::

            \nabla_x \ell_b = -y_b\,\sigma(-y_b f_b)\,\nabla_x f(x_b)
        """
        x = self._inputs(x)
        y = check_labels("y", y, x.shape[0])
        return self._input_grads(x, _logistic(self._forward(x), y)[1])

    def certified_margin(self, x, y, norm, tau):
        r"""Sound lower bound on :math:`\min_{\|\delta\|_p \le \tau} y f(x+\delta)`, ``(n,)``.

        Without a certificate this is :math:`-\infty` (nothing is certified).
        """
        x = self._inputs(x)
        check_labels("y", y, x.shape[0])
        check_norm(norm)
        check_float("tau", tau, 0)
        return np.full(x.shape[0], -np.inf)

    def copy(self):
        """Independent deep copy."""
        return copy.deepcopy(self)


class LinearClassifier(Baseline):
    r"""Linear classifier :math:`f(x) = \langle u, x\rangle + c`.

    Its worst perturbation in the :math:`\ell_p` ball of radius :math:`\tau` is
    known in closed form: :math:`\min_{\|\delta\|_p \le \tau} y f(x+\delta) =
    y f(x) - \tau\|u\|_q` with :math:`1/p + 1/q = 1`, attained at
    :math:`\delta = -y\tau u/\|u\|_2` (ℓ2) or :math:`-y\tau\,\mathrm{sign}(u)`
    (ℓ∞).  These are exactly the FGM steps, so FGM adversarial training of this
    model is training on the exact worst case.

    Parameters
    ----------
    d : int
        Input dimension.
    sigma0 : float, optional
        Initial :math:`u \sim \mathcal N(0, \sigma_0^2 I)` (default ``1/d``); :math:`c = 0`.
    seed : int or numpy.random.Generator, default 0

    Attributes
    ----------
    u : (d,) ndarray
    c : (1,) ndarray
    """

    def __init__(self, d, sigma0=None, seed=0):
        self.d = check_int("d", d, 1)
        sigma0 = 1.0 / self.d if sigma0 is None else check_float("sigma0", sigma0, 0)
        self.u = sigma0 * check_random_state(seed).standard_normal(self.d)
        self.c = np.zeros(1)
        self.params = [self.u, self.c]

    def __repr__(self):
        return f"LinearClassifier(d={self.d})"

    def _forward(self, x):
        return x @ self.u + self.c[0]

    def _param_grads(self, x, coef):
        return [coef @ x, np.array([coef.sum()])]

    def _input_grads(self, x, coef):
        return coef[:, None] * self.u[None, :]

    certificate = "exact"

    def certified_margin(self, x, y, norm, tau):
        r"""Exact worst-case margin :math:`y f(x) - \tau \|u\|_q`, ``(n,)`` (:math:`q` dual to :math:`p`)."""
        x = self._inputs(x)
        y = check_labels("y", y, x.shape[0])
        q = 1 if check_norm(norm) == np.inf else 2
        return y * self._forward(x) - check_float("tau", tau, 0) * np.linalg.norm(self.u, q)


def linear_critical_radius(classifier, x, y, norm):
    r"""Exact critical radius of a linear classifier: where its robust accuracy falls below 50 %.

    The exact robust accuracy at :math:`\tau` is the fraction of examples with
    :math:`y f(x) - \tau\|u\|_q > 0`, i.e. with :math:`r = \max(y f(x), 0)/\|u\|_q
    > \tau` (a misclassified example, :math:`r = 0`, is never robust), so it
    drops below 1/2 at the median of :math:`r`.

    Parameters
    ----------
    classifier : LinearClassifier
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    norm : {2, "2", "inf", numpy.inf}
        Perturbation norm :math:`p`; :math:`q` is its dual.

    Returns
    -------
    float
        ``numpy.median`` of :math:`r` over the examples (for an even number
        of examples the mean of the two middle values; the exact accuracy
        steps below 1/2 at the lower one).
    """
    if not isinstance(classifier, LinearClassifier):
        raise TypeError(f"classifier must be a LinearClassifier, got {type(classifier).__name__}")
    x = check_array("x", x, 2, dtype=np.float64, shape=(None, classifier.d))
    y = check_labels("y", y, x.shape[0])
    q = 1 if check_norm(norm) == np.inf else 2
    margin = y * classifier.forward(x)
    return float(np.median(np.maximum(margin, 0.0)) / np.linalg.norm(classifier.u, q))


class PolynomialClassifier(Baseline):
    r"""Low-rank polynomial classifier of degree :math:`p`.

    .. math::

        f(x) = c + \langle u, x\rangle + \sum_{r=1}^{R} \lambda_r\, t_r^{\,p},
        \qquad t_r = \langle v_r, x\rangle + e_r, \qquad \lambda_r = (-1)^{r-1}

    Each term :math:`(\langle v_r, x\rangle + e_r)^p` expands into monomials of
    every degree :math:`\le p`, so this spans polynomials of degree :math:`\le p`
    whose degree-:math:`p` part has symmetric-tensor rank :math:`\le R`; the
    fixed alternating signs :math:`\lambda_r` let even degrees be indefinite
    (magnitudes are absorbed in :math:`v_r, e_r`).  A full degree-:math:`p`
    polynomial would need :math:`\binom{d+p}{p}` coefficients (about
    :math:`10^7` for :math:`d = 400, p = 3`); :math:`R (d + 1) + d + 1`
    parameters keep it tractable.  :math:`R = d` for ``degree=2`` and
    ``R >= d`` in general already represent every quadratic form.

    .. math::

        \nabla_x f = u + \sum_r \lambda_r\, p\, t_r^{\,p-1} v_r, \qquad
        \partial f / \partial v_r = \lambda_r\, p\, t_r^{\,p-1} x, \qquad
        \partial f / \partial e_r = \lambda_r\, p\, t_r^{\,p-1}

    Parameters
    ----------
    d : int
        Input dimension.
    degree : int, default 2
        :math:`p \ge 2`.
    rank : int, default 16
        :math:`R \ge 1`.
    sigma0 : float, optional
        Initial :math:`u, v_r \sim \mathcal N(0, \sigma_0^2 I)` (default
        ``1/sqrt(d)``, so :math:`\langle v_r, x\rangle = O(\|x\|/\sqrt d)`);
        :math:`c = e_r = 0`.
    seed : int or numpy.random.Generator, default 0

    Attributes
    ----------
    u : (d,) ndarray
    c : (1,) ndarray
    V : (R, d) ndarray
        Rows :math:`v_r`.
    e : (R,) ndarray
    signs : (R,) ndarray
        :math:`\lambda_r` (fixed).
    """

    def __init__(self, d, degree=2, rank=16, sigma0=None, seed=0):
        self.d = check_int("d", d, 1)
        self.degree = check_int("degree", degree, 2)
        self.rank = check_int("rank", rank, 1)
        sigma0 = 1.0 / np.sqrt(self.d) if sigma0 is None else check_float("sigma0", sigma0, 0)
        rng = check_random_state(seed)
        self.u = sigma0 * rng.standard_normal(self.d)
        self.V = sigma0 * rng.standard_normal((self.rank, self.d))
        self.c = np.zeros(1)
        self.e = np.zeros(self.rank)
        self.signs = np.where(np.arange(self.rank) % 2 == 0, 1.0, -1.0)
        self.params = [self.u, self.c, self.V, self.e]

    def __repr__(self):
        return f"PolynomialClassifier(d={self.d}, degree={self.degree}, rank={self.rank})"

    def _terms(self, x):
        """:math:`t` ``(n, R)``."""
        return x @ self.V.T + self.e

    def _forward(self, x):
        return self.c[0] + x @ self.u + (self._terms(x) ** self.degree) @ self.signs

    def _slopes(self, x):
        r""":math:`\lambda_r p\, t_r^{p-1}` ``(n, R)``."""
        return self.degree * self._terms(x) ** (self.degree - 1) * self.signs

    def _param_grads(self, x, coef):
        G = coef[:, None] * self._slopes(x)
        return [coef @ x, np.array([coef.sum()]), G.T @ x, G.sum(axis=0)]

    def _input_grads(self, x, coef):
        return coef[:, None] * (self.u[None, :] + self._slopes(x) @ self.V)


class NTKClassifier(Baseline):
    r"""The network's neural-tangent (first-order) model at initialisation.

    For a :class:`~fpsim.network.TwoLayerNet` with initial weights :math:`W^0`
    and its biases :math:`b^0` frozen at their initial values,

    .. math::

        f_{\rm lin}(x) = f(x; W^0) + \langle \nabla_W f(x; W^0), W - W^0\rangle
                       = \sum_i s(u^0_i; b^0_i) + \sum_i s'(u^0_i; b^0_i)\,\langle \Delta w_i, x\rangle,

    :math:`u^0_i = \langle w^0_i, x\rangle`, trainable :math:`\Delta = W - W^0`
    (starting at 0, so :math:`f_{\rm lin} = f` at initialisation).
    Gradients: :math:`\partial f_{\rm lin}/\partial \Delta w_i = s'(u^0_i)\,x`,
    and, since the ReLU unit's slope :math:`s'` is piecewise constant in
    :math:`x` (derivative 0 off the kinks :math:`|u^0_i| = b^0_i`),

    .. math::

        \nabla_x f_{\rm lin}(x) = \sum_i s'(u^0_i)\,w^0_i + \sum_i s'(u^0_i)\,\Delta w_i
                                = \sum_i s'(u^0_i)\,(w^0_i + \Delta w_i)

    almost everywhere.  Only the ReLU activation is supported: with the
    smoothed ReLU, :math:`s'` varies with :math:`x` and a term
    :math:`\sum_i s''(u^0_i)\langle\Delta w_i, x\rangle w^0_i` would be needed.

    Parameters
    ----------
    net : TwoLayerNet
        Network at initialisation (its ``W_init``, ``threshold`` and current
        ``step`` define :math:`W^0` and :math:`b^0`).

    Attributes
    ----------
    W0 : (m, d) ndarray
    bias0 : (m,) ndarray
    delta : (m, d) ndarray
        :math:`\Delta`.
    """

    def __init__(self, net):
        if not isinstance(net, TwoLayerNet):
            raise TypeError(f"net must be a TwoLayerNet, got {type(net).__name__}")
        if net.activation != "relu":
            raise ValueError(f"NTKClassifier supports activation='relu' only, got {net.activation!r}")
        self.W0 = np.array(net.W_init, dtype=np.float64)
        self.bias0 = np.array(net.threshold.bias(net.W_init, net.step), dtype=np.float64)
        self.d = self.W0.shape[1]
        self.delta = np.zeros_like(self.W0)
        self.params = [self.delta]

    def __repr__(self):
        return f"NTKClassifier(m={self.W0.shape[0]}, d={self.d})"

    def _at_init(self, x):
        """:math:`f(x; W^0)` ``(n,)`` and the unit slopes :math:`s'(u^0)` ``(n, m)``."""
        slopes = x @ self.W0.T
        f0 = np.empty(x.shape[0])
        kernels.soft_threshold_units(slopes, self.bias0, 2.0, 0.0, f0, slopes)
        return f0, slopes

    def _forward(self, x):
        f0, slopes = self._at_init(x)
        return f0 + np.einsum("bi,bi->b", slopes, x @ self.delta.T)

    def _param_grads(self, x, coef):
        return [(coef[:, None] * self._at_init(x)[1]).T @ x]

    def _input_grads(self, x, coef):
        return (coef[:, None] * self._at_init(x)[1]) @ (self.W0 + self.delta)


class BaselineStep:
    r"""The SGD step of a baseline, as a stepper of :func:`fpsim.train.run_sgd`.

    :math:`\theta \leftarrow \theta - \eta\,\nabla_\theta(\frac1B\sum_b \ell_b + \frac\lambda2\|\theta\|^2)`
    on every array of ``params`` (:meth:`Baseline.loss_grad`), in float64.

    Parameters
    ----------
    net : Baseline
        The model trained in place (``run_sgd``'s copy).
    """

    needs_inputs = True

    def __init__(self, net):
        self.net = net

    def step(self, x, y, z, lr, weight_decay):
        """One SGD step; returns the batch's mean loss (before the step).

        Raises
        ------
        FloatingPointError
            If the loss is not finite (the step count and ``lr`` are named).
        """
        loss, grads = self.net.loss_grad(x, y, weight_decay)
        if not np.isfinite(loss):
            raise FloatingPointError(f"{type(self.net).__name__} training diverged at step {self.net.step} "
                                     f"(loss {loss}); lower lr (got {lr})")
        for param, grad in zip(self.net.params, grads):
            param -= lr * grad
        return loss

    def sync(self):
        """Nothing to write back: the parameters are trained in place."""

    def state(self):
        return {f"param{i}": p for i, p in enumerate(self.net.params)}

    def load(self, state):
        for i, p in enumerate(self.net.params):
            p[...] = state[f"param{i}"]


def train_baseline(model, data_model, *, steps, batch, lr, tau=None, norm=2, attack="pgd",
                   attack_kwargs=None, weight_decay=0.0, n_train=None, seed=0, **kwargs):
    r"""SGD for any baseline, clean or adversarial: :func:`fpsim.train.run_sgd` with :class:`BaselineStep`.

    Each step draws a batch, replaces every :math:`x` by :math:`x + \delta(x)`
    when ``tau`` is given (``attack`` of radius :math:`\tau` in ``norm``, computed
    on the current model), and takes
    :math:`\theta \leftarrow \theta - \eta\,\nabla_\theta(\frac1B\sum_b \ell_b + \frac\lambda2\|\theta\|^2)`.

    Parameters
    ----------
    model : Baseline
        Starting model (not modified; a trained copy is returned).
    data_model : SparseCodingModel
    steps : int
        :math:`T \ge 1`.
    batch : int
        :math:`B \ge 1`.
    lr : float
        :math:`\eta > 0`.
    tau : float or None, default None
        Adversarial radius :math:`\tau > 0`; ``None`` trains cleanly.
    norm : {2, "inf"}
    attack : {"pgd", "fgm"}
        For a :class:`LinearClassifier` both are the exact worst case at a
        single step; use ``"fgm"``.
    attack_kwargs : dict, optional
        Passed to the attack (``steps``, ``step_size``, ``restarts``).
    weight_decay : float, default 0
        :math:`\lambda \ge 0`.
    n_train : int or None
        ``None``: a fresh batch every step; else a fixed set of that size.
    seed : int
        Batches come from stream ``"baseline"`` (so clean and adversarial
        training with one seed see the same batches), attack starts from
        stream ``"attack"``.
    **kwargs
        Other :func:`~fpsim.train.run_sgd` options: ``record_every``,
        ``eval_size``, ``progress``, ``checkpoint``, ``checkpoint_every``, ``evaluate``.

    Returns
    -------
    model : Baseline
        Trained copy.
    history : dict of lists
        :func:`~fpsim.train.run_sgd`'s ``step``, ``loss`` (mean loss of the
        (perturbed) batches since the previous record, before each step) and
        ``accuracy`` (held-out).
    """
    if not isinstance(model, Baseline):
        raise TypeError(f"model must be a fpsim.baselines model, got {type(model).__name__}")
    if data_model.d != model.d:
        raise ValueError(f"model.d={model.d} does not match data_model.d={data_model.d}")
    norm = check_norm(norm)
    check_choice("attack", attack, attacks.ATTACKS)
    if tau is not None:
        tau = validate_parameter("tau", tau)
    attack_kwargs = {} if attack_kwargs is None else dict(attack_kwargs)
    for name in ("phase", "perturb", "stepper", "rank", "path"):
        if name in kwargs:
            raise TypeError(f"train_baseline sets {name!r} itself; do not pass it")

    def perturb(net, x, y, rng):
        x = x.astype(np.float64)
        return x + attacks.perturbation(net, x, y, attack, norm, tau, rng=rng, **attack_kwargs)

    return run_sgd(model, data_model, steps=steps, batch=batch, lr=lr, weight_decay=weight_decay,
                   n_train=n_train, seed=seed, phase="baseline", perturb=None if tau is None else perturb,
                   stepper=BaselineStep, **kwargs)
