r"""Scaling: how the radius at which robustness breaks depends on d and k.

``python -m proofs_check.scaling [--quick] [--out DIR] [--seed N] [--strict] [--quiet]``

The claim (``docs/MODEL.md`` §1): the critical radius scales like
:math:`d^{-1/2}` for linear models and like :math:`k^{-1/2}` for the
adversarially trained network (:math:`k \ll d`), clean-trained networks in
between.  Why: a linear rule :math:`\langle u, x\rangle` must weigh all
:math:`d` atoms, so :math:`\|u\|_2 \approx \sqrt d\,|u_j|` while the label
margin :math:`|\langle w^*, z\rangle|` is :math:`O(1)`; a purified network
reads only the :math:`\approx k` atoms present, each of size :math:`\approx
1/\sqrt k`, and a perturbation must change those or switch on absent ones
past a threshold :math:`\approx 1/\sqrt k`, whatever :math:`d` is.

Method.  One :func:`fpsim.experiment.run_experiment` per size (through
:func:`fpsim.sweep.run_sweep`, so a rerun reuses the finished runs), with
the sizes MODEL.md §3 recommends: :math:`m = 2d`, threshold :math:`\theta =
0.5/\sqrt k`, magnitudes :math:`U \in [1, 1.2]`, label margin :math:`\gamma =
0.5`, clean steps :math:`\propto d/k` (an atom is seen in a fraction
:math:`k/d` of the samples) and adversarial training at :math:`\tau =
0.5/\sqrt k` for a number of steps :math:`\propto d` (the same for every
:math:`k`: at :math:`d = 400, k = 16`, a quarter of the clean steps left the
attacked critical radius of the adversarial net 22 % below what four times
as many steps reach).  Then, on the same held-out examples (the report's robust
evaluation set):

* **networks** (clean-trained and adversarially trained, rebuilt from
  ``weights.npz``): the robust-accuracy interval
  (:func:`fpsim.certify.robust_curve`) on a wide geometric grid of radii,
  refined by an evenly spaced grid inside the step that brackets the
  crossings (:func:`fpsim.certify.refined_curve`), and where each end falls below 50 %
  (:func:`fpsim.certify.critical_radius`): the *certified* end gives a lower
  bound on the critical radius, the *attacked* end an upper bound;
* **linear** :math:`f(x) = \langle u, x\rangle + c`
  (:class:`fpsim.baselines.LinearClassifier`), both the one trained cleanly
  with :func:`fpsim.baselines.train_baseline` and the *teacher rule*
  :math:`u = M w^*, c = 0` that defines the labels: its robust accuracy is exact,
  :math:`\Pr[y f(x) - \tau\|u\|_q > 0]`, so it falls below 50 % exactly at the
  median over examples of :math:`\max(y f(x), 0)/\|u\|_q` (a misclassified
  example counts as 0: it is never robust).  That median is its critical
  radius (:func:`fpsim.baselines.linear_critical_radius`), with no grid.  (A linear model
  trained adversarially at the network's :math:`\tau`, far above its own
  critical radius, collapses towards the constant :math:`f = c`, whose 50 %
  crossing measures the class balance, not robustness; the teacher rule, the
  rule that labels the data, stands in for a linear model trained otherwise.)

Slopes are least-squares fits of :math:`\log r` on :math:`\log d` (at fixed
:math:`k`) and on :math:`\log k` (at fixed :math:`d`).

Criteria (from the theory; :data:`TOLERANCE` absorbs measurement noise):

* ``linear ~ d^-1/2``: both linear slopes in :math:`d` lie in
  :math:`[-0.75, -0.25]`;
* ``adversarial net flat in d``: both ends of the adversarial net's slope in
  :math:`d` are less than half as steep as the trained linear model's,
  :math:`|s| < |s_{\rm lin}|/2`;
* ``clean net in between (d)``: each end of the clean net's slope in :math:`d`
  lies in :math:`[s_{\rm lin} - 0.1, s_{\rm adv} + 0.1]` (same end of the adversarial net);
* ``adversarial net ~ k^-1/2``: both ends of its slope in :math:`k` lie in
  :math:`[-0.75, -0.25]`;
* ``linear flat in k``: both linear slopes in :math:`k` are less than half as
  steep as both ends of the adversarial net's;
* ``clean net in between (k)``: each end of its slope in :math:`k` lies in
  :math:`[s_{\rm adv} - 0.1, s_{\rm lin} + 0.1]`;
* ``clean net in between (radii)``: "in between" read as values rather than
  exponents: at every size, each end of the clean net's critical radius exceeds
  the trained linear model's and is at most :data:`RADIUS_SLACK` times the
  same end of the adversarial net's (the 10 % allows for the noise of a 50 %
  crossing estimated from a few hundred examples).

A radius that the grid does not bracket is NaN and fails its criteria.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from fpsim import baselines
from fpsim._io import atomic_write_json
from fpsim._validation import check_choice, stream
from fpsim.baselines import linear_critical_radius
from fpsim.certify import critical_radius, refined_curve
from fpsim.config import Config, eval_set
from fpsim.experiment import load_nets
from fpsim.metrics import fit_slope
from fpsim.sweep import run_sweep

ID = "Scaling"
STATEMENT = ("the critical radius scales like d^-1/2 for linear models and like k^-1/2 for the "
             "adversarially trained network (k << d), clean-trained networks in between")
CRITERION = ("log-log slopes of the critical radius: linear in d within [-0.75, -0.25] and adversarial "
             "net in k within [-0.75, -0.25]; the other two slopes less than half as steep; clean net's "
             "slopes between linear's and adversarial net's (0.1 slack)")
#: The predicted exponent of both power laws.
PREDICTED = -0.5
#: Accepted range of a slope predicted to be -1/2.
SLOPE_RANGE = (-0.75, -0.25)
#: Slack in the exponent for "in between".
TOLERANCE = 0.1
#: Slack factor for "the clean net's radius is at most the adversarial net's".
RADIUS_SLACK = 1.1

#: The sweeps of each mode: ``ds`` at fixed ``k``, ``ks`` at fixed ``d_for_k`` (all with
#: sqrt(d/k) >= 5), and the cost knobs: clean steps per atom (``steps_per_atom * d / k``),
#: adversarial steps per dimension (``adv_per_d * d``), the training attack, held-out examples, PGD
#: steps and restarts of the evaluation, points of the coarse and of the fine radius grid
#: (:func:`fpsim.certify.refined_curve`), linear SGD steps.
MODES = {
    "quick": dict(k=2.0, ds=(50, 100, 200), d_for_k=200, ks=(2.0, 4.0, 8.0), steps_per_atom=20,
                  adv_per_d=1.0, attack="fgm", n_eval=200, pgd_steps=10, restarts=1, grid_points=7,
                  fine_points=6, linear_steps=400),
    "full": dict(k=4.0, ds=(100, 200, 400), d_for_k=400, ks=(4.0, 8.0, 16.0), steps_per_atom=40,
                 adv_per_d=2.5, attack="pgd", n_eval=400, pgd_steps=20, restarts=2, grid_points=8,
                 fine_points=10, linear_steps=1000),
}
#: Coarse radii of the network curves: ``geomspace(*GRID, grid_points) / sqrt(k)``.
GRID = (0.05, 4.0)


def config_for(d, k, mode, seed=0):
    r"""The :class:`~fpsim.config.Config` of one size of the sweep.

    :math:`m = 2d`, :math:`\theta = 0.5/\sqrt k`, :math:`U \in [1, 1.2]`,
    :math:`\gamma = 0.5`, :math:`\tau = 0.5/\sqrt k`, clean steps
    ``steps_per_atom * d / k`` (batch 256, :math:`\eta = 1`), adversarial
    steps ``adv_per_d * d``; the report's own curve is reduced to one point
    (this module computes a wider one).
    """
    s = MODES[check_choice("mode", mode, MODES)]
    clean_steps = int(round(s["steps_per_atom"] * d / k))
    return Config(d=d, k=k, m=2 * d, magnitude=(1.0, 1.2), margin=0.5, threshold=0.5 / float(np.sqrt(k)),
                  lr=1.0, batch=256, clean_steps=clean_steps,
                  adv_steps=int(round(s["adv_per_d"] * d)), attack=s["attack"],
                  tau=0.5 / float(np.sqrt(k)), eval_size=s["n_eval"], robust_eval_size=s["n_eval"],
                  pgd_steps=s["pgd_steps"], restarts=s["restarts"], curve_points=1, seed=seed)


def measure(config, out_dir, mode):
    """Critical radii of one finished run: linear (trained, teacher) and both networks.

    Parameters
    ----------
    config : Config
        The run's config.
    out_dir : str
        The run's folder (holding ``weights.npz``).
    mode : {"quick", "full"}

    Returns
    -------
    row : dict
        ``d``, ``k``, ``linear`` ``{trained, teacher}``; ``clean_net`` and
        ``adversarial_net`` ``{lower, upper, curve}`` (certified and attacked
        ends; ``None`` where the grid does not bracket the crossing).
    """
    s = MODES[check_choice("mode", mode, MODES)]
    model, nets = load_nets(out_dir, config)
    x, y, _ = eval_set(config, model)
    x, y = x[:config.robust_eval_size], y[:config.robust_eval_size]
    trained, _ = baselines.train_baseline(
        baselines.LinearClassifier(config.d, seed=stream(config.seed, "baseline").integers(2**31)),
        model, steps=s["linear_steps"], batch=config.batch, lr=config.lr, seed=config.seed)
    teacher = baselines.LinearClassifier(config.d)
    teacher.u[:] = model.dense_direction  # M w* / ||M w*||: <u, x> = <w*, z> / ||w*|| labels x
    row = {"d": config.d, "k": config.k,
           "linear": {name: linear_critical_radius(linear, x, y, config.norm)
                      for name, linear in (("trained", trained), ("teacher", teacher))}}
    taus = np.geomspace(*GRID, s["grid_points"]) / np.sqrt(config.k)
    for name, net in (("clean_net", nets["clean"]), ("adversarial_net", nets["adversarial"])):
        curve = refined_curve(net, x, y, config.norm, taus, s["fine_points"], model=model,
                              pgd_steps=config.pgd_steps, restarts=config.restarts, seed=config.seed)
        radii = critical_radius(curve)
        row[name] = {end: None if np.isnan(r) else r for end, r in radii.items()}
        row[name]["curve"] = {key: value.tolist() for key, value in curve.items()}
    return row


def _radius(row, model, end):
    value = row["linear"][end] if model == "linear" else row[model][end]
    return np.nan if value is None else value


def slopes(rows, axis):
    """Fitted exponents of every critical radius against ``axis`` (``"d"`` or ``"k"``)."""
    sizes = [row[axis] for row in rows]
    return {f"{model} {end}": fit_slope(sizes, [_radius(row, model, end) for row in rows])
            for model, ends in (("linear", ("trained", "teacher")),
                                ("clean_net", ("lower", "upper")),
                                ("adversarial_net", ("lower", "upper")))
            for end in ends}


def _within(value, low, high):
    return bool(low <= value <= high)


def judge(d_slopes, k_slopes, rows):
    """The criteria of the module docstring: ``[{criterion, measured, passed}]``.

    Parameters
    ----------
    d_slopes, k_slopes : dict
        From :func:`slopes` against ``d`` and against ``k``.
    rows : list of dict
        From :func:`measure`, every size.
    """
    lo, hi = SLOPE_RANGE
    s = d_slopes
    lin = abs(s["linear trained"])
    checks = [
        {"criterion": f"linear ~ d^-1/2: both linear slopes in d within [{lo}, {hi}]",
         "measured": {k: s[k] for k in ("linear trained", "linear teacher")},
         "passed": all(_within(s[k], lo, hi) for k in ("linear trained", "linear teacher"))},
        {"criterion": "adversarial net flat in d: |slope| < |trained-linear slope|/2, both ends",
         "measured": {"adversarial_net lower": s["adversarial_net lower"],
                      "adversarial_net upper": s["adversarial_net upper"], "|linear trained|/2": lin / 2},
         "passed": all(abs(s[f"adversarial_net {e}"]) < lin / 2 for e in ("lower", "upper"))},
        {"criterion": f"clean net in between (d): slope in [linear trained - {TOLERANCE}, "
                      f"adversarial net (same end) + {TOLERANCE}]",
         "measured": {f"clean_net {e}": s[f"clean_net {e}"] for e in ("lower", "upper")},
         "passed": all(_within(s[f"clean_net {e}"], s["linear trained"] - TOLERANCE,
                               s[f"adversarial_net {e}"] + TOLERANCE) for e in ("lower", "upper"))},
    ]
    s = k_slopes
    adv = min(abs(s["adversarial_net lower"]), abs(s["adversarial_net upper"]))
    checks += [
        {"criterion": f"adversarial net ~ k^-1/2: slope in k within [{lo}, {hi}], both ends",
         "measured": {f"adversarial_net {e}": s[f"adversarial_net {e}"] for e in ("lower", "upper")},
         "passed": all(_within(s[f"adversarial_net {e}"], lo, hi) for e in ("lower", "upper"))},
        {"criterion": "linear flat in k: |slope| < min |adversarial-net slope|/2",
         "measured": {"linear trained": s["linear trained"], "linear teacher": s["linear teacher"],
                      "min |adversarial_net|/2": adv / 2},
         "passed": all(abs(s[k]) < adv / 2 for k in ("linear trained", "linear teacher"))},
        {"criterion": f"clean net in between (k): slope in [adversarial net (same end) - {TOLERANCE}, "
                      f"linear trained + {TOLERANCE}]",
         "measured": {f"clean_net {e}": s[f"clean_net {e}"] for e in ("lower", "upper")},
         "passed": all(_within(s[f"clean_net {e}"], s[f"adversarial_net {e}"] - TOLERANCE,
                               s["linear trained"] + TOLERANCE) for e in ("lower", "upper"))},
    ]
    over_linear = np.array([_radius(r, "clean_net", e) / _radius(r, "linear", "trained")
                            for r in rows for e in ("lower", "upper")])
    over_adversarial = np.array([_radius(r, "clean_net", e) / _radius(r, "adversarial_net", e)
                                 for r in rows for e in ("lower", "upper")])
    checks.append(
        {"criterion": f"clean net in between (radii): clean/linear > 1 and clean/adversarial (same end) "
                      f"<= {RADIUS_SLACK} at every size",
         "measured": {"min clean/linear": float(over_linear.min()),
                      "max clean/adversarial": float(over_adversarial.max())},
         "passed": bool((over_linear > 1).all() and (over_adversarial <= RADIUS_SLACK).all())})
    return checks


def _fmt(value):
    return "   nan" if value is None or np.isnan(value) else f"{value:6.3f}"


def render(rows, d_slopes, k_slopes, checks):
    """The table of radii, the slopes and the verdicts as text."""
    lines = [f"{ID}: {STATEMENT}",
             "critical radius = tau where robust accuracy falls below 50 %; network columns are "
             "(certified, attacked) = (lower, upper) bounds",
             f"{'d':>5} {'k':>4} | {'linear':>6} {'teacher':>7} | {'clean net (lo, up)':>18} | "
             f"{'adv net (lo, up)':>18}"]
    for r in rows:
        lines.append(f"{r['d']:>5} {r['k']:>4g} | {_fmt(r['linear']['trained'])} "
                     f"{_fmt(r['linear']['teacher']):>7} | "
                     f"({_fmt(r['clean_net']['lower'])}, {_fmt(r['clean_net']['upper'])}) | "
                     f"({_fmt(r['adversarial_net']['lower'])}, {_fmt(r['adversarial_net']['upper'])})")
    for axis, fitted in (("d", d_slopes), ("k", k_slopes)):
        lines.append(f"slopes in {axis} (predicted {PREDICTED:g} for "
                     f"{'linear' if axis == 'd' else 'adversarial net'}, 0 for the other): "
                     + ", ".join(f"{name} {_fmt(v).strip()}" for name, v in fitted.items()))
    for check in checks:
        measured = ", ".join(f"{k} {_fmt(v).strip()}" for k, v in check["measured"].items())
        lines.append(f"{'PASS' if check['passed'] else 'FAIL'}  {check['criterion']}: {measured}")
    return "\n".join(lines)


def main(argv=None):
    """Command line: run the sweep, measure, print the table and verdicts, write ``scaling.json``."""
    parser = argparse.ArgumentParser(
        prog="python -m proofs_check.scaling",
        description="Measure the critical radius across d (and k) and check the Scaling claim.")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes, cheaper training and evaluation (< 90 s)")
    parser.add_argument("--out", default=None, help="output folder [default runs/scaling-MODE]; "
                        "a rerun reuses the finished runs in it")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run [default 0]")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a criterion FAILs")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    s = MODES[mode]
    out = args.out or os.path.join("runs", f"scaling-{mode}")
    clock = time.perf_counter()
    sizes = {f"d{d}-k{s['k']:g}": (d, s["k"]) for d in s["ds"]}
    sizes.update({f"d{s['d_for_k']}-k{k:g}": (s["d_for_k"], k) for k in s["ks"]})
    try:
        configs = {name: config_for(d, k, mode, args.seed) for name, (d, k) in sizes.items()}
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    run_sweep(configs, out, progress=not args.quiet)
    rows = {}
    for name, config in configs.items():
        if not args.quiet:
            print(f"[scaling] critical radii of {name}", file=sys.stderr)
        rows[name] = measure(config, os.path.join(out, name), mode)
    d_rows = [rows[f"d{d}-k{s['k']:g}"] for d in s["ds"]]
    k_rows = [rows[f"d{s['d_for_k']}-k{k:g}"] for k in s["ks"]]
    d_slopes = slopes(d_rows, "d")
    k_slopes = slopes(k_rows, "k")
    checks = judge(d_slopes, k_slopes, list(rows.values()))
    passed = all(check["passed"] for check in checks)
    result = {"id": ID, "statement": STATEMENT, "mode": mode, "settings": s, "grid": GRID,
              "configs": {name: config.to_dict() for name, config in configs.items()},
              "rows": list(rows.values()), "slopes": {"d": d_slopes, "k": k_slopes},
              "checks": checks, "verdict": "PASS" if passed else "FAIL",
              "seconds": time.perf_counter() - clock}
    path = os.path.join(out, "scaling.json")
    atomic_write_json(path, result)
    print(render(list(rows.values()), d_slopes, k_slopes, checks))
    print(f"verdict: {result['verdict']} ({result['seconds']:.0f} s); wrote {path}")
    return 1 if args.strict and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
