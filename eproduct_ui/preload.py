"""Background warm-up when the server starts: import torch and load each workspace's model before the first upload.

`start()` (called from app.py through a `st.cache_resource`, so once per server process) runs one
daemon thread: it imports torch, then loads the model of every workspace's default index and runs one
forward pass, waiting for the demo to be built on a first start. `bundle(run_dir, key)` is what
loaders.bundle calls: the preloaded model when the thread has it, else it loads it now; a load in
progress is waited for, never repeated (one lock per run).
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)
WAIT_FOR_DEMO_S = 3600.0  # how long the thread waits for a first-run demo build before giving up
_bundles: dict[tuple[str, float], object] = {}
_locks: dict[tuple[str, float], threading.Lock] = {}
_guard = threading.Lock()


def bundle(run_dir: str, key: float):
    """The run's model (`embed.load_run` on the CPU, one thread), loaded once per process and key."""
    with _guard:
        lock = _locks.setdefault((run_dir, key), threading.Lock())
    with lock:
        if (run_dir, key) not in _bundles:
            import torch

            from eproduct_core.embed import load_run

            torch.set_num_threads(1)
            started = time.perf_counter()
            _bundles[(run_dir, key)] = load_run(run_dir, device="cpu")
            log.info("model of %s loaded in %.1f s", run_dir, time.perf_counter() - started)
        return _bundles[(run_dir, key)]


def _warm() -> None:
    from pathlib import Path

    started = time.perf_counter()
    import torch  # noqa: F401 - the slow part of a first upload

    from eproduct_core import workspace as ws
    from eproduct_core.embed import embed_images
    from eproduct_ui.loaders import stamp

    log.info("background: torch imported in %.1f s", time.perf_counter() - started)
    deadline = time.monotonic() + WAIT_FOR_DEMO_S
    while not ws.list_workspaces() and time.monotonic() < deadline:
        time.sleep(2.0)
    from PIL import Image

    for workspace in ws.list_workspaces():
        name = workspace.default_index
        run = workspace.index_info(name).get("run") if name else None
        if not name or not run:
            continue
        run_dir = workspace.run_dir(run)
        checkpoint = Path(run_dir) / "checkpoint.pt"
        if not checkpoint.is_file():
            continue
        model = bundle(str(run_dir), stamp(checkpoint))
        kind = workspace.index_info(name).get("kind", "metric")
        embed_images(model, [Image.new("RGB", (64, 64))], kind)  # the first forward pass is slow too
        log.info("background: %s ready for uploads after %.1f s", workspace.path.name, time.perf_counter() - started)


def _run() -> None:
    try:
        _warm()
    except Exception:  # a warm-up failure only costs speed; the upload path loads and reports by itself
        log.exception("background warm-up failed")


def start() -> threading.Thread:
    thread = threading.Thread(target=_run, name="eproduct-warm-up", daemon=True)
    thread.start()
    return thread
