"""A small mock of the real eProduct layout, made from a synthetic catalog (for import/submit/proxy tests).

ROOT/metadata/{train,val,index,query_part1}.csv with eProduct's column names (UUID, IMAGE_PATH, AUCT_TITL,
META_CATEG_ID, CATEG_LVL2_ID, LEAF_CATEG_ID), integer category ids, an extra column the importer does
not know (SELLER_NOTE, and in index a column named `path` that must not shadow IMAGE_PATH), titles with
quotes, commas, a newline and Unicode, and ROOT/Images/<split>/<UUID>.JPEG re-encoded with PIL.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd
from PIL import Image

TRICKY_TITLES = [
    'Nike "Air" Max, size 10, new',
    "Crème brûlée mug — 12 oz, café ☕, 日本製",
    'line one\nline two, "quoted", end',
    "  leading and trailing spaces  ",
]


def uuid_of(image_id: str) -> str:
    return hashlib.sha1(image_id.encode()).hexdigest()[:16].upper()


def write_mock_eproduct(catalog: Path, root: Path) -> dict[str, pd.DataFrame]:
    """Write the mock under `root` from the synthetic catalog folder `catalog`; returns its frames by split."""
    names = {"train": "train", "val": "val", "index": "index", "query": "query_part1"}
    frames = {split: pd.read_csv(catalog / f"{split}.csv", dtype=str, keep_default_na=False) for split in names}
    labels = pd.concat([frames["train"], frames["val"]])
    ids = {
        level: {c: str(base + i) for i, c in enumerate(sorted(labels[level].unique()))}
        for level, base in (("meta", 1), ("level2", 100), ("leaf", 10_000))
    }
    (root / "metadata").mkdir(parents=True)
    written = {}
    for split, name in names.items():
        frame = frames[split]
        (root / "Images" / name).mkdir(parents=True)
        out = pd.DataFrame({"UUID": [uuid_of(i) for i in frame["image_id"]]})
        out["IMAGE_PATH"] = [f"{name}/{u}.JPEG" for u in out["UUID"]]
        for src, dst in zip(frame["path"], out["IMAGE_PATH"], strict=True):
            Image.open(catalog / src).convert("RGB").save(root / "Images" / dst, "JPEG", quality=90)
        if split in ("train", "val"):
            titles = frame["title"].tolist()
            for i, tricky in enumerate(TRICKY_TITLES):
                titles[i] = f"{tricky} {titles[i]}" if i % 2 else tricky
            out["AUCT_TITL"] = titles
            out["META_CATEG_ID"] = frame["meta"].map(ids["meta"])
            out["CATEG_LVL2_ID"] = frame["level2"].map(ids["level2"])
            out["LEAF_CATEG_ID"] = frame["leaf"].map(ids["leaf"])
            out["PRODUCT"] = frame["product_id"]  # not in the real data: lets tests score the proxy split
        out["SELLER_NOTE"] = "note, with comma"
        if split == "index":
            out["path"] = "not/the/image/path.jpg"
        out.to_csv(root / "metadata" / f"{name}.csv", index=False, quoting=csv.QUOTE_MINIMAL)
        written[split] = out
    return written
