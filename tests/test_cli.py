"""The command line: help, refused options, checks before work."""
import dataclasses
import json
import re

import pytest

from fpsim.cli import _show, build_parser, config_from, main
from fpsim.config import PRESETS, RANGES, Config, preset


def _help(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_shows_every_preset_value_and_range(capsys):
    text = _help(capsys)
    for f in dataclasses.fields(Config):
        for name in PRESETS:
            value = getattr(preset(name), f.name)
            assert f"{name}: {_show(value)}" in text, f.name
    for name, rng in RANGES.items():
        assert f"range {rng}" in text


@pytest.mark.parametrize("args,match", [
    (["--q", "3"], "--q only applies to --activation smooth"),
    (["--rho", "0.2"], "--rho only applies"),
    (["--attack", "fgm", "--attack-steps", "3"], "--attack-steps only applies to --attack pgd"),
    (["--ramp-steps", "10"], "--ramp-steps needs --threshold-end"),
    (["--adv-steps", "0", "--adv-lr", "1"], "--adv-lr needs --adv-steps > 0"),
    (["--baseline-steps", "0", "--baseline-lr", "1"], "--baseline-lr needs --baseline-steps > 0"),
    (["--d", "1e6"], r"needs about .* GiB"),
    (["--eval-size", "1e12"], r"evaluation .* GiB"),
    (["--tau", "0"], r"tau must lie in \(0, inf\)"),
    (["--margin", "100"], "margin gamma=100"),
    (["--dictionary", "hadamard"], "needs d a power of two"),
])
def test_refused_before_work(tmp_path, capsys, args, match):
    assert main(["run", "--out", str(tmp_path / "out"), *args]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "out" / ".fpsim").exists()


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert main(["run", "--out", str(tmp_path / "f")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_report_of_a_missing_run_is_named(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "report.json is missing" in capsys.readouterr().err


def test_smooth_activation_accepts_q_and_rho(tmp_path, capsys):
    # the combination is meaningful: no refusal (stopped right after the checks by a bad --threads)
    assert main(["run", "--out", str(tmp_path), "--activation", "smooth", "--q", "3", "--threads", "0"]) == 2
    assert "threads must lie in" in capsys.readouterr().err


TINY = dict(d=30, k=2, m=20, clean_steps=60, adv_steps=20, batch=32, eval_size=200,
            robust_eval_size=50, pgd_steps=3, restarts=1, curve_points=3, baseline_steps=0)


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


def test_cli_exposes_the_options():
    args = build_parser().parse_args(["run", "--lowrank-ranks", "1,2", "--fgm-check", "off"])
    assert args.lowrank_ranks == "1,2" and args.fgm_check is False


def test_none_unsets_an_optional_field_that_the_preset_sets():
    def config(*args):
        return config_from(build_parser().parse_args(["run", *args]))
    assert config("--preset", "headline").threshold_end == 0.12
    flat = config("--preset", "headline", "--threshold-end", "none", "--sigma0", "None", "--adv-lr", "unset")
    assert (flat.threshold_end, flat.sigma0, flat.adv_lr) == (None, None, None)
    assert config("--n-train", "NONE").n_train is None and config("--node-budget", "50").node_budget == 50
    with pytest.raises(ValueError, match="--ramp-steps needs --threshold-end"):
        config("--preset", "headline", "--threshold-end", "none", "--ramp-steps", "10")
    for field in ("--threshold", "--d", "--k"):          # required fields cannot be unset
        with pytest.raises(SystemExit):
            build_parser().parse_args(["run", field, "none"])
