r"""Time fpsim's hot paths against plain NumPy and PyTorch-CPU autograd (issue #5).

Run from the repository root::

    python benchmarks/run.py            # full: two sizes, scaling table, certificate at both sizes
    python benchmarks/run.py --quick    # < 1 minute: fewer repeats, no scaling, small certificate only
    python benchmarks/run.py --threads 2
    python benchmarks/run.py --only trained --quick   # issue #12's trained-net tables only

Trained nets (issue #12): the step, FGM, a 10-step PGD and the adversarial
step (5-step PGD + SGD step) on clean-trained(-like) nets at d=400/m=800,
d=1000/m=4000 and d=2000/m=4000, by fpsim (backward over the active pairs when
few units are active), by fpsim's own dense path, by NumPy and by torch, and
as a fraction of the time of the same products at full density (sgemm).

Every operation is timed three ways in one process, interleaved round by round
(so background load hits them alike) and reported as the minimum over rounds:

* **fpsim** -- the package's own code path;
* **NumPy** -- a plain float32 NumPy transcription of the same equations
  (``docs/MODEL.md`` §3--§5), written out below;
* **torch** -- PyTorch-CPU with autograd for the gradients (skipped, with a
  note, when torch is not importable; torch is never a dependency of fpsim).

Dense steps and PGD iterations cost about :math:`4 B m d` flops (two matrix
products of :math:`B m d` multiply-adds); their GFLOP/s are compared with the
machine's float32 matrix-multiply rate, measured in the same rounds by timing
``np.matmul`` on exactly the shapes the operation multiplies.  BLAS, numba
and torch are pinned to ``--threads`` threads.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numba
import numpy as np
import scipy.linalg
import scipy.special
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import fpsim  # noqa: E402
import fpsim.network  # noqa: E402
from fpsim.network import Gram  # noqa: E402
from fpsim.train import DenseStep, DictionaryStep  # noqa: E402

try:
    import torch
except ImportError:  # torch is optional: only the comparison column needs it
    torch = None

SIZES = {"large": dict(d=1000, m=4000, batch=256, k=32), "small": dict(d=200, m=400, batch=256, k=32)}
LR = 0.05
PGD_STEPS = 10


# --- the problem ------------------------------------------------------------------


class Problem:
    """One size: a data model, a network, a batch and the attack radius."""

    def __init__(self, d, m, batch, k, seed=0):
        self.d, self.m, self.batch, self.k = d, m, batch, k
        self.theta = 0.6 / np.sqrt(k)
        self.tau = 0.5 / np.sqrt(k)
        self.model = fpsim.SparseCodingModel(d, k, seed=seed)
        self.net = fpsim.TwoLayerNet.random(m, d, threshold=self.theta, seed=seed + 1)
        self.x, self.y, self.z = self.model.sample(batch, seed + 2)
        self.yf = self.y.astype(np.float32)
        self.rng = np.random.default_rng(seed + 3)

    @property
    def dense_flops(self):
        """Flops of one dense step or PGD iteration: two products of B m d multiply-adds."""
        return 4.0 * self.batch * self.m * self.d


# --- plain NumPy references ----------------------------------------------------------


def numpy_units(W, x, theta):
    r"""Output :math:`f_b`, pre-activations :math:`u = x W^T` and biases :math:`b_i = \theta\|w_i\|` (ReLU)."""
    bias = theta * np.sqrt((W * W).sum(axis=1))
    u = x @ W.T
    f = (np.maximum(u - bias, 0) - np.maximum(-u - bias, 0)).sum(axis=1)
    return f, u, bias


def numpy_coefficients(W, x, y, theta):
    r"""Margins :math:`y_b f_b`, mean logistic loss and :math:`\partial\ell_b/\partial u_{bi} = -y_b\sigma(-y_b f_b)1\{|u_{bi}| > b_i\}`."""
    f, u, bias = numpy_units(W, x, theta)
    margin = y * f
    loss = np.logaddexp(0, -margin).mean()
    coef = ((-y * scipy.special.expit(-margin))[:, None] * (np.abs(u) > bias)).astype(np.float32)
    return margin, loss, coef


def numpy_dense_step(W, x, y, theta, lr):
    """One SGD step on ``W`` in place, ``W -= (lr/B) C^T x``; returns the loss."""
    _, loss, coef = numpy_coefficients(W, x, y, theta)
    W -= (lr / len(y)) * (coef.T @ x)
    return loss


def numpy_dictionary_step(a_t, z, y, theta, lr):
    """The same step in the dictionary basis (``u = z A^T``), with dense NumPy products."""
    _, loss, coef = numpy_coefficients(a_t.T, z, y, theta)
    a_t -= (lr / len(y)) * (z.T @ coef)
    return loss


def numpy_pgd(W, x, y, theta, tau, steps, rng):
    r""":math:`\ell_2` PGD: random start in the ball, ``steps`` steps of :math:`2.5\tau/S` along
    :math:`g/\|g\|`, projection, the iterate of lowest margin kept."""
    n, d = x.shape
    direction = rng.standard_normal((n, d))
    radius = tau * rng.random((n, 1)) ** (1.0 / d)
    delta = (direction * (radius / np.linalg.norm(direction, axis=1, keepdims=True))).astype(np.float32)
    best, best_margin = np.zeros_like(x), np.full(n, np.inf)
    for s in range(steps + 1):
        margin, _, coef = numpy_coefficients(W, x + delta, y, theta)
        better = margin < best_margin
        best_margin[better], best[better] = margin[better], delta[better]
        if s < steps:
            grad = coef @ W
            delta += (2.5 * tau / steps) * grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-30)
            delta *= np.minimum(1.0, tau / np.linalg.norm(delta, axis=1, keepdims=True))
    return best


def numpy_sample(model, n, rng):
    """Sparse codes drawn densely (a mask, signs and magnitudes for all ``n d`` entries), ``x = z M^T``."""
    d, k = model.d, model.k
    mask = rng.random((n, d)) < k / d
    signs = rng.integers(0, 2, size=(n, d)) * 2.0 - 1.0
    magnitudes = np.minimum(rng.uniform(*model.magnitude, size=(n, d)) / np.sqrt(k), 1.0)
    z = (mask * signs * magnitudes).astype(np.float32)
    y = np.where(z @ model.w_star >= 0, 1, -1).astype(np.int8)
    return z @ model.dictionary.T.astype(np.float32), y, z


def numpy_certificate(W, x, y, theta, tau):
    r"""The three :math:`\ell_2` lower bounds of :func:`fpsim.certify.certified_margins`, in float64."""
    W = W.astype(np.float64)
    norms = np.linalg.norm(W, axis=1)
    bias, radius = theta * norms, tau * norms
    yc = y.astype(np.float64)[:, None]
    u = x.astype(np.float64) @ W.T

    def units(v):
        return np.maximum(v - bias, 0) - np.maximum(-v - bias, 0)

    base = (yc * units(u)).sum(axis=1)
    drop = np.maximum(yc * (units(u) - units(u - yc * radius)), 0)
    gram = W @ W.T
    gram_bound, spectral = [], []
    for b in range(len(y)):
        moving = np.flatnonzero(drop[b] > 0)
        order = moving[np.argsort(-drop[b, moving] / radius[moving], kind="stable")]
        rest = drop[b, order].sum() - np.concatenate([[0.0], np.cumsum(drop[b, order])])
        quad = np.concatenate([[0.0], np.diag(np.abs(gram[np.ix_(order, order)]).cumsum(0).cumsum(1))])
        gram_bound.append(base[b] - np.min(np.maximum(rest, 0) + tau * np.sqrt(quad)))
        small = gram[np.ix_(moving, moving)] if len(moving) <= W.shape[1] else W[moving].T @ W[moving]
        top = scipy.linalg.eigvalsh(small, subset_by_index=[len(small) - 1] * 2)[0] if len(moving) else 0.0
        spectral.append(base[b] - tau * np.sqrt(len(moving) * max(top, 0.0)))
    return {"per_unit": base - drop.sum(axis=1), "gram": np.array(gram_bound), "spectral": np.array(spectral)}


# --- PyTorch-CPU autograd references -------------------------------------------------


def torch_units(W, x, theta):
    """Network output with the bias :math:`\\theta\\|w_i\\|` held fixed (no gradient through it)."""
    with torch.no_grad():
        bias = theta * torch.linalg.vector_norm(W, dim=1)
    u = x @ W.T
    return (torch.relu(u - bias) - torch.relu(-u - bias)).sum(dim=1)


def torch_dense_step(W, x, y, theta, lr):
    """One SGD step with ``loss.backward()``; ``W`` is a leaf with ``requires_grad``."""
    loss = torch.nn.functional.softplus(-y * torch_units(W, x, theta)).mean()
    loss.backward()
    with torch.no_grad():
        W.sub_(W.grad, alpha=lr)
    W.grad = None
    return loss.item()


def torch_pgd(W, x, y, theta, tau, steps):
    """The same PGD as :func:`numpy_pgd`, input gradients by autograd."""
    n, d = x.shape
    direction = torch.randn(n, d)
    delta = direction * (tau * torch.rand(n, 1) ** (1.0 / d) / direction.norm(dim=1, keepdim=True))
    best, best_margin = torch.zeros_like(x), torch.full((n,), float("inf"))
    for s in range(steps + 1):
        x_adv = (x + delta).requires_grad_(s < steps)
        margin = y * torch_units(W, x_adv, theta)
        better = margin.detach() < best_margin
        best_margin[better], best[better] = margin.detach()[better], delta[better]
        if s < steps:
            grad, = torch.autograd.grad(torch.nn.functional.softplus(-margin).sum(), x_adv)
            delta = delta + (2.5 * tau / steps) * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-30)
            delta = delta * (tau / delta.norm(dim=1, keepdim=True)).clamp_max(1.0)
    return best


# --- timing ---------------------------------------------------------------------------


def interleaved_min(candidates, rounds, warm_up=True):
    """Minimum wall time in ms of each callable, timed round by round (after one warm-up call)."""
    for fn in candidates.values() if warm_up else ():
        fn()
    best = dict.fromkeys(candidates, np.inf)
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], 1e3 * (time.perf_counter() - start))
    return best


def operations(p, with_certificate):
    """``{operation: {implementation: callable}}`` for one problem (fpsim, NumPy and, if importable, torch)."""
    W32 = p.net.W
    x, y, z, yf = p.x, p.y, p.z, p.yf
    dense = DenseStep(p.net.copy(), p.batch)
    dictionary = DictionaryStep(p.net.copy(), p.model, p.batch)
    W_np = W32.copy()
    a_t_np = dictionary.a_t.copy()
    ops = {
        "dense SGD step": {
            "fpsim": lambda: dense.step(x, y, z, LR, 0.0),
            "NumPy": lambda: numpy_dense_step(W_np, x, yf, p.theta, LR)},
        "dictionary step (k=%d)" % p.k: {
            "fpsim": lambda: dictionary.step(x, y, z, LR, 0.0),
            "NumPy": lambda: numpy_dictionary_step(a_t_np, z, yf, p.theta, LR)},
        "PGD-l2, %d steps" % PGD_STEPS: {
            "fpsim": lambda: fpsim.pgd(p.net, x, y, 2, p.tau, steps=PGD_STEPS, rng=p.rng),
            "NumPy": lambda: numpy_pgd(W32, x, yf, p.theta, p.tau, PGD_STEPS, p.rng)},
        "sample one batch": {
            "fpsim": lambda: p.model.sample(p.batch, p.rng),
            "NumPy": lambda: numpy_sample(p.model, p.batch, p.rng)},
    }
    if with_certificate:
        ops["certificate (lower bound)"] = {
            "fpsim": lambda: fpsim.certified_margins(p.net, x, y, 2, p.tau),
            "NumPy": lambda: numpy_certificate(W32, x, y, p.theta, p.tau)}
    if torch is not None:
        W_t = torch.from_numpy(W32.copy()).requires_grad_(True)
        W_fixed = torch.from_numpy(W32)
        x_t, y_t = torch.from_numpy(x), torch.from_numpy(yf)
        ops["dense SGD step"]["torch"] = lambda: torch_dense_step(W_t, x_t, y_t, p.theta, LR)
        ops["PGD-l2, %d steps" % PGD_STEPS]["torch"] = lambda: torch_pgd(W_fixed, x_t, y_t, p.theta, p.tau,
                                                                         PGD_STEPS)
    return ops


def matmul_references(p):
    """The two products of a dense step (``x W^T``, ``C^T x``) and of a PGD iteration (``x W^T``, ``C W``).

    Returns ``{operation: {"sgemm": callable, "torch sgemm": callable}}``: ``np.matmul``
    (and ``torch.matmul``) on exactly those shapes, timed in the same rounds as the operation
    (``PGD_STEPS`` times over for the attack).
    """
    W, x = p.net.W, p.x
    u = np.empty((p.batch, p.m), np.float32)
    coef = np.random.default_rng(0).standard_normal((p.batch, p.m), dtype=np.float32)
    grad_w, grad_x = np.empty_like(W), np.empty_like(x)

    def repeat(products, times):  # a PGD reference lasts as long as the attack: same exposure to load
        return lambda: [products() for _ in range(times)]

    refs = {"dense SGD step": {"sgemm": lambda: (np.matmul(x, W.T, out=u), np.matmul(coef.T, x, out=grad_w))},
            "PGD-l2, %d steps" % PGD_STEPS: {"sgemm": repeat(lambda: (np.matmul(x, W.T, out=u),
                                                                      np.matmul(coef, W, out=grad_x)), PGD_STEPS)}}
    if torch is not None:
        W_t, x_t, coef_t = torch.from_numpy(W), torch.from_numpy(x), torch.from_numpy(coef)
        refs["dense SGD step"]["torch sgemm"] = lambda: (x_t @ W_t.T, coef_t.T @ x_t)
        refs["PGD-l2, %d steps" % PGD_STEPS]["torch sgemm"] = repeat(lambda: (x_t @ W_t.T, coef_t @ W_t), PGD_STEPS)
    return refs


def check_same_math(p):
    """One dense step of fpsim and of the NumPy reference from the same weights agree (float32 rounding)."""
    stepper = DenseStep(p.net.copy(), p.batch)
    W_np = p.net.W.copy()
    loss = stepper.step(p.x, p.y, p.z, LR, 0.0)
    loss_np = numpy_dense_step(W_np, p.x, p.yf, p.theta, LR)
    assert abs(loss - loss_np) < 1e-4 * max(1.0, abs(loss_np)), (loss, loss_np)
    scale = np.abs(p.net.W - W_np).max()
    assert np.abs(stepper.net.W - W_np).max() < 1e-3 * scale + 1e-7, "fpsim and NumPy dense steps differ"


def bench_size(name, p, rounds, with_certificate):
    """Rows of the results table for one problem size."""
    check_same_math(p)
    references = matmul_references(p)
    rows = []
    for op, impls in operations(p, with_certificate).items():
        slow = op.startswith("certificate") and p.m >= 1000  # seconds: one call, kernels compiled by then
        times = interleaved_min({**impls, **references.get(op, {})}, 1 if slow else rounds, warm_up=not slow)
        rows.append(dict(size=name, op=op, times=times, flops=p.dense_flops * (PGD_STEPS if op.startswith("PGD") else 1)
                         if op in references else None))
    return rows


def format_table(rows):
    """Markdown table of the timings, ratios and GFLOP/s."""
    head = ("| size | operation | fpsim ms | NumPy ms | torch ms | NumPy / fpsim | torch / fpsim "
            "| fpsim GFLOP/s | sgemm ms: np.matmul / torch | fpsim % of np.matmul rate |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        t = r["times"]
        fp = t["fpsim"]
        cells = [r["size"], r["op"], f"{fp:.2f}", _ms(t.get("NumPy")), _ms(t.get("torch")),
                 _ratio(t.get("NumPy"), fp), _ratio(t.get("torch"), fp)]
        if r["flops"]:
            cells += [f"{r['flops'] / fp / 1e6:.1f}", f"{t['sgemm']:.2f} / {_ms(t.get('torch sgemm'))}",
                      f"{100 * t['sgemm'] / fp:.0f} %"]
        else:
            cells += ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(value):
    return "n/a" if value is None else f"{value:.2f}"


def _ratio(value, fp):
    return "n/a" if value is None else f"{value / fp:.2f}x"


def targets(rows):
    """The issue-#5 targets, per size: ``(name, measured, goal, met)``."""
    out = []
    for size in dict.fromkeys(r["size"] for r in rows):
        t = {r["op"].split(" (")[0].split(",")[0]: r for r in rows if r["size"] == size}
        step, pgd, dic, smp = t["dense SGD step"], t["PGD-l2"], t["dictionary step"], t["sample one batch"]
        for label, r in (("dense step", step), ("PGD iteration", pgd)):
            share = r["times"]["sgemm"] / r["times"]["fpsim"]
            out.append((f"{size}: {label} at >= 75 % of the sgemm rate", f"{100 * share:.0f} %", share >= 0.75))
            if "torch" in r["times"]:
                ratio = r["times"]["torch"] / r["times"]["fpsim"]
                out.append((f"{size}: {label} >= 1.2x PyTorch-CPU autograd", f"{ratio:.2f}x", ratio >= 1.2))
        if "torch" in step["times"]:
            ratio = step["times"]["torch"] / dic["times"]["fpsim"]
            out.append((f"{size}: dictionary step >= 10x the PyTorch dense step", f"{ratio:.1f}x", ratio >= 10))
        for label, r in (("dictionary", dic), ("dense", step)):
            share = smp["times"]["fpsim"] / r["times"]["fpsim"]
            out.append((f"{size}: sampling < 20 % of a {label} step", f"{100 * share:.0f} %", share < 0.2))
    return out


