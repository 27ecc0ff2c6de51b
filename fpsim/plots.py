r"""Figures for every claim (needs the optional ``matplotlib``: ``pip install .[plot]``).

Each function draws one PNG into a folder from plain arrays or the report
dict and returns the file name (``None`` when there is nothing to draw).
:func:`fpsim.report.write_report` calls them on the saved files of a run.

* ``robust_curve.png`` — robust accuracy against the radius, each net as a
  band from the certified lower end to the attacked upper end, the C6
  baselines at :math:`\tau` with their 95 % intervals (C2, C3, C6).
* ``training.png`` — training loss, held-out error and median
  :math:`|\cos(w_i^0, w_i)|` over both phases.
* ``cosines.png`` — per-neuron :math:`|\cos(w_i^0, w_i)|` against
  :math:`\sqrt{2\ln d/d}`, :math:`1/\sqrt d` and the C1 criterion, and
  :math:`\cos(w_i, w'_i)` against :math:`1/\sqrt2` (C1, C4).
* ``dictionary.png`` — neurons in the dictionary basis :math:`M^\top w_i`
  before and after adversarial training, principal atoms first, and the dense
  mixture's share and alignment with :math:`M w^*` (C4, C5).
* ``spectrum.png`` — singular values and cumulative energy of
  :math:`W' - W`, and robust accuracy against the rank of a low-rank update
  when the report has it (C7).
* ``sweep_scaling.png`` / ``sweep_phase.png`` — a sweep over one field
  (scaling) or two fields (phase diagram).
"""
from __future__ import annotations

import math
import os

import numpy as np

_COLORS = {"clean": "tab:red", "adversarial": "tab:blue"}


