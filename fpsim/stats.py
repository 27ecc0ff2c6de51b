r"""Confidence intervals for accuracies measured on finite samples.

Every accuracy in fpsim's report is a fraction :math:`\hat p = s/n` of ``n``
held-out examples; :func:`wilson` gives its 95 % score interval and
:func:`accuracy_entry` the report entry ``{value, n, ci95}``.
"""
from __future__ import annotations

import math

from ._validation import check_float, check_int

#: Normal quantile of a two-sided 95 % interval.
Z95 = 1.959963984540054


def wilson(successes, n, z=Z95):
    r"""Wilson score interval for a binomial proportion.

    .. math::

        \frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}
             {1 + z^2/n}, \qquad \hat p = s/n

    It stays inside ``[0, 1]`` and is not degenerate at :math:`\hat p \in \{0, 1\}`
    (unlike the Wald interval): with ``s = n`` the lower end is
    :math:`n/(n + z^2)`.

    Parameters
    ----------
    successes : int or float
        :math:`s`, ``0 <= s <= n`` (a float ``p * n`` is rounded to the nearest count).
    n : int
        Sample size, ``n >= 1``.
    z : float
        Normal quantile (default: 95 % two-sided).

    Returns
    -------
    (low, high) : tuple of float
    """
    n = check_int("n", n, 1)
    s = check_float("successes", successes, 0, n)
    z = check_float("z", z, 0, closed=(False, True))
    p = round(s) / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    den = 1 + z * z / n
    low = 0.0 if p == 0 else max(0.0, (centre - half) / den)  # exact ends: no rounding past p
    high = 1.0 if p == 1 else min(1.0, (centre + half) / den)
    return low, high


def accuracy_entry(fraction, n):
    """``{"value", "n", "ci95"}`` for a fraction measured on ``n`` examples (``None`` stays ``None``)."""
    if fraction is None:
        return None
    low, high = wilson(fraction * n, n)
    return {"value": float(fraction), "n": int(n), "ci95": [low, high]}


def format_entry(entry):
    """``0.996 [0.985, 0.999] n=500`` for an :func:`accuracy_entry`."""
    if entry is None:
        return "n/a"
    low, high = entry["ci95"]
    return f"{entry['value']:.4g} [{low:.3f}, {high:.3f}] n={entry['n']}"
