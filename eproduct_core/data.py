"""Torch-side data: the catalog image Dataset, the train/val split, batch augmentation and sampling.

Images are decoded with `images.load_image`, resized to the run's square input size and kept as uint8
(3, S, S) tensors (an in-memory cache makes later epochs free when `workers` is 0). The model takes
float images in [0, 1] and normalises them itself. Augmentation runs on whole batches (one random
affine or homography per image via `grid_sample`), which is far cheaper on a CPU than per-image PIL
transforms; only blur, JPEG and erasing go image by image. These training augmentations share no code or
parameters with the catalogs' photo models (`photo_models.py`; a test checks it).
A file that cannot be decoded is reported and skipped (`valid` False), never fatal unless strict.
"""

from __future__ import annotations

import io
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


FAMILIES = (
    "affine",
    "rotate",
    "flip",
    "perspective",
    "colour",
    "blur",
    "jpeg",
    "erase",
    "backdrop",
    "tint",
    "capture",
)  # for mode "robust"; "tint" is drawn once per image and shared by its views (`shared_tint`)
DEFAULT_FAMILIES = FAMILIES[:-1]  # robust's default (config.AUGMENT_FAMILIES): all but "capture"


def augment(
    images: torch.Tensor,
    mode: str,
    generator: torch.Generator | None = None,
    families: tuple[str, ...] | str = DEFAULT_FAMILIES,
) -> torch.Tensor:
    """Augment a float (B, 3, S, S) batch in [0, 1].

    "light"/"strong": random scale, rotation, shear and shift (+ colour and noise for "strong"), no flips.
    "robust": the chosen `families` (a tuple or a comma list of FAMILIES), each drawn per image:
    affine (scale 0.6-1.05, shear, shift), rotate (up to +-40 deg), flip (mirror, p 0.5), perspective
    (random homography), colour (per-channel gains: grey items become coloured; brightness, contrast,
    saturation), blur (down- and up-sampling, p 0.5), jpeg (quality 10-60, p 0.5), erase (a random
    rectangle of noise or colour, p 0.5), backdrop (the background, told from the item by its distance
    to the border colour, replaced by a random texture, p 0.8), capture (a low-resolution capture:
    down-sampled to 0.3-1.0 of the side, JPEG-compressed there at quality 10-70, up-sampled back, p 0.5;
    not in the default). "tint" is not drawn here: it is one colour per training image that all its views
    share (`shared_tint`), as one product keeps its colour.
    """
    if mode == "none":
        return images
    if mode == "robust":
        return _robust(
            images, generator, tuple(f for f in (families.split(",") if isinstance(families, str) else families) if f)
        )
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


def _rand(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator) * (high - low) + low


def _geometry(images: torch.Tensor, generator: torch.Generator | None, families: tuple[str, ...]) -> torch.Tensor:
    """One sampling grid per image: a homography built from the geometric families asked for."""
    b, _, h, w = images.shape
    matrix = torch.eye(3).repeat(b, 1, 1)
    if "affine" in families:
        scale, shear = _rand((b,), 0.6, 1.05, generator), _rand((b,), -0.15, 0.15, generator)
        matrix[:, 0, 0], matrix[:, 1, 1] = 1 / scale, 1 / scale
        matrix[:, 0, 1] = shear / scale
        matrix[:, :2, 2] = _rand((b, 2), -0.15, 0.15, generator)
    if "rotate" in families:
        angle = _rand((b,), -0.7, 0.7, generator)
        turn = torch.zeros(b, 3, 3)
        turn[:, 0, 0], turn[:, 0, 1], turn[:, 1, 0], turn[:, 1, 1] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
        turn[:, 2, 2] = 1
        matrix = turn @ matrix
    if "flip" in families:
        mirror = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
        matrix[:, :, 0] = matrix[:, :, 0] * mirror.view(b, 1)
    if "perspective" in families:
        matrix[:, 2, :2] = _rand((b, 2), -0.2, 0.2, generator)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, -1, 3)
    mapped = points @ matrix.transpose(1, 2)
    grid = (mapped[..., :2] / mapped[..., 2:].clamp(min=0.2)).view(b, h, w, 2)
    return F.grid_sample(images, grid.to(images.device), mode="bilinear", padding_mode="zeros", align_corners=True)


def _colour(images: torch.Tensor, generator: torch.Generator | None, mild: bool) -> torch.Tensor:
    """Per-view colour change; `mild` (with a shared tint: the views keep their product's colour) or strong."""
    b = images.shape[0]
    low, high, least = (0.8, 1.15, 0.6) if mild else (0.3, 1.3, 0.0)
    gains = _rand((b, 3, 1, 1), low, high, generator).to(images.device)
    grey = images.mean(dim=1, keepdim=True)
    saturation = _rand((b, 1, 1, 1), least, 1.5, generator).to(images.device)
    out = (grey + (images - grey) * saturation) * gains
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _rand((b, 1, 1, 1), 0.5, 1.4, generator).to(images.device)
    brightness = _rand((b, 1, 1, 1), 0.6, 1.3, generator).to(images.device)
    return ((out - mean) * contrast + mean) * brightness


