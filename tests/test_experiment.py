import json
import os

import numpy as np
import pytest

from fpsim.cli import main
from fpsim.experiment import PRESETS, Config, preset, run_experiment

TINY = dict(d=30, k=2, m=20, clean_steps=60, adv_steps=20, batch=32, eval_size=200,
            robust_eval_size=50, pgd_steps=3, restarts=1, curve_points=3, baseline_steps=0)


def test_presets_are_valid():
    for name in PRESETS:
        assert isinstance(preset(name), Config)
    assert preset("quick", d=50).d == 50


@pytest.mark.parametrize("changes,error,match", [
    (dict(d=1), ValueError, "d must lie in"),
    (dict(k=40.0, d=30), ValueError, "k must lie in"),
    (dict(norm="1"), ValueError, "norm must be one of"),
    (dict(tau=-1.0), ValueError, "tau must lie in"),
    (dict(batch=0), ValueError, "batch must lie in"),
    (dict(lr=float("inf")), ValueError, "lr must be finite"),
    (dict(m=2.5), TypeError, "m must be an integer"),
    (dict(robust_eval_size=5000), ValueError, "robust_eval_size must lie in"),
    (dict(magnitude=(0.0, 1.0)), ValueError, r"magnitude\[0\] must lie in"),
])
def test_bad_config(changes, error, match):
    with pytest.raises(error, match=match):
        Config(**changes)


def test_report_files_and_resume(tmp_path):
    config = Config(**TINY)
    report = run_experiment(config, tmp_path, progress=False)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["config"] == config.to_dict() and saved["seed"] == 0
    assert saved["clean"]["accuracy"] == report["clean"]["accuracy"]
    with np.load(tmp_path / "weights.npz") as w:
        assert w["W_init"].shape == (20, 30) and not np.array_equal(w["W_init"], w["W_clean"])
        first = {k: w[k].copy() for k in w.files}
    # a second run with the same config reuses the finished phases and gives the same numbers
    again = run_experiment(config, tmp_path, progress=False)
    assert again["clean"] == report["clean"]
    with np.load(tmp_path / "weights.npz") as w:
        for key in first:
            np.testing.assert_array_equal(w[key], first[key])
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_cli_runs_and_prints_claims(tmp_path, capsys):
    args = ["run", "--preset", "quick", "--out", str(tmp_path), "--quiet"]
    for key, value in TINY.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "C1" in out and "C7" in out
    assert json.loads((tmp_path / "report.json").read_text())["config"]["d"] == 30


def test_cli_rejects_bad_values(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path), "--k", "0.5"]) == 2
    assert "k must lie in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--norm", "3"])
