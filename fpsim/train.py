r"""Stochastic gradient descent, clean and adversarial (``docs/MODEL.md`` §4).

One loop (:func:`run_sgd`) serves every variant: it draws batches, lets an
optional attack replace each input by :math:`x + \delta(x)`, takes one SGD step

.. math::

    W \leftarrow W - \eta \big(\nabla_W \tfrac1B \textstyle\sum_b \ell_b + \lambda W\big),

records a history, prints progress and checkpoints.  Two interchangeable
*steppers* do the step itself:

* :class:`DenseStep` works on :math:`x` with two BLAS products per step.
* :class:`DictionaryStep` (noise-free clean training only) works in the
  dictionary basis: :math:`M` is orthogonal, so :math:`\langle w_i, x\rangle =
  \langle a_i, z\rangle` with :math:`A = W M`, and with :math:`k`-sparse codes a
  step costs :math:`\propto B k m` instead of :math:`B d m`.  It gives the same
  iterates as :class:`DenseStep` up to float rounding.
* :class:`LowRankStep` (``rank=r``) trains a rank-:math:`r` update
  :math:`W' = W + U V^\top` of the starting weights instead of :math:`W`
  itself (claim C7).
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from . import kernels
from ._io import atomic_savez
from ._validation import STREAMS, check_choice, check_int, check_norm, stream, validate_parameter
from .attacks import ATTACKS, perturbation
from .certify import robust_accuracy
from .data import TrainingData
from .metrics import median_abs_cos
from .network import Gram, Workspace

PATHS = ("auto", "dense", "dictionary")

def max_rank(net):
    """Largest rank of an update of ``net``'s ``(m, d)`` weights: ``min(m, d)``."""
    return min(net.m, net.d)


def check_rank(rank, net):
    """Validate a low-rank update's rank ``r``: an integer in ``[1, min(m, d)]``."""
    return check_int("rank", rank, 1, max_rank(net))


class DenseStep:
    r"""SGD step on inputs ``x``: ``U = X W^T`` by BLAS, the element-wise work fused, then the update.

    The update :math:`W \leftarrow (1 - \eta\lambda) W - \frac{\eta}{B} C^\top X`
    (:math:`C_{bi} = \partial\ell_b/\partial u_{bi}`) is
    :meth:`TwoLayerNet.sgd_step <fpsim.network.TwoLayerNet.sgd_step>`: over the
    active pairs when few units are active (clean-trained nets), else a single
    ``gemm`` writing into ``W``; no gradient buffer, no extra passes over the
    ``(m, d)`` weights.
    """

    needs_inputs = True

    def __init__(self, net, batch, gram=None):
        self.net = net
        self.ws = Workspace(batch, net.m, net.d, net.dtype)
        self.gram = gram

    def step(self, x, y, z, lr, weight_decay, units=None):
        """One SGD step; returns the batch's mean loss (before the step).

        ``units``: the pre-activations :math:`XW^\top` of ``x``, when the attack left them;
        the stepper's :class:`~fpsim.network.Gram` (if any) follows the step.
        """
        return self.net.sgd_step(x, y, lr, weight_decay, workspace=self.ws, units=units, gram=self.gram)

    def weights(self):
        return self.net.W

    def sync(self):
        """Write the current weights into ``net`` (before a history record and at the end)."""
        self.net.W[...] = self.weights()

    def state(self):
        return {"W": self.net.W}

    def load(self, state):
        self.net.W[...] = state["W"]


