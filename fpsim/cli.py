"""Command line: ``fpsim run --preset NAME --out DIR [--FIELD VALUE ...]`` and ``fpsim report DIR``.

Every :class:`fpsim.config.Config` field is an option, with its help
text, its accepted range and its value in each preset; a preset sets the
starting values and explicit options override them.  Options that the other
settings make meaningless (``--q`` with the ReLU, ``--attack-steps`` with
FGM, ...) are refused.  Every check runs before any work.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ._version import __version__
from ._io import UnreadableStateError, read_json
from ._threads import thread_limit
from .config import DEFAULT_PRESET, PRESETS, RANGES, Config, preset
from .experiment import ConfigError, DivergenceError, preflight
from .report import claim_checker, claim_rows, render_intervals, run_and_report, write_report

#: Options that only matter under a condition: ``{field: (condition on the config, why)}``.
MEANINGFUL_IF = {
    "q": (lambda c: c.activation == "smooth", "--q only applies to --activation smooth"),
    "rho": (lambda c: c.activation == "smooth", "--rho only applies to --activation smooth"),
    "attack_steps": (lambda c: c.attack == "pgd" and (c.adv_steps > 0 or c.baseline_steps > 0),
                     "--attack-steps only applies to --attack pgd with adversarial or baseline training"),
    "ramp_steps": (lambda c: c.threshold_end is not None, "--ramp-steps needs --threshold-end (the ramp's end)"),
    "adv_lr": (lambda c: c.adv_steps > 0, "--adv-lr needs --adv-steps > 0"),
    "attack": (lambda c: c.adv_steps > 0 or c.baseline_steps > 0,
               "--attack needs --adv-steps > 0 or --baseline-steps > 0"),
    "baseline_lr": (lambda c: c.baseline_steps > 0, "--baseline-lr needs --baseline-steps > 0"),
}


def _show(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "unset"
    return f"{value[0]:g} {value[1]:g}" if isinstance(value, tuple) else str(value)


#: What an option parses ``none`` to: the field is unset (``None``), whatever the preset sets.
UNSET = object()


def _or_none(kind):
    """``kind(text)``, or :data:`UNSET` for ``none``/``unset`` (an optional field's unset value)."""
    def parse(text):
        return UNSET if text.strip().lower() in ("none", "unset") else kind(text)
    parse.__name__ = getattr(kind, "__name__", "value")  # argparse names the type in its error
    return parse


def _switch(text):
    """``on``/``off`` as a bool."""
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from 'on', 'off')")
    return text == "on"


def _add_config_options(parser):
    group = parser.add_argument_group(
        "experiment settings (override the preset; [range; value in each preset])")
    presets = {name: preset(name) for name in sorted(PRESETS)}
    for f in dataclasses.fields(Config):
        kind = f.metadata["type"]
        values = ", ".join(f"{name}: {_show(getattr(cfg, f.name))}" for name, cfg in presets.items())
        rng = f"range {RANGES[f.name]}; " if f.name in RANGES else ""
        kwargs = {"default": None, "help": f"{f.metadata['help']} [{rng}{values}]".replace("%", "%%"),
                  "metavar": f.name.upper()}
        if kind is tuple:
            kwargs.update(nargs=2, type=float, metavar=("LOW", "HIGH"))
        elif kind is bool:
            kwargs.update(type=_switch, metavar="{on,off}")
        elif "choices" in f.metadata:
            kwargs.update(choices=f.metadata["choices"], metavar=None)
        else:
            kwargs["type"] = integer if kind is int else kind
            if f.default is None:  # an optional field: 'none' unsets what the preset sets
                kwargs["type"] = _or_none(kwargs["type"])
                kwargs["help"] = kwargs["help"][:-1] + "; none: unset]"
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)


