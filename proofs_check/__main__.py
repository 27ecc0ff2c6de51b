"""``python -m proofs_check --preset NAME [--out DIR] [--strict] [--report FILE]``."""
import argparse
import os
import sys

from fpsim._io import UnreadableStateError, atomic_write_json, read_json
from fpsim.config import PRESETS, preset
from fpsim.report import run_and_report

from . import evaluate, render_table


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m proofs_check",
        description="Run fpsim once and check every theorem claim (C1-C7 and C3-FGM): the paper's statement, "
                    "the measured numbers, the criterion, PASS/FAIL.")
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    parser.add_argument("--out", default=None, help="output folder [default runs/proofs-PRESET]")
    parser.add_argument("--report", default=None,
                        help="check an existing report.json instead of running the pipeline")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any claim FAILs")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.report:
        try:
            report = read_json(args.report, fix="pass the report.json that fpsim run wrote")
        except (FileNotFoundError, UnreadableStateError) as err:
            parser.error(str(err))
        out = os.path.dirname(os.path.abspath(args.report))
    else:
        out = args.out or os.path.join("runs", f"proofs-{args.preset}")
        report = run_and_report(preset(args.preset), out, progress=not args.quiet)
    rows = evaluate(report)
    atomic_write_json(os.path.join(out, "claims.json"), {"config": report["config"], "claims": rows})
    print(render_table(report, rows))
    print(f"wrote {os.path.join(out, 'claims.json')}")
    failed = any(row["verdict"] == "FAIL" for row in rows)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
