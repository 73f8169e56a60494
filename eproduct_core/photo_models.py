"""Catalog photo models: how a 28x28 Fashion-MNIST item becomes a query/index "photo" (numpy + PIL only).

Two cameras, chosen with `make_fashion_mnist_catalog(..., photo_model=...)`:

- `studio` (the original catalog): a mild affine warp (rotation +-8 deg, shear, scale, shift),
  brightness/contrast, slight noise and sometimes a slight blur; grayscale.
- `field`: a camera this project's training never imitates, written independently of the training
  augmentations (`data.py`) and sharing no code or parameters with them (a test inspects both modules):
  each *product* gets its own colour (query and index views of one product share it); each *view* gets a
  textured backdrop (stripes, checks or blotches in two nearby tones), a horizontal mirror half of the time,
  a rotation up to +-35 deg, a perspective warp (corners moved up to 10% of the side), a scale of 0.75-1.0,
  a partial occluder (a bar or disc over ~5-13% of the frame) 40% of the time, a low-resolution capture
  (down to 24-40 px and back) and a strong JPEG (quality 12-35).

Both return a PIL image of `IMAGE_PX` x `IMAGE_PX`; the randomness comes from the generators passed in,
so a catalog is reproducible from its seed.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

IMAGE_PX = 56  # saved image side (2x the original 28 px)
WORK_PX = 112  # views are drawn at 4x, then downsampled to IMAGE_PX
PHOTO_MODELS = ("studio", "field")
FIELD_STEPS = ("colour", "backdrop", "mirror", "rotate", "scale", "perspective", "light", "occluder", "lowres", "jpeg")


def studio_view(item: np.ndarray, product_rng: np.random.Generator, view_rng: np.random.Generator) -> Image.Image:
    """One mild, realistic grayscale view: affine warp, scale, shift, brightness/contrast, blur, noise."""
    del product_rng  # the studio camera has no per-product parameters
    rng = view_rng
    big = Image.fromarray(item).resize((WORK_PX, WORK_PX), Image.Resampling.BICUBIC)
    angle = math.radians(rng.uniform(-8, 8))
    shear, scale = rng.uniform(-0.06, 0.06), rng.uniform(0.9, 1.1)
    shift = rng.uniform(-0.06, 0.06, size=2) * WORK_PX
    forward = (
        scale
        * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        @ np.array([[1, shear], [0, 1]])
    )
    inverse = np.linalg.inv(forward)
    centre = np.array([WORK_PX / 2, WORK_PX / 2])
    offset = centre - inverse @ (centre + shift)
    warped = big.transform(
        big.size, Image.Transform.AFFINE, (*inverse[0], offset[0], *inverse[1], offset[1]), Image.Resampling.BILINEAR
    )
    pixels = np.asarray(warped.resize((IMAGE_PX, IMAGE_PX), Image.Resampling.BILINEAR), np.float64)
    pixels = (pixels - pixels.mean()) * rng.uniform(0.8, 1.2) + pixels.mean() * rng.uniform(0.8, 1.2)
    pixels += rng.normal(0, rng.uniform(0, 4), size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.7)))
    return image


def _product_colour(rng: np.random.Generator) -> np.ndarray:
    """An RGB colour (0..1) with enough saturation and light to show the item's shading."""
    hue = rng.uniform(0, 1)
    sector = np.array([hue, hue + 1 / 3, hue + 2 / 3]) % 1.0
    base = 0.5 + 0.5 * np.cos(2 * math.pi * sector)
    return 0.25 + 0.75 * base * rng.uniform(0.6, 1.0)


def _backdrop(rng: np.random.Generator) -> np.ndarray:
    """A (WORK_PX, WORK_PX, 3) float texture: stripes, checks or soft blotches in two nearby random tones."""
    tone_a = rng.uniform(0.1, 0.9, 3)
    tone_b = np.clip(tone_a + rng.uniform(-0.3, 0.3, 3), 0, 1)
    ys, xs = np.mgrid[0:WORK_PX, 0:WORK_PX] / WORK_PX
    pattern = int(rng.integers(0, 3))
    period = rng.uniform(0.06, 0.2)
    if pattern == 0:  # stripes at a random angle
        angle = rng.uniform(0, math.pi)
        mix = 0.5 + 0.5 * np.sin(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period)
    elif pattern == 1:  # checks
        mix = ((np.floor(xs / period) + np.floor(ys / period)) % 2).astype(float)
    else:  # blotches: a coarse random field, smoothly upsampled
        coarse = rng.uniform(0, 1, (6, 6))
        mix = np.asarray(
            Image.fromarray((coarse * 255).astype(np.uint8)).resize((WORK_PX, WORK_PX), Image.Resampling.BICUBIC)
        )
        mix = mix / 255.0
    return tone_a * mix[..., None] + tone_b * (1 - mix[..., None])


def _perspective_coefficients(source: np.ndarray, target: np.ndarray) -> tuple[float, ...]:
    """The 8 coefficients PIL's PERSPECTIVE transform needs to map output corners `target` to input `source`."""
    rows = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    solution = np.linalg.solve(np.array(rows, np.float64), source.reshape(-1).astype(float))
    return tuple(float(c) for c in solution)


