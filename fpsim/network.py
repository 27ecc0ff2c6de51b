r"""The two-layer soft-threshold network (``docs/MODEL.md`` §3).

.. math::

    f(x) = \sum_{i=1}^m \big[\phi(\langle w_i, x\rangle - b_i)
                             - \phi(-\langle w_i, x\rangle - b_i)\big]

with :math:`\phi` the ReLU (or its smoothed version), second layer fixed to 1,
biases :math:`b_i` set by a :class:`Threshold` schedule (never trained), and
logistic loss :math:`\ell = \log(1 + e^{-y f(x)})` plus optional weight decay
:math:`(\lambda/2)\|W\|_F^2`.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from . import kernels
from ._validation import (check_allocation, check_array, check_choice, check_dtype, check_float, check_int,
                          check_labels, check_random_state)

ACTIVATIONS = ("relu", "smooth")
THRESHOLD_KINDS = ("relative", "absolute")


class Threshold:
    r"""Bias schedule: :math:`b_i = \theta_t \|w_i\|_2` (relative) or :math:`b_i = \theta_t` (absolute).

    :math:`\theta_t` ramps linearly from ``start`` to ``end`` over the first
    ``ramp_steps`` steps and stays at ``end`` afterwards.

    Parameters
    ----------
    start : float
        :math:`\theta_0 \ge 0`.
    kind : {"relative", "absolute"}, default "relative"
    end : float, optional
        Final value (default: ``start``, a constant threshold).
    ramp_steps : int, default 0
        Length of the linear ramp.
    """

    def __init__(self, start, kind="relative", end=None, ramp_steps=0):
        self.start = check_float("threshold", start, 0)
        self.end = self.start if end is None else check_float("threshold_end", end, 0)
        self.kind = check_choice("threshold_kind", kind, THRESHOLD_KINDS)
        self.ramp_steps = check_int("ramp_steps", ramp_steps, 0)

    def __repr__(self):
        return (f"Threshold(start={self.start:g}, kind={self.kind!r}, end={self.end:g}, "
                f"ramp_steps={self.ramp_steps})")

    def at(self, step):
        r""":math:`\theta_t` at training step ``step``."""
        if step >= self.ramp_steps:
            return self.end
        return self.start + (self.end - self.start) * step / self.ramp_steps

    def bias(self, W, step):
        """Biases ``(m,)`` for weights ``W`` ``(m, d)`` at ``step``."""
        theta = self.at(step)
        if self.kind == "absolute":
            return np.full(W.shape[0], theta, dtype=W.dtype)
        # sqrt of the row sums of squares in one pass over W (np.linalg.norm makes a W-sized temporary)
        return (theta * np.sqrt(np.einsum("ij,ij->i", W, W))).astype(W.dtype)


#: Largest active fraction :math:`|\mathcal A|/(n m)` for which the backward products run over
#: the active pairs; above it they are dense BLAS.  Measured in ``benchmarks/run.py``
#: (crossover table in ``benchmarks/README.md``).
SPARSE_CROSSOVER = 0.1

#: Largest :math:`|\mathcal A| / (n d)` (the active fraction times :math:`m/d`) for which a :class:`Gram`
#: is followed: its products stream :math:`|\mathcal A|` rows of the :math:`(m, m)` matrix :math:`K`
#: from memory, :math:`|\mathcal A| m` multiply-adds, where the product it replaces is :math:`n m d` of
#: them at the sgemm rate.  Measured in
#: ``benchmarks/README.md``: at 0.016 (d = 2000, m = 4000) the adversarial step is 1.24x (2 threads)
#: to 1.72x (1 thread) faster, at 0.064 (d = 1000, m = 4000) 1.04x faster with 1 thread and 0.71x with
#: 2, at 0.08 (d = 800, m = 3200) slower with both: the path is memory-bound and does not scale with
#: threads as BLAS does.
GRAM_CROSSOVER = 0.03


class Workspace:
    r"""Preallocated buffers for repeated loss/gradient evaluations on batches of one size.

    Passing the same workspace to :meth:`TwoLayerNet.loss_grad`,
    :meth:`TwoLayerNet.input_grad` or :meth:`TwoLayerNet.sgd_step` makes a
    training loop or an attack allocation-free.  It also holds the active pairs
    :math:`\mathcal A = \{(b, i) : \partial\ell_b/\partial u_{bi} \ne 0\}`
    of the last evaluation, as CSR and CSC lists of capacity
    ``crossover * n * m`` (:func:`fpsim.kernels.active_pairs`).

    Parameters
    ----------
    n, m, d : int
        Batch size, neurons, input dimension.
    dtype : numpy dtype
    crossover : float in [0, 1], optional
        Largest active fraction for which the backward products run over the
        active pairs (0: always dense BLAS; 1: always the active pairs).
        Default: :data:`SPARSE_CROSSOVER` at construction time.

    Attributes
    ----------
    nnz : int
        :math:`|\mathcal A|` of the last evaluation, ``-1`` when it took the dense path.
    """

    def __init__(self, n, m, d, dtype, crossover=None):
        crossover = check_float("crossover", SPARSE_CROSSOVER if crossover is None else crossover, 0, 1)
        self.u = np.empty((n, m), dtype)      # pre-activations, then dl/du
        self.f = np.empty(n, dtype)           # network outputs
        self.grad_w = np.empty((m, d), dtype)  # dL/dW
        self.grad_x = np.empty((n, d), dtype)  # dl/dx per example
        self.capacity = int(crossover * n * m)
        self.row_ptr = np.empty(n + 1, np.int64)  # CSR of the active pairs
        self.col = np.empty(self.capacity, np.int32)
        self.row_val = np.empty(self.capacity, dtype)
        self.col_ptr = np.empty(m + 1, np.int64)  # CSC of the same pairs
        self.row = np.empty(self.capacity, np.int32)
        self.col_val = np.empty(self.capacity, dtype)
        self.nnz = -1
        self.gemm, = scipy.linalg.get_blas_funcs(("gemm",), (self.u,))

    def fits(self, n, m, d, dtype):
        return self.u.shape == (n, m) and self.grad_w.shape == (m, d) and self.u.dtype == dtype

    def find_active(self):
        """Collect the active pairs of the coefficients in ``u``; ``True`` if the sparse path applies."""
        self.nnz = -1 if self.capacity == 0 else kernels.active_pairs(
            self.u, self.capacity, self.row_ptr, self.col, self.row_val, self.col_ptr, self.row, self.col_val)
        return self.nnz >= 0

    @property
    def active_fraction(self):
        r""":math:`|\mathcal A|/(n m)` of the last evaluation (exact, one extra pass over ``u``)."""
        return np.count_nonzero(self.u) / self.u.size


class Gram:
    r"""The Gram matrix :math:`K = W W^\top` of a network's weights, carried through its sparse SGD steps.

    An :math:`\ell_2` PGD step moves :math:`\delta_b \leftarrow c_b(\delta_b + a_b g_b)`
    along the input gradient :math:`g_b = \sum_i C_{bi} w_i`, so the next
    pre-activations follow without a product with :math:`W`:
    :math:`\delta_b W^\top \leftarrow c_b(\delta_b W^\top + a_b \sum_i C_{bi} K_i)`
    (:func:`fpsim.kernels.gram_advance`), a cost :math:`\propto |\mathcal A| m`
    instead of :math:`B m d` when few units are active.  :func:`fpsim.attacks.pgd`
    uses it (``gram=``) while :attr:`current`; :meth:`TwoLayerNet.sgd_step`
    keeps it current through a step over the active pairs
    (:func:`fpsim.kernels.gram_update`, a rank-:math:`2B` update) where that
    :meth:`pays` and marks it stale otherwise; :meth:`refresh` forms it again.  Kept by
    recursion, it agrees with :math:`W W^\top` to float rounding that grows
    with the steps since the last refresh (:meth:`due`: every
    :attr:`REFRESH` steps).

    Parameters
    ----------
    m : int
        Number of neurons.
    dtype : numpy dtype
        The network's.

    Attributes
    ----------
    matrix : (m, m) ndarray
        :math:`K`.
    current : bool
        Whether :attr:`matrix` is :math:`W W^\top` of the network's current weights.
    wanted : bool
        Whether following it paid at the last SGD step (:meth:`pays`; ``True``
        before any): :meth:`due` forms it again only then, and at checkpoints.
    """

    #: Steps between exact formations of :math:`K` while following it pays.
    REFRESH = 100

    def __init__(self, m, dtype):
        m = check_int("m", m, 1)
        dtype = check_dtype("dtype", dtype)
        check_allocation(f"Gram(m={m}, dtype={dtype.name})", m * m * dtype.itemsize)
        self.matrix = np.empty((m, m), dtype)
        self.current = False
        self.wanted = True
        self._r = self._ctg = None

    def check_fits(self, net):
        """Raise ``ValueError`` unless this is a Gram matrix for ``net``'s ``(m, d)`` weights and dtype."""
        if self.matrix.shape != (net.m, net.m) or self.matrix.dtype != net.dtype:
            raise ValueError(f"gram must be a {net.dtype} Gram of shape {(net.m, net.m)}, "
                             f"got {self.matrix.dtype} {self.matrix.shape}")

    def pays(self, nnz, n, d):
        r"""Whether following :math:`K` beats the product with :math:`W` for ``nnz`` active pairs of an
        ``(n, m)`` batch in dimension ``d``: :math:`0 \le |\mathcal A| \le` :data:`GRAM_CROSSOVER` :math:`\cdot\, n d`
        (``nnz = -1``: the dense path, never)."""
        return 0 <= nnz <= GRAM_CROSSOVER * n * d

    def due(self, step, checkpoint_every=None):
        """Whether to form :math:`K` exactly before SGD step ``step`` (counted from 0).

        Every :attr:`REFRESH` steps while following it pays (:attr:`wanted`),
        bounding the float drift of the recursion; and at every multiple of
        ``checkpoint_every`` whatever :attr:`wanted` says, so a run resumed from
        that step's checkpoint starts from the same :math:`K`, bit for bit.
        """
        return (checkpoint_every is not None and step % checkpoint_every == 0
                or step % self.REFRESH == 0 and self.wanted)

    def refresh(self, W):
        r"""Form :math:`K = W W^\top` of the weights ``W`` ``(m, d)``; :attr:`current` becomes ``True``."""
        np.matmul(W, W.T, out=self.matrix)
        self.current = True

    def follow_step(self, ws, x, units, alpha, beta):
        r"""Update :math:`K` for the step :math:`W' = \beta W + \alpha C^\top X` over ``ws``'s active pairs.

        Called before the step, with :math:`U = X W^\top` (``units``) at the
        old weights: :math:`K \leftarrow \beta^2 K + \alpha(C^\top R + R^\top C)`,
        :math:`R = \beta U + \frac\alpha2 (X X^\top) C` (derivation in
        :func:`fpsim.kernels.gram_update`).
        """
        n, m = units.shape
        dtype = self.matrix.dtype.type
        if self._r is None or self._r.shape != (n, m):
            self._r = np.empty((n, m), self.matrix.dtype)
            self._ctg = np.empty((m, n), self.matrix.dtype)
        # C^T G, G = X X^T: row i sums G's rows over unit i's active examples (G symmetric: = (G C)^T)
        kernels.csc_rows_update(ws.col_ptr, ws.row, ws.col_val, x @ x.T, dtype(1.0), dtype(0.0), self._ctg)
        np.multiply(units, dtype(beta), out=self._r)
        self._r += dtype(alpha / 2) * self._ctg.T
        kernels.gram_update(self.matrix, dtype(beta * beta), dtype(alpha), ws.col_ptr, ws.row, ws.col_val,
                            ws.row_ptr, ws.col, ws.row_val, self._r)


