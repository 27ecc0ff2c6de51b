"""The settings of one experiment (:class:`Config`), the built-in presets, and what a config builds.

Every field's accepted values come from :data:`fpsim._validation.PARAMETER_CONSTRAINTS`
(declared once; the command line's ``--help`` and the training functions read
the same table); :meth:`Config.validate` adds the conditions between fields.
A field left unset is ``None`` (``sigma0=None``: :math:`1/d`; ``adv_lr=None``:
the clean step size; ...).  Old reports spelled "unset" with sentinels
(``sigma0=0``, ``threshold_end=-1``, ``n_train=0``, ``adv_lr=0``,
``lowrank_ranks="none"``, ``fgm_check="on"/"off"``); :data:`LEGACY` maps
them on construction, so configs read from old run folders still load and
resume (their phase keys and fingerprints are computed on the old spelling,
:meth:`Config.legacy_dict`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
from dataclasses import dataclass, field

from ._validation import (PARAMETER_CONSTRAINTS, check_choice, check_dtype, check_float, check_norm,
                          check_pair, describe_parameter, stream, validate_parameter)
from .data import DICTIONARIES, SUPPORTS, SparseCodingModel
from .network import ACTIVATIONS, THRESHOLD_KINDS, Threshold, TwoLayerNet


def _opt(default, help, kind=None, **kw):
    kind = kind or type(default)
    return field(default=default, metadata={"help": help, "type": kind, **kw})


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
    sigma0: float = _opt(None, "initial weight scale sigma_0 (unset: 1/d)", kind=float)
    threshold: float = _opt(0.3, "threshold theta (relative: b_i = theta ||w_i||; absolute: b_i = theta)")
    threshold_end: float = _opt(None, "final theta of a linear ramp (unset: constant threshold)", kind=float)
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
    n_train: int = _opt(None, "training-set size N (unset: a fresh batch every step)", kind=int)
    # adversarial training (MODEL.md §4-§5)
    adv_steps: int = _opt(500, "adversarial SGD steps (0 skips the phase)")
    adv_lr: float = _opt(None, "adversarial step size (unset: same as lr)", kind=float)
    attack: str = _opt("pgd", "attack used in adversarial training", choices=("pgd", "fgm"))
    norm: str = _opt("2", "perturbation norm", choices=("2", "inf"))
    tau: float = _opt(0.25, "perturbation radius tau")
    attack_steps: int = _opt(5, "PGD steps during adversarial training")
    lowrank_ranks: str = _opt(None, "ranks r of the extra low-rank adversarial runs W' = W + U V^T "
                              "from the clean W (C7), comma-separated, each in [1, min(m, d)]; "
                              "unset ('none' on the command line) skips them (presets: paper 1,2,4,8; quick 4)",
                              kind=str)
    fgm_check: bool = _opt(False, "extra FGM adversarial run from the clean weights, same tau and steps "
                           "(the C3-FGM row; reuses the main run when attack is fgm; presets: on)")
    # evaluation (MODEL.md §5-§7)
    eval_size: int = _opt(2000, "held-out samples for the final evaluation")
    robust_eval_size: int = _opt(500, "held-out samples for robust accuracy (attacks, certificates)")
    pgd_steps: int = _opt(20, "PGD steps when evaluating robust accuracy")
    restarts: int = _opt(2, "PGD restarts when evaluating robust accuracy")
    node_budget: int = _opt(None, "complete mode: branch-and-bound nodes per example that no bound "
                            "certifies and no attack breaks (unset: off; the report counts the undecided)", kind=int)
    curve_points: int = _opt(9, "points of the robust-accuracy curve over tau' in (0, 2 tau]")
    baseline_steps: int = _opt(0, "SGD steps for the C6 baselines (0: skip them)")
    baseline_lr: float = _opt(0.1, "step size of the C6 baselines")
    seed: int = _opt(0, "the one seed every random draw derives from")

    def __post_init__(self):
        for name in ("magnitude", "teacher"):  # JSON gives lists; keep pairs as tuples
            setattr(self, name, tuple(getattr(self, name)))
        for name, old in LEGACY.items():  # the sentinels of older reports mean "unset"
            if _is_sentinel(getattr(self, name), old):
                setattr(self, name, None)
        if self.fgm_check in ("on", "off"):
            self.fgm_check = self.fgm_check == "on"
        self.validate()

    def validate(self):
        """Check every field; raises ValueError/TypeError naming the field and its range."""
        for name in PARAMETER_CONSTRAINTS:
            if name in self.__dataclass_fields__:
                validate_parameter(name, getattr(self, name))
        check_float("k", self.k, 1, self.d, closed=(True, False))
        check_pair("magnitude", self.magnitude, 0.0)
        check_pair("teacher", self.teacher, 0.0)
        for name in ("dictionary", "support", "threshold_kind", "activation", "dtype", "norm"):
            check_choice(name, getattr(self, name), self.__dataclass_fields__[name].metadata["choices"])
        if not isinstance(self.fgm_check, bool):
            raise TypeError(f"fgm_check must be True or False ('on'/'off' in older reports), got {self.fgm_check!r}")
        if self.dictionary == "hadamard" and self.d & (self.d - 1):
            raise ValueError(f"dictionary='hadamard' needs d a power of two (e.g. {1 << (self.d.bit_length() - 1)} "
                             f"or {1 << self.d.bit_length()}), got d={self.d}")
        if self.n_train is not None and self.n_train < self.batch:
            raise ValueError(f"n_train must be None (fresh batches) or lie in [batch={self.batch}, inf), "
                             f"got {self.n_train}")
        if self.robust_eval_size > self.eval_size:
            raise ValueError(f"robust_eval_size must lie in [1, eval_size={self.eval_size}], "
                             f"got {self.robust_eval_size}")
        if self.support == "exact" and self.k != int(self.k):
            raise ValueError(f"support='exact' needs an integer k, got k={self.k:g}")
        check_dtype("dtype", self.dtype)
        check_norm(self.norm)
        self.ranks()

    def ranks(self):
        """The ranks of ``lowrank_ranks`` as a tuple of ints (empty when unset), validated."""
        if self.lowrank_ranks is None:
            return ()
        if not isinstance(self.lowrank_ranks, str):
            raise TypeError(f"lowrank_ranks must be None or a string such as '1,2,4,8', "
                            f"got {self.lowrank_ranks!r}")
        high = min(self.m, self.d)
        try:
            ranks = tuple(int(part) for part in self.lowrank_ranks.split(","))
        except ValueError:
            ranks = ()
        if not ranks or any(not 1 <= r <= high for r in ranks) or len(set(ranks)) != len(ranks):
            raise ValueError(f"lowrank_ranks must be None ('none') or distinct comma-separated integers in "
                             f"[1, min(m, d)={high}], got {self.lowrank_ranks!r}")
        return ranks

    def replace(self, **changes):
        """Copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """The config as plain JSON types (pairs as lists); ``Config(**d)`` restores it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def legacy_dict(self):
        """:meth:`to_dict` in the spelling of older reports (unset fields as their old sentinels).

        Phase keys and fingerprints hash this form, so run folders written
        before the sentinels became ``None`` keep their saved phases and names.
        """
        out = self.to_dict()
        for name, old in LEGACY.items():
            if out[name] is None:
                out[name] = old
        out["fgm_check"] = "on" if self.fgm_check else "off"
        return out

    def fingerprint(self):
        """Stable hash of the whole config."""
        return _hash(self.legacy_dict())

    def phase_key(self, phase):
        """Hash of the fields a training phase depends on (``"clean"`` or ``"adversarial"``).

        Evaluation-only fields (:data:`EVAL_FIELDS`) never enter it, and the
        clean phase ignores the adversarial fields (:data:`ADV_FIELDS`), so
        changing them reuses the saved phases.
        """
        check_choice("phase", phase, ("clean", "adversarial"))
        skip = set(EVAL_FIELDS) | set(VARIANT_FIELDS) | (set(ADV_FIELDS) if phase == "clean" else set())
        return _hash({k: v for k, v in self.legacy_dict().items() if k not in skip})


#: Sentinels by which older reports (and ``--lowrank-ranks none``) said "unset": ``{field: sentinel}``;
#: a config given one holds ``None`` instead.
LEGACY = {"sigma0": 0.0, "threshold_end": -1.0, "n_train": 0, "adv_lr": 0.0, "lowrank_ranks": "none"}


def _is_sentinel(value, old):
    if isinstance(old, str):
        return isinstance(value, str) and value.strip().lower() in (old, "")
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == old

#: Fields read only by the evaluation (changing them never retrains).
EVAL_FIELDS = ("eval_size", "robust_eval_size", "pgd_steps", "restarts", "node_budget", "curve_points",
               "baseline_steps", "baseline_lr")
#: Fields choosing the extra adversarial runs (each run is a phase of its own; they never retrain the others).
VARIANT_FIELDS = ("lowrank_ranks", "fgm_check")
#: Fields of the adversarial phase only (changing them keeps the clean phase).
ADV_FIELDS = ("adv_steps", "adv_lr", "attack", "norm", "tau", "attack_steps")
#: Accepted values of each field as ``--help`` shows them: the declared constraints, and the
#: conditions between fields that :meth:`Config.validate` adds.
RANGES = {name: describe_parameter(name) for name in PARAMETER_CONSTRAINTS if name in Config.__dataclass_fields__}
RANGES.update({"k": "[1, d)", "margin": ">= 0, reachable by |<w*, z>|", "n_train": "None or integer >= batch",
               "eval_size": "integer >= robust_eval_size", "robust_eval_size": "[1, eval_size]",
               "magnitude": "0 < LOW <= HIGH", "teacher": "0 < LOW <= HIGH",
               "dictionary": "hadamard needs d a power of two",
               "lowrank_ranks": "none or distinct integers in [1, min(m, d)]"})


def _hash(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


#: Built-in presets: changes to the :class:`Config` defaults.  See ``docs/presets.md``.
_SHARED = dict(d=400, k=16, m=800, magnitude=(1.0, 1.2), margin=1.25, threshold=0.15, batch=256,
               lr=1.0, adv_lr=3.0, attack="pgd", norm="2", tau=0.1, attack_steps=5, fgm_check=True)
PRESETS = {
    # first contact and CI: every phase, about a minute; claims may fail here and say so
    # (one low-rank run, r = 4: a rank-4 update contains every rank <= 4 one; C7 asks for some r <= 4)
    "quick": dict(_SHARED, clean_steps=1000, adv_steps=700, weight_decay=1e-4, eval_size=1000,
                  robust_eval_size=500, baseline_steps=200, lowrank_ranks="4"),
    # the regime of docs/presets.md: C3 certified at tau = 0.4/sqrt(k), under 10 minutes on 2 cores
    "paper": dict(_SHARED, clean_steps=3000, adv_steps=1500, weight_decay=3e-4, eval_size=2000,
                  robust_eval_size=2000, baseline_steps=1000, lowrank_ranks="1,2,4,8"),
    # the headline, C1-C5 with C2 and C3 at one tau = 1.3/sqrt(k) > theta (docs/presets.md): exactly k atoms,
    # gamma = 2.5 (0.2 % of the codes; it steepens both robust-accuracy curves); theta ramped from 0.15 (the
    # clean units grow on one atom: C4) to 0.12 over both phases; m = 6d neurons, so that few atoms are left
    # without one (C3); sigma0 = 0.25/d at d = 800 (a --d override keeps the value): C1
    "headline": dict(_SHARED, d=800, m=4800, margin=2.5, support="exact", threshold=0.15, threshold_end=0.12,
                     ramp_steps=5500, tau=0.325, sigma0=0.25 / 800, weight_decay=1e-3, clean_steps=1500,
                     adv_steps=4000, eval_size=2000, robust_eval_size=1000, baseline_steps=0,
                     lowrank_ranks=None, fgm_check=False),
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
    threshold = Threshold(config.threshold, kind=config.threshold_kind, end=config.threshold_end,
                          ramp_steps=config.ramp_steps)
    net = TwoLayerNet.random(config.m, config.d, sigma0=config.sigma0, threshold=threshold,
                             seed=stream(config.seed, "init"), dtype=config.dtype,
                             activation=config.activation, q=config.q, rho=config.rho)
    return model, net


def eval_set(config, model=None):
    """The held-out set of a config: ``(x, y, z)``, ``config.eval_size`` draws of the ``"eval"`` stream.

    Parameters
    ----------
    config : Config
    model : SparseCodingModel, optional
        The config's data model (default: built from ``config``).

    Returns
    -------
    x : (eval_size, d) ndarray
    y : (eval_size,) ndarray of {-1, +1}
    z : (eval_size, d) ndarray
        The codes.
    """
    model = build(config)[0] if model is None else model
    return model.sample(config.eval_size, stream(config.seed, "eval"))
