"""Thread counts, set in one place.

Default thread count (:func:`default_threads`), first match wins:

1. ``FPSIM_THREADS`` (a positive integer) in the environment;
2. ``OMP_NUM_THREADS`` in the environment (what schedulers and batch systems set);
3. the cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count()``
   where that does not exist), divided by ``workers`` -- the number of fpsim
   processes sharing them -- and at least 1.

So a process started with ``taskset -c 0`` uses one thread, and a sweep that
runs ``w`` worker processes gives each ``cores // w`` threads instead of
letting every worker start an all-core BLAS pool (which spin-waits as soon as
the pools outnumber the cores).  The choice never reads the machine's load:
the same command on the same machine always uses the same thread count (BLAS
results depend on it in the last bits, see below).
``--threads`` on the command line overrides all of this.

Two thread pools take turns in every training step: OpenBLAS's (the dense
products) and numba's (the element-wise and sparse kernels, on GNU OpenMP).
By default OpenMP's idle threads spin for a while after each parallel loop,
on the cores the next BLAS call needs: with 2 threads each on 2 cores the
adversarial step took 182 ms instead of 101 ms at d = 1000, m = 4000, and
44 ms instead of 15 ms at d = 400 (``benchmarks/README.md``).  So importing
fpsim sets ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep) unless the
environment already sets it; GNU OpenMP reads it when numba first starts its
pool, which is after this import unless a numba parallel kernel ran before.
It applies to every GNU OpenMP library loaded later in the process (torch's
too); numba's parallel kernels themselves lost nothing measurable (100 ms
with 2 numba and 2 BLAS threads, 102 ms with 1 numba thread).

numba kernels split their work by output row (no reduction is shared between
threads), so their results do not depend on the numba thread count
(``tests/test_kernels.py`` checks bit-identical runs with 1 and 2 threads).
OpenBLAS's own ``sgemm``/``dgemm`` is *not* bit-reproducible across its thread
counts (its single-threaded kernels round differently): runs with different
BLAS thread counts agree to float rounding, not bit for bit.
"""
from __future__ import annotations

import contextlib
import os

import numba
from threadpoolctl import threadpool_limits

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def available_cores():
    """Cores this process may run on (its CPU affinity mask; ``os.cpu_count()`` if unknown)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def default_threads(workers=1):
    """Thread count for BLAS and numba when none is given (see the module docstring).

    Parameters
    ----------
    workers : int, default 1
        fpsim processes that will share this process's cores (``>= 1``).

    Returns
    -------
    threads : int
        ``>= 1``.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer in [1, inf), got {workers!r}")
    for name in ("FPSIM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                threads = int(value)
            except ValueError:
                threads = 0
            if threads < 1:
                raise ValueError(f"environment variable {name} must be a positive integer, got {value!r}")
            return threads
    return max(available_cores() // workers, 1)


@contextlib.contextmanager
def thread_limit(threads):
    """Limit BLAS and numba to ``threads`` threads inside the block (``None``: :func:`default_threads`)."""
    if threads is None:
        threads = default_threads()
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        numba.set_num_threads(previous)