def available():
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def robust_bands(report, out_dir):
    """``robust_curve.png``: both nets' robust-accuracy bands and the baselines at ``tau`` (C2, C3, C6)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    tau = report["config"]["tau"]
    for phase, color in _COLORS.items():
        curve = report.get(phase, {}).get("curve")
        if not curve:
            continue
        ax.fill_between(curve["tau"], curve["lower"], curve["upper"], color=color, alpha=0.25)
        ax.plot(curve["tau"], curve["upper"], color=color, label=f"{phase} net: attacked (upper)")
        ax.plot(curve["tau"], curve["lower"], color=color, ls="--", label=f"{phase} net: certified (lower)")
        for key in ("lower_ci95", "upper_ci95"):  # the 95 % interval of each end, as thin error bars
            if curve.get(key):
                low, high = np.asarray(curve[key]).T
                ends = np.asarray(curve[key.split("_")[0]])
                ax.errorbar(curve["tau"], ends, yerr=np.maximum([ends - low, high - ends], 0), fmt="none",
                            ecolor=color, elinewidth=0.7, capsize=2)
    palette = ("tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:olive", "tab:cyan")
    for k, (name, runs) in enumerate((report.get("baselines") or {}).items()):
        for regime, res in runs.items():
            entry = (res.get("intervals") or {}).get("robust")
            if entry is None:
                continue
            low, high = entry["ci95"]
            shift = tau * 0.015 * (2 * k + (regime == "adversarial") + 1)  # side by side, right of tau
            yerr = np.maximum([[entry["value"] - low], [high - entry["value"]]], 0)
            ax.errorbar([tau + shift], [entry["value"]], yerr=yerr, fmt="o" if regime == "adversarial" else "s",
                        mfc=palette[k % len(palette)] if regime == "adversarial" else "white",
                        color=palette[k % len(palette)], ms=5, capsize=3,
                        label=f"C6 {name} ({regime} training): {res['robust_kind']}")
    if not ax.lines:
        plt.close(fig)
        return None
    ax.axvline(tau, color="gray", lw=0.8)
    ax.set(xlabel=f"radius tau (l{report['config']['norm']}); training radius marked",
           ylabel="robust accuracy", ylim=(-0.02, 1.02), title="Robust accuracy: certified to attacked")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _save(fig, out_dir, "robust_curve.png")


def training(report, out_dir):
    """``training.png``: training loss (log), held-out error (log) and median |cos to init| over steps."""
    plt = _pyplot()
    fig, (loss_ax, err_ax, cos_ax) = plt.subplots(1, 3, figsize=(12, 3.6))
    n = (report.get("history_eval_size") or {}).get("accuracy", 2000)
    offset = 0
    for phase, color in _COLORS.items():
        hist = report.get("history", {}).get(phase)
        if not hist:
            continue
        steps = [offset + s for s in hist["step"]]
        loss_ax.plot(steps, hist["loss"], color=color, label=phase)
        floor = 0.5 / n  # an error of 0 is drawn at half a sample
        err_ax.plot(steps, np.maximum(1 - np.asarray(hist["accuracy"]), floor), color=color,
                    label=f"{phase}: clean error")
        if "robust_upper" in hist:
            err_ax.plot(steps, np.maximum(1 - np.asarray(hist["robust_upper"]), floor), color=color, ls=":",
                        label=f"{phase}: robust error (attacked)")
        cos_ax.plot(steps, hist["median_cos_init"], color=color, label=phase)
        offset = steps[-1]
    loss_ax.set(xlabel="SGD step", ylabel="training loss", yscale="log", title="loss")
    err_ax.set(xlabel="SGD step", ylabel=f"held-out error (n={n}; 0 drawn at 0.5/n)", yscale="log",
               title="1 - accuracy")
    cos_ax.set(xlabel="SGD step", ylabel="median |cos(w_i^0, w_i)|", ylim=(0, 1.02), title="distance from init")
    for ax in (loss_ax, err_ax, cos_ax):
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out_dir, "training.png")


def cosines(cos_init, cos_update, d, criterion, out_dir):
    """``cosines.png``: histograms of per-neuron cosines (C1 and C4).

    Parameters
    ----------
    cos_init : dict of str to (m,) array
        :math:`|\\cos(w_i^0, w_i)|` per net (``clean``, ``adversarial``).
    cos_update : (m,) array or None
        :math:`\\cos(w_i, w'_i)` (clean to adversarial).
    d : int
    criterion : float or None
        The C1 limit on the median (no line when ``None``).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if cos_update is not None else 1, figsize=(11, 3.8), squeeze=False)
    ax = axes[0, 0]
    bins = np.linspace(0, 1, 51)
    for phase, values in cos_init.items():
        ax.hist(values, bins=bins, color=_COLORS.get(phase), alpha=0.5,
                label=f"{phase} (median {np.median(values):.3f})")
    lines = [(math.sqrt(2 * math.log(d) / d), "-", "sqrt(2 ln d / d)"), (1 / math.sqrt(d), ":", "1/sqrt(d) (random)")]
    if criterion is not None:
        lines.append((criterion, "--", f"C1 criterion {criterion:g}"))
    for x, style, label in lines:
        ax.axvline(x, color="black", ls=style, lw=1, label=label)
    ax.set(xlabel="|cos(w_i^0, w_i)| per neuron", ylabel="neurons", title="C1: distance from initialisation")
    ax.legend(fontsize=7)
    if cos_update is not None:
        ax = axes[0, 1]
        ax.hist(cos_update, bins=np.linspace(-1, 1, 81), color="tab:purple", alpha=0.7)
        ax.axvline(1 / math.sqrt(2), color="black", ls="--", lw=1,
                   label="1/sqrt(2): ||beta w'|| > ||v|| to the right")
        share = float(np.mean(np.abs(cos_update) > 1 / math.sqrt(2)))
        ax.set(xlabel="cos(w_i, w'_i) per neuron", ylabel="neurons",
               title=f"C4: clean vs adversarial neuron ({share:.1%} purified)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out_dir, "cosines.png")


def dictionary(A_clean, A_adv, w_star, views, out_dir, neurons=24, tail=40):
    r"""``dictionary.png``: neurons in the dictionary basis and their dense mixtures (C4, C5).

    Parameters
    ----------
    A_clean, A_adv : (m, d) arrays
        :math:`M^\top w_i` of the clean and the adversarial net (rows); ``A_adv`` may be None.
    w_star : (d,) array
    views : dict of str to fpsim.metrics.DictionaryView
        Per net.
    neurons, tail : int
        Neurons shown (distinct principal atoms), and further atoms shown
        after the principal ones (largest :math:`|w^*_j|` first).
    """
    plt = _pyplot()
    nets = [("clean", A_clean)] + ([("adversarial", A_adv)] if A_adv is not None else [])
    fig, axes = plt.subplots(2, len(nets) if len(nets) > 1 else 2, figsize=(12, 8), squeeze=False)
    top = np.argmax(np.abs(A_clean), axis=1)
    rows, atoms = [], []
    for i, j in enumerate(top):
        if j not in atoms:
            rows.append(i)
            atoms.append(int(j))
        if len(rows) == neurons:
            break
    rest = [j for j in np.argsort(-np.abs(w_star), kind="stable") if j not in atoms][:tail]
    columns = atoms + [int(j) for j in rest]
    sign = np.sign(w_star[columns])
    for col, (phase, A) in enumerate(nets):
        ax = axes[0, col]
        block = A[rows][:, columns] * sign / np.maximum(np.linalg.norm(A[rows], axis=1, keepdims=True), 1e-300)
        image = ax.imshow(block, cmap="RdBu_r", vmin=-0.5, vmax=0.5, aspect="auto", interpolation="nearest")
        ax.axvline(len(atoms) - 0.5, color="black", lw=0.8)
        ax.set(title=f"{phase} net: a_ij sign(w*_j) / ||a_i||", xlabel=f"atoms j: {len(atoms)} principal | "
               f"{len(rest)} others (largest |w*_j|)", ylabel="neuron i")
        fig.colorbar(image, ax=ax, fraction=0.04)
    ax = axes[1, 0]
    for phase, view in views.items():
        ax.hist(view.dense_share, bins=np.linspace(0, 1, 41), color=_COLORS.get(phase), alpha=0.5,
                label=f"{phase} (median {np.median(view.dense_share):.2f})")
    ax.set(xlabel="dense-mixture share ||a_i^dense|| / ||a_i||", ylabel="neurons",
           title="C5: dense mixture before/after")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    for phase, view in views.items():
        ax.hist(view.dense_alignment, bins=np.linspace(-1, 1, 41), color=_COLORS.get(phase), alpha=0.5,
                label=f"{phase} (median {np.median(view.dense_alignment):+.2f})")
    ax.axvline(0, color="black", lw=0.8)
    ax.set(xlabel="cos(a_i^dense, w*) : alignment of the mixture with M w*", ylabel="neurons",
           title="C5: the mixture points along M w*")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out_dir, "dictionary.png")