def scaling(rounds, base=(500, 2000, 128)):
    """Dense-step time as d, m and B double from ``base``; exponent = log2(time ratio), FLOP count predicts 1."""
    d, m, batch = base
    grid = {"base": (d, m, batch), "2d": (2 * d, m, batch), "2m": (d, 2 * m, batch),
            "2B": (d, m, 2 * batch), "2d, 2m, 2B": (2 * d, 2 * m, 2 * batch)}
    steps = {}
    for label, (dd, mm, bb) in grid.items():
        p = Problem(dd, mm, bb, 32)
        steps[label] = lambda stepper=DenseStep(p.net, bb), p=p: stepper.step(p.x, p.y, p.z, LR, 0.0)
    times = interleaved_min(steps, rounds)  # sizes interleaved round by round, so load hits them alike
    lines = ["| d | m | B | dense step ms | GFLOP/s | exponent (FLOP count: 1 per doubled size, 3 for all) |",
             "|---|---|---|---|---|---|"]
    for label, (dd, mm, bb) in grid.items():
        exponent = "" if label == "base" else f"{np.log2(times[label] / times['base']):.2f}"
        lines.append(f"| {dd} | {mm} | {bb} | {times[label]:.2f} | {4e-6 * dd * mm * bb / times[label]:.1f} "
                     f"| {exponent} |")
    return "\n".join(lines)


