r"""Hypothesis strategies for fpsim's objects: property-based tests of bounds.

Needs the ``test`` extra (``pip install "fpsim[test]"``, which brings
`hypothesis <https://hypothesis.readthedocs.io>`_).  Every strategy

* draws all of its randomness through hypothesis -- small arrays are drawn
  entry by entry, larger ones from an integer seed drawn with
  ``st.integers`` and passed to fpsim's seeded constructors -- so a failing
  example is reproduced from hypothesis' seed and database, never from hidden
  global state;
* shrinks towards small, readable examples: fewer units and dimensions,
  seed 0, the ``identity`` dictionary, the ReLU, ``float64``, radius 0,
  entries 0 and 1.

Every parameter of a strategy accepts either a fixed value or a strategy for
it (``d=5`` or ``d=st.integers(2, 5)``); ``None`` means "draw it over the
whole valid range", bounded by the ``max_*`` arguments.

Strategies
----------
:func:`seeds`, :func:`norms`
    Integer seeds; the norms ``2`` and ``inf``.
:func:`sparse_coding_models`
    :class:`~fpsim.data.SparseCodingModel` over every option of MODEL.md §2.
:func:`nets`, :func:`near_ideal_nets`, :func:`trained_nets`
    :class:`~fpsim.network.TwoLayerNet`: random; one atom per unit plus a
    dense mixture of a given size; trained for a few SGD steps.
:func:`batches`, :func:`gaussian_batches`
    Samples ``(x, y, z)`` of a model; Gaussian inputs with random labels.
:func:`radii`
    :math:`\tau` below or above the threshold radius (:func:`threshold_radius`).
:func:`problems`
    A :class:`Problem` ``(net, x, y, norm, tau)``: the argument list of a bound.
:func:`configs`, :func:`invalid_configs`
    Valid :class:`~fpsim.experiment.Config` objects; invalid field changes
    with the name of the field that is wrong.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

try:
    from hypothesis import strategies as st
    from hypothesis.strategies import SearchStrategy
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("fpsim.strategies needs hypothesis, which comes with the 'test' extra: "
                      "pip install \"fpsim[test]\"") from err

from .data import DICTIONARIES, SUPPORTS, SparseCodingModel
from .network import ACTIVATIONS, THRESHOLD_KINDS, Threshold, TwoLayerNet

__all__ = ["Problem", "batches", "configs", "gaussian_batches", "invalid_configs", "near_ideal_nets",
           "nets", "norms", "problems", "radii", "seeds", "sparse_coding_models", "threshold_radius",
           "trained_nets"]

#: Arrays with at most this many entries are drawn entry by entry (readable when shrunk);
#: larger ones come from a drawn seed.
DRAWN_ENTRIES = 64

FLOAT_DTYPES = (np.float64, np.float32)


def _strategy(value, default):
    """``value`` as a strategy: itself if it is one, ``default`` if None, else ``st.just(value)``."""
    if value is None:
        return default
    if isinstance(value, SearchStrategy):
        return value
    return st.just(value)


#: Drawn numbers smaller than this in magnitude are set to 0.  Squares of weights below
#: ~1e-154 underflow, and fpsim's bounds are not written for that regime (found by these
#: strategies: the "gram" bound, from W W^T, certified a broken example at |w| = 1e-186),
#: nor is the MILP's solver, whose tolerances are absolute.
TINY = 1e-6


# Strategies are built once and cached: building one inside a composite on every draw
# dominates the cost of generating and shrinking examples.
@functools.lru_cache(maxsize=None)
def _floats(low, high):
    """Finite floats in ``[low, high]``; when 0 is in the range, magnitudes below :data:`TINY` become 0."""
    floats = st.floats(float(low), float(high), allow_nan=False, allow_infinity=False, allow_subnormal=False)
    if low <= 0 <= high:
        return floats.map(lambda v: 0.0 if abs(v) < TINY else v)
    return floats


@functools.lru_cache(maxsize=None)
def _integers(low, high):
    return st.integers(int(low), int(high))


@functools.lru_cache(maxsize=None)
def _sampled(choices):
    return st.sampled_from(choices)


_SIGNS = st.sampled_from([1, -1])
_BOOLEANS = st.booleans()
_MARGIN_FRACTION = st.one_of(st.just(0.0), _floats(0.0, 0.5))
_NOISE = st.one_of(st.just(0.0), _floats(0.0, 1.0))


def seeds(max_value=2**16):
    """Integer seeds in ``[0, max_value]`` (shrink to 0)."""
    return _integers(0, max_value)


def norms():
    """The perturbation norms ``2`` and ``numpy.inf`` (shrinks to 2)."""
    return st.sampled_from([2, np.inf])


def _matrix(draw, rows, d, elements):
    """A float64 ``(n, d)`` array with ``rows = (low, high)`` bounding ``n``.

    Drawn row by row, entry by entry from ``elements`` when ``high * d <=``
    :data:`DRAWN_ENTRIES` (hypothesis deletes rows and zeroes entries when it
    shrinks); larger arrays are N(0, 1) from a drawn seed.
    """
    low, high = rows
    if high * d <= DRAWN_ENTRIES:
        values = draw(st.lists(st.lists(elements, min_size=d, max_size=d), min_size=low, max_size=high))
        return np.array(values, dtype=np.float64).reshape(len(values), d)
    n = draw(_integers(low, high))
    return np.random.default_rng(draw(seeds())).standard_normal((n, d))


def _sizes(value, low, high):
    """``(low, high)`` row-count range for a size that is a value, a strategy or None."""
    if value is None:
        return low, high
    return value, value


# -- data ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _pairs(low, high, width):
    """Pairs ``(a, b)`` with ``low <= a <= high`` and ``a <= b <= a + width``."""
    return st.tuples(_floats(low, high), _floats(0.0, width)).map(lambda p: (p[0], p[0] + p[1]))


@st.composite
def sparse_coding_models(draw, d=None, k=None, dictionary=None, noise=None, magnitude=None,
                         teacher=None, margin=None, support=None, seed=None, dtype=None, max_d=16, **extra):
    r"""A :class:`~fpsim.data.SparseCodingModel` over every option of MODEL.md §2.

    Parameters
    ----------
    d : int or strategy, optional
        Dimension, default ``2..max_d``; with ``dictionary="hadamard"`` it is
        rounded down to a power of two.
    k : float or strategy, optional
        Expected sparsity, default uniform in ``[1, d)``.
    dictionary : str or strategy, optional
        Default: one of ``identity`` (shrinks to it), ``random``, ``hadamard``.
    noise : float or strategy, optional
        :math:`\sigma_\xi`, default 0 or in ``[0, 1]``.
    magnitude, teacher : (float, float) or strategy, optional
        Ranges of ``U`` and of :math:`|w^*_j|`.
    margin : float or strategy, optional
        Label margin :math:`\gamma`; by default 0 or a fraction up to 1/2 of the
        smallest one-atom score :math:`\min|w^*_j| \cdot \min(a/\sqrt k, 1)`, so
        that it stays reachable.
    support : str or strategy, optional
        ``bernoulli`` (shrinks to it) or ``exact``; with ``exact`` an integer
        ``k`` is drawn (unless ``k`` is given).
    seed : int or strategy, optional
    dtype : numpy dtype or strategy, optional
        Default ``float64`` or ``float32``.
    max_d : int, default 16
    **extra
        Further constructor options (values or strategies).

    Returns
    -------
    strategy of SparseCodingModel
    """
    kind = draw(_strategy(dictionary, _sampled(DICTIONARIES)))
    d = draw(_strategy(d, _integers(2, max(2, max_d))))
    if kind == "hadamard":
        d = 2 ** int(np.floor(np.log2(d)))
    law = draw(_strategy(support, _sampled(SUPPORTS)))
    whole_k = _integers(1, d - 1).map(float) if law == "exact" else _floats(1.0, np.nextafter(float(d), 0.0))
    k = draw(_strategy(k, whole_k))
    if law == "exact" and k != int(k) and support is None:
        law = "bernoulli"                     # a given fractional k has no exact-support law
    noise = draw(_strategy(noise, _NOISE))
    magnitude = draw(_strategy(magnitude, _pairs(0.5, 2.0, 1.0)))
    teacher = draw(_strategy(teacher, _pairs(0.1, 1.0, 1.0)))
    if margin is None:
        margin = draw(_MARGIN_FRACTION) * teacher[0] * min(magnitude[0] / np.sqrt(k), 1.0)
    else:
        margin = draw(_strategy(margin, None))
    options = {name: draw(_strategy(value, None)) for name, value in extra.items()}
    return SparseCodingModel(d, k, dictionary=kind, noise=noise, magnitude=magnitude, teacher=teacher,
                             margin=margin, support=law, seed=draw(_strategy(seed, seeds())),
                             dtype=draw(_strategy(dtype, _sampled(FLOAT_DTYPES))), **options)


@st.composite
def batches(draw, model, n=None, max_n=8):
    """Samples ``(x, y, z)`` of ``model`` (a model or a strategy of models), from a drawn seed.

    ``n`` defaults to ``1..max_n``.  Returns a strategy of ``(x, y, z)`` with
    shapes ``(n, d)``, ``(n,)``, ``(n, d)``.
    """
    model = draw(_strategy(model, None))
    n = draw(_strategy(n, _integers(1, max_n)))
    return model.sample(n, np.random.default_rng(draw(seeds())))


@st.composite
def gaussian_batches(draw, d, n=None, max_n=8, scale=1.0, dtype=np.float64):
    r"""Inputs and labels not tied to a model: ``x`` with N(0, scale²)-like entries, labels ±1.

    Small batches are drawn entry by entry (entries in ``[-3 scale, 3 scale]``,
    0 or at least :data:`TINY` in magnitude, shrinking to 0), larger ones from a
    drawn seed.  Returns ``(x, y)``,
    shapes ``(n, d)`` and ``(n,)``.
    """
    d = draw(_strategy(d, None))
    if isinstance(n, SearchStrategy):
        n = draw(n)
    x = scale * _matrix(draw, _sizes(n, 1, max_n), d, _floats(-3.0, 3.0))
    n = x.shape[0]
    y = np.array(draw(st.lists(_SIGNS, min_size=n, max_size=n)), dtype=np.int8)
    return x.astype(draw(_strategy(dtype, None))), y


# -- networks ------------------------------------------------------------------------------
@st.composite
def _activations(draw, activation):
    name = draw(_strategy(activation, _sampled(ACTIVATIONS)))
    if name == "relu":
        return dict(activation="relu")
    return dict(activation="smooth", q=draw(_floats(2.0, 4.0)), rho=draw(_floats(0.05, 1.0)))


@st.composite
def nets(draw, m=None, d=None, threshold=None, threshold_kind=None, activation=None, dtype=None,
         shared=None, max_m=6, max_d=4, max_threshold=1.0):
    r"""Random :class:`~fpsim.network.TwoLayerNet`: rows of any scale, optionally a shared direction.

    .. math::

        w_i = g_i + 1\{i < m/2\}\, s \qquad (s \text{ a shared direction, when } ``shared``)

    The shared direction makes half of the units move together under one
    perturbation, like the dense mixture of a clean-trained net: the case
    that separates joint bounds from per-unit ones.  With ``m d <= 64`` the
    entries of :math:`g_i` (in ``[-2, 2]``, 0 or at least :data:`TINY` in
    magnitude) and :math:`s` are drawn by hypothesis and shrink to 0 and 1;
    larger nets are Gaussian from a drawn seed.

    Parameters
    ----------
    m, d : int or strategy, optional
        Defaults ``1..max_m`` and ``1..max_d``.
    threshold : float or strategy, optional
        :math:`\theta`, default in ``[0, max_threshold]``.
    threshold_kind : {"relative", "absolute"} or strategy, optional
    activation : {"relu", "smooth"} or strategy, optional
        The smoothed ReLU gets ``q`` in ``[2, 4]`` and ``rho`` in ``[0.05, 1]``.
    dtype : numpy dtype or strategy, optional
        Default ``float64`` or ``float32``.
    shared : bool or strategy, optional
        Add a shared direction to the first ``m // 2`` rows (default: drawn).

    Returns
    -------
    strategy of TwoLayerNet
    """
    d = draw(_strategy(d, _integers(1, max_d)))
    if isinstance(m, SearchStrategy):
        m = draw(m)
    W = _matrix(draw, _sizes(m, 1, max_m), d, _floats(-2.0, 2.0))
    m = W.shape[0]
    if m > 1 and draw(_strategy(shared, _BOOLEANS)):
        W[: m // 2] += _matrix(draw, (1, 1), d, _floats(-2.0, 2.0))
    kind = draw(_strategy(threshold_kind, _sampled(THRESHOLD_KINDS)))
    theta = draw(_strategy(threshold, _floats(0.0, max_threshold)))
    dtype = draw(_strategy(dtype, _sampled(FLOAT_DTYPES)))
    return TwoLayerNet(W.astype(dtype), threshold=Threshold(theta, kind=kind), **draw(_activations(activation)))


@st.composite
def near_ideal_nets(draw, model, dense, m=None, threshold=None, scale=None, activation="relu",
                    max_m=8):
    r"""Nets near the ideal purified one: one atom per unit plus a dense mixture of size ``dense``.

    In the dictionary basis (:math:`a_i = M^\top w_i`), unit :math:`i` sits on
    atom :math:`j_i` with the teacher's sign, plus a dense mixture along the
    rest of the teacher:

    .. math::

        a_i = \alpha_i \Big( \operatorname{sign}(w^*_{j_i})\, e_{j_i}
              + \rho\, \frac{w^*_{-j_i}}{\|w^*_{-j_i}\|} \Big),

    with :math:`w^*_{-j}` the teacher with coordinate :math:`j` set to 0 and
    :math:`\rho` = ``dense``.  So the dense share of the norm (as
    :func:`fpsim.metrics.dictionary_view` measures it) is
    :math:`\rho/\sqrt{1+\rho^2}` for :math:`\rho < 1`, and the mixture is aligned
    with :math:`M w^*`: MODEL.md C5's picture of a clean-trained neuron.

    Parameters
    ----------
    model : SparseCodingModel or strategy
    dense : float or strategy
        :math:`\rho \ge 0`.
    m : int or strategy, optional
        Units, default ``1..max_m``; atoms :math:`j_i` are drawn (repeats allowed).
    threshold : float or strategy, optional
        Relative :math:`\theta`, default in ``[0.3, 0.7]/\sqrt k`` (MODEL.md §3).
    scale : float or strategy, optional
        :math:`\alpha_i`, drawn per unit in ``[0.5, 2]`` by default.
    activation : str or strategy, default "relu"

    Returns
    -------
    strategy of TwoLayerNet
    """
    model = draw(_strategy(model, None))
    rho = draw(_strategy(dense, None))
    if rho < 0:
        raise ValueError(f"dense must be >= 0, got {rho}")
    m = draw(_strategy(m, _integers(1, max_m)))
    theta = draw(_floats(0.3, 0.7)) / np.sqrt(model.k) if threshold is None else draw(_strategy(threshold, None))
    atoms = draw(st.lists(_integers(0, model.d - 1), min_size=m, max_size=m))
    alphas = [draw(_strategy(scale, _floats(0.5, 2.0))) for _ in range(m)]
    A = np.zeros((m, model.d))
    for i, (j, alpha) in enumerate(zip(atoms, alphas)):
        rest = model.w_star.copy()
        rest[j] = 0.0
        length = np.linalg.norm(rest)
        A[i] = rho * rest / length if length > 0 else 0.0
        A[i, j] = np.sign(model.w_star[j]) or 1.0
        A[i] *= alpha
    W = A @ model.dictionary.T
    return TwoLayerNet(W.astype(model.dtype), threshold=theta, **draw(_activations(activation)))


@st.composite
def trained_nets(draw, model, m=None, steps=None, threshold=None, lr=None, batch=8, max_m=8,
                 max_steps=5):
    r"""Nets trained cleanly for a few SGD steps from a seeded random initialisation.

    :math:`w_i^0 \sim \mathcal N(0, \sigma_0^2 I)` with :math:`\sigma_0 = 1/\sqrt d`
    (seed drawn), then ``steps`` (default ``1..max_steps``) steps of
    :func:`fpsim.train.train_clean` on ``model`` with batches of ``batch``
    (seed drawn).  ``lr`` defaults to ``[0.05, 1]``, ``threshold`` (relative)
    to ``[0, 0.7/sqrt(k)]``.

    Returns
    -------
    strategy of TwoLayerNet
    """
    from .train import train_clean  # train sits above network in the import order

    model = draw(_strategy(model, None))
    m = draw(_strategy(m, _integers(1, max_m)))
    theta = draw(_strategy(threshold, _floats(0.0, 0.7 / np.sqrt(model.k))))
    net = TwoLayerNet.random(m, model.d, sigma0=1.0 / np.sqrt(model.d), threshold=theta,
                             seed=draw(seeds()), dtype=model.dtype)
    steps = draw(_strategy(steps, _integers(1, max_steps)))
    lr = draw(_strategy(lr, _floats(0.05, 1.0)))
    trained, _ = train_clean(net, model, steps, batch, lr, seed=draw(seeds()), eval_size=4)
    return trained


# -- radii and problems --------------------------------------------------------------------
def threshold_radius(net, norm):
    r"""Smallest radius at which a unit that sits at :math:`u_i = 0` can switch on.

    .. math::

        \tau_\theta = \min_i b_i / \|w_i\|_q \qquad (q \text{ the dual norm of } p)

    For the relative threshold and :math:`\ell_2` this is :math:`\theta`.  Below
    it no unit far from its threshold can be switched on, above it every unit
    can be (MODEL.md §5, "beyond the threshold").  Rows of zeros are ignored;
    ``inf`` if there are no others.
    """
    from ._validation import check_norm

    W = net.W.astype(np.float64)
    dual = np.linalg.norm(W, ord=1 if check_norm(norm) == np.inf else 2, axis=1)
    bias = net.bias().astype(np.float64)
    live = dual > 0
    return float(np.min(bias[live] / dual[live])) if live.any() else np.inf


@st.composite
def radii(draw, net, norm, side=None, max_factor=3.0):
    r"""Radii :math:`\tau` below or above :func:`threshold_radius` ``(net, norm)``.

    Parameters
    ----------
    net : TwoLayerNet or strategy
    norm : {2, inf} or strategy
    side : {"below", "above"} or strategy, optional
        ``below``: :math:`\tau \in [0, \tau_\theta)` (shrinks to 0); ``above``:
        :math:`\tau \in [\tau_\theta, \text{max\_factor}\,\tau_\theta]`.  Default: either.
        With :math:`\tau_\theta = 0` (no threshold) ``below`` gives 0 and
        ``above`` a radius in ``[0, 1]`` (0 or at least :data:`TINY`).
    """
    net = draw(_strategy(net, None))
    critical = threshold_radius(net, draw(_strategy(norm, None)))
    side = draw(_strategy(side, _sampled(("below", "above"))))
    if side not in ("below", "above"):
        raise ValueError(f"side must be one of ['above', 'below'], got {side!r}")
    if not np.isfinite(critical):
        critical = 1.0
    if side == "below":
        return 0.0 if critical == 0 else draw(_floats(0.0, np.nextafter(critical, 0.0)))
    if critical == 0:
        return draw(_floats(0.0, 1.0))
    return draw(_floats(critical, max_factor * critical))


def _show(array):
    return np.array2string(np.asarray(array), precision=4, separator=", ", max_line_width=10**6,
                           threshold=10**6).replace("\n", "")


@dataclasses.dataclass(frozen=True, repr=False)
class Problem:
    """One bound evaluation: ``bound_fn(*problem)`` = ``bound_fn(net, x, y, norm, tau)``.

    Its repr shows the weights, threshold, inputs and labels, so a shrunk
    failing example can be rebuilt from hypothesis' output.
    """

    net: TwoLayerNet
    x: np.ndarray
    y: np.ndarray
    norm: float
    tau: float

    def __iter__(self):
        return iter((self.net, self.x, self.y, self.norm, self.tau))

    def _repr_pretty_(self, printer, cycle):  # hypothesis' failing-example report uses this
        printer.text(repr(self))

    def __repr__(self):
        net = self.net
        act = "" if net.activation == "relu" else f", activation='smooth', q={net.q:g}, rho={net.rho:g}"
        return (f"Problem(net=TwoLayerNet(W={_show(net.W)}, threshold={net.threshold!r}{act}, "
                f"dtype={net.dtype}), x={_show(self.x)}, y={_show(self.y)}, norm={self.norm}, "
                f"tau={self.tau!r})")


@st.composite
def problems(draw, net=None, model=None, n=None, norm=None, tau=None, max_n=6):
    r"""A :class:`Problem` ``(net, x, y, norm, tau)``: what a bound is evaluated on.

    Parameters
    ----------
    net : TwoLayerNet or strategy, optional
        Default :func:`nets` (``d`` matches ``model`` when one is given).
    model : SparseCodingModel or strategy, optional
        Inputs are :func:`batches` of the model; without one,
        :func:`gaussian_batches`.
    n : int or strategy, optional
        Batch size, default ``1..max_n``.
    norm : {2, inf} or strategy, optional
        Default :func:`norms`.
    tau : float or strategy, optional
        Default :func:`radii` of the drawn net, either side of the threshold.
    """
    model = None if model is None else draw(_strategy(model, None))
    if net is None:
        net = nets(d=None if model is None else model.d)
    net = draw(_strategy(net, None))
    if model is not None:
        x, y, _ = draw(batches(model, n=n, max_n=max_n))
    else:
        x, y = draw(gaussian_batches(net.d, n=n, max_n=max_n))
    norm = draw(_strategy(norm, norms()))
    tau = draw(_strategy(tau, radii(net, norm)))
    return Problem(net, np.ascontiguousarray(x, dtype=net.dtype), y, norm, float(tau))


# -- configs -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _config_fields(max_m):
    """Strategies of the Config fields that do not depend on the data model."""
    maybe = lambda value, strategy: st.one_of(st.just(value), strategy)  # noqa: E731
    return dict(
        m=_integers(1, max_m), sigma0=maybe(0.0, _floats(0.01, 1.0)), threshold=_floats(0.0, 1.0),
        threshold_end=maybe(-1.0, _floats(0.0, 1.0)), ramp_steps=_integers(0, 3),
        threshold_kind=_sampled(THRESHOLD_KINDS), activation=_sampled(ACTIVATIONS), q=_floats(2.0, 4.0),
        rho=_floats(0.01, 1.0), clean_steps=_integers(1, 3), batch=_integers(1, 16), lr=_floats(0.01, 1.0),
        weight_decay=maybe(0.0, _floats(0.0, 0.1)), n_train=maybe(0, _integers(16, 48)),  # >= every drawn batch
        adv_steps=_integers(0, 3), adv_lr=maybe(0.0, _floats(0.01, 1.0)), attack=_sampled(("pgd", "fgm")),
        norm=_sampled(("2", "inf")), tau=_floats(1e-3, 1.0), attack_steps=_integers(1, 3),
        pgd_steps=_integers(1, 3), restarts=_integers(1, 2), curve_points=_integers(1, 3),
        baseline_steps=_integers(0, 3), baseline_lr=_floats(0.01, 1.0))


@st.composite
def configs(draw, max_d=16, max_m=8, **fields):
    """Valid :class:`~fpsim.experiment.Config` objects of small, fast experiments.

    Draws the data, network, training and evaluation fields over their valid
    ranges (sizes bounded by ``max_d`` and ``max_m``, step counts by 3);
    ``**fields`` fixes fields (values or strategies).  Fields not drawn keep
    their defaults.  Every drawn config builds (:func:`fpsim.experiment.build`).
    """
    from .config import Config

    model = draw(sparse_coding_models(max_d=max_d, dtype=_sampled(("float32", "float64"))))
    eval_size = draw(_integers(1, 16))
    drawn = dict(
        d=model.d, k=model.k, dictionary=model.dictionary_kind, noise=model.noise,
        magnitude=model.magnitude, teacher=model.teacher, margin=model.margin, support=model.support,
        seed=model.seed,
        dtype=np.dtype(model.dtype).name, eval_size=eval_size,
        robust_eval_size=_integers(1, eval_size), **_config_fields(max_m))
    drawn.update(fields)
    known = {f.name for f in dataclasses.fields(Config)}
    return Config(**{name: draw(_strategy(value, None)) for name, value in drawn.items() if name in known})


#: Invalid values per field: (field, wrong value) pairs; the error must name the field.
_INVALID = (
    ("d", 1), ("d", 2.5), ("k", 0.5), ("dictionary", "fourier"), ("noise", -0.1),
    ("magnitude", (2.0, 1.0)), ("magnitude", (0.0, 1.0)), ("teacher", (1.0,)), ("margin", -1.0),
    ("m", 0), ("sigma0", -1.0), ("threshold", -0.1), ("threshold", float("nan")),
    ("threshold_end", -0.5), ("ramp_steps", -1), ("threshold_kind", "quantile"),
    ("activation", "tanh"), ("q", 1.5), ("rho", 0.0), ("dtype", "float16"), ("clean_steps", 0),
    ("batch", 0), ("lr", 0.0), ("weight_decay", -1e-3), ("n_train", -1), ("adv_steps", -1),
    ("adv_lr", -1.0), ("attack", "cw"), ("norm", "1"), ("tau", -0.25), ("tau", float("inf")),
    ("attack_steps", 0), ("tau", 0.0), ("support", "poisson"), ("eval_size", 0), ("pgd_steps", 0), ("restarts", 0), ("curve_points", 0),
    ("baseline_steps", -1), ("baseline_lr", 0.0), ("seed", -1), ("seed", True),
)


@st.composite
def invalid_configs(draw):
    """Invalid Config changes, with the name of the field that is wrong.

    Returns a strategy of ``(changes, field)``: ``Config(**changes)`` raises
    ValueError or TypeError whose message names ``field`` (``k=30`` with
    ``d=20``, ``robust_eval_size > eval_size``, ``magnitude=(2, 1)``, a
    string choice that is not offered, a negative count, NaN, ...).
    """
    from .config import Config

    known = {f.name for f in dataclasses.fields(Config)}
    cases = [case for case in _INVALID if case[0] in known]
    field, value = draw(_sampled(tuple(cases) + (("k", "k >= d"), ("robust_eval_size", "> eval_size"))))
    if field == "k" and isinstance(value, str):
        d = draw(_integers(2, 16))
        return {"d": d, "k": float(draw(_integers(d, 2 * d)))}, "k"
    if field == "robust_eval_size":
        size = draw(_integers(1, 16))
        return {"eval_size": size, "robust_eval_size": size + draw(_integers(1, 4))}, field
    return {field: value}, field

