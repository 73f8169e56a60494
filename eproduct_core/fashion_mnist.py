"""A catalog of real product photos from Fashion-MNIST, with a 3-level taxonomy and an instance-level task.

Owns `make_fashion_mnist_catalog` and the IDX reader. Source files (`*-idx?-ubyte.gz`, or uncompressed)
come from `source`, else Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), else
torchvision's FashionMNIST download (online users only; the raw IDX files it fetches are read here).

- Taxonomy: meta clothing/footwear/bags -> level2 tops/bottoms/dresses/outerwear/shoes/sandals/bags ->
  the 10 Fashion-MNIST classes as leaves.
- train.csv: `train_per_class` items per class from the *train* split (optionally long-tailed: class k
  of a seeded order keeps 1/(k+1) of them); val.csv: other train-split items, balanced per class.
- query/index: items from the *test* split only, so query products are never trained on. Each query
  item is shown as independent *views* through a photo model (`photo_models.py`): `studio` (mild affine
  warp, brightness/contrast, slight blur and noise; the default) or `field` (a product colour, textured
  backdrops, mirror, rotation, perspective, occluders, low resolution, strong JPEG; shares nothing with
  the training augmentations): one view is the query, 1..`views` other views go to the index. Distractor items (other test items,
  many of the same class: lookalikes) add 1-2 views each. groundtruth.csv lists the true matches.
- Images are PNGs upscaled from 28 px to 56 px (bicubic); models resize anyway. train/val images are
  the originals upscaled; query/index images are augmented views. train/val carry an extra
  `product_id` column; query/index carry no labels.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .errors import EproductError
from .photo_models import FIELD_STEPS, IMAGE_PX, PHOTO_MODELS, photo_view
from .progress import CountProgress

log = logging.getLogger(__name__)
DEBIAN_SOURCE = Path("/usr/share/datasets/fashion-mnist")
# (leaf, level2, meta) for Fashion-MNIST labels 0..9
CLASSES = [
    ("t-shirt", "tops", "clothing"),
    ("trouser", "bottoms", "clothing"),
    ("pullover", "tops", "clothing"),
    ("dress", "dresses", "clothing"),
    ("coat", "outerwear", "clothing"),
    ("sandal", "sandals", "footwear"),
    ("shirt", "tops", "clothing"),
    ("sneaker", "shoes", "footwear"),
    ("bag", "bags", "bags"),
    ("ankle boot", "shoes", "footwear"),
]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class FashionOptions:
    train_per_class: int = 400  # train items per class (before the long tail); 4,000 by default
    long_tail: bool = False  # keep 1/(k+1) of class k (seeded order): eProduct-like imbalance
    val_per_class: int | None = (
        None  # val items per class from the train split (disjoint); None: train_per_class // 6, >= 5
    )
    queries: int = 500  # query items (test split); each gets one query view
    views: int = 4  # each query item gets 1..views index views (uniform), 1 <= views <= 4
    distractors: int = 2000  # other test items whose 1-2 views pad the index
    seed: int = 0  # picks items and augmentations; same seed -> same files
    photo_model: str = "studio"  # how query/index photos are made (photo_models.py): "studio" or "field"
    field_without: tuple[str, ...] = ()  # FIELD_STEPS the field camera leaves out (a diagnostic; field only)

    @property
    def val_count(self) -> int:
        """val_per_class as resolved by __post_init__ (never None after it)."""
        assert self.val_per_class is not None
        return self.val_per_class

    def __post_init__(self) -> None:
        if self.val_per_class is None:
            object.__setattr__(self, "val_per_class", max(5, self.train_per_class // 6))
        for name in ("train_per_class", "val_per_class", "queries"):
            if getattr(self, name) < 1:
                raise EproductError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.train_per_class + self.val_count > 6000:
            raise EproductError(
                "train_per_class + val_per_class must be at most 6000 (the train split has 6000 per class)"
            )
        if self.photo_model not in PHOTO_MODELS:
            raise EproductError(f"photo_model must be one of {PHOTO_MODELS}, got {self.photo_model!r}")
        unknown = sorted(set(self.field_without) - set(FIELD_STEPS))
        if unknown:
            raise EproductError(f"Unknown field camera steps {unknown}. Choose from {', '.join(FIELD_STEPS)}.")
        if self.field_without and self.photo_model != "field":
            raise EproductError("Leaving steps out (field_without) needs photo_model 'field'.")
        if self.seed < 0:
            raise EproductError(f"seed must be 0 or more, got {self.seed}")
        if not 1 <= self.views <= 4:
            raise EproductError(f"views must be 1..4 (index views per query item), got {self.views}")
        if self.distractors < 0 or self.queries + self.distractors > 10000:
            raise EproductError(
                f"queries + distractors must be at most 10000 (the test split), got {self.queries}+{self.distractors}"
            )


def read_idx(path: str | Path) -> np.ndarray:
    """A uint8 array from an IDX file (gzip or not); raise `EproductError` if it is not one."""
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise EproductError(
            f"{path} cannot be read ({err}). Reinstall dataset-fashion-mnist or pass another --source."
        ) from err
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise EproductError(
            f"{path} is not an unsigned-byte IDX file. Reinstall dataset-fashion-mnist or pass another --source."
        )
    ndim = data[3]
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(data) - offset != math.prod(shape):
        raise EproductError(f"{path} is truncated: header says {shape}, found {len(data) - offset} bytes.")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _file(folder: Path, stem: str) -> Path:
    """The file `stem` (or `stem`.gz) in `folder`, which was checked to hold it."""
    found = _find(folder, stem)
    if found is None:
        raise EproductError(f"{folder} lacks the Fashion-MNIST file {stem}(.gz).")
    return found


def _download(cache: Path) -> Path:
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(cache), train=True, download=True)
        FashionMNIST(str(cache), train=False, download=True)
    except Exception as err:  # noqa: BLE001 - any failure means "not available"
        raise EproductError(
            "Fashion-MNIST files were not found and could not be downloaded "
            f"({type(err).__name__}: {err}). Install Debian's dataset-fashion-mnist "
            f"(files in {DEBIAN_SOURCE}), pass --source DIR with the *-idx?-ubyte.gz files, or go online."
        ) from err
    return cache / "FashionMNIST" / "raw"


def load_fashion_mnist(
    source: str | Path | None = None, cache: str | Path | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images (n, 28, 28) uint8, labels (n,)), "test": ...} from `source`, Debian's files or a download."""
    if source is not None:
        folders = [Path(source)]
    else:
        cache = Path(cache) if cache else Path.home() / ".cache" / "eproduct" / "fashion-mnist"
        folders = [DEBIAN_SOURCE, cache / "FashionMNIST" / "raw"]
    folder = next((f for f in folders if all(_find(f, stem) for pair in FILES.values() for stem in pair)), None)
    if folder is None:
        if source is not None:
            raise EproductError(
                f"{source} lacks the Fashion-MNIST files {[s + '.gz' for p in FILES.values() for s in p]}."
            )
        folder = _download(Path(folders[1]).parents[1])
    result = {}
    for split, (images_stem, labels_stem) in FILES.items():
        images, labels = read_idx(_file(folder, images_stem)), read_idx(_file(folder, labels_stem))
        if images.ndim != 3 or labels.shape != (len(images),) or labels.max(initial=0) > 9:
            raise EproductError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match.")
        result[split] = (images, labels)
    log.info("Fashion-MNIST from %s: %d train, %d test", folder, len(result["train"][1]), len(result["test"][1]))
    return result


