import csv
import json
import math
import os

import numpy as np
import pytest

from fpsim import finite_size, plots
from fpsim.data import SparseCodingModel
from fpsim.config import build, preset
from fpsim.experiment import run_experiment
from fpsim.finite_size import (crossing_radii, finite_size_point, ideal_net, mixture_projection, radius_grid,
                               separation, start_threshold)
from proofs_check import phase_diagram


@pytest.mark.parametrize("d, k, dictionary", [(40, 4, "random"), (64, 8, "hadamard"), (50, 2, "identity")])
def test_ideal_net_is_exact_below_the_smallest_magnitude(d, k, dictionary):
    # equal magnitudes 1/sqrt(k): f(x) = (1 - theta sqrt(k)) <w*, z>, the label's sign whenever <w*, z> != 0
    model = SparseCodingModel(d, k, dictionary=dictionary, magnitude=(1.0, 1.0), margin=1e-3, seed=2)
    x, y, _ = model.sample(2000, np.random.default_rng(0))
    for theta in (0.0, 0.5 / math.sqrt(k), 0.95 / math.sqrt(k)):
        assert ideal_net(model, theta).accuracy(x, y) == 1.0
    # above every magnitude no unit fires: f = 0, never a correct prediction
    assert ideal_net(model, 1.05 / math.sqrt(k)).accuracy(x, y) == 0.0


def test_ideal_net_obeys_the_margin_condition_of_its_docstring():
    d, k, a, b = 60, 4.0, 1.0, 1.3
    model = SparseCodingModel(d, k, magnitude=(a, b), seed=5, dtype=np.float64)
    x, y, z = model.sample(4000, np.random.default_rng(1))
    theta = 0.6 / math.sqrt(k)
    lo, hi = 1 - theta * math.sqrt(k) / a, 1 - theta * math.sqrt(k) / b
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    sure = centre * np.abs(z @ model.w_star) > half * np.abs(z * model.w_star).sum(axis=1)
    margin = y * ideal_net(model, theta).forward(x)
    assert sure.mean() > 0.5                  # the condition is not vacuous here
    assert (margin[sure] > 0).all()


def test_mixture_projection_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    model = SparseCodingModel(30, 3, seed=4)
    W = rng.normal(size=(12, 30))
    W[:6] += 5 * model.dictionary[:, :6].T       # some units with a clear principal atom
    from fpsim.network import TwoLayerNet
    got = mixture_projection(TwoLayerNet(W), model)
    A = W @ model.dictionary
    A[np.arange(12), np.argmax(np.abs(A), axis=1)] = 0.0
    expect = A @ (model.w_star / np.linalg.norm(model.w_star)) / np.linalg.norm(W, axis=1)
    np.testing.assert_allclose(got["rho"], expect, rtol=1e-10, atol=1e-12)
    assert got["median"] == pytest.approx(np.median(expect))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fs") / "run"
    config = preset("paper", d=32, k=3.0, m=64, threshold=0.6 / math.sqrt(3), tau=0.4 / math.sqrt(3),
                    clean_steps=150, adv_steps=60, baseline_steps=0, lowrank_ranks=None, fgm_check=False,
                    eval_size=300, robust_eval_size=150,
                    curve_points=1, pgd_steps=8, restarts=1)
    run_experiment(config, str(folder), progress=False)
    return str(folder)


def test_crossing_radii_are_ordered_and_bracketed_by_the_curve(run_dir):
    point = finite_size_point(run_dir, points=7)
    levels = ("0.99", "0.5", "0.01")
    for name in finite_size.NETS:
        net = point["nets"][name]
        for level in levels:                                   # certified end first
            assert net["lower"][level] <= net["upper"][level]
        for end in ("lower", "upper"):
            radii = [net[end][level] for level in levels]
            assert radii == sorted(radii)                      # 99 % <= 50 % <= 1 %
            taus = np.array(net["curve"]["taus"])
            values = np.array(net["curve"][end])
            for level, r in zip(levels, radii):
                if np.isfinite(r) and r > 0:   # every evaluated radius before r is above the level
                    assert (values[taus < r] >= float(level)).all()
                    assert (values[taus >= r] < float(level)).any()
        assert np.all(np.array(net["curve"]["lower"]) <= np.array(net["curve"]["upper"]))
    sep = separation(point)
    assert sep["ratio"] == pytest.approx(point["nets"]["clean"]["upper"]["0.01"]
                                         / point["nets"]["adversarial"]["lower"]["0.99"])
    assert sep["holds"] == (sep["ratio"] < 1)