def spectrum(singular_values, top, out_dir, shape=None, rank_curve=None):
    """``spectrum.png``: singular values and cumulative energy of ``W' - W`` (C7).

    ``rank_curve``, if given, is ``{"rank": [...], "lower": [...], "upper": [...],
    "full": (lower, upper)}`` (:func:`fpsim.report.rank_curve`: robust accuracy of
    rank-r adversarial training against r, and of the full update) and gets a
    third panel.  The energy share is a diagnostic (MODEL.md §1, C7).
    """
    plt = _pyplot()
    panels = 3 if rank_curve else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6))
    sigma = np.asarray(singular_values, dtype=float)
    r = np.arange(1, len(sigma) + 1)
    axes[0].semilogy(r, np.maximum(sigma, 1e-300), "o-", ms=2)
    axes[0].axvspan(0.5, top + 0.5, color="tab:orange", alpha=0.2, label=f"top {top}")
    axes[0].set(xlabel="index r", ylabel="sigma_r(W' - W)", title="C7: singular values of the update")
    axes[0].legend(fontsize=7)
    energy = np.cumsum(sigma ** 2) / max(np.sum(sigma ** 2), 1e-300)
    axes[1].plot(r, energy, label="E_r (cumulative energy)")
    axes[1].plot(r, r / len(sigma), ls=":", color="gray", label="isotropic update r/min(m, d)")
    axes[1].axhline(0.5, color="black", ls="--", lw=1, label="half the energy")
    axes[1].axvline(top, color="tab:orange", lw=1)
    axes[1].set(xlabel="rank r", ylabel="energy share", ylim=(0, 1.02), xscale="log",
                title=f"E_{top} = {energy[top - 1]:.3f}")
    axes[1].legend(fontsize=7)
    if rank_curve:
        ax = axes[2]
        ranks = rank_curve["rank"]
        ax.fill_between(ranks, rank_curve["lower"], rank_curve["upper"], alpha=0.3, label="rank r: [certified, attacked]")
        ax.plot(ranks, rank_curve["lower"], "o--", ms=3, color="tab:blue")
        ax.plot(ranks, rank_curve["upper"], "^-", ms=3, color="tab:blue")
        full_low, full_up = rank_curve.get("full", (None, None))
        if full_low is not None:
            ax.axhspan(full_low, full_up, color="tab:green", alpha=0.3, label="full update")
            ax.axhline(full_low - 0.02, color="tab:green", ls=":", lw=1, label="C7: full certified - 2 pt")
        ax.set(xlabel="rank r of the adversarial update W + U V^T", ylabel="robust accuracy at tau",
               ylim=(-0.02, 1.02), xscale="log", title="C7: low-rank adversarial training")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out_dir, "spectrum.png")


