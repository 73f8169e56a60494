"""The synthetic demo catalog: an eProduct-like dataset drawn with numpy + Pillow, deterministic by seed.

Owns `make_synthetic_catalog` and the size presets. The data imitates eProduct's structure:
- a 3-level taxonomy: meta (e.g. "fashion") -> level2 (a product shape, e.g. "tops") -> leaf (a shape
  and a surface pattern, e.g. "striped tops"); leaf sizes in train are long-tailed (Zipf-like);
- products inside a leaf differ only in fine details: colours (drawn from a small per-leaf palette, so
  colour alone rarely identifies a product), pattern frequency and angle, shape proportions, and a
  small printed glyph (kind, position, colour);
- every product is photographed several times: affine warp, scale, shift/crop, background, lighting,
  blur, noise and JPEG quality vary, so query and index photos of one product truly differ;
- query products have 1-4 photos in the index, among distractors: lookalikes (a copy of a query
  product with one fine detail changed) and random products, many from the same leaf;
- train, val, query/index products are disjoint; train.csv/val.csv carry an extra `product_id` column
  (several photos per product) for instance-level training; query/index do not (no answer leak).

A class-probability embedding therefore ranks all products of a leaf alike, while an embedding that
sees colour, glyph and proportions can find the right one. Same seed and size -> byte-identical files.
"""

from __future__ import annotations