# --- issue #12: trained nets, activation-sparse backward ---------------------------------

TRAINED_SIZES = {"small": dict(d=400, m=800), "d=1000": dict(d=1000, m=4000), "d=2000": dict(d=2000, m=4000)}
TRAINED_K, TRAINED_THETA, TRAINED_BATCH, ADV_PGD_STEPS = 16, 0.15, 256, 5
CROSSOVER_FRACTIONS = (0.01, 0.03, 0.1, 0.2, 0.3)


def clean_trained_like(d, m, seed=0):
    r"""A net with the activation pattern of clean training, and how it was made.

    At the small size (``d <= 400``): real clean training, 1000 SGD steps of the
    ``quick`` preset's clean phase (``k = 16``, relative threshold ``θ = 0.15``,
    ``η = 1``, ``B = 256``, dictionary stepper).  At the large sizes, where SGD
    would take long on a shared machine: a synthetic construction with the same
    pattern, one atom per unit plus a small dense mixture,

    .. math::  w_i = \pm M_{:, i \bmod d} + 0.02\, g_i / \sqrt d,\quad g_i \sim \mathcal N(0, I_d),

    so unit :math:`i` is active (:math:`|\langle w_i, x\rangle| > θ\|w_i\|`)
    essentially when its atom is in :math:`x`: an active fraction of about
    :math:`k/d`, as after clean training (the small trained net measures
    ≈ k/d as well; both are printed).
    """
    model = fpsim.SparseCodingModel(d, TRAINED_K, magnitude=(1.0, 1.2), seed=seed)
    rng = np.random.default_rng(seed + 1)
    if d <= 400:
        net = fpsim.TwoLayerNet.random(m, d, threshold=TRAINED_THETA, seed=seed + 1)
        net, _ = fpsim.train_clean(net, model, 1000, TRAINED_BATCH, 1.0, weight_decay=1e-4, eval_size=200,
                                   record_every=1000)
        how = "clean-trained (1000 SGD steps, quick preset's clean phase)"
    else:
        signs = rng.choice([-1.0, 1.0], m)[:, None]
        W = signs * model.dictionary.T[np.arange(m) % d] + 0.02 * rng.standard_normal((m, d)) / np.sqrt(d)
        net = fpsim.TwoLayerNet(W.astype(np.float32), threshold=TRAINED_THETA)
        how = "synthetic clean-trained-like (one atom per unit + 0.02 dense mixture)"
    return model, net, how


