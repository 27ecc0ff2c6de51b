r"""Numba kernels: the hot loops of fpsim, each next to the equation it computes.

Every kernel takes plain arrays, writes into caller-provided output buffers
(so training loops allocate nothing per step) and is compiled once per dtype
and cached on disk.  The two large matrix products of a dense step
(``U = X W^T`` and ``G = C^T X``) are left to BLAS; these kernels do the
fused element-wise work around them and the sparse products.

Notation (``../shared/MODEL.md`` §3): pre-activation :math:`u_{bi} = \langle
w_i, x_b\rangle`, bias :math:`b_i`, activation :math:`\phi` (ReLU, or the
smoothed ReLU of degree :math:`q` and width :math:`\varrho`; ``rho = 0``
means the plain ReLU), unit :math:`s(u; b) = \phi(u - b) - \phi(-u - b)`.
"""
import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def activation(t, q, rho):
    r"""Smoothed ReLU and its derivative (the plain ReLU when ``rho == 0``).

    .. math::

        \phi(t) = \begin{cases} 0 & t \le 0 \\
                   t^q / (q \varrho^{q-1}) & 0 \le t \le \varrho \\
                   t - (1 - 1/q)\varrho & t \ge \varrho \end{cases}

    Returns ``(phi(t), phi'(t))``.
    """
    if t <= 0.0:
        return 0.0, 0.0
    if t >= rho:
        return t - (1.0 - 1.0 / q) * rho, 1.0
    r = t / rho
    slope = r ** (q - 1.0)
    return t * slope / q, slope


@numba.njit(cache=True)
def soft_threshold_units(u, bias, q, rho, out_f, out_slope):
    r"""Network output and unit slopes from pre-activations, in one pass.

    .. math::

        f_b = \sum_i s(u_{bi}; b_i), \qquad
        \text{slope}_{bi} = \partial s / \partial u_{bi}
                          = \phi'(u_{bi} - b_i) + \phi'(-u_{bi} - b_i)

    Parameters
    ----------
    u : (n, m) array
    bias : (m,) array
    q, rho : float
        Activation parameters (``rho = 0``: ReLU).
    out_f : (n,) array, written
    out_slope : (n, m) array, written
    """
    n, m = u.shape
    for b in range(n):
        total = 0.0
        for i in range(m):
            pos, dpos = activation(u[b, i] - bias[i], q, rho)
            neg, dneg = activation(-u[b, i] - bias[i], q, rho)
            total += pos - neg
            out_slope[b, i] = dpos + dneg
        out_f[b] = total


@numba.njit(cache=True)
def logistic_loss_coefficients(f, y, slope):
    r"""Summed logistic loss; turns unit slopes into :math:`\partial \ell_b / \partial u_{bi}` in place.

    .. math::

        \ell_b = \log(1 + e^{-y_b f_b}), \qquad
        \frac{\partial \ell_b}{\partial u_{bi}} = -y_b\,\sigma(-y_b f_b)\,\text{slope}_{bi}

    Both the loss and the sigmoid are evaluated without overflow for any margin
    :math:`y_b f_b`.  Returns :math:`\sum_b \ell_b` as a float64.
    """
    n, m = slope.shape
    loss = 0.0
    for b in range(n):
        margin = float(y[b]) * float(f[b])
        e = np.exp(-abs(margin))  # in (0, 1]: never overflows
        loss += max(-margin, 0.0) + np.log1p(e)
        sig = e / (1.0 + e) if margin >= 0.0 else 1.0 / (1.0 + e)  # sigma(-margin)
        g = -float(y[b]) * sig
        for i in range(m):
            slope[b, i] *= g
    return loss


@numba.njit(cache=True)
def sparse_rows_times(z, rows, out):
    r"""Product of sparse rows with a dense matrix, skipping zeros.

    .. math::

        \text{out}_b = \sum_{j : z_{bj} \ne 0} z_{bj}\, \text{rows}_j

    With ``rows = M^T`` this is the input :math:`x = M z`; with ``rows = A^T``
    (:math:`A = W M`, the weights in the dictionary basis) it is the
    pre-activation :math:`u = A z`.  Cost :math:`\propto n k r`, not
    :math:`n d r`, for ``rows`` of shape ``(d, r)`` and ``k`` non-zeros per row.
    """
    n, d = z.shape
    r = rows.shape[1]
    for b in range(n):
        for c in range(r):
            out[b, c] = 0.0
        for j in range(d):
            v = z[b, j]
            if v != 0.0:
                for c in range(r):
                    out[b, c] += v * rows[j, c]


@numba.njit(cache=True)
def sparse_rank_update(z, coef, scale, rows):
    r"""Add a sparse outer-product sum to ``rows`` in place.

    .. math::

        \text{rows}_j \mathrel{+}= \text{scale} \sum_{b : z_{bj} \ne 0} z_{bj}\, \text{coef}_b

    This is the SGD step in the dictionary basis: with ``coef`` the
    per-example :math:`\partial \ell_b/\partial u_b`, ``rows = A^T`` and
    ``scale = -\eta / B`` it applies :math:`A \leftarrow A - \eta\, \nabla_A L`.
    """
    n, d = z.shape
    r = rows.shape[1]
    for b in range(n):
        for j in range(d):
            v = z[b, j]
            if v != 0.0:
                w = scale * v
                for c in range(r):
                    rows[j, c] += w * coef[b, c]


@numba.njit(cache=True)
def fill_sparse_codes(counts, uniforms, values, z):
    r"""Place ``counts[b]`` values at distinct uniform positions of row ``b`` of ``z``.

    Uses Floyd's algorithm: for :math:`j = d - c, \dots, d - 1` draw
    :math:`t \sim U\{0..j\}`; take :math:`t` unless already taken, else
    :math:`j`.  Every :math:`c`-subset is equally likely, so together with
    :math:`c \sim \mathrm{Bin}(d, k/d)` each coordinate is non-zero
    independently with probability :math:`k/d`.  ``uniforms`` and ``values``
    hold ``sum(counts)`` pre-drawn numbers (from a numpy Generator), consumed
    in order, so only :math:`\sum_b c_b` draws are made, never :math:`n d`.
    ``z`` must be zero on entry.
    """
    n, d = z.shape
    offset = 0
    for b in range(n):
        c = counts[b]
        for p in range(c):
            j = d - c + p
            t = min(int(uniforms[offset + p] * (j + 1)), j)
            if z[b, t] != 0.0:  # t already taken (values are non-zero)
                t = j
            z[b, t] = values[offset + p]
        offset += c
