"""Parameter checks and random-state handling, in one place.

Every public entry point validates its inputs with these helpers so that bad
input raises a :class:`ValueError` or :class:`TypeError` naming the parameter
and the accepted range, and every random draw flows from one seed.
"""
from __future__ import annotations

import numbers
import os

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)

#: Named, independent random streams derived from one seed (see :func:`stream`).
STREAMS = {"model": 0, "init": 1, "clean": 2, "eval": 3, "attack": 4, "baseline": 5, "adversarial": 6}


def check_int(name, value, low=None, high=None):
    """Return ``value`` as an int, checking ``low <= value <= high``.

    Raises
    ------
    TypeError
        If ``value`` is not an integer (bools are refused).
    ValueError
        If it lies outside the closed range.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    _check_range(name, value, low, high, closed=(True, True))
    return value


def check_float(name, value, low=None, high=None, closed=(True, True)):
    """Return ``value`` as a finite float inside the range ``[low, high]``.

    ``closed`` says whether each end of the range is included.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    _check_range(name, value, low, high, closed)
    return value


def _check_range(name, value, low, high, closed):
    lo_ok = low is None or (value >= low if closed[0] else value > low)
    hi_ok = high is None or (value <= high if closed[1] else value < high)
    if not (lo_ok and hi_ok):
        left = "-inf" if low is None else f"{low}"
        right = "inf" if high is None else f"{high}"
        bracket = ("[" if closed[0] and low is not None else "(") + left + ", " + right
        bracket += "]" if closed[1] and high is not None else ")"
        raise ValueError(f"{name} must lie in {bracket}, got {value}")


def check_pair(name, pair, low):
    """Return ``(a, b)`` with ``low < a <= b``, both finite."""
    try:
        a, b = pair
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a pair (low, high), got {pair!r}") from err
    a = check_float(f"{name}[0]", a, low, closed=(False, True))
    b = check_float(f"{name}[1]", b, a)
    return (a, b)


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise ValueError."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_dtype(name, dtype):
    """Return ``dtype`` as a numpy float dtype (float32 or float64)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from err
    if dtype.type not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dtype}")
    return dtype


def check_array(name, array, ndim, dtype=None, shape=None):
    """Validate a floating array and return it C-contiguous in ``dtype``.

    Parameters
    ----------
    name : str
        Parameter name used in error messages.
    array : array_like
        Input; must be real floating point (or integer, which is converted).
    ndim : int
        Required number of dimensions.
    dtype : numpy dtype, optional
        Target dtype; the input's own float dtype if omitted.
    shape : tuple, optional
        Required shape; ``None`` entries match any length.
    """
    arr = np.asarray(array)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.float16:
        raise TypeError(f"{name} must be a real float32/float64 array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if shape is not None:
        for axis, (want, got) in enumerate(zip(shape, arr.shape)):
            if want is not None and want != got:
                raise ValueError(
                    f"{name} must have shape {tuple('*' if s is None else s for s in shape)}, "
                    f"got {arr.shape} (axis {axis} differs)")
    if dtype is None:
        dtype = arr.dtype if arr.dtype.kind == "f" else np.float64
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def check_labels(name, y, n):
    """Validate labels: shape ``(n,)`` with every entry in {-1, +1}."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {y.shape}")
    if not np.isin(y, (-1, 1)).all():
        raise ValueError(f"{name} must contain only -1 and +1")
    return y


def check_norm(norm):
    """Normalise an attack norm: ``2``/``"2"``/``"l2"`` -> ``2``; ``"inf"``/``np.inf`` -> ``inf``."""
    if isinstance(norm, str):
        key = norm.lower().lstrip("l")
        if key in ("2",):
            return 2
        if key in ("inf", "infinity"):
            return np.inf
    elif isinstance(norm, numbers.Real) and not isinstance(norm, bool):
        if norm == 2:
            return 2
        if norm == np.inf:
            return np.inf
    raise ValueError(f"norm must be 2 or 'inf' (numpy.inf), got {norm!r}")


def check_random_state(seed):
    """Turn ``seed`` into a :class:`numpy.random.Generator`.

    An existing Generator is returned as it is (draws advance its state); an
    int or :class:`numpy.random.SeedSequence` seeds a new PCG64 generator.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise TypeError(f"seed must be a non-negative int, a SeedSequence or a numpy Generator, got {seed!r}")


def stream(seed, name):
    """Independent generator for the named purpose, derived from one ``seed``.

    ``stream(seed, "data")`` and ``stream(seed, "init")`` never share draws, and
    the same ``(seed, name)`` always gives the same numbers.
    """
    seed = check_int("seed", seed, 0)
    key = check_choice("stream", name, STREAMS)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAMS[key],)))


def available_memory():
    """Bytes of memory available to a new allocation (``MemAvailable``), or ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n):
    """``n`` bytes as a short GiB string."""
    return f"{n / 2**30:.3g} GiB"


