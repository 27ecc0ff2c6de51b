r"""Numba kernels: the hot loops of fpsim, each next to the equation it computes.

Every kernel takes plain arrays, writes into caller-provided output buffers
(so training loops allocate nothing per step but :func:`gram_update`'s
per-tile scratch) and is compiled once per dtype
and cached on disk.  The two large matrix products of a dense step
(``U = X W^T`` and ``G = C^T X``) are left to BLAS; these kernels do the
fused element-wise work around them and the sparse products -- among them
the backward products over the active units only (:func:`active_pairs`,
:func:`csc_rows_update`, :func:`csr_rows_times`), which replace BLAS when
few units are active, as on clean-trained networks, and the forward products
of :math:`\ell_2` PGD's iterates through :math:`K = W W^\top`
(:func:`gram_advance`, with :func:`gram_update` carrying :math:`K` through an
SGD step).

Notation (``docs/MODEL.md`` §3): pre-activation :math:`u_{bi} = \langle
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

    Returns ``(phi(t), phi'(t))``.  Outside the smooth piece both are written
    without branches on ``t`` (``max`` and a comparison), so a loop over ReLU
    units pays no branch mispredictions whatever the fraction of active units.

    Parameters
    ----------
    t : float
        Input above the threshold, :math:`|u| - b`.
    q, rho : float
        Exponent :math:`q \ge 2` and width :math:`\varrho \ge 0` of the smooth piece.
    """
    if rho > 0.0 and 0.0 < t < rho:  # the smooth piece (never for the ReLU)
        slope = (t / rho) ** (q - 1.0)
        return t * slope / q, slope
    return max(t - (1.0 - 1.0 / q) * rho, 0.0), 1.0 if t > 0.0 else 0.0


@numba.njit(cache=True)
def soft_threshold_units(u, bias, q, rho, out_f, out_slope):
    r"""Network output and unit slopes from pre-activations, in one pass.

    .. math::

        f_b = \sum_i s(u_{bi}; b_i), \qquad
        \text{slope}_{bi} = \partial s / \partial u_{bi}
                          = \phi'(u_{bi} - b_i) + \phi'(-u_{bi} - b_i)

    For :math:`b_i \ge 0` at most one of the two terms is non-zero, so the unit
    is evaluated as :math:`s(u; b) = \operatorname{sign}(u)\,\phi(|u| - b)`
    with slope :math:`\phi'(|u| - b)`: one activation per unit.  ``out_slope``
    may be ``u`` itself (overwritten in place).

    Parameters
    ----------
    u : (n, m) array
    bias : (m,) array
        :math:`b_i \ge 0`.
    q, rho : float
        Activation parameters (``rho = 0``: ReLU).
    out_f : (n,) array, written
    out_slope : (n, m) array, written
    """
    if rho == 0.0:
        relu_units(u, bias, out_f, out_slope)
        return
    n, m = u.shape
    for b in range(n):
        total = 0.0
        for i in range(m):
            value, slope = activation(abs(u[b, i]) - bias[i], q, rho)
            total += np.copysign(value, u[b, i])
            out_slope[b, i] = slope
        out_f[b] = total


@numba.njit(cache=True, fastmath={"reassoc"})
def relu_units(u, bias, out_f, out_slope):
    r""":func:`soft_threshold_units` for the plain ReLU (:math:`\varrho = 0`), the row sums vectorised.

    .. math::

        f_b = \sum_i \operatorname{sign}(u_{bi}) \max(|u_{bi}| - b_i, 0), \qquad
        \text{slope}_{bi} = 1\{|u_{bi}| > b_i\}

    A loop of its own because letting LLVM reassociate the float64 row sum
    vectorises it: 0.37 instead of 1.35 ms at 256 x 4000 (measured, 1 thread).
    The general loop cannot take the same flag: LLVM then evaluates the smooth
    piece's power on every lane and the smoothed ReLU becomes slower.  The sum
    is added in a fixed, machine-dependent order: it agrees with the sequential
    sum to float64 rounding.  The sum is a loop of its own, which reads and
    never writes, so its order is the same on every call, in place
    (``out_slope`` is ``u``) or not: :math:`f(-u) = -f(u)` exactly, and runs
    repeat bit for bit.
    """
    n, m = u.shape
    for b in range(n):
        total = 0.0
        for i in range(m):  # a pure reduction: vectorised the same way whether or not out_slope is u
            total += np.copysign(max(abs(u[b, i]) - bias[i], 0.0), u[b, i])
        for i in range(m):
            out_slope[b, i] = 1.0 if abs(u[b, i]) > bias[i] else 0.0
        out_f[b] = total


