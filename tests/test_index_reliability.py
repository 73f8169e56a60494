"""A build killed with SIGKILL at any point leaves the previous index intact, loadable and searchable."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from eproduct_core.errors import EproductError
from eproduct_core.index import build_index, open_index, verify_index
from eproduct_core.index_format import recover
from eproduct_core.search import search
from eproduct_core.settings import SearchSettings as S

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from eproduct_core.index import build_index
    x = np.random.default_rng(1).standard_normal((6000, 16)).astype(np.float32)
    def progress(done, total):
        print(done, flush=True)
        time.sleep(0.01)
    build_index(x, None, sys.argv[1], bits=64, shard_size=100, seed=1, progress=progress, workers=1)
    print("built", flush=True)
    time.sleep(30)
""")


@pytest.fixture()
def old_index(tmp_path):
    x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    path = build_index(x, [f"old{i}" for i in range(300)], tmp_path / "idx", bits=32, shard_size=70)
    return path, x


def _build_and_kill(path, stop_after: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        for line in child.stdout:
            if line.strip() == stop_after:
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def _assert_sound(path, expected_size, x=None):
    index = open_index(path)
    assert index.size == expected_size
    assert verify_index(path) == []
    if x is not None:
        assert search(index, x[:3], S(k=1))[0].ids == ["old0"]


def test_sigkill_during_builds_leaves_the_previous_index_intact(old_index):
    path, x = old_index
    rng = np.random.default_rng(2024)
    for point in sorted(rng.choice(np.arange(1, 60), size=4, replace=False)):
        _build_and_kill(path, str(point * 100))
        _assert_sound(path, 300, x)
    stale = [p.name for p in path.parent.iterdir() if p.name.startswith(".idx.tmp-")]
    assert stale  # killed builds left their temporary folders, never a half index at `path`
    build_index(x[:40], None, path, bits=32)
    assert [p.name for p in path.parent.iterdir()] == ["idx"]  # the next build cleans them up
    _assert_sound(path, 40)


def test_sigkill_after_the_swap_leaves_the_new_index(old_index):
    path, _ = old_index
    _build_and_kill(path, "built")
    _assert_sound(path, 6000)


def test_a_crash_between_the_two_renames_is_recovered_on_open(old_index):
    path, x = old_index
    moved_away = path.parent / f".{path.name}.old-999999999"
    os.rename(path, moved_away)  # the fallback swap died after moving the old index away
    _assert_sound(path, 300, x)
    assert not moved_away.exists()
    assert recover(path) is None  # nothing left to do


def test_values_beyond_float32_are_refused_naming_the_row_and_the_old_index_stays(tmp_path):
    x = np.random.default_rng(0).standard_normal((50, 8))
    path = build_index(x.astype(np.float32), [f"old{i}" for i in range(50)], tmp_path / "idx", bits=64)
    bad = x.copy()
    bad[31, 2] = 1e300  # finite in float64, inf in float32 (hashing) and float16 (storage)
    with pytest.raises(EproductError, match=r"row 31 \(id 'new31'\).*beyond float32"):
        build_index(bad, [f"new{i}" for i in range(50)], path, bits=64)
    assert verify_index(path) == []
    assert search(open_index(path), x[:1].astype(np.float32), S(k=1))[0].ids == ["old0"]