def check_allocation(what, nbytes, available=None):
    """Raise ValueError naming ``what`` when ``nbytes`` exceed the available memory (checked before allocating).

    Parameters
    ----------
    what : str
        What is being allocated, with its sizes (``"W (m=1000000, d=100000, float32)"``).
    nbytes : int
    available : int, optional
        Bytes available (default :func:`available_memory`; no check when unknown).
    """
    available = available_memory() if available is None else available
    if available is not None and nbytes > available:
        raise ValueError(f"{what} needs {gib(nbytes)} of memory but only {gib(available)} is available; "
                         "reduce the sizes")


# --- parameter constraints, declared once ---------------------------------------------------------
class Interval:
    """A numeric range: ``Interval(int, 1, None)`` is an integer in ``[1, inf)``.

    Parameters
    ----------
    kind : {int, float}
    low, high : float or None
        Ends of the range (``None``: unbounded).
    closed : {"both", "left", "right", "neither"}, default "both"
        Which ends belong to the range.
    """

    def __init__(self, kind, low=None, high=None, closed="both"):
        self.kind, self.low, self.high = kind, low, high
        self.closed = (closed in ("both", "left"), closed in ("both", "right"))

    def check(self, name, value):
        if self.kind is int:
            return check_int(name, value, self.low, self.high)
        return check_float(name, value, self.low, self.high, closed=self.closed)

    def describe(self):
        """Short text of the range, as ``--help`` shows it (``"integer >= 1"``, ``"> 0"``, ``"[1, 4]"``)."""
        prefix = "integer " if self.kind is int else ""
        if self.high is None:
            return f"{prefix}{'>=' if self.closed[0] else '>'} {self.low:g}"
        left = "[" if self.closed[0] else "("
        right = "]" if self.closed[1] else ")"
        return f"{prefix}{left}{self.low:g}, {self.high:g}{right}"


class Options:
    """One of a fixed set of values."""

    def __init__(self, *choices):
        self.choices = tuple(choices)

    def check(self, name, value):
        return check_choice(name, value, self.choices)

    def describe(self):
        return "one of " + ", ".join(map(str, self.choices))


def validate_parameter(name, value, constraints=None):
    """Check ``value`` against its declared constraints and return it (as int/float where numeric).

    Parameters
    ----------
    name : str
        The parameter; its constraints are ``PARAMETER_CONSTRAINTS[name]`` unless given.
    value : object
    constraints : list, optional
        :class:`Interval` / :class:`Options` entries, or ``None`` (``None`` is then accepted:
        the parameter's "not set" value).  The first entry decides the error message.
    """
    constraints = PARAMETER_CONSTRAINTS[name] if constraints is None else constraints
    if value is None:
        if None in constraints:
            return None
        raise TypeError(f"{name} must not be None ({describe_parameter(name, constraints)})")
    checks = [c for c in constraints if c is not None]
    return checks[0].check(name, value)


def describe_parameter(name, constraints=None):
    """Text of a parameter's accepted values (``"None or > 0"``), from its declared constraints."""
    constraints = PARAMETER_CONSTRAINTS[name] if constraints is None else constraints
    return " or ".join("None" if c is None else c.describe() for c in constraints)


#: The accepted values of every parameter shared by :class:`fpsim.config.Config`, the command line
#: and the training functions, declared once (as scikit-learn's ``_parameter_constraints``).  ``None``
#: in a list means the parameter may be left unset (the default rule named in its help text applies).
#: Conditions between parameters (``k < d``, ``n_train >= batch``, ...) are
#: :meth:`fpsim.config.Config.validate`'s.
PARAMETER_CONSTRAINTS = {
    "d": [Interval(int, 2)],
    "k": [Interval(float, 1)],
    "noise": [Interval(float, 0)],
    "margin": [Interval(float, 0)],
    "m": [Interval(int, 1)],
    "sigma0": [None, Interval(float, 0, closed="right")],
    "threshold": [Interval(float, 0)],
    "threshold_end": [None, Interval(float, 0)],
    "ramp_steps": [Interval(int, 0)],
    "q": [Interval(float, 2)],
    "rho": [Interval(float, 0, closed="right")],
    "clean_steps": [Interval(int, 1)],
    "steps": [Interval(int, 1)],
    "batch": [Interval(int, 1)],
    "lr": [Interval(float, 0, closed="right")],
    "weight_decay": [Interval(float, 0)],
    "n_train": [None, Interval(int, 1)],
    "adv_steps": [Interval(int, 0)],
    "adv_lr": [None, Interval(float, 0, closed="right")],
    "attack": [Options("pgd", "fgm")],
    "tau": [Interval(float, 0, closed="right")],
    "attack_steps": [Interval(int, 1)],
    "attack_step_size": [None, Interval(float, 0, closed="right")],
    "eval_size": [Interval(int, 1)],
    "robust_eval_size": [Interval(int, 1)],
    "pgd_steps": [Interval(int, 1)],
    "restarts": [Interval(int, 1)],
    "node_budget": [None, Interval(int, 1)],
    "curve_points": [Interval(int, 1)],
    "baseline_steps": [Interval(int, 0)],
    "baseline_lr": [Interval(float, 0, closed="right")],
    "seed": [Interval(int, 0)],
}