def _place(layer: Image.Image, rng: np.random.Generator, without: frozenset[str]) -> Image.Image:
    """Mirror (half the time), rotate +-35 deg, scale 0.75-1.0, then a random perspective warp.

    Every draw is made whichever steps are left out (`without`), so the other steps stay those of the full camera."""
    mirror, angle = rng.random() < 0.5, rng.uniform(-35, 35)
    side = max(8, int(WORK_PX * rng.uniform(0.75, 1.0)))
    corner = rng.integers(0, WORK_PX - side + 1, size=2)
    square = np.array([[0, 0], [WORK_PX, 0], [WORK_PX, WORK_PX], [0, WORK_PX]], np.float64)
    moved = square + rng.uniform(-0.1, 0.1, size=(4, 2)) * WORK_PX
    if mirror and "mirror" not in without:
        layer = layer.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if "rotate" not in without:
        layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False)
    if "scale" in without:
        side, corner = WORK_PX, np.zeros(2, int)
    small = layer.resize((side, side), Image.Resampling.BICUBIC)
    canvas = Image.new(layer.mode, (WORK_PX, WORK_PX), (0,) * len(layer.getbands()))
    canvas.paste(small, (int(corner[0]), int(corner[1])))
    if "perspective" in without:
        return canvas
    return canvas.transform(
        canvas.size, Image.Transform.PERSPECTIVE, _perspective_coefficients(square, moved), Image.Resampling.BICUBIC
    )


def _occlude(image: Image.Image, rng: np.random.Generator) -> None:
    """Draw a bar or a disc of a random colour over part of the frame (in place)."""
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    extent = rng.uniform(0.25, 0.4) * WORK_PX
    x, y = rng.uniform(0, WORK_PX, 2)
    if rng.random() < 0.5:
        draw.ellipse([x - extent / 2, y - extent / 2, x + extent / 2, y + extent / 2], fill=colour)
    else:
        thin = extent * rng.uniform(0.25, 0.45)
        box = [x - extent / 2, y - thin / 2, x + extent / 2, y + thin / 2]
        if rng.random() < 0.5:
            box = [x - thin / 2, y - extent / 2, x + thin / 2, y + extent / 2]
        draw.rectangle(box, fill=colour)


def field_view(
    item: np.ndarray,
    product_rng: np.random.Generator,
    view_rng: np.random.Generator,
    without: frozenset[str] = frozenset(),
) -> Image.Image:
    """A hard, independent "field" photo of one item (see the module docstring); RGB.

    `without`: FIELD_STEPS to leave out (a diagnostic: which distortion costs retrieval most); the rest of the view,
    and every other view, is drawn exactly as by the full camera."""
    colour = _product_colour(product_rng) if "colour" not in without else np.full(3, 0.8)
    rng = view_rng
    big = np.asarray(Image.fromarray(item).resize((WORK_PX, WORK_PX), Image.Resampling.BICUBIC), np.float64) / 255.0
    shade = np.clip(big, 0, 1)
    product = np.clip(shade[..., None] * colour * 1.25, 0, 1)
    alpha = np.clip(shade * 3.0, 0, 1)  # Fashion-MNIST items are bright on black: brightness is the mask
    rgba = np.dstack([product, alpha])
    layer = _place(Image.fromarray((rgba * 255).astype(np.uint8), "RGBA"), rng, without)
    placed = np.asarray(layer, np.float64) / 255.0
    mask = placed[..., 3:4]
    light = rng.uniform(0.7, 1.2)
    backdrop = _backdrop(rng)
    if "light" in without:
        light = 1.0
    if "backdrop" in without:
        backdrop = np.zeros_like(backdrop)
    photo = (placed[..., :3] * mask + backdrop * (1 - mask)) * light
    image = Image.fromarray((np.clip(photo, 0, 1) * 255).astype(np.uint8), "RGB")
    if rng.random() < 0.4:
        if "occluder" in without:
            _occlude(image.copy(), rng)  # drawn and thrown away: the later draws stay the full camera's
        else:
            _occlude(image, rng)
    low = int(rng.integers(24, 41))
    if "lowres" not in without:
        image = image.resize((low, low), Image.Resampling.BILINEAR)
    image = image.resize((IMAGE_PX, IMAGE_PX), Image.Resampling.BICUBIC)
    quality = int(rng.integers(12, 36))
    if "jpeg" in without:
        return image
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def photo_view(
    model: str, item: np.ndarray, seed: int, product: int, view: int, without: tuple[str, ...] = ()
) -> Image.Image:
    """View `view` of product `product` (a 28x28 uint8 item) through photo model `model`, seeded.

    `without` (field only): FIELD_STEPS left out of the field camera."""
    product_rng = np.random.default_rng([seed, product, 99991])
    view_rng = np.random.default_rng([seed, product, view])
    if model == "studio":
        return studio_view(item, product_rng, view_rng)
    return field_view(item, product_rng, view_rng, frozenset(without))
