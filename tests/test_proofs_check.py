import copy
import json

import pytest

import proofs_check
from proofs_check.__main__ import main


def _report(good):
    """A synthetic report on which every claim holds (good=True) or fails (good=False)."""
    hi, lo = (0.995, 0.005) if good else (0.9, 0.4)
    return {
        "config": {"d": 400, "k": 8, "m": 100, "tau": 0.2, "norm": "2", "margin": 0.5, "seed": 0},
        "clean": {"accuracy": hi, "robust": {"lower": 0.0, "upper": lo, "dense_direction": lo}},
        "adversarial": {"accuracy": hi, "robust": {"lower": hi if good else 0.5, "upper": 1.0}},
        "metrics": {
            "cos_init": {"clean": {"median": 0.05 if good else 0.3, "max": 0.2},
                         "adversarial": {"median": 0.05, "max": 0.2}},
            "purification": {"fraction": 0.9 if good else 0.3, "median_cos": 0.9},
            "dense_mixture": {"clean": {"median_share": 0.5, "median_alignment": 0.8, "median_norm": 1.0},
                              "adversarial": {"median_share": 0.2 if good else 0.3, "median_alignment": 0.2,
                                              "median_norm": 0.6}},
            "update_spectrum": {"top_energy": 0.1, "singular_values": [3.0, 1.0]},
        },
        "baselines": {"linear": {"clean": {"robust": 0.1 if good else 0.7, "robust_kind": "exact"}}},
        "low_rank": {"full": {"accuracy": hi, "robust": {"lower": 0.98, "upper": 1.0}},
                     "ranks": {"1": _run(0.5), "4": _run(0.965 if good else 0.955), "8": _run(0.99)},
                     "update_split": {"own_atom_share": 0.8, "rest_top_energy": 0.4}},
        "fgm": {"accuracy": hi, "robust": {"lower": hi if good else 0.9, "upper": 1.0}},
    }


def _run(lower):
    return {"accuracy": 0.99, "robust": {"lower": lower, "upper": 1.0}}


def test_every_claim_passes_on_a_report_where_it_holds():
    rows = proofs_check.evaluate(_report(True))
    assert [r["id"] for r in rows] == ["C1", "C2", "C3", "C3-FGM", "C4", "C5", "C6", "C7", "C2+C3"]
    assert all(r["verdict"] == "PASS" for r in rows), rows


def test_every_claim_fails_on_a_report_where_it_does_not_hold():
    rows = proofs_check.evaluate(_report(False))
    assert all(r["verdict"] == "FAIL" for r in rows), rows
    assert "FAIL" in proofs_check.render_table(_report(False), rows)


def test_missing_quantities_are_skipped_not_passed():
    report = copy.deepcopy(_report(True))
    del report["adversarial"]
    report["baselines"] = {}
    verdicts = {r["id"]: r["verdict"] for r in proofs_check.evaluate(report)}
    assert verdicts["C3"] == "SKIP" and verdicts["C6"] == "SKIP"


def test_c5_is_judged_on_the_share_not_the_absolute_norm():
    # norms grow (absolute mixture norm 0.6x, not < 0.5x) while the share falls 2.5x: PASS;
    # the share falling only to 0.6x of before: FAIL whatever the absolute norm does
    report = _report(True)
    row = {r["id"]: r for r in proofs_check.evaluate(report)}["C5"]
    assert row["verdict"] == "PASS" and row["measured"]["share ratio adv/clean"] == pytest.approx(0.4)
    report["metrics"]["dense_mixture"]["adversarial"].update(median_share=0.3, median_norm=0.1)
    assert {r["id"]: r for r in proofs_check.evaluate(report)}["C5"]["verdict"] == "FAIL"
    report["metrics"]["dense_mixture"]["clean"]["median_alignment"] = -0.1
    report["metrics"]["dense_mixture"]["adversarial"]["median_share"] = 0.1
    assert {r["id"]: r for r in proofs_check.evaluate(report)}["C5"]["verdict"] == "FAIL"


def test_c7_reads_ranks_up_to_four_only_and_skips_without_them():
    report = _report(False)  # r=4 is 2.5 points below the full update; r=8 is above it
    assert {r["id"]: r for r in proofs_check.evaluate(report)}["C7"]["verdict"] == "FAIL"
    report["low_rank"]["ranks"] = {"8": _run(0.99)}
    verdicts = {r["id"]: r["verdict"] for r in proofs_check.evaluate(report)}
    assert verdicts["C7"] == "SKIP"
    del report["fgm"]
    assert {r["id"]: r["verdict"] for r in proofs_check.evaluate(report)}["C3-FGM"] == "SKIP"


def test_strict_exits_nonzero_on_a_failing_report(tmp_path, capsys):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_report(False)))
    assert main(["--report", str(path)]) == 0
    assert main(["--report", str(path), "--strict"]) == 1
    claims = json.loads((tmp_path / "claims.json").read_text())["claims"]
    assert len(claims) == len(proofs_check.CLAIMS)


@pytest.mark.slow
def test_quick_preset_end_to_end(tmp_path, capsys):
    assert main(["--preset", "quick", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    claims = json.loads((tmp_path / "claims.json").read_text())["claims"]
    assert [c["id"] for c in claims] == ["C1", "C2", "C3", "C3-FGM", "C4", "C5", "C6", "C7", "C2+C3"]
    assert all(c["verdict"] in ("PASS", "FAIL") for c in claims)  # quick runs every phase
    for c in claims:
        assert f"{c['verdict']:<5} {c['id']}" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert 0 <= report["adversarial"]["robust"]["lower"] <= report["adversarial"]["robust"]["upper"] <= 1


def test_unreadable_report_is_named(tmp_path, capsys):
    bad = tmp_path / "report.json"
    bad.write_text("{truncated")
    with pytest.raises(SystemExit) as exit_:
        main(["--report", str(bad)])
    assert exit_.value.code == 2
    assert str(bad) in capsys.readouterr().err