class TwoLayerNet:
    r"""Two-layer soft-threshold ReLU network with fixed second layer.

    Parameters
    ----------
    W : (m, d) array_like
        First-layer weights :math:`w_i` (rows); float32 or float64.
    threshold : float or Threshold, default 0.0
        Bias rule; a float means a constant relative threshold :math:`\theta`.
    activation : {"relu", "smooth"}, default "relu"
    q : float, default 2.0
        Degree of the smoothed ReLU (``q >= 2``; used when ``activation="smooth"``).
    rho : float, default 0.1
        Width :math:`\varrho > 0` of the smoothed ReLU.
    W_init : (m, d) array_like, optional
        Initial weights :math:`w_i^0`, kept for the correlation with
        initialisation (default: a copy of ``W``).

    Attributes
    ----------
    W : (m, d) ndarray
        Current weights (assignable; validated on assignment).
    W_init : (m, d) ndarray
        Weights at initialisation.
    step : int
        Training steps taken; sets :math:`\theta_t` of the threshold schedule.
    """

    def __init__(self, W, threshold=0.0, activation="relu", q=2.0, rho=0.1, W_init=None):
        W = check_array("W", W, 2)
        check_dtype("W.dtype", W.dtype)
        self._W = W.copy()
        self.threshold = threshold if isinstance(threshold, Threshold) else Threshold(threshold)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.q = check_float("q", q, 2)
        self.rho = check_float("rho", rho, 0, closed=(False, True))
        self.W_init = self._W.copy() if W_init is None else check_array(
            "W_init", W_init, 2, dtype=W.dtype, shape=W.shape)
        self.step = 0

    @classmethod
    def random(cls, m, d, sigma0=None, threshold=0.0, seed=0, dtype=np.float32, **kwargs):
        r"""Randomly initialised network, :math:`w_i^0 \sim \mathcal N(0, \sigma_0^2 I_d)`.

        Parameters
        ----------
        m, d : int
            Number of neurons and input dimension (both ``>= 1``).
        sigma0 : float, optional
            Initial scale :math:`\sigma_0 > 0` (default ``1/d``).
        threshold : float or Threshold
        seed : int or numpy.random.Generator
        dtype : {float32, float64}
        **kwargs
            Passed to the constructor (``activation``, ``q``, ``rho``).
        """
        m = check_int("m", m, 1)
        d = check_int("d", d, 1)
        sigma0 = 1.0 / d if sigma0 is None else check_float("sigma0", sigma0, 0, closed=(False, True))
        dtype = check_dtype("dtype", dtype)
        # the float64 draw, its cast and the net's copy of W_init, checked before allocating any of them
        check_allocation(f"TwoLayerNet.random(m={m}, d={d}, dtype={dtype.name})",
                         m * d * (8 + 2 * dtype.itemsize))
        W = sigma0 * check_random_state(seed).standard_normal((m, d))
        return cls(W.astype(dtype), threshold=threshold, **kwargs)

    # -- state ---------------------------------------------------------------
    @property
    def W(self):
        return self._W

    @W.setter
    def W(self, value):
        self._W = check_array("W", value, 2, dtype=self._W.dtype, shape=self._W.shape).copy()

    @property
    def m(self):
        return self._W.shape[0]

    @property
    def d(self):
        return self._W.shape[1]

    @property
    def dtype(self):
        return self._W.dtype

    @property
    def rho_effective(self):
        """Activation width passed to the kernels (0 means the plain ReLU)."""
        return self.rho if self.activation == "smooth" else 0.0

    def bias(self):
        """Current biases :math:`b_i` ``(m,)`` (threshold schedule at :attr:`step`)."""
        return self.threshold.bias(self._W, self.step)

    def copy(self):
        """Independent copy (weights, initial weights, schedule position)."""
        net = TwoLayerNet(self._W, self.threshold, self.activation, self.q, self.rho, self.W_init)
        net.step = self.step
        return net

    def __repr__(self):
        return (f"TwoLayerNet(m={self.m}, d={self.d}, threshold={self.threshold!r}, "
                f"activation={self.activation!r}, dtype={self.dtype}, step={self.step})")

    # -- evaluation ----------------------------------------------------------
    def _inputs(self, x):
        return check_array("x", x, 2, dtype=self.dtype, shape=(None, self.d))

    def _units(self, x, bias, ws, units=None):
        """Fill ``ws.f`` with f(x) and ``ws.u`` with unit slopes ds/du.

        ``units`` (n, m): a buffer that receives the pre-activations :math:`XW^\top`
        and keeps them for the caller (default: ``ws.u``, overwritten by the slopes).
        """
        units = ws.u if units is None else units
        np.matmul(x, self._W.T, out=units)
        self._activate(units, bias, ws)

    def _activate(self, units, bias, ws):
        """Fill ``ws.f`` and ``ws.u`` (slopes) from pre-activations ``units`` already formed."""
        kernels.soft_threshold_units(units, bias, self.q, self.rho_effective, ws.f, ws.u)

    def preactivations(self, x, out=None):
        r"""Pre-activations :math:`u_{bi} = \langle w_i, x_b\rangle`, i.e. :math:`XW^\top`.

        Parameters
        ----------
        x : (n, d) array_like
        out : (n, m) ndarray, optional
            Written in place (net's dtype, C-contiguous).

        Returns
        -------
        u : (n, m) ndarray
        """
        return np.matmul(self._inputs(x), self._W.T, out=out)

    def _workspace(self, n, ws):
        if ws is None or not ws.fits(n, self.m, self.d, self.dtype):
            ws = Workspace(n, self.m, self.d, self.dtype)
        return ws

    def forward(self, x, bias=None):
        """Network output :math:`f(x)`.

        Parameters
        ----------
        x : (n, d) array_like
        bias : (m,) array_like, optional
            Biases to use instead of the current schedule's.

        Returns
        -------
        f : (n,) ndarray
        """
        u = self.preactivations(x)  # no workspace: the backward buffers are not needed here
        f = np.empty(u.shape[0], self.dtype)
        kernels.soft_threshold_units(u, self._bias_or(bias), self.q, self.rho_effective, f, u)
        return f

    def forward64(self, x):
        r"""Network output :math:`f(x)` in float64 arithmetic, on the stored weights and biases.

        The function the certificates of :mod:`fpsim.certify` are about, and
        the one the attacks' final margins are read from: a float32 net is
        judged as the real function its stored weights define (rounding of
        order :math:`(d + m)\,\varepsilon_{64}`), not as one float32 rounding
        of it, which can differ by :math:`(d + m)\,\varepsilon_{32}
        \sum_i |u_i|`, far more than the margins that matter past the threshold.

        Parameters
        ----------
        x : (n, d) array_like
            Read in float64 (a float64 point is not rounded to the net's dtype).

        Returns
        -------
        f : (n,) float64 ndarray
        """
        x = check_array("x", x, 2, dtype=np.float64, shape=(None, self.d))
        u = x @ self._W.astype(np.float64).T
        f = np.empty(x.shape[0])
        kernels.soft_threshold_units(u, self.bias().astype(np.float64), self.q, self.rho_effective, f, u)
        return f

    def accuracy(self, x, y):
        """Fraction of ``(x, y)`` with :math:`y f(x) > 0`."""
        x = self._inputs(x)
        y = check_labels("y", y, x.shape[0])
        return float(np.mean(y * self.forward(x) > 0))

    def _bias_or(self, bias):
        if bias is None:
            return self.bias()
        bias = check_array("bias", bias, 1, dtype=self.dtype, shape=(self.m,))
        if (bias < 0).any():
            raise ValueError("bias must be >= 0 (b_i = theta ||w_i|| or b_t, with theta, b_t >= 0)")
        return bias

    def _coefficients(self, x, y, bias, ws, units=None):
        """Per-example :math:`\\partial \\ell_b/\\partial u_{bi}` into ``ws.u`` (``units``: the given
        pre-activations of ``x``); returns summed loss."""
        if units is None:
            self._units(x, bias, ws)
        else:
            self._activate(units, bias, ws)
        return kernels.logistic_loss_coefficients(ws.f, y, ws.u)

    def loss(self, x, y, weight_decay=0.0, bias=None):
        r"""Mean logistic loss plus :math:`(\lambda/2)\|W\|_F^2`."""
        return self.loss_grad(x, y, weight_decay, bias)[0]

    def loss_grad(self, x, y, weight_decay=0.0, bias=None, workspace=None):
        r"""Loss and its gradient in ``W``, the biases held fixed.

        .. math::

            L = \frac1n \sum_b \ell_b + \frac\lambda2 \|W\|_F^2, \qquad
            \frac{\partial L}{\partial w_i} = \frac1n \sum_b
                -y_b\,\sigma(-y_b f_b)\, s'(u_{bi})\, x_b + \lambda w_i

        Parameters
        ----------
        x : (n, d) array_like
        y : (n,) array_like of {-1, +1}
        weight_decay : float, default 0.0
            :math:`\lambda \ge 0`.
        bias : (m,) array_like, optional
            Biases to hold fixed (default: the current schedule's).
        workspace : Workspace, optional
            Buffers to reuse; the returned gradient is ``workspace.grad_w``.

        Returns
        -------
        loss : float
        grad : (m, d) ndarray
        """
        x = self._inputs(x)
        n = x.shape[0]
        y = check_labels("y", y, n).astype(self.dtype, copy=False)
        lam = check_float("weight_decay", weight_decay, 0)
        ws = self._workspace(n, workspace)
        loss = self._coefficients(x, y, self._bias_or(bias), ws) / n
        if ws.find_active():  # C^T X over the active pairs only
            kernels.csc_rows_update(ws.col_ptr, ws.row, ws.col_val, x, self.dtype.type(1.0 / n),
                                    self.dtype.type(0.0), ws.grad_w)
        else:
            np.matmul(ws.u.T, x, out=ws.grad_w)
            ws.grad_w *= 1.0 / n
        if lam > 0:
            ws.grad_w += lam * self._W
            loss += 0.5 * lam * float(np.vdot(self._W, self._W))
        return float(loss), ws.grad_w

    def input_grad(self, x, y, bias=None, workspace=None, units=None):
        r"""Per-example input gradient of the loss, biases held fixed.

        .. math::

            \frac{\partial \ell_b}{\partial x_b} = -y_b\, \sigma(-y_b f_b)
                \sum_i s'(u_{bi})\, w_i

        ``units`` (n, m): the pre-activations :math:`XW^\top` of ``x``, when the
        caller has them (read, not modified; e.g. :class:`Gram`-followed PGD).

        Returns
        -------
        grad : (n, d) ndarray
        """
        x = self._inputs(x)
        n = x.shape[0]
        y = check_labels("y", y, n).astype(self.dtype, copy=False)
        ws = self._workspace(n, workspace)
        self._coefficients(x, y, self._bias_or(bias), ws, units)
        if ws.find_active():  # C W over the active pairs only
            kernels.csr_rows_times(ws.row_ptr, ws.col, ws.row_val, self._W, ws.grad_x)
        else:
            np.matmul(ws.u, self._W, out=ws.grad_x)
        return ws.grad_x

    def sgd_step(self, x, y, lr, weight_decay=0.0, bias=None, workspace=None, units=None, gram=None):
        r"""One SGD step on ``W`` in place; returns the batch's mean loss before it.

        .. math::

            W \leftarrow (1 - \eta\lambda)\, W - \frac{\eta}{n} C^\top X,
            \qquad C_{bi} = \frac{\partial \ell_b}{\partial u_{bi}}

        Over the active pairs when their fraction is at most the workspace's
        crossover (:func:`fpsim.kernels.csc_rows_update`), else one ``gemm``
        with :math:`\alpha = -\eta/n`, :math:`\beta = 1 - \eta\lambda`
        writing into ``W`` through its transpose (a Fortran-ordered view): no
        gradient buffer either way.  The two paths agree to float rounding.

        Parameters
        ----------
        x : (n, d) array_like
        y : (n,) array_like of {-1, +1}
        lr : float
            :math:`\eta > 0`.
        weight_decay : float, default 0.0
            :math:`\lambda \ge 0`.
        bias : (m,) array_like, optional
            Biases to hold fixed (default: the current schedule's).
        workspace : Workspace, optional
        units : (n, m) ndarray, optional
            The pre-activations :math:`XW^\top` of ``x`` at the current
            weights, when the caller has them (an attack's last evaluation,
            :func:`fpsim.attacks.pgd`'s ``units``): the step then skips that
            product.  Read, not modified; its values are the caller's promise.
        gram : Gram, optional
            Kept current through a step over the active pairs (while it is
            :attr:`Gram.current` and where :meth:`Gram.pays`), marked stale otherwise.

        Returns
        -------
        loss : float
            :math:`\frac1n \sum_b \ell_b + \frac\lambda2 \|W\|_F^2` before the step.
        """
        x = self._inputs(x)
        n = x.shape[0]
        y = check_labels("y", y, n).astype(self.dtype, copy=False)
        lr = check_float("lr", lr, 0, closed=(False, True))
        lam = check_float("weight_decay", weight_decay, 0)
        ws = self._workspace(n, workspace)
        if units is not None:
            units = check_array("units", units, 2, dtype=self.dtype, shape=(n, self.m))
        if gram is not None:
            gram.check_fits(self)
        loss = self._coefficients(x, y, self._bias_or(bias), ws, units) / n
        if lam > 0:
            loss += 0.5 * lam * float(np.vdot(self._W, self._W))
        alpha, beta = -lr / n, 1.0 - lr * lam
        if ws.find_active():
            if gram is not None:  # K follows W where that pays: from the pre-activations at the old W
                gram.wanted = gram.pays(ws.nnz, n, self.d)
                if gram.current and gram.wanted:
                    gram.follow_step(ws, x, self.preactivations(x) if units is None else units, alpha, beta)
                gram.current = gram.current and gram.wanted
            kernels.csc_rows_update(ws.col_ptr, ws.row, ws.col_val, x, self.dtype.type(alpha),
                                    self.dtype.type(beta), self._W)
        else:  # W^T <- beta W^T + alpha X^T C, in place: W^T, X^T and C^T are F-contiguous views
            if gram is not None:
                gram.current = gram.wanted = False
            ws.gemm(alpha, x.T, ws.u.T, beta=beta, c=self._W.T, trans_b=1, overwrite_c=1)
        return float(loss)
