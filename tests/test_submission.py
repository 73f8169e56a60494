"""submission.py: the challenge format round trip, and malformed files that would otherwise score low silently."""

from __future__ import annotations

import pytest

from eproduct_core.cli import main
from eproduct_core.errors import EproductError
from eproduct_core.submission import check_submission, read_submission, read_submission_file, write_submission

QUERIES = ["qa", "qb", "qc"]


def test_round_trip_keeps_order_and_duplicates(tmp_path):
    rows = [("qa", ["i3", "i1", "i3"]), ("qb", []), ("qc", ["i2"])]
    path = write_submission(tmp_path / "deep" / "sub.csv", rows)
    assert path.read_text(encoding="utf-8") == "qa,i3 i1 i3\nqb,\nqc,i2\n"
    assert read_submission(path) == dict(rows)
    assert check_submission(read_submission_file(path), QUERIES, ["i1", "i2", "i3"]) == []


def test_ids_the_format_cannot_hold_are_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(EproductError, match="comma, space or line break"):
        write_submission(tmp_path / "sub.csv", [("qa", ["i1"]), ("qb", ["a,b"])])
    assert list(tmp_path.iterdir()) == []


def test_a_byte_order_mark_is_stripped_with_a_note(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffqa,i1 i2\nqb,i3\n".encode())
    submission = read_submission_file(path)
    assert submission.rows == {"qa": ["i1", "i2"], "qb": ["i3"]}  # not "\ufeffqa"
    assert any("byte-order mark" in note for note in submission.notes)


@pytest.mark.parametrize("header", ["query_id,index_ids", "query,results", "Query-ID,top10", "image_id,ids"])
def test_a_header_line_is_skipped_with_a_note(tmp_path, header):
    path = tmp_path / "header.csv"
    path.write_text(f"{header}\nqa,i1\n", encoding="utf-8")
    submission = read_submission_file(path)
    assert submission.rows == {"qa": ["i1"]}
    assert any("header" in note and "line 1" in note for note in submission.notes)


def test_comma_separated_ids_are_read_as_ids_with_a_note(tmp_path):
    path = tmp_path / "commas.csv"
    path.write_text("qa,i1,i2,i3\nqb,i4 i5\nqc,i6, i7\n", encoding="utf-8")
    submission = read_submission_file(path)
    assert submission.rows == {"qa": ["i1", "i2", "i3"], "qb": ["i4", "i5"], "qc": ["i6", "i7"]}
    (note,) = submission.notes
    assert "2 line(s)" in note and "line 1, 3" in note and "spaces" in note


def test_row_number_query_ids_get_a_hint_to_use_submit(tmp_path):
    path = write_submission(tmp_path / "rows.csv", [("0", ["i1"]), ("1", ["i2"]), ("2", [])])
    (warning,) = check_submission(read_submission_file(path), QUERIES)
    assert "3 of 3 submitted query ids are not queries" in warning
    assert "'0', '1', '2'" in warning and "row numbers" in warning and "eproduct submit" in warning


def test_unknown_query_and_result_ids_are_counted_with_examples():
    rows = {"qa": ["i1", "x9"], "zz": ["i2"], "yy": [], "ww": [], "vv": []}
    query_warning, result_warning = check_submission(rows, QUERIES, index_ids=["i1", "i2"])
    assert query_warning.startswith("4 of 5 submitted query ids") and "'zz', 'yy', 'ww', ..." in query_warning
    assert "row numbers" not in query_warning
    assert result_warning.startswith("1 distinct result ids are not in the catalog's index split (e.g. 'x9')")


def test_lines_that_cannot_be_read_are_refused_naming_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("qa,i1\nno comma here\n", encoding="utf-8")
    with pytest.raises(EproductError, match="line 2 has no comma"):
        read_submission(path)
    path.write_text("qa,i1\nqa,i2\n", encoding="utf-8")
    with pytest.raises(EproductError, match="line 2 repeats query 'qa'"):
        read_submission(path)
    with pytest.raises(EproductError, match="is a folder"):
        read_submission(tmp_path)


def test_evaluate_submission_prints_the_warnings_and_scores_as_meant(tiny_catalog, tmp_path, capsys):
    """A BOM + header + comma file scores what it means; the CLI says what was wrong with it."""
    import pandas as pd

    truth = pd.read_csv(tiny_catalog / "groundtruth.csv", dtype=str)
    first = truth.groupby("query_id")["index_id"].apply(list)
    body = "".join(f"{q},{','.join(ids)}\n" for q, ids in first.items())
    good = tmp_path / "good.csv"
    good.write_text("".join(f"{q},{' '.join(ids)}\n" for q, ids in first.items()), encoding="utf-8")
    messy = tmp_path / "messy.csv"
    messy.write_bytes(("\ufeffquery_id,index_ids\n" + body).encode())
    assert (
        main(["evaluate", "--catalog", str(tiny_catalog), "--submission", str(good), "--out", str(tmp_path / "g")]) == 0
    )
    clean = capsys.readouterr()
    assert "warning:" not in clean.err
    mar = [line for line in clean.out.splitlines() if line.startswith("MAR@10 (/|G|")]
    assert mar == ["MAR@10 (/|G|, report eq. 5-6)    1.0000"]  # every true match submitted
    assert (
        main(["evaluate", "--catalog", str(tiny_catalog), "--submission", str(messy), "--out", str(tmp_path / "m")])
        == 0
    )
    noisy = capsys.readouterr()
    assert mar[0] in noisy.out.splitlines()  # scored as meant
    warnings = [line for line in noisy.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3 and "byte-order mark" in warnings[0] and "header" in warnings[1]
    assert "commas" in warnings[2]


def test_evaluate_submission_of_row_numbers_warns(tiny_catalog, tmp_path, capsys):
    path = write_submission(tmp_path / "rows.csv", [(str(i), ["x"]) for i in range(5)])
    assert (
        main(["evaluate", "--catalog", str(tiny_catalog), "--submission", str(path), "--out", str(tmp_path / "e")]) == 0
    )
    err = capsys.readouterr().err
    assert "warning: 5 of 5 submitted query ids are not queries" in err and "eproduct submit" in err
