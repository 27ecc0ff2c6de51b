"""Presets, the end-to-end pipeline, and the report files.

:func:`run_experiment` is the main job: draw the model and the initial
network, train cleanly, train adversarially from the clean weights, measure
every theorem quantity and write ``DIR/report.json`` and ``DIR/weights.npz``
(both atomically).  Each finished phase is kept under ``DIR/.fpsim/`` and an
unfinished one checkpoints there, so an interrupted run started again with the
same config resumes and ends with the same numbers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from ._io import atomic_savez, atomic_write_json
from ._validation import (check_choice, check_dtype, check_float, check_int, check_norm, check_pair,
                          stream)
from .data import DICTIONARIES, SUPPORTS, SparseCodingModel
from . import baselines, metrics, plots
from .attacks import dense_direction
from .certify import critical_radius, robust_accuracy, robust_curve
from .network import ACTIVATIONS, THRESHOLD_KINDS, Threshold, TwoLayerNet
from .train import train_adversarial, train_clean


def _opt(default, help, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Config:
    """Every setting of one experiment; field help texts are the CLI's ``--help``."""

    # data (MODEL.md §2)
    d: int = _opt(100, "input dimension d (>= 2)")
    k: float = _opt(4.0, "expected code sparsity k, 1 <= k < d")
    dictionary: str = _opt("random", "dictionary M", choices=DICTIONARIES)
    noise: float = _opt(0.0, "noise level sigma_xi >= 0 (noise N(0, sigma_xi^2/d I))")
    magnitude: tuple = _opt((1.0, 2.0), "range [a, b] of U; non-zero |z_j| = min(U/sqrt(k), 1)")
    teacher: tuple = _opt((0.5, 1.0), "range of |w*_j| (signs uniform)")
    margin: float = _opt(0.0, "label margin gamma >= 0: codes with |<w*, z>| < gamma are redrawn")
    support: str = _opt("bernoulli", "support law of the code: bernoulli (k/d each) or exact (k integer)",
                        choices=SUPPORTS)
    # network (MODEL.md §3)
    m: int = _opt(200, "number of neurons m")
    sigma0: float = _opt(0.0, "initial weight scale sigma_0 (0 means 1/d)")
    threshold: float = _opt(0.3, "threshold theta (relative: b_i = theta ||w_i||; absolute: b_i = theta)")
    threshold_end: float = _opt(-1.0, "final theta of a linear ramp (-1: constant threshold)")
    ramp_steps: int = _opt(0, "steps of the threshold ramp (counted over clean training)")
    threshold_kind: str = _opt("relative", "bias rule", choices=THRESHOLD_KINDS)
    activation: str = _opt("relu", "activation phi", choices=ACTIVATIONS)
    q: float = _opt(2.0, "degree q >= 2 of the smoothed ReLU")
    rho: float = _opt(0.1, "width rho > 0 of the smoothed ReLU")
    dtype: str = _opt("float32", "floating point type", choices=("float32", "float64"))
    # clean training (MODEL.md §4)
    clean_steps: int = _opt(1000, "clean SGD steps T")
    batch: int = _opt(128, "batch size B")
    lr: float = _opt(0.5, "clean step size eta")
    weight_decay: float = _opt(0.0, "weight decay lambda >= 0 (both phases)")
    n_train: int = _opt(0, "training-set size N (0: a fresh batch every step)")
    # adversarial training (MODEL.md §4-§5)
    adv_steps: int = _opt(500, "adversarial SGD steps (0 skips the phase)")
    adv_lr: float = _opt(0.0, "adversarial step size (0: same as lr)")
    attack: str = _opt("pgd", "attack used in adversarial training", choices=("pgd", "fgm"))
    norm: str = _opt("2", "perturbation norm", choices=("2", "inf"))
    tau: float = _opt(0.25, "perturbation radius tau")
    attack_steps: int = _opt(5, "PGD steps during adversarial training")
    lowrank_ranks: str = _opt("none", "ranks r of the extra low-rank adversarial runs W' = W + U V^T "
                              "from the clean W (C7), comma-separated, each in [1, min(m, d)]; "
                              "'none' skips them (presets: paper 1,2,4,8; quick 4)")
    fgm_check: str = _opt("off", "extra FGM adversarial run from the clean weights, same tau and steps "
                          "(the C3-FGM row; reuses the main run when attack is fgm; presets: on)",
                          choices=("on", "off"))
    # evaluation (MODEL.md §5-§7)
    eval_size: int = _opt(2000, "held-out samples for the final evaluation")
    robust_eval_size: int = _opt(500, "held-out samples for robust accuracy (attacks, certificates)")
    pgd_steps: int = _opt(20, "PGD steps when evaluating robust accuracy")
    restarts: int = _opt(2, "PGD restarts when evaluating robust accuracy")
    curve_points: int = _opt(9, "points of the robust-accuracy curve over tau' in (0, 2 tau]")
    baseline_steps: int = _opt(0, "SGD steps for the C6 baselines (0: skip them)")
    baseline_lr: float = _opt(0.1, "step size of the C6 baselines")
    seed: int = _opt(0, "the one seed every random draw derives from")

    def __post_init__(self):
        for name in ("magnitude", "teacher"):  # JSON gives lists; keep pairs as tuples
            setattr(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self):
        """Check every field; raises ValueError/TypeError naming the field and its range."""
        check_int("d", self.d, 2)
        check_float("k", self.k, 1, self.d, closed=(True, False))
        check_pair("magnitude", self.magnitude, 0.0)
        check_pair("teacher", self.teacher, 0.0)
        for name in ("dictionary", "support", "threshold_kind", "activation", "dtype", "attack", "norm",
                     "fgm_check"):
            check_choice(name, getattr(self, name), self.__dataclass_fields__[name].metadata["choices"])
        for name in ("noise", "margin", "threshold", "weight_decay", "tau", "sigma0", "adv_lr"):
            check_float(name, getattr(self, name), 0)
        for name in ("m", "clean_steps", "batch", "eval_size", "robust_eval_size", "pgd_steps",
                     "restarts", "curve_points"):
            check_int(name, getattr(self, name), 1)
        for name in ("ramp_steps", "n_train", "adv_steps", "attack_steps", "baseline_steps", "seed"):
            check_int(name, getattr(self, name), 0)
        check_float("lr", self.lr, 0, closed=(False, True))
        check_float("baseline_lr", self.baseline_lr, 0, closed=(False, True))
        check_float("q", self.q, 2)
        check_float("rho", self.rho, 0, closed=(False, True))
        if self.threshold_end != -1.0:
            check_float("threshold_end", self.threshold_end, 0)
        if self.robust_eval_size > self.eval_size:
            raise ValueError(f"robust_eval_size must lie in [1, eval_size={self.eval_size}], "
                             f"got {self.robust_eval_size}")
        if self.support == "exact" and self.k != int(self.k):
            raise ValueError(f"support='exact' needs an integer k, got k={self.k:g}")
        check_dtype("dtype", self.dtype)
        check_norm(self.norm)
        self.ranks()

    def ranks(self):
        """The ranks of ``lowrank_ranks`` as a tuple of ints (empty for ``'none'``), validated."""
        text = self.lowrank_ranks.strip().lower() if isinstance(self.lowrank_ranks, str) else None
        if text is None:
            raise TypeError(f"lowrank_ranks must be a string such as '1,2,4,8', got {self.lowrank_ranks!r}")
        if text in ("", "none"):
            return ()
        high = min(self.m, self.d)
        try:
            ranks = tuple(int(part) for part in text.split(","))
        except ValueError:
            ranks = ()
        if not ranks or any(not 1 <= r <= high for r in ranks) or len(set(ranks)) != len(ranks):
            raise ValueError(f"lowrank_ranks must be 'none' or distinct comma-separated integers in "
                             f"[1, min(m, d)={high}], got {self.lowrank_ranks!r}")
        return ranks

    def replace(self, **changes):
        """Copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """The config as plain JSON types (pairs as lists); ``Config(**d)`` restores it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def fingerprint(self):
        """Stable hash of the config, naming the saved phases of a run."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


#: Built-in presets: changes to the :class:`Config` defaults.  See ``docs/presets.md``.
_SHARED = dict(d=400, k=16, m=800, magnitude=(1.0, 1.2), margin=1.25, threshold=0.15, batch=256,
               lr=1.0, adv_lr=3.0, attack="pgd", norm="2", tau=0.1, attack_steps=5, fgm_check="on")
PRESETS = {
    # first contact and CI: every phase, about a minute; claims may fail here and say so
    # (one low-rank run, r = 4: a rank-4 update contains every rank <= 4 one; C7 asks for some r <= 4)
    "quick": dict(_SHARED, clean_steps=1000, adv_steps=700, weight_decay=1e-4, eval_size=1000,
                  robust_eval_size=500, baseline_steps=200, lowrank_ranks="4"),
    # the regime of docs/presets.md: C3 certified at tau = 0.4/sqrt(k), under 10 minutes on 2 cores
    "paper": dict(_SHARED, clean_steps=3000, adv_steps=1500, weight_decay=3e-4, eval_size=2000,
                  robust_eval_size=2000, baseline_steps=1000, lowrank_ranks="1,2,4,8"),
}
DEFAULT_PRESET = "quick"


def preset(name, **overrides):
    """The :class:`Config` of a built-in preset, with optional field overrides."""
    check_choice("preset", name, PRESETS)
    return Config(**{**PRESETS[name], **overrides})


def build(config):
    """The data model and the initial network of a config."""
    model = SparseCodingModel(config.d, config.k, dictionary=config.dictionary, noise=config.noise,
                              magnitude=config.magnitude, teacher=config.teacher,
                              margin=config.margin, support=config.support, seed=config.seed,
                              dtype=config.dtype)
    end = None if config.threshold_end == -1.0 else config.threshold_end
    threshold = Threshold(config.threshold, kind=config.threshold_kind, end=end,
                          ramp_steps=config.ramp_steps)
    net = TwoLayerNet.random(config.m, config.d, sigma0=config.sigma0 or None, threshold=threshold,
                             seed=stream(config.seed, "init"), dtype=config.dtype,
                             activation=config.activation, q=config.q, rho=config.rho)
    return model, net


def run_experiment(config, out_dir, progress=True):
    """Run the whole pipeline and write the report files.

    Parameters
    ----------
    config : Config
    out_dir : str or path
        Output folder; receives ``report.json`` and ``weights.npz``.
    progress : bool
        Progress lines on stderr.

    Returns
    -------
    report : dict
        What ``report.json`` holds.
    """
    config.validate()
    state_dir = os.path.join(out_dir, ".fpsim", config.fingerprint())
    os.makedirs(state_dir, exist_ok=True)
    timings = {}
    model, net0 = build(config)
    clock = time.perf_counter()
    net_clean, hist_clean = _phase(state_dir, "clean", net0, progress, lambda ckpt: train_clean(
        net0, model, config.clean_steps, config.batch, config.lr, weight_decay=config.weight_decay,
        n_train=config.n_train or None, seed=config.seed, progress=progress, checkpoint=ckpt))
    timings["clean_training_s"] = time.perf_counter() - clock

    net_adv = hist_adv = None
    if config.adv_steps > 0:
        clock = time.perf_counter()
        net_adv, hist_adv = _phase(state_dir, "adversarial", net_clean, progress,
                                   lambda ckpt: adversarial_phase(config, model, net_clean, progress, ckpt))
        timings["adversarial_training_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    x_test, y_test, _ = model.sample(config.eval_size, stream(config.seed, "eval"))
    report = {
        "fpsim_version": __version__,
        "seed": config.seed,
        "config": config.to_dict(),
        "clean": evaluate_net(net_clean, model, x_test, y_test, config),
        "history": {"clean": hist_clean},
    }
    weights = {"W_init": net0.W, "W_clean": net_clean.W}
    report["metrics"] = {"cos_init": {"clean": _summary(metrics.cos_to_init(net_clean.W, net0.W))},
                         "dense_mixture": {"clean": _mixture(net_clean, model)}}
    if net_adv is not None:
        report["adversarial"] = evaluate_net(net_adv, model, x_test, y_test, config)
        report["history"]["adversarial"] = hist_adv
        weights["W_adv"] = net_adv.W
        found = report["metrics"]
        found["cos_init"]["adversarial"] = _summary(metrics.cos_to_init(net_adv.W, net0.W))
        found["dense_mixture"]["adversarial"] = _mixture(net_adv, model)
        found.update(_update_metrics(net_clean, net_adv))
    timings["evaluation_s"] = time.perf_counter() - clock
    if net_adv is not None:  # C7 low-rank runs and the C3-FGM run (each a cached phase)
        clock = time.perf_counter()
        report.update(adversarial_variants(config, model, net_clean, net_adv, report["adversarial"],
                                           x_test, y_test, state_dir, progress))
        timings["adversarial_variants_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    report["baselines"] = run_baselines(config, model, net0, x_test, y_test) if config.baseline_steps else {}
    timings["baselines_s"] = time.perf_counter() - clock
    report["timings"] = timings
    if plots.available():
        report["figures"] = plots.write_figures(report, out_dir)
    else:
        report["figures"] = "matplotlib not installed (pip install .[plot])"
    _write(out_dir, report, weights)
    return report


def evaluate_net(net, model, x, y, config):
    """Clean accuracy, the robust-accuracy interval at the config's radius, and the radius curve.

    Returns
    -------
    dict
        ``accuracy``; ``robust`` (``lower`` certified, ``upper`` attacked,
        ``gap``, ``dense_direction``: accuracy under that attack alone,
        ``certified_by``: examples per certificate); ``curve`` (``tau``,
        ``lower``, ``upper`` over ``curve_points`` radii in ``(0, 2 tau]``) and
        ``critical_radius`` (where each end crosses 50 %).
    """
    n = config.robust_eval_size
    xr, yr = x[:n], y[:n]
    rng = stream(config.seed, "attack")
    res = robust_accuracy(net, xr, yr, config.norm, config.tau, model=model,
                          pgd_steps=config.pgd_steps, restarts=config.restarts, rng=rng)
    dense = y[:n] * net.forward(xr + dense_direction(model, xr, yr, config.norm, config.tau)) > 0
    methods, counts = np.unique(res.method[res.certified], return_counts=True)
    taus = config.tau * 2 * np.arange(1, config.curve_points + 1) / config.curve_points
    curve = robust_curve(net, xr, yr, config.norm, taus, model=model, pgd_steps=config.pgd_steps,
                         restarts=config.restarts, rng=rng)
    return {"accuracy": net.accuracy(x, y),
            "robust": {"lower": res.lower, "upper": res.upper, "gap": res.gap,
                       "dense_direction": float(dense.mean()),
                       "certified_by": dict(zip(methods.tolist(), counts.tolist()))},
            "curve": {"tau": curve["taus"].tolist(), "lower": curve["lower"].tolist(),
                      "upper": curve["upper"].tolist()},
            "critical_radius": {k: (None if np.isnan(v) else v)
                                for k, v in critical_radius(curve).items()}}


def run_baselines(config, model, net0, x, y):
    """The C6 baselines, each trained clean and adversarially at the config's radius.

    Linear (exact robust accuracy), degree-2 and degree-3 polynomials and the
    NTK of the network at its initialisation (robust accuracy by attack: an
    upper end), all with the network's batch and attack and step size
    ``baseline_lr``.  A run that diverges is recorded as such.

    Returns
    -------
    dict
        ``{name: {"clean" | "adversarial": {accuracy, robust, robust_kind}}}``.
    """
    seed = stream(config.seed, "baseline").integers(2**31)
    makers = {"linear": lambda: baselines.LinearClassifier(config.d, seed=seed),
              "poly2": lambda: baselines.PolynomialClassifier(config.d, degree=2, seed=seed),
              "poly3": lambda: baselines.PolynomialClassifier(config.d, degree=3, seed=seed),
              "ntk": lambda: baselines.NTKClassifier(net0)}
    if config.activation != "relu":
        del makers["ntk"]  # the NTK baseline is defined for the ReLU network only
    n = config.robust_eval_size
    out = {}
    for name, make in makers.items():
        out[name] = {}
        for regime, tau in (("clean", None), ("adversarial", config.tau)):
            attack = "fgm" if name == "linear" else config.attack  # FGM is exact for a linear model
            try:
                trained, _ = baselines.train_baseline(
                    make(), model, steps=config.baseline_steps, batch=config.batch, lr=config.baseline_lr,
                    tau=tau, norm=config.norm, attack=attack, weight_decay=config.weight_decay,
                    attack_kwargs=None if attack == "fgm" else {"steps": config.attack_steps},
                    seed=config.seed)
            except FloatingPointError as err:  # recorded, not hidden: C6 shows it
                out[name][regime] = {"accuracy": None, "robust": None, "robust_kind": f"diverged: {err}"}
                continue
            res = baselines.robust_accuracy(trained, x[:n], y[:n], config.norm, config.tau, model=model,
                                            pgd_steps=config.pgd_steps, restarts=config.restarts,
                                            rng=stream(config.seed, "attack"))
            out[name][regime] = {"accuracy": trained.accuracy(x, y),
                                 "robust": res.lower if name == "linear" else res.upper,
                                 "robust_kind": "exact" if name == "linear" else "attacked, upper end"}
    return out


def adversarial_phase(config, model, net_clean, progress, checkpoint, **changes):
    """The config's adversarial training from the clean net (``changes``: other train_adversarial options)."""
    options = dict(attack=config.attack, norm=config.norm, tau=config.tau, attack_steps=config.attack_steps,
                   robust_eval_size=min(config.robust_eval_size, 200), weight_decay=config.weight_decay,
                   n_train=config.n_train or None, seed=config.seed, progress=progress, checkpoint=checkpoint)
    return train_adversarial(net_clean, model, config.adv_steps, config.batch, config.adv_lr or config.lr,
                             **{**options, **changes})


