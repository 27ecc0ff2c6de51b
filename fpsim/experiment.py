"""Presets, the end-to-end pipeline, and the report files.

:func:`run_experiment` is the main job: draw the model and the initial
network, train cleanly, train adversarially from the clean weights, measure
every theorem quantity and write ``DIR/report.json`` and ``DIR/weights.npz``
(both atomically).  Each finished phase is kept under ``DIR/.fpsim/`` and an
unfinished one checkpoints there, so an interrupted run started again with the
same config resumes and ends with the same numbers.

Phases are keyed by the fields they depend on (:func:`phase_key`): changing an
evaluation-only field re-evaluates the saved nets without training again, and
a finished run (its ``report.json`` holds the same config) is read back, not
recomputed.  Before any work, :func:`preflight` refuses configs that cannot
run (memory estimate, unreachable label margin, unwritable output folder).
A training phase whose loss or weights stop being finite raises
:class:`DivergenceError` and is never saved as finished; the last good
checkpoint stays.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time

import numpy as np

from ._version import __version__
from ._io import UnreadableStateError, atomic_savez, atomic_write_json, read_json, read_npz
from ._validation import available_memory, gib, stream
from . import baselines, metrics
from .stats import accuracy_entry
from .attacks import dense_direction
from .certify import critical_radius, robust_accuracy, robust_curve
# Config, the presets and build live in fpsim.config (preset stays importable from here for scripts).
from .config import Config, build, eval_set
from .train import train_adversarial, train_clean


#: Held-out sizes of the training histories (fixed: they do not depend on the evaluation fields).
HISTORY_EVAL_SIZE, HISTORY_ROBUST_SIZE = 2000, 200


class DivergenceError(FloatingPointError):
    """A training phase produced a non-finite loss or weights; nothing of it was saved as finished."""


class ConfigError(ValueError):
    """A config that cannot run here (memory, unreachable margin, output folder); checked before work."""


def memory_estimate(config):
    """Peak memory of a run by part, in bytes (an estimate, rounded up).

    Returns
    -------
    dict
        ``{part: bytes}`` for ``weights`` (the nets' ``(m, d)`` matrices and the
        ``(d, d)`` dictionary), ``training batches``, ``training set``,
        ``evaluation`` (held-out inputs and the ``(n, m)`` pre-activations) and
        ``certificates`` (``(n, m)`` float64 unit bounds and the ``(m, m)`` Gram matrix),
        ``PGD training's K = W Wᵀ`` (``(m, m)``, l2 PGD adversarial training,
        :class:`~fpsim.network.Gram`) and ``baselines`` (the NTK's float64
        ``(m, d)`` parameters and slopes).
    """
    b = np.dtype(config.dtype).itemsize
    m, d = config.m, config.d
    attack = 4 if config.adv_steps else 1
    follows_gram = config.adv_steps and config.attack == "pgd" and config.norm == "2"
    return {
        "weights": 10 * m * d * b + 2 * d * d * 8,
        "training batches": attack * 3 * config.batch * (d + m) * b,
        "PGD training's K = W Wᵀ": (m * m + 6 * config.batch * m) * b if follows_gram else 0,
        "training set": (config.n_train or 0) * d * 2 * b,
        "evaluation": (config.eval_size * d + 2 * config.eval_size * m) * b
                      + HISTORY_EVAL_SIZE * (d + 2 * m) * b,
        "certificates": 6 * config.robust_eval_size * m * 8 + 2 * m * m * 8,
        "baselines": (3 * m * d * 8 + config.eval_size * d * 8 + 3 * (config.robust_eval_size + config.batch) * m * 8
                      if config.baseline_steps else 0),
    }




def check_memory(config, available=None):
    """Raise :class:`ConfigError` if :func:`memory_estimate` exceeds the available memory."""
    parts = memory_estimate(config)
    total = sum(parts.values())
    available = available_memory() if available is None else available
    if available is not None and total > available:
        detail = ", ".join(f"{k} {gib(v)}" for k, v in parts.items() if v)
        raise ConfigError(
            f"this config needs about {gib(total)} of memory ({detail}; m={config.m}, d={config.d}, "
            f"batch={config.batch}, eval_size={config.eval_size}, robust_eval_size={config.robust_eval_size}, "
            f"n_train={config.n_train}, dtype={config.dtype}) but only {gib(available)} is available; "
            "reduce d, m, batch, eval_size, robust_eval_size or n_train")
    return total


def check_margin(config, model=None, samples=40000, min_rate=0.0015):
    r"""Raise :class:`ConfigError` if the label margin rejects almost every code.

    Draws ``samples`` codes without the margin and measures the share with
    :math:`|\langle w^*, z\rangle| \ge \gamma`.  Below ``min_rate`` the
    rejection sampler of :class:`~fpsim.data.SparseCodingModel` draws more
    than :math:`1/\text{min\_rate} \approx 667` codes per code kept, within
    sight of its budget :data:`fpsim.data.MAX_DRAWS_PER_CODE` (1000).  The
    codes are drawn sparse, so 40000 of them take milliseconds; at
    ``min_rate`` that is about 60 kept codes, a rate known to about 13 % of itself.
    """
    if config.margin == 0:
        return 1.0
    model = build(config)[0] if model is None else model
    score = np.abs(model.scores_before_margin(samples, stream(config.seed, "model")))
    rate = float(np.mean(score >= config.margin))
    if rate < min_rate:
        raise ConfigError(
            f"margin gamma={config.margin:g} keeps {rate:.2%} of the codes (|<w*, z>| has median "
            f"{np.median(score):.3g}, 90th percentile {np.quantile(score, 0.9):.3g}, max {score.max():.3g} "
            f"at d={config.d}, k={config.k:g}, magnitude={config.magnitude}, teacher={config.teacher}); "
            f"margin must lie in [0, {np.quantile(score, 1 - 4 * min_rate):.3g}] here")
    return rate


def check_output(out_dir):
    """Raise :class:`ConfigError` unless ``out_dir`` is (or can become) a writable folder."""
    try:
        out_dir = os.fspath(out_dir)
    except TypeError as err:
        raise ConfigError(f"out must be a folder path, got {out_dir!r}") from err
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"output folder {out_dir} exists and is not a folder; choose another --out")
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, f".fpsim-write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"output folder {out_dir} is not writable ({err.strerror or err}); "
                          "choose another --out") from err


def preflight(config, out_dir=None):
    """Every check that can refuse a run before work: config, memory, margin, output folder."""
    config.validate()
    check_memory(config)
    check_margin(config)
    if out_dir is not None:
        check_output(out_dir)


def run_experiment(config, out_dir, progress=True, fresh=False, reuse=True):
    """Run the whole pipeline and write the report files (the figures are :func:`fpsim.report.run_and_report`'s).

    Parameters
    ----------
    config : Config
    out_dir : str or path
        Output folder; receives ``report.json``, ``weights.npz`` (``W_init``,
        ``W_clean``, ``W_adv``, the dictionary ``M`` and the teacher ``w_star``).
    progress : bool
        Progress lines on stderr.
    fresh : bool, default False
        Delete the saved phases and report of ``out_dir`` first.
    reuse : bool, default True
        If ``out_dir/report.json`` holds this config (and this fpsim version),
        return it without computing anything.

    Returns
    -------
    report : dict
        What ``report.json`` holds.

    Raises
    ------
    ConfigError
        Before any work, if the config cannot run (see :func:`preflight`).
    DivergenceError
        If a training phase stops being finite; the last good checkpoint is kept.
    UnreadableStateError
        If a saved phase, checkpoint or report cannot be read (the message names it).
    """
    preflight(config, out_dir)
    out_dir = os.fspath(out_dir)
    if fresh:
        shutil.rmtree(os.path.join(out_dir, ".fpsim"), ignore_errors=True)
        for name in ("report.json", "weights.npz"):
            if os.path.exists(os.path.join(out_dir, name)):
                os.unlink(os.path.join(out_dir, name))
    elif reuse:
        old = load_finished(config, out_dir)
        if old is not None:
            _say(progress, f"{out_dir}/report.json already holds this config: reusing it (--fresh recomputes)")
            return old
    state_dir = os.path.join(out_dir, ".fpsim")
    os.makedirs(state_dir, exist_ok=True)
    timings = {}
    model, net0 = build(config)
    clock = time.perf_counter()
    net_clean, hist_clean = _phase(state_dir, "clean", config.phase_key("clean"), net0, progress,
                                   lambda ckpt: train_clean(
        net0, model, config.clean_steps, config.batch, config.lr, weight_decay=config.weight_decay,
        n_train=config.n_train, seed=config.seed, progress=progress, checkpoint=ckpt,
        eval_size=HISTORY_EVAL_SIZE, evaluate=_finite_guard))
    timings["clean_training_s"] = time.perf_counter() - clock

    net_adv = hist_adv = None
    if config.adv_steps > 0:
        clock = time.perf_counter()
        net_adv, hist_adv = _phase(state_dir, "adversarial", config.phase_key("adversarial"), net_clean,
                                   progress, lambda ckpt: adversarial_phase(config, model, net_clean, progress, ckpt))
        timings["adversarial_training_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    x_test, y_test, _ = eval_set(config, model)
    report = {
        "fpsim_version": __version__,
        "seed": config.seed,
        "config": config.to_dict(),
        "clean": evaluate_net(net_clean, model, x_test, y_test, config, progress, "clean net", timings),
        "history": {"clean": hist_clean},
        "history_eval_size": {"accuracy": HISTORY_EVAL_SIZE, "robust": HISTORY_ROBUST_SIZE},
    }
    weights = {"W_init": net0.W, "W_clean": net_clean.W, "M": model.dictionary, "w_star": model.w_star}
    report["metrics"] = {"cos_init": {"clean": _summary(metrics.cos_to_init(net_clean.W, net0.W))},
                         "dense_mixture": {"clean": _mixture(net_clean, model)}}
    if net_adv is not None:
        report["adversarial"] = evaluate_net(net_adv, model, x_test, y_test, config, progress,
                                             "adversarial net", timings)
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
    report["baselines"] = (run_baselines(config, model, net0, x_test, y_test, progress)
                           if config.baseline_steps else {})
    timings["baselines_s"] = time.perf_counter() - clock
    report["timings"] = timings
    report["figures"] = "not drawn (fpsim report DIR draws them)"
    _write(out_dir, report, weights)
    return report


def load_finished(config, out_dir):
    """The saved report of ``config`` in ``out_dir`` if the run is finished there, else ``None``.

    Finished means ``report.json`` holds this config and this fpsim version
    and ``weights.npz`` exists.  An unreadable ``report.json`` raises
    :class:`~fpsim._io.UnreadableStateError` naming it.
    """
    path = os.path.join(os.fspath(out_dir), "report.json")
    if not os.path.exists(path) or not os.path.exists(os.path.join(os.fspath(out_dir), "weights.npz")):
        return None
    report = read_json(path)
    if report.get("fpsim_version") == __version__ and same_config(report.get("config"), config):
        return report
    return None


def same_config(saved, config):
    """Whether the config dict ``saved`` (of a report, old sentinels allowed) is ``config``."""
    try:
        return Config(**saved) == config
    except (TypeError, ValueError):
        return False


def load_nets(run_dir, config=None):
    """The data model and the nets of a finished run, rebuilt from ``RUN/weights.npz``.

    Parameters
    ----------
    run_dir : str or path
        A folder written by :func:`run_experiment`.
    config : Config, optional
        The run's config (default: read from ``RUN/report.json``).

    Returns
    -------
    model : SparseCodingModel
    nets : dict of TwoLayerNet
        ``"init"``, ``"clean"`` and, if the run has them, ``"adversarial"``:
        the initial net with the saved weights, its step count set to the
        steps each phase took (so a threshold ramp gives the trained biases).
    """
    run_dir = os.fspath(run_dir)
    if config is None:
        config = Config(**read_json(os.path.join(run_dir, "report.json"))["config"])
    model, net0 = build(config)
    saved = read_npz(os.path.join(run_dir, "weights.npz"))
    nets = {"init": net0}
    for name, key, step in (("clean", "W_clean", config.clean_steps),
                            ("adversarial", "W_adv", config.clean_steps + config.adv_steps)):
        if key in saved:
            net = net0.copy()
            net.W, net.step = saved[key], step
            nets[name] = net
    return model, nets


def finished_phases(config, out_dir):
    """The training phases of ``config`` already saved as finished in ``out_dir`` (``"clean"``, ``"adversarial"``)."""
    state = os.path.join(os.fspath(out_dir), ".fpsim")
    return [phase for phase in ("clean", "adversarial")
            if os.path.exists(os.path.join(state, f"{phase}-{config.phase_key(phase)}.npz"))]


def _say(progress, message):
    if progress:
        print(f"[fpsim] {message}", file=sys.stderr, flush=True)


def _finite_guard(net, x_eval, y_eval):
    """History hook of every training phase: stop at the first non-finite weight."""
    if not np.isfinite(net.W).all():
        raise DivergenceError(f"the weights are no longer finite at step {net.step}")
    return {}


def evaluate_net(net, model, x, y, config, progress=False, label="net", timings=None):
    """Clean accuracy, the robust-accuracy interval at the config's radius, and the radius curve.

    Parameters
    ----------
    net : TwoLayerNet
    model : SparseCodingModel
    x : (n, d) ndarray
    y : (n,) ndarray of {-1, +1}
        Held-out examples; the first ``config.robust_eval_size`` enter the robust accuracy.
    config : Config
    progress : bool, default False
    label : str, default "net"
        Name in the progress lines.
    timings : dict, optional
        Adds the wall time of the certificates and of the attacks (at τ and
        over the curve) to its ``"certificates_s"`` and ``"attacks_s"``.

    Returns
    -------
    dict
        ``accuracy``; ``robust`` (``lower`` certified, ``upper`` attacked,
        ``gap``, ``dense_direction``: accuracy under that attack alone,
        ``certified_by``: examples per certificate, ``undecided``: examples
        the complete mode left open, ``None`` when it is off); ``curve`` (``tau``,
        ``lower``, ``upper`` over ``curve_points`` radii in ``(0, 2 tau]``) and
        ``critical_radius`` (where each end crosses 50 %); ``intervals``:
        each accuracy as ``{value, n, ci95}`` (Wilson 95 %, :func:`fpsim.stats.wilson`).
    """
    n = config.robust_eval_size
    xr, yr = x[:n], y[:n]
    rng = stream(config.seed, "attack")
    clock = time.perf_counter()
    _say(progress, f"{label}: attacks and certificates at tau={config.tau:g} on {n} examples")
    res = robust_accuracy(net, xr, yr, config.norm, config.tau, model=model,
                          pgd_steps=config.pgd_steps, restarts=config.restarts, rng=rng,
                          node_budget=config.node_budget)
    dense = y[:n] * net.forward(xr + dense_direction(model, xr, yr, config.norm, config.tau)) > 0
    methods, counts = np.unique(res.method[res.certified], return_counts=True)
    taus = config.tau * 2 * np.arange(1, config.curve_points + 1) / config.curve_points
    _say(progress, f"{label}: robust-accuracy curve over {config.curve_points} radii "
                   f"({time.perf_counter() - clock:.0f}s so far)")
    seconds = dict(res.seconds)  # the two halves of the evaluation's time
    curve = robust_curve(net, xr, yr, config.norm, taus, model=model, pgd_steps=config.pgd_steps,
                         restarts=config.restarts, rng=rng, seconds=seconds)
    _say(progress, f"{label}: evaluated in {time.perf_counter() - clock:.0f}s")
    for part in seconds if timings is not None else ():
        timings[f"{part}_s"] = timings.get(f"{part}_s", 0.0) + seconds[part]
    accuracy = net.accuracy(x, y)
    return {"accuracy": accuracy,
            "robust": {"lower": res.lower, "upper": res.upper, "gap": res.gap,
                       "dense_direction": float(dense.mean()),
                       "certified_by": dict(zip(methods.tolist(), counts.tolist())),
                       "undecided": res.undecided},
            "curve": {"tau": curve["taus"].tolist(), "lower": curve["lower"].tolist(),
                      "upper": curve["upper"].tolist(), "n": n,
                      "lower_ci95": [accuracy_entry(v, n)["ci95"] for v in curve["lower"].tolist()],
                      "upper_ci95": [accuracy_entry(v, n)["ci95"] for v in curve["upper"].tolist()]},
            "intervals": {"accuracy": accuracy_entry(accuracy, len(y)),
                          "robust_lower": accuracy_entry(res.lower, n),
                          "robust_upper": accuracy_entry(res.upper, n),
                          "dense_direction": accuracy_entry(float(dense.mean()), n)},
            "critical_radius": {k: (None if np.isnan(v) else v)
                                for k, v in critical_radius(curve).items()}}


def run_baselines(config, model, net0, x, y, progress=False):
    """The C6 baselines, each trained clean and adversarially at the config's radius.

    Linear (exact robust accuracy), degree-2 and degree-3 polynomials and the
    NTK of the network at its initialisation (robust accuracy by attack: an
    upper end), all with the network's batch and attack and step size
    ``baseline_lr``.  A run that diverges is recorded as such.

    Returns
    -------
    dict
        ``{name: {"clean" | "adversarial": {accuracy, robust, robust_kind, intervals}}}``
        (``intervals``: both accuracies as ``{value, n, ci95}``).
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
    total, done, clock = 2 * len(makers), 0, time.perf_counter()
    for name, make in makers.items():
        out[name] = {}
        for regime, tau in (("clean", None), ("adversarial", config.tau)):
            done += 1
            _say(progress, f"baseline {done}/{total}: {name}, {regime} training "
                           f"({config.baseline_steps} steps; {time.perf_counter() - clock:.0f}s so far)")
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
            res = robust_accuracy(trained, x[:n], y[:n], config.norm, config.tau, model=model,
                                  pgd_steps=config.pgd_steps, restarts=config.restarts,
                                  rng=stream(config.seed, "attack"))
            accuracy, robust = trained.accuracy(x, y), res.lower if name == "linear" else res.upper
            out[name][regime] = {"accuracy": accuracy, "robust": robust,
                                 "robust_kind": "exact" if name == "linear" else "attacked, upper end",
                                 "intervals": {"accuracy": accuracy_entry(accuracy, len(y)),
                                               "robust": accuracy_entry(robust, n)}}
    return out


def adversarial_phase(config, model, net_clean, progress, checkpoint, **changes):
    """The config's adversarial training from the clean net (``changes``: other train_adversarial options)."""
    options = dict(attack=config.attack, norm=config.norm, tau=config.tau, attack_steps=config.attack_steps,
                   robust_eval_size=HISTORY_ROBUST_SIZE, weight_decay=config.weight_decay,
                   n_train=config.n_train, seed=config.seed, progress=progress, checkpoint=checkpoint,
                   eval_size=HISTORY_EVAL_SIZE, evaluate=_finite_guard)
    lr = config.lr if config.adv_lr is None else config.adv_lr
    return train_adversarial(net_clean, model, config.adv_steps, config.batch, lr,
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
        net, history = _phase(state_dir, name, config.phase_key("adversarial"), net_clean, progress,
                              lambda ckpt: adversarial_phase(
            config, model, net_clean, progress, ckpt, **record, **changes))
        return net, {**interval(net), "history": history, "time_s": time.perf_counter() - clock}

    full = {"accuracy": adv_eval["accuracy"],
            "robust": {k: adv_eval["robust"][k] for k in ("lower", "upper")}}
    found["low_rank"] = {"full": full, "ranks": {},
                         "update_split": metrics.update_split(net_clean.W, net_adv.W,
                                                              model.dictionary).summary()}
    for rank in config.ranks():
        _, found["low_rank"]["ranks"][str(rank)] = run(f"adversarial-rank{rank}", rank=rank)
    if config.fgm_check:
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
            "median_norm": float(np.median(norms)),
            "atoms_uncovered": float(np.mean(view.atom_coverage() == 0))}


def _update_metrics(net_clean, net_adv):
    """C4 and C7: the purification decomposition and the spectrum of W' - W."""
    pur = metrics.purification(net_clean.W, net_adv.W)
    spec = metrics.update_spectrum(net_clean.W, net_adv.W)
    return {"purification": {"fraction": pur.fraction_purified, "median_cos": float(np.median(pur.cos))},
            "update_spectrum": {"top": spec.top, "top_energy": spec.top_energy,
                                "singular_values": spec.singular_values[:10].tolist()}}


def _phase(state_dir, name, key, net0, progress, train):
    """Run a training phase once: reuse its saved result, or train with a checkpoint and save.

    The phase is saved as finished only if its weights and losses are finite;
    a divergence raises :class:`DivergenceError` and keeps the last checkpoint
    (written while the weights were still finite).
    """
    done = os.path.join(state_dir, f"{name}-{key}.npz")
    ckpt = os.path.join(state_dir, f"{name}-{key}-checkpoint.npz")
    if os.path.exists(done):
        saved = read_npz(done)
        try:
            W, step, history = saved["W"], int(saved["step"]), json.loads(str(saved["history"]))
        except (KeyError, ValueError) as err:
            raise UnreadableStateError(f"{done} is not a saved {name} phase ({err}); delete it or rerun "
                                       "with --fresh") from err
        if W.shape != net0.W.shape or not np.isfinite(W).all():
            raise UnreadableStateError(f"{done} holds {'non-finite' if W.shape == net0.W.shape else 'mis-shaped'} "
                                       f"weights; delete it or rerun with --fresh")
        net = net0.copy()
        net.W = W
        net.step = step
        _say(progress, f"{name}: reusing the finished phase saved in {done}")
        return net, history
    if os.path.exists(ckpt):
        state = read_npz(ckpt)  # names the file if it is truncated or corrupt
        if not all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f"):
            raise UnreadableStateError(f"checkpoint {ckpt} holds non-finite weights; delete it or rerun "
                                       "with --fresh")
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # a divergence is reported below, by name
            net, history = train(ckpt)
    except (DivergenceError, FloatingPointError, ValueError) as err:
        if not isinstance(err, FloatingPointError) and "NaN or inf" not in str(err):
            raise  # a genuine input error, not a divergence
        kept = f"the last good checkpoint is kept in {ckpt}" if os.path.exists(ckpt) else \
            "no checkpoint was reached"
        raise DivergenceError(f"{name} training diverged: {err}; nothing was saved as finished and "
                              f"{kept}; lower the step size (lr / adv_lr) or raise weight_decay") from err
    losses = np.asarray(history.get("loss", []), dtype=float)
    if not np.isfinite(net.W).all() or not np.isfinite(losses).all():
        raise DivergenceError(f"{name} training diverged (non-finite loss or weights at the end); nothing "
                              f"was saved as finished; lower the step size (lr / adv_lr)")
    atomic_savez(done, W=net.W, step=net.step, history=np.array(json.dumps(history)))
    if os.path.exists(ckpt):
        os.unlink(ckpt)
    return net, history


def _write(out_dir, report, weights):
    atomic_savez(os.path.join(out_dir, "weights.npz"), **weights)
    atomic_write_json(os.path.join(out_dir, "report.json"), report)
