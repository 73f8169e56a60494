"""The catalog: the eProduct-style dataset layout on disk. Read, validate, write.

A catalog is a folder with CSV files (header row; image paths relative to the folder):
  train.csv        image_id, meta, level2, leaf, title, path
  val.csv          optional, same columns as train.csv
  query.csv        image_id, path
  index.csv        image_id, path
  groundtruth.csv  optional: query_id, index_id (one row per true match)
  catalog.json     optional: {"format": "eproduct-catalog", "version": 1, "image_root": DIR,
                   "groundtruth": "proxy" | "true", "source": ...}. `image_root` (absolute, or relative
                   to the catalog folder) is where the `path` values are resolved: an imported eProduct
                   catalog references the dataset's Images/ folder without copying it. Without it, paths
                   are relative to the catalog folder. `"groundtruth": "proxy"` marks a groundtruth.csv
                   made by `catalog proxy-split` (an estimate, not the challenge's answers).
Extra columns are kept and ignored. All values are read as strings. Image paths are confined to the
image root: an absolute path or one with a `..` part is refused.
"""

from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from .atomic import atomic_path, write_text_atomic
from .documents import read_versioned_json
from .errors import EproductError
from .images import load_image
from .taxonomy import LEVELS, hierarchy_conflicts

LABELLED = ["image_id", *LEVELS, "title", "path"]
COLUMNS = {
    "train.csv": LABELLED,
    "val.csv": LABELLED,
    "query.csv": ["image_id", "path"],
    "index.csv": ["image_id", "path"],
    "groundtruth.csv": ["query_id", "index_id"],
}
REQUIRED = ("train.csv", "query.csv", "index.csv")
MAX_FIELD = 4096  # longest field accepted (titles included); longer ones are reported
SHOW_ROWS = 5  # offending line numbers shown per problem
CATALOG_JSON = "catalog.json"
FORMAT = "eproduct-catalog"
VERSION = 1
GROUNDTRUTH_KINDS = ("true", "proxy")
# a path that is absolute (POSIX, Windows drive or UNC) or has a ".." part would leave the image root
_ESCAPING = re.compile(r"^[/\\]|^[A-Za-z]:|(?:^|[/\\])\.\.(?:[/\\]|$)")


def path_escapes(relative: str) -> bool:
    """True when an image path would leave the image root (absolute, a drive, or a `..` part)."""
    return bool(_ESCAPING.search(str(relative)))


def resolve_image(image_root: Path, relative: str) -> Path:
    """`image_root / relative`, or `EproductError` when the path would leave the image root."""
    if path_escapes(relative) or ".." in PurePosixPath(str(relative).replace("\\", "/")).parts:
        raise EproductError(
            f"Image path {relative!r} leaves the catalog's image root {image_root}: "
            "paths must be relative to it, without '..' parts. Fix the path column of the catalog CSV."
        )
    return image_root / str(relative)


