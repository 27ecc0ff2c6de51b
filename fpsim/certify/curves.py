r"""Robust accuracy as a certified interval, over one radius or a curve of radii.

The upper end comes from attacks (:func:`fpsim.attacks.attack_margins`), the
lower end from certificates: the bounds of :mod:`fpsim.certify.bounds` for a
:class:`~fpsim.network.TwoLayerNet`, the classifier's own
``certified_margin`` otherwise.

Any classifier works here that offers the attack interface (``d``,
``forward(x) -> (n,)``, ``input_grad(x, y) -> (n, d)``) and the certificate
interface (``certified_margin(x, y, norm, tau) -> (n,)``, a sound lower bound
on the worst-case margin, and ``certificate``, its name or ``None``): the
network and the baselines of :mod:`fpsim.baselines` (linear, polynomial, NTK).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from .._validation import check_array, check_float, check_int, check_labels, check_norm, check_random_state, stream
from ..attacks import attack_margins, first_breaker
from ..network import TwoLayerNet
from ._common import check_certify
from .bounds import METHODS, _certify
from .complete import search_rows

#: Name of the complete mode in ``method`` (certified) and ``broken_by`` (refuted).
COMPLETE = "branch_and_bound"


@dataclasses.dataclass(frozen=True)
class RobustAccuracy:
    r"""Robust accuracy at :math:`(p, \tau)` as an interval ``[lower, upper]``.

    Attributes
    ----------
    norm : {2, inf}
    tau : float
    lower : float
        Fraction of examples certified robust (sound).
    upper : float
        Fraction that are clean-correct and survive every attack.
    certified : (n,) bool ndarray
    survived : (n,) bool ndarray
    method : (n,) str ndarray
        The certificate (one of :data:`METHODS`) that certified each example;
        ``""`` where none did.
    certified_margin : (n,) float64 ndarray
        Certified lower bound on :math:`\min_{\|\delta\|_p \le \tau} y f(x+\delta)`.
    attack_margin : (n,) float64 ndarray
        Lowest margin :math:`y f(x+\delta)` reached by the attacks (and :math:`\delta = 0`).
    broken_by : (n,) str ndarray or None
        The attack (one of :data:`fpsim.attacks.ATTACK_NAMES`; ``"clean"``:
        misclassified already) that broke each example, ``""`` where it
        survived; ``None`` when not recorded.
    undecided : int or None
        With the complete mode (``node_budget``): examples neither certified
        nor refuted when the node budget ran out; ``None`` without it.
    seconds : dict or None
        Wall time of the ``"certificates"`` (bounds and complete mode) and of the ``"attacks"``.
    """

    norm: float
    tau: float
    lower: float
    upper: float
    certified: np.ndarray
    survived: np.ndarray
    method: np.ndarray
    certified_margin: np.ndarray
    attack_margin: np.ndarray
    broken_by: np.ndarray = None
    undecided: int = None
    seconds: dict = None

    @property
    def gap(self):
        """``upper - lower``: how much of robust accuracy is undecided."""
        return self.upper - self.lower


def _certificates(net, x, y, norm, tau, model):
    """Validated ``(x, y, norm, tau)``, the certified margins ``{name: (n,)}`` and the slack to exceed."""
    if isinstance(net, TwoLayerNet):
        net, x, y, norm, tau = check_certify(net, x, y, norm, tau)
        bounds, slack = _certify(net, x, y, norm, tau, dictionary=getattr(model, "dictionary", None))
        return x, y, norm, tau, {name: bounds[name] for name in METHODS}, slack
    if not all(callable(getattr(net, name, None)) for name in ("forward", "input_grad", "certified_margin")):
        raise TypeError(f"net must be a TwoLayerNet or a classifier with forward, input_grad and "
                        f"certified_margin (fpsim.baselines), got {type(net).__name__}")
    x = check_array("x", x, 2, dtype=np.float64, shape=(None, net.d))
    y = check_labels("y", y, x.shape[0])
    norm, tau = check_norm(norm), check_float("tau", tau, 0)
    return x, y, norm, tau, {net.certificate or "": net.certified_margin(x, y, norm, tau)}, 0.0


def robust_accuracy(net, x, y, norm, tau, model=None, pgd_steps=20, restarts=2, rng=None, node_budget=None):
    r"""Robust accuracy at :math:`(p, \tau)` as a certified interval.

    Parameters
    ----------
    net : TwoLayerNet or classifier
        The network, or any classifier with the attack and certificate
        interface of this module's docstring (:mod:`fpsim.baselines`).
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    norm : {2, "2", "l2", "inf", numpy.inf}
        Attack norm :math:`p`.
    tau : float
        Radius :math:`\tau \ge 0`.
    model : SparseCodingModel or (d,) array_like, optional
        Adds the dense-direction attack along :math:`M w^*` to the upper end.
    pgd_steps : int, default 20
        PGD steps per restart.
    restarts : int, default 2
        PGD random restarts.
    rng : numpy.random.Generator or int, optional
        Source of the PGD starts (default: ``default_rng(0)``).
    node_budget : int, optional
        Complete mode (a :class:`~fpsim.network.TwoLayerNet` only): every
        example that no bound certifies and no attack breaks goes to
        :func:`fpsim.certify.complete_margins` with this many nodes; what it
        certifies counts in ``lower`` (``method`` ``"branch_and_bound"``),
        what it refutes is broken (``broken_by`` ``"branch_and_bound"``), and
        ``undecided`` counts the rest.

    Returns
    -------
    RobustAccuracy
        ``lower`` is the certified fraction (an example counts when its best
        certificate exceeds the float64 rounding of the net's evaluation,
        :math:`(d + m)\,\varepsilon_{64} \sum_i (|u_i| + r_i)`; the attacks'
        margins are read in the same float64 arithmetic,
        :func:`fpsim.attacks.reference_margin`, so that ``certified`` implies
        ``survived``); ``upper`` is the attacked accuracy.
        For another classifier, ``lower`` counts its ``certified_margin > 0``
        (exact for the linear baseline, 0 without a certificate) and
        ``method`` holds its ``certificate`` name.
    """
    pgd_steps = check_int("pgd_steps", pgd_steps, 1)
    restarts = check_int("restarts", restarts, 1)
    rng = check_random_state(0 if rng is None else rng)
    if node_budget is not None:
        node_budget = check_int("node_budget", node_budget, 1)
        if not isinstance(net, TwoLayerNet):
            raise TypeError(f"node_budget (complete mode) needs a TwoLayerNet, got {type(net).__name__}")
    clock = time.perf_counter()
    x, y, norm, tau, bounds, slack = _certificates(net, x, y, norm, tau, model)
    seconds = {"certificates": time.perf_counter() - clock}

    stacked = np.stack(list(bounds.values()))
    best = stacked.argmax(axis=0)
    certified_margin = stacked.max(axis=0)
    certified = certified_margin > slack
    method = np.where(certified, np.asarray(list(bounds))[best], "")

    clock = time.perf_counter()
    margins = attack_margins(net, x, y, norm, tau, model=model, pgd_steps=pgd_steps, restarts=restarts,
                             rng=rng)
    seconds["attacks"] = time.perf_counter() - clock
    worst = np.min(list(margins.values()), axis=0)
    survived = worst > 0
    broken_by, undecided = first_breaker(margins), None
    if node_budget is not None:   # from the certificates above, not computed again
        clock = time.perf_counter()
        rows = np.flatnonzero(~certified & survived)
        found = search_rows(net, x, y, norm, tau, rows, certified_margin[rows], slack[rows], node_budget)
        proved, refuted = rows[found.status[rows] == "certified"], rows[found.status[rows] == "refuted"]
        method, broken_by = method.astype("U32"), broken_by.astype("U32")   # room for the name
        certified[proved], method[proved] = True, COMPLETE
        certified_margin[proved] = found.margin[proved]
        survived[refuted], broken_by[refuted] = False, COMPLETE
        worst[refuted] = np.minimum(worst[refuted], found.upper[refuted])
        undecided = int((found.status[rows] == "undecided").sum())
        seconds["certificates"] += time.perf_counter() - clock
    return RobustAccuracy(norm=norm, tau=tau, lower=float(certified.mean()), upper=float(survived.mean()),
                          certified=certified, survived=survived, method=method,
                          certified_margin=certified_margin, attack_margin=worst,
                          broken_by=broken_by, undecided=undecided, seconds=seconds)


def robust_curve(net, x, y, norm, taus, model=None, pgd_steps=20, restarts=2, rng=None, seconds=None):
    r"""Certified interval of robust accuracy over a range of radii.

    Parameters
    ----------
    net, x, y, norm, model, pgd_steps, restarts
        As in :func:`robust_accuracy`.
    taus : (t,) array_like
        Radii :math:`\tau \ge 0`, increasing.
    rng : numpy.random.Generator or int, optional
        One generator shared by all radii (default: ``default_rng(0)``).
    seconds : dict, optional
        Adds the wall time of the certificates and of the attacks to its
        ``"certificates"`` and ``"attacks"`` entries.

    Returns
    -------
    curve : dict
        ``taus``, ``lower``, ``upper``: ``(t,)`` float64 arrays.
    """
    taus = check_array("taus", taus, 1, dtype=np.float64)
    if taus.size == 0 or (taus < 0).any() or (np.diff(taus) <= 0).any():
        raise ValueError(f"taus must be a non-empty, strictly increasing array of radii >= 0, got {taus}")
    rng = check_random_state(0 if rng is None else rng)
    results = [robust_accuracy(net, x, y, norm, tau, model=model, pgd_steps=pgd_steps,
                               restarts=restarts, rng=rng) for tau in taus]
    for part in () if seconds is None else ("certificates", "attacks"):
        seconds[part] = seconds.get(part, 0.0) + sum(r.seconds[part] for r in results)
    return {"taus": taus, "lower": np.array([r.lower for r in results]),
            "upper": np.array([r.upper for r in results])}


def refined_curve(net, x, y, norm, taus, fine_points, model=None, pgd_steps=20, restarts=2, seed=0,
                  levels=(0.5,)):
    """Robust-accuracy curve on ``taus``, refined in every step where an end crosses a level.

    :func:`robust_curve` on the coarse radii ``taus``; then on ``fine_points``
    evenly spaced radii strictly inside each coarse step where the lower or
    the upper end first falls below one of ``levels``.  The two curves are
    merged in order of radius (:func:`merge_curves`).

    Parameters
    ----------
    net, x, y, norm, model, pgd_steps, restarts
        As in :func:`robust_accuracy`.
    taus : (t,) ndarray
        Coarse radii, increasing.
    fine_points : int
        Radii added inside each bracketing step (``>= 0``; 0: no refinement).
    seed : int, default 0
        Each of the two curves draws its PGD starts from the ``"attack"`` stream of ``seed``.
    levels : sequence of float in (0, 1), default (0.5,)

    Returns
    -------
    curve : dict
        ``taus``, ``lower``, ``upper`` as from :func:`robust_curve`.
    """
    fine_points = check_int("fine_points", fine_points, 0)
    levels = [check_float("level", level, 0, 1, closed=(False, False)) for level in levels]

    def curve_on(radii):
        return robust_curve(net, x, y, norm, radii, model=model, pgd_steps=pgd_steps, restarts=restarts,
                            rng=stream(seed, "attack"))

    curve = curve_on(taus)
    taus = curve["taus"]
    steps = set()
    for end in ("lower", "upper") if fine_points else ():
        for level in levels:
            below = np.flatnonzero(curve[end] < level)
            if below.size and below[0] > 0:
                steps.add(int(below[0]))
    if not steps:
        return curve
    fine = np.concatenate([np.linspace(taus[j - 1], taus[j], fine_points + 2)[1:-1] for j in sorted(steps)])
    return merge_curves(curve, curve_on(fine))


def merge_curves(first, second):
    """Two curves of :func:`robust_curve` on disjoint radii, as one in order of radius."""
    order = np.argsort(np.concatenate([first["taus"], second["taus"]]), kind="stable")
    return {key: np.concatenate([first[key], second[key]])[order] for key in ("taus", "lower", "upper")}


def critical_radius(curve, level=0.5):
    r"""Radius :math:`\tau` at which each end of a robust-accuracy curve falls below ``level``.

    Linear interpolation between the two radii around the first crossing.

    Parameters
    ----------
    curve : dict
        From :func:`robust_curve` (``taus``, ``lower``, ``upper``).
    level : float, default 0.5
        Accuracy level in ``(0, 1)``.

    Returns
    -------
    radii : dict
        ``lower`` and ``upper``: the crossing radius of each end, ``nan`` if
        that end does not cross ``level`` inside the sampled radii (it stays
        at or above it, or is already below it at the first radius).
    """
    level = check_float("level", level, 0, 1, closed=(False, False))
    taus = np.asarray(curve["taus"], dtype=np.float64)
    return {end: _crossing(taus, np.asarray(curve[end], dtype=np.float64), level)
            for end in ("lower", "upper")}


def _crossing(taus, values, level):
    """First radius where ``values`` falls from ``>= level`` to ``< level``, linearly interpolated."""
    if values[0] < level:
        return float("nan")
    below = np.flatnonzero(values < level)
    if below.size == 0:
        return float("nan")
    j = below[0]
    t0, t1, v0, v1 = taus[j - 1], taus[j], values[j - 1], values[j]
    return float(t0 + (v0 - level) / (v0 - v1) * (t1 - t0))


