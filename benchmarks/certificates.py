#!/usr/bin/env python
"""Time fpsim's certificate (every bound, best per example) at the sizes of the headline regime.

Usage::

    python benchmarks/certificates.py                 # near-ideal net, d=800, m=1600, 2000 examples
    python benchmarks/certificates.py --run RUN_DIR   # the W_adv (and W_clean) of a finished run

For each net and radius (half the threshold, and 1.5x and 2x past it, where
only the ``"split"`` bound can certify), prints the wall time of
:func:`fpsim.certify.certified_margins` on all examples, the fraction each
bound certifies, and the target of issue #8 (2000 examples at d=800, m=1600
in under 10 s on 2 cores).  A thin caller of the library: the nets come from
:func:`fpsim.finite_size.ideal_net` or a run's ``weights.npz``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fpsim import SparseCodingModel, TwoLayerNet  # noqa: E402
from fpsim._threads import thread_limit  # noqa: E402
from fpsim.certify import certified_margins  # noqa: E402
from fpsim.config import Config, build  # noqa: E402
from fpsim.finite_size import ideal_net  # noqa: E402

TARGET_S = 10.0


def near_ideal(model, threshold, mix=0.1, copies=2, seed=0):
    """``copies`` jittered copies of the ideal net's rows plus a dense mixture of relative size ``mix``."""
    rng = np.random.default_rng(seed)
    rows = np.concatenate([ideal_net(model, threshold).W.astype(np.float64)] * copies)
    rows *= rng.uniform(0.7, 1.3, size=(len(rows), 1))
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    signs = np.sign(rows @ model.dense_direction)[:, None]
    rows += mix * norms * (signs * model.dense_direction + 0.5 * rng.standard_normal(rows.shape) / np.sqrt(model.d))
    return TwoLayerNet(rows.astype(np.float32), threshold=threshold)


def nets_to_time(args):
    if args.run:
        with open(os.path.join(args.run, "report.json")) as fh:
            config = Config(**json.load(fh)["config"])
        model, net0 = build(config)
        found = {}
        with np.load(os.path.join(args.run, "weights.npz")) as weights:
            for key in ("W_clean", "W_adv"):
                if key in weights:
                    net = net0.copy()
                    net.W = weights[key]
                    net.step = config.clean_steps + (config.adv_steps if key == "W_adv" else 0)
                    found[key] = net
        return model, found, config.threshold
    model = SparseCodingModel(args.d, args.k, magnitude=(1.0, 1.2), margin=2.0, seed=0)
    theta = 0.48 / np.sqrt(args.k)
    return model, {"near-ideal": near_ideal(model, theta)}, theta


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a finished run folder (report.json, weights.npz)")
    p.add_argument("--d", type=int, default=800)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--n", type=int, default=2000, help="examples (default 2000)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    model, nets, theta = nets_to_time(args)
    x, y, _ = model.sample(args.n, 1)
    print(f"d={model.d} k={model.k:g} n={args.n} threads={args.threads} theta={theta:.4g}")
    print("| net | m | tau / theta | time (s) | " + " | ".join(("per_unit", "gram", "linear", "spectral", "split")) + " | certified |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with thread_limit(args.threads):
        first = next(iter(nets.values()))
        certified_margins(first, x[:8], y[:8], 2, 1.5 * theta, dictionary=model.dictionary)  # compile
        for name, net in nets.items():
            for ratio in (0.5, 1.5, 2.0):
                clock = time.perf_counter()
                bounds = certified_margins(net, x, y, 2, ratio * theta, dictionary=model.dictionary)
                elapsed = time.perf_counter() - clock
                best = np.maximum.reduce(list(bounds.values()))
                shares = " | ".join(f"{float((b > 0).mean()):.3f}" for b in bounds.values())
                flag = "" if elapsed < TARGET_S or net.m != 1600 or args.n != 2000 else " (over target)"
                print(f"| {name} | {net.m} | {ratio:g} | {elapsed:.2f}{flag} | {shares} | {float((best > 0).mean()):.3f} |")
    print(f"target: 2000 examples at d=800, m=1600 in under {TARGET_S:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