@dataclass(frozen=True)
class Catalog:
    root: Path
    train: pd.DataFrame
    query: pd.DataFrame
    index: pd.DataFrame
    val: pd.DataFrame | None = None
    groundtruth: pd.DataFrame | None = None
    image_root: Path | None = None  # where `path` values resolve (catalog.json); None: the catalog folder
    meta: dict = field(default_factory=dict)  # catalog.json as read ({} without one)

    @property
    def images(self) -> Path:
        """The folder image paths are relative to."""
        return self.image_root if self.image_root is not None else self.root

    @property
    def groundtruth_kind(self) -> str | None:
        """ "true", "proxy" (made by `catalog proxy-split`), or None without groundtruth.csv."""
        if self.groundtruth is None:
            return None
        return str(self.meta.get("groundtruth", "true"))

    def image_path(self, relative: str) -> Path:
        """The file of a catalog `path` value, confined to the image root (`EproductError` otherwise)."""
        return resolve_image(self.images, relative)

    def split(self, name: str) -> pd.DataFrame:
        frame = getattr(self, name, None)
        if not isinstance(frame, pd.DataFrame):
            raise EproductError(f"Catalog {self.root} has no {name!r} split.")
        return frame

    def matches(self) -> dict[str, set[str]]:
        """query_id -> the set of its true-match index ids (empty when no groundtruth)."""
        if self.groundtruth is None:
            return {}
        result: dict[str, set[str]] = {}
        for query_id, index_id in zip(self.groundtruth["query_id"], self.groundtruth["index_id"], strict=False):
            result.setdefault(query_id, set()).add(index_id)
        return result


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a catalog; `lines` are 1-based CSV line numbers (the header is line 1)."""

    file: str
    message: str
    lines: tuple[int, ...] = ()

    def __str__(self) -> str:
        where = ""
        if self.lines:
            shown = ", ".join(str(n) for n in self.lines[:SHOW_ROWS])
            more = f" (+{len(self.lines) - SHOW_ROWS} more)" if len(self.lines) > SHOW_ROWS else ""
            where = f" [lines {shown}{more}]"
        return f"{self.file}: {self.message}{where}"


def _lines(mask: pd.Series) -> tuple[int, ...]:
    return tuple(int(i) + 2 for i in mask[mask].index)


def _undecodable_line(path: Path) -> int | None:
    data = path.read_bytes()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return None


def read_csv(path: Path) -> pd.DataFrame:
    """Read one catalog CSV as strings, or raise `EproductError` saying what is wrong."""
    if not path.is_file():
        raise EproductError(f"{path} does not exist. A catalog folder needs {', '.join(REQUIRED)}.")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    except UnicodeDecodeError as err:  # only then look for the line (one more read of the file)
        line = _undecodable_line(path)
        raise EproductError(f"{path.name} line {line} is not UTF-8 text. Re-save the file as UTF-8.") from err
    except pd.errors.EmptyDataError as err:
        raise EproductError(f"{path.name} is empty: it needs a header row ({', '.join(COLUMNS[path.name])}).") from err
    except (pd.errors.ParserError, ValueError) as err:
        raise EproductError(f"{path.name} is not valid CSV ({err}). Check quoting and the number of fields.") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _check_columns(name: str, frame: pd.DataFrame) -> list[Problem]:
    missing = [c for c in COLUMNS[name] if c not in frame.columns]
    if missing:
        return [Problem(name, f"missing columns {missing}; it needs {COLUMNS[name]} (found {list(frame.columns)})")]
    return []


def read_catalog_meta(root: str | Path) -> dict:
    """catalog.json of a catalog folder ({} when it has none), checked; `EproductError` when it is wrong."""
    root = Path(root)
    path = root / CATALOG_JSON
    if not path.exists():
        return {}
    meta = read_versioned_json(
        path,
        fmt=FORMAT,
        version=VERSION,
        what="an eproduct catalog.json",
        missing=f"{path} does not exist.",
        fix="Re-create it with `eproduct catalog import-eproduct`, or delete it to resolve paths in the folder.",
    )
    if "image_root" in meta and not isinstance(meta["image_root"], str):
        raise EproductError(f"{path}: image_root must be a folder path string, not {meta['image_root']!r}.")
    if meta.get("groundtruth", "true") not in GROUNDTRUTH_KINDS:
        raise EproductError(f"{path}: groundtruth must be one of {GROUNDTRUTH_KINDS}, not {meta['groundtruth']!r}.")
    return meta


def image_root_of(root: Path, meta: dict) -> Path | None:
    """The image root named by catalog.json (relative to the catalog folder), or None; it must exist."""
    if "image_root" not in meta:
        return None
    image_root = (root / meta["image_root"]).absolute()
    if not image_root.is_dir():
        raise EproductError(
            f"{root / CATALOG_JSON} names image_root {image_root}, which is not a folder. "
            "Did the dataset move? Edit image_root in catalog.json or re-run `eproduct catalog import-eproduct`."
        )
    return image_root


def write_catalog_meta(root: str | Path, **fields) -> Path:
    """Write catalog.json (format, version and `fields`) atomically; returns its path."""
    path = Path(root) / CATALOG_JSON
    return write_text_atomic(path, json.dumps({"format": FORMAT, "version": VERSION, **fields}, indent=2))


def read_catalog(root: str | Path) -> Catalog:
    """Read a catalog folder; raise `EproductError` if a required file or column is missing."""
    root = Path(root)
    if not root.is_dir():
        raise EproductError(f"Catalog folder {root} does not exist. Create one with `eproduct catalog synth {root}`.")
    meta = read_catalog_meta(root)
    image_root = image_root_of(root, meta)
    frames: dict[str, pd.DataFrame | None] = {}
    for name in COLUMNS:
        path = root / name
        if name not in REQUIRED and not path.exists():
            frames[name] = None
            continue
        frame = read_csv(path)
        problems = _check_columns(name, frame)
        if problems:
            raise EproductError(f"{root}: {problems[0]}")
        frames[name] = frame
    return Catalog(
        root=root,
        train=frames["train.csv"],
        val=frames["val.csv"],
        query=frames["query.csv"],
        index=frames["index.csv"],
        groundtruth=frames["groundtruth.csv"],
        image_root=image_root,
        meta=meta,
    )


def _check_rows(name: str, frame: pd.DataFrame) -> list[Problem]:
    problems = []
    if frame.empty:
        problems.append(Problem(name, "has no rows: every split needs at least one image"))
        return problems
    for column in COLUMNS[name]:
        empty = frame[column].str.strip() == ""
        if empty.any():
            problems.append(Problem(name, f"empty {column!r} values", _lines(empty)))
    huge = pd.Series(False, index=frame.index)
    for column in frame.columns:
        huge |= frame[column].str.len() > MAX_FIELD
    if huge.any():
        problems.append(Problem(name, f"fields longer than {MAX_FIELD} characters", _lines(huge)))
    id_column = "image_id" if "image_id" in frame.columns else None
    if id_column:
        duplicated = frame[id_column].duplicated(keep=False) & (frame[id_column] != "")
        if duplicated.any():
            problems.append(Problem(name, "duplicate image_id values", _lines(duplicated)))
    if "path" in frame.columns:
        escaping = frame["path"].str.contains(_ESCAPING, regex=True)
        if escaping.any():
            problems.append(
                Problem(name, "image paths that leave the image root (absolute or with '..')", _lines(escaping))
            )
    return problems


def _check_files(root: Path, name: str, frame: pd.DataFrame, check_files: str, sample: int, seed: int) -> list[Problem]:
    if check_files == "none" or "path" not in frame.columns:
        return []
    positions = list(range(len(frame)))
    if check_files == "sample" and len(positions) > sample:
        positions = sorted(random.Random(seed).sample(positions, sample))
    missing, unreadable, reasons = [], [], []
    paths = frame["path"].to_numpy()
    for position in positions:
        relative = paths[position]
        if not relative or path_escapes(relative):
            continue  # reported by _check_rows
        path = root / relative
        if not path.is_file():
            missing.append(position + 2)
            continue
        try:
            load_image(path)
        except EproductError as err:
            unreadable.append(position + 2)
            reasons.append(str(err))
    problems = []
    if missing:
        problems.append(Problem(name, "image files that do not exist", tuple(missing)))
    if unreadable:
        problems.append(Problem(name, f"image files that cannot be read (first: {reasons[0]})", tuple(unreadable)))
    return problems


def _check_hierarchy(name: str, frame: pd.DataFrame) -> list[Problem]:
    problems = []
    for child_level, child, parents in hierarchy_conflicts(frame):
        parent_level = LEVELS[LEVELS.index(child_level) - 1]
        mask = frame[child_level] == child
        problems.append(
            Problem(name, f"{child_level} {child!r} sits under several {parent_level} classes {parents}", _lines(mask))
        )
    return problems


def _check_groundtruth(frames: dict[str, pd.DataFrame]) -> list[Problem]:
    truth = frames["groundtruth.csv"]
    problems = []
    for column, split in (("query_id", "query.csv"), ("index_id", "index.csv")):
        unknown = ~truth[column].isin(frames[split]["image_id"].unique())
        if unknown.any():
            problems.append(Problem("groundtruth.csv", f"{column} values not in {split}", _lines(unknown)))
    duplicated = truth.duplicated(subset=["query_id", "index_id"], keep="first")
    if duplicated.any():
        problems.append(Problem("groundtruth.csv", "repeated (query_id, index_id) pairs", _lines(duplicated)))
    return problems


def validate_catalog(root: str | Path, check_files: str = "all", sample: int = 1000, seed: int = 0) -> list[Problem]:
    """Every problem with a catalog folder; empty when it is valid.

    `check_files`: "all" opens every image, "sample" opens `sample` random images per split,
    "none" skips file checks (for millions of files).
    """
    if check_files not in ("all", "sample", "none"):
        raise ValueError(f"check_files must be all, sample or none, not {check_files!r}")
    root = Path(root)
    if not root.is_dir():
        return [Problem(str(root), "is not a folder")]
    problems: list[Problem] = []
    frames: dict[str, pd.DataFrame] = {}
    try:
        images = image_root_of(root, read_catalog_meta(root)) or root
    except EproductError as err:
        return [Problem(CATALOG_JSON, str(err))]
    for name in COLUMNS:
        path = root / name
        if name not in REQUIRED and not path.exists():
            continue
        try:
            frame = read_csv(path)
        except EproductError as err:
            problems.append(Problem(name, str(err)))
            continue
        column_problems = _check_columns(name, frame)
        problems.extend(column_problems)
        if column_problems:
            continue
        frames[name] = frame
        problems.extend(_check_rows(name, frame))
        problems.extend(_check_files(images, name, frame, check_files, sample, seed))
        if name in ("train.csv", "val.csv"):
            problems.extend(_check_hierarchy(name, frame))
    if "groundtruth.csv" in frames and "query.csv" in frames and "index.csv" in frames:
        problems.extend(_check_groundtruth(frames))
    if "train.csv" in frames and "val.csv" in frames:
        for level in LEVELS:
            unseen = ~frames["val.csv"][level].isin(frames["train.csv"][level].unique())
            if unseen.any():
                problems.append(Problem("val.csv", f"{level} classes that train.csv does not have", _lines(unseen)))
    return problems


def write_catalog(
    root: str | Path,
    train: pd.DataFrame,
    query: pd.DataFrame,
    index: pd.DataFrame,
    val: pd.DataFrame | None = None,
    groundtruth: pd.DataFrame | None = None,
) -> Path:
    """Write the CSV files of a catalog (images are the caller's); returns the folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in (
        ("train.csv", train),
        ("val.csv", val),
        ("query.csv", query),
        ("index.csv", index),
        ("groundtruth.csv", groundtruth),
    ):
        if frame is None:
            continue
        missing = [c for c in COLUMNS[name] if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}: missing columns {missing}")
        ordered = frame[COLUMNS[name] + [c for c in frame.columns if c not in COLUMNS[name]]]
        # csv leaves a lone "\r" unquoted (only "\n" is the line terminator), which readers take for a
        # line break: quote every field of a file that holds one.
        has_cr = ordered.astype(str).apply(lambda column: column.str.contains("\r", regex=False)).any(axis=None)
        with atomic_path(root / name) as tmp:
            ordered.to_csv(tmp, index=False, encoding="utf-8", quoting=csv.QUOTE_ALL if has_cr else csv.QUOTE_MINIMAL)
    return root
