"""The run page (index.html), its figures, `fpsim report`, and the accuracy intervals."""
import base64
import json
import os
from html.parser import HTMLParser

import numpy as np
import pytest

from fpsim.cli import main
from fpsim.config import PRESETS, Config, preset
from fpsim.report import EXPECTED_FAILS, claim_rows, preset_of, rank_curve, run_and_report
from fpsim.stats import accuracy_entry

import proofs_check

TINY = dict(d=30, k=2, m=20, clean_steps=60, adv_steps=20, batch=32, eval_size=200,
            robust_eval_size=50, pgd_steps=3, restarts=1, curve_points=3, baseline_steps=5)
FIGURES = {"robust_curve.png", "cosines.png", "dictionary.png", "spectrum.png", "training.png"}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.claims = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "tr" and "data-claim" in attrs:
            self.claims.append(attrs["data-claim"])


def _parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run_and_report(Config(**TINY), out, progress=False)
    return out


def test_index_html_embeds_every_figure_and_claim(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    assert set(report["figures"]) == FIGURES
    page = _parse(run_dir / "index.html")
    assert page.claims == [row["id"] for row in proofs_check.evaluate(report)]
    assert {"C1", "C2", "C3", "C4", "C5", "C6", "C7"} <= set(page.claims)
    assert len(page.images) == len(FIGURES)
    for src in page.images:  # self-contained: every image is a PNG inside the page
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(run_dir / "weights.npz") as w:  # the page needs nothing else than these files
        assert {"W_init", "W_clean", "W_adv", "M", "w_star"} <= set(w.files)
        np.testing.assert_allclose(w["M"].T @ w["M"], np.eye(30), atol=1e-10)


def test_every_accuracy_carries_its_interval(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    for net in ("clean", "adversarial"):
        part = report[net]
        pairs = [("accuracy", part["accuracy"], 200), ("robust_lower", part["robust"]["lower"], 50),
                 ("robust_upper", part["robust"]["upper"], 50)]
        for key, value, n in pairs:
            entry = part["intervals"][key]
            assert entry["value"] == value and entry["n"] == n
            assert entry["ci95"][0] <= value <= entry["ci95"][1]
    for runs in report["baselines"].values():
        for res in runs.values():
            if res["robust"] is not None:
                assert res["intervals"]["robust"]["n"] == 50
    rows = claim_rows(report)
    assert {r["id"] for r in rows if r["intervals"]} >= {"C2", "C3"}


def test_fpsim_report_rebuilds_the_page_from_the_saved_files(run_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("report.json", "weights.npz"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    assert main(["report", str(copy)]) == 0
    assert "C7" in capsys.readouterr().out
    assert {p for p in os.listdir(copy) if p.endswith(".png")} == FIGURES
    assert _parse(copy / "index.html").claims == _parse(run_dir / "index.html").claims
    (copy / "report.json").write_text('{"config": ')  # truncated
    assert main(["report", str(copy)]) == 1
    err = capsys.readouterr().err
    assert str(copy / "report.json") in err and "--fresh" in err


def test_expected_fail_reasons_follow_the_preset(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    assert preset_of(report["config"]) is None
    for name in PRESETS:
        assert preset_of(preset(name, eval_size=3000, robust_eval_size=100).to_dict()) == name
    report["config"] = preset("quick").to_dict()
    for row in claim_rows(report):
        reason = EXPECTED_FAILS["quick"].get(row["id"]) if row["verdict"] == "FAIL" else None
        assert row["expected"] == reason


def test_rank_curve_is_found_only_when_present():
    assert rank_curve({"metrics": {"update_spectrum": {"rank": [1]}}}) is None
    interval = lambda low, up: {"robust": {"lower": low, "upper": up}}  # noqa: E731
    report = {"low_rank": {"full": interval(0.95, 0.97), "ranks": {"4": interval(0.8, 0.9), "1": interval(0.5, 0.7)}}}
    found = rank_curve(report)
    assert found["rank"] == [1, 4] and found["lower"] == [0.5, 0.8] and found["upper"] == [0.7, 0.9]
    assert found["full"] == (0.95, 0.97)
    assert accuracy_entry(None, 10) is None


def test_claims_come_from_the_entry_point_and_their_absence_is_not_an_error(monkeypatch):
    import importlib.metadata

    from fpsim import report as report_module
    assert report_module.claim_checker() is proofs_check   # registered by setup.cfg, found by metadata
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda: {})   # a library without a checker
    assert report_module.claim_checker() is None
    assert report_module.claim_rows({"config": preset("quick").to_dict()}) == []
