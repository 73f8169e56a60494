"""Import the eProduct dataset as it ships into a catalog that references its images where they are.

Owns `import_eproduct(root, out, query_split="query_part1") -> ImportReport`. The layout read:

  ROOT/metadata/{train,val,index,<query_split>}.csv   header row; RFC-4180 CSV (titles hold commas, quotes,
                                                      newlines); val.csv is optional
  ROOT/Images/<split>/<UUID>.JPEG                     IMAGE_PATH values are relative to ROOT/Images

Columns: UUID and IMAGE_PATH everywhere; train/val also AUCT_TITL, META_CATEG_ID, CATEG_LVL2_ID and
LEAF_CATEG_ID. They map to the catalog's image_id, path, title, meta, level2 and leaf; titles are kept
byte for byte; extra columns are kept under their own names. The catalog's catalog.json records
`image_root` = ROOT/Images (absolute), so no image is copied. The query split has no groundtruth.
A different layout is refused with a message naming what was found and what was expected.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .catalog import path_escapes, write_catalog, write_catalog_meta
from .errors import EproductError
from .taxonomy import LEVELS

ID_COLUMNS = {"UUID": "image_id", "IMAGE_PATH": "path"}
LABEL_COLUMNS = {"META_CATEG_ID": "meta", "CATEG_LVL2_ID": "level2", "LEAF_CATEG_ID": "leaf", "AUCT_TITL": "title"}
PATH_CHECKS = 20  # IMAGE_PATH values per split checked to exist at import (validate checks more)


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote: rows per catalog split, classes per level of the labelled splits."""

    out: Path
    image_root: Path
    rows: dict[str, int]  # catalog split (train, val, query, index) -> rows
    classes: dict[str, dict[str, int]]  # train/val -> level -> distinct classes
    extra_columns: dict[str, list[str]]  # catalog split -> source columns kept beyond the mapped ones

    def lines(self) -> list[str]:
        """The report as printed by the CLI."""
        out = [f"catalog written to {self.out} (images stay in {self.image_root})"]
        for split, rows in self.rows.items():
            out.append(f"  {split:<6} {rows:>10,} rows")
        for split, levels in self.classes.items():
            out.append(f"  {split:<6} classes: " + ", ".join(f"{level} {n:,}" for level, n in levels.items()))
        for split, extra in self.extra_columns.items():
            if extra:
                out.append(f"  {split:<6} extra columns kept: {', '.join(extra)}")
        return out


def _listing(folder: Path, limit: int = 12) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()) if folder.is_dir() else []
    shown = ", ".join(names[:limit]) + (f", ... (+{len(names) - limit})" if len(names) > limit else "")
    return shown or "nothing"


def _check_layout(root: Path, sources: dict[str, str]) -> None:
    if not root.is_dir():
        raise EproductError(
            f"{root} is not a folder. Give the eProduct root (the folder holding metadata/ and Images/)."
        )
    for folder in ("metadata", "Images"):
        if not (root / folder).is_dir():
            raise EproductError(
                f"{root} is not the eProduct layout: expected metadata/ and Images/ in it, found {_listing(root)}."
            )
    found = _listing(root / "metadata")
    for split, name in sources.items():
        if split != "val" and not (root / "metadata" / name).is_file():
            hint = ""
            queries = sorted(p.stem for p in (root / "metadata").glob("query*.csv"))
            if split not in ("train", "index") and queries:
                hint = f" Choose the query split with --query-split ({', '.join(queries)})."
            raise EproductError(
                f"{root / 'metadata'} has no {name}: expected {', '.join(sources.values())} "
                f"(val.csv optional), found {found}.{hint}"
            )


def _read(path: Path, labelled: bool) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise EproductError(f"{path} is not UTF-8 text ({err}). Re-save it as UTF-8.") from err
    except pd.errors.EmptyDataError as err:
        raise EproductError(f"{path} is empty: it needs a header row.") from err
    except (pd.errors.ParserError, ValueError) as err:
        raise EproductError(f"{path} is not valid CSV ({err}). Check its quoting and number of fields.") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    wanted = {**ID_COLUMNS, **(LABEL_COLUMNS if labelled else {})}
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise EproductError(
            f"{path} has columns {list(frame.columns)}; expected {list(wanted)} (missing {missing}). "
            "Is this the eProduct metadata folder?"
        )
    return frame


def _map_columns(frame: pd.DataFrame, labelled: bool) -> tuple[pd.DataFrame, list[str]]:
    mapping = {**ID_COLUMNS, **(LABEL_COLUMNS if labelled else {})}
    taken = set(mapping.values())
    extra = [c for c in frame.columns if c not in mapping]
    renamed = {c: (f"source_{c}" if c in taken else c) for c in extra}  # an extra "path" must not shadow ours
    return frame.rename(columns={**mapping, **renamed}), extra


def _check_paths(root: Path, name: str, frame: pd.DataFrame) -> None:
    images = root / "Images"
    for relative in frame["path"].iloc[:: max(1, len(frame) // PATH_CHECKS)].head(PATH_CHECKS):
        if not relative or path_escapes(relative):
            continue  # reported by validate
        if not (images / relative).is_file():
            under_root = (root / relative).is_file()
            hint = " (it exists relative to ROOT: IMAGE_PATH must be relative to Images/)" if under_root else ""
            raise EproductError(
                f"metadata/{name}: IMAGE_PATH {relative!r} is not a file under {images}{hint}. "
                f"Expected Images/<split>/<UUID>.JPEG; found in Images/: {_listing(images)}."
            )


def import_eproduct(root: str | Path, out: str | Path, query_split: str = "query_part1") -> ImportReport:
    """Write the catalog folder `out` (new or empty) for the eProduct dataset at `root`."""
    root, out = Path(root).absolute(), Path(out)
    sources = {"train": "train.csv", "val": "val.csv", "index": "index.csv", "query": f"{query_split}.csv"}
    _check_layout(root, sources)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EproductError(f"{out} exists and is not empty. Choose a new --out folder (or empty this one).")
    frames: dict[str, pd.DataFrame | None] = {}
    extra_columns: dict[str, list[str]] = {}
    for split, name in sources.items():
        path = root / "metadata" / name
        if split == "val" and not path.is_file():
            frames[split] = None
            continue
        labelled = split in ("train", "val")
        frame, extra = _map_columns(_read(path, labelled), labelled)
        _check_paths(root, name, frame)
        frames[split], extra_columns[split] = frame, extra
    tmp = out.parent / f".{out.name}.import-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_catalog(tmp, frames["train"], frames["query"], frames["index"], val=frames["val"])
        write_catalog_meta(
            tmp, image_root=str(root / "Images"), source="eproduct", source_root=str(root), query_split=query_split
        )
        if out.exists():
            out.rmdir()
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = {split: len(frame) for split, frame in frames.items() if frame is not None}
    classes = {
        split: {level: int(frame[level].nunique()) for level in LEVELS}
        for split, frame in frames.items()
        if frame is not None and split in ("train", "val")
    }
    return ImportReport(out=out, image_root=root / "Images", rows=rows, classes=classes, extra_columns=extra_columns)