def test_finite_size_point_is_resumable(run_dir, monkeypatch):
    first = finite_size_point(run_dir, points=7)
    path = os.path.join(run_dir, finite_size.RESULT_FILE)
    stamp = os.stat(path).st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although the result file was there")

    monkeypatch.setattr(finite_size, "crossing_radii", fail)
    again = finite_size_point(run_dir, points=7)
    assert os.stat(path).st_mtime_ns == stamp
    assert json.dumps(finite_size.jsonable(again), sort_keys=True) == \
        json.dumps(finite_size.jsonable(first), sort_keys=True)
    with pytest.raises(AssertionError, match="recomputed"):   # other settings: not reused
        finite_size_point(run_dir, points=5)


def test_crossing_radii_edges():
    model = SparseCodingModel(20, 2, magnitude=(1.0, 1.0), margin=1e-3, seed=1)
    x, y, _ = model.sample(100, np.random.default_rng(2))
    net = ideal_net(model, 0.5 / math.sqrt(2))
    out = crossing_radii(net, model, x, y, 2, [0.0, 1e-4], pgd_steps=2, restarts=1, refine=0)
    assert out["upper"]["0.5"] == float("inf")                 # still robust at the last radius
    out = crossing_radii(ideal_net(model, 2.0), model, x, y, 2, [0.0, 1e-4], pgd_steps=2, restarts=1)
    assert out["lower"]["0.99"] == 0.0 and out["upper"]["0.01"] == 0.0   # never accurate
    with pytest.raises(ValueError, match="level"):
        crossing_radii(net, model, x, y, 2, [0.0, 0.1], levels=(1.5,))
    assert radius_grid(4.0, (0.1, 4.0), 3).tolist() == pytest.approx([0.0, 0.05, 0.316227766, 2.0])


def test_separation_on_a_synthetic_point():
    def net(lower, upper, curve):
        return {"lower": lower, "upper": upper, "curve": curve}
    curve = {"taus": [0.0, 0.1, 0.2], "lower": [1.0, 1.0, 0.995], "upper": [1.0, 0.005, 0.0]}
    point = {"nets": {"clean": net({}, {"0.01": 0.09}, curve),
                      "adversarial": net({"0.99": 0.3}, {}, curve),
                      "ideal": net({"0.99": 0.05}, {}, curve)}}
    sep = separation(point)
    assert sep["holds"] and sep["ratio"] == pytest.approx(0.3) and sep["witness"] == 0.1
    assert not sep["ideal_holds"] and sep["ideal_ratio"] == pytest.approx(1.8)
    point["nets"]["adversarial"]["lower"]["0.99"] = 0.0
    assert separation(point)["ratio"] == float("inf") and not separation(point)["holds"]
    point["nets"]["adversarial"]["lower"]["0.99"] = 0.3
    point["nets"]["clean"]["curve"] = dict(curve, upper=[0.9, 0.005, 0.0])   # clean net below 99 %: no C2
    sep = separation(point)
    assert sep["ratio"] == sep["ideal_ratio"] == float("inf") and not sep["holds"] and sep["witness"] is None


def test_phase_fit_verdicts():
    rows = [{"d": d, "k": k, "R": 1 / x, "sqrt_k_rho": x} for d, k, x in ((100, 4, 1.0), (200, 9, 2.0),
                                                                          (400, 16, 4.0))]
    fitted = phase_diagram.fit(rows)
    assert fitted["slope"] == pytest.approx(-1.0) and fitted["verdict"] == "PASS"
    assert phase_diagram.fit([dict(r, R=1.0) for r in rows])["verdict"] == "FAIL"   # flat: slope 0
    assert phase_diagram.fit(rows[:2])["verdict"] == "UNDECIDED"                   # too few points
    # the fits recover the exponents of an exact power law with independent regressors
    law = [{"d": d, "k": k, "sqrt_k_rho": x, "R": 2.0 * d ** 0.3 * k ** -0.7 * x ** -1.2}
           for d, k, x in ((100, 4, 1.0), (200, 4, 3.0), (100, 9, 2.0), (400, 16, 1.5), (200, 16, 5.0))]
    full = phase_diagram.fit(law)["full"]
    assert (full["d"], full["k"], full["sqrt_k_rho"]) == pytest.approx((0.3, -0.7, -1.2))
    assert math.isnan(phase_diagram.fit(law[:3])["full"]["d"])                  # 3 points, 4 parameters
    narrow = [dict(r, sqrt_k_rho=1 + 0.1 * i, R=1 / (1 + 0.1 * i)) for i, r in enumerate(rows)]
    assert phase_diagram.fit(narrow)["verdict"] == "UNDECIDED"                      # no leverage


@pytest.fixture(scope="module")
def phase_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("phase") / "phase"
    import contextlib
    import io
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = phase_diagram.main(["--d", "24", "--k-exponents", "0.33", "0.5", "--out", str(out), "--quick",
                                   "--steps-per-atom", "5", "--quiet"])
    return out, code, printed.getvalue()


