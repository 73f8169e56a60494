"""Embedding images with a trained run: `load_run`, `embed_images` (one query, fast), `embed_split` (a catalog split).

Kinds (see ARCHITECTURE.md):
  seed         predicted meta id, predicted level-2 id, then the leaf probability vector (2 + n_leaf dims),
               exactly the seed report's 1002-d vector for 1000 leaves
  seed-3d      the three predicted class ids (the report's first submission)
  penultimate  pooled backbone features
  metric       the metric head's L2-normalised embedding (runs trained with a metric head only)
`embed_split` writes an embeddings folder with `eproduct_core.embeddings`; `part=(i, n)` embeds the i-th
of n contiguous row blocks, so parallel jobs (or torchrun ranks) each write their own shards.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from .atomic import write_text_atomic
from .catalog import read_catalog
from .config import TTA_MODES, TrainConfig
from .data import CatalogImages, to_float, to_uint8_tensor
from .distributed import resolve_device
from .embed_parts import marker_name, shard_prefix, write_marker
from .embeddings import write_meta, write_shard
from .errors import EproductError
from .model import ModelSpec, ProductModel, mixed_precision
from .progress import Progress
from .run_folder import load_checkpoint
from .taxonomy import Taxonomy

log = logging.getLogger(__name__)

KINDS = ("seed", "seed-3d", "penultimate", "metric")
SHARD_ROWS = 50_000  # rows per written shard file


@dataclass
class RunBundle:
    """A trained run ready to embed: the model in eval mode and what describes it."""

    model: ProductModel
    taxonomy: Taxonomy
    config: TrainConfig
    spec: ModelSpec
    device: torch.device
    run_dir: Path

    def transform(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> uint8 (3, S, S) tensor at the run's input size."""
        return to_uint8_tensor(image, self.spec.image_size)

    def dim(self, kind: str) -> int:
        check_kind(self, kind)
        return {
            "seed": 2 + self.spec.sizes[-1],
            "seed-3d": 3,
            "penultimate": self.model.feature_dim,
            "metric": self.spec.metric_dim,
        }[kind]


def load_run(run_dir: str | Path, device: str = "auto") -> RunBundle:
    """Rebuild a run's model from its checkpoint (weights_only load) on `device`, in eval mode."""
    run_dir = Path(run_dir)
    state = load_checkpoint(run_dir, "cpu")
    try:
        spec = ModelSpec.from_dict(state["model_spec"])
        taxonomy = Taxonomy.from_dict(state["taxonomy"])
        config = TrainConfig.from_dict(state["config"])
    except (KeyError, TypeError) as err:
        raise EproductError(
            f"{run_dir} holds a checkpoint without model config or taxonomy ({err}). Re-run `eproduct train`."
        ) from err
    model = ProductModel(spec, weights="none")
    model.load_state_dict(state["model_state"])
    target = resolve_device(device, int(os.environ.get("LOCAL_RANK", "0")))  # torchrun: one GPU per rank
    model = model.to(target).to(memory_format=torch.channels_last).eval()  # as trained (train.py): faster on CPU too
    return RunBundle(model=model, taxonomy=taxonomy, config=config, spec=spec, device=target, run_dir=run_dir)


def check_kind(bundle: RunBundle, kind: str) -> None:
    if kind not in KINDS:
        raise EproductError(f"Unknown embedding kind {kind!r}. Choose one of {', '.join(KINDS)}.")
    if kind == "metric" and not bundle.spec.metric:
        raise EproductError(
            f"Run {bundle.run_dir} has no metric head, so it cannot embed kind 'metric'. "
            "Use kind seed or penultimate, or train with a preset that has one (fast-demo, best)."
        )
    if kind in ("seed", "seed-3d") and not bundle.spec.dhc:
        raise EproductError(
            f"Run {bundle.run_dir} has no DHC heads, so it cannot embed kind {kind!r}. Use metric or penultimate."
        )


def vectors_from_outputs(outputs: dict, kind: str) -> torch.Tensor:
    """float32 (B, d) embedding of `kind` from a model's output dict."""
    if kind == "penultimate":
        return outputs["features"].float()
    if kind == "metric":
        return outputs["embedding"].float()
    logits = outputs["logits"]
    ids = [level.argmax(dim=1, keepdim=True).float() for level in logits]
    if kind == "seed-3d":
        return torch.cat(ids, dim=1)
    return torch.cat([ids[0], ids[1], logits[-1].float().softmax(dim=1)], dim=1)


def check_tta(tta: str) -> str:
    if tta not in TTA_MODES:
        raise EproductError(f"Unknown test-time augmentation {tta!r}. Choose one of {', '.join(TTA_MODES)}.")
    return tta


TTA_VIEWS = {  # config.TTA_MODES -> the views whose penultimate/metric vectors are averaged
    "none": ("image",),
    "flip": ("image", "mirror"),
    "multicrop": ("image", "mirror", "centre", "centre-mirror", "rotate+20", "rotate-20"),
}
CENTRE_CROP = 0.8  # side of the "centre" view's crop, as a fraction of the image, resized back up


