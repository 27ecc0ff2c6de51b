r"""Both ends of fpsim's robust-accuracy interval against external tools (issue #14).

Run from the repository root::

    python benchmarks/compare_external.py --n 200               # quick preset, trained once into /tmp
    python benchmarks/compare_external.py --preset paper_c2 --tau 0.125 --eps-inf 0 --n 300
    python benchmarks/compare_external.py --weights DIR/weights.npz --n 500 --threads 2

For the clean and the adversarially trained net of a preset (``W_clean``,
``W_adv`` of ``weights.npz`` from :func:`fpsim.experiment.run_experiment`;
``--preset`` may also name a config of ``benchmarks/sweep_presets.py``) and
each radius (the preset's :math:`\ell_2` :math:`\tau` or ``--tau``, and
:math:`\ell_\infty` :math:`\varepsilon` = ``--eps-inf``), prints one table
row per tool, on the same examples:

* **upper end** (attacks): fpsim's :func:`fpsim.attacks.attack_margins` (all
  attacks, and each alone); and, when ``torchattacks`` is importable, PGD-100
  (two random starts), APGD-CE, APGD-DLR and AutoAttack (standard version);
* **lower end** (certificates): fpsim's best-of certificate (above its float
  rounding slack, and with auto_LiRPA's criterion bound > 0) and each of its
  bounds; and, when ``auto_LiRPA`` is importable, IBP, CROWN and α-CROWN.

Then the issue-#14 targets per net and radius: fpsim's upper end within 0.2
points of all external attacks together, fpsim's certified fraction >=
α-CROWN's, and the per-example soundness cross-check (no example certified by
any bound, fpsim's or auto_LiRPA's, is broken by any attack, fpsim's or
torchattacks').

A tool that is not importable is skipped with a note (neither is a
dependency of fpsim; torch is never imported by the package).  Tested with
torch 2.13.0+cpu, torchattacks 3.5.1 and auto_LiRPA 0.7.1 (from its GitHub
repository: PyPI's auto_LiRPA 0.3 needs numpy < 2 and torch < 1.13).  Times
are wall-clock seconds on a possibly busy machine: indicative only.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fpsim.attacks import attack_margins  # noqa: E402
from fpsim.certify import _common, bounds as _bounds  # noqa: E402
from fpsim._validation import stream  # noqa: E402
from fpsim.config import PRESETS, build, eval_set, preset  # noqa: E402
from fpsim.experiment import run_experiment  # noqa: E402


def _load(args):
    config = _config(args.preset)
    weights = args.weights
    if weights is None:
        out = os.path.join("/tmp", f"fpsim_compare_{args.preset}")
        weights = os.path.join(out, "weights.npz")
        if not os.path.exists(weights):
            print(f"training the {args.preset!r} preset once into {out} ...", flush=True)
            run_experiment(config, out, progress=False)
    model, net0 = build(config)
    stored = np.load(weights)
    x, y, _ = eval_set(config, model)
    n = min(args.n, len(y))
    nets = {}
    for key, name in (("W_clean", "clean"), ("W_adv", "adversarial")):
        if key in stored:
            net = net0.copy()
            net.W = stored[key]
            net.step = 10**9  # the schedule's final threshold
            nets[name] = net
    return config, model, nets, x[:n], y[:n]


def _fpsim_rows(net, model, x, y, norm, tau, config):
    clock = time.perf_counter()
    margins = attack_margins(net, x, y, norm, tau, model=model, pgd_steps=config.pgd_steps,
                             restarts=config.restarts, rng=stream(config.seed, "attack"))
    attack_s = time.perf_counter() - clock
    worst = np.min(list(margins.values()), axis=0)
    clock = time.perf_counter()
    bounds, slack = _bounds._certify(*_common.check_certify(net, x, y, norm, tau))
    certify_s = time.perf_counter() - clock
    best = np.max([bounds[k] for k in bounds], axis=0)
    rows = [("upper", "fpsim (all attacks)", worst > 0, attack_s)]
    rows += [("upper", f"fpsim {name} only", m > 0, None) for name, m in margins.items()]
    rows.append(("lower", "fpsim (best of)", best > slack, certify_s))
    # auto_LiRPA's criterion: bound > 0, no allowance for the float32 rounding of the net's evaluation
    # (fpsim certifies only above its rounding slack; a lower estimate: rows stop once shown <= slack)
    rows.append(("lower", "fpsim (best of), bound > 0 (no rounding slack)", best > 0, None))
    rows += [("lower", f"fpsim {name} only", b > slack, None) for name, b in bounds.items()]
    return rows


def _torch_module(net):
    r"""The net as a plain two-layer torch MLP, and as 4-logit classifier for torchattacks.

    :math:`f(x) = \sum_i \mathrm{relu}(u_i - b_i) - \mathrm{relu}(-u_i - b_i)` is the MLP
    ``Linear(d, 2m)`` (rows :math:`w_i` and :math:`-w_i`, biases :math:`-b_i`), ReLU,
    ``Linear(2m, 1)`` (weights :math:`+1, -1`): the form auto_LiRPA bounds fastest (the
    same bounds as the element-wise form, ~30x faster for α-CROWN).  The classifier's
    logits are :math:`(-f/2, f/2, -C, -C)`: two dummy classes at a constant far below
    :math:`|f|` (never predicted, no CE mass) so that the DLR losses of APGD-DLR and
    AutoAttack's APGD-T, which need 3 and 4 sorted logits, are defined; the CE loss
    and the decision are those of the two-class net.
    """
    import torch

    if net.activation != "relu":
        raise NotImplementedError("external comparison implemented for the ReLU net only")
    W = torch.tensor(np.asarray(net.W, dtype=np.float32))
    b = torch.tensor(np.asarray(net.bias(), dtype=np.float32))
    m, d = W.shape
    first = torch.nn.Linear(d, 2 * m)
    first.weight.data = torch.cat([W, -W])
    first.bias.data = -torch.cat([b, b])
    second = torch.nn.Linear(2 * m, 1, bias=False)
    second.weight.data = torch.cat([torch.ones(m), -torch.ones(m)])[None]
    f = torch.nn.Sequential(first, torch.nn.ReLU(), second)
    dummy = -10.0 * float(torch.linalg.vector_norm(W, dim=1).sum()) - 1.0   # below any |f| on the data

    class Logits(torch.nn.Module):  # label 1 <=> y = +1
        def __init__(self):
            super().__init__()
            self.f = f

        def forward(self, x):
            out = self.f(x)
            pad = torch.full_like(out, dummy)
            return torch.cat([-0.5 * out, 0.5 * out, pad, pad], dim=1)

    return f, Logits()


def _torchattacks_rows(net, x, y, norm, tau, seed):
    try:
        import torch
        import torchattacks
    except ImportError:
        return [("upper", "torchattacks", None, "not installed (pip install torchattacks): skipped")]
    _, logits = _torch_module(net)
    # torchattacks clamps to the image box [0, 1]: attack z = (x + s/2)/s, with s large enough that the
    # box never binds inside the ball (radius tau/s in z)
    scale = 2.0 * (float(np.abs(x).max()) + tau) + 1e-6

    class Boxed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = logits

        def forward(self, z):  # z: (n, c, h, h) "images", the layout torchattacks assumes
            return self.inner(z.reshape(len(z), -1) * scale - 0.5 * scale)

    boxed = Boxed().eval()
    zt = torch.tensor((np.asarray(x, dtype=np.float64) + 0.5 * scale) / scale, dtype=torch.float32)
    d = zt.shape[1]  # Square (in AutoAttack) draws h x h patches: any c h h = d with h >= 5 will do
    side = max([h for h in range(5, int(np.sqrt(d)) + 1) if d % (h * h) == 0], default=None)
    zt = zt.reshape(len(zt), 1, 1, d) if side is None else zt.reshape(len(zt), d // side**2, side, side)
    yt = torch.tensor((np.asarray(y) > 0).astype(np.int64))
    name = "Linf" if norm == np.inf else "L2"
    eps = tau / scale
    pgd = torchattacks.PGD if norm == np.inf else torchattacks.PGDL2
    makers = [("torchattacks PGD-100 (2 random starts)", None),
              ("torchattacks APGD-CE", lambda: torchattacks.APGD(boxed, norm=name, eps=eps, steps=100,
                                                                loss="ce", seed=seed)),
              ("torchattacks APGD-DLR", lambda: torchattacks.APGD(boxed, norm=name, eps=eps, steps=100,
                                                                 loss="dlr", seed=seed)),
              ("torchattacks AutoAttack", lambda: torchattacks.AutoAttack(boxed, norm=name, eps=eps,
                                                                         n_classes=4, seed=seed))]
    rows = []
    for label, make in makers:
        clock = time.perf_counter()
        try:
            if make is None:
                robust = np.ones(len(yt), dtype=bool)
                for restart in range(2):
                    torch.manual_seed(seed + restart)
                    adv = pgd(boxed, eps=eps, alpha=2.5 * eps / 100, steps=100, random_start=True)(zt, yt)
                    with torch.no_grad():
                        robust &= (boxed(adv).argmax(dim=1) == yt).numpy()
            else:
                adv = make()(zt, yt)
                with torch.no_grad():
                    robust = (boxed(adv).argmax(dim=1) == yt).numpy()
        except Exception as err:  # an external tool's failure is reported, not raised
            rows.append(("upper", label, None, f"failed: {err}"))
            continue
        rows.append(("upper", label, robust, time.perf_counter() - clock))
    return rows


def _lirpa_rows(net, x, y, norm, tau, iterations=20):
    try:
        import torch
        from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
    except ImportError:
        return [("lower", "auto_LiRPA", None, "not installed (pip install auto_LiRPA): skipped")]
    f, _ = _torch_module(net)
    xt = torch.tensor(np.asarray(x, dtype=np.float32))
    spec = torch.tensor(np.asarray(y, dtype=np.float32))[:, None, None]  # bound y f directly (C = y)
    rows = []
    for method in ("IBP", "CROWN", "alpha-CROWN"):
        bounded = BoundedModule(f, torch.zeros_like(xt[:1]),
                                bound_opts={"optimize_bound_args": {"iteration": iterations}}, verbose=0)
        clock = time.perf_counter()
        try:
            ptb = PerturbationLpNorm(norm=np.inf if norm == np.inf else 2, eps=tau)
            lb, _ = bounded.compute_bounds(x=(BoundedTensor(xt, ptb),), C=spec, method=method, bound_upper=False)
        except Exception as err:
            rows.append(("lower", f"auto_LiRPA {method}", None, f"failed: {err}"))
            continue
        seconds = time.perf_counter() - clock
        rows.append(("lower", f"auto_LiRPA {method}", lb.detach().numpy()[:, 0] > 0, seconds))
    return rows


def _cross_check(rows):
    """Soundness: no example certified by any bound is broken by any attack (list of violations)."""
    certified = [(tool, r) for end, tool, r, _ in rows if end == "lower" and r is not None]
    attacked = [(tool, r) for end, tool, r, _ in rows if end == "upper" and r is not None]
    return [f"{c} certifies {int(np.sum(rc & ~ra))} example(s) that {a} breaks"
            for c, rc in certified for a, ra in attacked if np.any(rc & ~ra)]


def _config(name):
    """A built-in preset, or a research config of ``benchmarks/sweep_presets.py`` (e.g. ``paper_c2``)."""
    if name in PRESETS:
        return preset(name, baseline_steps=0)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from sweep_presets import CONFIGS
    return CONFIGS[name]


def _summary(rows):
    """Target lines of issue #14 for one (net, norm, radius)."""
    get = {tool: r for _, tool, r, _ in rows if r is not None}
    lines = []
    external = [r for tool, r in get.items() if tool.startswith("torchattacks")]
    if external:
        best = np.logical_and.reduce(external)
        gap = 100 * (np.mean(get["fpsim (all attacks)"]) - np.mean(best))
        lines.append(f"[{'x' if gap <= 0.2 else ' '}] upper end within 0.2 points of the best external attack "
                     f"(all torchattacks runs together): fpsim {np.mean(get['fpsim (all attacks)']):.3f}, "
                     f"external {np.mean(best):.3f} ({gap:+.1f} points)")
    if "auto_LiRPA alpha-CROWN" in get:
        ours, theirs = np.mean(get["fpsim (best of)"]), np.mean(get["auto_LiRPA alpha-CROWN"])
        zero = np.mean(get["fpsim (best of), bound > 0 (no rounding slack)"])
        lines.append(f"[{'x' if ours >= theirs else ' '}] certified >= alpha-CROWN: fpsim {ours:.3f} "
                     f"(bound > 0 like auto_LiRPA, no rounding slack: {zero:.3f}), alpha-CROWN {theirs:.3f}")
    violations = _cross_check(rows)
    lines.append(f"[{'x' if not violations else ' '}] soundness cross-check (no certified example broken by any "
                 f"attack): " + ("; ".join(violations) if violations else "ok"))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="quick", help="preset, or a config of benchmarks/sweep_presets.py")
    parser.add_argument("--weights", default=None, help="weights.npz of a run of --preset (default: train once)")
    parser.add_argument("--n", type=int, default=500, help="examples (default 500)")
    parser.add_argument("--tau", type=float, default=None, help="l_2 radius (default: the preset's tau)")
    parser.add_argument("--eps-inf", type=float, default=0.00627, help="l_inf radius (default 0.00627; 0: skip)")
    parser.add_argument("--nets", default="clean,adversarial", help="comma-separated subset of clean,adversarial")
    parser.add_argument("--alpha-iterations", type=int, default=20, help="alpha-CROWN iterations (default 20)")
    parser.add_argument("--no-attacks", action="store_true", help="skip torchattacks (bounds only)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    with threadpool_limits(args.threads):
        config, model, nets, x, y = _load(args)
        radii = [(2, config.tau if args.tau is None else args.tau)] + ([(np.inf, args.eps_inf)] if args.eps_inf else [])
        print(f"# {args.preset} preset, n = {len(y)}, d = {config.d}, m = {config.m}; times in s (busy machine)")
        summaries = []
        for name in args.nets.split(","):
            net = nets[name]
            for norm, tau in radii:
                rows = _fpsim_rows(net, model, x, y, norm, tau, config)
                if not args.no_attacks:
                    rows += _torchattacks_rows(net, x, y, norm, tau, config.seed)
                rows += _lirpa_rows(net, x, y, norm, tau, args.alpha_iterations)
                print(f"\n## {name} net, l_{'inf' if norm == np.inf else 2}, radius {tau:g}\n")
                print("| end | tool | robust accuracy | time s / note |")
                print("|---|---|---|---|")
                for end, tool, value, extra in rows:
                    shown = "—" if value is None else f"{np.mean(value):.3f}"
                    note = "" if extra is None else (extra if isinstance(extra, str) else f"{extra:.2f}")
                    print(f"| {end} | {tool} | {shown} | {note} |", flush=True)
                summaries += [f"- {name}, l_{'inf' if norm == np.inf else 2} {tau:g}: {line}"
                              for line in _summary(rows)]
        print("\nTargets (issue #14):\n")
        print("\n".join(summaries))


if __name__ == "__main__":
    main()
