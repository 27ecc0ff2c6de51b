"""fpsim.config: the Config fields, their declared constraints, presets, old reports' sentinels."""
import json

import pytest

from fpsim import train
from fpsim._validation import PARAMETER_CONSTRAINTS, describe_parameter, validate_parameter
from fpsim.config import LEGACY, PRESETS, RANGES, Config, build, eval_set, preset
from fpsim.experiment import load_finished


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
    (dict(tau=0.0), ValueError, r"tau must lie in \(0, inf\)"),
    (dict(dictionary="hadamard", d=30), ValueError, "needs d a power of two"),
    (dict(attack_steps=0), ValueError, "attack_steps must lie in"),
    (dict(n_train=10, batch=32), ValueError, "n_train must be None"),
])
def test_bad_config(changes, error, match):
    with pytest.raises(error, match=match):
        Config(**changes)


def test_constraints_are_declared_once_and_shared():
    """Config and train_adversarial refuse tau = 0 with the same message, before any training."""
    assert describe_parameter("tau") == "> 0" and RANGES["tau"] == "> 0"
    with pytest.raises(ValueError) as from_config:
        Config(tau=0.0)
    model, net = build(Config(d=16, k=2, m=4))
    with pytest.raises(ValueError) as from_training:
        train.train_adversarial(net, model, steps=1, batch=4, lr=0.1, tau=0.0)
    assert str(from_config.value) == str(from_training.value) == "tau must lie in (0, inf), got 0.0"
    for name, constraints in PARAMETER_CONSTRAINTS.items():  # unset is allowed exactly where declared
        if None in constraints:
            assert validate_parameter(name, None) is None
        else:
            with pytest.raises(TypeError, match=name):
                validate_parameter(name, None)


def test_unset_fields_are_none_and_old_sentinels_still_load(tmp_path):
    config = Config(d=30, k=2, m=20)
    assert (config.sigma0, config.threshold_end, config.n_train, config.adv_lr, config.lowrank_ranks) == (None,) * 5
    old = {**config.to_dict(), **LEGACY, "fgm_check": "off"}  # a config as older reports wrote it
    assert Config(**json.loads(json.dumps(old))) == config
    assert config.legacy_dict() == old  # hashes use the old spelling: old run folders keep their phases
    assert config.phase_key("clean") == Config(**old).phase_key("clean")
    (tmp_path / "weights.npz").write_bytes(b"")
    from fpsim import __version__
    (tmp_path / "report.json").write_text(json.dumps({"config": old, "fpsim_version": __version__}))
    assert load_finished(config, tmp_path) is not None
    assert load_finished(config.replace(seed=1), tmp_path) is None


@pytest.mark.parametrize("name, value", [("sigma0", -1.0), ("threshold_end", -0.5), ("n_train", -1),
                                         ("adv_lr", -1.0)])
def test_set_values_are_still_checked(name, value):
    with pytest.raises(ValueError, match=name):
        Config(**{name: value})


def test_eval_set_is_the_pipelines_held_out_set():
    config = Config(d=30, k=2, m=20, eval_size=40, robust_eval_size=10)
    x, y, z = eval_set(config)
    x2, y2, _ = eval_set(config, build(config)[0])
    assert x.shape == (40, 30) and (x == x2).all() and (y == y2).all()