def integer(text):
    """An int, also written as ``1e5`` or ``100_000`` (refused if not whole)."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        return int(value)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fpsim",
        description="Simulate feature purification: clean then adversarial training of a two-layer "
                    "soft-threshold network on sparse-coding data, with every theorem quantity "
                    "measured. With no command, 'fpsim' is 'fpsim run'.")
    parser.add_argument("--version", action="version", version=f"fpsim {__version__}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the pipeline and write DIR/report.json, weights.npz, index.html",
                         description="Run the pipeline on a preset and write the report files, the "
                                     "figures and DIR/index.html. A finished run is read back, not "
                                     "recomputed; an interrupted one resumes.")
    run.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                     help=f"starting settings [default {DEFAULT_PRESET}]")
    run.add_argument("--out", default="runs/latest", help="output folder [default runs/latest]")
    run.add_argument("--fresh", action="store_true",
                     help="delete the saved phases and report in --out first and compute everything again")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument("--threads", type=int, default=None,
                     help="BLAS and numba threads (numba results do not depend on it, BLAS results only to "
                          "float rounding) [default: FPSIM_THREADS, else OMP_NUM_THREADS, else the cores "
                          "this process may use]")
    _add_config_options(run)
    rep = sub.add_parser("report", help="rebuild the figures and index.html of a finished run",
                         description="Rebuild RUN_DIR's figures and RUN_DIR/index.html from "
                                     "RUN_DIR/report.json and RUN_DIR/weights.npz alone.")
    rep.add_argument("run_dir", metavar="RUN_DIR")
    sub.add_parser("presets", help="list the presets and their settings")
    return parser


def _error(message, code=2):
    print(f"fpsim: error: {message}", file=sys.stderr)
    return code


def main(argv=None):
    """Entry point of the ``fpsim`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    if args.command == "presets":
        for name in sorted(PRESETS):
            print(f"{name}: {json.dumps(preset(name).to_dict())}")
        return 0
    if args.command == "report":
        return _report(args.run_dir)
    if args.threads is not None and args.threads < 1:
        return _error(f"threads must lie in [1, inf), got {args.threads}")
    try:
        config = config_from(args)
        preflight(config, args.out)
    except (TypeError, ValueError) as err:
        return _error(err)
    try:
        with thread_limit(args.threads):
            report = run_and_report(config, args.out, progress=not args.quiet, fresh=args.fresh)
    except (DivergenceError, UnreadableStateError, ConfigError) as err:
        return _error(err, 1)
    files = ["report.json", "weights.npz"] + (["index.html"] if isinstance(report.get("figures"), list) else [])
    print(f"fpsim: results in {', '.join(f'{args.out}/{name}' for name in files)}")
    if not isinstance(report.get("figures"), list):
        print(f"fpsim: no figures: {report.get('figures')}")
    _print_claims(report)
    return 0


def config_from(args):
    """The :class:`~fpsim.config.Config` of parsed ``fpsim run`` arguments: the preset with the options given.

    An optional field given as ``none`` is unset (``None``).  Raises
    ``ValueError`` for a value out of range and for an option that the other
    settings make meaningless (:data:`MEANINGFUL_IF`).
    """
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                 if getattr(args, f.name) is not None}
    overrides = {k: tuple(v) if isinstance(v, list) else None if v is UNSET else v for k, v in overrides.items()}
    config = preset(args.preset, **overrides)
    for name in overrides:
        if name in MEANINGFUL_IF and not MEANINGFUL_IF[name][0](config):
            raise ValueError(f"{MEANINGFUL_IF[name][1]}; drop it or change the setting it depends on")
    return config


def _report(run_dir):
    try:
        figures = write_report(run_dir)
    except (FileNotFoundError, UnreadableStateError, ImportError) as err:
        return _error(err, 1)
    print(f"fpsim: rebuilt {run_dir}/index.html with {len(figures)} figures ({', '.join(figures)})")
    _print_claims(read_json(f"{run_dir}/report.json"))
    return 0


def _print_claims(report):
    checker = claim_checker()
    if checker is None:
        print("fpsim: no claim checker installed (the fpsim.claims entry point; pip install . registers "
              "proofs_check)")
        return
    rows = claim_rows(report)
    print(checker.render_table(report, rows))
    print(render_intervals(rows))


if __name__ == "__main__":
    sys.exit(main())
