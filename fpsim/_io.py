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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; honour the user's umask
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask():
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class UnreadableStateError(RuntimeError):
    """A saved file of a run (report, weights, checkpoint) cannot be read; the message names it."""


def read_json(path, fix="delete it or rerun with --fresh"):
    """Read a JSON file; a missing file raises FileNotFoundError, an unreadable one names the file."""
    path = os.fspath(path)
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:
        raise UnreadableStateError(f"cannot read {path} ({type(err).__name__}: {err}); {fix}") from err


def read_npz(path, fix="delete it or rerun with --fresh"):
    """All arrays of an ``.npz`` file as a dict; an unreadable (truncated, corrupt) file names the file."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {key: saved[key] for key in saved.files}
    except FileNotFoundError:
        raise
    except Exception as err:  # BadZipFile, EOFError, ValueError, OSError, zlib.error ...
        raise UnreadableStateError(f"cannot read {path} ({type(err).__name__}: {err}); {fix}") from err


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


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    _atomic(path, lambda handle: handle.write(data))


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