def test_phase_diagram_command_end_to_end(phase_out):
    out, code, printed = phase_out
    assert code == 0
    with open(out / "phase.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["d"], r["k"]) for r in rows] == [("24", "3.0"), ("24", "5.0")]
    if plots.available():
        assert (out / "phase.png").stat().st_size > 1000
    else:                                  # matplotlib is an optional extra: the command says so
        assert "matplotlib not installed" in printed
    assert "| d | k |" in (out / "phase.md").read_text()
    assert all(os.path.exists(out / f"d24-k{k}" / finite_size.RESULT_FILE) for k in (3, 5))
    assert "UNDECIDED" in printed          # two points: the criterion refuses a verdict
    with pytest.raises(SystemExit):
        phase_diagram.main(["--d", "24", "--k-exponents", "1.5", "--out", str(out)])


def test_phase_diagram_on_a_dask_client_reuses_the_cells(phase_out):
    distributed = pytest.importorskip("dask.distributed")
    out = phase_out[0]
    with open(out / "phase.csv") as handle:
        before = list(csv.DictReader(handle))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        rows, fitted, _, _ = phase_diagram.run([24], [0.33, 0.5], str(out), client=client, quick=True,
                                               steps_per_atom=5, progress=False)
    assert [str(r["s"]) for r in rows] == [r["s"] for r in before]
    assert fitted["verdict"] == "UNDECIDED"


def test_a_run_without_adversarial_weights_gives_the_clean_and_ideal_nets(run_dir, tmp_path):
    import shutil
    folder = tmp_path / "noadv"
    shutil.copytree(run_dir, folder)
    with np.load(folder / "weights.npz") as saved:
        np.savez(folder / "weights.npz", W_clean=saved["W_clean"])
    (folder / finite_size.RESULT_FILE).unlink(missing_ok=True)
    point = finite_size_point(str(folder), points=7)
    full = finite_size_point(run_dir, points=7)
    assert set(point["nets"]) == {"clean", "ideal"} and set(point["rho"]) == {"clean"}
    for name in ("clean", "ideal"):  # the same nets, the same examples: the same radii as the full run
        assert point["nets"][name]["upper"] == full["nets"][name]["upper"]
    sep = separation(point)
    assert sep["holds"] is None and math.isnan(sep["ratio"]) and sep["witness"] is None
    assert sep["ideal_ratio"] == separation(full)["ideal_ratio"]
    row = phase_diagram.row_of(0.33, point)
    assert math.isnan(row["s"]) and math.isnan(row["adv_acc"]) and row["R"] == full["ratio"]
    os.remove(folder / "weights.npz")
    np.savez(folder / "weights.npz", W_adv=np.zeros((64, 32)))
    with pytest.raises(ValueError, match="W_clean"):
        finite_size_point(str(folder))


def test_phase_diagram_without_adversarial_training(tmp_path):
    out = tmp_path / "phase"
    rows, fitted, text, _ = phase_diagram.run([24], [0.33], str(out), quick=True, steps_per_atom=5,
                                              progress=False, adversarial=False)
    assert len(rows) == 1 and rows[0]["holds"] is None and math.isfinite(rows[0]["s_ideal"])
    assert "n/a" in text
    with np.load(out / "d24-k3" / "weights.npz") as saved:
        assert "W_adv" not in saved


def test_start_threshold_fires_at_the_random_level_it_names():
    from dataclasses import replace
    # exactly k atoms of equal magnitude: |x| = 1 for every input, so the fraction below is exact
    config = preset("paper", d=400, k=4.0, m=400, threshold=0.3, margin=0.0, support="exact",
                    magnitude=(1.0, 1.0))
    start = start_threshold(config, level=2.0)
    assert start < config.threshold
    assert start_threshold(replace(config, threshold=0.05, threshold_end=0.3)) == start_threshold(config)
    assert start_threshold(config, level=100.0) == config.threshold    # theta within reach: no ramp
    # at initialisation a unit fires where |<w, x>|/|w| > start, i.e. |N(0, 1)| > 2 for a random direction
    model, net = build(config)
    x, _, _ = model.sample(2000, np.random.default_rng(0))
    W = net.W.astype(np.float64)
    cos = np.abs(x.astype(np.float64) @ W.T) / np.linalg.norm(W, axis=1)
    assert abs((cos > start).mean() - math.erfc(2 / math.sqrt(2))) < 0.005
    with pytest.raises(ValueError, match="level"):
        start_threshold(config, level=0.0)
    with pytest.raises(TypeError, match="config"):
        start_threshold({"d": 400})


def test_grid_cells_out_of_reach_at_initialisation_ramp_and_train():
    from dataclasses import replace
    from fpsim import train_clean
    cell = phase_diagram.config_for(400, 0.2, quick=True, steps_per_atom=3)     # k = 3: theta = 0.35
    assert cell.threshold == start_threshold(cell) < cell.threshold_end == pytest.approx(0.6 / math.sqrt(3))
    assert cell.ramp_steps == cell.clean_steps // phase_diagram.RAMP_FRACTION
    assert phase_diagram.config_for(400, 0.5, quick=True).threshold_end is None   # k = 20: in reach
    accuracy = {}
    for name, config in (("ramp", cell), ("constant", replace(cell, threshold=cell.threshold_end,
                                                               threshold_end=None, ramp_steps=0))):
        model, net = build(config)
        trained, history = train_clean(net, model, config.clean_steps, config.batch, config.lr, seed=0,
                                       progress=False, record_every=config.clean_steps, eval_size=1000)
        accuracy[name] = history["accuracy"][-1]
    assert accuracy["constant"] < 0.5 < 0.95 < accuracy["ramp"]

    lower = phase_diagram.config_for(400, 0.2, quick=True, steps_per_atom=3, start_level=2.5)
    assert lower.threshold == start_threshold(cell, 2.5) < cell.threshold
    for bad in ("0", "nan"):
        with pytest.raises(SystemExit):
            phase_diagram.main(["--d", "400", "--k-exponents", "0.2", "--start-level", bad, "--out", "unused"])


def test_grid_step_sizes_and_adversarial_steps_are_options_that_keep_the_default_cells():
    default = phase_diagram.config_for(400, 0.5, quick=True)
    base = preset("paper")
    assert (default.lr, default.adv_lr, default.adv_steps) == (base.lr, base.adv_lr, default.clean_steps // 2)
    same = phase_diagram.config_for(400, 0.5, quick=True, adv_steps_per_atom=None, lr_scale=1.0)
    assert same.fingerprint() == default.fingerprint()     # the cells already run are reused
    cell = phase_diagram.config_for(400, 0.5, quick=True, adv_steps_per_atom=30, lr_scale=4, adv_lr_scale=0.5)
    assert (cell.lr, cell.adv_lr) == (4 * base.lr, 0.5 * base.adv_lr)
    assert cell.adv_steps == round(30 * 400 / cell.k) and cell.clean_steps == default.clean_steps
    for bad in (0, -1.0, float("inf"), "2"):
        with pytest.raises(ValueError, match="^lr_scale"):
            phase_diagram.config_for(400, 0.5, lr_scale=bad)
        with pytest.raises(ValueError, match="adv_lr_scale"):
            phase_diagram.config_for(400, 0.5, adv_lr_scale=bad)
        with pytest.raises(ValueError, match="adv_steps_per_atom"):
            phase_diagram.config_for(400, 0.5, adv_steps_per_atom=bad)
    for flag, bad in (("--lr-scale", "0"), ("--adv-lr-scale", "inf"), ("--adv-steps-per-atom", "-3")):
        with pytest.raises(SystemExit):
            phase_diagram.main(["--d", "400", "--k-exponents", "0.5", flag, bad, "--out", "unused"])


def test_combine_tables_the_cells_of_several_grids_without_recomputing(phase_out, tmp_path):
    import contextlib
    import io
    first = phase_out[0]
    second = tmp_path / "second"
    phase_diagram.run([24], [0.5], str(second), quick=True, steps_per_atom=5, progress=False, adversarial=False)
    with open(first / "phase.csv") as handle:
        before = {r["k"]: r for r in csv.DictReader(handle)}
    stamps = {p: os.path.getmtime(p) for p in (first / "d24-k3" / finite_size.RESULT_FILE,
                                               second / "d24-k5" / finite_size.RESULT_FILE)}
    out = tmp_path / "both"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert phase_diagram.main(["--combine", str(first), str(second), "--out", str(out), "--quiet"]) == 0
    with open(out / "phase.csv") as handle:
        rows = {r["k"]: r for r in csv.DictReader(handle)}
    assert rows["3.0"] == before["3.0"]                 # from the first grid, as it was
    assert rows["5.0"]["s"] == "nan" != before["5.0"]["s"]  # the last grid given wins: no adversarial net there
    assert all(os.path.getmtime(p) == t for p, t in stamps.items())   # read back, not re-evaluated
    assert "UNDECIDED" in printed.getvalue()
    assert json.loads((out / "phase.json").read_text())["combined"] == [str(first), str(second)]
    with pytest.raises(SystemExit):
        phase_diagram.main(["--combine", str(tmp_path / "nowhere"), "--out", str(out)])
