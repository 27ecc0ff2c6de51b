r"""The finite-size law and the phase diagram of C2 and C3 at one radius.

``python -m proofs_check.phase_diagram --d 400 800 --k-exponents 0.33 0.5 --out runs/phase
[--client tcp://HOST:PORT] [--quick]``; ``--combine GRID [GRID ...] --out OUT`` puts the
cells of several finished grids into one table, fit and figure (:func:`combine`).

For every :math:`d` and exponent :math:`c`, :math:`k = \mathrm{round}(d^c)`, one
run of :func:`fpsim.experiment.run_experiment` (through
:func:`fpsim.sweep.run_sweep`, one folder ``OUT/d{d}-k{k}`` per point,
resumable, on a Dask cluster when ``--client`` is given), from a base preset
(default ``paper``) with :math:`m = 2d`, threshold :math:`\theta = 0.6/\sqrt k`,
training radius :math:`\tau = 0.4/\sqrt k` (the ``paper`` preset's ratios),
clean steps :data:`STEPS_PER_ATOM` :math:`\cdot d/k` (an atom is present in a
fraction :math:`k/d` of the samples) and half as many adversarial steps.
Where :math:`\theta` is out of reach at initialisation (large :math:`d/k`), the
clean threshold ramps to it from :func:`fpsim.finite_size.start_threshold`
(3.5 times the random level) over the first :math:`1/`:data:`RAMP_FRACTION`
of the clean steps.
Then :func:`fpsim.finite_size.finite_size_point` on each: the radii where the
certified and the attacked robust accuracy of the clean, the adversarial and
the ideal purified net cross 99 %, 50 % and 1 %, on radii from
:math:`0.1/\sqrt k` to :math:`4/\sqrt k`, and the clean net's dense mixture
projected on :math:`\hat w^*` (median :math:`\rho`).

**The hypothesis** (MODEL.md §1, "C2 and C3 at the same τ"): the ratio
:math:`R = r^{\rm clean}_{50\%} / r^{\rm ideal}_{50\%}` (attacked ends) falls like
:math:`1/(\sqrt k\,\rho)`.

**Criterion, fixed before any number was seen**: least-squares fit of
:math:`\log R = a + s \log(\sqrt k\,\rho)` over the points with finite
positive :math:`R` and :math:`\rho > 0`.  PASS if :math:`|s - (-1)| \le`
:data:`TOLERANCE` (0.5); FAIL if not; UNDECIDED if fewer than
:data:`MIN_POINTS` (3) points enter the fit or their :math:`\sqrt k\rho` span
less than a factor :data:`MIN_SPAN` (1.5) — then the fit has no leverage and
says nothing.  The joint fit :math:`\log R = a + s_d \log d + s_k \log k` is
printed alongside (descriptive, no verdict).

**The phase diagram**: a cell :math:`(d, k)` is in the C2+C3 phase when the
clean net's attacked robust accuracy falls below 1 % at a smaller radius than
the one where the adversarial net's certified robust accuracy falls below 99 %
(:func:`fpsim.finite_size.separation`; the ratio :math:`s` of those radii is
the heat map of ``phase.png``, cells with :math:`s < 1` are marked).

Writes ``OUT/phase.csv``, ``OUT/phase.md``, ``OUT/phase.json`` and
``OUT/phase.png``; prints the table, the fits and the verdict.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time

import numpy as np

from fpsim._io import atomic_write_json, read_json
from fpsim.config import PRESETS, preset
from fpsim.finite_size import START_LEVEL, finite_size_point, jsonable, separation, start_threshold
from fpsim.sweep import run_sweep

ID = "Finite-size law"
STATEMENT = ("the clean net's 50 % radius over the ideal purified net's falls like 1/(sqrt(k) rho), "
             "rho the clean dense mixture's projection on w*/|w*| relative to the neuron's norm")
#: Predicted slope of log R against log(sqrt(k) rho).
PREDICTED = -1.0
#: Accepted distance of the fitted slope from :data:`PREDICTED`.
TOLERANCE = 0.5
#: Fewest points, and smallest max/min of sqrt(k) rho among them, for a verdict.
MIN_POINTS = 3
MIN_SPAN = 1.5
CRITERION = (f"slope of log R on log(sqrt(k) rho) within {PREDICTED:g} +- {TOLERANCE:g}; UNDECIDED with "
             f"< {MIN_POINTS} points or sqrt(k) rho spanning < x{MIN_SPAN:g}")
#: Clean SGD steps per atom of the grid (``paper``: 3000 steps at d/k = 25 is 120).
STEPS_PER_ATOM = 120
#: The clean threshold ramp (where there is one) takes the first ``1/RAMP_FRACTION`` of the clean steps.
RAMP_FRACTION = 4
#: Settings of ``--quick``: cheap training and evaluation, to show the command works.
QUICK = dict(steps_per_atom=15, robust_eval_size=200, eval_size=400, pgd_steps=10, restarts=1, points=8)
FULL = dict(steps_per_atom=STEPS_PER_ATOM, robust_eval_size=500, eval_size=1000, pgd_steps=20, restarts=2,
            points=12)
COLUMNS = ("d", "k", "c", "clean_acc", "adv_acc", "rho", "sqrt_k_rho", "clean_up50", "ideal_up50", "R",
           "clean_up01", "adv_lo99", "adv_up99", "ideal_lo99", "s", "s_ideal", "holds")


def config_for(d, c, base="paper", quick=False, seed=0, steps_per_atom=None, adversarial=True,
               start_level=START_LEVEL, adv_steps_per_atom=None, lr_scale=1.0, adv_lr_scale=1.0):
    r"""The :class:`~fpsim.config.Config` of grid cell :math:`(d, c)`.

    :math:`k = \mathrm{round}(d^c)` (at least 1, below :math:`d`), :math:`m = 2d`,
    :math:`\theta = 0.6/\sqrt k`, :math:`\tau = 0.4/\sqrt k`, clean steps
    ``steps_per_atom * d / k``, adversarial steps half of that, no C6
    baselines and no extra low-rank or FGM adversarial runs, the report's own
    curve reduced to 3 points.  ``steps_per_atom``
    overrides the mode's value.  When :math:`\theta` exceeds
    :func:`~fpsim.finite_size.start_threshold` (nothing would fire at
    initialisation), the clean threshold ramps from there to :math:`\theta` over
    the first ``clean_steps // RAMP_FRACTION`` steps (``start_level``: its
    ``level``, in units of the random level).  ``adversarial=False``: no adversarial phase
    (the cell then gives the clean and the ideal net, hence :math:`R` and
    ``s_ideal``; adversarial training is the one phase whose cost grows like
    :math:`d^2` per step, so this reaches larger :math:`d` here).
    ``adv_steps_per_atom``: adversarial steps ``adv_steps_per_atom * d / k``
    instead of half the clean steps.  ``lr_scale`` and ``adv_lr_scale``
    multiply the base preset's clean and adversarial step sizes (``lr``,
    ``adv_lr``): at large :math:`d/k` the units fire on few inputs and grow
    slowly, so the base clean step size leaves the net near its
    initialisation within the grid's steps (``docs/finite-size.md``).
    """
    for name, value in (("lr_scale", lr_scale), ("adv_lr_scale", adv_lr_scale),
                        ("adv_steps_per_atom", 1.0 if adv_steps_per_atom is None else adv_steps_per_atom)):
        if not (isinstance(value, (int, float)) and 0 < value < math.inf):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    s = QUICK if quick else FULL
    k = float(max(1, round(d ** c)))
    if k >= d:
        raise ValueError(f"k = round(d**c) = {k:g} must be below d = {d}; lower the exponent c = {c}")
    per_atom = s["steps_per_atom"] if steps_per_atom is None else steps_per_atom
    clean_steps = max(1, int(round(per_atom * d / k)))
    root = math.sqrt(k)
    adv_steps = max(1, clean_steps // 2 if adv_steps_per_atom is None else int(round(adv_steps_per_atom * d / k)))
    step = preset(base)
    adv_lr = step.lr if step.adv_lr is None else step.adv_lr
    config = preset(base, d=int(d), k=k, m=2 * int(d), threshold=0.6 / root, tau=0.4 / root,
                    lr=step.lr * lr_scale, adv_lr=adv_lr * adv_lr_scale,
                    clean_steps=clean_steps, adv_steps=adv_steps if adversarial else 0,
                    baseline_steps=0,
                    lowrank_ranks=None, fgm_check=False,
                    eval_size=s["eval_size"], robust_eval_size=s["robust_eval_size"], pgd_steps=s["pgd_steps"],
                    restarts=s["restarts"], curve_points=3, seed=seed)
    start = start_threshold(config, start_level)
    if start < config.threshold:
        config = config.replace(threshold=start, threshold_end=config.threshold,
                                ramp_steps=max(1, clean_steps // RAMP_FRACTION))
    return config


def row_of(c, point):
    """One table row (a dict over :data:`COLUMNS`) from a :func:`finite_size_point` result."""
    sep = separation(point)
    nets = point["nets"]
    adv = nets.get("adversarial", {"accuracy": float("nan"), "upper": {"0.99": float("nan")}})
    return {"d": point["d"], "k": point["k"], "c": c,
            "clean_acc": nets["clean"]["accuracy"], "adv_acc": adv["accuracy"],
            "rho": point["rho"]["clean"]["median"], "sqrt_k_rho": point["sqrt_k_rho"],
            "clean_up50": nets["clean"]["upper"]["0.5"], "ideal_up50": nets["ideal"]["upper"]["0.5"],
            "R": point["ratio"], "clean_up01": sep["clean_1pct"], "adv_lo99": sep["adversarial_99pct"],
            "adv_up99": adv["upper"]["0.99"], "ideal_lo99": sep["ideal_99pct"],
            "s": sep["ratio"], "s_ideal": sep["ideal_ratio"], "holds": sep["holds"]}


def fit(rows):
    r"""Least-squares fits of :math:`\log R` on :math:`\log(\sqrt k\rho)`, on :math:`\log d, \log k`, on all three.

    Returns
    -------
    dict
        ``points`` used, ``span`` (max/min of :math:`\sqrt k\rho`), ``slope``
        on :math:`\log(\sqrt k\rho)` and ``intercept``; ``slope_d``, ``slope_k``
        of the joint fit on :math:`\log d, \log k`; ``full``: the slopes
        ``d``, ``k``, ``sqrt_k_rho`` of the fit on all three (descriptive: does
        :math:`\rho` explain what :math:`d, k` leave?); a fit with fewer points
        than parameters, or a singular design, gives NaN.  ``verdict`` (PASS /
        FAIL / UNDECIDED) by the criterion of the module docstring, from ``slope`` only.
    """
    use = [r for r in rows if np.isfinite(r["R"]) and r["R"] > 0 and r["sqrt_k_rho"] > 0]
    out = {"points": len(use), "span": float("nan"), "slope": float("nan"), "intercept": float("nan"),
           "slope_d": float("nan"), "slope_k": float("nan"),
           "full": {"d": float("nan"), "k": float("nan"), "sqrt_k_rho": float("nan")}}
    if use:
        logR = np.log([r["R"] for r in use])
        x = np.log([r["sqrt_k_rho"] for r in use])
        out["span"] = float(np.exp(x.max() - x.min()))
        if len(use) >= 2 and x.max() > x.min():
            out["slope"], out["intercept"] = (float(v) for v in np.polyfit(x, logR, 1))
        design = np.column_stack([np.ones(len(use)), np.log([r["d"] for r in use]),
                                  np.log([r["k"] for r in use])])
        if len(use) >= 3 and np.linalg.matrix_rank(design) == 3:
            coef = np.linalg.lstsq(design, logR, rcond=None)[0]
            out["slope_d"], out["slope_k"] = float(coef[1]), float(coef[2])
        design = np.column_stack([design, x])
        if len(use) >= 4 and np.linalg.matrix_rank(design) == 4:
            coef = np.linalg.lstsq(design, logR, rcond=None)[0]
            out["full"] = {"d": float(coef[1]), "k": float(coef[2]), "sqrt_k_rho": float(coef[3])}
    if out["points"] < MIN_POINTS or not out["span"] >= MIN_SPAN or not np.isfinite(out["slope"]):
        out["verdict"] = "UNDECIDED"
    else:
        out["verdict"] = "PASS" if abs(out["slope"] - PREDICTED) <= TOLERANCE else "FAIL"
    return out


def _fmt(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value == float("inf"):
        return "inf"
    return f"{value:.3g}"


def render(rows, fitted):
    """The table (markdown), the fits and the verdict, as text."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[col]) for col in COLUMNS) + " |" for r in rows]
    lines += ["",
              "Radii are in the run's norm; `up` = attacked end, `lo` = certified end; "
              "suffix = accuracy level "
              "(50, 01 = 1 %, 99). R = clean_up50 / ideal_up50; s = clean_up01 / adv_lo99 "
              "(C2 and C3 hold at one radius iff s < 1); s_ideal = clean_up01 / ideal_lo99; "
              "0 = below the level already at radius 0, inf = not crossed up to 4/sqrt(k) (clean_up01, s, "
              "s_ideal: also when the clean accuracy is <= 0.99, where C2 holds nowhere); "
              "n/a = no adversarial net in the cell (--no-adversarial).",
              "",
              f"Fit log R = a + slope log(sqrt(k) rho): slope {_fmt(fitted['slope'])} (predicted "
              f"{PREDICTED:g}) over {fitted['points']} points, sqrt(k) rho spanning x{_fmt(fitted['span'])}",
              f"Joint fit log R = a + s_d log d + s_k log k: s_d {_fmt(fitted['slope_d'])}, "
              f"s_k {_fmt(fitted['slope_k'])}",
              f"Full fit log R = a + s_d log d + s_k log k + s_rho log(sqrt(k) rho): "
              f"s_d {_fmt(fitted['full']['d'])}, s_k {_fmt(fitted['full']['k'])}, "
              f"s_rho {_fmt(fitted['full']['sqrt_k_rho'])}",
              f"{fitted['verdict']}  {ID}: {STATEMENT}",
              f"      criterion: {CRITERION}"]
    return "\n".join(lines)


