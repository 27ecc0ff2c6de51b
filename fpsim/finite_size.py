r"""The finite-size law: how far apart C2 and C3 are at one radius (``docs/MODEL.md`` §1).

The paper's headline is that a clean-trained net is non-robust (C2: robust
accuracy < 1 %) and the adversarially trained net certifiably robust (C3:
> 99 %) *at the same radius* :math:`\tau`, once :math:`d` is large.  This
module measures, on one finished run, the radii where robust accuracy crosses
given levels for three nets:

* the **clean-trained** net :math:`W` and the **adversarially trained** net
  :math:`W'` of the run (``weights.npz``);
* the **ideal purified** net (:func:`ideal_net`): one unit per atom, row
  :math:`j` equal to :math:`w^*_j M e_j`, the best a perfectly purified net can do;

and the clean net's dense mixture projected on the teacher
(:func:`mixture_projection`).  A rough reading of the theory (MODEL.md §1):
the ideal net's robust radius is of order :math:`1/\sqrt k`, the clean net's
of order :math:`1/(k\rho)` (a step along :math:`M w^*` moves the
:math:`\approx k` active units together, each by :math:`\rho` of its norm), so

.. math::

    \frac{r_{\rm clean}}{r_{\rm ideal}} \sim \frac{1}{\sqrt k\,\rho} .

:func:`finite_size_point` writes everything to ``RUN/finite_size.json``
(reused when present) and :func:`separation` says whether C2 and C3 hold at
one radius; ``python -m proofs_check.phase_diagram`` runs a grid of
:math:`(d, k)` and tests the law (``docs/finite-size.md``).
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

from ._io import atomic_write_json, read_json
from ._validation import check_array, check_choice, check_float, check_int, check_labels
from .certify import critical_radius, refined_curve
from .data import SparseCodingModel, mean_square_norm
from .config import Config, eval_set
from .experiment import load_nets
from .metrics import dictionary_view
from .network import THRESHOLD_KINDS, Threshold, TwoLayerNet

#: Accuracy levels of the crossing radii: the C3 level, the median, the C2 level.
LEVELS = (0.99, 0.5, 0.01)
#: Default radii of a point, times :math:`1/\sqrt k`: ``0`` then ``geomspace(*GRID, GRID_POINTS)``.
GRID = (0.1, 4.0)
GRID_POINTS = 12
#: Evenly spaced radii added inside each step of the grid that brackets a crossing.
REFINE_POINTS = 3
#: Name of the result file in a run folder.
RESULT_FILE = "finite_size.json"
#: Nets measured by :func:`finite_size_point`.
NETS = ("clean", "adversarial", "ideal")
#: Start of a clean threshold ramp in units of the random level (:func:`start_threshold`).
START_LEVEL = 3.5


def ideal_net(model, threshold, kind="relative", activation="relu", q=2.0, rho=0.1):
    r"""The ideal purified net: one unit per atom, weighted by the teacher.

    .. math::

        w_j = w^*_j\, M e_j \quad (j = 1, \dots, d), \qquad
        b_j = \theta |w^*_j| \ \text{(relative)} \ \text{or}\ \theta \ \text{(absolute)} .

    On a noise-free input :math:`x = M z` unit :math:`j` sees
    :math:`u_j = w^*_j z_j` and, for the relative threshold and the ReLU,
    outputs :math:`w^*_j\,\mathrm{sign}(z_j)(|z_j| - \theta)_+`.  So if
    :math:`\theta` is below every non-zero :math:`|z_j|` and all non-zero
    magnitudes are equal (``magnitude=(a, a)``), :math:`f(x) = (1 - \theta/|z_j|)
    \langle w^*, z\rangle` has the label's sign on every code with
    :math:`\langle w^*, z\rangle \ne 0`.  With magnitudes in :math:`[a, b]/\sqrt k`
    the factor :math:`c_j = 1 - \theta/|z_j|` lies in :math:`[c_-, c_+]` and
    :math:`y f \ge \bar c\,|\langle w^*, z\rangle| - h \sum_j |w^*_j z_j|`
    (:math:`\bar c, h` the centre and half-width): a label margin
    :math:`\gamma > h\|w^* \odot z\|_1/\bar c` keeps it exact.

    Parameters
    ----------
    model : SparseCodingModel
        Supplies :math:`M` (``dictionary``), :math:`w^*` and the dtype.
    threshold : float
        :math:`\theta \ge 0` (the run's final threshold).
    kind : {"relative", "absolute"}, default "relative"
        Bias rule, as :class:`~fpsim.network.Threshold`.
    activation, q, rho
        As :class:`~fpsim.network.TwoLayerNet` (the statements above are for the ReLU).

    Returns
    -------
    TwoLayerNet
        ``d`` units, weights ``(d, d)`` in the model's dtype.
    """
    if not isinstance(model, SparseCodingModel):
        raise TypeError(f"model must be a SparseCodingModel, got {type(model).__name__}")
    threshold = check_float("threshold", threshold, 0)
    kind = check_choice("kind", kind, THRESHOLD_KINDS)
    W = (model.dictionary * model.w_star[None, :]).T.astype(model.dtype)
    return TwoLayerNet(W, threshold=Threshold(threshold, kind=kind), activation=activation, q=q, rho=rho)


def start_threshold(config, level=START_LEVEL):
    r"""Where a clean threshold ramp starts so that training can begin: ``level`` times the random level.

    A random unit direction :math:`\hat w` projects an input to
    :math:`\langle \hat w, x\rangle \approx \mathcal N(0, E\|x\|^2/d)`, so at
    initialisation (any :math:`\sigma_0`: the relative threshold is scale-free)
    a unit fires on a fraction :math:`P(|\mathcal N(0,1)| > \theta\sqrt{d/E\|x\|^2})`
    of the inputs.  For :math:`\theta = 0.6/\sqrt k` that is
    :math:`\approx P(|\mathcal N| > 0.55\sqrt{d/k})`: nothing fires when
    :math:`d/k` is large, there is no gradient and the net never trains.  Starting at

    .. math::

        \theta_0 = \min\Big(\theta,\ \ell\, \sqrt{E\|x\|^2/d}\Big)

    (:math:`\ell` = ``level``; 3.5 fires :math:`\approx 5\cdot 10^{-4}` of the pairs, more
    with a label margin's larger inputs) keeps
    :math:`\theta_0` above the random level, where units still learn one atom
    each (MODEL.md §3: dense units below about 3 times it), and a ramp to
    :math:`\theta` then narrows them (``docs/finite-size.md``).

    Parameters
    ----------
    config : Config
        Supplies ``d``, ``k``, ``magnitude``, ``noise`` and the final
        threshold ``threshold_end`` (or ``threshold`` when unset).
    level : float, default START_LEVEL
        :math:`\ell > 0`, in units of the random level.

    Returns
    -------
    float
        :math:`\theta_0`; equal to :math:`\theta` when :math:`\theta` is
        already within reach at initialisation.
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be a Config, got {type(config).__name__}")
    level = check_float("level", level, 0, closed=(False, True))
    theta = config.threshold if config.threshold_end is None else config.threshold_end
    random_level = math.sqrt(mean_square_norm(config.k, config.magnitude, config.noise) / config.d)
    return float(min(theta, level * random_level))


def radius_grid(k, grid=GRID, points=GRID_POINTS):
    r"""Radii of a point: :math:`0` then ``geomspace(grid[0], grid[1], points)`` :math:`/\sqrt k`.

    Returns
    -------
    (points + 1,) float64 ndarray
    """
    k = check_float("k", k, 1)
    low = check_float("grid[0]", grid[0], 0, closed=(False, True))
    high = check_float("grid[1]", grid[1], low, closed=(False, True))
    points = check_int("points", points, 2)
    return np.concatenate([[0.0], np.geomspace(low, high, points) / math.sqrt(k)])


def _crossing_or_edge(curve, end, level):
    """First radius where ``curve[end]`` falls below ``level``: 0 if it starts below, inf if it never does."""
    if curve[end][0] < level:
        return 0.0
    radius = critical_radius(curve, level)[end]
    return float("inf") if np.isnan(radius) else radius


def crossing_radii(net, model, x, y, norm, taus, levels=LEVELS, pgd_steps=20, restarts=2, seed=0,
                   refine=REFINE_POINTS):
    r"""Radii where the certified and the attacked robust accuracy fall below each level.

    The robust-accuracy interval :math:`[\underline A(\tau), \overline A(\tau)]`
    (:func:`fpsim.certify.robust_curve`: certified lower end, attacked upper
    end) on ``taus``, then on ``refine`` evenly spaced radii strictly inside
    every step of ``taus`` that brackets a crossing; for each end and level
    :math:`\ell` the crossing radius (:func:`fpsim.certify.critical_radius`,
    linear interpolation)

    .. math::

        r_\ell = \text{first } \tau \text{ with } A(\tau) < \ell .

    Because a certified example also survives the attacks at the same radius,
    :math:`\underline A \le \overline A` pointwise and the certified radius is
    at most the attacked one; :math:`r_{0.99} \le r_{0.5} \le r_{0.01}` for
    each end.  The certified radius bounds the true one from below, the
    attacked radius from above.

    Parameters
    ----------
    net : TwoLayerNet
    model : SparseCodingModel
        For the dense-direction attack and the dictionary basis of the certificates.
    x : (n, d) array_like
    y : (n,) array_like of {-1, +1}
    norm : {2, "2", "inf", numpy.inf}
    taus : (t,) array_like
        Increasing radii :math:`\ge 0`; include 0 to read the clean accuracy.
    levels : sequence of float in (0, 1), default (0.99, 0.5, 0.01)
    pgd_steps, restarts : int
        Of the attacks, as :func:`fpsim.certify.robust_accuracy`.
    seed : int, default 0
        Seeds the PGD starts (the ``"attack"`` stream of that seed).
    refine : int, default 3
        Radii added per bracketing step (0: none).

    Returns
    -------
    result : dict
        ``lower`` and ``upper``: ``{level: radius}`` (keys ``str(level)``);
        a radius is ``0.0`` if that end is below the level already at the
        first radius, ``inf`` if it stays at or above it up to the last one.
        ``curve``: ``taus``, ``lower``, ``upper`` lists of the merged curve.
    """
    if not isinstance(model, SparseCodingModel):
        raise TypeError(f"model must be a SparseCodingModel, got {type(model).__name__}")
    x = check_array("x", x, 2, shape=(None, model.d))
    y = check_labels("y", y, x.shape[0])
    levels = [check_float("level", level, 0, 1, closed=(False, False)) for level in levels]
    refine = check_int("refine", refine, 0)

    curve = refined_curve(net, x, y, norm, taus, refine, model=model, pgd_steps=pgd_steps, restarts=restarts,
                          seed=seed, levels=levels)
    result = {end: {str(level): _crossing_or_edge(curve, end, level) for level in levels}
              for end in ("lower", "upper")}
    result["curve"] = {key: np.asarray(value).tolist() for key, value in curve.items()}
    return result


def mixture_projection(net, model):
    r"""The dense mixture of each unit projected on the teacher, relative to the unit's norm.

    With :math:`a_i = M^\top w_i`, its principal atom :math:`j_i = \arg\max_j
    |a_{ij}|` and the dense mixture :math:`a_i^{\rm dense}` (:math:`a_i` with
    entry :math:`j_i` set to zero; :func:`fpsim.metrics.dictionary_view`),

    .. math::

        \rho_i = \frac{\langle a_i^{\rm dense}, \hat w^*\rangle}{\|w_i\|_2}
              = \frac{\|a_i^{\rm dense}\|}{\|a_i\|}\,
                \cos\big(a_i^{\rm dense}, w^*_{-j_i}\big)\,
                \frac{\|w^*_{-j_i}\|}{\|w^*\|}, \qquad \hat w^* = \frac{w^*}{\|w^*\|},

    (the second form from ``dictionary_view``'s dense share and alignment;
    :math:`\|a_i\| = \|w_i\|` as :math:`M` is orthogonal).  A step
    :math:`\delta = -y\tau M\hat w^*` changes :math:`u_i` by
    :math:`-y\tau(\rho_i\|w_i\| + a_{i j_i}\hat w^*_{j_i})`: :math:`\rho_i` is the
    part that moves every unit the same way.

    Parameters
    ----------
    net : TwoLayerNet
    model : SparseCodingModel

    Returns
    -------
    dict
        ``rho`` ``(m,)`` float64 ndarray (signed), ``median``, ``mean``.
    """
    view = dictionary_view(net.W, model.dictionary, model.w_star)
    w_star = model.w_star
    principal = view.principal[:, 0]
    rest = np.sqrt(np.maximum(w_star @ w_star - w_star[principal] ** 2, 0.0)) / np.linalg.norm(w_star)
    rho = view.dense_share * view.dense_alignment * rest
    return {"rho": rho, "median": float(np.median(rho)), "mean": float(np.mean(rho))}


def _settings(config, grid, points, n_eval, refine):
    return {"grid": [float(grid[0]), float(grid[1])], "points": int(points), "n_eval": int(n_eval),
            "refine": int(refine), "levels": list(LEVELS), "config": config.to_dict()}


def finite_size_point(run_dir, grid=GRID, points=GRID_POINTS, n_eval=None, refine=REFINE_POINTS,
                      progress=False):
    r"""Crossing radii of the clean, adversarial and ideal nets of one finished run, and :math:`\rho`.

    Reads the run's config and nets (:func:`fpsim.experiment.load_nets`:
    ``RUN/report.json``, ``RUN/weights.npz`` with ``W_clean`` and ``W_adv``);
    evaluates every net on the run's held-out robust-evaluation examples (the
    first ``n_eval`` of :func:`fpsim.config.eval_set`) at the radii
    :func:`radius_grid` with :func:`crossing_radii`, in the run's norm; and
    writes ``RUN/finite_size.json`` atomically.  If that file exists and was
    made with the same settings and config it is read back instead (resumable).

    Parameters
    ----------
    run_dir : str or path
        A folder written by :func:`fpsim.experiment.run_experiment`.  A run
        without adversarial training (``adv_steps = 0``) gives the clean and
        the ideal net only (the law's ratio and ``s_ideal``, not ``s``).
    grid : (float, float), default :data:`GRID`
        Radii span, in units of :math:`1/\sqrt k`.
    points : int, default :data:`GRID_POINTS`
    n_eval : int, optional
        Examples (default: the config's ``robust_eval_size``), at most ``eval_size``.
    refine : int, default :data:`REFINE_POINTS`
    progress : bool, default False
        One line per net on stderr.

    Returns
    -------
    point : dict
        ``d``, ``k``, ``threshold``, ``tau``, ``settings``; ``nets``:
        ``{clean, adversarial, ideal}`` (``adversarial`` only if the run has
        it) each with ``accuracy`` (at radius 0,
        attacked end) and the output of :func:`crossing_radii` (radii ``inf``
        written as ``null``); ``rho``: the clean and the adversarial net's
        :func:`mixture_projection` (``median``, ``mean``); ``ratio``: clean
        over ideal attacked 50 % radius, and ``sqrt_k_rho``.
    """
    run_dir = os.fspath(run_dir)
    config = Config(**read_json(os.path.join(run_dir, "report.json"))["config"])
    model, nets = load_nets(run_dir, config)
    if "clean" not in nets:
        raise ValueError(f"run {run_dir}: weights.npz lacks W_clean; finite_size_point needs a trained run")
    n_eval = config.robust_eval_size if n_eval is None else check_int("n_eval", n_eval, 1, config.eval_size)
    settings = _settings(config, grid, points, n_eval, refine)
    path = os.path.join(run_dir, RESULT_FILE)
    if os.path.exists(path):
        with open(path) as handle:
            saved = json.load(handle)
        if saved.get("settings") == settings:
            return _decode(saved)

    x, y, _ = eval_set(config, model)
    x, y = x[:n_eval], y[:n_eval]
    theta = nets["init"].threshold.end
    nets["ideal"] = ideal_net(model, theta, kind=config.threshold_kind, activation=config.activation,
                              q=config.q, rho=config.rho)
    taus = radius_grid(config.k, grid, points)
    point = {"d": config.d, "k": config.k, "threshold": theta, "tau": config.tau, "settings": settings,
             "nets": {}}
    for name in (name for name in NETS if name in nets):
        if progress:
            print(f"[fpsim.finite_size] {run_dir}: {name} net", file=sys.stderr)
        radii = crossing_radii(nets[name], model, x, y, config.norm, taus, pgd_steps=config.pgd_steps,
                               restarts=config.restarts, seed=config.seed, refine=refine)
        radii["accuracy"] = radii["curve"]["upper"][0]
        point["nets"][name] = radii
    point["rho"] = {name: {key: value for key, value in mixture_projection(nets[name], model).items()
                           if key != "rho"} for name in ("clean", "adversarial") if name in nets}
    clean50 = point["nets"]["clean"]["upper"]["0.5"]
    ideal50 = point["nets"]["ideal"]["upper"]["0.5"]
    point["ratio"] = clean50 / ideal50 if 0 < ideal50 < float("inf") else float("nan")
    rho = point["rho"]["clean"]["median"]
    point["sqrt_k_rho"] = math.sqrt(config.k) * rho
    atomic_write_json(path, jsonable(point))
    return point


def jsonable(point):
    """JSON form of a result: every non-finite float (radius, ratio) as ``None``."""
    def walk(value):
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    return walk(point)


def _decode(saved):
    """Inverse of :func:`_encode` for the radii (``null`` -> ``inf``) and the ratio (``null`` -> ``nan``)."""
    for net in saved["nets"].values():
        for end in ("lower", "upper"):
            net[end] = {level: float("inf") if r is None else r for level, r in net[end].items()}
    if saved.get("ratio") is None:
        saved["ratio"] = float("nan")
    return saved


def separation(point):
    r"""Whether C2 and C3 hold at one radius, and how far apart they are.

    With :math:`r^{\rm clean}_{1\%}` the radius where the clean net's
    *attacked* robust accuracy falls below 1 % and :math:`r^{\rm adv}_{99\%}`
    the radius where the adversarial net's *certified* robust accuracy falls
    below 99 %, C2 (clean accuracy > 99 % and clean robust < 1 %) and C3
    (adversarial certified > 99 %) hold together at some :math:`\tau` in between iff

    .. math::

        s = r^{\rm clean}_{1\%} / r^{\rm adv}_{99\%} < 1 .

    :math:`s` is the factor by which the two claims are apart
    (``inf`` when the adversarial net is never certified 99 %, e.g. when its
    clean accuracy is below 99 %, and when the clean net's accuracy is not
    above 99 %, so that C2 holds at no radius; ``nan``, with ``holds`` ``None``, when the
    run has no adversarial net).  Crossing radii are interpolated on the
    evaluated grid; ``witness`` is a radius actually evaluated for both nets
    where both held, if any (the direct check, without interpolation).

    Parameters
    ----------
    point : dict
        From :func:`finite_size_point`.

    Returns
    -------
    dict
        ``holds`` (bool; ``None`` without an adversarial net), ``ratio`` :math:`s`,
        ``clean_1pct``, ``adversarial_99pct``,
        ``witness`` (float or ``None``); the same with the ideal net in place of
        the adversarial one under ``ideal_ratio`` / ``ideal_holds``.
    """
    clean = point["nets"]["clean"]
    # C2 also asks for clean accuracy > 0.99: an untrained clean net is "not robust" at every radius
    c1 = clean["upper"]["0.01"] if clean["curve"]["upper"][0] > 0.99 else float("inf")
    out = {"clean_1pct": c1, "ratio": float("nan"), "holds": None, "adversarial_99pct": float("nan"),
           "witness": None}
    for name, key in (("adversarial", ""), ("ideal", "ideal_")):
        if name not in point["nets"]:
            continue
        other = point["nets"][name]
        a99 = other["lower"]["0.99"]
        ratio = c1 / a99 if a99 > 0 else float("inf")
        out[f"{key}ratio"] = ratio
        out[f"{key}holds"] = bool(ratio < 1)
        if name == "adversarial":
            out["adversarial_99pct"] = a99
            out["witness"] = _witness(clean["curve"], other["curve"])
        else:
            out["ideal_99pct"] = a99
    return out


def _witness(clean_curve, adv_curve):
    """Smallest radius evaluated for both nets with clean attacked < 1 % and adversarial certified > 99 %."""
    clean = dict(zip(clean_curve["taus"], clean_curve["upper"]))
    if clean_curve["upper"][0] <= 0.99:  # C2 needs clean accuracy > 0.99
        return None
    for tau, lower in zip(adv_curve["taus"], adv_curve["lower"]):
        if tau in clean and clean[tau] < 0.01 and lower > 0.99:
            return float(tau)
    return None