class _Dense:
    """Context: the network's backward products by dense BLAS only (fpsim's own dense path)."""

    def __enter__(self):
        self.saved, fpsim.network.SPARSE_CROSSOVER = fpsim.network.SPARSE_CROSSOVER, 0.0

    def __exit__(self, *exc):
        fpsim.network.SPARSE_CROSSOVER = self.saved


def numpy_fgm(W, x, y, theta, tau):
    r""":math:`\ell_2` FGM: :math:`\delta = \tau g/\|g\|`, :math:`g = C W`."""
    _, _, coef = numpy_coefficients(W, x, y, theta)
    grad = coef @ W
    return tau * grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-30)


def torch_fgm(W, x, y, theta, tau):
    """The same FGM, the input gradient by autograd."""
    x_adv = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(torch.nn.functional.softplus(-y * torch_units(W, x_adv, theta)).sum(), x_adv)
    return tau * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-30)


#: fpsim.pgd as one run from a random start, the work of numpy_pgd and torch_pgd (pgd's default adds a
#: second run from delta = 0, which would double fpsim's side of the comparison)
ONE_RUN = dict(restarts=1, zero_start=False)


#: The adversarial step's exact formation of K = W W^T, once every Gram.REFRESH steps while following K pays
#: (timed on its own after the step's rounds, so it is 0 where K is not followed; added to the step's time
#: amortised in the targets)
GRAM_OP = "form K = W Wᵀ (every %d adversarial steps)" % Gram.REFRESH


