"""Torch-side data: the catalog image Dataset, the train/val split, batch augmentation and sampling.

Images are decoded with `images.load_image`, resized to the run's square input size and kept as uint8
(3, S, S) tensors (an in-memory cache makes later epochs free when `workers` is 0). The model takes
float images in [0, 1] and normalises them itself. Augmentation runs on whole batches (one random
affine per image via `affine_grid`), which is far cheaper on a CPU than per-image PIL transforms.
A file that cannot be decoded is reported and skipped (`valid` False), never fatal unless strict.
"""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Sampler

from .catalog import Catalog, resolve_image
from .errors import EproductError
from .images import load_image

log = logging.getLogger(__name__)


def to_uint8_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """An RGB PIL image resized to size x size as a uint8 (3, size, size) tensor (the seed's resize)."""
    resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float32 in [0, 1]."""
    return batch.float().div_(255.0)


class CatalogImages(Dataset):
    """Rows of one catalog split: item i -> (uint8 image (3, S, S), i, valid)."""

    def __init__(
        self, catalog: Catalog, frame: pd.DataFrame, size: int, strict: bool = False, cache: bool = False
    ) -> None:
        self.root = catalog.images  # image paths resolve here (catalog.json's image_root, else the folder)
        self.paths = frame["path"].tolist()
        self.size = size
        self.strict = strict
        self.cache: dict[int, tuple[torch.Tensor, bool]] | None = {} if cache else None
        self.bad: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, bool]:
        if self.cache is not None and i in self.cache:
            image, valid = self.cache[i]
            return image, i, valid
        try:
            image, valid = to_uint8_tensor(load_image(resolve_image(self.root, self.paths[i])), self.size), True
        except EproductError as err:
            if self.strict:
                raise
            log.warning("skipping unreadable image: %s", err)
            self.bad[i] = str(err)
            image, valid = torch.full((3, self.size, self.size), 127, dtype=torch.uint8), False
        if self.cache is not None:
            self.cache[i] = (image, valid)
        return image, i, valid


def split_train_val(
    catalog: Catalog, val_fraction: float, max_train_images: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """train.csv rows to train on and rows to validate on (val.csv, or a seeded hold-out of train.csv)."""
    train = catalog.train.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    if catalog.val is not None and len(catalog.val):
        val = catalog.val.reset_index(drop=True)
    elif val_fraction > 0 and len(train) >= 10:
        order = rng.permutation(len(train))
        n_val = max(1, int(round(len(train) * val_fraction)))
        val, train = train.iloc[order[:n_val]].reset_index(drop=True), train.iloc[order[n_val:]].reset_index(drop=True)
    else:
        val = train.iloc[:0]
    if max_train_images and len(train) > max_train_images:
        keep = np.sort(rng.choice(len(train), size=max_train_images, replace=False))
        train = train.iloc[keep].reset_index(drop=True)
    if train.empty:
        raise EproductError(
            "No training images left (train.csv is empty or max_train_images is 0). Add images to train.csv."
        )
    return train, val


def augment(images: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random scale, rotation, shear and shift (+ colour for "strong") on a float (B, 3, S, S) batch in [0, 1].

    No flips: a mirrored product is a different product for instance retrieval (a print on the left
    vs. on the right), and catalog photos keep their orientation.
    """
    if mode == "none":
        return images
    b, device = images.shape[0], images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * (high - low) + low).to(device)

    smallest, shift, turn = (0.8, 0.1, 0.15) if mode == "light" else (0.6, 0.15, 0.25)
    scale, angle, shear = uniform(smallest, 1.05), uniform(-turn, turn), uniform(-turn / 2, turn / 2)
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = scale * torch.cos(angle)
    theta[:, 0, 1] = -scale * torch.sin(angle + shear)
    theta[:, 1, 0] = scale * torch.sin(angle)
    theta[:, 1, 1] = scale * torch.cos(angle + shear)
    theta[:, 0, 2] = uniform(-shift, shift)
    theta[:, 1, 2] = uniform(-shift, shift)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightness = uniform(0.8, 1.2).view(b, 1, 1, 1) if mode == "light" else uniform(0.65, 1.35).view(b, 1, 1, 1)
    contrast = uniform(0.8, 1.2).view(b, 1, 1, 1) if mode == "light" else uniform(0.65, 1.35).view(b, 1, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * contrast + mean) * brightness
    if mode == "strong":
        noise = torch.randn(out.shape, generator=generator).to(device) * 0.03
        out = out + noise * (uniform(0, 1) < 0.3).float().view(b, 1, 1, 1)
    return out.clamp_(0.0, 1.0)


class EpochSampler(Sampler[int]):
    """Seeded per-epoch sampling, optionally class-balanced, split across `world` ranks.

    Balanced: indices drawn with probability 1 / count(leaf), so rare leaves are seen as often as
    common ones (the long tail). Every rank draws the same permutation and takes its own slice,
    padded to equal length, so DDP ranks step in lockstep.
    """

    def __init__(self, labels: np.ndarray, balanced: bool, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n = len(labels)
        self.balanced = balanced
        self.seed, self.rank, self.world = seed, rank, world
        counts = np.bincount(labels) if len(labels) else np.zeros(0)
        self.weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double) if balanced else None
        self.per_rank = math.ceil(self.n / world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.per_rank * self.world, replacement=True, generator=generator)
        else:
            order = torch.randperm(self.n, generator=generator)
            need = self.per_rank * self.world
            if len(order) < need:  # pad by repeating the permutation (more than once when world > n)
                order = order.repeat(-(-need // len(order)))[:need]
        return iter(order[self.rank :: self.world].tolist())


class ResumableSampler(Sampler[int]):
    """Wraps a per-epoch sampler and skips the first `start` indices of the current epoch.

    A run resumed at step s of an epoch sets `start = s * batch_size`, so the loader yields exactly the
    batches s, s+1, ... that the uninterrupted run would have drawn in that epoch.
    """

    def __init__(self, base: Sampler[int]) -> None:
        self.base = base
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.base.set_epoch(epoch)  # type: ignore[attr-defined]
        self.start = start

    def __len__(self) -> int:
        return max(0, len(self.base) - self.start)  # type: ignore[arg-type]

    def __iter__(self):
        return itertools.islice(iter(self.base), self.start, None)
