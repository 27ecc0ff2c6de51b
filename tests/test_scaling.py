import json
import os
import subprocess
import sys

import pytest

from proofs_check import scaling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _slopes(lin, clean, adv):
    return {"linear trained": lin, "linear teacher": lin, "clean_net lower": clean,
            "clean_net upper": clean, "adversarial_net lower": adv, "adversarial_net upper": adv}


def _row(lin, clean, adv):
    return {"d": 100, "k": 4.0, "linear": {"trained": lin, "teacher": lin},
            "clean_net": {"lower": clean, "upper": clean}, "adversarial_net": {"lower": adv, "upper": adv}}


def test_judge_passes_the_predicted_exponents_and_fails_others():
    good = scaling.judge(_slopes(-0.5, -0.2, 0.0), _slopes(0.0, -0.3, -0.5),
                         [_row(0.1, 0.2, 0.3), _row(0.05, 0.32, 0.3)])
    assert len(good) == 7 and all(check["passed"] for check in good)
    bad = scaling.judge(_slopes(-0.1, -0.6, -0.4), _slopes(-0.4, 0.2, float("nan")),
                        [_row(0.1, 0.2, 0.3), _row(0.1, 0.4, 0.3)])
    assert not any(check["passed"] for check in bad)
    assert not scaling.judge(_slopes(-0.5, -0.2, 0.0), _slopes(0.0, -0.3, -0.5),
                             [_row(0.1, None, 0.3)])[-1]["passed"]


@pytest.mark.slow
def test_quick_scaling_check_end_to_end(tmp_path):
    out = tmp_path / "scaling"
    run = subprocess.run([sys.executable, "-m", "proofs_check.scaling", "--quick", "--out", str(out),
                          "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "slopes in d" in run.stdout and "verdict:" in run.stdout
    result = json.loads((out / "scaling.json").read_text())
    assert result["mode"] == "quick" and result["verdict"] in ("PASS", "FAIL")
    assert len(result["rows"]) == 5 and len(result["checks"]) == 7
    for row in result["rows"]:
        assert row["linear"]["teacher"] > 0 and len(row["adversarial_net"]["curve"]["taus"]) > 1
