"""What every certificate shares: argument checks, unit weight scale, and dense linear algebra rounded up."""
from __future__ import annotations

import numpy as np
import scipy.linalg

from .._validation import check_array, check_float, check_labels, check_norm
from ..network import TwoLayerNet


def unit_weights(W):
    r"""``(c, W / c)`` with :math:`c = \max_{ij} |w_{ij}|` (1 for a zero matrix), in float64.

    The margin is positively homogeneous of degree one in the weights, biases
    and pre-activations (and the smoothing width), and so is every bound here
    once a unit's loss is written as :math:`(|a| - g)_+`: they are computed at
    unit weight scale and multiplied back by :math:`c`.  This keeps squares of
    tiny weights from underflowing (a zero norm or Gram entry would certify
    broken examples) and keeps a solver's absolute tolerances small against
    the margin.
    """
    W = np.asarray(W, dtype=np.float64)
    scale = float(np.abs(W).max()) or 1.0
    return scale, W / scale


def top_eigenpair(sym):
    r"""Largest eigenvalue of a symmetric PSD matrix, rounded up, and its eigenvector.

    LAPACK's ``syevr`` for the top eigenpair only (backward stable: the value is
    exact up to a few ulps of :math:`\|A\|`, which the factor
    :math:`1 + 10^{-9}` covers), far cheaper than a full SVD.

    Returns
    -------
    value : float
        :math:`\ge \lambda_{\max}`.
    vector : (k,) float64 ndarray
    """
    if sym.shape[0] == 0:
        return 0.0, np.zeros(0)
    values, vectors = scipy.linalg.eigh(sym, subset_by_index=[sym.shape[0] - 1] * 2)
    return max(float(values[0]), 0.0) * (1.0 + 1e-9) + 1e-300, vectors[:, 0]


def check_certify(net, x, y, norm, tau):
    """Validate the common arguments; returns ``(net, x, y, norm, tau)``."""
    if not isinstance(net, TwoLayerNet):
        raise TypeError(f"net must be a TwoLayerNet (certificates need its units), got {type(net).__name__}")
    x = check_array("x", x, 2, dtype=net.dtype, shape=(None, net.d))
    y = check_labels("y", y, x.shape[0])
    return net, x, y, check_norm(norm), check_float("tau", tau, 0)
