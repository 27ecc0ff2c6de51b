"""Sweeps: many :class:`~fpsim.experiment.Config` runs, one folder each.

:func:`grid` builds the configs of a cartesian product of field values;
:func:`run_sweep` runs :func:`~fpsim.experiment.run_experiment` for each of
them into ``OUT_ROOT/NAME/``, one after the other or as tasks of a
``dask.distributed`` cluster.  The results are the report files: a config
whose ``report.json`` already holds that config is read back instead of run
again, and an interrupted run resumes from its saved phases, so running the
same sweep again finishes it.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
from collections.abc import Mapping

from .experiment import Config, run_experiment

#: Install hint for the optional dask back end.
DISTRIBUTED_HINT = "pip install .[distributed]"


def grid(base_config, **axes):
    """Configs of the cartesian product of the given field values.

    Parameters
    ----------
    base_config : Config
        Every field not named in ``axes`` keeps its value here.
    **axes : sequence
        ``field=[value, ...]`` for fields of :class:`~fpsim.experiment.Config`;
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


def run_sweep(configs, out_root, client=None, progress=True):
    """Run :func:`~fpsim.experiment.run_experiment` for every config.

    Parameters
    ----------
    configs : sequence of Config, or mapping of str to Config
        A sequence puts each run in a folder named by its
        :meth:`~fpsim.experiment.Config.fingerprint`; a mapping names the
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

    Returns
    -------
    reports : list of dict
        The ``report.json`` of each run, in the order of ``configs``.  A run
        whose folder already holds the report of the same config is not run
        again: that report is returned.

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
    if client is None:
        reports = []
        for i, (config, folder) in enumerate(jobs, 1):
            if progress:
                print(f"[fpsim.sweep] run {i}/{len(jobs)}: {folder}", file=sys.stderr)
            reports.append(run_or_load(config, folder, progress))
        return reports
    _check_client(client)
    futures = [client.submit(run_or_load, config, folder, progress, pure=False) for config, folder in jobs]
    return client.gather(futures)


def run_or_load(config, out_dir, progress=True):
    """The report of ``config`` in ``out_dir``: read back if it is there, else run the experiment.

    Parameters
    ----------
    config : Config
    out_dir : str or path
    progress : bool, default True

    Returns
    -------
    report : dict
        ``report.json`` of the run, whose ``config`` equals ``config.to_dict()``.
    """
    path = os.path.join(out_dir, "report.json")
    if os.path.exists(path):
        with open(path) as handle:
            report = json.load(handle)
        if report.get("config") == config.to_dict():
            if progress:
                print(f"[fpsim.sweep] reusing the finished report {path}", file=sys.stderr)
            return report
    return run_experiment(config, out_dir, progress=progress)


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
    names = [config.fingerprint() for _, config in pairs]
    for i, name in enumerate(names):
        first = names.index(name)
        if first < i:
            raise ValueError(f"configs[{i}] repeats configs[{first}] (fingerprint {name}); "
                             f"each run needs its own config")
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
