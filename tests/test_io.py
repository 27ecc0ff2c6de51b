"""fpsim._io: atomic writes (a result file is the old one or the complete new one) and named read errors."""
import json
import os

import numpy as np
import pytest

from fpsim._io import (UnreadableStateError, _atomic, atomic_savez, atomic_write_bytes, atomic_write_json,
                       atomic_write_text, read_json, read_npz)


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "r.json").st_mode & 0o777) == 0o640


def test_writes_round_trip_and_leave_no_temporary_file(tmp_path):
    atomic_write_json(tmp_path / "sub" / "r.json", {"a": [1, 2.5], "b": np.float32(0.5), "c": np.int64(3)})
    assert read_json(tmp_path / "sub" / "r.json") == {"a": [1, 2.5], "b": 0.5, "c": 3}
    atomic_savez(tmp_path / "w.npz", W=np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(read_npz(tmp_path / "w.npz")["W"], np.arange(6.0).reshape(2, 3))
    atomic_write_text(tmp_path / "t.txt", "hello")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "t.txt").read_text() == "hello" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"old": True})

    def half_then_fail(handle):
        handle.write(b'{"new": ')  # an interrupted write: half a file, then an error
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _atomic(path, half_then_fail)
    with pytest.raises(TypeError):
        atomic_write_json(path, {"new": object()})  # not JSON
    assert json.loads(path.read_text()) == {"old": True}
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_unreadable_files_are_named_with_the_fix(tmp_path):
    (tmp_path / "r.json").write_text("{")
    with pytest.raises(UnreadableStateError, match=r"r.json .*JSONDecodeError.*; rerun"):
        read_json(tmp_path / "r.json", fix="rerun")
    (tmp_path / "w.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UnreadableStateError, match=r"w.npz .*--fresh"):
        read_npz(tmp_path / "w.npz")
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")
