"""One runnable check per theorem claim, each reading fpsim's ``report.json``.

Every claim module defines ``ID``, ``STATEMENT`` (what the paper says),
``CRITERION`` (what is measured against what) and ``check(report) ->
(measured, passed)``.  ``passed`` is ``None`` when the report lacks what the
claim needs (for example a run without adversarial training); such a row is
shown as SKIP, never as PASS.
"""
from . import (c1_far_from_init, c2_clean_not_robust, c3_adversarial_robust, c3_fgm, c4_purification,
               c5_dense_mixture, c6_low_complexity, c7_low_rank, headline)

#: The C1 limit on the median |cos(w^0, w)|, drawn in fpsim's figures.
C1_LIMIT = c1_far_from_init.LIMIT

CLAIMS = (c1_far_from_init, c2_clean_not_robust, c3_adversarial_robust, c3_fgm, c4_purification,
          c5_dense_mixture, c6_low_complexity, c7_low_rank, headline)


def evaluate(report):
    """Rows ``{id, statement, criterion, measured, verdict}`` for every claim."""
    rows = []
    for claim in CLAIMS:
        try:
            measured, passed = claim.check(report)
        except KeyError as missing:
            measured, passed = {"missing from report": str(missing)}, None
        verdict = "SKIP" if passed is None else ("PASS" if passed else "FAIL")
        rows.append({"id": claim.ID, "statement": claim.STATEMENT, "criterion": claim.CRITERION,
                     "measured": measured, "verdict": verdict})
    return rows


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def render_table(report, rows=None):
    """The claims table as text: one block per claim, verdict first."""
    rows = evaluate(report) if rows is None else rows
    cfg = report["config"]
    lines = [f"Claims at d={cfg['d']}, k={cfg['k']:g}, m={cfg['m']}, tau={cfg['tau']:g} "
             f"(norm {cfg['norm']}), margin gamma={cfg['margin']:g}, seed={cfg['seed']}",
             "-" * 78]
    for row in rows:
        lines.append(f"{row['verdict']:<5} {row['id']:<6} {row['statement']}")
        lines.append(f"      criterion: {row['criterion']}")
        measured = ", ".join(f"{k}={_fmt(v)}" for k, v in row["measured"].items())
        lines.append(f"      measured:  {measured}")
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("PASS", "FAIL", "SKIP")}
    lines.append("-" * 78)
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items()))
    return "\n".join(lines)