def trained_operations(net, x, y, z, tau, rng, batch):
    """``{operation: {implementation: callable}}`` on one net: fpsim (auto path), fpsim dense, NumPy, torch."""
    theta = net.threshold.end
    yf = y.astype(np.float32)
    auto_step = DenseStep(net.copy(), batch)
    adversarial_step = DenseStep(net.copy(), batch, Gram(net.m, net.dtype))  # as in train_adversarial
    with _Dense():
        dense_step = DenseStep(net.copy(), batch)
    W_np = net.W.copy()

    def dense(fn):
        def run():
            with _Dense():
                return fn()
        return run

    def adversarial(stepper):
        units = np.empty((batch, net.m), net.dtype)
        steps = [0]

        def run():  # train_adversarial's step: the attack leaves its last pre-activations to the SGD step
            if stepper.gram is not None and stepper.gram.due(steps[0]):
                stepper.gram.refresh(stepper.net.W)  # as run_sgd does (timed apart: GRAM_OP)
            steps[0] += 1
            x_adv = x + fpsim.attacks.perturbation(stepper.net, x, y, "pgd", 2, tau, rng=rng, steps=ADV_PGD_STEPS,
                                                   units=units, gram=stepper.gram)
            return stepper.step(x_adv, y, z, LR, 0.0, units=units)
        return run

    ops = {
        "SGD step": {"fpsim": lambda: auto_step.step(x, y, z, LR, 0.0),
                     "fpsim dense": lambda: dense_step.step(x, y, z, LR, 0.0),
                     "NumPy": lambda: numpy_dense_step(W_np, x, yf, theta, LR)},
        "FGM-l2": {"fpsim": lambda: fpsim.fgm(net, x, y, 2, tau),
                   "fpsim dense": dense(lambda: fpsim.fgm(net, x, y, 2, tau)),
                   "NumPy": lambda: numpy_fgm(net.W, x, yf, theta, tau)},
        "PGD-l2, %d steps" % PGD_STEPS: {
            "fpsim": lambda: fpsim.pgd(net, x, y, 2, tau, steps=PGD_STEPS, rng=rng, **ONE_RUN),
            "fpsim dense": dense(lambda: fpsim.pgd(net, x, y, 2, tau, steps=PGD_STEPS, rng=rng, **ONE_RUN)),
            "NumPy": lambda: numpy_pgd(net.W, x, yf, theta, tau, PGD_STEPS, rng)},
        "adversarial step (PGD-%d + SGD step)" % ADV_PGD_STEPS: {
            "fpsim": adversarial(adversarial_step), "fpsim dense": dense(adversarial(dense_step)),
            "NumPy": lambda: numpy_dense_step(W_np, x + numpy_pgd(W_np, x, yf, theta, tau, ADV_PGD_STEPS, rng),
                                              yf, theta, LR)},
    }
    # what run_sgd does every Gram.REFRESH steps: form K again, if following it paid at the last step
    ops[GRAM_OP] = {"fpsim": lambda: adversarial_step.gram.wanted and adversarial_step.gram.refresh(
        adversarial_step.net.W)}
    W32 = net.W
    u = np.empty((batch, net.m), np.float32)
    coef = np.random.default_rng(0).standard_normal((batch, net.m), dtype=np.float32)
    grad_w, grad_x = np.empty_like(W32), np.empty_like(x)

    def forward_backward_x():
        np.matmul(x, W32.T, out=u)
        np.matmul(coef, W32, out=grad_x)

    def forward_backward_w():
        np.matmul(x, W32.T, out=u)
        np.matmul(coef.T, x, out=grad_w)

    # the dense sgemm-equivalent: the same products at full density, as many as the operation makes
    ops["SGD step"]["sgemm"] = forward_backward_w
    ops["FGM-l2"]["sgemm"] = forward_backward_x
    ops["PGD-l2, %d steps" % PGD_STEPS]["sgemm"] = lambda: [forward_backward_x() for _ in range(PGD_STEPS)]
    ops["adversarial step (PGD-%d + SGD step)" % ADV_PGD_STEPS]["sgemm"] = lambda: (
        [forward_backward_x() for _ in range(ADV_PGD_STEPS)], forward_backward_w())
    if torch is not None:
        W_t = torch.from_numpy(net.W.copy()).requires_grad_(True)
        W_fixed = torch.from_numpy(net.W.copy())
        x_t, y_t = torch.from_numpy(x), torch.from_numpy(yf)

        def torch_adversarial():
            x_adv = torch_pgd(W_fixed, x_t, y_t, theta, tau, ADV_PGD_STEPS)
            return torch_dense_step(W_t, x_t + x_adv, y_t, theta, LR)

        ops["SGD step"]["torch"] = lambda: torch_dense_step(W_t, x_t, y_t, theta, LR)
        ops["FGM-l2"]["torch"] = lambda: torch_fgm(W_fixed, x_t, y_t, theta, tau)
        ops["PGD-l2, %d steps" % PGD_STEPS]["torch"] = lambda: torch_pgd(W_fixed, x_t, y_t, theta, tau, PGD_STEPS)
        ops["adversarial step (PGD-%d + SGD step)" % ADV_PGD_STEPS]["torch"] = torch_adversarial
    return ops