def tta_view(images: torch.Tensor, view: str) -> torch.Tensor:
    """One test-time view (TTA_VIEWS) of a float (B, C, S, S) batch, the same size."""
    if view == "image":
        return images
    if view == "mirror":
        return images.flip(-1)
    if view == "centre-mirror":
        return tta_view(images, "centre").flip(-1)
    if view == "centre":
        side = images.shape[-1]
        margin = int(round(side * (1 - CENTRE_CROP) / 2))
        crop = images[..., margin : side - margin, margin : side - margin]
        return torch.nn.functional.interpolate(crop, size=(side, side), mode="bilinear", align_corners=False)
    from torchvision.transforms.v2 import functional as tvf

    return tvf.rotate(images, float(view.removeprefix("rotate")), interpolation=tvf.InterpolationMode.BILINEAR)


@torch.inference_mode()
def batch_vectors(bundle: RunBundle, images: torch.Tensor, kinds: Sequence[str], tta: str = "none") -> dict:
    """{kind: float32 (B, d) tensor} for a float image batch; tta "flip" / "multicrop" averages the
    penultimate/metric vectors of each image's TTA_VIEWS (metric vectors unit-normalised first; seed kinds
    are class predictions of the image itself, unaveraged)."""
    images = images.to(bundle.device).contiguous(memory_format=torch.channels_last)
    views = TTA_VIEWS[check_tta(tta)]
    with mixed_precision(bundle.device, bundle.config.precision):
        outputs = [bundle.model(tta_view(images, view)) for view in views]
    vectors = {}
    for kind in kinds:
        if kind not in ("penultimate", "metric"):
            vectors[kind] = vectors_from_outputs(outputs[0], kind).float()
            continue
        each = [vectors_from_outputs(out, kind).float() for out in outputs]
        if kind == "metric" and len(each) > 1:
            each = [torch.nn.functional.normalize(v, dim=1) for v in each]
        vectors[kind] = torch.stack(each).mean(dim=0)
    return vectors


def _embed_batch(bundle: RunBundle, batch: torch.Tensor, kind: str, tta: str = "none") -> np.ndarray:
    return batch_vectors(bundle, to_float(batch), [kind], tta)[kind].cpu().numpy()


def embed_images(
    bundle: RunBundle, images: Sequence[Image.Image], kind: str, threads: int | None = None, tta: str | None = None
) -> np.ndarray:
    """float32 (n, d) embeddings of PIL images (e.g. the app's uploaded query).

    `threads`: CPU threads for this call (restored afterwards); None uses 1 thread for a few images
    (one query on a shared machine is fastest without thread hand-offs) and leaves larger batches alone.
    `tta`: test-time augmentation ("none", "flip" or "multicrop"); None takes the run's `embed_tta`.
    """
    check_kind(bundle, kind)
    if not images:
        return np.zeros((0, bundle.dim(kind)), np.float32)
    batch = torch.stack([bundle.transform(image) for image in images])
    wanted = threads if threads is not None else (1 if len(images) <= 8 else None)
    previous = torch.get_num_threads()
    change = bundle.device.type == "cpu" and wanted is not None and wanted != previous
    if change and wanted is not None:
        torch.set_num_threads(wanted)
    try:
        return _embed_batch(bundle, batch, kind, tta or bundle.config.embed_tta).astype(np.float32)
    finally:
        if change:
            torch.set_num_threads(previous)


