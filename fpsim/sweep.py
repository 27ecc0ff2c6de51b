"""Sweeps: many :class:`~fpsim.config.Config` runs, one folder each.

:func:`grid` builds the configs of a cartesian product of field values;
:func:`run_sweep` runs :func:`~fpsim.experiment.run_experiment` for each of
them into ``OUT_ROOT/NAME/`` (``NAME`` reads like ``d=100_k=2``: the
fields that vary), one after the other or as tasks of a
``dask.distributed`` cluster, then writes ``OUT_ROOT/summary.csv`` (one row
per run: accuracies, robust-accuracy ends, critical radii, claim verdicts)
and, with matplotlib, the scaling plot (one varying field) and the phase
diagram (two).  The results are the report files: a config
whose ``report.json`` already holds that config is read back instead of run
again, and an interrupted run resumes from its saved phases, so running the
same sweep again finishes it.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import os
import sys
from collections.abc import Mapping

from ._io import atomic_write_text
from .config import Config
from .experiment import load_finished, preflight
from .report import claim_checker, run_and_report

#: Install hint for the optional dask back end.
DISTRIBUTED_HINT = "pip install .[distributed]"


def grid(base_config, **axes):
    """Configs of the cartesian product of the given field values.

    Parameters
    ----------
    base_config : Config
        Every field not named in ``axes`` keeps its value here.
    **axes : sequence
        ``field=[value, ...]`` for fields of :class:`~fpsim.config.Config`;
        each sequence non-empty.

    Returns
    -------
    configs : list of Config
        One per combination, in ``itertools.product`` order (the last axis
        varies fastest); each validated like any ``Config``.

    Examples
    --------
    >>> configs = grid(Config(), d=[100, 200], k=[2.0, 4.0])
    >>> [(c.d, c.k) for c in configs]
    [(100, 2.0), (100, 4.0), (200, 2.0), (200, 4.0)]
    """
    if not isinstance(base_config, Config):
        raise TypeError(f"base_config must be a fpsim Config, got {type(base_config).__name__}")
    fields = [f.name for f in dataclasses.fields(Config)]
    values = []
    for name, axis in axes.items():
        if name not in fields:
            raise ValueError(f"unknown Config field {name!r}; the fields are {fields}")
        if isinstance(axis, (str, bytes)) or not hasattr(axis, "__iter__"):
            raise TypeError(f"axis {name} must be a sequence of values, got {axis!r}")
        axis = list(axis)
        if not axis:
            raise ValueError(f"axis {name} must hold at least one value")
        values.append(axis)
    return [base_config.replace(**dict(zip(axes, combo))) for combo in itertools.product(*values)]


def run_sweep(configs, out_root, client=None, progress=True, figures=True):
    """Run :func:`~fpsim.experiment.run_experiment` for every config.

    Parameters
    ----------
    configs : sequence of Config, or mapping of str to Config
        A sequence puts each run in a folder named by the fields that vary
        across the configs (``d=100_k=2``; a lone config by its
        :meth:`~fpsim.config.Config.fingerprint`); a mapping names the
        folders by its keys (non-empty, no path separator).
    out_root : str or path
        Parent folder; run ``NAME`` writes ``out_root/NAME/report.json`` and
        ``weights.npz``.
    client : dask.distributed.Client, optional
        Submit each run as a task of this client and gather the reports
        (needs the optional extra: ``pip install .[distributed]``).  Default:
        run them one after the other in this process.
    progress : bool, default True
        Progress lines on stderr (from the workers too, with ``client``).
    figures : bool, default True
        Each run's figures and ``index.html``, and the sweep's figures (with matplotlib).

    Returns
    -------
    reports : list of dict
        The ``report.json`` of each run, in the order of ``configs``.  A run
        whose folder already holds the report of the same config is not run
        again: that report is returned.  ``out_root/summary.csv`` (and the
        sweep figures, with matplotlib) summarise them.

    Raises
    ------
    ImportError
        If ``client`` is given and ``dask.distributed`` is not installed.
    """
    named = _named(configs)
    try:
        out_root = os.fspath(out_root)
    except TypeError as err:
        raise TypeError(f"out_root must be a folder path, got {out_root!r}") from err
    jobs = [(config, os.path.join(out_root, name)) for name, config in named]
    for config, folder in jobs:  # every config and folder is checked before the first run
        preflight(config, folder)
    if client is None:
        reports = []
        for i, (config, folder) in enumerate(jobs, 1):
            if progress:
                print(f"[fpsim.sweep] run {i}/{len(jobs)}: {folder}", file=sys.stderr)
            reports.append(run_or_load(config, folder, progress, figures))
    else:
        _check_client(client)
        futures = [client.submit(run_or_load, config, folder, progress, figures, pure=False)
                   for config, folder in jobs]
        reports = client.gather(futures)
    write_summary([name for name, _ in named], reports, out_root, varying([c for _, c in named]), figures)
    return reports


def varying(configs):
    """The Config fields whose value differs across ``configs``, in field order."""
    dicts = [c.to_dict() for c in configs]
    return [f.name for f in dataclasses.fields(Config) if len({repr(d[f.name]) for d in dicts}) > 1]


def _value_name(value):
    if isinstance(value, (tuple, list)):
        return "-".join(_value_name(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def readable_names(configs):
    """Folder names ``field=value_field=value`` from the fields that vary (fingerprint if none vary)."""
    axes = varying(configs)
    if not axes:
        return [c.fingerprint() for c in configs]
    names = ["_".join(f"{a}={_value_name(getattr(c, a))}" for a in axes).replace(os.sep, "-") for c in configs]
    if len(set(names)) < len(names):  # values that print alike: keep them apart
        names = [f"{n}_{c.fingerprint()[:8]}" for n, c in zip(names, configs)]
    return names


#: Columns of ``summary.csv`` after the run name and the varying fields.
SUMMARY_COLUMNS = ("clean_accuracy", "clean_robust_lower", "clean_robust_upper", "clean_critical_lower",
                   "clean_critical_upper", "adv_accuracy", "adv_robust_lower", "adv_robust_upper",
                   "adv_critical_lower", "adv_critical_upper", "robust_n", "purified", "top5_energy",
                   "C1", "C2", "C3", "C4", "C5", "C6", "C7")


def summary_rows(names, reports, axes):
    """One dict per run: its name, the varying fields and :data:`SUMMARY_COLUMNS`."""
    checker = claim_checker()
    rows = []
    for name, report in zip(names, reports):
        row = {"name": name, **{a: report["config"][a] for a in axes}}
        for short, key in (("clean", "clean"), ("adv", "adversarial")):
            part = report.get(key) or {}
            robust, crit = part.get("robust") or {}, part.get("critical_radius") or {}
            row.update({f"{short}_accuracy": part.get("accuracy"), f"{short}_robust_lower": robust.get("lower"),
                        f"{short}_robust_upper": robust.get("upper"),
                        f"{short}_critical_lower": crit.get("lower"), f"{short}_critical_upper": crit.get("upper")})
        found = report.get("metrics", {})
        row["robust_n"] = report["config"]["robust_eval_size"]
        row["purified"] = (found.get("purification") or {}).get("fraction")
        row["top5_energy"] = (found.get("update_spectrum") or {}).get("top_energy")
        row.update({r["id"]: r["verdict"] for r in (checker.evaluate(report) if checker else [])})
        rows.append(row)
    return rows


def write_summary(names, reports, out_root, axes, figures=True):
    """Write ``out_root/summary.csv`` and the sweep figures; returns the rows."""
    rows = summary_rows(names, reports, axes)
    columns = ["name", *axes, *SUMMARY_COLUMNS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    atomic_write_text(os.path.join(out_root, "summary.csv"), buffer.getvalue())
    from . import plots
    if figures and axes and plots.available():
        plots.sweep_figures(rows, axes, out_root)
    return rows


def run_or_load(config, out_dir, progress=True, figures=True):
    """The report of ``config`` in ``out_dir``: read back if it is there, else run the experiment.

    Parameters
    ----------
    config : Config
    out_dir : str or path
    progress : bool, default True
    figures : bool, default True

    Returns
    -------
    report : dict
        ``report.json`` of the run, whose ``config`` equals ``config.to_dict()``.
    """
    report = load_finished(config, out_dir)  # an unreadable report.json is named, with the fix
    if report is not None:
        if progress:
            print(f"[fpsim.sweep] reusing the finished report {os.path.join(out_dir, 'report.json')}",
                  file=sys.stderr)
        return report
    return run_and_report(config, out_dir, progress=progress, figures=figures)


def _named(configs):
    """``[(folder name, config)]`` from a sequence or mapping of configs, validated."""
    if isinstance(configs, Config):
        raise TypeError("configs must be a sequence or mapping of Config, not a single Config "
                        "(wrap it in a list)")
    if isinstance(configs, Mapping):
        pairs = list(configs.items())
    else:
        try:
            pairs = list(enumerate(configs))
        except TypeError as err:
            raise TypeError(f"configs must be a sequence or mapping of Config, "
                            f"got {type(configs).__name__}") from err
    if not pairs:
        raise ValueError("configs must hold at least one Config")
    for key, config in pairs:
        if not isinstance(config, Config):
            raise TypeError(f"configs[{key!r}] must be a fpsim Config, got {type(config).__name__}")
    if isinstance(configs, Mapping):
        for name, _ in pairs:
            if not isinstance(name, str) or name in ("", ".", "..") or os.sep in name \
                    or (os.altsep and os.altsep in name):
                raise ValueError(f"run names must be folder names without a path separator, got {name!r}")
        return pairs
    prints = [config.fingerprint() for _, config in pairs]
    for i, name in enumerate(prints):
        first = prints.index(name)
        if first < i:
            raise ValueError(f"configs[{i}] repeats configs[{first}] (fingerprint {name}); "
                             f"each run needs its own config")
    names = readable_names([config for _, config in pairs])
    return [(name, config) for name, (_, config) in zip(names, pairs)]


def _check_client(client):
    """Import ``dask.distributed`` lazily and check that ``client`` is one of its clients."""
    try:
        from dask.distributed import Client
    except ImportError as err:
        raise ImportError(f"run_sweep(client=...) needs dask.distributed, which is not installed; "
                          f"install the optional extra: {DISTRIBUTED_HINT}") from err
    if not isinstance(client, Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
