"""Workspaces: folders under the configured root(s) holding one catalog with its runs, embeddings and indexes.

A workspace is a folder with `workspace.json` and `catalog/`, `runs/<name>/`, `embeddings/<name>/`,
`indexes/<name>/`. Roots: `$EPRODUCT_HOME` (default `~/.eproduct`) plus any folders listed in
`$EPRODUCT_ROOTS` (os.pathsep-separated). Nothing here reads outside those roots when asked to open a
workspace by path, so the app's workspace chooser cannot be pointed at arbitrary folders.

`workspace.json` (all paths relative to the workspace folder):
  {"format": "eproduct-workspace", "version": 1, "name", "title", "preset", "created",
   "runs": [name], "embeddings": {name: {"kind", "split", "run"}},
   "indexes": {name: {"embeddings", "run", "label", "kind", "bits", "shard_size", "seed" (the IndexSpec it
                      was built with; bits as stored), "search": {SearchSettings fields}}},
   "default_index": name}
`index_entry` writes an index entry; `Workspace.index_spec` / `Workspace.search_settings` read it back.
Entries written before the settings split (a "search" dict holding kind/shard_size too, no "seed") still
read: `config.search_from_dict` migrates the search dict, and a missing seed is 0 (what those builds used).

`build_demo` makes the demo workspace safely: one builder at a time (an flock on `<root>/.demo.lock`),
built in a temporary folder and renamed into place only when finished, so a half-built workspace is never
taken as done. The pipeline steps it runs live in `workspace_build.py`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_text_atomic
from .config import search_from_dict
from .documents import read_versioned_json
from .errors import EproductError
from .progress import Progress
from .settings import IndexSpec, SearchSettings

log = logging.getLogger(__name__)

ENV_HOME = "EPRODUCT_HOME"
ENV_ROOTS = "EPRODUCT_ROOTS"
FORMAT = "eproduct-workspace"
VERSION = 1
META_FILE = "workspace.json"
DEMO_NAME = "demo"


def home() -> Path:
    """The main root: `$EPRODUCT_HOME`, or `~/.eproduct`."""
    value = os.environ.get(ENV_HOME, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".eproduct"


def roots() -> list[Path]:
    """Every configured root, resolved: home() first, then `$EPRODUCT_ROOTS` entries."""
    found = [home()]
    for part in os.environ.get(ENV_ROOTS, "").split(os.pathsep):
        if part.strip():
            found.append(Path(part.strip()).expanduser())
    result: list[Path] = []
    for root in found:
        resolved = root.resolve()
        if resolved not in result:
            result.append(resolved)
    return result


def inside_roots(path: str | Path, allowed: list[Path] | None = None) -> Path:
    """`path` resolved (symlinks followed), or `EproductError` if it lies outside every allowed root."""
    allowed = roots() if allowed is None else [Path(r).resolve() for r in allowed]
    text = str(path)
    if "\x00" in text:
        raise EproductError("A workspace path may not contain NUL characters.")
    resolved = Path(text).expanduser().resolve()
    for root in allowed:
        if resolved == root or root in resolved.parents:
            return resolved
    shown = ", ".join(str(r) for r in allowed)
    raise EproductError(
        f"{path} is outside the workspace root(s) ({shown}). Move it under one of them, or add its parent "
        f"folder to ${ENV_ROOTS} (or set ${ENV_HOME}) before starting the app."
    )


@dataclass(frozen=True)
class Workspace:
    """One workspace folder and its parsed workspace.json."""

    path: Path
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.name)

    @property
    def title(self) -> str:
        return str(self.meta.get("title") or self.name)

    @property
    def catalog_dir(self) -> Path:
        return self.path / "catalog"

    def run_dir(self, name: str) -> Path:
        return self.path / "runs" / name

    def embeddings_dir(self, name: str) -> Path:
        return self.path / "embeddings" / name

    def index_dir(self, name: str) -> Path:
        return self.path / "indexes" / name

    @property
    def runs(self) -> list[str]:
        """Run names: those listed in workspace.json, then any other folder under runs/."""
        return _names(self.meta.get("runs", []), self.path / "runs", "config.json")

    @property
    def indexes(self) -> list[str]:
        """Index names: those listed in workspace.json, then any other folder under indexes/."""
        return _names(list(self.meta.get("indexes", {})), self.path / "indexes", "manifest.json")

    @property
    def default_index(self) -> str | None:
        chosen = self.meta.get("default_index")
        names = self.indexes
        return chosen if chosen in names else (names[0] if names else None)

    def index_info(self, name: str) -> dict:
        """What workspace.json says about index `name` (empty for an index found only on disk)."""
        return dict(self.meta.get("indexes", {}).get(name, {}))

    def index_spec(self, name: str) -> IndexSpec | None:
        """How index `name` was built, as workspace.json records it (None for an index found only on disk)."""
        info = self.index_info(name)
        if "kind" not in info or "bits" not in info:
            return None
        fields = {key: info[key] for key in ("kind", "bits", "shard_size", "seed") if key in info}
        return IndexSpec.from_dict(fields)

    def search_settings(self, name: str) -> SearchSettings:
        """The search settings workspace.json records for index `name`; `SearchSettings()` (the index's own
        defaults) when it records none."""
        saved = self.index_info(name).get("search")
        return search_from_dict(dict(saved)) if saved else SearchSettings()

    def embeddings_info(self, name: str) -> dict:
        return dict(self.meta.get("embeddings", {}).get(name, {}))

    def query_embeddings_for(self, index_name: str) -> str | None:
        """The embeddings folder name holding query vectors for the index's embedding kind, if any."""
        kind = self.index_info(index_name).get("kind")
        for name, info in self.meta.get("embeddings", {}).items():
            if info.get("split") == "query" and info.get("kind") == kind:
                return name
        return None