def embed_kinds(
    bundle: RunBundle,
    catalog_dir: str | Path,
    split: str,
    kinds: Sequence[str],
    batch_size: int = 128,
    tta: str | None = None,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """In memory, one pass: {kind: float32 (n, d)} for every readable image of a split, and their ids.

    `tta`: "none", "flip" or "multicrop" (see `batch_vectors`); None takes the run's `embed_tta`."""
    for kind in kinds:
        check_kind(bundle, kind)
    catalog = read_catalog(catalog_dir)
    frame = catalog.split(split).reset_index(drop=True)
    loader = DataLoader(CatalogImages(catalog, frame, bundle.spec.image_size), batch_size=batch_size, shuffle=False)
    blocks: dict[str, list[np.ndarray]] = {kind: [] for kind in kinds}
    ids: list[str] = []
    with torch.inference_mode():
        for images, index, valid in loader:
            vectors = batch_vectors(bundle, to_float(images[valid]), kinds, tta or bundle.config.embed_tta)
            for kind in kinds:
                blocks[kind].append(vectors[kind].cpu().numpy())
            ids.extend(frame["image_id"].iat[int(r)] for r in index[valid].tolist())
    return {kind: np.concatenate(parts) for kind, parts in blocks.items()}, ids


def parse_part(text: str | None) -> tuple[int, int]:
    """'i/n' (0-based i) -> (i, n); None -> the torchrun rank/world, or (0, 1)."""
    if text is None:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as err:
        raise EproductError(f"--part {text!r} must look like i/n, e.g. 0/4 (i counts from 0).") from err
    if not (n >= 1 and 0 <= i < n):
        raise EproductError(f"--part {text!r}: need n >= 1 and 0 <= i < n.")
    return i, n


def embed_split(
    run_dir: str | Path,
    catalog_dir: str | Path,
    split: str,
    kind: str,
    out_dir: str | Path,
    batch_size: int = 64,
    device: str = "auto",
    part: tuple[int, int] = (0, 1),
    progress: Progress | None = None,
    strict: bool = False,
    workers: int = 0,
    prefetch_factor: int = 2,
    tta: str | None = None,
) -> Path:
    """Embed one split (index, query, train, val) of a catalog into the embeddings folder `out_dir`.

    `part=(i, n)`: only the i-th of n contiguous row blocks; the part's shards are replaced, and its marker
    (embed_parts.py) is written last, so `embed merge` can tell a finished part from a killed one.
    `workers` DataLoader processes decode images ahead of the model (`prefetch_factor` batches each).
    `tta`: test-time augmentation ("none", "flip" or "multicrop"); None takes the run's `embed_tta`.
    """
    i, n = part
    if split not in ("index", "query", "train", "val"):
        raise EproductError(f"Unknown split {split!r}. Choose index, query, train or val.")
    bundle = load_run(run_dir, device)
    check_kind(bundle, kind)
    tta = check_tta(tta or bundle.config.embed_tta)
    catalog = read_catalog(catalog_dir)
    frame = catalog.split(split)
    split_rows = len(frame)
    rows = np.array_split(np.arange(len(frame)), n)[i]
    frame = frame.iloc[rows].reset_index(drop=True)
    dataset = CatalogImages(catalog, frame, bundle.spec.image_size, strict=strict)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        pin_memory=bundle.device.type == "cuda",
    )
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EproductError(f"--out {out} is a file; give a folder for the embeddings.")
    out.mkdir(parents=True, exist_ok=True)
    prefix = shard_prefix(i, n)
    for old in [out / marker_name(i, n), *out.glob(f"vectors-{prefix}*"), *out.glob(f"ids-{prefix}*")]:
        old.unlink(missing_ok=True)  # a re-run replaces this part
    ids_all = frame["image_id"].tolist()
    paths_all = frame["path"].tolist()
    blocks: list[np.ndarray] = []
    ids: list[str] = []
    shard, done, embedded = 0, 0, 0
    names: list[str] = []
    bad: list[str] = []

    def flush(force: bool = False) -> None:
        nonlocal blocks, ids, shard, embedded
        if ids or force:
            name = f"{prefix}{shard:05d}"
            vectors = np.concatenate(blocks) if blocks else np.zeros((0, bundle.dim(kind)), np.float32)
            write_shard(out, name, vectors, ids)
            names.append(name)
            embedded += len(ids)
            shard, blocks, ids = shard + 1, [], []

    for images, index, valid in loader:
        vectors = _embed_batch(bundle, images, kind, tta)
        keep = valid.numpy()
        bad.extend(paths_all[int(r)] for r in index[~valid].tolist())
        blocks.append(vectors[keep])
        ids.extend(ids_all[int(r)] for r in index[valid].tolist())
        done += len(index)
        if len(ids) >= SHARD_ROWS:
            flush()
        if progress is not None:
            progress(done / max(1, len(frame)), f"{done}/{len(frame)} {split} images")
    flush(force=not names)  # a part with no readable image still writes one (empty) shard
    if bad:
        log.warning(
            "%d unreadable image(s) in %s were skipped (listed in meta.json): first %s", len(bad), split, bad[0]
        )
    # meta.json must be identical from every part; with several parts each lists its bad files beside it
    extra = {"bad_files": bad} if n == 1 else {"bad_files": f"bad-files-part{i:04d}-of{n:04d}.json (one per part)"}
    if n > 1:
        write_text_atomic(out / f"bad-files-part{i:04d}-of{n:04d}.json", json.dumps(bad))
    write_meta(
        out,
        kind,
        bundle.dim(kind),
        split=split,
        run=str(Path(run_dir).resolve()),
        preset=bundle.config.preset,
        catalog=str(Path(catalog_dir).resolve()),
        backbone=bundle.spec.backbone,
        image_size=bundle.spec.image_size,
        tta=tta,
        parts=n,
        **extra,
    )
    write_marker(
        out,
        part=i,
        parts=n,
        rows=len(frame),
        split_rows=split_rows,
        embedded=embedded,
        bad_files=bad,
        shards=names,
        kind=kind,
        dim=bundle.dim(kind),
        run=str(Path(run_dir).resolve()),
        catalog=str(Path(catalog_dir).resolve()),
        split=split,
    )
    return out