def sweep_figures(rows, axes, out_dir):
    """Scaling plot (one varying field) or phase diagram (two) of a sweep; returns the names written.

    Parameters
    ----------
    rows : list of dict
        One summary row per run (the sweep's ``summary.csv`` rows, numbers as floats or None).
    axes : list of str
        The fields that vary across the runs.
    """
    plt = _pyplot()
    written = []
    numeric = [a for a in axes if all(isinstance(r.get(a), (int, float)) for r in rows)]
    if len(numeric) >= 1:
        field = numeric[0]
        fig, (acc_ax, rad_ax) = plt.subplots(1, 2, figsize=(11, 4))
        order = sorted(range(len(rows)), key=lambda i: rows[i][field])
        x = [rows[i][field] for i in order]
        for key, color, style in (("clean_robust_upper", "tab:red", "-"), ("clean_robust_lower", "tab:red", "--"),
                                  ("adv_robust_upper", "tab:blue", "-"), ("adv_robust_lower", "tab:blue", "--")):
            y = [rows[i].get(key) for i in order]
            if any(v is not None for v in y):
                acc_ax.plot(x, [np.nan if v is None else v for v in y], style, marker="o", color=color, label=key)
        acc_ax.set(xlabel=field, ylabel="robust accuracy at tau", ylim=(-0.02, 1.02),
                   title="robust accuracy across the sweep")
        acc_ax.legend(fontsize=7)
        for key, color, style in (("clean_critical_upper", "tab:red", "-"), ("clean_critical_lower", "tab:red", "--"),
                                  ("adv_critical_upper", "tab:blue", "-"), ("adv_critical_lower", "tab:blue", "--")):
            y = [rows[i].get(key) for i in order]
            if any(v is not None for v in y):
                rad_ax.plot(x, [np.nan if v is None else v for v in y], style, marker="o", color=color, label=key)
        rad_ax.set(xlabel=field, ylabel="radius where robust accuracy crosses 50 %",
                   title="critical radius (scaling)")
        if all(v > 0 for v in x) and max(x) / min(x) > 3:
            for ax in (acc_ax, rad_ax):
                ax.set_xscale("log")
        if rad_ax.lines:
            rad_ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(_save(fig, out_dir, "sweep_scaling.png"))
    if len(numeric) >= 2:
        fx, fy = numeric[:2]
        xs, ys = sorted({r[fx] for r in rows}), sorted({r[fy] for r in rows})
        fig, axes_ = plt.subplots(1, 2, figsize=(11, 4))
        for ax, key, title in ((axes_[0], "adv_robust_lower", "adversarial net: certified robust accuracy"),
                               (axes_[1], "clean_robust_upper", "clean net: attacked robust accuracy")):
            grid = np.full((len(ys), len(xs)), np.nan)
            for r in rows:
                if r.get(key) is not None:
                    grid[ys.index(r[fy]), xs.index(r[fx])] = r[key]
            image = ax.imshow(grid, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set(xticks=range(len(xs)), xticklabels=[f"{v:g}" for v in xs], yticks=range(len(ys)),
                   yticklabels=[f"{v:g}" for v in ys], xlabel=fx, ylabel=fy, title=title)
            for (i, j), v in np.ndenumerate(grid):
                if not np.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white")
            fig.colorbar(image, ax=ax, fraction=0.04)
        fig.tight_layout()
        written.append(_save(fig, out_dir, "sweep_phase.png"))
    return written


def _save(fig, out_dir, name):
    """Write ``fig`` to ``out_dir/name`` atomically with the user's umask; returns ``name``."""
    import io

    from ._io import atomic_write_bytes
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    _pyplot().close(fig)
    atomic_write_bytes(os.path.join(out_dir, name), buffer.getvalue())
    return name