class DictionaryStep:
    r"""SGD step in the dictionary basis on codes ``z`` (requires noise-free data).

    Keeps :math:`A^T = M^T W^T` ``(d, m)``; the pre-activations are
    :math:`u_b = A z_b` and the gradient :math:`\nabla_A L = \frac1B \sum_b
    (\partial\ell_b/\partial u_b) z_b^T` touches only the atoms present in the
    batch.  Relative biases use :math:`\|a_i\| = \|w_i\|`.
    """

    needs_inputs = False  # works on the codes z alone

    def __init__(self, net, model, batch):
        if model.noise != 0:
            raise ValueError("path='dictionary' needs noise-free data (noise=0); use path='dense'")
        self.net = net
        self.dictionary = model.dictionary.astype(net.dtype)
        self.a_t = np.ascontiguousarray(self.dictionary.T @ net.W.T)
        self.u = np.empty((batch, net.m), net.dtype)
        self.f = np.empty(batch, net.dtype)

    def step(self, x, y, z, lr, weight_decay):
        net = self.net
        bias = net.threshold.bias(self.a_t.T, net.step)
        kernels.sparse_rows_times(z, self.a_t, self.u)
        kernels.soft_threshold_units(self.u, bias, net.q, net.rho_effective, self.f, self.u)
        loss = kernels.logistic_loss_coefficients(self.f, y.astype(net.dtype), self.u) / len(y)
        if weight_decay > 0:
            loss += 0.5 * weight_decay * float(np.vdot(self.a_t, self.a_t))
            self.a_t *= 1.0 - lr * weight_decay
        kernels.sparse_rank_update(z, self.u, self.a_t.dtype.type(-lr / len(y)), self.a_t)
        return loss

    def weights(self):
        """Current ``W = A M^T`` (computed on request)."""
        return (self.dictionary @ self.a_t).T

    sync = DenseStep.sync

    def state(self):
        return {"a_t": self.a_t}

    def load(self, state):
        self.a_t[...] = state["a_t"]


class LowRankStep:
    r"""SGD on a rank-:math:`r` update of the starting weights (claim C7).

    The trained weights are :math:`W' = W_0 + U V^\top`, with :math:`W_0` the
    starting (clean) weights held fixed, :math:`U` ``(m, r)`` and :math:`V`
    ``(d, r)``.  With :math:`G = \partial L/\partial W'` (the full update's
    gradient at :math:`W'`, weight decay :math:`\lambda W'` included, biases
    held fixed within the step as in :class:`DenseStep`), the chain rule gives

    .. math::

        \frac{\partial L}{\partial U} = G V, \qquad
        \frac{\partial L}{\partial V} = G^\top U,

    and one step updates both factors from the same :math:`(U, V)`:
    :math:`U \leftarrow U - \eta G V`, :math:`V \leftarrow V - \eta G^\top U`.
    The weight decay acts on :math:`W'` (the objective is the full update's),
    not on the factors.

    Start (a documented choice).  :math:`U_0 = 0`, so :math:`W'_0 = W_0`, and
    :math:`V_0` holds the top :math:`r` right singular vectors of the first
    step's gradient :math:`G_0` (computed on the first, already perturbed,
    batch: no extra data and no extra random draw).  Then :math:`\partial
    L/\partial V = 0` at the first step and

    .. math::

        W'_1 - W_0 = -\eta\, G_0 V_0 V_0^\top
                   = -\eta \textstyle\sum_{j \le r} \sigma_j a_j b_j^\top
        \qquad (G_0 = \textstyle\sum_j \sigma_j a_j b_j^\top),

    the best rank-:math:`r` approximation (Eckart--Young) of the full
    update's first step :math:`-\eta G_0`, at the same step size :math:`\eta`.
    At :math:`r = \min(m, d)` the :math:`b_j` span the row space of
    :math:`G_0`, so the first step *equals* the full update's.  Later steps
    differ: the factorised step changes :math:`W'` by :math:`-\eta(G V V^\top
    + U U^\top G) + \eta^2 G V U^\top G`, a different (over-parametrised)
    optimiser of the same objective, not the same iterates.  (A random
    :math:`V_0` was tried first: with :math:`U_0 = 0` it starts at a saddle
    and rank 1 had not moved the certified robust accuracy after 500 steps
    of the small setting in ``tests/test_train_adversarial.py``.)
    """

    needs_inputs = True

    def __init__(self, net, batch, rank):
        self.net = net
        self.base = net.W.copy()
        self.rank = check_rank(rank, net)
        self.u = np.zeros((net.m, self.rank), net.dtype)
        self.v = np.zeros((net.d, self.rank), net.dtype)
        self.started = False
        self.ws = Workspace(batch, net.m, net.d, net.dtype)

    def full_gradient(self, x, y, weight_decay):
        r"""Loss and :math:`G = \partial L/\partial W'` ``(m, d)`` at the current :math:`W'`.

        ``G`` is a work buffer, overwritten by the next call.
        """
        net, n = self.net, len(y)
        x = net._inputs(x)
        ws = self.ws if n == self.ws.u.shape[0] else Workspace(n, net.m, net.d, net.dtype)
        loss = net._coefficients(x, y.astype(net.dtype), net.bias(), ws) / n
        grad = np.matmul(ws.u.T, x, out=ws.grad_w)
        grad *= 1.0 / n
        if weight_decay > 0:
            loss += 0.5 * weight_decay * float(np.vdot(net.W, net.W))
            grad += weight_decay * net.W
        return loss, grad

    def gradients(self, x, y, weight_decay):
        r"""Loss at :math:`W'` and :math:`(\partial L/\partial U, \partial L/\partial V) = (G V, G^\top U)`.

        Parameters
        ----------
        x : (B, d) array_like
        y : (B,) array of {-1, +1}
        weight_decay : float
            :math:`\lambda`, applied to :math:`W'`.

        Returns
        -------
        loss : float
        grad_u : (m, r) ndarray
        grad_v : (d, r) ndarray
        """
        loss, grad = self.full_gradient(x, y, weight_decay)
        if not self.started:  # V_0: top-r right singular vectors of G_0 (see the class docstring)
            self.v[...] = np.linalg.svd(grad.astype(np.float64), full_matrices=False)[2][:self.rank].T
            self.started = True
        return loss, grad @ self.v, grad.T @ self.u

    def step(self, x, y, z, lr, weight_decay):
        """One SGD step on ``(U, V)``; returns the batch's mean loss (before the step)."""
        loss, grad_u, grad_v = self.gradients(x, y, weight_decay)
        self.u -= lr * grad_u
        self.v -= lr * grad_v
        self._compose()
        return loss

    def _compose(self):
        W = self.net.W   # the net's own array, written in place
        np.matmul(self.u, self.v.T, out=W)
        np.add(W, self.base, out=W)

    def weights(self):
        return self.net.W

    sync = DenseStep.sync

    def state(self):
        return {"U": self.u, "V": self.v}

    def load(self, state):
        self.u[...] = state["U"]
        self.v[...] = state["V"]
        self.started = True
        self._compose()


