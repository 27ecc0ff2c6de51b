import csv
import json
import sys

import pytest

import fpsim.sweep
from fpsim.config import Config
from fpsim.sweep import grid, run_sweep

TINY = dict(d=30, k=2, m=20, clean_steps=40, adv_steps=10, batch=32, eval_size=100,
            robust_eval_size=30, pgd_steps=2, restarts=1, curve_points=2, baseline_steps=0)


def test_grid_is_the_cartesian_product_in_order():
    base = Config(**TINY)
    configs = grid(base, d=[30, 40], k=[2.0, 3.0, 4.0], magnitude=[(1.0, 1.2)])
    assert [(c.d, c.k) for c in configs] == [(30, 2.0), (30, 3.0), (30, 4.0), (40, 2.0), (40, 3.0), (40, 4.0)]
    assert all(c.magnitude == (1.0, 1.2) and c.m == 20 for c in configs)
    assert grid(base) == [base]


@pytest.mark.parametrize("base,axes,error,match", [
    ({}, dict(d=[30]), TypeError, "base_config must be a fpsim Config"),
    (None, dict(depth=[1]), ValueError, "unknown Config field 'depth'"),
    (None, dict(d=[]), ValueError, "axis d must hold at least one value"),
    (None, dict(d=30), TypeError, "axis d must be a sequence"),
    (None, dict(norm="inf"), TypeError, "axis norm must be a sequence"),
    (None, dict(k=[2.0, 40.0]), ValueError, "k must lie in"),
])
def test_grid_rejects_bad_input(base, axes, error, match):
    with pytest.raises(error, match=match):
        grid(Config(**TINY) if base is None else base, **axes)


@pytest.mark.parametrize("configs,error,match", [
    (Config(**TINY), TypeError, "not a single Config"),
    ([], ValueError, "at least one Config"),
    ([Config(**TINY), {"d": 30}], TypeError, r"configs\[1\] must be a fpsim Config"),
    ([Config(**TINY), Config(**TINY)], ValueError, r"configs\[1\] repeats configs\[0\]"),
    ({"a/b": Config(**TINY)}, ValueError, "without a path separator"),
    ({"..": Config(**TINY)}, ValueError, "without a path separator"),
    (42, TypeError, "sequence or mapping of Config"),
])
def test_run_sweep_rejects_bad_configs(tmp_path, configs, error, match):
    with pytest.raises(error, match=match):
        run_sweep(configs, tmp_path, progress=False, figures=False)


def test_run_sweep_rejects_a_bad_folder():
    with pytest.raises(TypeError, match="out_root must be a folder path"):
        run_sweep([Config(**TINY)], None, progress=False, figures=False)


def test_sequential_sweep_writes_every_report_and_a_rerun_reuses_them(tmp_path, monkeypatch):
    configs = grid(Config(**TINY), seed=[0, 1])
    reports = run_sweep(configs, tmp_path, progress=False, figures=False)
    assert [r["seed"] for r in reports] == [0, 1]
    for config, report in zip(configs, reports):
        folder = tmp_path / f"seed={config.seed}"  # named by the field that varies
        assert json.loads((folder / "report.json").read_text())["config"] == config.to_dict()
        assert (folder / "weights.npz").exists()
        assert report["config"] == config.to_dict()

    def no_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(fpsim.sweep, "run_and_report", no_run)
    assert run_sweep(configs, tmp_path, progress=False, figures=False) == reports


def test_named_sweep_uses_the_names_and_reruns_a_changed_config(tmp_path):
    config = Config(**TINY)
    first, = run_sweep({"tiny": config}, tmp_path, progress=False, figures=False)
    assert (tmp_path / "tiny" / "report.json").exists()
    changed, = run_sweep({"tiny": config.replace(adv_steps=5)}, tmp_path, progress=False, figures=False)
    assert changed["config"]["adv_steps"] == 5 and first["config"]["adv_steps"] == 10
    assert json.loads((tmp_path / "tiny" / "report.json").read_text())["config"]["adv_steps"] == 5


def test_client_without_dask_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install \.\[distributed\]"):
        run_sweep([Config(**TINY)], tmp_path, client=object(), progress=False, figures=False)


def test_dask_client_runs_the_same_sweep(tmp_path):
    import dask.distributed as distributed  # installed by the README's test command: never skipped
    configs = grid(Config(**TINY), seed=[0, 1])
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=1,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with pytest.raises(TypeError, match="client must be a dask.distributed.Client"):
            run_sweep(configs, tmp_path / "bad", client=object(), progress=False, figures=False)
        reports = run_sweep(configs, tmp_path / "dask", client=client, progress=False, figures=False)
    sequential = run_sweep(configs, tmp_path / "seq", progress=False, figures=False)
    for config, report, expected in zip(configs, reports, sequential):
        assert (tmp_path / "dask" / f"seed={config.seed}" / "report.json").exists()
        assert report["clean"] == expected["clean"] and report["adversarial"] == expected["adversarial"]


def test_readable_names_and_summary_table(tmp_path):
    configs = grid(Config(**TINY), d=[30, 40], magnitude=[(1.0, 1.2)])
    assert fpsim.sweep.readable_names(configs) == ["d=30", "d=40"]
    assert fpsim.sweep.readable_names([Config(**TINY)]) == [Config(**TINY).fingerprint()]
    both = grid(Config(**TINY), k=[2.0, 3.0], magnitude=[(1.0, 1.2), (1.0, 1.5)])
    assert fpsim.sweep.readable_names(both)[1] == "k=2_magnitude=1-1.5"
    reports = run_sweep(configs, tmp_path, progress=False)
    with open(tmp_path / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == ["d=30", "d=40"] and [r["d"] for r in rows] == ["30", "40"]
    for row, report in zip(rows, reports):
        assert float(row["adv_robust_lower"]) == report["adversarial"]["robust"]["lower"]
        assert row["C3"] in ("PASS", "FAIL") and row["C6"] == "SKIP"
    assert (tmp_path / "sweep_scaling.png").read_bytes()[:4] == b"\x89PNG"
