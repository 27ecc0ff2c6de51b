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

The research bounds this script used to carry (the quadratic "gap" bound
and the Lagrangian "split" bound) are now ``fpsim.certify``'s ``"split"``
certificate (``fpsim/certify/beyond.py``), part of every run's certified
interval and of its soundness tests; the ideal pure-atom net is
``fpsim.finite_size.ideal_net``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import proofs_check  # noqa: E402
from fpsim.config import Config, preset  # noqa: E402
from fpsim.experiment import finished_phases  # noqa: E402
from fpsim.sweep import run_or_load  # noqa: E402

#: Named configurations.  See docs/presets.md for the results.  The research
#: variants skip the C6 baselines (``baseline_steps=0``): they are about C2/C3.
CONFIGS = {
    "quick": preset("quick"),
    "paper": preset("paper"),
    # tau > theta regime: C2 (nearly) holds, the adversarial net is robust under attack but not certified
    "paper_c2": preset("paper", d=800, m=1600, margin=2.0, threshold=0.12, tau=0.25, weight_decay=1e-3,
                       clean_steps=1500, adv_steps=800, robust_eval_size=1000, baseline_steps=0,
                       lowrank_ranks="none", fgm_check="off"),
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
    reused = finished_phases(config, folder)
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


# -- the table ----------------------------------------------------------------

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
    args = p.parse_args(argv)
    if args.table:
        table(args.out)
        return 0
    if args.list or not args.names:
        for name, config in CONFIGS.items():
            print(f"{name}: {_changes(config.to_dict(), Config().to_dict(), skip=()) or 'Config defaults'}")
        return 0
    try:
        overrides = parse_overrides(args.set)
        configs = select(args.names, overrides)
    except (ValueError, TypeError) as err:
        p.error(str(err))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for name, config in configs.items():
        report, folder, reused = run(name, config, args.root, progress=args.progress)
        rec = record(name, overrides, report, folder, reused)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(rec, default=float) + "\n")
        summarize(rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