def active_fraction(net, x, y):
    """Fraction of (example, unit) pairs with a non-zero loss coefficient (active units)."""
    ws = fpsim.network.Workspace(len(y), net.m, net.d, net.dtype)
    net.input_grad(x, y, workspace=ws)
    return ws.active_fraction


def bench_trained(rounds, quick):
    """Rows of the trained-net table: per size, a clean-trained(-like) net and the same net at initialisation."""
    rows = []
    for name, size in TRAINED_SIZES.items():
        d, m = size["d"], size["m"]
        model, trained, how = clean_trained_like(d, m)
        x, y, z = model.sample(TRAINED_BATCH, 2)
        tau = 0.5 / np.sqrt(TRAINED_K)
        init = fpsim.TwoLayerNet.random(m, d, threshold=0.0, seed=1)  # theta = 0: start of a threshold ramp
        for state, net, source in (("trained", trained, how), ("init", init, "random init, θ = 0 (dense)")):
            ops = trained_operations(net, x, y, z, tau, np.random.default_rng(3), TRAINED_BATCH)
            if state == "init" or quick and d > 1000:  # the operations of the targets only
                ops = {op: impls for op, impls in ops.items() if op.startswith(("SGD", "adversarial", "form K"))}
            if state == "init":  # at init: what the no-slowdown target needs
                ops = {op: {k: v for k, v in impls.items() if k in ("fpsim", "fpsim dense")}
                       for op, impls in ops.items()}
            fraction = active_fraction(net, x, y)
            for op, impls in ops.items():
                times = interleaved_min(impls, rounds)
                rows.append(dict(size=f"{name} (d={d} m={m} B={TRAINED_BATCH} k={TRAINED_K})", state=state,
                                 source=source, fraction=fraction, op=op, times=times))
            print(f"# {name} {state}: {source}, active fraction {100 * fraction:.2f} %", flush=True)
    return rows


