"""Low-rank (C7) and FGM (C3-FGM) adversarial runs in the pipeline: config, CLI, report entries."""
import os

import numpy as np
import pytest

import proofs_check
from fpsim.config import Config, preset
from fpsim.experiment import run_experiment

TINY = dict(d=30, k=2, m=20, clean_steps=60, adv_steps=20, batch=32, eval_size=200,
            robust_eval_size=50, pgd_steps=3, restarts=1, curve_points=3, baseline_steps=0)


@pytest.mark.parametrize("value, error, match", [
    ("0,2", ValueError, r"lowrank_ranks must be None \('none'\) or distinct .* \[1, min\(m, d\)=20\], got '0,2'"),
    ("1,21", ValueError, r"min\(m, d\)=20"),
    ("2,2", ValueError, "distinct"),
    ("1;2", ValueError, "comma-separated"),
    (4, TypeError, "lowrank_ranks must be None or a string"),
])
def test_config_refuses_bad_ranks(value, error, match):
    with pytest.raises(error, match=match):
        Config(**TINY, lowrank_ranks=value)


def test_config_ranks_and_fgm_switch():
    assert Config(**TINY, lowrank_ranks=" 1, 4 ").ranks() == (1, 4)
    assert Config(**TINY).ranks() == () and Config(**TINY).fgm_check is False  # off unless asked
    assert Config(**TINY).lowrank_ranks is None and Config(**TINY, lowrank_ranks="none").lowrank_ranks is None
    assert preset("paper").ranks() == (1, 2, 4, 8) and preset("paper").fgm_check is True
    assert Config(**TINY, fgm_check=True).fgm_check is True  # the spelling of older reports
    with pytest.raises(TypeError, match="fgm_check must be True or False"):
        Config(**TINY, fgm_check="yes")


def test_pipeline_reports_low_rank_and_fgm_runs(tmp_path):
    config = Config(**TINY, lowrank_ranks="1,3", fgm_check=True)
    report = run_experiment(config, tmp_path, progress=False)
    low = report["low_rank"]
    assert set(low["ranks"]) == {"1", "3"}
    assert low["full"]["robust"] == {k: report["adversarial"]["robust"][k] for k in ("lower", "upper")}
    for run in [*low["ranks"].values(), report["fgm"]]:
        assert 0 <= run["robust"]["lower"] <= run["robust"]["upper"] <= 1
        assert run["history"]["step"][-1] == config.adv_steps
    assert not report["fgm"]["reused_main_run"]
    assert 0 < low["update_split"]["own_atom_share"] < 1
    state, key = tmp_path / ".fpsim", config.phase_key("adversarial")
    assert ({f"adversarial-{run}-{key}.npz" for run in ("rank1", "rank3", "fgm")}
            <= set(os.listdir(state)))
    # the saved rank-1 phase differs from the clean weights by a rank-1 matrix
    with np.load(state / f"adversarial-rank1-{key}.npz") as saved, np.load(tmp_path / "weights.npz") as w:
        assert np.linalg.matrix_rank(saved["W"].astype(np.float64) - w["W_clean"], tol=1e-5) == 1
    verdicts = {r["id"]: r["verdict"] for r in proofs_check.evaluate(report)}
    assert verdicts["C7"] in ("PASS", "FAIL") and verdicts["C3-FGM"] in ("PASS", "FAIL")
    # a rerun reuses every saved phase and gives the same numbers
    again = run_experiment(config, tmp_path, progress=False)
    assert again["low_rank"]["ranks"]["1"]["robust"] == low["ranks"]["1"]["robust"]
    assert again["fgm"]["robust"] == report["fgm"]["robust"]


def test_fgm_row_reuses_an_fgm_main_run(tmp_path):
    report = run_experiment(Config(**TINY, attack="fgm", fgm_check=True), tmp_path, progress=False)
    assert report["fgm"]["reused_main_run"]
    assert report["fgm"]["robust"]["lower"] == report["adversarial"]["robust"]["lower"]
    assert report["low_rank"]["ranks"] == {}
    assert {r["id"]: r["verdict"] for r in proofs_check.evaluate(report)}["C7"] == "SKIP"
