"""Every command's user errors: one line `error: ...` on stderr, exit status 2, no traceback.

Each case runs `eproduct_core.cli.main([...])` in-process with a bad input: a missing file or folder,
a file where a folder belongs (and the reverse), garbage or empty contents, a malformed `--set`.
The first group needs no trained run; the second uses the session's tiny workspace (its run,
embeddings and indexes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eproduct_core.cli import main


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_catalog) -> dict[str, str]:
    """Paths for the cases: good ones (catalog, vectors, index) and bad ones (missing, empty, garbage)."""
    root = tmp_path_factory.mktemp("cli_errors")
    vectors = root / "x.npy"
    np.save(vectors, np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32))
    assert main(["index", "build", "--vectors", str(vectors), "--out", str(root / "idx"), "--bits", "64", "-q"]) == 0
    (root / "empty.txt").write_text("", encoding="utf-8")
    (root / "empty.npy").write_bytes(b"")
    (root / "garbage.txt").write_bytes(b"\xff\xfe\x00not utf-8")
    (root / "dir").mkdir()
    fake_run = root / "fakerun"
    fake_run.mkdir()
    (fake_run / "config.json").write_text("{not json", encoding="utf-8")
    (fake_run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    ckpt_run = root / "ckptrun"  # a valid config, a garbage checkpoint
    ckpt_run.mkdir()
    (ckpt_run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    return {
        "cat": str(tiny_catalog),
        "vec": str(vectors),
        "idx": str(root / "idx"),
        "missing": str(root / "missing"),
        "file": str(root / "empty.txt"),
        "emptynpy": str(root / "empty.npy"),
        "garbage": str(root / "garbage.txt"),
        "dir": str(root / "dir"),
        "fakerun": str(fake_run),
        "ckptrun": str(ckpt_run),
        "new": str(root / "new"),
    }


CASES = {
    # demo
    "demo --set without =": "demo --workspace {new}/ws1 --set epochs",
    "demo --set unknown key": "demo --workspace {new}/ws2 --set bogus=1",
    "demo --set bad value": "demo --workspace {new}/ws3 --set epochs=abc",
    "demo unknown preset": "demo --workspace {new}/ws4 --preset nope",
    "demo --catalog missing": "demo --workspace {new}/ws5 --catalog {missing}",
    "demo --catalog empty folder": "demo --workspace {new}/ws6 --catalog {dir}",
    "demo --workspace is a file": "demo --workspace {file}",
    # catalog
    "catalog validate missing": "catalog validate {missing}",
    "catalog validate a file": "catalog validate {file}",
    "catalog synth into a file": "catalog synth {file}",
    "catalog synth into a catalog": "catalog synth {cat}",
    "catalog fashion-mnist bad source": "catalog fashion-mnist {new}/fm1 --source {missing}",
    "catalog fashion-mnist views 9": "catalog fashion-mnist {new}/fm2 --views 9",
    # evaluate / sweep
    "evaluate catalog missing": "evaluate --catalog {missing} --submission {file}",
    "evaluate catalog is empty": "evaluate --catalog {dir} --submission {file}",
    "evaluate submission missing": "evaluate --catalog {cat} --submission {missing}",
    "evaluate submission garbage": "evaluate --catalog {cat} --submission {garbage}",
    "evaluate submission is a folder": "evaluate --catalog {cat} --submission {dir}",
    "evaluate no index": "evaluate --catalog {cat} --queries {dir}",
    "evaluate index missing": "evaluate --catalog {cat} --index {missing} --queries {dir}",
    "evaluate queries not embeddings": "evaluate --catalog {cat} --index {idx} --queries {dir}",
    "evaluate run missing": "evaluate --catalog {cat} --index {idx} --run {missing}",
    "evaluate run config garbage": "evaluate --catalog {cat} --index {idx} --run {fakerun}",
    "sweep index missing": "sweep --catalog {cat} --index {missing} --queries {dir}",
    "sweep no queries": "sweep --catalog {cat} --index {idx}",
    # submit
    "submit run missing": "submit --run {missing} --catalog {cat} --out {new}/s.csv",
    "submit run config garbage": "submit --run {fakerun} --catalog {cat} --out {new}/s.csv",
    "submit catalog as run": "submit --run {cat} --catalog {cat} --out {new}/s.csv",
    # train
    "train catalog missing": "train --catalog {missing} --out {new}/r1",
    "train catalog empty": "train --catalog {dir} --out {new}/r2",
    "train --set without =": "train --catalog {cat} --out {new}/r3 --set epochs",
    "train --set unknown key": "train --catalog {cat} --out {new}/r4 --set nope=1",
    "train --set bad value": "train --catalog {cat} --out {new}/r5 --set epochs=x",
    "train unknown backbone": "train --catalog {cat} --out {new}/r6 --backbone vgg",
    "train epochs 0": "train --catalog {cat} --out {new}/r7 --epochs 0",
    "train --out is a file": "train --catalog {cat} --out {file} --backbone tiny --weights none --epochs 1",
    "train --resume garbage config": "train --catalog {cat} --out {fakerun} --resume",
    "train missing weights file": "train --catalog {cat} --out {new}/r8 --backbone tiny --weights {missing}",
    # embed
    "embed run missing": "embed --run {missing} --catalog {cat} --split query --kind seed --out {new}/e1",
    "embed checkpoint garbage": "embed --run {ckptrun} --catalog {cat} --split query --kind seed --out {new}/e2",
    "embed bad --part": "embed --run {fakerun} --catalog {cat} --split query --kind seed --out {new}/e3 --part x",
    # index
    "index build ids missing": "index build --vectors {vec} --ids {missing} --out {new}/i1",
    "index build ids not utf-8": "index build --vectors {vec} --ids {garbage} --out {new}/i2",
    "index build ids is a folder": "index build --vectors {vec} --ids {dir} --out {new}/i3",
    "index build ids count": "index build --vectors {vec} --ids {file} --out {new}/i4",
    "index build vectors missing": "index build --vectors {missing} --out {new}/i5",
    "index build vectors garbage": "index build --vectors {garbage} --out {new}/i6",
    "index build vectors empty file": "index build --vectors {emptynpy} --out {new}/i7",
    "index build bits 0": "index build --vectors {vec} --out {new}/i8 --bits 0",
    "index build shard size 0": "index build --vectors {vec} --out {new}/i9 --shard-size 0",
    "index build embeddings missing": "index build --embeddings {missing} --out {new}/i10",
    "index build --out is a file": "index build --vectors {vec} --out {file}",
    "index verify missing": "index verify {missing}",
    "index info missing": "index info {missing}",
    "index info a catalog": "index info {cat}",
    "index ann missing": "index ann {missing}",
    "index ann m 1": "index ann {idx} --m 1",
    "index partitions missing": "index partitions {missing}",
    "index partitions more lists than rows": "index partitions {idx} --lists 99999999",
    "index partitions zero lists": "index partitions {idx} --lists 0",
    "index build partitions without vectors": "index build --vectors {vec} --out {new}/i11 --partitions --no-vectors",
    # search
    "search index missing": "search --index {missing} --vectors {vec} --out {new}/o1.csv",
    "search vectors missing": "search --index {idx} --vectors {missing} --out {new}/o2.csv",
    "search vectors empty file": "search --index {idx} --vectors {emptynpy} --out {new}/o3.csv",
    "search k 0": "search --index {idx} --vectors {vec} --out {new}/o4.csv --k 0",
    "search bits beyond stored": "search --index {idx} --vectors {vec} --out {new}/o5.csv --bits 999",
    "search hnsw without a graph": "search --index {idx} --vectors {vec} --out {new}/o7.csv --backend hnsw",
    "search partitions absent": "search --index {idx} --vectors {vec} --out {new}/o9.csv --partition-probes 4",
    "search hnsw in cutoff mode": "search --index {idx} --vectors {vec} --out {new}/o8.csv --backend hnsw --mode cutoff",
    "search --out is a folder": "search --index {idx} --vectors {vec} --out {dir}",
    "search wrong kind": "search --index {idx} --vectors {vec} --out {new}/o6.csv --kind seed",
    # serve
    "serve index missing": "serve --index {missing} --port 0",
    "serve workspace outside the roots": "serve --workspace {missing} --port 0",
}


def assert_user_error(argv: list[str], capsys) -> str:
    """main(argv) returns 2 and stderr's last line is the one `error: ...` line; returns the message."""
    status = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert status == 2, f"exit {status}; stderr: {err[-500:]}"
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), f"want one 'error: ...' line, got {errors}"
    assert lines[-1] == errors[0], f"the message is not the last line: {lines[-3:]}"
    assert len(errors[0]) > len("error: ") + 15
    return errors[0]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_invocation_is_one_message_and_exit_2(case, bad, capsys):
    argv = [part.format(**bad) for part in CASES[case].split()]
    assert_user_error(argv, capsys)