def write_csv(path, rows):
    """``phase.csv``: one line per cell, the columns of :data:`COLUMNS`."""
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row[c] for c in COLUMNS})
    os.replace(tmp, path)


def plot(path, rows, fitted, ds, exponents):
    """``phase.png``: heat map of :math:`\\log_{10} s` over (d, c) with the C2+C3 cells marked,
    and :math:`R` against :math:`\\sqrt k\\rho` with the fit and the predicted slope."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    grid = np.full((len(exponents), len(ds)), np.nan)
    cells = {(r["d"], r["c"]): r for r in rows}
    for i, c in enumerate(exponents):
        for j, d in enumerate(ds):
            r = cells.get((d, c))
            if r is not None and not math.isnan(r["s"]):  # nan: no adversarial net, left blank
                grid[i, j] = np.log10(r["s"]) if np.isfinite(r["s"]) and r["s"] > 0 else 2.0
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
    bound = max(0.5, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0)
    image = ax.imshow(grid, origin="lower", cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    fig.colorbar(image, ax=ax, label="log10 s  (s = clean 1 % / adv. certified 99 % radius)")
    for i, c in enumerate(exponents):
        for j, d in enumerate(ds):
            r = cells.get((d, c))
            if r is None:
                continue
            ax.text(j, i, f"k={r['k']:g}\ns={_fmt(r['s'])}\ns_ideal={_fmt(r['s_ideal'])}\nR={_fmt(r['R'])}",
                    ha="center", va="center", fontsize=7)
            if r["holds"]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="limegreen", lw=3))
    ax.set_xticks(range(len(ds)), [str(d) for d in ds])
    ax.set_yticks(range(len(exponents)), [f"{c:g}" for c in exponents])
    ax.set(xlabel="d", ylabel="c (k = round(d^c))",
           title="C2 and C3 at one radius (green: s < 1, both hold)")
    use = [r for r in rows if np.isfinite(r["R"]) and r["R"] > 0 and r["sqrt_k_rho"] > 0]
    if use:
        x = np.array([r["sqrt_k_rho"] for r in use])
        bx.scatter(x, [r["R"] for r in use], c=[r["d"] for r in use], cmap="viridis")
        for r in use:
            bx.annotate(f"d={r['d']},k={r['k']:g}", (r["sqrt_k_rho"], r["R"]), fontsize=7)
        xs = np.geomspace(x.min(), x.max(), 20) if x.max() > x.min() else x
        if np.isfinite(fitted["slope"]):
            bx.plot(xs, np.exp(fitted["intercept"]) * xs ** fitted["slope"], "k-",
                    label=f"fit: slope {fitted['slope']:.2f}")
        anchor = np.exp(np.mean(np.log([r["R"] for r in use]) - PREDICTED * np.log(x)))
        bx.plot(xs, anchor * xs ** PREDICTED, "k--", label=f"hypothesis: slope {PREDICTED:g}")
        bx.set_xscale("log")
        bx.set_yscale("log")
        bx.legend(fontsize=8)
    bx.set(xlabel="sqrt(k) * rho (clean net, median)", ylabel="R = clean / ideal 50 % radius (attacked)",
           title=f"finite-size law: {fitted['verdict']}")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def run(ds, exponents, out, client=None, quick=False, base="paper", seed=0, steps_per_atom=None,
        progress=True, adversarial=True, start_level=START_LEVEL, adv_steps_per_atom=None, lr_scale=1.0,
        adv_lr_scale=1.0):
    """Run the grid, measure every cell, fit, write ``phase.csv/md/json/png`` into ``out``.

    Parameters
    ----------
    ds : sequence of int
        Dimensions :math:`d`.
    exponents : sequence of float in (0, 1)
        :math:`c`, with :math:`k = \\mathrm{round}(d^c)`.
    out : str
        Output folder (one sub-folder per cell; a rerun reuses finished cells).
    client : dask.distributed.Client, optional
        Run the cells and their measurements as tasks of this client.
    quick, base, seed, steps_per_atom, adversarial, start_level, adv_steps_per_atom, lr_scale, adv_lr_scale
        As :func:`config_for`.
    progress : bool, default True

    Returns
    -------
    rows : list of dict
        One per cell (:data:`COLUMNS`), ``d`` then ``c`` ascending; two exponents
        giving the same ``k`` make one cell.
    fitted : dict
        From :func:`fit`.
    text : str
        From :func:`render`.
    figure : str
        Path of ``phase.png``, or why there is none.
    """
    ds, exponents = sorted(set(ds)), sorted(set(exponents))
    settings = QUICK if quick else FULL
    clock = time.perf_counter()
    cells = {(d, c): config_for(d, c, base, quick, seed, steps_per_atom, adversarial, start_level,
                                adv_steps_per_atom, lr_scale, adv_lr_scale)
             for d in ds for c in exponents}
    names = {}
    for (d, c), config in cells.items():
        name = f"d{d}-k{config.k:g}"
        if name in names.values():  # two exponents rounding to one k: one run
            continue
        names[(d, c)] = name
    # per-run figures are not needed here (``fpsim report DIR`` draws them later)
    run_sweep({names[key]: cells[key] for key in names}, out, client=client, progress=progress, figures=False)
    folders = [os.path.join(out, names[key]) for key in names]
    kwargs = dict(points=settings["points"], progress=progress)
    if client is None:
        points = [finite_size_point(folder, **kwargs) for folder in folders]
    else:
        points = client.gather(client.map(finite_size_point, folders, **kwargs, pure=False))
    rows = [row_of(c, point) for (d, c), point in zip(names, points)]
    info = {"quick": quick, "preset": base, "steps_per_atom": steps_per_atom,
            "adv_steps_per_atom": adv_steps_per_atom, "lr_scale": lr_scale, "adv_lr_scale": adv_lr_scale,
            "start_level": start_level}
    return write_outputs(out, rows, info, clock)


def combine(grids, out, progress=True):
    """One table, fit and figure over the cells of several finished grid runs.

    Grids run with different settings (``--lr-scale``, ``--adv-steps-per-atom``,
    ...) have their cells in different folders; this reads each folder's
    ``phase.json`` for its cells and their exponents, and each cell's saved
    :func:`~fpsim.finite_size.finite_size_point` (nothing is trained or
    re-evaluated when ``finite_size.json`` is there).  A cell :math:`(d, k)` in
    several grids is taken from the last one given.

    Parameters
    ----------
    grids : sequence of str
        Output folders of :func:`run`.
    out : str
        Where ``phase.csv/md/json/png`` of the combination go.
    progress : bool, default True

    Returns
    -------
    As :func:`run`.
    """
    clock = time.perf_counter()
    cells = {}
    for grid in grids:
        path = os.path.join(grid, "phase.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: combine needs grid folders written by phase_diagram")
        saved = read_json(path)
        points = (QUICK if saved["quick"] else FULL)["points"]
        for row in saved["rows"]:
            folder = os.path.join(grid, f"d{row['d']}-k{row['k']:g}")
            cells[row["d"], row["k"]] = (row["c"], folder, points)
    rows = [row_of(c, finite_size_point(folder, points=points, progress=progress))
            for _, (c, folder, points) in sorted(cells.items())]
    return write_outputs(out, rows, {"combined": [os.path.abspath(g) for g in grids]}, clock)


def write_outputs(out, rows, info, clock):
    """Fit ``rows`` and write ``OUT/phase.csv``, ``phase.md``, ``phase.json`` (with ``info``) and ``phase.png``.

    Returns ``(rows, fitted, text, figure)`` as :func:`run`.
    """
    fitted = fit(rows)
    text = render(rows, fitted)
    os.makedirs(out, exist_ok=True)
    write_csv(os.path.join(out, "phase.csv"), rows)
    with open(os.path.join(out, "phase.md.tmp"), "w") as handle:
        handle.write(f"# {ID}\n\n{text}\n")
    os.replace(os.path.join(out, "phase.md.tmp"), os.path.join(out, "phase.md"))
    atomic_write_json(os.path.join(out, "phase.json"), jsonable(
                      {"id": ID, "statement": STATEMENT, "criterion": CRITERION, **info, "rows": rows,
                       "fit": fitted, "seconds": time.perf_counter() - clock}))
    figure = os.path.join(out, "phase.png")
    try:
        plot(figure, rows, fitted, sorted({r["d"] for r in rows}), sorted({r["c"] for r in rows}))
    except ImportError:
        figure = "(matplotlib not installed: no figure)"
    return rows, fitted, text, figure


def main(argv=None):
    """Command line: :func:`run` the grid, print the table, the fits and the verdict."""
    parser = argparse.ArgumentParser(
        prog="python -m proofs_check.phase_diagram",
        description="Run a (d, k) grid, measure the crossing radii of the clean, adversarial and ideal "
                    "nets, test the finite-size law and draw the C2+C3 phase diagram.")
    parser.add_argument("--d", type=int, nargs="+", default=[400, 800, 1600, 4000], help="dimensions d")
    parser.add_argument("--k-exponents", type=float, nargs="+", default=[0.33, 0.4, 0.5, 0.6],
                        help="exponents c of k = round(d**c)")
    parser.add_argument("--out", default=os.path.join("runs", "phase"),
                        help="output folder [default runs/phase]; a rerun reuses the finished points")
    parser.add_argument("--client", default=None,
                        help="a dask.distributed scheduler (tcp://HOST:PORT) to run the points on")
    parser.add_argument("--quick", action="store_true",
                        help="cheap training and evaluation (shows the command works; not a measurement)")
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="base preset [paper]")
    parser.add_argument("--steps-per-atom", type=float, default=None,
                        help=f"clean SGD steps per atom, times d/k "
                             f"[{STEPS_PER_ATOM}; --quick: {QUICK['steps_per_atom']}]")
    parser.add_argument("--adv-steps-per-atom", type=float, default=None,
                        help="adversarial SGD steps per atom, times d/k [half the clean steps]")
    parser.add_argument("--lr-scale", type=float, default=1.0,
                        help="multiplies the base preset's clean step size lr [1]")
    parser.add_argument("--adv-lr-scale", type=float, default=1.0,
                        help="multiplies the base preset's adversarial step size adv_lr [1]")
    parser.add_argument("--no-adversarial", dest="adversarial", action="store_false",
                        help="clean and ideal nets only (R and s_ideal, no s): skips adversarial training, "
                             "whose per-step cost grows like d^2")
    parser.add_argument("--start-level", type=float, default=START_LEVEL,
                        help=f"where the clean threshold ramp of a cell whose theta is out of reach at "
                             f"initialisation starts, in units of the random level [{START_LEVEL:g}]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--combine", nargs="+", metavar="GRID", default=None,
                        help="instead of running a grid: one table, fit and figure in --out over the cells "
                             "of these finished grid folders (their phase.json and saved measurements)")
    args = parser.parse_args(argv)
    if args.combine is not None:
        try:
            rows, fitted, text, figure = combine(args.combine, args.out, progress=not args.quiet)
        except (FileNotFoundError, ValueError) as err:
            parser.error(str(err))
        print(text)
        print(f"wrote {args.out}/phase.csv, phase.md, phase.json, {figure}")
        return 0
    if any(d < 2 for d in args.d):
        parser.error(f"--d values must be >= 2, got {args.d}")
    if any(not 0 < c < 1 for c in args.k_exponents):
        parser.error(f"--k-exponents must lie in (0, 1), got {args.k_exponents}")
    if args.steps_per_atom is not None and not args.steps_per_atom > 0:
        parser.error(f"--steps-per-atom must be > 0, got {args.steps_per_atom}")
    if not 0 < args.start_level < float("inf"):
        parser.error(f"--start-level must be > 0 and finite, got {args.start_level}")
    try:  # every config is validated before any run starts
        for d in args.d:
            for c in args.k_exponents:
                config_for(d, c, args.preset, args.quick, args.seed, args.steps_per_atom, args.adversarial,
                           args.start_level, args.adv_steps_per_atom, args.lr_scale, args.adv_lr_scale)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    client = None
    if args.client:
        try:
            from dask.distributed import Client
        except ImportError:
            parser.error("--client needs dask.distributed (pip install .[distributed])")
        client = Client(args.client)
    clock = time.perf_counter()
    try:
        rows, fitted, text, figure = run(args.d, args.k_exponents, args.out, client=client, quick=args.quick,
                                         base=args.preset, seed=args.seed, steps_per_atom=args.steps_per_atom,
                                         progress=not args.quiet, adversarial=args.adversarial,
                                         start_level=args.start_level,
                                         adv_steps_per_atom=args.adv_steps_per_atom, lr_scale=args.lr_scale,
                                         adv_lr_scale=args.adv_lr_scale)
    finally:
        if client is not None:
            client.close()
    print(text)
    print(f"wrote {args.out}/phase.csv, phase.md, phase.json, {figure} ({time.perf_counter() - clock:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