def _names(listed: list[str], folder: Path, marker: str) -> list[str]:
    names = [n for n in listed if (folder / n / marker).is_file()]
    if folder.is_dir():
        names += sorted(p.name for p in folder.iterdir() if (p / marker).is_file() and p.name not in names)
    return names


def read_meta(path: Path) -> dict:
    """Parse `path/workspace.json`, or raise `EproductError` saying why it is not a workspace."""
    return read_versioned_json(
        Path(path) / META_FILE,
        fmt=FORMAT,
        version=VERSION,
        what="an eproduct workspace file",
        fix="Rebuild the workspace.",
        missing=f"{path} is not a workspace (no {META_FILE}). Build one with `eproduct demo --workspace {path}`.",
    )


def write_meta(path: Path, meta: dict) -> Path:
    """Write workspace.json atomically (format and version filled in)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    full = {"format": FORMAT, "version": VERSION, **meta}
    write_text_atomic(path / META_FILE, json.dumps(full, indent=2, sort_keys=False))
    return path / META_FILE


def index_entry(spec: IndexSpec, settings: SearchSettings, **extra: object) -> dict:
    """A workspace.json index entry: the IndexSpec's fields, its search settings and `extra` (embeddings, run,
    label)."""
    return {**extra, **spec.to_dict(), "search": settings.to_dict()}


def record_index(workspace: Workspace, name: str, info: dict, default: bool = False) -> Workspace:
    """Add or replace index `name` in workspace.json (under the workspace's lock); returns the reopened workspace."""
    with _locked(workspace.path.parent / f".{workspace.path.name}.lock", 60.0, lambda f, m: None):
        meta = read_meta(workspace.path)
        meta.setdefault("indexes", {})[name] = info
        if default:
            meta["default_index"] = name
        meta.pop("format", None)
        meta.pop("version", None)
        write_meta(workspace.path, meta)
    return Workspace(path=workspace.path, meta=read_meta(workspace.path))


def open_workspace(path: str | Path, allowed: list[Path] | None = None) -> Workspace:
    """Open the workspace at `path`, which must lie inside the configured roots."""
    resolved = inside_roots(path, allowed)
    if not resolved.is_dir():
        raise EproductError(f"Workspace folder {path} does not exist.")
    return Workspace(path=resolved, meta=read_meta(resolved))


def list_workspaces(allowed: list[Path] | None = None) -> list[Workspace]:
    """Every finished workspace directly inside the roots (folders starting with '.' are skipped)."""
    found = []
    for root in roots() if allowed is None else [Path(r).resolve() for r in allowed]:
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.name.startswith(".") or not (child / META_FILE).is_file():
                continue
            try:
                found.append(Workspace(path=child.resolve(), meta=read_meta(child)))
            except EproductError:
                continue
    return found


def demo_path(root: str | Path | None = None) -> Path:
    """Where the demo workspace lives under `root` (default: home())."""
    return Path(root if root is not None else home()) / DEMO_NAME


def is_finished(path: str | Path) -> bool:
    """True when `path` holds a readable workspace.json marked complete."""
    try:
        return bool(read_meta(Path(path)).get("complete"))
    except EproductError:
        return False


def build_demo(
    root: str | Path | None = None,
    preset: str = "fast-demo",
    progress: Progress | None = None,
    *,
    name: str = DEMO_NAME,
    size: str = "small",
    seed: int = 0,
    train_overrides: dict | None = None,
    catalog: str | Path | None = None,
    lock_timeout: float = 1800.0,
) -> Workspace:
    """Build (or return the already built) demo workspace `root/name`.

    Steps: synthetic catalog of `size` -> training with `preset` (fields replaced by `train_overrides`)
    -> query and index embeddings in each kind the run offers -> a seed-settings index and a default
    one. `catalog`: copy this catalog folder instead of drawing a synthetic one. `progress(fraction, message)` is called along the way. Safe to call from several processes
    at once: the others wait for the lock and then return the finished workspace.
    """
    report = progress or (lambda fraction, message: None)
    root = Path(root if root is not None else home())
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    if is_finished(target):
        report(1.0, "Workspace ready")
        return Workspace(path=target.resolve(), meta=read_meta(target))
    with _locked(root / f".{name}.lock", lock_timeout, report):
        if is_finished(target):  # another process finished it while we waited
            report(1.0, "Workspace ready")
            return Workspace(path=target.resolve(), meta=read_meta(target))
        if target.exists():
            raise EproductError(
                f"{target} exists but is not a finished workspace. Move it away or delete it, then try again."
            )
        tmp = root / f".{name}.building-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            from .workspace_build import populate

            meta = populate(
                tmp,
                preset=preset,
                progress=report,
                size=size,
                seed=seed,
                train_overrides=train_overrides,
                catalog=catalog,
            )
            write_meta(tmp, {"name": name, **meta, "complete": True})
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    report(1.0, "Workspace ready")
    log.info("demo workspace ready at %s", target)
    return Workspace(path=target.resolve(), meta=read_meta(target))


class _locked:
    """An exclusive flock on `path`, waiting up to `timeout` seconds (reporting that it waits)."""

    def __init__(self, path: Path, timeout: float, report: Progress):
        self.path, self.timeout, self.report = path, timeout, report

    def __enter__(self) -> _locked:
        self.handle = open(self.path, "a+")
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if not told:
                    self.report(0.0, "Another session is building this workspace; waiting for it")
                    told = True
                if time.monotonic() > deadline:
                    self.handle.close()
                    raise EproductError(
                        f"Timed out after {self.timeout:.0f} s waiting for {self.path} (another build holds it). "
                        "Wait for it to finish, or stop the other build and try again."
                    ) from None
                time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()
