import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fpsim import baselines
from fpsim.certify import critical_radius, robust_accuracy
from fpsim.data import SparseCodingModel
from proofs_check import scaling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("norm", [2, np.inf])
def test_linear_critical_radius_is_the_crossing_of_the_exact_curve(norm):
    model = SparseCodingModel(40, 2, magnitude=(1.0, 1.2), margin=0.5, seed=3)
    linear, _ = baselines.train_baseline(baselines.LinearClassifier(40, seed=1), model, steps=150,
                                         batch=64, lr=1.0, seed=3)
    x, y, _ = model.sample(401, np.random.default_rng(7))
    radius = scaling.linear_critical_radius(linear, x, y, norm)
    taus = np.linspace(0.0, 2 * radius, 4001)
    exact = np.array([np.mean(linear.certified_margin(x, y, norm, tau) > 0) for tau in taus])
    crossing = critical_radius({"taus": taus, "lower": exact, "upper": exact})["lower"]
    assert abs(crossing - radius) <= taus[1]   # odd n: the median is an example's own radius
    # and it is where fpsim.certify.robust_accuracy (exact for a linear model) drops below 1/2
    above = robust_accuracy(linear, x, y, norm, 0.99 * radius, pgd_steps=1, restarts=1)
    below = robust_accuracy(linear, x, y, norm, 1.01 * radius, pgd_steps=1, restarts=1)
    assert above.lower >= 0.5 > below.lower


def test_linear_critical_radius_counts_misclassified_examples_as_zero():
    linear = baselines.LinearClassifier(2)
    linear.u[:] = [3.0, 4.0]
    x = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    assert scaling.linear_critical_radius(linear, x, [1, 1, 1], 2) == pytest.approx(3.0 / 5.0)
    assert scaling.linear_critical_radius(linear, x, [1, -1, 1], 2) == 0.0
    assert scaling.linear_critical_radius(linear, x, [1, 1, 1], np.inf) == pytest.approx(3.0 / 7.0)
    with pytest.raises(TypeError, match="LinearClassifier"):
        scaling.linear_critical_radius(object(), x, [1, 1, 1], 2)


def test_fit_slope_recovers_a_power_law():
    rng = np.random.default_rng(0)
    sizes = np.array([50.0, 100.0, 200.0, 400.0, 800.0])
    for exponent in (-0.5, 0.0, -1.0):
        radii = 3.0 * sizes**exponent * np.exp(0.01 * rng.standard_normal(sizes.size))
        assert scaling.fit_slope(sizes, radii) == pytest.approx(exponent, abs=0.03)
    assert np.isnan(scaling.fit_slope(sizes, [1.0, np.nan, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="two distinct"):
        scaling.fit_slope([100.0, 100.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="shape of sizes"):
        scaling.fit_slope([100.0, 200.0], [1.0])


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
