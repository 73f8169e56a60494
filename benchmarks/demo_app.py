"""Time the app's first run (the demo workspace build) and its query -> matches path.

    python benchmarks/demo_app.py [--workspace /tmp/x/demo] [--size small] [--queries 20]

Builds the demo workspace with `workspace.build_demo` (what `eproduct demo` and the app's first run
do) unless it already exists, timing each stage from the progress messages, then times what the
Search page does for an uploaded photo: decode the bytes, embed them (model already loaded), search
the default index (top-k with re-rank) and the seed index (cutoff mode). Prints a table.
The browser-side time (upload -> matches drawn) is printed by tests/test_browser.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _build(target: Path, size: str) -> dict[str, float]:
    from eproduct_core.workspace import build_demo, is_finished

    if is_finished(target):
        return {}
    stages: dict[str, float] = {}
    started = time.perf_counter()
    last = {"stage": "catalog", "at": started}

    from eproduct_core.workspace_build import STEPS

    def progress(fraction: float, message: str) -> None:
        stage = next((name for name, (low, high) in STEPS.items() if low <= fraction < high), "index")
        if stage != last["stage"]:
            now = time.perf_counter()
            stages[last["stage"]] = stages.get(last["stage"], 0.0) + now - last["at"]
            last.update(stage=stage, at=now)

    build_demo(target.parent, name=target.name, size=size, progress=progress)
    stages[last["stage"]] = stages.get(last["stage"], 0.0) + time.perf_counter() - last["at"]
    stages["total"] = time.perf_counter() - started
    return stages


def _queries(target: Path, count: int) -> list[tuple[str, float]]:
    import numpy as np
    import pandas as pd
    import torch

    from eproduct_core.embed import embed_images, load_run
    from eproduct_core.images import load_image
    from eproduct_core.index import open_index
    from eproduct_core.search import search
    from eproduct_core.workspace import open_workspace

    torch.set_num_threads(1)
    demo = open_workspace(target, allowed=[target.parent])
    query = pd.read_csv(demo.catalog_dir / "query.csv", dtype=str).head(count)
    rows = []
    for name in demo.indexes:
        info = demo.index_info(name)
        bundle = load_run(demo.run_dir(info["run"]), device="cpu")
        index = open_index(demo.index_dir(name)).warm()
        settings = demo.search_settings(name)
        times = []
        for path in query["path"]:
            data = (demo.catalog_dir / path).read_bytes()
            started = time.perf_counter()
            vector = embed_images(bundle, [load_image(data)], info["kind"])
            search(index, np.asarray(vector, dtype=np.float32), settings)
            times.append((time.perf_counter() - started) * 1000)
        rows.append((f"{name} ({index.size:,} rows)", statistics.median(times)))
    return rows


def _quality(target: Path) -> list[tuple[str, float]]:
    """MAR@10 of every demo index with its workspace settings (what the Evaluation page shows), on the stored
    query embeddings."""
    import numpy as np

    from eproduct_core.catalog import read_catalog
    from eproduct_core.embeddings import read_embeddings
    from eproduct_core.evaluate import evaluate_search
    from eproduct_core.index import open_index
    from eproduct_core.workspace import open_workspace

    demo = open_workspace(target, allowed=[target.parent])
    matches = read_catalog(demo.catalog_dir).matches()
    rows = []
    for name in demo.indexes:
        queries = read_embeddings(demo.embeddings_dir(demo.query_embeddings_for(name)))
        index = open_index(demo.index_dir(name))
        settings = demo.search_settings(name)
        result = evaluate_search(index, np.asarray(queries.vectors, np.float32), queries.ids, matches, settings)
        rows.append((f"{name} ({settings.mode}, {demo.index_info(name).get('label', '')})", result.summary["mar@10_G"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="/tmp/eproduct-bench/demo", help="demo workspace folder")
    parser.add_argument("--size", default="small", help="synthetic catalog size")
    parser.add_argument("--queries", type=int, default=20, help="queries timed per index")
    args = parser.parse_args()
    target = Path(args.workspace)
    stages = _build(target, args.size)
    print(f"command: python benchmarks/demo_app.py --workspace {target} --size {args.size} --queries {args.queries}")
    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    print(f"{'what':<72} {'seconds / ms':>14}")
    for stage, seconds in stages.items():
        print(f"{'demo build: ' + stage:<72} {seconds:>12.1f} s")
    if not stages:
        print(f"{'demo build':<72} {'(already built)':>14}")
    for name, ms in _queries(target, args.queries):
        print(f"{'query -> matches (decode+embed+search) ' + name:<72} {ms:>11.1f} ms")
    for name, mar in _quality(target):
        print(f"{'MAR@10 of ' + name:<72} {mar:>14.3f}")


if __name__ == "__main__":
    main()
