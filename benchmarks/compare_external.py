r"""Both ends of fpsim's robust-accuracy interval against external tools (issue #14).

Run from the repository root::

    python benchmarks/compare_external.py                      # quick preset, trained once into /tmp
    python benchmarks/compare_external.py --weights DIR/weights.npz --n 500
    python benchmarks/compare_external.py --threads 2

For the clean and the adversarially trained net of a preset (``W_clean``,
``W_adv`` of ``weights.npz`` from :func:`fpsim.experiment.run_experiment`) and
each radius (the preset's :math:`\ell_2` :math:`\tau`, and :math:`\ell_\infty`
:math:`\varepsilon` = ``--eps-inf``), prints one table row per tool:

* **upper end** (attacks): fpsim's :func:`fpsim.attacks.attack_margin`; and,
  when ``torchattacks`` is importable, its APGD (cross-entropy) and AutoAttack;
* **lower end** (certificates): fpsim's best-of certificate and each of its
  bounds; and, when ``auto_LiRPA`` is importable, IBP, CROWN and α-CROWN.

A tool that is not importable is skipped with a note (neither is a
dependency of fpsim; torch is never imported by the package).  Times are
wall-clock seconds on a possibly busy machine: indicative only.
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
from fpsim.experiment import build, preset, run_experiment, stream  # noqa: E402


def _load(args):
    config = preset(args.preset, baseline_steps=0)
    weights = args.weights
    if weights is None:
        out = os.path.join("/tmp", f"fpsim_compare_{args.preset}")
        weights = os.path.join(out, "weights.npz")
        if not os.path.exists(weights):
            print(f"training the {args.preset!r} preset once into {out} ...", flush=True)
            run_experiment(config, out, progress=False)
    model, net0 = build(config)
    stored = np.load(weights)
    x, y, _ = model.sample(config.eval_size, stream(config.seed, "eval"))
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
    rows = [("upper", "fpsim (all attacks)", np.mean(worst > 0), attack_s)]
    rows += [("upper", f"fpsim {name} only", np.mean(m > 0), None) for name, m in margins.items()]
    rows.append(("lower", "fpsim (best of)", np.mean(best > slack), certify_s))
    rows += [("lower", f"fpsim {name} only", np.mean(b > slack), None) for name, b in bounds.items()]
    return rows


def _torch_module(net):
    import torch

    W = torch.tensor(np.asarray(net.W, dtype=np.float32))
    b = torch.tensor(np.asarray(net.bias(), dtype=np.float32))
    if net.activation != "relu":
        raise NotImplementedError("external comparison implemented for the ReLU net only")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
            self.layer.weight.data = W.clone()
            self.register_buffer("b", b.clone())

        def forward(self, x):  # f(x) = sum_i relu(u_i - b_i) - relu(-u_i - b_i)
            u = self.layer(x)
            return (torch.relu(u - self.b) - torch.relu(-u - self.b)).sum(dim=1, keepdim=True)

    class Logits(torch.nn.Module):  # two classes: logit difference f, label 1 <=> y = +1
        def __init__(self):
            super().__init__()
            self.f = Net()

        def forward(self, x):
            f = self.f(x)
            return torch.cat([-0.5 * f, 0.5 * f], dim=1)

    return Net(), Logits()


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

        def forward(self, z):
            return self.inner(z * scale - 0.5 * scale)

    boxed = Boxed()
    zt = torch.tensor((np.asarray(x, dtype=np.float64) + 0.5 * scale) / scale, dtype=torch.float32)
    yt = torch.tensor((np.asarray(y) > 0).astype(np.int64))
    name = "Linf" if norm == np.inf else "L2"
    eps = tau / scale
    rows = []
    for label, make in (("torchattacks APGD-CE", lambda: torchattacks.APGD(boxed, norm=name, eps=eps, steps=100,
                                                                          loss="ce", seed=seed)),
                        ("torchattacks AutoAttack", lambda: torchattacks.AutoAttack(boxed, norm=name, eps=eps,
                                                                                   n_classes=2, seed=seed))):
        clock = time.perf_counter()
        try:
            adv = make()(zt, yt)
        except Exception as err:  # an external tool's failure is reported, not raised
            rows.append(("upper", label, None, f"failed: {err}"))
            continue
        seconds = time.perf_counter() - clock
        with torch.no_grad():
            correct = (boxed(adv).argmax(dim=1) == yt).float().mean().item()
        rows.append(("upper", label, correct, seconds))
    return rows


def _lirpa_rows(net, x, y, norm, tau):
    try:
        import torch
        from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
    except ImportError:
        return [("lower", "auto_LiRPA", None, "not installed (pip install auto_LiRPA): skipped")]
    f, _ = _torch_module(net)
    xt = torch.tensor(np.asarray(x, dtype=np.float32))
    bounded = BoundedModule(f, torch.zeros_like(xt[:1]))
    rows = []
    for method in ("IBP", "CROWN", "alpha-CROWN"):
        clock = time.perf_counter()
        try:
            ptb = PerturbationLpNorm(norm=np.inf if norm == np.inf else 2, eps=tau)
            lb, ub = bounded.compute_bounds(x=(BoundedTensor(xt, ptb),), method=method)
        except Exception as err:
            rows.append(("lower", f"auto_LiRPA {method}", None, f"failed: {err}"))
            continue
        seconds = time.perf_counter() - clock
        lb, ub = lb.detach().numpy()[:, 0], ub.detach().numpy()[:, 0]
        margin = np.where(np.asarray(y) > 0, lb, -ub)  # lower bound of y f over the ball
        rows.append(("lower", f"auto_LiRPA {method}", np.mean(margin > 0), seconds))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--weights", default=None, help="weights.npz of a run of --preset (default: train once)")
    parser.add_argument("--n", type=int, default=500, help="examples (default 500)")
    parser.add_argument("--eps-inf", type=float, default=0.00627, help="l_inf radius (default 0.00627)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    with threadpool_limits(args.threads):
        config, model, nets, x, y = _load(args)
        print(f"# {args.preset} preset, n = {len(y)}, d = {config.d}, m = {config.m}; times in s (busy machine)")
        print("| net | norm | radius | end | tool | robust accuracy | time / note |")
        print("|---|---|---|---|---|---|---|")
        for name, net in nets.items():
            for norm, tau in ((2, config.tau), (np.inf, args.eps_inf)):
                rows = _fpsim_rows(net, model, x, y, norm, tau, config)
                rows += _torchattacks_rows(net, x, y, norm, tau, config.seed)
                rows += _lirpa_rows(net, x, y, norm, tau)
                for end, tool, value, extra in rows:
                    shown = "—" if value is None else f"{value:.3f}"
                    note = "" if extra is None else (extra if isinstance(extra, str) else f"{extra:.2f}")
                    print(f"| {name} | {'inf' if norm == np.inf else 2} | {tau:g} | {end} | {tool} | {shown} | "
                          f"{note} |", flush=True)


if __name__ == "__main__":
    main()