def _per_image(images: torch.Tensor, generator: torch.Generator | None, family: str) -> torch.Tensor:
    """blur / jpeg / erase / capture: one image at a time, each with probability 0.5."""
    out = images.clone()
    size = images.shape[-1]
    for i in torch.nonzero(torch.rand(images.shape[0], generator=generator) < 0.5).flatten().tolist():
        if family == "blur":
            side = max(8, int(size * float(_rand((1,), 0.25, 0.8, generator))))
            low = F.interpolate(out[i : i + 1], size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            out[i] = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[0]
        elif family == "jpeg":
            out[i] = _jpeg(out[i], int(torch.randint(10, 61, (1,), generator=generator)))
        elif family == "capture":  # JPEG blocks and ringing at the capture's scale, not the training size's
            side = max(8, int(size * float(_rand((1,), 0.3, 1.0, generator))))
            low = F.interpolate(out[i : i + 1], size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            low = _jpeg(low[0], int(torch.randint(10, 71, (1,), generator=generator)))[None]
            out[i] = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[0]
        else:  # erase
            eh, ew = (int(size * float(_rand((1,), 0.15, 0.5, generator))) for _ in range(2))
            top, left = (int(torch.randint(0, size - e + 1, (1,), generator=generator)) for e in (eh, ew))
            fill = (
                torch.rand((3, eh, ew), generator=generator)
                if float(torch.rand(1, generator=generator)) < 0.5
                else (torch.rand((3, 1, 1), generator=generator).expand(3, eh, ew))
            )
            out[i, :, top : top + eh, left : left + ew] = fill.to(out.device)
    return out


def _jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """One (3, H, W) image in [0, 1] through a JPEG round trip at `quality`."""
    pixels = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1).float().div(255.0).to(image.device)


def shared_tint(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One random colour per image, for all its views: grey images are coloured, coloured ones hue-turned.

    The channels are mixed by a random rotation about the grey axis (a hue turn), then grey items (all
    channels equal) are multiplied by a random saturated colour, so a grey catalog trains on coloured
    products whose two views agree on the colour.
    """
    b = images.shape[0]
    angle = _rand((b,), 0.0, 2 * math.pi, generator)
    axis = torch.full((3,), 1 / math.sqrt(3.0))
    cross = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    outer = torch.outer(axis, axis)
    cos, sin = angle.cos().view(b, 1, 1), angle.sin().view(b, 1, 1)
    rotation = cos * torch.eye(3) + sin * cross + (1 - cos) * outer  # Rodrigues: (B, 3, 3)
    turned = torch.einsum("bij,bjhw->bihw", rotation.to(images.device), images)
    colour = _rand((b, 3, 1, 1), 0.15, 1.0, generator)
    colour = colour / colour.amax(dim=1, keepdim=True)  # one channel at full strength
    grey = (images.amax(dim=1) - images.amin(dim=1)).mean(dim=(1, 2)) < 0.02
    coloured = images.mean(dim=1, keepdim=True) * colour.to(images.device) * 1.3
    return torch.where(grey.view(b, 1, 1, 1), coloured, turned).clamp(0.0, 1.0)


def _foreground(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) soft mask of the item: pixels far from the median colour of the image's border."""
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], dim=-1)
    background = border.median(dim=-1).values.view(images.shape[0], 3, 1, 1)
    distance = (images - background).abs().amax(dim=1, keepdim=True)
    return ((distance - 0.04) / 0.08).clamp(0.0, 1.0)


def _texture(b: int, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """(B, 3, size, size) random backdrops: a grating, checks or smooth noise between two random colours."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    angle = _rand((b, 1, 1), 0.0, math.pi, generator)
    frequency = _rand((b, 1, 1), 3.0, 14.0, generator)
    grating = 0.5 + 0.5 * torch.sin(2 * math.pi * frequency * (xs * angle.cos() + ys * angle.sin()))
    checks = ((xs * frequency).floor() + (ys * frequency).floor()).remainder(2)
    noise = F.interpolate(torch.rand((b, 1, 5, 5), generator=generator), size=(size, size), mode="bicubic")[:, 0]
    kind = torch.randint(0, 3, (b, 1, 1), generator=generator)
    mix = torch.where(kind == 0, grating, torch.where(kind == 1, checks, noise.clamp(0, 1))).unsqueeze(1)
    first = torch.rand((b, 3, 1, 1), generator=generator)
    second = (first + _rand((b, 3, 1, 1), -0.35, 0.35, generator)).clamp(0, 1)
    return first * mix + second * (1 - mix)


def _robust(images: torch.Tensor, generator: torch.Generator | None, families: tuple[str, ...]) -> torch.Tensor:
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise EproductError(f"Unknown augmentation families {unknown}. Choose from {', '.join(FAMILIES)}.")
    out = images
    backdrop = "backdrop" in families
    if backdrop:  # the mask travels through the geometry with the image (outside the frame is background)
        out = torch.cat([out, _foreground(out)], dim=1)
    if {"affine", "rotate", "flip", "perspective"} & set(families):
        out = _geometry(out, generator, families)
    if backdrop:
        out, mask = out[:, :3], out[:, 3:]
        keep = (torch.rand((out.shape[0], 1, 1, 1), generator=generator) < 0.2).to(out.device)
        texture = _texture(out.shape[0], out.shape[-1], generator).to(out.device)
        out = torch.where(keep, out, out * mask + texture * (1 - mask))
    if "colour" in families:
        out = _colour(out, generator, mild="tint" in families)
    out = out.clamp(0.0, 1.0)
    for family in ("erase", "blur", "jpeg", "capture"):
        if family in families:
            out = _per_image(out, generator, family)
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
