"""Figures drawn from a report (needs the optional ``matplotlib``: ``pip install .[plot]``).

* ``robust_curve.png`` — robust accuracy against the radius for the clean and
  the adversarially trained net, each as a band from the certified lower end
  to the attacked upper end, with the preset's radius marked.
* ``training.png`` — held-out accuracy and median :math:`|\\cos(w_i^0, w_i)|`
  over both training phases.
"""
from __future__ import annotations

import os


def available():
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_figures(report, out_dir):
    """Write the figures of ``report`` into ``out_dir``; returns the file names written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for phase, color in (("clean", "tab:red"), ("adversarial", "tab:blue")):
        curve = report.get(phase, {}).get("curve")
        if not curve:
            continue
        ax.fill_between(curve["tau"], curve["lower"], curve["upper"], color=color, alpha=0.25)
        ax.plot(curve["tau"], curve["upper"], color=color, label=f"{phase} net: attacked (upper)")
        ax.plot(curve["tau"], curve["lower"], color=color, ls="--", label=f"{phase} net: certified (lower)")
    if ax.lines:
        ax.axvline(report["config"]["tau"], color="gray", lw=0.8)
        ax.set(xlabel=f"radius tau (l{report['config']['norm']})", ylabel="robust accuracy",
               ylim=(-0.02, 1.02), title="Robust accuracy interval")
        ax.legend(fontsize=8)
        written.append(_save(fig, out_dir, "robust_curve.png"))
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    offset = 0
    for phase, color in (("clean", "tab:red"), ("adversarial", "tab:blue")):
        hist = report.get("history", {}).get(phase)
        if not hist:
            continue
        steps = [offset + s for s in hist["step"]]
        left.plot(steps, hist["accuracy"], color=color, label=f"{phase}: clean accuracy")
        if "robust_upper" in hist:
            left.plot(steps, hist["robust_upper"], color=color, ls=":", label=f"{phase}: robust (attacked)")
        right.plot(steps, hist["median_cos_init"], color=color, label=phase)
        offset = steps[-1]
    left.set(xlabel="SGD step", ylabel="held-out accuracy", ylim=(-0.02, 1.02))
    right.set(xlabel="SGD step", ylabel="median |cos(w_i^0, w_i)|", ylim=(0, 1.02))
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out_dir, "training.png"))
    plt.close(fig)
    return written


def _save(fig, out_dir, name):
    # write to a temporary name first so a figure file is never half-written
    path = os.path.join(out_dir, name)
    tmp = os.path.join(out_dir, ".tmp-" + name)
    fig.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, path)
    return name