import colorsys
import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .errors import EproductError
from .progress import CountProgress
from .synthetic_draw import GLYPHS, LEVEL2, PATTERNS, colour_name, render_product, shoot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthSize:
    n_level2: int  # level-2 classes (product shapes); their metas follow from LEVEL2's order
    n_leaves: int  # leaf classes (shape x pattern), spread over the level-2 classes
    train_products: int  # distinct training products, long-tailed over leaves (each shot 1-3 times)
    val_products: int  # distinct validation products (disjoint from train), same leaf distribution
    query_products: int  # products with one query photo and 1-4 index photos each
    lookalikes: tuple[int, int]  # per query product, how many one-detail-changed lookalikes (min, max)
    random_distractors: int  # further index products from leaves drawn by the long tail
    image_px: int = 80  # side of the square output photos (the seed model resizes to 64)
    tail: float = 1.0  # Zipf exponent of leaf sizes: 0 = balanced, larger = longer tail

    def __post_init__(self) -> None:
        if not 1 <= self.n_level2 <= len(LEVEL2):
            raise ValueError(f"n_level2 must be in 1..{len(LEVEL2)}, got {self.n_level2}")
        if not self.n_level2 <= self.n_leaves <= self.n_level2 * len(PATTERNS):
            raise ValueError(
                f"n_leaves must be in {self.n_level2}..{self.n_level2 * len(PATTERNS)}, got {self.n_leaves}"
            )
        if self.train_products < 2 * self.n_leaves:
            raise ValueError(
                f"train_products must be at least 2 per leaf ({2 * self.n_leaves}), got {self.train_products}"
            )
        for name in ("val_products", "query_products", "random_distractors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        low, high = self.lookalikes
        if not 0 <= low <= high:
            raise ValueError(f"lookalikes must be (min, max) with 0 <= min <= max, got {self.lookalikes}")
        if not 32 <= self.image_px <= 512:
            raise ValueError(f"image_px must be in 32..512, got {self.image_px}")
        if self.tail < 0:
            raise ValueError(f"tail must be >= 0, got {self.tail}")


SIZES = {
    "tiny": SynthSize(
        n_level2=5,
        n_leaves=12,
        train_products=80,
        val_products=20,
        query_products=24,
        lookalikes=(1, 2),
        random_distractors=30,
        image_px=64,
    ),
    "small": SynthSize(
        n_level2=10,
        n_leaves=32,
        train_products=900,
        val_products=150,
        query_products=300,
        lookalikes=(1, 3),
        random_distractors=500,
    ),
    "medium": SynthSize(
        n_level2=16,
        n_leaves=64,
        train_products=4500,
        val_products=600,
        query_products=1200,
        lookalikes=(2, 4),
        random_distractors=3000,
    ),
}


@dataclass(frozen=True)
class Product:
    number: int  # global product number: seeds its photos
    leaf: int  # index into the leaf list
    colours: tuple[tuple[int, int, int], ...]  # body, pattern, glyph
    freq: int  # pattern frequency (stripe/dot/check count)
    angle: float  # pattern angle, radians
    aspect: float  # width/height stretch of the shape
    glyph: int  # index into GLYPHS
    glyph_pos: int  # one of four glyph positions


@dataclass(frozen=True)
class Leaf:
    meta: str
    level2: str
    name: str
    shape: str
    pattern: str
    palette: tuple[float, ...]  # typical hues of this leaf's products


def _leaves(size: SynthSize, rng: np.random.Generator) -> list[Leaf]:
    level2 = LEVEL2[: size.n_level2]
    per = np.full(size.n_level2, size.n_leaves // size.n_level2)
    per[: size.n_leaves % size.n_level2] += 1
    leaves = []
    for (meta, name, shape), count in zip(level2, per, strict=False):
        for pattern in rng.choice(len(PATTERNS), size=int(count), replace=False):
            adjective, kind = PATTERNS[int(pattern)]
            palette = tuple(float(h) for h in rng.random(4))
            leaves.append(Leaf(meta, name, f"{adjective} {name}", shape, kind, palette))
    return leaves


def _hsv(hue: float, rng: np.random.Generator, low: float = 0.45) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(low, 1.0), rng.uniform(0.45, 0.95))
    return int(r * 255), int(g * 255), int(b * 255)


def _new_product(number: int, leaf: int, leaves: list[Leaf], rng: np.random.Generator) -> Product:
    hue = leaves[leaf].palette[rng.integers(4)] + rng.normal(0, 0.02)
    colours = (_hsv(hue, rng), _hsv(hue + rng.uniform(0.25, 0.75), rng), _hsv(rng.random(), rng, 0.7))
    return Product(
        number,
        leaf,
        colours,
        int(rng.integers(2, 8)),
        float(rng.uniform(0, math.pi)),
        float(rng.uniform(0.8, 1.2)),
        int(rng.integers(len(GLYPHS))),
        int(rng.integers(4)),
    )


def _lookalike(base: Product, number: int, rng: np.random.Generator) -> Product:
    """`base` with one fine detail changed: glyph, glyph place, a colour, pattern frequency or proportions."""
    change = rng.integers(5)
    if change == 0:
        return replace(base, number=number, glyph=int((base.glyph + rng.integers(1, len(GLYPHS))) % len(GLYPHS)))
    if change == 1:
        return replace(base, number=number, glyph_pos=int((base.glyph_pos + rng.integers(1, 4)) % 4))
    if change == 2:
        which = int(rng.integers(3))
        colours = list(base.colours)
        colours[which] = _hsv(rng.random(), rng)
        return replace(base, number=number, colours=tuple(colours))
    if change == 3:
        return replace(base, number=number, freq=int(2 + (base.freq - 2 + rng.integers(1, 6)) % 6))
    stretch = base.aspect * (1.25 if rng.random() < 0.5 else 0.8)
    return replace(base, number=number, aspect=float(stretch))


def _leaf_weights(n: int, tail: float, rng: np.random.Generator) -> np.ndarray:
    ranks = rng.permutation(n)
    weights = 1.0 / (ranks + 1.0) ** tail
    return weights / weights.sum()


def _title(product: Product, leaf: Leaf) -> str:
    extra = ["", "new ", "classic ", "premium ", "vintage "][product.number % 5]
    colour = colour_name(product.colours[0])
    return f"{extra}{colour} {leaf.name} with {GLYPHS[product.glyph]} print, size {product.freq}".strip()


class _Builder:
    """Plans products and their photos (which split, which view); draws nothing."""

    def __init__(self, seed: int, size: SynthSize) -> None:
        self.seed, self.size = seed, size
        self.rng = np.random.default_rng([seed, 7919])
        self.leaves = _leaves(size, self.rng)
        self.weights = _leaf_weights(len(self.leaves), size.tail, self.rng)
        self.next_number = 0
        self.shots: list[tuple[str, Product, int]] = []  # (split, product, view)

    def product(self, leaf: int, base: Product | None = None) -> Product:
        self.next_number += 1
        if base is not None:
            return _lookalike(base, self.next_number, self.rng)
        return _new_product(self.next_number, leaf, self.leaves, self.rng)

    def labelled(self, split: str, total: int, minimum: int) -> None:
        for leaf, count in enumerate(np.maximum(minimum, np.round(total * self.weights).astype(int))):
            for _ in range(int(count)):
                product = self.product(leaf)
                for view in range(int(self.rng.integers(1, 4))):
                    self.shots.append((split, product, view))

    def retrieval(self) -> None:
        size, n_leaves = self.size, len(self.leaves)
        query_p = np.sqrt(self.weights) / np.sqrt(self.weights).sum()
        self.index_shots: list[tuple[Product, int]] = []
        self.queries: list[Product] = []
        for _ in range(size.query_products):
            product = self.product(int(self.rng.choice(n_leaves, p=query_p)))
            self.queries.append(product)
            matches = int(self.rng.choice([1, 2, 3, 4], p=[0.35, 0.3, 0.2, 0.15]))
            self.index_shots += [(product, view) for view in range(1, matches + 1)]
            for _ in range(int(self.rng.integers(size.lookalikes[0], size.lookalikes[1] + 1))):
                twin = self.product(product.leaf, base=product)
                self.index_shots += [(twin, view) for view in range(int(self.rng.integers(1, 3)))]
        for _ in range(size.random_distractors):
            product = self.product(int(self.rng.choice(n_leaves, p=self.weights)))
            self.index_shots += [(product, view) for view in range(int(self.rng.integers(1, 3)))]


@dataclass(frozen=True)
class SynthPlan:
    """Everything a synthetic catalog will contain, before any image is drawn."""

    seed: int
    size_name: str
    size: SynthSize
    leaves: tuple[Leaf, ...]
    frames: dict[str, pd.DataFrame]  # train, val, query, index, groundtruth rows
    jobs: tuple[tuple[str, Product, int], ...]  # (relative path, product, view) for every image


def plan_synthetic(seed: int = 0, size: str | SynthSize = "small") -> SynthPlan:
    """The rows and products of a synthetic catalog (no drawing); `make_synthetic_catalog` writes it."""
    if seed < 0:
        raise EproductError(f"seed must be 0 or more, got {seed}.")
    if isinstance(size, str):
        if size not in SIZES:
            raise EproductError(f"Unknown synthetic size {size!r}; use one of {', '.join(SIZES)}.")
        size_name, size = size, SIZES[size]
    else:
        size_name = "custom"
    builder = _Builder(seed, size)
    builder.labelled("train", size.train_products, 2)
    builder.labelled("val", size.val_products, 1)
    builder.retrieval()
    frames, jobs = _plan_rows(builder)
    return SynthPlan(seed, size_name, size, tuple(builder.leaves), frames, tuple(jobs))


def _write_images(out: Path, plan: SynthPlan, progress: CountProgress | None) -> None:
    current: tuple[int, Image.Image | None] = (-1, None)
    side = plan.size.image_px
    for done, (relative, product, view) in enumerate(plan.jobs, start=1):
        if current[0] != product.number:  # photos of one product are mostly consecutive
            current = (product.number, render_product(product, plan.leaves[product.leaf], side * 2))
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = current[1]
        assert picture is not None  # rendered above for this product
        path.write_bytes(shoot(picture, np.random.default_rng([plan.seed, product.number, view]), side))
        if progress is not None and (done % 50 == 0 or done == len(plan.jobs)):
            progress(done, len(plan.jobs))


def prepare_output(out: str | Path, overwrite: bool) -> Path:
    """`out` as a Path, created; refuse an existing non-empty folder unless `overwrite`."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise EproductError(
            f"{out} already exists and is not an empty folder. Choose a new folder or pass --overwrite."
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def make_synthetic_catalog(
    out: str | Path,
    seed: int = 0,
    size: str | SynthSize = "small",
    progress: CountProgress | None = None,
    overwrite: bool = False,
) -> Path:
    """Draw a synthetic catalog into `out` (created) and return it.

    `size`: "tiny" (~400 images, for tests), "small" (the demo, ~5,000), "medium" (~5x small),
    or a `SynthSize`. `progress(done, total)` is called while images are written. An existing
    non-empty `out` is refused unless `overwrite` (then files are overwritten in place).
    """
    from .catalog import write_catalog

    plan = plan_synthetic(seed, size)
    out = prepare_output(out, overwrite)
    _write_images(out, plan, progress)
    write_catalog(out, **plan.frames)
    info = {
        "generator": "eproduct synthetic",
        "seed": seed,
        "size": plan.size_name,
        "config": asdict(plan.size),
        "rows": {name: len(frame) for name, frame in plan.frames.items()},
    }
    (out / "synthetic.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info("synthetic catalog (%s, seed %d) in %s: %s", plan.size_name, seed, out, info["rows"])
    return out


def _plan_rows(builder: _Builder) -> tuple[dict[str, pd.DataFrame], list[tuple[str, Product, int]]]:
    jobs: list[tuple[str, Product, int]] = []
    rows: dict[str, list[dict]] = {"train": [], "val": [], "query": [], "index": []}
    prefix = {"train": "tr", "val": "va", "query": "q", "index": "ix"}

    def add(split: str, product: Product, view: int, labelled: bool) -> str:
        number = len(rows[split]) + 1
        image_id, relative = f"{prefix[split]}{number:06d}", f"images/{split}/{number:06d}.jpg"
        row = {"image_id": image_id, "path": relative}
        if labelled:
            leaf = builder.leaves[product.leaf]
            row = {
                "image_id": image_id,
                "meta": leaf.meta,
                "level2": leaf.level2,
                "leaf": leaf.name,
                "title": _title(product, leaf),
                "path": relative,
                "product_id": f"p{product.number:06d}",
            }
        rows[split].append(row)
        jobs.append((relative, product, view))
        return image_id

    for split, product, view in builder.shots:
        add(split, product, view, labelled=True)
    query_ids = {product.number: add("query", product, 0, False) for product in builder.queries}
    truth = []
    for position in builder.rng.permutation(len(builder.index_shots)):
        product, view = builder.index_shots[int(position)]
        index_id = add("index", product, view, False)
        if product.number in query_ids:
            truth.append({"query_id": query_ids[product.number], "index_id": index_id})
    truth_frame = pd.DataFrame(truth, columns=["query_id", "index_id"]).sort_values(["query_id", "index_id"])
    frames = {name: pd.DataFrame(value) for name, value in rows.items()}
    frames["groundtruth"] = truth_frame.reset_index(drop=True)
    return frames, jobs
