"""atomic.py: writes land whole or not at all, and leave no temporary file behind."""

from __future__ import annotations

import numpy as np
import pytest

from eproduct_core.atomic import atomic_path, save_npy_atomic, temp_name, write_bytes_atomic, write_text_atomic


def test_text_bytes_and_npy_writes_replace_the_target(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old", encoding="utf-8")
    write_text_atomic(target, "new\nline\n")
    assert target.read_bytes() == b"new\nline\n"
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    array = np.arange(12, dtype=np.float16).reshape(3, 4)
    save_npy_atomic(tmp_path / "c.npy", array)
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy", allow_pickle=False), array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.npy"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "keep.csv"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("killed mid-write")
    assert target.read_text(encoding="utf-8") == "old"
    assert not temp_name(target).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["keep.csv"]


def test_object_arrays_are_refused_not_pickled(tmp_path):
    with pytest.raises(ValueError):
        save_npy_atomic(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object))
    assert not list(tmp_path.iterdir())


def test_temporary_names_are_hidden_siblings(tmp_path):
    tmp = temp_name(tmp_path / "meta.json")
    assert tmp.parent == tmp_path and tmp.name.startswith(".meta.json.tmp-")
    assert tmp == temp_name(tmp_path / "meta.json")  # stable within a thread


def test_concurrent_writers_of_one_file_never_share_a_temporary(tmp_path):
    import threading

    target = tmp_path / "cache.json"
    errors: list[BaseException] = []

    def write(text: str) -> None:
        try:
            for _ in range(50):
                write_text_atomic(target, text, fsync=False)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(str(i) * 1000,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_text(encoding="utf-8") in {str(i) * 1000 for i in range(4)}  # one whole write
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]
