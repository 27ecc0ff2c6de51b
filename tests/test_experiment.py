import json
import os

import numpy as np
import pytest

import fpsim.experiment as experiment
from fpsim._io import UnreadableStateError
from fpsim.config import Config, build, eval_set
from fpsim.config import PRESETS, preset
from fpsim.experiment import (ConfigError, DivergenceError, check_margin, check_memory, load_nets,
                               run_experiment)

TINY = dict(d=30, k=2, m=20, clean_steps=60, adv_steps=20, batch=32, eval_size=200,
            robust_eval_size=50, pgd_steps=3, restarts=1, curve_points=3, baseline_steps=0)


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
    again = run_experiment(config, tmp_path, progress=False, reuse=False)
    assert again["clean"] == report["clean"]
    with np.load(tmp_path / "weights.npz") as w:
        for key in first:
            np.testing.assert_array_equal(w[key], first[key])
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]
    model, nets = load_nets(tmp_path)  # the nets rebuilt from the run folder alone
    assert nets["adversarial"].step == config.clean_steps + config.adv_steps
    for name, key in (("init", "W_init"), ("clean", "W_clean"), ("adversarial", "W_adv")):
        np.testing.assert_array_equal(nets[name].W, first[key])
    np.testing.assert_array_equal(model.dictionary, first["M"])
    x, y, _ = eval_set(config, model)
    assert nets["clean"].accuracy(x, y) == report["clean"]["accuracy"]


def _no_training(*args, **kwargs):
    raise AssertionError("a saved phase was trained again")


def test_evaluation_options_reuse_training_and_a_finished_run_is_read_back(tmp_path, monkeypatch):
    config = Config(**TINY)
    first = run_experiment(config, tmp_path, progress=False)
    monkeypatch.setattr(experiment, "train_clean", _no_training)
    monkeypatch.setattr(experiment, "train_adversarial", _no_training)
    changed = run_experiment(config.replace(eval_size=150, pgd_steps=2, curve_points=2), tmp_path,
                             progress=False)
    assert changed["config"]["eval_size"] == 150 and changed["history"] == first["history"]
    assert experiment.finished_phases(config.replace(eval_size=150), tmp_path) == ["clean", "adversarial"]
    assert experiment.finished_phases(config.replace(tau=0.2), tmp_path) == ["clean"]
    monkeypatch.setattr(experiment, "evaluate_net", _no_training)  # finished: nothing is recomputed
    assert run_experiment(config.replace(eval_size=150, pgd_steps=2, curve_points=2), tmp_path,
                          progress=False) == changed


def test_divergence_is_never_saved_as_finished(tmp_path):
    config = Config(**TINY, adv_lr=1e30)
    with pytest.raises(DivergenceError, match="adversarial training diverged.*lower the step size"):
        run_experiment(config, tmp_path, progress=False)
    saved = os.listdir(tmp_path / ".fpsim")
    assert any(f.startswith("clean-") for f in saved)
    assert not any(f.startswith("adversarial-") and not f.endswith("checkpoint.npz") for f in saved)
    assert not (tmp_path / "report.json").exists()


def test_a_diverging_phase_keeps_its_last_good_checkpoint(tmp_path):
    net0 = build(Config(**TINY))[1]

    def diverge(ckpt):
        np.savez(ckpt, W=net0.W)  # the last good state ...
        raise DivergenceError("the weights are no longer finite at step 7")  # ... then NaN

    with pytest.raises(DivergenceError, match="last good checkpoint is kept in .*clean-key-checkpoint"):
        experiment._phase(str(tmp_path), "clean", "key", net0, False, diverge)
    assert os.listdir(tmp_path) == ["clean-key-checkpoint.npz"]

    def nan_weights(ckpt):
        net = net0.copy()
        net._W[...] = np.nan  # what a diverged SGD loop leaves (the setter refuses NaN)
        return net, {"loss": [0.5]}

    os.unlink(tmp_path / "clean-key-checkpoint.npz")
    with pytest.raises(DivergenceError, match="non-finite"):
        experiment._phase(str(tmp_path), "clean", "key", net0, False, nan_weights)
    assert os.listdir(tmp_path) == []


def test_unreadable_state_is_named_with_the_fix(tmp_path):
    config = Config(**TINY)
    state = tmp_path / ".fpsim"
    state.mkdir()
    bad = state / f"clean-{config.phase_key('clean')}-checkpoint.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UnreadableStateError, match=f"{bad}.*--fresh"):
        run_experiment(config, tmp_path, progress=False)
    run_experiment(config, tmp_path, progress=False, fresh=True)
    (tmp_path / "report.json").write_text("{")
    with pytest.raises(UnreadableStateError, match="report.json.*JSONDecodeError.*--fresh"):
        run_experiment(config, tmp_path, progress=False)


def test_checks_before_work(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "train_clean", _no_training)
    need = check_memory(Config(**TINY), available=10**12)
    message = r"needs about .* GiB of memory \(weights .* GiB.*but only .* GiB is available"
    with pytest.raises(ConfigError, match=message):
        check_memory(Config(**TINY), available=need - 1)
    with pytest.raises(ConfigError, match="margin gamma=100 keeps 0.00% of the codes"):
        run_experiment(Config(**TINY, margin=100.0), tmp_path, progress=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        run_experiment(Config(**TINY), tmp_path / "file", progress=False)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_passes_the_margin_preflight(name):
    # the headline preset's gamma = 2.5 keeps only ~0.2 % of exactly-k codes: slow, yet within the sampler's budget
    assert check_margin(preset(name)) > 0


def test_a_rare_margin_is_still_sampled_and_an_unreachable_one_is_named():
    from fpsim import SparseCodingModel
    # gamma = 2.7 keeps ~0.6 % of the codes; a round draws what the acceptance so far says the rest
    # needs (plus a fifth), so 500 codes take a few rounds, not one round per few codes
    model = SparseCodingModel(50, 4, support="exact", margin=2.7, seed=0)
    rounds = []
    draw = model._draw_codes
    model._draw_codes = lambda n, rng: rounds.append(n) or draw(n, rng)
    z, y = model.sample_codes(500, np.random.default_rng(6))
    assert np.all(np.abs(z.astype(np.float64) @ model.w_star) >= 2.7) and len(y) == 500
    assert len(rounds) <= 6 and sum(rounds) < 3 * 500 / 0.006
    with pytest.raises(ValueError, match="of the .* codes drawn reached it"):
        SparseCodingModel(50, 4, support="exact", margin=100.0, seed=0).sample_codes(3)
