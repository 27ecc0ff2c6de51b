"""Atomic file writes: a result file is either the old one or the complete new one."""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np


def _atomic(path, write):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_savez(path, **arrays):
    """Write ``arrays`` to ``path`` (``.npz``) atomically."""
    _atomic(path, lambda handle: np.savez(handle, **arrays))


def atomic_write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n"
    _atomic(path, lambda handle: handle.write(text.encode()))


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
