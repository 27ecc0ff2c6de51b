r"""The sparse-coding data model (``docs/MODEL.md`` §2).

A sample is drawn as

.. math::

    z_j \ne 0 \text{ w.p. } k/d \text{ (or on exactly } k \text{ coordinates)}, \quad z_j = \pm \min(U/\sqrt{k}, 1),\ U \sim \mathcal U[a, b];
    \qquad y = \operatorname{sign}\langle w^*, z\rangle;
    \qquad x = M z + \xi,\ \xi \sim \mathcal N(0, \sigma_\xi^2 I / d),

with :math:`M` an orthogonal dictionary and :math:`w^*` the teacher.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from . import kernels
from ._validation import (check_choice, check_dtype, check_float, check_int, check_pair,
                          check_random_state, stream)

DICTIONARIES = ("identity", "random", "hadamard")
#: Laws of the code's support: independent coordinates, or exactly ``k`` of them.
SUPPORTS = ("bernoulli", "exact")

#: Codes drawn per code asked for (at least 64 asked for) before a label margin is declared
#: unreachable.  A budget of draws, not of rounds.
MAX_DRAWS_PER_CODE = 1000
#: Most non-zeros drawn in one round of the margin's rejection sampler (memory of a round).
MAX_ENTRIES_PER_ROUND = 1 << 21


def make_dictionary(d, kind, rng):
    """Orthogonal ``(d, d)`` dictionary ``M`` (float64); columns are the atoms.

    Parameters
    ----------
    d : int
        Dimension.
    kind : {"identity", "random", "hadamard"}
        ``random`` is Haar-distributed (QR of a Gaussian matrix with the signs
        of ``R``'s diagonal fixed); ``hadamard`` needs ``d`` a power of two.
    rng : numpy.random.Generator
    """
    check_choice("dictionary", kind, DICTIONARIES)
    if kind == "identity":
        return np.eye(d)
    if kind == "hadamard":
        if d & (d - 1):
            raise ValueError(f"dictionary='hadamard' needs d a power of two, got d={d}")
        return scipy.linalg.hadamard(d).astype(np.float64) / np.sqrt(d)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def mean_square_norm(k, magnitude, noise=0.0):
    r"""Expected squared input norm :math:`E\|x\|^2`, before a label margin's redraws.

    .. math::

        E\|x\|^2 = k\, E\big[\min(U/\sqrt k, 1)^2\big] + \sigma_\xi^2,
        \qquad U \sim \mathcal U[a, b]

    (``k`` non-zero coordinates on average under either support law, and the
    noise :math:`\xi \sim \mathcal N(0, \sigma_\xi^2/d\, I)` adds
    :math:`\sigma_\xi^2`).  A margin :math:`\gamma` keeps only codes with
    :math:`|\langle w^*, z\rangle| \ge \gamma` and so shifts this somewhat upward.

    Parameters
    ----------
    k : float
        Expected number of non-zero code coordinates, ``k >= 1``.
    magnitude : (float, float)
        Range ``[a, b]`` of ``U``, ``0 < a <= b``.
    noise : float, default 0.0
        :math:`\sigma_\xi \ge 0`.

    Returns
    -------
    float
    """
    k = check_float("k", k, 1)
    low, high = check_pair("magnitude", magnitude, 0.0)
    noise = check_float("noise", noise, 0)
    root = np.sqrt(k)
    if high == low:
        square = min(low / root, 1.0) ** 2
    else:  # the integral of min(u/sqrt(k), 1)^2 over [a, b], split where u/sqrt(k) reaches 1
        knee = min(max(root, low), high)
        square = ((knee ** 3 - low ** 3) / (3 * k) + (high - knee)) / (high - low)
    return float(k * square + noise ** 2)


class SparseCodingModel:
    r"""Sparse-coding binary classification model, a distribution to sample from.

    Parameters
    ----------
    d : int
        Input dimension, ``d >= 2``.
    k : float
        Expected number of non-zero code coordinates, ``1 <= k < d``.
    dictionary : {"random", "identity", "hadamard"}, default "random"
        The orthogonal dictionary :math:`M`.
    noise : float, default 0.0
        :math:`\sigma_\xi \ge 0`; the noise is :math:`\mathcal N(0, \sigma_\xi^2/d\, I)`.
    magnitude : (float, float), default (1.0, 2.0)
        Range ``[a, b]`` of ``U``; non-zero magnitudes are ``min(U/sqrt(k), 1)``.
    teacher : (float, float), default (0.5, 1.0)
        Range of :math:`|w^*_j|`; the signs are uniform.
    margin : float, default 0.0
        Label margin :math:`\gamma \ge 0`: codes with
        :math:`|\langle w^*, z\rangle| < \gamma` are redrawn.
    support : {"bernoulli", "exact"}, default "bernoulli"
        ``bernoulli``: each coordinate is non-zero independently with
        probability :math:`k/d`; ``exact``: exactly ``k`` coordinates, uniformly
        chosen (``k`` must be an integer), which removes the spread of the
        support size from the robust-accuracy curves.
    seed : int, default 0
        Seeds the dictionary and the teacher (not the samples).
    dtype : {float32, float64}, default float32
        Dtype of the samples.

    Attributes
    ----------
    dictionary : (d, d) ndarray, float64
        :math:`M`, orthogonal: ``dictionary.T @ dictionary == I``.
    w_star : (d,) ndarray, float64
        The teacher :math:`w^*`.
    dense_direction : (d,) ndarray, float64
        :math:`M w^* / \|M w^*\|`, the direction of the dense-direction attack.
    """

    def __init__(self, d, k, dictionary="random", noise=0.0, magnitude=(1.0, 2.0),
                 teacher=(0.5, 1.0), margin=0.0, support="bernoulli", seed=0, dtype=np.float32):
        self.d = check_int("d", d, 2)
        self.k = check_float("k", k, 1, self.d, closed=(True, False))
        self.noise = check_float("noise", noise, 0)
        self.magnitude = check_pair("magnitude", magnitude, 0.0)
        self.teacher = check_pair("teacher", teacher, 0.0)
        self.margin = check_float("margin", margin, 0)
        self.support = check_choice("support", support, SUPPORTS)
        if self.support == "exact" and self.k != int(self.k):
            raise ValueError(f"support='exact' needs an integer k, got k={self.k:g}")
        self.seed = check_int("seed", seed, 0)
        self.dtype = check_dtype("dtype", dtype)
        self.dictionary_kind = check_choice("dictionary", dictionary, DICTIONARIES)
        rng = stream(self.seed, "model")
        self.dictionary = make_dictionary(self.d, dictionary, rng)
        signs = rng.choice((-1.0, 1.0), size=self.d)
        self.w_star = signs * rng.uniform(*self.teacher, size=self.d)
        dense = self.dictionary @ self.w_star
        self.dense_direction = dense / np.linalg.norm(dense)
        self._atoms = np.ascontiguousarray(self.dictionary.T, dtype=self.dtype)

    def __repr__(self):
        return (f"SparseCodingModel(d={self.d}, k={self.k:g}, dictionary={self.dictionary_kind!r}, "
                f"noise={self.noise:g}, magnitude={self.magnitude}, margin={self.margin:g}, "
                f"support={self.support!r}, seed={self.seed})")

    def sample_codes(self, n, rng=None):
        r"""Draw ``n`` codes and their labels.

        Parameters
        ----------
        n : int
            Number of samples, ``n >= 1``.
        rng : numpy.random.Generator or int, optional
            Source of randomness (default: a fresh ``default_rng(0)``).

        Returns
        -------
        z : (n, d) ndarray
            Sparse codes (dense storage, about ``k`` non-zeros per row).
        y : (n,) ndarray of int8
            Labels :math:`\operatorname{sign}\langle w^*, z\rangle`, ties to +1.
        """
        n = check_int("n", n, 1)
        rng = check_random_state(0 if rng is None else rng)
        zs, ys, have, drawn, budget = [], [], 0, 0, MAX_DRAWS_PER_CODE * max(n, 64)
        size = n
        while drawn < budget:
            codes = self._draw_codes(size, rng)
            drawn += size
            score = self._scores(codes)
            kept = np.flatnonzero(np.abs(score) >= self.margin)[:n - have]  # in draw order
            zs.append(self._dense(codes, kept))  # only the kept codes are made dense
            ys.append(np.where(score[kept] >= 0, 1, -1).astype(np.int8))
            have += kept.size
            if have == n:
                return np.concatenate(zs), np.concatenate(ys)
            # next round: what the acceptance so far says the rest needs, plus a fifth (one round
            # at a steady rate, instead of a round per few codes), within the budget and memory
            size = min(budget - drawn, max(1, MAX_ENTRIES_PER_ROUND // max(1, int(np.ceil(self.k)))),
                       int(np.ceil(1.2 * (n - have) * drawn / max(have, 1))))
        raise ValueError(f"margin={self.margin} is too large for this model: fewer than "
                         f"{n} of the {drawn} codes drawn reached it")

    def scores_before_margin(self, n, rng=None):
        r"""Teacher scores :math:`\langle w^*, z\rangle` of ``n`` codes drawn without the label margin.

        What the margin's rejection sampler (:meth:`sample_codes`) sees: the
        share with :math:`|\langle w^*, z\rangle| \ge \gamma` is its acceptance rate.

        Parameters
        ----------
        n : int
            Number of codes, ``n >= 1``.
        rng : numpy.random.Generator or int, optional
            Source of randomness (default: a fresh ``default_rng(0)``).

        Returns
        -------
        scores : (n,) float64 ndarray
        """
        n = check_int("n", n, 1)
        rng = check_random_state(0 if rng is None else rng)
        return self._scores(self._draw_codes(n, rng))

    def _draw_codes(self, n, rng):
        """``n`` codes before the margin, sparse: ``(counts, positions, values)`` (:func:`kernels.code_positions`)."""
        if self.support == "exact":
            counts = np.full(n, int(self.k), dtype=np.int64)
        else:
            counts = rng.binomial(self.d, self.k / self.d, size=n)
        total = int(counts.sum())
        uniforms = rng.random(total)
        bits = rng.integers(0, 2, size=total, dtype=np.int8)
        values = np.empty(total, dtype=self.dtype)
        kernels.code_values(bits, rng.uniform(*self.magnitude, size=total), np.sqrt(self.k), values)
        positions = np.empty(total, dtype=np.int64)
        kernels.code_positions(counts, uniforms, self.d, positions)
        return counts, positions, values

    def _scores(self, codes):
        r"""Teacher scores :math:`\langle w^*, z_b\rangle` (float64) of sparse codes."""
        scores = np.empty(len(codes[0]))
        kernels.code_scores(*codes, self.w_star, scores)
        return scores

    def _dense(self, codes, rows):
        """Rows ``rows`` (ascending) of sparse codes as a dense ``(len(rows), d)`` array."""
        z = np.zeros((len(rows), self.d), dtype=self.dtype)
        kernels.place_codes(*codes, rows, z)
        return z

    def encode(self, z, rng=None):
        r"""Inputs :math:`x = M z + \xi` for given codes ``z`` of shape ``(n, d)``.

        ``rng`` is needed only when ``noise > 0``.
        """
        x = np.empty_like(z)
        kernels.sparse_rows_times(z, self._atoms, x)
        if self.noise > 0:
            rng = check_random_state(0 if rng is None else rng)
            x += (self.noise / np.sqrt(self.d)) * rng.standard_normal(x.shape, dtype=self.dtype)
        return x

    def sample(self, n, rng=None):
        """Draw ``n`` labelled samples.

        Parameters
        ----------
        n : int
            Number of samples, ``n >= 1``.
        rng : numpy.random.Generator or int, optional
            Source of randomness.

        Returns
        -------
        x : (n, d) ndarray
            Inputs :math:`M z + \\xi`.
        y : (n,) ndarray of int8
            Labels in {-1, +1}.
        z : (n, d) ndarray
            The hidden sparse codes.
        """
        rng = check_random_state(0 if rng is None else rng)
        z, y = self.sample_codes(n, rng)
        return self.encode(z, rng), y, z



class TrainingData:
    """Where training batches come from: a fresh stream or a fixed set of ``N``.

    Parameters
    ----------
    model : SparseCodingModel
    n_train : int or None
        ``None`` for the population regime (a fresh batch every step);
        otherwise a training set of ``n_train`` samples is drawn once and
        batches are drawn from it uniformly with replacement.
    rng : numpy.random.Generator
        Drives both the fixed set and the batches.
    """

    def __init__(self, model, n_train, rng):
        self.model = model
        self.rng = check_random_state(rng)
        self.n_train = None if n_train is None else check_int("n_train", n_train, 1)
        self.fixed = None if n_train is None else model.sample(self.n_train, self.rng)

    def batch(self, size, inputs=True):
        """Return one batch ``(x, y, z)`` of ``size`` samples.

        With ``inputs=False`` and noise-free data, ``x`` is not formed (``None``):
        a learner that works on the codes ``z`` saves the product :math:`Mz`.
        The random draws are the same either way.
        """
        if self.fixed is None:
            if inputs or self.model.noise > 0:
                return self.model.sample(size, self.rng)
            z, y = self.model.sample_codes(size, self.rng)
            return None, y, z
        rows = self.rng.integers(0, self.n_train, size=size)
        return tuple(a[rows] for a in self.fixed)