def _pick_train(labels: np.ndarray, options: FashionOptions, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(10)
    train, val = [], []
    for label in range(10):
        items = rng.permutation(np.flatnonzero(labels == label))
        keep = options.train_per_class
        if options.long_tail:
            keep = max(5, round(keep / (int(np.flatnonzero(order == label)[0]) + 1)))
        train.append(items[:keep])
        val.append(items[options.train_per_class : options.train_per_class + options.val_count])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _labelled_rows(split: str, source_split: str, items: np.ndarray, labels: np.ndarray) -> list[dict]:
    rows = []
    for number, item in enumerate(items, start=1):
        leaf, level2, meta = CLASSES[int(labels[item])]
        rows.append(
            {
                "image_id": f"{split[:2]}{number:06d}",
                "meta": meta,
                "level2": level2,
                "leaf": leaf,
                "title": f"{leaf} (Fashion-MNIST {source_split} #{item})",
                "path": f"images/{split}/{number:06d}.png",
                "product_id": f"fm-{source_split}-{item}",
            }
        )
    return rows


def _retrieval(test_count: int, options: FashionOptions, rng: np.random.Generator):
    chosen = rng.permutation(test_count)[: options.queries + options.distractors]
    queries, distractors = chosen[: options.queries], chosen[options.queries :]
    shots = [(int(item), view) for item in queries for view in range(1, int(rng.integers(1, options.views + 1)) + 1)]
    shots += [(int(item), view) for item in distractors for view in range(int(rng.integers(1, 3)))]
    return queries, [shots[i] for i in rng.permutation(len(shots))]


def make_fashion_mnist_catalog(
    out: str | Path,
    source: str | Path | None = None,
    train_per_class: int = 400,
    long_tail: bool = False,
    queries: int = 500,
    views: int = 4,
    seed: int = 0,
    distractors: int = 2000,
    val_per_class: int | None = None,
    progress: CountProgress | None = None,
    overwrite: bool = False,
    photo_model: str = "studio",
    field_without: tuple[str, ...] = (),
) -> Path:
    """Write a Fashion-MNIST catalog into `out` (see the module docstring) and return it."""
    from .catalog import write_catalog
    from .synthetic import prepare_output

    options = FashionOptions(
        train_per_class, long_tail, val_per_class, queries, views, distractors, seed, photo_model, tuple(field_without)
    )
    data = load_fashion_mnist(source)
    out = prepare_output(out, overwrite)
    rng = np.random.default_rng([seed, 2718])
    train_images, train_labels = data["train"]
    test_images, _ = data["test"]
    train_items, val_items = _pick_train(train_labels, options, rng)
    frames = {
        "train": _labelled_rows("train", "train", train_items, train_labels),
        "val": _labelled_rows("val", "train", val_items, train_labels),
    }
    # (relative path, 28x28 image, None for a train/val photo or (test item, view) for a query/index photo)
    jobs: list[tuple[str, np.ndarray, tuple[int, int] | None]] = [
        (row["path"], train_images[item], None)
        for name, items in (("train", train_items), ("val", val_items))
        for row, item in zip(frames[name], items, strict=False)
    ]
    query_items, index_shots = _retrieval(len(test_images), options, rng)
    frames["query"] = [
        {"image_id": f"q{n:06d}", "path": f"images/query/{n:06d}.png"} for n in range(1, len(query_items) + 1)
    ]
    frames["index"] = [
        {"image_id": f"ix{n:06d}", "path": f"images/index/{n:06d}.png"} for n in range(1, len(index_shots) + 1)
    ]
    jobs += [
        (row["path"], test_images[item], (item, 0)) for row, item in zip(frames["query"], query_items, strict=False)
    ]
    jobs += [
        (row["path"], test_images[item], (item, view))
        for row, (item, view) in zip(frames["index"], index_shots, strict=False)
    ]
    query_of = {int(item): row["image_id"] for row, item in zip(frames["query"], query_items, strict=False)}
    truth = sorted(
        (query_of[item], row["image_id"])
        for row, (item, _) in zip(frames["index"], index_shots, strict=False)
        if item in query_of
    )
    _write_images(out, jobs, options, progress)
    tables = {name: pd.DataFrame(rows) for name, rows in frames.items()}
    write_catalog(out, groundtruth=pd.DataFrame(truth, columns=["query_id", "index_id"]), **tables)
    info = {
        "generator": "eproduct fashion-mnist",
        "options": asdict(options),
        "rows": {k: len(v) for k, v in tables.items()},
    }
    (out / "fashion_mnist.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info("Fashion-MNIST catalog in %s: %s", out, info["rows"])
    return out


def _write_images(out: Path, jobs: list, options: FashionOptions, progress: CountProgress | None) -> None:
    for done, (relative, item, view) in enumerate(jobs, start=1):
        if view is None:
            image = Image.fromarray(item).resize((IMAGE_PX, IMAGE_PX), Image.Resampling.BICUBIC)
        else:
            image = photo_view(options.photo_model, item, options.seed, view[0], view[1], options.field_without)
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, "PNG")
        if progress is not None and (done % 100 == 0 or done == len(jobs)):
            progress(done, len(jobs))
