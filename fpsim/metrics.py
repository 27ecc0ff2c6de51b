r"""The quantities of the theory, measured on weights (``docs/MODEL.md`` §6).

Plain functions on arrays; each docstring carries the formula it computes.
Notation: clean-trained weights :math:`W` (rows :math:`w_i`), adversarially
trained weights :math:`W'` (rows :math:`w'_i`, trained from :math:`W`),
initial weights :math:`W^0`, orthogonal dictionary :math:`M` (columns are the
atoms), teacher :math:`w^*`.

* :func:`cos_to_init` -- :math:`|\cos(w_i^0, w_i)|` (C1).
* :func:`purification` -- :math:`w_i = \beta_i w'_i + v_i` (C4).
* :func:`dictionary_view` -- principal atoms and dense mixture of
  :math:`a_i = M^\top w_i` (C5).
* :func:`update_spectrum` -- singular values of :math:`W' - W` (C7).
* :func:`update_split` -- :math:`W' - W` split into each neuron's own-atom
  growth and the rest, with the rest's spectrum (C7 diagnostic).
* :func:`row_cosines`, :func:`median_abs_cos` -- the neuron-wise cosine under all of these.
* :func:`fit_slope` -- the exponent of a power law (the scaling of critical radii).

Pure array functions: this module imports nothing of fpsim but the argument checks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import check_array, check_int

#: Largest entry of :math:`|M^\top M - I|` accepted as an orthogonal dictionary.
_ORTHOGONALITY_TOL = 1e-4


def row_cosines(W, W_ref):
    r"""Per-row cosine :math:`\cos(w_i, w^{\rm ref}_i)`, ``(m,)`` float64 (0 where a row is zero).

    The one implementation of the neuron-wise cosine: the correlation with
    initialisation (C1), purification (C4) and the training history
    (:func:`fpsim.train.run_sgd`) are built on it.
    """
    num = np.einsum("ij,ij->i", W, W_ref, dtype=np.float64)
    den = (np.linalg.norm(np.asarray(W, np.float64), axis=1)
           * np.linalg.norm(np.asarray(W_ref, np.float64), axis=1))
    return num / np.maximum(den, 1e-300)


def median_abs_cos(W, W_ref):
    r"""Median over neurons of :math:`|\cos(w_i, w^{\rm ref}_i)|`."""
    return float(np.median(np.abs(row_cosines(W, W_ref))))


def _weights(name, W, like=None):
    """Validated ``(m, d)`` weights as float64 (matching ``like``'s shape if given)."""
    shape = None if like is None else like.shape
    return check_array(name, W, 2, dtype=np.float64, shape=shape)


def cos_to_init(W, W_init):
    r"""Per-neuron correlation with initialisation (C1).

    .. math::

        c_i = |\cos(w_i^0, w_i)| = \frac{|\langle w_i^0, w_i\rangle|}{\|w_i^0\|_2 \|w_i\|_2}

    Parameters
    ----------
    W : (m, d) array_like
        Trained weights :math:`w_i`.
    W_init : (m, d) array_like
        Initial weights :math:`w_i^0`.

    Returns
    -------
    c : (m,) ndarray, float64
        Values in ``[0, 1]`` (0 for a zero row). For reference, a random
        direction gives about :math:`1/\sqrt d`, and a neuron grown along its
        largest initial atom keeps about :math:`\sqrt{2 \ln d / d}`.
    """
    W_init = _weights("W_init", W_init)
    return np.abs(row_cosines(_weights("W", W, W_init), W_init))


@dataclass(frozen=True)
class Purification:
    r"""Decomposition :math:`w_i = \beta_i w'_i + v_i` of each clean neuron (C4).

    Attributes
    ----------
    beta : (m,) ndarray
        Least-squares coefficient :math:`\beta_i = \langle w_i, w'_i\rangle / \|w'_i\|^2`.
    principal_norm : (m,) ndarray
        :math:`\|\beta_i w'_i\|_2 = \|w_i\|\, |\cos(w_i, w'_i)|`.
    residual_norm : (m,) ndarray
        :math:`\|v_i\|_2 = \|w_i\| \sqrt{1 - \cos^2(w_i, w'_i)}`.
    cos : (m,) ndarray
        :math:`\cos(w_i, w'_i)` (signed).
    purified : (m,) ndarray of bool
        :math:`\|\beta_i w'_i\| > \|v_i\|`, equivalently :math:`|\cos(w_i, w'_i)| > 1/\sqrt2`.
    """

    beta: np.ndarray
    principal_norm: np.ndarray
    residual_norm: np.ndarray
    cos: np.ndarray
    purified: np.ndarray

    @property
    def fraction_purified(self):
        r"""Fraction of neurons with :math:`\|\beta_i w'_i\| > \|v_i\|`."""
        return float(np.mean(self.purified))

    def summary(self):
        """Scalars for a report: ``fraction_purified``, ``median_cos``, ``median_beta``."""
        return {"fraction_purified": self.fraction_purified,
                "median_cos": float(np.median(self.cos)),
                "median_beta": float(np.median(self.beta))}


def purification(W_clean, W_adv):
    r"""Purification of clean neurons by adversarial training (C4).

    .. math::

        \beta_i = \frac{\langle w_i, w'_i\rangle}{\|w'_i\|_2^2}, \qquad
        v_i = w_i - \beta_i w'_i \perp w'_i, \qquad
        \|\beta_i w'_i\| > \|v_i\| \iff |\cos(w_i, w'_i)| > 1/\sqrt2 .

    Parameters
    ----------
    W_clean : (m, d) array_like
        Clean-trained weights :math:`w_i`.
    W_adv : (m, d) array_like
        Adversarially trained weights :math:`w'_i`; no row may be zero.

    Returns
    -------
    Purification
    """
    W_adv = _weights("W_adv", W_adv)
    W = _weights("W_clean", W_clean, W_adv)
    adv_sq = np.einsum("ij,ij->i", W_adv, W_adv)
    if not (adv_sq > 0).all():
        raise ValueError(f"W_adv has {int(np.sum(adv_sq <= 0))} zero rows; beta_i is undefined for them")
    beta = np.einsum("ij,ij->i", W, W_adv) / adv_sq
    principal_norm = np.abs(beta) * np.sqrt(adv_sq)
    residual_norm = np.linalg.norm(W - beta[:, None] * W_adv, axis=1)
    return Purification(beta=beta, principal_norm=principal_norm, residual_norm=residual_norm,
                        cos=row_cosines(W, W_adv), purified=principal_norm > residual_norm)


@dataclass(frozen=True)
class DictionaryView:
    r"""Neurons in the dictionary basis, split into principal atoms and dense mixture (C5).

    For neuron :math:`i` with coefficients :math:`a_i = M^\top w_i`, the
    principal atoms :math:`P_i` are the ``n_principal`` indices of largest
    :math:`|a_{ij}|`; the dense mixture is :math:`a_i` with the entries in
    :math:`P_i` set to zero, written :math:`a_i^{\rm dense}`.

    Attributes
    ----------
    principal : (m, r) ndarray of int
        :math:`P_i`, by decreasing :math:`|a_{ij}|`.
    top_atom_share : (m,) ndarray
        :math:`\max_j |a_{ij}| / \|a_i\|_2` (1 for a one-atom neuron).
    dense_share : (m,) ndarray
        :math:`\|a_i^{\rm dense}\|_2 / \|a_i\|_2`.
    dense_alignment : (m,) ndarray
        :math:`\cos(a_i^{\rm dense}, w^*_{-P_i})`, with :math:`w^*_{-P_i}` the
        teacher with the entries in :math:`P_i` set to zero; 0 when the dense
        part is zero. Signed, not flipped per neuron: the clean gradient
        :math:`-\partial\ell/\partial w_i = y\,\sigma(-yf)\,s'(u_i)\,x` with
        :math:`s' \ge 0` puts :math:`\mathbb E[y z_j \mid \text{active}] \propto
        w^*_j` on every non-principal atom, whatever the neuron's sign, so the
        theory predicts a dense mixture along :math:`+M w^*` for every neuron
        (that is why a step along :math:`-y M w^*` moves all units together).
    principal_agrees : (m,) ndarray of bool
        :math:`a_{i j_1} w^*_{j_1} > 0` for the largest atom :math:`j_1`: the
        neuron's feature votes for the label like the teacher does.
    n_atoms : int
        :math:`d`, the number of atoms.
    """

    principal: np.ndarray
    top_atom_share: np.ndarray
    dense_share: np.ndarray
    dense_alignment: np.ndarray
    principal_agrees: np.ndarray
    n_atoms: int

    def atom_coverage(self, min_share=2 ** -0.5):
        r"""How many one-atom neurons sit on each atom.

        .. math::

            c_j = \#\{i : j_1(i) = j,\ \max_l |a_{il}|/\|a_i\| \ge s\}

        with :math:`s` = ``min_share`` (default :math:`1/\sqrt2`: the atom holds
        more than half of the neuron's squared norm).  The ideal purified net
        has a neuron on every atom; an atom with :math:`c_j = 0` is a
        coordinate of the code that the one-atom part of the net ignores: an
        example's margin then comes from its other atoms only.  Whether
        neurons spread evenly over the atoms or pile up on the atoms their
        initialisation favoured shows in the spread of :math:`c_j`.

        Returns
        -------
        counts : (d,) ndarray of int
        """
        one_atom = self.top_atom_share >= min_share
        return np.bincount(self.principal[one_atom, 0], minlength=self.n_atoms)

    def summary(self):
        """Medians over neurons, the fraction with ``principal_agrees`` and of atoms without a one-atom neuron."""
        return {"median_top_atom_share": float(np.median(self.top_atom_share)),
                "median_dense_share": float(np.median(self.dense_share)),
                "median_dense_alignment": float(np.median(self.dense_alignment)),
                "fraction_principal_agrees": float(np.mean(self.principal_agrees)),
                "fraction_atoms_uncovered": float(np.mean(self.atom_coverage() == 0))}


def dictionary_view(W, dictionary, w_star, n_principal=1):
    r"""Principal atoms and dense mixture of every neuron (C5).

    .. math::

        a_i = M^\top w_i, \qquad
        P_i = \text{the } r \text{ indices of largest } |a_{ij}|, \qquad
        a_i^{\rm dense} = a_i \odot 1_{j \notin P_i},

    reporting :math:`\|a_i^{\rm dense}\|/\|a_i\|`, :math:`\max_j|a_{ij}|/\|a_i\|`
    and :math:`\cos(a_i^{\rm dense}, w^* \odot 1_{j \notin P_i})`. Compare the
    summaries of the clean and the adversarially trained weights: the theory
    says adversarial training shrinks the dense share.

    Parameters
    ----------
    W : (m, d) array_like
        Weights :math:`w_i` (rows).
    dictionary : (d, d) array_like
        Orthogonal :math:`M` (columns are atoms), e.g. ``SparseCodingModel.dictionary``.
    w_star : (d,) array_like
        Teacher :math:`w^*`.
    n_principal : int, default 1
        :math:`r = |P_i|`, ``1 <= r < d``. A fixed count: the default 1 matches
        the one-atom features of MODEL.md §3; pass 2 or 3 if neurons are
        expected to sit on a few atoms.

    Returns
    -------
    DictionaryView
    """
    W = _weights("W", W)
    m, d = W.shape
    M = check_array("dictionary", dictionary, 2, dtype=np.float64, shape=(d, d))
    w_star = check_array("w_star", w_star, 1, dtype=np.float64, shape=(d,))
    r = check_int("n_principal", n_principal, 1, d - 1)
    if np.abs(M.T @ M - np.eye(d)).max() > _ORTHOGONALITY_TOL:
        raise ValueError("dictionary must be orthogonal (M^T M = I)")
    A = W @ M
    magnitude = np.abs(A)
    principal = np.argsort(-magnitude, axis=1, kind="stable")[:, :r]
    norm = np.maximum(np.linalg.norm(A, axis=1), 1e-300)
    dense = A.copy()
    np.put_along_axis(dense, principal, 0.0, axis=1)
    teacher = np.broadcast_to(w_star, (m, d)).copy()
    np.put_along_axis(teacher, principal, 0.0, axis=1)
    top = principal[:, 0]
    rows = np.arange(m)
    return DictionaryView(principal=principal,
                          top_atom_share=magnitude[rows, top] / norm,
                          dense_share=np.linalg.norm(dense, axis=1) / norm,
                          dense_alignment=row_cosines(dense, teacher),
                          principal_agrees=A[rows, top] * w_star[top] > 0, n_atoms=d)


@dataclass(frozen=True)
class Spectrum:
    r"""Singular values of the update :math:`\Delta = W' - W` (C7).

    Attributes
    ----------
    singular_values : (min(m, d),) ndarray
        :math:`\sigma_1 \ge \sigma_2 \ge \dots` of :math:`\Delta`.
    energy : (min(m, d),) ndarray
        Cumulative share :math:`E_r = \sum_{i \le r} \sigma_i^2 / \sum_i \sigma_i^2`
        (``energy[r - 1]`` is :math:`E_r`).
    top : int
        The ``r`` asked for.
    top_energy : float
        :math:`E_{\rm top}`.
    """

    singular_values: np.ndarray
    energy: np.ndarray
    top: int
    top_energy: float


def update_spectrum(W_clean, W_adv, top=None):
    r"""Spectrum of the purification update :math:`W' - W` (C7).

    .. math::

        W' - W = \sum_i \sigma_i u_i v_i^\top, \qquad
        E_r = \frac{\sum_{i \le r} \sigma_i^2}{\sum_i \sigma_i^2}
            = \frac{\sum_{i \le r} \sigma_i^2}{\|W' - W\|_F^2}

    A rank-:math:`r` update has :math:`E_r = 1`; a random (isotropic) update
    of an ``(m, d)`` matrix has :math:`E_r \approx r / \min(m, d)`.

    Parameters
    ----------
    W_clean, W_adv : (m, d) array_like
        :math:`W` and :math:`W'`; they must differ.
    top : int, optional
        :math:`r`, ``1 <= r <= min(m, d)``; default ``min(5, m, d)``.

    Returns
    -------
    Spectrum
    """
    W_adv = _weights("W_adv", W_adv)
    W = _weights("W_clean", W_clean, W_adv)
    return _spectrum(W_adv - W, top, "W_adv equals W_clean: the update W' - W is zero and has no spectrum")


def _spectrum(delta, top, zero_message):
    rank = min(delta.shape)
    top = min(5, rank) if top is None else check_int("top", top, 1, rank)
    sigma = np.linalg.svd(delta, compute_uv=False)
    power = np.cumsum(sigma ** 2)
    if power[-1] <= 0:
        raise ValueError(zero_message)
    energy = power / power[-1]
    return Spectrum(singular_values=sigma, energy=energy, top=top, top_energy=float(energy[top - 1]))


@dataclass(frozen=True)
class UpdateSplit:
    r"""The update :math:`W' - W` split into own-atom growth and the rest (C7 diagnostic).

    Attributes
    ----------
    own_atom_share : float
        :math:`\|\Delta^{\rm own}\|_F^2 / \|W' - W\|_F^2`.
    own_atom_growth : (m,) ndarray
        :math:`\Delta^{\rm own}_{i j_i} / a_{i j_i}`: each neuron's relative
        growth along its own atom (1 means the coefficient doubled).
    rest : Spectrum or None
        Spectrum of :math:`\Delta^{\rm rest}` (``None`` when it is zero).
    """

    own_atom_share: float
    own_atom_growth: np.ndarray
    rest: Spectrum | None

    def summary(self):
        """Scalars for a report."""
        return {"own_atom_share": self.own_atom_share,
                "median_own_atom_growth": float(np.median(self.own_atom_growth)),
                "rest_top": None if self.rest is None else self.rest.top,
                "rest_top_energy": None if self.rest is None else self.rest.top_energy}


def update_split(W_clean, W_adv, dictionary, top=None):
    r"""Split :math:`W' - W` into each neuron's own-atom growth and the rest (C7 diagnostic).

    In the dictionary basis, :math:`D = (W' - W) M` (rows :math:`\Delta a_i`);
    neuron :math:`i`'s own atom is its clean principal atom
    :math:`j_i = \arg\max_j |(W M)_{ij}|`.

    .. math::

        \Delta^{\rm own}_{ij} = D_{ij}\, 1_{j = j_i}, \qquad
        \Delta^{\rm rest} = D - \Delta^{\rm own}, \qquad
        \text{own share} = \frac{\|\Delta^{\rm own}\|_F^2}{\|W' - W\|_F^2}

    (:math:`M` is orthogonal, so :math:`\|D\|_F = \|W' - W\|_F` and
    :math:`\Delta^{\rm rest} M^\top` has the singular values of
    :math:`\Delta^{\rm rest}`).  The theory's reading: growth along each
    neuron's own atom is a diagonal-like, full-rank change; the removal of
    the dense mixture (along :math:`M w^*` for every neuron) is the part
    that can be low rank, so the rest's top energy is the number to read.

    Parameters
    ----------
    W_clean, W_adv : (m, d) array_like
        :math:`W` and :math:`W'`; they must differ.
    dictionary : (d, d) array_like
        Orthogonal :math:`M`.
    top : int, optional
        Top count for the rest's energy share, as in :func:`update_spectrum`.

    Returns
    -------
    UpdateSplit
    """
    W_adv = _weights("W_adv", W_adv)
    W = _weights("W_clean", W_clean, W_adv)
    d = W.shape[1]
    M = check_array("dictionary", dictionary, 2, dtype=np.float64, shape=(d, d))
    if np.abs(M.T @ M - np.eye(d)).max() > _ORTHOGONALITY_TOL:
        raise ValueError("dictionary must be orthogonal (M^T M = I)")
    if top is not None:
        top = check_int("top", top, 1, min(W.shape))
    A = W @ M
    D = (W_adv - W) @ M
    total = float(np.vdot(D, D))
    if total <= 0:
        raise ValueError("W_adv equals W_clean: the update W' - W is zero and cannot be split")
    rows = np.arange(W.shape[0])
    own_atom = np.argmax(np.abs(A), axis=1)
    own = D[rows, own_atom]
    rest = D.copy()
    rest[rows, own_atom] = 0.0
    anchor = A[rows, own_atom]
    growth = np.divide(own, anchor, out=np.zeros_like(own), where=anchor != 0)
    rest_spectrum = _spectrum(rest, top, "") if np.any(rest) else None
    return UpdateSplit(own_atom_share=float(own @ own) / total, own_atom_growth=growth, rest=rest_spectrum)


def fit_slope(sizes, radii):
    r"""Least-squares slope of :math:`\log r` against :math:`\log n` (the exponent of :math:`r \propto n^s`).

    Parameters
    ----------
    sizes : (t,) array_like
        Positive sizes, at least two distinct.
    radii : (t,) array_like
        Radii; a NaN or non-positive one makes the slope NaN.

    Returns
    -------
    float
    """
    sizes = check_array("sizes", sizes, 1, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    if radii.shape != sizes.shape:
        raise ValueError(f"radii must have the shape of sizes {sizes.shape}, got {radii.shape}")
    if (sizes <= 0).any() or np.unique(sizes).size < 2:
        raise ValueError(f"sizes must be positive with at least two distinct values, got {sizes}")
    if not (np.isfinite(radii) & (radii > 0)).all():
        return float("nan")
    return float(np.polyfit(np.log(sizes), np.log(radii), 1)[0])
