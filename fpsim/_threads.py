"""Thread counts, set in one place.

fpsim's results do not depend on the number of threads (no kernel reduces
across threads; ``tests/test_kernels.py`` checks bit-identical runs with 1 and
2 threads), so this only trades speed: fewer threads help when the cores are
shared with other work.
"""
from __future__ import annotations

import contextlib

import numba
from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def thread_limit(threads):
    """Limit BLAS and numba to ``threads`` threads inside the block (``None``: no change)."""
    if threads is None:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        numba.set_num_threads(previous)