def format_trained(rows):
    """Markdown table of the trained-net timings and ratios."""
    head = ("| size | net | active % | operation | fpsim ms | fpsim dense ms | NumPy ms | torch ms "
            "| dense / fpsim | NumPy / fpsim | torch / fpsim | fpsim / sgemm-equivalent |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        t = r["times"]
        fp = t["fpsim"]
        sg = t.get("sgemm")
        lines.append("| " + " | ".join([
            r["size"], r["state"], f"{100 * r['fraction']:.2f}", r["op"], f"{fp:.2f}", _ms(t.get("fpsim dense")),
            _ms(t.get("NumPy")), _ms(t.get("torch")), _ratio(t.get("fpsim dense"), fp), _ratio(t.get("NumPy"), fp),
            _ratio(t.get("torch"), fp), "n/a" if sg is None else f"{100 * fp / sg:.0f} %"]) + " |")
    return "\n".join(lines)


def trained_targets(rows):
    """Issue #12's targets: ``(name, measured, goal met or None if not measurable)``."""
    out = []
    gram = {(r["size"], r["state"]): r["times"]["fpsim"] for r in rows if r["op"] == GRAM_OP}
    for r in rows:
        t, large = r["times"], r["size"].startswith("d=")
        if r["op"].startswith("adversarial") and r["state"] == "trained" and large:
            fp = t["fpsim"] + gram[r["size"], r["state"]] / Gram.REFRESH  # K's formation, amortised
            ratio = t["fpsim dense"] / fp
            out.append((f"{r['size']}: adversarial step (with K's formation amortised) >= 1.6x fpsim's "
                        "dense path", f"{ratio:.2f}x", ratio >= 1.6))
            if "torch" in t:
                ratio = t["torch"] / fp
                out.append((f"{r['size']}: adversarial step >= 1.8x PyTorch-CPU", f"{ratio:.2f}x", ratio >= 1.8))
            else:
                out.append((f"{r['size']}: adversarial step >= 1.8x PyTorch-CPU", "torch not importable", None))
        if r["state"] == "init" and r["op"] != GRAM_OP:
            amortised = gram[r["size"], r["state"]] / Gram.REFRESH if r["op"].startswith("adversarial") else 0.0
            slowdown = (t["fpsim"] + amortised) / t["fpsim dense"] - 1
            out.append((f"{r['size']}: {r['op']} at initialisation no slower than dense (<= 5 %)",
                        f"{100 * slowdown:+.1f} %", slowdown <= 0.05))
    return out


def crossover(rounds, d=1000, m=4000, batch=TRAINED_BATCH):
    """Backward products ``C^T X`` and ``C W`` by BLAS and over the active pairs, at synthetic active fractions."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, d), dtype=np.float32)
    W = rng.standard_normal((m, d), dtype=np.float32)
    grad_w, grad_x = np.empty_like(W), np.empty_like(x)
    lines = ["| active % | Cᵀx BLAS ms | Cᵀx pairs ms | CW BLAS ms | CW pairs ms | find pairs ms |",
             "|---|---|---|---|---|---|"]
    for fraction in CROSSOVER_FRACTIONS:
        ws = fpsim.network.Workspace(batch, m, d, np.float32, crossover=1.0)
        ws.u[...] = rng.standard_normal((batch, m)) * (rng.random((batch, m)) < fraction)
        ws.find_active()
        one, zero = np.float32(1.0), np.float32(0.0)
        t = interleaved_min({
            "ctx": lambda: np.matmul(ws.u.T, x, out=grad_w),
            "ctx_pairs": lambda: fpsim.kernels.csc_rows_update(ws.col_ptr, ws.row, ws.col_val, x, one, zero, grad_w),
            "cw": lambda: np.matmul(ws.u, W, out=grad_x),
            "cw_pairs": lambda: fpsim.kernels.csr_rows_times(ws.row_ptr, ws.col, ws.row_val, W, grad_x),
            "find": ws.find_active}, rounds)
        lines.append(f"| {100 * fraction:g} | {t['ctx']:.2f} | {t['ctx_pairs']:.2f} | {t['cw']:.2f} "
                     f"| {t['cw_pairs']:.2f} | {t['find']:.2f} |")
    return "\n".join(lines)


def machine():
    """One line naming the CPU, the core count, the load and the library versions."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    versions = f"numpy {np.__version__}, numba {numba.__version__}" + (
        f", torch {torch.__version__}" if torch is not None else ", torch not installed")
    return f"{model}, {os.cpu_count()} cores, load average {load}; {versions}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no scaling table (< 1 minute)")
    parser.add_argument("--threads", type=int, default=1, help="threads for BLAS, numba and torch (default 1)")
    parser.add_argument("--rounds", type=int, help="timing rounds (default 3 quick, 7 full)")
    parser.add_argument("--only", choices=("all", "dense", "trained"), default="all",
                        help="tables to print: the issue-#5 dense tables, the issue-#12 trained-net tables, or both")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)

    numba.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)  # torch's PGD draws its random starts from torch's generator
    with threadpool_limits(args.threads):
        print(f"# fpsim benchmarks, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
        print(f"# {machine()}; {args.threads} thread(s), min of {rounds} rounds")
        if torch is None:
            print("# torch is not importable: the torch column is skipped")
        if args.only != "dense":
            print("\n## Trained nets: activation-sparse backward (issue #12)\n")
            trained = bench_trained(rounds, args.quick)
            print()
            print(format_trained(trained))
            print()
            for label, value, met in trained_targets(trained):
                print(f"- [{'x' if met else ' ' if met is not None else '?'}] {label}: {value}")
            print("\nBackward products at synthetic active fractions (d=1000, m=4000, B=256):\n")
            print(crossover(rounds))
        if args.only == "trained":
            print(f"\n# load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
            return
        print("\n## Dense tables (issue #5)\n")
        rows = []
        for name in ("small", "large"):
            p = Problem(**SIZES[name])
            rows += bench_size(f"{name} d={p.d} m={p.m} B={p.batch}", p, rounds,
                               with_certificate=name == "small" or not args.quick)
        print()
        print(format_table(rows))
        print()
        for label, value, met in targets(rows):
            print(f"- [{'x' if met else ' '}] {label}: {value}")
        if not args.quick:
            print()
            print(scaling(rounds))
        print(f"\n# load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
