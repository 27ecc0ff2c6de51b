"""Command line: ``fpsim run --preset NAME --out DIR [--FIELD VALUE ...]``.

Every :class:`fpsim.experiment.Config` field is an option, with its help text
and default taken from the config itself; a preset sets the starting values
and explicit options override them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from . import __version__
from ._threads import thread_limit
from .experiment import DEFAULT_PRESET, PRESETS, Config, preset, run_experiment


def _add_config_options(parser):
    group = parser.add_argument_group("experiment settings (override the preset)")
    for f in dataclasses.fields(Config):
        kind = type(f.default)
        kwargs = {"default": None, "help": f"{f.metadata['help']} [default {f.default}]",
                  "metavar": f.name.upper()}
        if kind is tuple:
            kwargs.update(nargs=2, type=float, metavar=("LOW", "HIGH"))
        elif "choices" in f.metadata:
            kwargs.update(choices=f.metadata["choices"], metavar=None)
        else:
            kwargs["type"] = kind
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fpsim",
        description="Simulate feature purification: clean then adversarial training of a two-layer "
                    "soft-threshold network on sparse-coding data, with every theorem quantity "
                    "measured. With no command, 'fpsim' is 'fpsim run'.")
    parser.add_argument("--version", action="version", version=f"fpsim {__version__}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the pipeline and write DIR/report.json, DIR/weights.npz",
                         description="Run the pipeline on a preset and write the report files.")
    run.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                     help=f"starting settings [default {DEFAULT_PRESET}]")
    run.add_argument("--out", default="runs/latest", help="output folder [default runs/latest]")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument("--threads", type=int, default=None,
                     help="BLAS and numba threads (results do not depend on it) [default: all cores]")
    _add_config_options(run)
    sub.add_parser("presets", help="list the presets and their settings")
    return parser


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
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                 if getattr(args, f.name) is not None}
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    try:
        config = preset(args.preset, **overrides)
    except (TypeError, ValueError) as err:
        print(f"fpsim: error: {err}", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print(f"fpsim: error: threads must lie in [1, inf), got {args.threads}", file=sys.stderr)
        return 2
    with thread_limit(args.threads):
        report = run_experiment(config, args.out, progress=not args.quiet)
    print(f"fpsim: wrote {args.out}/report.json and {args.out}/weights.npz")
    from proofs_check import render_table  # proofs_check reads the report; imported last
    print(render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
