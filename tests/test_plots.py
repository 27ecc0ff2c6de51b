"""fpsim.plots: every figure is written as a PNG under its documented name (matplotlib is a test dependency)."""
import numpy as np

from fpsim import plots

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    return path.exists() and path.read_bytes()[:8] == PNG


def test_cosines_and_spectrum_figures(tmp_path):
    rng = np.random.default_rng(0)
    assert plots.available()
    cos = {"clean": rng.uniform(0, 1, 50), "adversarial": rng.uniform(0, 1, 50)}
    assert plots.cosines(cos, rng.uniform(-1, 1, 50), 100, 0.5, tmp_path) == "cosines.png"
    assert plots.cosines(cos, None, 100, 0.5, tmp_path / "one") == "cosines.png"  # C1 panel only
    sigma = np.sort(rng.uniform(0, 1, 20))[::-1]
    rank_curve = {"rank": [1, 2, 4], "lower": [0.1, 0.2, 0.3], "upper": [0.5, 0.6, 0.7], "full": (0.4, 0.8)}
    assert plots.spectrum(sigma, 3, tmp_path, rank_curve=rank_curve) == "spectrum.png"
    for path in (tmp_path / "cosines.png", tmp_path / "one" / "cosines.png", tmp_path / "spectrum.png"):
        assert _is_png(path)


def test_sweep_figures_follow_the_number_of_varying_fields(tmp_path):
    rows = [{"d": d, "k": k, "adv_robust_lower": 0.1 * i, "clean_robust_upper": 0.5, "adv_robust_upper": None,
             "clean_critical_upper": 0.2 / d}
            for i, (d, k) in enumerate([(50, 2.0), (100, 2.0), (50, 4.0), (100, 4.0)])]
    assert plots.sweep_figures(rows, ["d"], tmp_path / "one") == ["sweep_scaling.png"]
    assert plots.sweep_figures(rows, ["d", "k"], tmp_path / "two") == ["sweep_scaling.png", "sweep_phase.png"]
    assert plots.sweep_figures(rows, ["name"], tmp_path / "none") == []  # nothing numeric varies
    assert _is_png(tmp_path / "two" / "sweep_phase.png")
