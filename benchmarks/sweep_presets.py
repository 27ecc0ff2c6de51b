#!/usr/bin/env python
"""Run named configurations through fpsim's pipeline and log one line per run (docs/presets.md).

Each run is ``fpsim.sweep.run_or_load(config, ROOT/NAME-FINGERPRINT)``: the
library's :func:`fpsim.experiment.run_experiment` (clean training,
adversarial training, evaluation, baselines, ``report.json`` and
``weights.npz``; finished phases and reports are reused, so running a config
again costs only the evaluation or nothing).  A summary of the report
(config, timings, clean and adversarial robust intervals, purification, cos
to init, dense mixture, top-5 energy, the verdicts of ``proofs_check``) is
appended as one JSON line to ``--out``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/sweep_presets.py --list
    OMP_NUM_THREADS=1 python benchmarks/sweep_presets.py paper quick
    OMP_NUM_THREADS=1 python benchmarks/sweep_presets.py paper --set tau=0.06 --set adv_steps=800
    OMP_NUM_THREADS=1 python benchmarks/sweep_presets.py paper_c2 --extra-bounds --curve 0.2,0.3
    python benchmarks/sweep_presets.py --table

Names are the keys of ``CONFIGS`` (``quick`` and ``paper`` are
``fpsim.experiment.preset``; the others are research variants of ``paper``);
``--set field=value`` changes a :class:`fpsim.experiment.Config` field of
every selected config.

EXPERIMENTAL, not part of fpsim's certified interval: ``gap_margins`` and
``split_margins`` are two extra sound lower bounds that live only in this
script (candidates for ``fpsim.certify``).  ``--extra-bounds`` evaluates them
on the saved nets and records them under ``experimental`` in the JSON line;
``--curve``, ``--ideal`` and ``--selftest`` (their Monte-Carlo soundness
check) use them too.  The ``report.json`` of a run never contains them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import proofs_check  # noqa: E402
from fpsim import TwoLayerNet, certify, kernels  # noqa: E402
from fpsim._validation import stream  # noqa: E402
from fpsim.experiment import Config, build, preset  # noqa: E402
from fpsim.sweep import run_or_load  # noqa: E402

#: Named configurations.  See docs/presets.md for the results.  The research
#: variants skip the C6 baselines (``baseline_steps=0``): they are about C2/C3.
CONFIGS = {
    "quick": preset("quick"),
    "paper": preset("paper"),
    # tau > theta regime: C2 (nearly) holds, the adversarial net is robust under attack but not certified
    "paper_c2": preset("paper", d=800, m=1600, margin=2.0, threshold=0.12, tau=0.25, weight_decay=1e-3,
                       clean_steps=1500, adv_steps=800, robust_eval_size=1000, baseline_steps=0),
    # variants explored around "paper"
    "paper_wd3": preset("paper", clean_steps=1500, baseline_steps=0),
    "paper_lr1": preset("paper", clean_steps=1500, adv_steps=2000, adv_lr=1.0, weight_decay=1e-4,
                        baseline_steps=0),
    # the starting point of the sweep: the "changes" column of --table is relative to it
    "base": preset("paper", margin=0.5, lr=0.2, adv_lr=0.0, weight_decay=0.0, adv_steps=1000,
                   eval_size=5000, baseline_steps=0),
}

#: Evaluation-only fields, left out of the "changes" column of --table.
EVAL_FIELDS = ("eval_size", "robust_eval_size", "pgd_steps", "restarts", "curve_points", "baseline_steps")


# -- configs -----------------------------------------------------------------

def parse_overrides(items):
    """``{field: value}`` from ``--set field=value`` items, each value parsed with the field's type.

    Parameters
    ----------
    items : list of str
        ``"field=value"``; pair fields (``magnitude``, ``teacher``) take
        ``lo,hi`` or a JSON list.

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        Unknown field, missing ``=`` or a value that does not parse.
    """
    types = {f.name: f.type for f in dataclasses.fields(Config)}  # annotations are strings
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"--set needs field=value, got {item!r}")
        if key not in types:
            raise ValueError(f"unknown Config field {key!r}; the fields are {', '.join(types)}")
        try:
            if types[key] == "tuple":
                out[key] = tuple(float(v) for v in (json.loads(text) if text.lstrip().startswith("[")
                                                    else text.split(",")))
            else:
                out[key] = {"int": int, "float": float, "str": str}[types[key]](text)
        except ValueError as err:
            raise ValueError(f"--set {key}: cannot read {text!r} as {types[key]} ({err})") from None
    return out


def select(names, overrides):
    """``{name: Config}`` for the named configs with ``overrides`` applied (validated by Config)."""
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown config(s) {', '.join(unknown)}; the names are {', '.join(CONFIGS)}")
    return {name: CONFIGS[name].replace(**overrides) for name in names}


def _changes(config_dict, reference, skip=EVAL_FIELDS):
    """``field=value`` for each field of ``config_dict`` (but ``skip``) that differs from ``reference``."""
    return ", ".join(f"{k}={v}" for k, v in config_dict.items()
                     if k in reference and k not in skip
                     and list(np.atleast_1d(v)) != list(np.atleast_1d(reference[k])))


# -- runs --------------------------------------------------------------------

def run(name, config, root, progress=False):
    """Run (or reuse) ``config`` with ``fpsim.sweep.run_or_load`` into ``root/NAME-FINGERPRINT``.

    Parameters
    ----------
    name : str
    config : Config
    root : str
    progress : bool

    Returns
    -------
    report : dict
        The run's ``report.json``.
    folder : str
    reused : list of str
        What was already there: ``["report"]`` (nothing ran; the timings are
        the original run's) or the finished phases (their timings are load
        times, not training times).
    """
    folder = os.path.join(root, f"{name}-{config.fingerprint()}")
    state = os.path.join(folder, ".fpsim", config.fingerprint())
    reused = [phase for phase in ("clean", "adversarial") if os.path.exists(os.path.join(state, phase + ".npz"))]
    report_path = os.path.join(folder, "report.json")
    if os.path.exists(report_path):
        with open(report_path) as fh:
            if json.load(fh).get("config") == config.to_dict():
                reused = ["report"]
    return run_or_load(config, folder, progress=progress), folder, reused


def record(name, overrides, report, folder, reused):
    """The JSON line of one run: a summary of its ``report.json``.

    Returns
    -------
    dict
        ``format`` (2), ``name``, ``overrides``, ``folder``, ``reused``,
        ``config``, ``timings``; ``clean`` / ``adversarial`` (``accuracy``,
        ``robust`` [certified, attacked], ``dense_direction``,
        ``certified_by``, ``critical_radius``); medians ``cos_init``;
        ``dense_mixture``; ``purification``; ``top5_energy``; ``verdicts``
        (claim id -> PASS/FAIL/SKIP from ``proofs_check.evaluate``).
    """
    def net(part):
        r = report[part]
        return {"accuracy": r["accuracy"], "robust": [r["robust"]["lower"], r["robust"]["upper"]],
                "dense_direction": r["robust"]["dense_direction"], "certified_by": r["robust"]["certified_by"],
                "critical_radius": r["critical_radius"]}

    metrics = report["metrics"]
    rec = {"format": 2, "name": name, "overrides": overrides, "folder": folder, "reused": reused,
           "config": report["config"], "timings": report["timings"], "clean": net("clean"),
           "cos_init": {k: v["median"] for k, v in metrics["cos_init"].items()},
           "dense_mixture": metrics["dense_mixture"]}
    if "adversarial" in report:
        rec["adversarial"] = net("adversarial")
        rec["purification"] = metrics["purification"]
        rec["top5_energy"] = metrics["update_spectrum"]["top_energy"]
    rec["verdicts"] = {row["id"]: row["verdict"] for row in proofs_check.evaluate(report)}
    return rec


# -- EXPERIMENTAL: extra sound bounds, not part of fpsim's certified interval --------------------

def gap_margins(net, x, y, tau, etas=(0.1, 0.2, 0.4, 0.6, 0.8), dictionary=None):
    r"""EXPERIMENTAL. Sound lower bound on :math:`\min_{\|\delta\|_2 \le \tau} y f(x+\delta)` (the "gap" bound).

    Not in fpsim.certify (yet).  Proof, per example and for each
    :math:`\eta \in (0, 1)`; write :math:`a_i = \langle w_i, \delta\rangle` and
    :math:`s_i` for unit :math:`i` (odd, non-decreasing, 1-Lipschitz,
    :math:`|s_i(u)| \le (|u| - b_i)_+`):

    * F = units active at x (:math:`|u_i| > b_i`): the margin loses at most
      :math:`(-y a_i)_+`;
    * N = inactive units with :math:`|u_i| > \eta b_i`: :math:`s_i(u_i) = 0`,
      so they lose at most :math:`|a_i|`;
    * every other unit has gap :math:`g_i = b_i - |u_i| \ge (1-\eta) b_i` and
      :math:`|s_i(u_i + a_i)| \le (|a_i| - g_i)_+ \le a_i^2 / (4 g_i)`.

    Summing, :math:`\sum_{F}(-y a_i)_+ + \sum_N |a_i| \le \tau \|\sum_{T} \epsilon_i w_i\|`
    for some subset and signs, bounded by :math:`\tau\sqrt{\sum_{F\times F} (G_{ij})_+ +
    2\sum_{F\times N} |G_{ij}| + \sum_{N\times N} |G_{ij}|}` (:math:`G = WW^\top`; in
    F the signs are all :math:`-y`), and the rest by
    :math:`\delta^\top (\sum_i w_i w_i^\top / (4(1-\eta) b_i)) \delta \le \tau^2 \Lambda_\eta`
    (all units included: adding PSD terms only raises :math:`\lambda_{\max}`).
    Unlike the per-unit/Gram bounds this one stays useful for :math:`\tau > \theta`:
    an inactive unit costs only quadratically in how far the ball reaches past its gap.

    Returns
    -------
    (n,) float64 ndarray
        Compare with :func:`rounding_slack`, as ``fpsim.certify`` does.
    """
    W = net.W.astype(np.float64)
    b = net.bias().astype(np.float64)
    if not (b > 0).all():
        return np.full(x.shape[0], -np.inf)
    yf64 = np.asarray(y, np.float64)
    u = x.astype(np.float64) @ W.T
    f = np.empty(x.shape[0])
    kernels.soft_threshold_units(u, b, net.q, net.rho_effective, f, np.empty_like(u))
    base = yf64 * f
    gram = W @ W.T
    gpos, gabs = np.maximum(gram, 0.0), np.abs(gram)
    absu = np.abs(u)
    active = (absu > b).astype(np.float64)
    ff = np.einsum("bi,bi->b", active @ gpos, active)
    best = np.full(x.shape[0], -np.inf)
    if dictionary is not None:
        coef = W @ np.asarray(dictionary, np.float64)          # a_i = M^T w_i, rows
        top = np.argmax(np.abs(coef), axis=1)
        alpha = coef[np.arange(len(top)), top]
        resid = np.sqrt(np.maximum(np.einsum("ij,ij->i", W, W) - alpha ** 2, 0.0)) * (1 + 1e-9) + 1e-12
    for eta in etas:
        near_b = (absu > eta * b) & (absu <= b)
        variants = [(near_b, np.linalg.norm(W / np.sqrt(4 * (1 - eta) * b)[:, None], 2) ** 2 * (1 + 1e-9))]
        if dictionary is not None:
            gt = (1 - eta) * b - tau * resid
            ok = gt > 0
            per_atom = np.bincount(top[ok], weights=alpha[ok] ** 2 / (4 * gt[ok]), minlength=W.shape[1])
            near_a = near_b | ((absu <= b) & ~ok[None, :])
            variants.append((near_a, per_atom.max() * (1 + 1e-9)))
        for near, lam in variants:
            near = near.astype(np.float64)
            lin2 = ff + 2 * np.einsum("bi,bi->b", active @ gabs, near) + np.einsum("bi,bi->b", near @ gabs, near)
            best = np.maximum(best, base - tau * np.sqrt(lin2) - tau ** 2 * lam)
    return best


def split_margins(net, x, y, tau, dictionary, kappas=(0.05, 0.1, 0.2, 0.4), etas=(0.3, 0.6)):
    r"""EXPERIMENTAL. Refined gap bound (l2): the attacker cannot spend the whole ball twice.

    Per example, units are split into F (active at x: loses at most
    :math:`(-y a_i)_+`, :math:`a_i = \langle w_i,\delta\rangle`), Qa, Qe and N (inactive,
    loses at most :math:`|a_i|`).  Write :math:`w_i = p_i + r_i` with
    :math:`p_i = \alpha_i M e_{j(i)}` on the unit's largest atom and
    :math:`g_i = b_i - |u_i| > 0` its gap at x.

    * Qa: :math:`\tilde g_i = g_i - \tau\|r_i\| \ge \kappa b_i`.  Since
      :math:`|s_i(u_i + a_i)| \le (|a_i| - g_i)_+ \le (|\langle p_i,\delta\rangle| - \tilde g_i)_+
      \le \langle p_i,\delta\rangle^2/(4\tilde g_i)`, their total is
      :math:`\sum_j q_j \hat\delta_j^2` with :math:`\hat\delta = M^\top\delta` and
      :math:`q_j = \sum_{i\in Qa, j(i)=j} \alpha_i^2/(4\tilde g_i)`.
    * Qe: "weak" units (a fixed set, :math:`\|r_i\| > \|w_i\|/2`, never in Qa),
      inactive with :math:`|u_i| \le \eta b_i`: cost :math:`\le a_i^2/(4(1-\eta)b_i)`,
      total :math:`\le \tau^2\lambda_e`, :math:`\lambda_e` the top eigenvalue of
      :math:`\sum_{\rm weak} w_iw_i^\top/(4(1-\eta)b_i)` (a superset: PSD terms only add).
    * N: the rest of the inactive units.

    With :math:`c` the worst signed sum of F/N rows (signs :math:`-y` on F) and
    :math:`\hat c = M^\top c`, for every :math:`\mu > \max_j q_j` (add
    :math:`\mu(\tau^2 - \|\hat\delta\|^2) \ge 0`, maximise coordinate-wise):

    .. math::

        \langle c,\delta\rangle + \sum_j q_j \hat\delta_j^2
        \le \mu\tau^2 + \sum_j \frac{\hat c_j^2}{4(\mu - q_j)}
        \le \mu\tau^2 + \frac{L^2}{4(\mu - q_{\rm in})} + \frac{L_\perp^2}{4(\mu - q_{\rm out})}

    with :math:`J_1` the principal atoms of F, :math:`q_{\rm in} = \max_{J_1} q_j`,
    :math:`q_{\rm out} = \max_j q_j`, :math:`L^2 = \sum_{F\times F}(G_{ij})_+ + \sum_{\text{other pairs of }F\cup N}|G_{ij}|
    \ge \|c\|^2` (:math:`G = WW^\top`) and :math:`L_\perp^2` the same with the :math:`J_1`
    coordinates removed from every row.  Any :math:`\mu` is sound (a grid is
    used), as is every :math:`(\kappa, \eta)`; the best is kept.  A Python
    loop over examples (≈ 20 ms each at m = 800).

    Returns
    -------
    (n,) float64 ndarray
        Compare with :func:`rounding_slack`, as ``fpsim.certify`` does.
    """
    W = net.W.astype(np.float64)
    b = net.bias().astype(np.float64)
    n = x.shape[0]
    if not (b > 0).all():
        return np.full(n, -np.inf)
    A = W @ np.asarray(dictionary, np.float64)
    norms = np.linalg.norm(W, axis=1)
    top = np.argmax(np.abs(A), axis=1)
    alpha = A[np.arange(len(top)), top]
    resid = np.sqrt(np.maximum(norms ** 2 - alpha ** 2, 0.0)) * (1 + 1e-9) + 1e-12
    yy = np.asarray(y, np.float64)
    u = x.astype(np.float64) @ W.T
    f = np.empty(n)
    kernels.soft_threshold_units(u, b, net.q, net.rho_effective, f, np.empty_like(u))
    base = yy * f
    gram = W @ W.T
    absu = np.abs(u)
    best = np.full(n, -np.inf)
    weak = resid > 0.5 * norms            # units far from any single atom: handled by lambda_e
    for kappa in kappas:
        for eta in etas:
            lam_e = (np.linalg.norm(W[weak] / np.sqrt(4 * (1 - eta) * b[weak])[:, None], 2) ** 2
                     * (1 + 1e-9) if weak.any() else 0.0)
            for e in range(n):
                act = absu[e] > b
                gtil = b - absu[e] - tau * resid
                qa = ~act & ~weak & (gtil >= kappa * b)
                qe = ~act & weak & (absu[e] <= eta * b)
                near = ~act & ~qa & ~qe
                fn = np.flatnonzero(act | near)
                q = np.bincount(top[qa], weights=alpha[qa] ** 2 / (4 * gtil[qa]), minlength=W.shape[1])
                j1 = np.unique(top[act])
                q_out = q.max()
                q_in = q[j1].max() if len(j1) else 0.0
                sub = gram[np.ix_(fn, fn)]
                perp = sub - A[np.ix_(fn, j1)] @ A[np.ix_(fn, j1)].T
                both = np.outer(act[fn], act[fn])
                l2 = np.where(both, np.maximum(sub, 0), np.abs(sub)).sum()
                lp2 = max(np.where(both, np.maximum(perp, 0), np.abs(perp)).sum(), 0.0)
                l = np.sqrt(max(l2, 0.0))
                drop = tau * l + tau ** 2 * q_out          # the plain sum of the two sups
                if l > 0:
                    mu = q_out + (l / (2 * tau)) * np.logspace(-4, 2, 80)
                    gap_in, gap_out = mu - q_in, mu - q_out
                    ok = (gap_in > 0) & (gap_out > 0)
                    if ok.any():
                        drop = min(drop, float((mu[ok] * tau ** 2 + l2 / (4 * gap_in[ok])
                                                + lp2 / (4 * gap_out[ok])).min()))
                best[e] = max(best[e], base[e] - drop - tau ** 2 * lam_e)
    return best


def rounding_slack(net, x, y, tau):
    """``fpsim.certify``'s float-rounding allowance at radius ``tau`` (l2): a bound must exceed it.

    Taken from the library's private ``_certify`` (which also recomputes its
    own bounds), so that the extra bounds use exactly fpsim's rule.
    """
    return certify.bounds._certify(*certify.bounds._check_certify(net, x, y, "2", tau))[1]


def extra_certified(net, model, x, y, tau, split=True):
    """EXPERIMENTAL. Examples certified at ``tau`` (l2) by ``gap_margins`` and by ``split_margins``.

    Returns
    -------
    gap, split : (n,) bool ndarray
        ``split`` is all False when ``split=False`` (the slow bound skipped).
    """
    slack = rounding_slack(net, x, y, tau)
    gap = gap_margins(net, x, y, tau, dictionary=model.dictionary) > slack
    if not split:
        return gap, np.zeros_like(gap)
    return gap, split_margins(net, x, y, tau, model.dictionary) > slack


def experimental_bounds(config, folder, split=True, curve=()):
    """EXPERIMENTAL. The extra bounds on the saved nets of a run, beside fpsim's interval.

    Loads ``W_clean`` / ``W_adv`` from ``folder/weights.npz`` and uses the
    report's robust-eval examples (the first ``robust_eval_size`` of
    ``model.sample(eval_size, stream(seed, "eval"))``, as in
    ``run_experiment``).  fpsim's interval is recomputed with the report's
    settings and attack stream (it reproduces the report's numbers) so that
    examples certified but broken by an attack can be counted (``unsound``,
    0 expected).

    Parameters
    ----------
    config : Config
        l2 only (``norm == "2"``).
    folder : str
        The run's folder.
    split : bool
        Also evaluate ``split_margins`` (slow).
    curve : sequence of float
        Extra radii: ``[tau, lower, upper]`` on the first 500 examples (PGD 10
        steps, 1 restart), ``lower`` with the extra bounds.

    Returns
    -------
    dict
        ``{"clean" | "adversarial": {lower_fpsim, lower_gap, lower_split,
        lower, upper, unsound, curve, eval_s}}``.
    """
    if config.norm != "2":
        raise ValueError(f"the extra bounds are l2 bounds; this config has norm={config.norm}")
    model, net0 = build(config)
    x, y, _ = model.sample(config.eval_size, stream(config.seed, "eval"))
    xr, yr = x[:config.robust_eval_size], y[:config.robust_eval_size]
    out = {}
    with np.load(os.path.join(folder, "weights.npz")) as weights:
        saved = {part: weights[key] for part, key in (("clean", "W_clean"), ("adversarial", "W_adv"))
                 if key in weights}
    steps = {"clean": config.clean_steps, "adversarial": config.clean_steps + config.adv_steps}
    for part, W in saved.items():
        clock = time.perf_counter()
        net = net0.copy()
        net.W, net.step = W, steps[part]        # the step places the threshold schedule
        ra = certify.robust_accuracy(net, xr, yr, config.norm, config.tau, model=model,
                                     pgd_steps=config.pgd_steps, restarts=config.restarts,
                                     rng=stream(config.seed, "attack"))
        gap, spl = extra_certified(net, model, xr, yr, config.tau, split)
        lower = ra.certified | gap | spl
        res = {"lower_fpsim": ra.lower, "lower_gap": float(gap.mean()),
               "lower_split": float(spl.mean()) if split else None, "lower": float(lower.mean()),
               "upper": ra.upper, "unsound": int(np.sum(lower & ~ra.survived)), "curve": []}
        for t in curve:
            r = certify.robust_accuracy(net, xr[:500], yr[:500], config.norm, t, model=model,
                                        pgd_steps=10, restarts=1, rng=stream(config.seed, "attack"))
            g, s = extra_certified(net, model, xr[:500], yr[:500], t, split)
            res["curve"].append([t, float((r.certified | g | s).mean()), r.upper])
        res["eval_s"] = time.perf_counter() - clock
        out[part] = res
    return out


def ideal(name, config, taus, n=1000, split=True):
    """EXPERIMENTAL. Robust interval of the ideal pure-atom net: the best a perfectly purified net can do.

    Row ``j`` is ``w*_j M e_j`` (one neuron per atom) at the config's final
    threshold; evaluated on ``n`` held-out samples at each radius in ``taus``,
    certified by ``fpsim.certify`` and the extra bounds.  Prints, returns nothing.
    """
    model, net0 = build(config)
    W = (model.dictionary * model.w_star).T.astype(config.dtype)
    net = TwoLayerNet(W, threshold=net0.threshold.end, activation=config.activation, q=config.q,
                      rho=config.rho)
    x, y, _ = model.sample(n, stream(config.seed, "eval"))
    lin = np.abs(x.astype(np.float64) @ model.dictionary @ model.w_star) / np.linalg.norm(model.w_star)
    print(f"{name}: ideal net acc {net.accuracy(x, y):.4f} (theta={net0.threshold.end:g}, "
          f"margin={config.margin:g}, k={config.k:g})")
    for t in taus:
        ra = certify.robust_accuracy(net, x, y, "2", t, model=model, pgd_steps=20, restarts=2)
        gap, spl = extra_certified(net, model, x, y, t, split)
        lower = ra.certified | gap | spl
        print(f"  tau={t:.4g} (={t * math.sqrt(config.k):.2f}/sqrt(k)): certified {lower.mean():.3f} "
              f"(fpsim.certify {ra.lower:.3f}) attacked {ra.upper:.3f}; linear rule w* robust "
              f"{np.mean(lin > t):.3f}; unsound {int(np.sum(lower & ~ra.survived))}")


def selftest(trials=300, samples=20000, seed=1):
    """EXPERIMENTAL. Monte-Carlo soundness check of ``gap_margins``/``split_margins`` on small random nets.

    A certified lower bound must never exceed the smallest margin found by
    sampling the ball (half the samples on its boundary).  Returns the number
    of violations (0 expected).
    """
    rng = np.random.default_rng(seed)
    bad = tested = positive = 0
    for _ in range(trials):
        d, m = int(rng.integers(2, 6)), int(rng.integers(1, 8))
        M = np.linalg.qr(rng.standard_normal((d, d)))[0]
        W = rng.standard_normal((m, d)) * rng.uniform(0.1, 2, size=(m, 1))
        if rng.random() < 0.5:   # near-atom neurons
            W = M[:, rng.integers(0, d, m)].T * rng.uniform(0.5, 2, (m, 1)) + 0.2 * rng.standard_normal((m, d))
        net = TwoLayerNet(W.astype(np.float64), threshold=rng.uniform(0.05, 0.6))
        x = rng.standard_normal((4, d)) * 0.7
        y = np.where(rng.random(4) < 0.5, 1, -1)
        tau = rng.uniform(0.05, 1.0)
        g = gap_margins(net, x, y, tau, dictionary=M)
        s = split_margins(net, x, y, tau, M)
        for e in range(4):
            dirs = rng.standard_normal((samples, d))
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
            r = tau * rng.random((samples, 1)) ** (1 / d)
            r[: samples // 2] = tau
            worst = float((y[e] * net.forward(x[e] + dirs * r)).min())
            tested += 1
            positive += int(g[e] > 0 or s[e] > 0)
            if g[e] > worst + 1e-9 or s[e] > worst + 1e-9:
                bad += 1
                print(f"VIOLATION: gap {g[e]:.4g} split {s[e]:.4g} > sampled worst {worst:.4g}")
    print(f"selftest: {tested} examples, {positive} with a positive bound, {bad} violations")
    return bad


# -- output ------------------------------------------------------------------

def table(path):
    """Print a markdown table of every line of a JSON-lines file written by this script.

    Reads both formats: lines of the old stand-alone version (no ``format``
    key; ``clean_net``/``adv_net``; their ``lower`` already includes the extra
    bounds where they were evaluated) and lines of this version
    (``format: 2``; ``lower`` is fpsim's certified end, followed by
    ``(ext X)`` when ``--extra-bounds`` raised it to X).  "changes" are the
    training fields that differ from ``CONFIGS["base"]``.
    """
    base = CONFIGS["base"].to_dict()
    print("| run | changes from BASE | clean s | adv s | clean acc | clean robust [cert, attack] | "
          "adv acc | adv robust [cert, attack] | purified (median cos) | top-5 | cos0 clean/adv | "
          "dense share clean/adv |")
    print("|" + "---|" * 12)
    with open(path) as fh:
        for no, line in enumerate(fh, 1):
            if line.strip():
                rec = json.loads(line)
                row = _new_row(rec) if rec.get("format") == 2 else _old_row(rec)
                print("| " + " | ".join([str(no), _changes(rec["config"], base)] + row) + " |")


def _old_row(rec):
    """Table cells (after "changes") of a line written by the old stand-alone version."""
    c, a = rec["clean_net"], rec.get("adv_net")
    row = [f"{rec['clean_s']:.0f}", f"{rec.get('adv_s', 0):.0f}", f"{c['clean_acc']:.4f}",
           f"[{c['robust_lower']:.3f}, {c['robust_upper']:.3f}]"]
    if not a:
        return row + ["-", "-", "-", "-", f"{c['median_cos_init']:.2f}/-", f"{c['dict_median_dense_share']:.2f}/-"]
    return row + [f"{a['clean_acc']:.4f}", f"[{a['robust_lower']:.3f}, {a['robust_upper']:.3f}]",
                  f"{rec['purification']['fraction_purified']:.2f} ({rec['purification']['median_cos']:.2f})",
                  f"{rec['top5_energy']:.2f}", f"{c['median_cos_init']:.2f}/{a['median_cos_init']:.2f}",
                  f"{c['dict_median_dense_share']:.2f}/{a['dict_median_dense_share']:.2f}"]


def _new_row(rec):
    """Table cells (after "changes") of a line written by this version."""
    t, ext = rec["timings"], rec.get("experimental", {})

    def interval(part):
        lower, upper = rec[part]["robust"]
        extra = ext.get(part, {}).get("lower")
        more = f" (ext {extra:.3f})" if extra is not None and extra > lower else ""
        return f"[{lower:.3f}{more}, {upper:.3f}]"

    row = [f"{t['clean_training_s']:.0f}", f"{t.get('adversarial_training_s', 0):.0f}",
           f"{rec['clean']['accuracy']:.4f}", interval("clean")]
    cos, mix = rec["cos_init"], rec["dense_mixture"]
    if "adversarial" not in rec:
        return row + ["-", "-", "-", "-", f"{cos['clean']:.2f}/-", f"{mix['clean']['median_share']:.2f}/-"]
    return row + [f"{rec['adversarial']['accuracy']:.4f}", interval("adversarial"),
                  f"{rec['purification']['fraction']:.2f} ({rec['purification']['median_cos']:.2f})",
                  f"{rec['top5_energy']:.2f}", f"{cos['clean']:.2f}/{cos['adversarial']:.2f}",
                  f"{mix['clean']['median_share']:.2f}/{mix['adversarial']['median_share']:.2f}"]


def summarize(rec):
    """Print a few lines per run: timings, both intervals, C1/C4/C5/C7 numbers, verdicts."""
    t = rec["timings"]
    lines = [f"{rec['name']} {rec['overrides'] or ''} -> {rec['folder']}"
             + (f" (reused: {', '.join(rec['reused'])})" if rec["reused"] else "")]
    for part, key in (("clean", "clean_training_s"), ("adversarial", "adversarial_training_s")):
        if part in rec:
            r = rec[part]
            lines.append(f"  {part:<11} {t[key]:6.1f}s acc {r['accuracy']:.4f} robust [{r['robust'][0]:.3f}, "
                         f"{r['robust'][1]:.3f}] dense {r['dense_direction']:.3f} cos0 {rec['cos_init'][part]:.3f} "
                         f"dense-share {rec['dense_mixture'][part]['median_share']:.3f}")
            ext = rec.get("experimental", {}).get(part)
            if ext:
                lines.append(f"    EXPERIMENTAL bounds: lower {ext['lower']:.3f} (fpsim {ext['lower_fpsim']:.3f}, "
                             f"gap {ext['lower_gap']:.3f}, split {ext['lower_split']}) unsound {ext['unsound']} "
                             f"eval {ext['eval_s']:.1f}s"
                             + ("  curve " + " ".join(f"{c[0]:.3g}:[{c[1]:.2f},{c[2]:.2f}]" for c in ext["curve"])
                                if ext["curve"] else ""))
    if "purification" in rec:
        lines.append(f"  purified {rec['purification']['fraction']:.3f} (median cos "
                     f"{rec['purification']['median_cos']:.3f}) top5 {rec['top5_energy']:.3f}")
    lines.append(f"  evaluation {t['evaluation_s']:.1f}s baselines {t['baselines_s']:.1f}s  "
                 + " ".join(f"{k}:{v}" for k, v in rec["verdicts"].items()))
    print("\n".join(lines), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", default=[], help="configs to run (see --list)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="change a Config field in every selected config (pairs: lo,hi)")
    p.add_argument("--out", default="runs/presets.jsonl", help="JSON-lines file to append to / read")
    p.add_argument("--root", default="runs/presets", help="parent folder of the run folders NAME-FINGERPRINT")
    p.add_argument("--progress", action="store_true", help="fpsim's progress lines on stderr")
    p.add_argument("--list", action="store_true", help="list the named configs and exit")
    p.add_argument("--table", action="store_true", help="print a markdown table of --out and exit")
    exp = p.add_argument_group("EXPERIMENTAL (extra bounds of this script, not fpsim's certified interval)")
    exp.add_argument("--extra-bounds", action="store_true",
                     help="evaluate gap_margins and split_margins on the saved nets (l2 only)")
    exp.add_argument("--no-split", action="store_true", help="skip the slow split_margins (a Python loop "
                     "over examples; it only matters for tau > theta)")
    exp.add_argument("--curve", default="", help="comma-separated extra radii (implies --extra-bounds; also for --ideal): "
                     "interval on 500 examples (PGD 10 steps, 1 restart) with the extra bounds")
    exp.add_argument("--ideal", action="store_true",
                     help="instead of training, evaluate the ideal pure-atom net (row j = w*_j M e_j, one "
                          "neuron per atom) of each selected config at tau and the --curve radii")
    exp.add_argument("--selftest", action="store_true", help="Monte-Carlo soundness check of the extra "
                     "bounds on small random nets, then exit")
    exp.add_argument("--trials", type=int, default=300, help="random nets for --selftest (default 300)")
    args = p.parse_args(argv)
    if args.table:
        table(args.out)
        return 0
    if args.selftest:
        return int(selftest(trials=args.trials) > 0)
    if args.list or not args.names:
        for name, config in CONFIGS.items():
            print(f"{name}: {_changes(config.to_dict(), Config().to_dict(), skip=()) or 'Config defaults'}")
        return 0
    try:
        overrides = parse_overrides(args.set)
        configs = select(args.names, overrides)
        curve = [float(t) for t in args.curve.split(",") if t.strip()]
    except (ValueError, TypeError) as err:
        p.error(str(err))
    split = not args.no_split
    if args.ideal:
        for name, config in configs.items():
            ideal(name, config, [config.tau] + curve, split=split)
        return 0
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for name, config in configs.items():
        report, folder, reused = run(name, config, args.root, progress=args.progress)
        rec = record(name, overrides, report, folder, reused)
        if args.extra_bounds or curve:
            rec["experimental"] = experimental_bounds(config, folder, split=split, curve=curve)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(rec, default=float) + "\n")
        summarize(rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