def adversarial_variants(config, model, net_clean, net_adv, adv_eval, x, y, state_dir, progress):
    """C7 and C3-FGM: the extra adversarial runs from the clean weights, as report entries.

    Each run is the main adversarial phase (same attack, tau, steps, step
    size, batches) with one change, saved and resumed like every phase:

    * ``low_rank``: for each r of ``config.lowrank_ranks``, the rank-r update
      ``W' = W + U V^T`` (:class:`fpsim.train.LowRankStep`); entries ``ranks``
      (``{"r": {accuracy, robust: {lower, upper}, history, time_s}}``),
      ``full`` (the main run's accuracy and interval) and ``update_split`` of
      the full update (:func:`fpsim.metrics.update_split`, a diagnostic);
    * ``fgm``: FGM adversarial training (the main run when it is FGM already).

    Robust intervals are taken exactly as for the main run (same examples,
    attacks, certificates and random stream), so the rows compare like for like.
    """
    n, found = config.robust_eval_size, {}
    record = {"record_every": max(config.adv_steps // 5, 1)}

    def interval(net):
        res = robust_accuracy(net, x[:n], y[:n], config.norm, config.tau, model=model,
                              pgd_steps=config.pgd_steps, restarts=config.restarts,
                              rng=stream(config.seed, "attack"))
        return {"accuracy": net.accuracy(x, y), "robust": {"lower": res.lower, "upper": res.upper}}

    def run(name, **changes):
        clock = time.perf_counter()
        net, history = _phase(state_dir, name, net_clean, progress, lambda ckpt: adversarial_phase(
            config, model, net_clean, progress, ckpt, **record, **changes))
        return net, {**interval(net), "history": history, "time_s": time.perf_counter() - clock}

    full = {"accuracy": adv_eval["accuracy"],
            "robust": {k: adv_eval["robust"][k] for k in ("lower", "upper")}}
    found["low_rank"] = {"full": full, "ranks": {},
                         "update_split": metrics.update_split(net_clean.W, net_adv.W,
                                                              model.dictionary).summary()}
    for rank in config.ranks():
        _, found["low_rank"]["ranks"][str(rank)] = run(f"adversarial-rank{rank}", rank=rank)
    if config.fgm_check == "on":
        if config.attack == "fgm":
            found["fgm"] = {**full, "reused_main_run": True}
        else:
            _, found["fgm"] = run("adversarial-fgm", attack="fgm")
            found["fgm"]["reused_main_run"] = False
    return found


def _summary(values):
    return {"median": float(np.median(values)), "mean": float(np.mean(values)),
            "max": float(np.max(values)), "min": float(np.min(values))}


def _mixture(net, model):
    view = metrics.dictionary_view(net.W, model.dictionary, model.w_star)
    norms = np.linalg.norm(net.W.astype(np.float64), axis=1) * view.dense_share
    return {"median_share": float(np.median(view.dense_share)),
            "median_top_atom_share": float(np.median(view.top_atom_share)),
            "median_alignment": float(np.median(view.dense_alignment)),
            "median_norm": float(np.median(norms))}


def _update_metrics(net_clean, net_adv):
    """C4 and C7: the purification decomposition and the spectrum of W' - W."""
    pur = metrics.purification(net_clean.W, net_adv.W)
    spec = metrics.update_spectrum(net_clean.W, net_adv.W)
    return {"purification": {"fraction": pur.fraction_purified, "median_cos": float(np.median(pur.cos))},
            "update_spectrum": {"top": spec.top, "top_energy": spec.top_energy,
                                "singular_values": spec.singular_values[:10].tolist()}}


def _phase(state_dir, name, net0, progress, train):
    """Run a training phase once: reuse its saved result, or train with a checkpoint and save."""
    done = os.path.join(state_dir, f"{name}.npz")
    if os.path.exists(done):
        with np.load(done) as saved:
            net = net0.copy()
            net.W = saved["W"]
            net.step = int(saved["step"])
            history = json.loads(str(saved["history"]))
        if progress:
            print(f"[fpsim] {name}: reusing the finished phase saved in {done}", file=sys.stderr)
        return net, history
    ckpt = os.path.join(state_dir, f"{name}-checkpoint.npz")
    net, history = train(ckpt)
    atomic_savez(done, W=net.W, step=net.step, history=np.array(json.dumps(history)))
    if os.path.exists(ckpt):
        os.unlink(ckpt)
    return net, history


def _write(out_dir, report, weights):
    atomic_savez(os.path.join(out_dir, "weights.npz"), **weights)
    atomic_write_json(os.path.join(out_dir, "report.json"), report)
