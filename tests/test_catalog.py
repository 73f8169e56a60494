"""The catalog format: write/read round trip, validation of both generators' output, one message per
problem naming its rows, the `eproduct catalog validate` command, and property tests of the CSV parser."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import require_system_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eproduct_core import catalog as catalog_module
from eproduct_core.catalog import MAX_FIELD, read_catalog, read_csv, validate_catalog, write_catalog
from eproduct_core.cli import main
from eproduct_core.errors import EproductError

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def broken(tiny_catalog, tmp_path) -> Path:
    """A private copy of the tiny catalog to break."""
    return Path(shutil.copytree(tiny_catalog, tmp_path / "copy"))


def _frames(titles=("a", "b")) -> dict[str, pd.DataFrame]:
    train = pd.DataFrame(
        {
            "image_id": ["t1", "t2"],
            "meta": ["m", "m"],
            "level2": ["l", "l"],
            "leaf": ["x", "y"],
            "title": list(titles),
            "path": ["i/1.jpg", "i/2.jpg"],
            "brand": ["007", "NA"],
        }
    )
    return {
        "train": train,
        "query": pd.DataFrame({"image_id": ["q1"], "path": ["i/q.jpg"], "note": [""]}),
        "index": pd.DataFrame({"image_id": ["x1"], "path": ["i/x.jpg"]}),
        "groundtruth": pd.DataFrame({"query_id": ["q1"], "index_id": ["x1"]}),
    }


def test_write_read_round_trip_keeps_extra_columns_and_strings(tmp_path):
    frames = _frames(titles=('with, comma "and quotes"', "two\nlines ünïcödé"))
    root = write_catalog(tmp_path / "c", **frames)
    loaded = read_catalog(root)
    assert loaded.val is None
    pd.testing.assert_frame_equal(loaded.train, frames["train"])  # "007" and "NA" stay strings
    pd.testing.assert_frame_equal(loaded.query, frames["query"])
    assert loaded.matches() == {"q1": {"x1"}}
    assert list(loaded.train.columns)[:6] == ["image_id", "meta", "level2", "leaf", "title", "path"]


def test_write_catalog_refuses_missing_columns(tmp_path):
    frames = _frames()
    frames["index"] = frames["index"].drop(columns="path")
    with pytest.raises(ValueError, match="index.csv: missing columns"):
        write_catalog(tmp_path, **frames)


def test_tiny_synthetic_catalog_is_valid(tiny_catalog):
    assert validate_catalog(tiny_catalog) == []


def test_fashion_mnist_catalog_is_valid(tmp_path):
    require_system_file(FASHION, "dataset-fashion-mnist")
    from eproduct_core.fashion_mnist import make_fashion_mnist_catalog

    root = make_fashion_mnist_catalog(tmp_path / "fm", train_per_class=8, queries=6, distractors=10)
    assert validate_catalog(root) == []


def _edit(root: Path, name: str, change) -> None:
    frame = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    frame = change(frame)
    frame.to_csv(root / name, index=False)


def _set(row: int, column: str, value: str):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame

    return change


def _insert_line_3(lines: list[bytes]) -> list[bytes]:
    return lines[:2] + [b"va999,m,l,x,caf\xe9 (latin-1),p.jpg,p1"] + lines[2:]


CASES = {  # name: (how to break the copy, file, message fragment, expected lines)
    "missing columns": (
        lambda r: _edit(r, "val.csv", lambda f: f.drop(columns=["title", "leaf"])),
        "val.csv",
        "missing columns ['leaf', 'title']",
        (),
    ),
    "duplicate ids": (
        lambda r: _edit(r, "train.csv", _set(5, "image_id", "tr000002")),
        "train.csv",
        "duplicate image_id values",
        (3, 7),
    ),
    "missing image": (
        lambda r: (r / "images/index/000004.jpg").unlink(),
        "index.csv",
        "image files that do not exist",
        (5,),
    ),
    "unreadable image": (
        lambda r: (r / "images/query/000003.jpg").write_text("not a photo"),
        "query.csv",
        "image files that cannot be read (first: Image",
        (4,),
    ),
    "leaf under two parents": (
        lambda r: _edit(r, "train.csv", _set(0, "level2", "bags")),
        "train.csv",
        "sits under several level2 classes",
        None,
    ),
    "unknown groundtruth ids": (
        lambda r: _edit(r, "groundtruth.csv", _set(2, "index_id", "ix999999")),
        "groundtruth.csv",
        "index_id values not in index.csv",
        (4,),
    ),
    "empty split": (lambda r: (r / "query.csv").write_text("image_id,path\n"), "query.csv", "has no rows", ()),
    "non-utf8": (
        lambda r: (r / "val.csv").write_bytes(b"\n".join(_insert_line_3((r / "val.csv").read_bytes().split(b"\n")))),
        "val.csv",
        "line 3 is not UTF-8",
        (),
    ),
    "huge field": (
        lambda r: _edit(r, "train.csv", _set(9, "title", "x" * (MAX_FIELD + 1))),
        "train.csv",
        f"fields longer than {MAX_FIELD} characters",
        (11,),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_problem_gets_one_message_naming_its_rows(broken, case):
    breaker, file, fragment, lines = CASES[case]
    assert validate_catalog(broken) == []
    breaker(broken)
    problems = [p for p in validate_catalog(broken) if fragment in str(p)]
    assert len(problems) == 1, [str(p) for p in validate_catalog(broken)]
    problem = problems[0]
    assert problem.file == file
    if lines is not None:
        assert problem.lines == lines
        assert all(f"{n}" in str(problem) for n in lines)
    else:  # the leaf's rows: all train rows of that leaf, the edited one (line 2) among them
        assert 2 in problem.lines and len(problem.lines) > 1 and "lines 2" in str(problem)


def test_all_problems_are_reported_together(broken):
    for case in ("duplicate ids", "missing image", "unreadable image", "unknown groundtruth ids", "missing columns"):
        CASES[case][0](broken)
    problems = validate_catalog(broken)
    assert len(problems) == 5, [str(p) for p in problems]


def test_cli_validate_reports_problems_and_exits_non_zero(broken, capsys):
    assert main(["catalog", "validate", str(broken)]) == 0
    assert "catalog is valid" in capsys.readouterr().out
    CASES["duplicate ids"][0](broken)
    CASES["unreadable image"][0](broken)
    assert main(["catalog", "validate", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "train.csv: duplicate image_id values [lines 3, 7]" in out
    assert "query.csv: image files that cannot be read" in out and "2 problem(s)" in out


def test_cli_sample_and_skip_files(broken, capsys, monkeypatch):
    CASES["missing image"][0](broken)
    assert main(["catalog", "validate", str(broken), "--skip-files"]) == 0
    assert main(["catalog", "validate", str(broken), "--sample", "100000"]) == 1
    assert "image files that do not exist" in capsys.readouterr().out
    opened = []
    real = catalog_module.load_image
    monkeypatch.setattr(catalog_module, "load_image", lambda path: opened.append(path) or real(path))
    assert main(["catalog", "validate", str(broken), "--sample", "7"]) in (0, 1)
    splits = [Path(p).parent.name for p in opened]
    assert 0 < len(opened) <= 5 * 7 and max(splits.count(s) for s in set(splits)) <= 7


def test_cli_validate_in_a_subprocess(broken):
    CASES["missing columns"][0](broken)
    done = subprocess.run(
        [sys.executable, "-m", "eproduct_core", "catalog", "validate", str(broken), "--skip-files"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "val.csv: missing columns ['leaf', 'title']" in done.stdout


def test_read_catalog_of_a_missing_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(EproductError, match="eproduct catalog synth"):
        read_catalog(tmp_path / "nowhere")
    assert [p.message for p in validate_catalog(tmp_path / "nowhere")] == ["is not a folder"]


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(TEXT, TEXT, TEXT), min_size=1, max_size=5))
def test_any_text_fields_round_trip(tmp_path, rows):
    train = pd.DataFrame(
        {
            "image_id": [f"t{i}" for i in range(len(rows))],
            "meta": [r[0] for r in rows],
            "level2": "l",
            "leaf": "x",
            "title": [r[1] for r in rows],
            "path": "p.jpg",
            "extra": [r[2] for r in rows],
        }
    )
    frames = {
        "train": train,
        "query": pd.DataFrame({"image_id": ["q"], "path": ["q.jpg"]}),
        "index": pd.DataFrame({"image_id": ["x"], "path": ["x.jpg"]}),
    }
    loaded = read_catalog(write_catalog(tmp_path / "rt", **frames))
    pd.testing.assert_frame_equal(loaded.train, train)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=300),
        TEXT.map(lambda t: t.encode("utf-8")),
        st.lists(st.sampled_from(["a", ",", '"', "\n", "\r", "é", "\x00", " ", "b,c"]), max_size=40).map(
            lambda parts: "".join(parts).encode("utf-8")
        ),
    )
)
def test_random_bytes_never_crash_read_csv(tmp_path, data):
    path = tmp_path / "train.csv"
    path.write_bytes(data)
    try:
        frame = read_csv(path)
    except EproductError:
        return
    assert isinstance(frame, pd.DataFrame)