@numba.njit(cache=True)
def logistic_loss_coefficients(f, y, slope):
    r"""Summed logistic loss; turns unit slopes into :math:`\partial \ell_b / \partial u_{bi}` in place.

    .. math::

        \ell_b = \log(1 + e^{-y_b f_b}), \qquad
        \frac{\partial \ell_b}{\partial u_{bi}} = -y_b\,\sigma(-y_b f_b)\,\text{slope}_{bi}

    Both the loss and the sigmoid are evaluated without overflow for any margin
    :math:`y_b f_b`.  Returns :math:`\sum_b \ell_b` as a float64.

    Parameters
    ----------
    f : (n,) float array
        Outputs :math:`f_b`.
    y : (n,) array of {-1, +1}
    slope : (n, m) float array, overwritten
        Unit slopes :math:`\partial f_b / \partial u_{bi}` on entry, the coefficients on exit.
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


# --- activation-sparse backward (issue #12) ---


@numba.njit(cache=True)
def active_pairs(coef, capacity, row_ptr, col, row_val, col_ptr, row, col_val):
    r"""The non-zero coefficients of ``coef`` as CSR and CSC lists, or ``-1`` if more than ``capacity``.

    .. math::

        \mathcal A = \{(b, i) : C_{bi} \ne 0\}, \qquad
        C_{bi} = \frac{\partial \ell_b}{\partial u_{bi}}
               = -y_b\,\sigma(-y_b f_b)\, s'(u_{bi})

    A unit contributes to either backward product only where it is active
    (:math:`s'(u_{bi}) \ne 0`, i.e. :math:`|u_{bi}| > b_i`), so both products
    need only the pairs :math:`\mathcal A`.  One row-major scan writes the CSR
    lists (row ``b``: positions ``row_ptr[b]:row_ptr[b+1]`` of ``col``,
    ``row_val``, units increasing); a counting sort of them writes the CSC lists
    (unit ``i``: positions ``col_ptr[i]:col_ptr[i+1]`` of ``row``, ``col_val``,
    examples increasing).  The scan stops and returns ``-1`` as soon as the
    count exceeds ``capacity``, or after 8 or more rows once the rows so far
    hold more than twice their share of it (so a dense batch costs a few rows
    of scanning): the caller then uses the dense products.

    Parameters
    ----------
    coef : (n, m) array
        :math:`C`.
    capacity : int
        Length of ``col``, ``row_val``, ``row``, ``col_val``.
    row_ptr : (n + 1,) int64 array, written
    col : (capacity,) int32 array, written
    row_val : (capacity,) array of ``coef``'s dtype, written
    col_ptr : (m + 1,) int64 array, written
    row : (capacity,) int32 array, written
    col_val : (capacity,) array of ``coef``'s dtype, written

    Returns
    -------
    nnz : int
        :math:`|\mathcal A|`, or ``-1`` if it exceeds ``capacity`` (lists then undefined).
    """
    n, m = coef.shape
    for i in range(m + 1):
        col_ptr[i] = 0
    nnz = 0
    row_ptr[0] = 0
    for b in range(n):
        for i in range(m):
            v = coef[b, i]
            if v != 0.0:
                if nnz == capacity:
                    return -1
                col[nnz] = i
                row_val[nnz] = v
                nnz += 1
                col_ptr[i + 1] += 1
        row_ptr[b + 1] = nnz
        if b >= 7 and nnz * n > 2 * capacity * (b + 1):  # clearly dense already: stop early
            return -1
    for i in range(m):  # counts -> starts
        col_ptr[i + 1] += col_ptr[i]
    for b in range(n):  # scatter in example order; col_ptr[i] runs from the start to the end of unit i
        for p in range(row_ptr[b], row_ptr[b + 1]):
            i = col[p]
            q = col_ptr[i]
            row[q] = b
            col_val[q] = row_val[p]
            col_ptr[i] = q + 1
    for i in range(m, 0, -1):  # ends -> starts again
        col_ptr[i] = col_ptr[i - 1]
    col_ptr[0] = 0
    return nnz


@numba.njit(cache=True, inline="always")
def add_scaled_rows(out, r, values, index, start, end, source, scale):
    r"""Add a scaled sum of rows of ``source`` to row ``r`` of ``out``, four rows per pass.

    .. math::

        \text{out}_r \mathrel{+}= \sum_{p=\text{start}}^{\text{end}-1}
            (\text{scale}\cdot\text{values}_p)\, \text{source}_{\text{index}_p}

    The sparse products stream one row of ``source`` per pair and are bound by
    memory; taking four rows per pass over ``out``'s row halves the time (measured:
    ``C W`` at 1.6 % active, d = 1000, 4.0 -> 2.0 ms).  The order of the sum is fixed
    (groups of four in list order), so results do not depend on the thread count.
    """
    d = out.shape[1]
    p = start
    while p + 3 < end:
        v0, v1, v2, v3 = scale * values[p], scale * values[p + 1], scale * values[p + 2], scale * values[p + 3]
        i0, i1, i2, i3 = index[p], index[p + 1], index[p + 2], index[p + 3]
        for c in range(d):
            out[r, c] += (v0 * source[i0, c] + v1 * source[i1, c]) + (v2 * source[i2, c] + v3 * source[i3, c])
        p += 4
    while p < end:
        v, i = scale * values[p], index[p]
        for c in range(d):
            out[r, c] += v * source[i, c]
        p += 1


@numba.njit(cache=True, parallel=True)
def csc_rows_update(col_ptr, row, col_val, x, alpha, beta, out):
    r"""Weight-gradient product over the active pairs, written into ``out`` row by row.

    .. math::

        \text{out}_i \leftarrow \beta\, \text{out}_i
            + \alpha \sum_{b : (b, i) \in \mathcal A} C_{bi}\, x_b
        \qquad (\text{all } i = 1..m)

    With ``out = W``, :math:`\alpha = -\eta/B`, :math:`\beta = 1 - \eta\lambda`
    it is the SGD step :math:`W \leftarrow (1-\eta\lambda) W - \frac\eta B C^\top X`;
    with :math:`\beta = 0` (``out`` overwritten, not scaled) and
    :math:`\alpha = 1/B` the gradient :math:`\frac1B C^\top X`.  Cost
    :math:`\propto |\mathcal A|\, d` instead of :math:`B m d`.  Units run in
    parallel; each row of ``out`` is summed by one thread in example order
    (:func:`add_scaled_rows`), so the result does not depend on the thread count.

    Parameters
    ----------
    col_ptr, row, col_val
        CSC lists of :math:`C` (:func:`active_pairs`).
    x : (n, d) array
    alpha, beta : scalars in the dtype of ``out``
    out : (m, d) array, updated in place
    """
    m, d = out.shape
    for i in numba.prange(m):
        if beta == 0.0:
            for c in range(d):
                out[i, c] = 0.0
        elif beta != 1.0:
            for c in range(d):
                out[i, c] *= beta
        add_scaled_rows(out, i, col_val, row, col_ptr[i], col_ptr[i + 1], x, alpha)


@numba.njit(cache=True, parallel=True)
def csr_rows_times(row_ptr, col, row_val, rows, out):
    r"""Input-gradient product over the active pairs, one example per row.

    .. math::

        \text{out}_b = \sum_{i : (b, i) \in \mathcal A} C_{bi}\, \text{rows}_i

    With ``rows = W`` this is :math:`C W`, the input gradients
    :math:`\partial\ell_b/\partial x_b` of PGD and FGM.  Cost
    :math:`\propto |\mathcal A|\, d` instead of :math:`B m d`.  Examples run in
    parallel; each row of ``out`` is summed by one thread in unit order
    (:func:`add_scaled_rows`).

    Parameters
    ----------
    row_ptr : (n + 1,) int64 array
        Start of each example's active pairs in ``col`` / ``row_val`` (CSR).
    col : (nnz,) int64 array
        Unit :math:`i` of each active pair.
    row_val : (nnz,) float array
        :math:`C_{bi}` of each active pair.
    rows : (m, d) float array
    out : (n, d) float array, written
    """
    n, d = out.shape
    one = np.ones(1, out.dtype)[0]  # the scale 1 in the output's dtype (a float64 literal would widen the sums)
    for b in numba.prange(n):
        for c in range(d):
            out[b, c] = 0.0
        add_scaled_rows(out, b, row_val, col, row_ptr[b], row_ptr[b + 1], rows, one)


# --- l2 PGD through the Gram matrix K = W W^T (issue #12) ---


@numba.njit(cache=True, parallel=True)
def gram_advance(row_ptr, col, row_val, gram, factors, q, p, u):
    r"""Pre-activations of the next :math:`\ell_2` PGD iterate from :math:`K = W W^\top`, one example per row.

    The :math:`\ell_2` step is :math:`\delta_b \leftarrow c_b(\delta_b + a_b g_b)`
    with :math:`g_b = \sum_i C_{bi} w_i` (:func:`ascend_project`'s factors), so

    .. math::

        p_b = \delta_b W^\top \leftarrow c_b\Big(p_b + a_b \sum_{i : (b, i) \in \mathcal A} C_{bi} K_i\Big),
        \qquad u_b = q_b + p_b, \quad q_b = x_b W^\top,

    at cost :math:`\propto |\mathcal A|\, m` instead of the product
    :math:`(x + \delta) W^\top` (:math:`\propto n m d`).  Examples run in
    parallel, each row summed by one thread in unit order (:func:`add_scaled_rows`).

    Parameters
    ----------
    row_ptr, col, row_val
        CSR lists of :math:`C` (:func:`active_pairs`).
    gram : (m, m) array
        :math:`K`.
    factors : (n, 2) array
        :math:`(a_b, c_b)`, in the dtype of ``p``.
    q : (n, m) array
        :math:`X W^\top`.
    p : (n, m) array, updated in place
        :math:`\delta W^\top`.
    u : (n, m) array, written
        :math:`(x + \delta) W^\top`.
    """
    n, m = p.shape
    for b in numba.prange(n):
        add_scaled_rows(p, b, row_val, col, row_ptr[b], row_ptr[b + 1], gram, factors[b, 0])
        c = factors[b, 1]
        for j in range(m):
            p[b, j] *= c
            u[b, j] = q[b, j] + p[b, j]


#: Rows of :math:`K` per thread task in :func:`gram_update` (its transpose buffer is ``m x GRAM_TILE``;
#: 32 measured fastest of 8-64 at m = 1600-4000: 19 ms at m = 4000, 1.6 % active, 1 thread).
GRAM_TILE = 32


@numba.njit(cache=True, parallel=True)
def gram_update(gram, beta2, alpha, col_ptr, row, col_val, row_ptr, col, row_val, r):
    r"""The Gram matrix after a sparse SGD step: :math:`K \leftarrow \beta^2 K + \alpha(C^\top R + R^\top C)`.

    For the step :math:`W' = \beta W + \alpha C^\top X` (:func:`csc_rows_update`,
    :math:`\alpha = -\eta/B`, :math:`\beta = 1 - \eta\lambda`) with
    :math:`U = X W^\top` and :math:`G = X X^\top`,

    .. math::

        W' W'^\top = \beta^2 K + \alpha\beta (C^\top U + U^\top C) + \alpha^2 C^\top G C
                   = \beta^2 K + \alpha (C^\top R + R^\top C), \qquad
        R = \beta U + \tfrac{\alpha}{2} G C,

    because :math:`(GC)^\top C = C^\top G C` (:math:`G` symmetric).  Row
    :math:`i` of :math:`C^\top R` is :math:`\sum_{b : (b,i) \in \mathcal A} C_{bi} R_b`
    (CSC lists); rows :math:`i_0..i_0+T` of :math:`R^\top C` are gathered
    transposed, :math:`\sum_b \sum_{j : (b,j) \in \mathcal A} C_{bj} R_{b,i_0..}`
    into column :math:`j` (CSR lists).  Cost :math:`\propto 2 |\mathcal A| m`
    plus one pass over :math:`K`, instead of :math:`m^2 d`.  Tiles of
    :data:`GRAM_TILE` rows run in parallel; each entry is summed by one thread
    in a fixed order, so the result does not depend on the thread count.

    Parameters
    ----------
    gram : (m, m) array, updated in place
        :math:`K`.
    beta2, alpha : scalars in the dtype of ``gram``
        :math:`\beta^2` and :math:`\alpha`.
    col_ptr, row, col_val
        CSC lists of :math:`C`.
    row_ptr, col, row_val
        CSR lists of the same :math:`C`.
    r : (n, m) array
        :math:`R`.
    """
    m = gram.shape[0]
    n = r.shape[0]
    for t in numba.prange((m + GRAM_TILE - 1) // GRAM_TILE):
        i0 = t * GRAM_TILE
        w = min(GRAM_TILE, m - i0)
        acc = np.zeros((m, GRAM_TILE), gram.dtype)  # acc[j, a] = (R^T C)[i0 + a, j]; a constant stride
        for b in range(n):
            r_b = r[b, i0:i0 + w]
            for p in range(row_ptr[b], row_ptr[b + 1]):
                j = col[p]
                v = row_val[p]
                for a in range(w):
                    acc[j, a] += v * r_b[a]
        for a in range(w):  # each row of K once: scale, add its column of acc, then its C^T R row
            i = i0 + a
            for j in range(m):
                gram[i, j] = beta2 * gram[i, j] + alpha * acc[j, a]
            add_scaled_rows(gram, i, col_val, row, col_ptr[i], col_ptr[i + 1], r, alpha)


@numba.njit(cache=True)
def sparse_rows_times(z, rows, out):
    r"""Product of sparse rows with a dense matrix, skipping zeros.

    .. math::

        \text{out}_b = \sum_{j : z_{bj} \ne 0} z_{bj}\, \text{rows}_j

    With ``rows = M^T`` this is the input :math:`x = M z`; with ``rows = A^T``
    (:math:`A = W M`, the weights in the dictionary basis) it is the
    pre-activation :math:`u = A z`.  Cost :math:`\propto n k r`, not
    :math:`n d r`, for ``rows`` of shape ``(d, r)`` and ``k`` non-zeros per row.

    Parameters
    ----------
    z : (n, d) float array
        Sparse rows (codes).
    rows : (d, r) float array
    out : (n, r) float array, written
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
    Pass ``scale`` in the dtype of ``rows`` (e.g. ``np.float32``): the inner
    loop then runs in that precision, twice the SIMD width of float64.

    Parameters
    ----------
    z : (n, d) float array
        Sparse rows (codes).
    coef : (n, r) float array
    scale : float
    rows : (d, r) float array, updated in place
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
def code_positions(counts, uniforms, d, positions):
    r"""Distinct uniform positions in :math:`\{0, \dots, d-1\}`: ``counts[b]`` of them for row ``b``.

    Floyd's algorithm: for :math:`j = d - c, \dots, d - 1` draw
    :math:`t \sim U\{0..j\}`; take :math:`t` unless already taken, else
    :math:`j`.  Every :math:`c`-subset is equally likely, so together with
    :math:`c \sim \mathrm{Bin}(d, k/d)` each coordinate is non-zero
    independently with probability :math:`k/d`.  ``uniforms`` holds
    ``sum(counts)`` pre-drawn numbers (from a numpy Generator), consumed in
    order, so only :math:`\sum_b c_b` draws are made, never :math:`n d`.

    Parameters
    ----------
    counts : (n,) int64 array
        Non-zeros :math:`c_b \le d` of each row.
    uniforms : (sum(counts),) float64 array
        Draws in :math:`[0, 1)`.
    d : int
    positions : (sum(counts),) int64 array, written
        Row ``b``'s positions at ``positions[offset_b : offset_b + c_b]``.
    """
    taken = np.zeros(d, dtype=np.bool_)
    offset = 0
    for b in range(counts.shape[0]):
        c = counts[b]
        for p in range(c):
            j = d - c + p
            t = min(int(uniforms[offset + p] * (j + 1)), j)
            if taken[t]:  # j never is
                t = j
            taken[t] = True
            positions[offset + p] = t
        for p in range(offset, offset + c):  # clear for the next row: O(c), not O(d)
            taken[positions[p]] = False
        offset += c


@numba.njit(cache=True)
def code_values(bits, magnitudes, root_k, values):
    r"""Non-zero code entries from their draws, in one pass (no temporaries):

    .. math::

        v_p = (2\beta_p - 1)\,\min(U_p/\sqrt k,\ 1),

    with :math:`\beta_p \in \{0, 1\}` the sign bit (``bits``, int8) and
    :math:`U_p` the magnitude draw (``magnitudes``, float64), evaluated in
    float64 and rounded once to ``values``' dtype (``root_k`` is :math:`\sqrt k`).
    """
    for p in range(bits.shape[0]):
        values[p] = (bits[p] * 2.0 - 1.0) * min(magnitudes[p] / root_k, 1.0)


@numba.njit(cache=True)
def code_scores(counts, positions, values, w, scores):
    r"""Teacher scores of sparse codes: ``scores[b]`` :math:`= \langle w, z_b\rangle = \sum_p v_p\, w_{t_p}`.

    Row ``b`` of the codes has values ``values[p]`` at ``positions[p]`` for
    ``p`` in its slice (:func:`code_positions`); summed in float64.
    """
    offset = 0
    for b in range(counts.shape[0]):
        total = 0.0
        for p in range(offset, offset + counts[b]):
            total += np.float64(values[p]) * w[positions[p]]
        scores[b] = total
        offset += counts[b]


@numba.njit(cache=True)
def place_codes(counts, positions, values, rows, z):
    r"""Dense codes of the selected rows: ``z[r, positions] = values`` for row ``rows[r]``.

    ``rows`` ascending; ``z`` (``len(rows)``, ``d``) must be zero on entry.
    """
    offset = 0
    r = 0
    for b in range(counts.shape[0]):
        if r < rows.shape[0] and rows[r] == b:
            for p in range(offset, offset + counts[b]):
                z[r, positions[p]] = values[p]
            r += 1
        offset += counts[b]


# --- attacks and certificates ---


@numba.njit(cache=True, inline="always")
def _ascend_row(src, grad, b, alpha, tau, inf_norm, out):
    r"""Row ``b`` of :func:`ascend_project`: ``out[b] = Pi(src[b] + alpha d(grad[b]))`` (``out`` may be ``src``).

    Returns ``(a, c)`` with ``out[b] = c (src[b] + a g)`` for :math:`\ell_2` (``a`` is :math:`\alpha/\|g\|`).
    """
    d = src.shape[1]
    scale = alpha
    if not inf_norm:
        gsq = 0.0
        for j in range(d):
            gsq += grad[b, j] * grad[b, j]
        scale = alpha / np.sqrt(gsq) if gsq > 0.0 else 0.0
    for j in range(d):
        g = grad[b, j]
        out[b, j] = src[b, j] + scale * (np.sign(g) if inf_norm else g)
    return scale, _project_row(out, b, tau, inf_norm)


@numba.njit(cache=True, inline="always")
def _project_row(delta, b, tau, inf_norm):
    r"""Project row ``b`` of ``delta`` onto :math:`\{\|\cdot\|_p \le \tau\}` in place.

    Returns the :math:`\ell_2` shrink factor :math:`\min(1, \tau/\|\delta_b\|)` (1 for :math:`\ell_\infty`).
    """
    d = delta.shape[1]
    if inf_norm:
        for j in range(d):
            delta[b, j] = min(max(delta[b, j], -tau), tau)
        return 1.0
    dsq = 0.0
    for j in range(d):
        dsq += delta[b, j] * delta[b, j]
    shrink = 1.0
    if dsq > tau * tau:
        shrink = tau / np.sqrt(dsq)
        for j in range(d):
            delta[b, j] *= shrink
    return shrink


@numba.njit(cache=True)
def ascend_project(delta, grad, alpha, tau, inf_norm, factors=None):
    r"""One steepest-ascent step in the attack norm, then projection onto the ball, in place.

    .. math::

        \delta_b \leftarrow \Pi_{\|\cdot\|_p \le \tau}\big(\delta_b + \alpha\, d_b\big), \qquad
        d_b = \begin{cases} g_b / \|g_b\|_2 & p = 2 \ (d_b = 0 \text{ if } g_b = 0) \\
                            \operatorname{sign} g_b & p = \infty \end{cases}

    :math:`\Pi` rescales a row of :math:`\ell_2` norm above :math:`\tau` onto the
    sphere (:math:`p = 2`) or clips every coordinate to :math:`[-\tau, \tau]`
    (:math:`p = \infty`).  From :math:`\delta = 0` with :math:`\alpha = \tau`
    this is FGM; repeated, it is the PGD iteration.

    Parameters
    ----------
    delta : (n, d) array, updated in place
    grad : (n, d) array
        Input gradients :math:`g_b = \nabla_x \ell_b`.
    alpha, tau : float
        Step size :math:`\alpha` and radius :math:`\tau`.
    inf_norm : bool
        ``True`` for :math:`p = \infty`, ``False`` for :math:`p = 2`.
    factors : (n, 2) array, optional
        Receives, for :math:`p = 2`, the step's per-example factors
        :math:`(a_b, c_b)` with :math:`\delta_b \leftarrow c_b(\delta_b + a_b g_b)`:
        :math:`a_b = \alpha/\|g_b\|_2` and the projection's shrink
        :math:`c_b = \min(1, \tau/\|\delta_b + a_b g_b\|_2)`
        (what :func:`gram_advance` needs to follow :math:`\delta W^\top`).
    """
    for b in range(delta.shape[0]):
        scale, shrink = _ascend_row(delta, grad, b, alpha, tau, inf_norm, delta)
        if factors is not None:
            factors[b, 0] = scale
            factors[b, 1] = shrink


@numba.njit(cache=True)
def momentum_ascend(delta, previous, grad, eta, tau, inf_norm, momentum, work):
    r"""One APGD step (Croce & Hein 2020): steepest ascent, projection, momentum, projection; in place.

    .. math::

        z_b = \Pi\big(\delta_b + \eta_b\, d_b\big), \qquad
        \delta_b \leftarrow \Pi\big(\delta_b + \mu\,(z_b - \delta_b)
                                    + (1 - \mu)(\delta_b - \delta_b^{\rm prev})\big),

    with :math:`d_b` and :math:`\Pi` as in :func:`ascend_project`, a step
    :math:`\eta_b` per example and momentum weight :math:`\mu` (``momentum = 1``:
    the plain projected step).  ``previous`` receives the old :math:`\delta`.

    Parameters
    ----------
    delta : (n, d) array, updated in place
    previous : (n, d) array
        :math:`\delta^{\rm prev}` on entry, the old :math:`\delta` on exit.
    grad : (n, d) array
    eta : (n,) float64 array
        Step sizes :math:`\eta_b`.
    tau : float
    inf_norm : bool
    momentum : float
        :math:`\mu \in (0, 1]`.
    work : (n, d) array, scratch
    """
    n, d = delta.shape
    for b in range(n):
        _ascend_row(delta, grad, b, eta[b], tau, inf_norm, work)
        for j in range(d):
            old = delta[b, j]
            delta[b, j] = old + momentum * (work[b, j] - old) + (1.0 - momentum) * (old - previous[b, j])
            previous[b, j] = old
        _project_row(delta, b, tau, inf_norm)


@numba.njit(cache=True)
def unit_line_offsets(v, radius, bias, slope, q, rho, out_offset, out_argmin):
    r"""Best offset of a line of given slope below each unit on its input interval (linear relaxation).

    For unit :math:`s(t) = \phi(t - b) - \phi(-t - b)` on :math:`t \in [v - r, v + r]`
    and a slope :math:`\lambda \in [0, 1]`,

    .. math::

        c(\lambda) = \min_{|t - v| \le r} \big[s(t) - \lambda (t - v)\big],
        \qquad s(t) \ge c(\lambda) + \lambda (t - v) \ \text{on the interval}.

    :math:`s` is concave on :math:`t \le 0` and convex on :math:`t \ge 0`, so
    the minimum is attained at :math:`v - r`, :math:`\min(v + r, 0)`, :math:`v + r`
    or the stationary point of the convex part, :math:`\phi'(t^* - b) = \lambda`,
    i.e. :math:`t^* = b + \varrho \lambda^{1/(q-1)}` (:math:`t^* = b` for the ReLU),
    clipped to :math:`[\max(v - r, 0), v + r]`; all four are evaluated.
    The minimiser :math:`t_\star` gives the supergradient
    :math:`\partial c / \partial \lambda = -(t_\star - v)` (:math:`c` is concave in :math:`\lambda`).

    Parameters
    ----------
    v : (n, m) float64 array
        Centres :math:`v_{bi} = y_b u_{bi}`.
    radius : (m,) float64 array
        :math:`r_i`.
    bias : (m,) float64 array
    slope : (n, m) float64 array
        :math:`\lambda_{bi} \in [0, 1]`.
    q, rho : float
        Activation parameters (``rho = 0``: ReLU).
    out_offset, out_argmin : (n, m) float64 arrays, written
        :math:`c(\lambda_{bi})` and :math:`t_\star - v_{bi}`.
    """
    n, m = v.shape
    for b in range(n):
        for i in range(m):
            centre, r, bi, lam = v[b, i], radius[i], bias[i], slope[b, i]
            lo, hi = centre - r, centre + r
            stationary = bi
            if rho > 0.0 and lam > 0.0:
                stationary = bi + rho * lam ** (1.0 / (q - 1.0))
            best, arg = np.inf, 0.0
            for k in range(4):
                if k == 0:
                    t = lo
                elif k == 1:
                    t = hi
                elif k == 2:
                    t = min(hi, 0.0)
                    if t < lo:
                        continue
                else:
                    if hi < 0.0:
                        continue
                    t = min(max(stationary, max(lo, 0.0)), hi)
                pos, _ = activation(abs(t) - bi, q, rho)
                value = np.copysign(pos, t) - lam * (t - centre)
                if value < best:
                    best, arg = value, t - centre
            out_offset[b, i] = best
            out_argmin[b, i] = arg


@numba.njit(cache=True)
def envelope_tangent(v, radius, bias, q, rho, out_point, out_slope):
    r"""Where the convex envelope of each unit on its input interval leaves the unit, and its slope there.

    On :math:`[l, h] = [v - r, v + r]` the unit :math:`s` is concave for
    :math:`t \le 0` and convex for :math:`t \ge 0`, so its convex envelope is the
    line from :math:`(l, s(l))` of slope

    .. math::

        \lambda_T = \min_{l < t \le h} \frac{s(t) - s(l)}{t - l}

    up to the minimiser :math:`t_T`, and :math:`s` itself beyond (for
    :math:`l \ge 0`: :math:`s` throughout, :math:`t_T = l`, :math:`\lambda_T = s'(l)`).
    The minimum is taken over :math:`h`, the kinks :math:`\pm b` and, for the
    smoothed ReLU, 16 points of :math:`[b, b + \varrho]`; an approximate
    :math:`\lambda_T` only loosens, never invalidates, the bound that uses it
    (:func:`unit_line_offsets` computes the exact offset for any slope).

    Parameters
    ----------
    v : (n, m) float64 array
        Interval centres.
    radius, bias : (m,) float64 arrays
    q, rho : float
    out_point, out_slope : (n, m) float64 arrays, written
        :math:`t_T` and :math:`\lambda_T`.
    """
    n, m = v.shape
    for b in range(n):
        for i in range(m):
            lo, hi, bi = v[b, i] - radius[i], v[b, i] + radius[i], bias[i]
            at_lo, slope_lo = activation(abs(lo) - bi, q, rho)
            if lo >= 0.0 or hi <= lo:
                out_point[b, i], out_slope[b, i] = lo, slope_lo
                continue
            s_lo = np.copysign(at_lo, lo)
            best, point = np.inf, hi
            extra = 16 if rho > 0.0 else 0
            for k in range(3 + extra):
                if k == 0:
                    t = hi
                elif k == 1:
                    t = bi
                elif k == 2:
                    t = -bi
                else:
                    t = bi + rho * (k - 2) / extra
                if t <= lo or t > hi:
                    continue
                value, _ = activation(abs(t) - bi, q, rho)
                ratio = (np.copysign(value, t) - s_lo) / (t - lo)
                if ratio < best:
                    best, point = ratio, t
            out_point[b, i], out_slope[b, i] = point, min(max(best, 0.0), 1.0)


@numba.njit(cache=True)
def unit_drops(u, y, radius, bias, q, rho, out):
    r"""Worst-case decrease of each unit's contribution to the margin over the ball.

    .. math::

        \text{out}_{bi} = y_b\, s(u_{bi}; b_i) - y_b\, s(u_{bi} - y_b r_i; b_i) \;\ge\; 0

    with :math:`r_i = \tau \|w_i\|_q`.  Each unit is non-decreasing in
    :math:`u_i` and :math:`|\Delta u_i| \le r_i` in the ball, so this is the
    exact worst case of unit :math:`i` alone (MODEL.md §5, per-unit bound).

    Parameters
    ----------
    u : (n, m) float64 array
        Pre-activations :math:`u_{bi} = \langle w_i, x_b\rangle`.
    y : (n,) float64 array of {-1, +1}
    radius : (m,) float64 array
        :math:`r_i`.
    bias : (m,) float64 array
    q, rho : float
        Activation parameters (``rho = 0``: ReLU).
    out : (n, m) float64 array, written
    """
    n, m = u.shape
    for b in range(n):
        for i in range(m):
            at = u[b, i]
            moved = at - y[b] * radius[i]
            pos, _ = activation(at - bias[i], q, rho)
            neg, _ = activation(-at - bias[i], q, rho)
            pos_m, _ = activation(moved - bias[i], q, rho)
            neg_m, _ = activation(-moved - bias[i], q, rho)
            out[b, i] = max(y[b] * ((pos - neg) - (pos_m - neg_m)), 0.0)


@numba.njit(cache=True, parallel=True)
def joint_lipschitz_drop(drop, order, counts, gram_pos, radius2, give_up, out):
    r"""Certified margin loss, best over nested sets of jointly bounded units.

    For a unit set :math:`S` the margin can fall by at most

    .. math::

        D(S) = \sum_{i \notin S} \text{drop}_{bi}
               + \rho_2 \sqrt{\textstyle\sum_{i, j \in S} (G_{ij})_+},
        \qquad G = W W^\top,\quad \rho_2 = \sup_{\delta \in B} \|\delta\|_2:

    units outside :math:`S` by their own worst case, units inside because a
    non-decreasing 1-Lipschitz unit loses at most
    :math:`(-y\langle w_i, \delta\rangle)_+`, and
    :math:`\sup_\delta \sum_{i\in S} (-y\langle w_i, \delta\rangle)_+
    = \max_{T \subseteq S} \sup_\delta \langle -y \textstyle\sum_{i \in T} w_i, \delta\rangle
    \le \rho_2 \max_T \|\sum_{i\in T} w_i\|_2`, with
    :math:`\|\sum_{i\in T} w_i\|_2^2 = \sum_{i,j\in T} G_{ij} \le \sum_{i,j \in S} (G_{ij})_+`.
    ``out[b]`` is :math:`\min_t D(S_t)` over the prefixes
    :math:`S_t` = the first :math:`t = 0..\text{counts}_b` units of
    ``order[b]``; :math:`t = 0` is the per-unit bound.  The square-root term
    never decreases along the prefixes (:math:`(G_{ij})_+ \ge 0`), so the scan
    stops once it alone reaches the minimum so far (the same minimum) or
    ``give_up[b]`` (below): :math:`O(t^2)` work for the :math:`t` units scanned
    instead of :math:`O(\text{counts}_b^2)`.

    Parameters
    ----------
    drop : (n, m) float64 array
        Per-unit worst-case decreases (:func:`unit_drops`).
    order : (n, m) int array
        Per example, the units in the order they join :math:`S`.
    counts : (n,) int array
        Number of candidate units per example (a prefix of ``order``).
    gram_pos : (m, m) float64 array
        :math:`(G_{ij})_+ = \max(\langle w_i, w_j\rangle, 0)`.
    radius2 : float
        :math:`\rho_2`.
    give_up : (n,) float64 array
        A bound at or above ``give_up[b]`` is of no use for example ``b``:
        once the minimum so far and the square-root term (a floor for every
        longer prefix) both reach it, the scan stops and ``out[b]`` is the
        minimum so far -- a sound bound, at or above ``give_up[b]`` as the
        full minimum is (``inf``: never stop early for this reason).
    out : (n,) float64 array, written
    """
    n = drop.shape[0]
    for b in numba.prange(n):  # rows are independent: one thread writes each out[b]
        rest = 0.0
        for t in range(counts[b]):
            rest += drop[b, order[b, t]]
        best = rest
        quad = 0.0
        for t in range(counts[b]):
            i = order[b, t]
            rest -= drop[b, i]
            row = gram_pos[i, i]
            for s in range(t):
                row += 2.0 * gram_pos[i, order[b, s]]
            quad += row
            value = max(rest, 0.0) + radius2 * np.sqrt(quad)
            if value < best:
                best = value
            floor = radius2 * np.sqrt(quad)  # quad never decreases (G+ >= 0): a floor for longer prefixes
            if floor >= best or floor >= give_up[b] and best >= give_up[b]:
                break
        out[b] = best


@numba.njit(cache=True, inline="always")
def trust_region_max(g1, g2, h11, h12, h22, radius):
    r"""Upper bound on :math:`\max_{\|v\|_2 \le R} g^\top v + v^\top H v` for a 2x2 PSD :math:`H`.

    For every :math:`\mu > \lambda_{\max}(H)`, adding :math:`\mu(R^2 - \|v\|^2) \ge 0`
    and maximising the concave quadratic in :math:`v` gives (the S-procedure,
    exact at the best :math:`\mu`)

    .. math::

        g^\top v + v^\top H v \;\le\; \mu R^2 + \tfrac14\, g^\top(\mu I - H)^{-1} g
        = \mu R^2 + \sum_{k=1,2} \frac{\tilde g_k^2}{4(\mu - h_k)},

    with :math:`H = \sum_k h_k e_k e_k^\top` and :math:`\tilde g_k = \langle e_k, g\rangle`.
    The right side is convex in :math:`\mu`; it is minimised by bisection on its
    derivative, and every :math:`\mu` tried is sound, so the value returned is an
    upper bound whatever the number of iterations.

    Parameters
    ----------
    g1, g2 : float
        :math:`g`.
    h11, h12, h22 : float
        Entries of :math:`H \succeq 0`.
    radius : float
        :math:`R > 0`.
    """
    # eigen-decomposition of the symmetric 2x2 matrix
    mean = 0.5 * (h11 + h22)
    half = 0.5 * (h11 - h22)
    spread = np.sqrt(half * half + h12 * h12)
    h1, h2 = mean + spread, mean - spread
    if spread > 0.0:
        # eigenvector of h1: (h12, h1 - h11) or (h1 - h22, h12), whichever is better conditioned
        e1, e2 = h1 - h22, h12
        if abs(h12) + abs(h1 - h11) > abs(e1) + abs(e2):
            e1, e2 = h12, h1 - h11
        norm = np.sqrt(e1 * e1 + e2 * e2)
        e1, e2 = e1 / norm, e2 / norm
    else:
        e1, e2 = 1.0, 0.0
    c1 = (e1 * g1 + e2 * g2) ** 2
    c2 = (-e2 * g1 + e1 * g2) ** 2
    gnorm = np.sqrt(g1 * g1 + g2 * g2)
    if gnorm == 0.0:
        return max(h1, 0.0) * radius * radius
    low = h1 + 1e-12 * (abs(h1) + gnorm / radius)
    high = h1 + gnorm / (2.0 * radius) + 1e-12 * (abs(h1) + gnorm / radius)
    best = np.inf
    for _ in range(60):
        mu = 0.5 * (low + high)
        value = mu * radius * radius + c1 / (4.0 * (mu - h1)) + c2 / (4.0 * (mu - h2))
        if value < best:
            best = value
        slope = radius * radius - c1 / (4.0 * (mu - h1) ** 2) - c2 / (4.0 * (mu - h2) ** 2)
        if slope > 0.0:
            high = mu
        else:
            low = mu
    return best


@numba.njit(cache=True, parallel=True)
def split_drop(yu, bias, top, alpha, resid, strong, norms, gram, coef, weak_quad, weak_top, radius,
               kappa, eta, give_up, out):
    r"""Certified margin loss beyond the threshold: linear, atom-quadratic and weak-quadratic parts sharing one ball.

    Per example, with :math:`a_i = \langle w_i, \delta\rangle`,
    :math:`\|\delta\|_2 \le R`, the unit's
    decomposition :math:`w_i = \alpha_i e_{j(i)} + r_i` in an orthonormal basis
    (coordinates :math:`\hat\delta` of :math:`\delta`), every unit loses at most:

    * F (active, :math:`|u_i| > b_i`): :math:`(-y a_i)_+` (non-decreasing, 1-Lipschitz);
    * an inactive unit (:math:`|u_i| \le b_i`, :math:`s_i(u_i) = 0`) loses
      :math:`-y\,s_i(u_i + a_i) \le (-y a_i - g_i)_+` with the gap to the
      *harmful* threshold :math:`g_i = b_i + y u_i \ge b_i - |u_i|` (as
      :math:`s_i(v)` has the sign of :math:`v` and :math:`|s_i(v)| \le (|v| - b_i)_+`,
      switching on towards :math:`+y b_i` only raises the margin); the classes
      below bound :math:`(-y a_i - g_i)_+ \le (|a_i| - g_i)_+`:
    * Qa (strong, inactive, :math:`\tilde g_i = g_i - R\|r_i\| \ge \kappa b_i`):
      :math:`(|a_i| - g_i)_+ \le (|\alpha_i \hat\delta_{j(i)}| - \tilde g_i)_+
      \le \alpha_i^2 \hat\delta_{j(i)}^2 / (4\tilde g_i)`, in all
      :math:`\sum_j q_j \hat\delta_j^2`;
    * Qe (weak, inactive, :math:`g_i \ge (1 - \eta) b_i`): :math:`a_i^2/(4(1-\eta) b_i)`,
      in all at most :math:`\delta^\top E\,\delta`, :math:`E = \sum_{\rm weak} w_i w_i^\top/(4(1-\eta)b_i)`;
    * N (every other inactive unit): :math:`c_i (-y a_i)_+` with
      :math:`c_i = (1 - g_i/(R\|w_i\|))_+`, the chord of the convex
      :math:`(t - g_i)_+` over :math:`0 \le t \le R\|w_i\| = \max |a_i|`.

    Split :math:`\delta` into its part on :math:`J_1` (the principal atoms of the
    strong active units; norm :math:`s`) and the rest (norm :math:`t`,
    :math:`s^2 + t^2 \le R^2`).  The linear part is at most :math:`L s + L_\perp t`
    (every member of :math:`F \cup N` loses at most :math:`c_i (-y a_i)_+ = (\langle h_i, \delta\rangle)_+`,
    :math:`h_i = -y c_i w_i`, :math:`c_i = 1` on F, and
    :math:`\sup_\delta \sum_i (\langle h_i, \delta\rangle)_+ = \max_T \sup_\delta \langle \sum_{i \in T} h_i, \delta\rangle`
    over the subsets :math:`T`, with :math:`\|\sum_{i\in T} h_i\|^2 \le
    L^2 = \sum_{i, j \in F\cup N} c_i c_j (G_{ij})_+`, :math:`G = WW^\top`;
    :math:`L_\perp` the same with the :math:`J_1` coordinates removed from every row),
    the atom part at most
    :math:`q_{\rm in} s^2 + q_{\rm out} t^2` (:math:`q_{\rm in} = \max_{J_1} q_j`,
    :math:`q_{\rm out} = \max_j q_j`) and the weak part at most
    :math:`(a s + b t)^2` with :math:`a^2 = \lambda_{\max}(E_{J_1 J_1})`,
    :math:`b^2 = \lambda_{\max}(E)`.  So the loss is at most the maximum of
    :math:`g^\top v + v^\top H v` over :math:`\|v\| \le R`, :math:`g = (L, L_\perp)`,
    :math:`H = \mathrm{diag}(q_{\rm in}, q_{\rm out}) + (a, b)(a, b)^\top`,
    bounded by :func:`trust_region_max`.

    Parameters
    ----------
    yu : (n, m) float64 array
        :math:`y_b u_{bi}`.
    bias : (m,) float64 array
        :math:`b_i > 0`.
    top : (m,) int64 array
        Principal coordinate :math:`j(i)` of each unit.
    alpha, resid : (m,) float64 arrays
        :math:`|\alpha_i|` and an upper bound on :math:`\|r_i\|`.
    strong : (m,) bool array
        Units treated through their principal atom (the others are "weak").
    norms : (m,) float64 array
        :math:`\|w_i\|_2`.
    gram : (m, m) float64 array
        :math:`G = W W^\top`.
    coef : (m, d) float64 array
        Coordinates of the rows in the basis, :math:`\hat w_i`.
    weak_quad : (d, d) float64 array
        :math:`\hat E` (the matrix :math:`E` in the basis).
    weak_top : float
        An upper bound on :math:`\lambda_{\max}(E)`.
    radius : float
        :math:`R`.
    kappa, eta : float
        Class thresholds (any values give a sound bound).
    give_up : (n,) float64 array
        A loss bound at or above ``give_up[b]`` is of no use for example ``b``
        (it certifies nothing).  The bound is at least its objective at
        :math:`v = (R, 0)` and at :math:`v = (0, R)`, so at least
        :math:`\max\big(R L + q_{\rm in} R^2,\ (q_{\rm out} + b^2) R^2\big)`
        with :math:`L \ge (\sum_{F \cup N} c_i^2 G_{ii})^{1/2}` (:math:`L^2`
        holds these diagonal terms and non-negative others) and
        :math:`b^2` = ``weak_top``: :math:`O(|F \cup N| + d)` work.  Where that
        reaches ``give_up[b]``, the :math:`O(|F \cup N|^2)` part is skipped and
        ``out[b]`` is :math:`+\infty`, still an upper bound on the loss.
    out : (n,) float64 array, written
        Upper bound on the margin loss.
    """
    n, m = yu.shape
    d = coef.shape[1]
    for b in numba.prange(n):  # examples are independent: one thread writes each out[b]
        q = np.zeros(d)
        in_j1 = np.zeros(d, dtype=np.bool_)
        members = np.empty(m, dtype=np.int64)
        chord = np.empty(m)                       # c_i of each member (1 for active units)
        active = np.zeros(m, dtype=np.bool_)
        count = 0
        for i in range(m):
            reach = radius * norms[i]
            if abs(yu[b, i]) > bias[i]:
                active[i] = True
                members[count] = i
                chord[count] = 1.0
                count += 1
                if strong[i]:
                    in_j1[top[i]] = True
                continue
            gap = bias[i] + yu[b, i]              # to the harmful threshold -y b_i
            if reach <= gap:
                continue                          # cannot switch on harmfully anywhere in the ball
            if strong[i]:
                shifted = gap - radius * resid[i]
                if shifted >= kappa * bias[i] and shifted > 0.0:
                    q[top[i]] += alpha[i] * alpha[i] / (4.0 * shifted)
                    continue
            elif gap >= (1.0 - eta) * bias[i]:
                continue                          # in the weak quadratic part E
            members[count] = i
            chord[count] = 1.0 - gap / reach
            count += 1
        diagonal = 0.0
        for s in range(count):
            diagonal += chord[s] * chord[s] * gram[members[s], members[s]]
        j1 = np.flatnonzero(in_j1)
        q_in = 0.0
        for j in j1:
            q_in = max(q_in, q[j])
        q_out = q.max()
        # the bound is at least its value at v = (R, 0) and at v = (0, R) (see give_up)
        floor = max(radius * np.sqrt(diagonal) + q_in * radius * radius, (q_out + weak_top) * radius * radius)
        if floor >= give_up[b]:
            out[b] = np.inf                       # the bound would be at least this: no use for b
            continue
        on_j1 = np.empty((count, j1.size))       # the rows' J1 coordinates: their Gram is one BLAS product
        for s in range(count):
            for t in range(j1.size):
                on_j1[s, t] = coef[members[s], j1[t]]
        gram_j1 = on_j1 @ on_j1.T
        lin = 0.0
        perp = 0.0
        for s in range(count):
            i = members[s]
            for t in range(count):
                k = members[t]
                g = gram[i, k]
                gp = g - gram_j1[s, t]
                weight = chord[s] * chord[t]
                lin += weight * max(g, 0.0)
                perp += weight * max(gp, 0.0)
        a2 = 0.0
        if j1.size > 0:
            block = np.empty((j1.size, j1.size))
            for s in range(j1.size):
                for t in range(j1.size):
                    block[s, t] = weak_quad[j1[s], j1[t]]
            a2 = max(np.linalg.eigvalsh(block)[-1], 0.0) * (1.0 + 1e-9)
        a, bb = np.sqrt(a2), np.sqrt(weak_top)
        out[b] = trust_region_max(np.sqrt(max(lin, 0.0)), np.sqrt(max(perp, 0.0)),
                                  q_in + a2, a * bb, q_out + weak_top, radius) * (1.0 + 1e-9)


# --- branch and bound ---


@numba.njit(cache=True, inline="always")
def _line_candidate(k, lo, hi, bi, lam, q, rho):
    r"""Candidate ``k`` (0..3) for :math:`\arg\min_{t\in[l,h]} s(t) - \lambda t`, ``nan`` when it does not apply.

    :math:`s` is concave on :math:`t \le 0` and convex on :math:`t \ge 0`, so for
    **any real** :math:`\lambda` the minimum is at :math:`l`, :math:`h`,
    :math:`\min(h, 0)` (end of the concave part) or the stationary point of the
    convex part, :math:`\phi'(t - b) = \lambda`, i.e. :math:`t^* = b + \varrho
    \lambda^{1/(q-1)}` (:math:`b` for the ReLU or :math:`\lambda \le 0`), clipped to
    :math:`[\max(l, 0), h]` (the candidates of :func:`unit_line_offsets`).
    """
    if k == 0:
        return lo
    if k == 1:
        return hi
    if k == 2:
        t = min(hi, 0.0)
        return t if t >= lo else np.nan
    if hi < 0.0:
        return np.nan
    stationary = bi
    if rho > 0.0 and lam > 0.0:
        stationary = bi + rho * lam ** (1.0 / (q - 1.0))
    return min(max(stationary, max(lo, 0.0)), hi)


@numba.njit(cache=True)
def bab_dual(lam, free, low, high, v, bias, q, rho, rows, a0, tau, inf_norm, sigma, grad, delta):
    r"""Lagrangian dual of a branch-and-bound node, smoothed by ``sigma`` (exact for ``sigma = 0``).

    A node restricts each unit's input :math:`t_i = v_i + \langle y w_i, \delta\rangle`
    to an interval :math:`[l_i, h_i]`.  Dualising :math:`t_i = v_i + \langle y w_i,
    \delta\rangle` with multipliers :math:`\lambda_i \in \mathbb R` for the ``free``
    units (the others enter through their fixed slope, ``a0``),

    .. math::

        D(\lambda) = \sum_{i\ \rm free} c_i(\lambda_i) - \tau \Big\| a_0 + \sum_{i\ \rm free}
            \lambda_i\, y w_i \Big\|_q , \qquad
        c_i(\lambda) = \min_{t \in [l_i, h_i]} \big[s(t) - \lambda (t - v_i)\big],

    (plus the constant of the fixed units, added by the caller) is a lower bound
    on the node's minimum margin for every :math:`\lambda` (weak duality).  With
    :math:`\sigma > 0` each minimum over the candidates
    :math:`t_k` (:func:`_line_candidate`) is replaced by the soft minimum
    :math:`-\sigma \log \sum_k e^{-x_k/\sigma} \le \min_k x_k` and the norm by
    :math:`\sqrt{\|a\|_2^2 + \epsilon^2}` (:math:`\ell_2`) or
    :math:`\sum_j \sqrt{a_j^2 + \epsilon^2}` (:math:`\ell_\infty`), which are
    :math:`\ge \|a\|_q`, with :math:`\epsilon = \sigma/(\tau d_q)`: the value stays
    a lower bound on :math:`D`, now differentiable.  Gradient:
    :math:`\partial/\partial\lambda_i = -\sum_k p_{ik} (t_{ik} - v_i) - \tau \langle
    y w_i, g\rangle`, :math:`p` the soft-min weights, :math:`g` the gradient of the
    smoothed norm; :math:`\delta = -\tau g` is the matching (smoothed) primal point.

    Parameters
    ----------
    lam : (f,) float64 array
        Multipliers of the free units.
    free : (f,) int64 array
    low, high, v, bias : (m,) float64 arrays
    q, rho : float
    rows : (m, d) float64 array
        :math:`y w_i`.
    a0 : (d,) float64 array
        :math:`\sum_{i\ \rm fixed} \lambda_i y w_i`.
    tau : float
    inf_norm : bool
    sigma : float
        Smoothing (0: the exact :math:`D` with a supergradient).
    grad : (f,) float64 array, written
    delta : (d,) float64 array, written

    Returns
    -------
    float
        The (smoothed) :math:`D(\lambda)`.
    """
    f = lam.shape[0]
    d = a0.shape[0]
    value = 0.0
    xs = np.empty(4)
    ts = np.empty(4)
    for j in range(f):
        i = free[j]
        lo, hi, bi, lj = low[i], high[i], bias[i], lam[j]
        best = np.inf
        count = 0
        arg = lo
        for k in range(4):
            t = _line_candidate(k, lo, hi, bi, lj, q, rho)
            if np.isnan(t):
                continue
            pos, _ = activation(abs(t) - bi, q, rho)
            x = np.copysign(pos, t) - lj * (t - v[i])
            xs[count] = x
            ts[count] = t
            count += 1
            if x < best:
                best, arg = x, t
        if sigma > 0.0:
            total, moment = 0.0, 0.0
            for k in range(count):
                w = np.exp(-(xs[k] - best) / sigma)
                total += w
                moment += w * (ts[k] - v[i])
            value += best - sigma * np.log(total)
            grad[j] = -moment / total
        else:
            value += best
            grad[j] = -(arg - v[i])
    a = a0.copy()
    for j in range(f):
        i = free[j]
        for c in range(d):
            a[c] += lam[j] * rows[i, c]
    for c in range(d):
        delta[c] = 0.0
    if tau > 0.0:
        if inf_norm:
            eps = sigma / (tau * d)
            norm = 0.0
            for c in range(d):
                h = np.sqrt(a[c] * a[c] + eps * eps)
                norm += h
                delta[c] = -tau * (a[c] / h if h > 0.0 else 0.0)
        else:
            eps = sigma / tau
            sq = eps * eps
            for c in range(d):
                sq += a[c] * a[c]
            norm = np.sqrt(sq)
            for c in range(d):
                delta[c] = -tau * (a[c] / norm if norm > 0.0 else 0.0)
        value -= tau * norm
        for j in range(f):
            i = free[j]
            dot = 0.0
            for c in range(d):
                dot += rows[i, c] * delta[c]
            grad[j] += dot     # -tau <y w_i, g> = <y w_i, delta>
    return value