def test_messages_say_what_is_wrong(bad, capsys):
    message = assert_user_error(
        ["index", "build", "--vectors", bad["vec"], "--ids", bad["missing"], "--out", bad["new"]], capsys
    )
    assert bad["missing"] in message and "one id per line" in message
    message = assert_user_error(["demo", "--workspace", f"{bad['new']}/w", "--set", "epochs"], capsys)
    assert "'epochs'" in message and "key=value" in message
    message = assert_user_error(["demo", "--workspace", f"{bad['new']}/w", "--catalog", bad["missing"]], capsys)
    assert bad["missing"] in message and ".building" not in message  # names the user's folder, not the copy


def test_nothing_is_left_behind(bad):
    root = Path(bad["new"])
    leftovers = [p for p in root.rglob("*") if ".tmp" in p.name or ".building" in p.name] if root.exists() else []
    assert leftovers == []


@pytest.fixture(scope="module")
def trained(tiny_workspace) -> dict[str, str]:
    """The tiny workspace's run, query embeddings and an index of another dimension."""
    from eproduct_core.workspace import open_workspace

    workspace = open_workspace(Path(tiny_workspace) / "demo", allowed=[Path(tiny_workspace)])
    run = workspace.run_dir(workspace.runs[0])
    metric = [
        n for n, info in workspace.meta["embeddings"].items() if info["kind"] == "metric" and info["split"] == "query"
    ]
    return {"run": str(run), "cat": str(workspace.catalog_dir), "emb": str(workspace.embeddings_dir(metric[0]))}


RUN_CASES = {
    "embed --out is a file": "embed --run {run} --catalog {cat} --split query --kind metric --out {file}",
    "embed catalog missing": "embed --run {run} --catalog {missing} --split query --kind metric --out {new}/e9",
    "submit catalog missing": "submit --run {run} --catalog {missing} --out {new}/s9.csv",
    "submit index of another dimension": "submit --run {run} --catalog {cat} --index {idx} --out {new}/s8.csv",
    "evaluate index of another dimension": "evaluate --queries {emb} --catalog {cat} --index {idx}",
    "sweep index of another dimension": "sweep --queries {emb} --catalog {cat} --index {idx}",
    "train --resume with another model": "train --catalog {cat} --out {run} --resume --preset seed --backbone tiny",
}


@pytest.mark.parametrize("case", list(RUN_CASES), ids=list(RUN_CASES))
def test_bad_invocation_with_a_trained_run(case, bad, trained, capsys):
    argv = [part.format(**{**bad, **trained}) for part in RUN_CASES[case].split()]
    assert_user_error(argv, capsys)