def run_sgd(net, model, *, steps, batch, lr, weight_decay=0.0, n_train=None, seed=0,
            phase="clean", perturb=None, evaluate=None, path="auto", eval_size=2000,
            record_every=None, progress=False, checkpoint=None, checkpoint_every=None, rank=None,
            stepper=None, gram=None):
    r"""The SGD loop shared by clean and adversarial training of the network and by the baselines.

    Parameters
    ----------
    net : TwoLayerNet or fpsim.baselines.Baseline
        Starting model (not modified; a trained copy is returned).  Another
        model than a :class:`~fpsim.network.TwoLayerNet` needs ``stepper``.
    model : SparseCodingModel
    steps : int
        Number of SGD steps :math:`T \ge 1`.
    batch : int
        Batch size :math:`B \ge 1`.
    lr : float
        Step size :math:`\eta > 0`.
    weight_decay : float, default 0
        :math:`\lambda \ge 0`.
    n_train : int or None, default None
        ``None``: fresh samples every step; else a fixed training set of that size.
    seed : int
        Seeds the batches (stream ``phase``) and the held-out set (stream ``eval``).
    phase : {"clean", "adversarial", "baseline"}
        Names the random stream of the batches, so the phases never share data.
    perturb : callable, optional
        ``perturb(net, x, y, rng) -> x_adv``: the attack of adversarial training.
        It may return ``(x_adv, units)`` instead, with ``units`` the
        pre-activations :math:`X_{adv} W^\top` of ``net`` (an attack's last
        evaluation); the default (dense) stepper then skips that product.
    evaluate : callable, optional
        ``evaluate(net, x_eval, y_eval) -> dict`` of extra history entries.
    path : {"auto", "dense", "dictionary"}
        Stepper; ``auto`` picks ``dictionary`` for noise-free clean training.
    rank : int, optional
        Train a rank-``rank`` update :math:`W' = W + U V^\top` of ``net``'s
        weights (:class:`LowRankStep`, ``1 <= rank <= min(m, d)``) instead
        of the weights themselves.  Needs ``path`` ``"auto"`` or ``"dense"``.
    stepper : callable, optional
        ``stepper(net) -> step object`` (``needs_inputs``, ``step(x, y, z, lr,
        weight_decay) -> loss``, ``sync()``, ``state()``, ``load(state)``),
        e.g. :class:`fpsim.baselines.BaselineStep`; replaces the choice by
        ``path`` and ``rank``.
    gram : fpsim.network.Gram, optional
        :math:`K = W W^\top`, for a ``perturb`` that follows it (adversarial
        :math:`\ell_2` PGD): formed before the steps that
        :meth:`fpsim.network.Gram.due` names (every checkpoint step, and every
        :attr:`~fpsim.network.Gram.REFRESH` steps while following it pays);
        followed through the sparse steps between (:class:`DenseStep` only).
    eval_size : int, default 2000
        Size of the held-out set for the history.
    record_every : int, optional
        History interval in steps (default: ``steps // 20``, at least 1).
    progress : bool
        Print a progress line to stderr about every 2 seconds.
    checkpoint : str or path, optional
        File (``.npz``) to checkpoint to and resume from; a resumed run gives
        the same result, bit for bit, as an uninterrupted one.
    checkpoint_every : int, optional
        Checkpoint interval in steps (default: ``5 * record_every``).

    Returns
    -------
    net : TwoLayerNet
        Trained copy of ``net``.
    history : dict of lists
        ``step``, ``loss`` (mean training loss since the previous record),
        ``accuracy`` (held-out clean accuracy), ``median_cos_init``
        (median :math:`|\cos(w_i^0, w_i)|`; networks only), plus ``evaluate``'s entries.
    """
    steps = validate_parameter("steps", steps)
    batch = validate_parameter("batch", batch)
    lr = validate_parameter("lr", lr)
    weight_decay = validate_parameter("weight_decay", weight_decay)
    n_train = validate_parameter("n_train", n_train)
    check_choice("phase", phase, ("clean", "adversarial", "baseline"))
    check_choice("path", path, PATHS)
    seed = validate_parameter("seed", seed)
    eval_size = validate_parameter("eval_size", eval_size)
    if model.d != net.d:
        raise ValueError(f"net.d={net.d} does not match model.d={model.d}")
    record_every = max(steps // 20, 1) if record_every is None else check_int("record_every", record_every, 1)
    checkpoint_every = 5 * record_every if checkpoint_every is None else check_int(
        "checkpoint_every", checkpoint_every, 1)

    if rank is not None:
        if stepper is not None:
            raise ValueError("rank chooses the stepper: pass rank or stepper, not both")
        rank = check_rank(rank, net)
        if path == "dictionary":
            raise ValueError("rank is trained on inputs x: use path='auto' or 'dense' with rank")

    if gram is not None and (rank is not None or stepper is not None):
        raise ValueError("gram follows the full-W dense stepper: pass it without rank or stepper")

    net = net.copy()
    if stepper is not None:
        path, stepper = getattr(stepper, "__name__", "custom"), stepper(net)
    else:
        if path == "auto":
            path = "dictionary" if model.noise == 0 and perturb is None and rank is None else "dense"
        if path == "dictionary" and perturb is not None:
            raise ValueError("path='dictionary' is for clean training only (perturbations are dense)")
        if path == "dictionary" and gram is not None:
            raise ValueError("gram follows the dense stepper's weights: use path='dense' with gram")
        if rank is not None:
            stepper = LowRankStep(net, batch, rank)
        elif path == "dictionary":
            stepper = DictionaryStep(net, model, batch)
        else:
            stepper = DenseStep(net, batch, gram)
    data = TrainingData(model, n_train, stream(seed, phase))
    x_eval, y_eval, _ = model.sample(eval_size, stream(seed, "eval"))
    attack_rng = stream(seed, "attack")
    history = {"step": [], "loss": [], "accuracy": []}
    if getattr(net, "W_init", None) is not None:
        history["median_cos_init"] = []
    start, loss_sum, loss_count = 0, 0.0, 0

    run_key = {"steps": steps, "batch": batch, "lr": lr, "weight_decay": weight_decay, "seed": seed,
               "phase": phase, "path": path, "n_train": n_train, "record_every": record_every}
    if rank is not None:
        run_key["rank"] = rank
    if checkpoint is not None and os.path.exists(checkpoint):
        start, history, loss_sum, loss_count = _resume(checkpoint, run_key, stepper, data, attack_rng)
    first_step = net.step
    net.step += start
    clock = time.perf_counter()
    last_print = clock
    for t in range(start, steps):
        if gram is not None and gram.due(t, checkpoint_every):
            gram.refresh(net.W)
        x, y, z = data.batch(batch, inputs=stepper.needs_inputs)
        units = None
        if perturb is not None:
            x = perturb(net, x, y, attack_rng)
            if isinstance(x, tuple):  # (x_adv, its pre-activations): the step reuses them
                x, units = x
        loss_sum += (stepper.step(x, y, z, lr, weight_decay) if units is None
                     else stepper.step(x, y, z, lr, weight_decay, units=units))
        loss_count += 1
        net.step += 1
        done = t + 1
        if done % record_every == 0 or done == steps:
            stepper.sync()
            _record(history, net, done, loss_sum / loss_count, x_eval, y_eval, evaluate)
            loss_sum, loss_count = 0.0, 0
        if progress and (time.perf_counter() - last_print > 2.0 or done == steps):
            last_print = time.perf_counter()
            _print_progress(phase, done, steps, history, last_print - clock, done - start)
        if checkpoint is not None and (done % checkpoint_every == 0) and done < steps:
            _save_checkpoint(checkpoint, run_key, done, stepper, data, attack_rng, history,
                             loss_sum, loss_count)
    stepper.sync()
    net.step = first_step + steps
    return net, history


def train_clean(net, model, steps, batch, lr, **kwargs):
    """Clean SGD from ``net``'s weights; see :func:`run_sgd` for every option.

    Returns
    -------
    net : TwoLayerNet
        Trained copy.
    history : dict of lists
    """
    return run_sgd(net, model, steps=steps, batch=batch, lr=lr, phase="clean", **kwargs)


def _record(history, net, step, loss, x_eval, y_eval, evaluate):
    history["step"].append(step)
    history["loss"].append(float(loss))
    history["accuracy"].append(net.accuracy(x_eval, y_eval))
    if "median_cos_init" in history:
        history["median_cos_init"].append(median_abs_cos(net.W, net.W_init))
    for key, value in (evaluate(net, x_eval, y_eval) if evaluate else {}).items():
        history.setdefault(key, []).append(value)


def _print_progress(phase, done, steps, history, elapsed, run_steps):
    eta = elapsed / max(run_steps, 1) * (steps - done)
    last = {k: v[-1] for k, v in history.items() if v}
    extra = " ".join(f"{k} {v:.3f}" for k, v in last.items() if k not in ("step", "median_cos_init"))
    print(f"[fpsim] {phase} {done}/{steps} {extra} ({elapsed:.0f}s, eta {eta:.0f}s)",
          file=sys.stderr, flush=True)


def _save_checkpoint(path, run_key, done, stepper, data, attack_rng, history, loss_sum, loss_count):
    meta = {"run": run_key, "step": done, "history": history, "loss_sum": loss_sum, "loss_count": loss_count,
            "data_rng": data.rng.bit_generator.state, "attack_rng": attack_rng.bit_generator.state}
    atomic_savez(path, meta=np.array(json.dumps(meta)), **stepper.state())


def _resume(path, run_key, stepper, data, attack_rng):
    with np.load(path) as saved:
        meta = json.loads(str(saved["meta"]))
        state = {key: saved[key] for key in saved.files if key != "meta"}
    expected = stepper.state()
    if (meta["run"] != run_key or state.keys() != expected.keys()
            or any(state[k].shape != v.shape for k, v in expected.items())):
        raise ValueError(f"checkpoint {path} was written by a different run (settings or sizes differ); "
                         "delete it or choose another checkpoint file")
    stepper.load(state)
    data.rng.bit_generator.state = meta["data_rng"]
    attack_rng.bit_generator.state = meta["attack_rng"]
    return meta["step"], meta["history"], meta["loss_sum"], meta["loss_count"]




def train_adversarial(net, model, steps, batch, lr, attack="pgd", norm=2, tau=None, attack_steps=5,
                      attack_step_size=None, restarts=1, robust_eval_size=500, rank=None, **kwargs):
    r"""Adversarial SGD from ``net``'s weights (``docs/MODEL.md`` §4).

    Every step replaces each batch input by :math:`x + \delta(x)`, with
    :math:`\delta` from :func:`fpsim.attacks.fgm` or :func:`fpsim.attacks.pgd`
    at radius :math:`\tau` in the :math:`\ell_p` norm, then takes the clean
    SGD step on the perturbed batch (:func:`run_sgd` with
    ``phase="adversarial"``; the attack draws from the ``attack`` stream).

    Parameters
    ----------
    net : TwoLayerNet
        Starting network, usually clean-trained (not modified).
    model : SparseCodingModel
    steps, batch, lr
        As in :func:`run_sgd`.
    attack : {"pgd", "fgm"}, default "pgd"
    norm : {2, "2", "l2", "inf", numpy.inf}, default 2
        Attack norm :math:`p`.
    tau : float, optional
        Radius :math:`\tau > 0`; default :math:`0.5/\sqrt{k}`.
    attack_steps : int, default 5
        PGD steps :math:`S \ge 1` (ignored by FGM).
    attack_step_size : float, optional
        PGD step :math:`\alpha > 0` (default :math:`2.5\tau/S`).
    restarts : int, default 1
        PGD random starts (``>= 1``).
    robust_eval_size : int, default 500
        The history's robust accuracy is measured on the first
        ``robust_eval_size`` examples of the held-out set (at most
        ``eval_size``).
    rank : int, optional
        Low-rank adversarial training (claim C7): train
        :math:`W' = W + U V^\top` with :math:`U` ``(m, r)``, :math:`V`
        ``(d, r)``, :math:`1 \le r \le \min(m, d)`, from :math:`W' = W`, by
        the same adversarial SGD (same attack, :math:`\tau`, steps, step size
        and batches); see :class:`LowRankStep` for the gradients and the start.
        Default: the full update of :math:`W`.
    **kwargs
        Other :func:`run_sgd` options (``weight_decay``, ``n_train``,
        ``seed``, ``eval_size``, ``evaluate``, ...).  A caller's ``evaluate``
        entries are recorded beside the robust accuracy.

    Returns
    -------
    net : TwoLayerNet
        Adversarially trained copy.
    history : dict of lists
        :func:`run_sgd`'s history plus ``robust_lower`` (certified) and
        ``robust_upper`` (attacked) robust accuracy at :math:`(p, \tau)`,
        from :func:`fpsim.certify.robust_accuracy` with the dense-direction
        attack of ``model`` included.
    """
    check_choice("attack", attack, ATTACKS)
    norm = check_norm(norm)
    tau = 0.5 / np.sqrt(model.k) if tau is None else validate_parameter("tau", tau)
    attack_steps = validate_parameter("attack_steps", attack_steps)
    attack_step_size = validate_parameter("attack_step_size", attack_step_size)
    restarts = validate_parameter("restarts", restarts)
    if rank is not None:
        rank = check_rank(rank, net)
    robust_eval_size = check_int("robust_eval_size", robust_eval_size, 1, kwargs.get("eval_size", 2000))
    for name in ("phase", "perturb"):
        if name in kwargs:
            raise TypeError(f"train_adversarial sets {name!r} itself; do not pass it")
    seed = validate_parameter("seed", kwargs.get("seed", 0))
    extra = kwargs.pop("evaluate", None)

    buffers = []  # the (batch, m) pre-activations the attack leaves for the full-W step
    # l2 PGD on the full W follows the iterates' pre-activations through K = W W^T (fpsim.network.Gram)
    gram = Gram(net.m, net.dtype) if attack == "pgd" and norm == 2 and rank is None else None

    def perturb(net, x, y, rng):
        units = None
        if rank is None:  # the low-rank step forms its own products
            if not buffers or buffers[0].shape[0] != x.shape[0]:
                buffers[:] = [np.empty((x.shape[0], net.m), net.dtype)]
            units = buffers[0]
        x_adv = x + perturbation(net, x, y, attack, norm, tau, rng=rng, steps=attack_steps,
                                 step_size=attack_step_size, restarts=restarts, units=units, gram=gram)
        return x_adv if units is None else (x_adv, units)

    def evaluate(net, x_eval, y_eval):
        # PGD starts seeded by (seed, step): the history is the same after a resume.
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAMS["attack"], net.step)))
        result = robust_accuracy(net, x_eval[:robust_eval_size], y_eval[:robust_eval_size], norm, tau,
                                 model=model, rng=rng)
        entries = {"robust_lower": result.lower, "robust_upper": result.upper}
        entries.update(extra(net, x_eval, y_eval) if extra else {})
        return entries

    return run_sgd(net, model, steps=steps, batch=batch, lr=lr, phase="adversarial",
                   perturb=perturb, evaluate=evaluate, rank=rank, gram=gram, **kwargs)
