"""Drawing for the synthetic catalog: product shapes, surface patterns, glyphs, and photo "shots".

Owns the look of synthetic products (`render_product`: an RGBA picture of one product) and of a photo
of it (`shoot`: affine warp, scale, shift/crop, background, lighting, blur, noise, JPEG). numpy + Pillow
only. `synthetic.py` decides which products exist; this module only draws them.
"""

from __future__ import annotations

import colorsys
import io
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _circle(n: int = 40, radius: float = 0.85) -> list[tuple[float, float]]:
    return [(radius * math.cos(2 * math.pi * i / n), radius * math.sin(2 * math.pi * i / n)) for i in range(n)]


def _star() -> list[tuple[float, float]]:
    return [
        (
            (0.92 if i % 2 == 0 else 0.42) * math.cos(math.pi * i / 5 - math.pi / 2),
            (0.92 if i % 2 == 0 else 0.42) * math.sin(math.pi * i / 5 - math.pi / 2),
        )
        for i in range(10)
    ]


def _hat() -> list[tuple[float, float]]:
    dome = [(0.7 * math.cos(-math.pi * i / 16), 0.2 + 0.85 * math.sin(-math.pi * i / 16)) for i in range(17)]
    return [(-0.95, 0.5), (0.95, 0.5), (0.95, 0.2), *dome, (-0.95, 0.2)]


# Shapes as polygons in [-1, 1]^2 (y down).
SHAPES: dict[str, list[tuple[float, float]]] = {
    "tee": [
        (-0.35, -0.8),
        (-0.1, -0.68),
        (0.1, -0.68),
        (0.35, -0.8),
        (0.92, -0.42),
        (0.7, -0.08),
        (0.45, -0.25),
        (0.45, 0.88),
        (-0.45, 0.88),
        (-0.45, -0.25),
        (-0.7, -0.08),
        (-0.92, -0.42),
    ],
    "circle": _circle(),
    "star": _star(),
    "phone": [
        (-0.42, -0.9),
        (0.42, -0.9),
        (0.5, -0.82),
        (0.5, 0.82),
        (0.42, 0.9),
        (-0.42, 0.9),
        (-0.5, 0.82),
        (-0.5, -0.82),
    ],
    "bottle": [
        (-0.18, -0.92),
        (0.18, -0.92),
        (0.18, -0.55),
        (0.45, -0.3),
        (0.45, 0.9),
        (-0.45, 0.9),
        (-0.45, -0.3),
        (-0.18, -0.55),
    ],
    "bag": [
        (-0.7, -0.35),
        (-0.4, -0.35),
        (-0.4, -0.8),
        (0.4, -0.8),
        (0.4, -0.35),
        (0.7, -0.35),
        (0.9, 0.85),
        (-0.9, 0.85),
    ],
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "kite": [(0.0, -0.95), (0.65, -0.15), (0.0, 0.95), (-0.65, -0.15)],
    "octagon": _circle(8, 0.9),
    "shield": [(-0.8, -0.85), (0.8, -0.85), (0.8, 0.1), (0.0, 0.92), (-0.8, 0.1)],
    "hat": _hat(),
    "rug": [(-0.95, -0.55), (0.95, -0.55), (0.95, 0.55), (-0.95, 0.55)],
    "hexagon": _circle(6, 0.88),
    "pennant": [(-0.85, -0.75), (0.92, 0.0), (-0.85, 0.75)],
    "mug": [
        (-0.6, -0.7),
        (0.45, -0.7),
        (0.45, -0.45),
        (0.85, -0.45),
        (0.85, 0.35),
        (0.45, 0.35),
        (0.45, 0.8),
        (-0.6, 0.8),
    ],
    "cross": [
        (-0.3, -0.9),
        (0.3, -0.9),
        (0.3, -0.3),
        (0.9, -0.3),
        (0.9, 0.3),
        (0.3, 0.3),
        (0.3, 0.9),
        (-0.3, 0.9),
        (-0.3, 0.3),
        (-0.9, 0.3),
        (-0.9, -0.3),
        (-0.3, -0.3),
    ],
}

# (meta, level2, shape), interleaved so any prefix spans several metas.
LEVEL2 = [
    ("fashion", "tops", "tee"),
    ("home", "plates", "circle"),
    ("toys", "stars", "star"),
    ("electronics", "phones", "phone"),
    ("sports", "bottles", "bottle"),
    ("fashion", "bags", "bag"),
    ("home", "tiles", "square"),
    ("toys", "kites", "kite"),
    ("electronics", "speakers", "octagon"),
    ("sports", "badges", "shield"),
    ("fashion", "hats", "hat"),
    ("home", "rugs", "rug"),
    ("toys", "blocks", "hexagon"),
    ("sports", "pennants", "pennant"),
    ("home", "mugs", "mug"),
    ("sports", "first-aid kits", "cross"),
]
# (leaf adjective, pattern kind)
PATTERNS = [
    ("plain", "solid"),
    ("striped", "stripes"),
    ("dotted", "dots"),
    ("checked", "checker"),
    ("two-tone", "twotone"),
    ("ringed", "rings"),
    ("zigzag", "zigzag"),
    ("faded", "gradient"),
]
GLYPHS = ["dot", "ring", "bar", "cross", "triangle", "diamond", "square", "chevron"]
GLYPH_PLACES = [(0.0, 0.0), (0.0, -0.32), (0.0, 0.38), (-0.28, 0.12)]
COLOUR_NAMES = [
    "red",
    "orange",
    "yellow",
    "lime",
    "green",
    "teal",
    "cyan",
    "blue",
    "indigo",
    "purple",
    "magenta",
    "pink",
]


def colour_name(rgb: tuple[int, int, int]) -> str:
    hue, sat, value = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    if value < 0.25:
        return "black"
    if sat < 0.2:
        return "grey" if value < 0.8 else "white"
    return COLOUR_NAMES[int(hue * 12 + 0.5) % 12]


@lru_cache(maxsize=4)
def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    centres = (np.arange(side, dtype=np.float32) + 0.5) / side - 0.5
    return centres[None, :].repeat(side, 0), centres[:, None].repeat(side, 1)


def _pattern(kind: str, colours: tuple, freq: int, angle: float, side: int) -> np.ndarray:
    x, y = _grid(side)
    cos, sin = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    u = x * cos + y * sin
    v = y * cos - x * sin  # used by dots, checker and zigzag
    if kind == "solid":
        mix = np.zeros_like(u)
    elif kind == "stripes":
        mix = np.floor(u * (freq * 2)) % 2
    elif kind == "dots":
        mix = ((u * freq % 1 - 0.5) ** 2 + (v * freq % 1 - 0.5) ** 2 < 0.09).astype(np.float32)
    elif kind == "checker":
        mix = (np.floor(u * freq) + np.floor(v * freq)) % 2
    elif kind == "twotone":
        mix = (u > (freq - 4.5) / 12).astype(np.float32)
    elif kind == "rings":
        mix = np.floor(np.hypot(x, y) * (freq * 2.5)) % 2
    elif kind == "zigzag":
        mix = np.floor(v * (freq * 2) + np.abs(u * (freq * 2) % 2 - 1)) % 2
    else:  # gradient
        mix = np.clip(u + 0.5, 0, 1) ** np.float32(freq / 4)
    first, second = np.asarray(colours[0], np.float32), np.asarray(colours[1], np.float32)
    return (first + mix[..., None] * (second - first)).astype(np.uint8)


def _glyph(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, fill: tuple) -> None:
    box = [cx - r, cy - r, cx + r, cy + r]
    if kind == "dot":
        draw.ellipse(box, fill=fill)
    elif kind == "ring":
        draw.ellipse(box, outline=fill, width=max(2, int(r / 2.5)))
    elif kind == "bar":
        draw.rectangle([cx - r, cy - r / 3, cx + r, cy + r / 3], fill=fill)
    elif kind == "cross":
        draw.rectangle([cx - r, cy - r / 4, cx + r, cy + r / 4], fill=fill)
        draw.rectangle([cx - r / 4, cy - r, cx + r / 4, cy + r], fill=fill)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif kind == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif kind == "square":
        draw.rectangle([cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8], fill=fill)
    else:  # chevron
        draw.line([(cx - r, cy - r / 2), (cx, cy + r / 2), (cx + r, cy - r / 2)], fill=fill, width=max(2, int(r / 2)))


def render_product(product, leaf, side: int) -> Image.Image:
    """An RGBA picture (side x side, transparent around) of one product on no background."""
    sx, sy = product.aspect, 1.0 / product.aspect
    fit = 1.0 / max(1.0, sx, sy)
    half = side / 2
    points = [(half + x * sx * fit * half * 0.95, half + y * sy * fit * half * 0.95) for x, y in SHAPES[leaf.shape]]
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).polygon(points, fill=255)
    body = Image.fromarray(_pattern(leaf.pattern, product.colours, product.freq, product.angle, side), "RGB").convert(
        "RGBA"
    )
    body.putalpha(mask)
    draw = ImageDraw.Draw(body)
    outline = tuple(int(c * 0.45) for c in product.colours[0]) + (255,)
    draw.polygon(points, outline=outline, width=max(1, side // 64))
    gx, gy = GLYPH_PLACES[product.glyph_pos]
    _glyph(
        draw,
        GLYPHS[product.glyph],
        half + gx * half * fit,
        half + gy * half * fit,
        side * 0.11 * fit,
        product.colours[2] + (255,),
    )
    alpha = np.asarray(body)[..., 3].copy()
    alpha[np.asarray(mask) == 0] = 0  # keep the glyph inside the outline
    body.putalpha(Image.fromarray(alpha))
    return body


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    kind = rng.integers(3)
    base = rng.uniform(150, 250, size=3) if rng.random() < 0.7 else rng.uniform(20, 120, size=3)
    if kind == 0:
        return np.broadcast_to(base.astype(np.float32), (side, side, 3))
    if kind == 1:
        other = rng.uniform(60, 250, size=3)
        t = np.linspace(0, 1, side, dtype=np.float32)[:, None, None]
        return np.broadcast_to(base * (1 - t) + other * t, (side, side, 3)).astype(np.float32)
    coarse = rng.normal(0, 25, size=(6, 6, 3))
    texture = np.asarray(
        Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC),
        np.float32,
    )
    return np.clip(base.astype(np.float32) + texture - 128, 0, 255)


def _affine(rng: np.random.Generator, source: int, side: int) -> tuple[float, ...]:
    """PIL AFFINE data mapping output pixels to source pixels: rotation, shear, scale, shift."""
    angle = math.radians(float(np.clip(rng.normal(0, 12), -30, 30)))
    shear = float(rng.normal(0, 0.08))
    scale = float(rng.uniform(0.68, 1.12)) * side / source * (1.0 if rng.random() > 0.15 else 1.25)
    shift = rng.uniform(-0.1, 0.1, size=2) * side
    forward = (
        scale
        * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        @ np.array([[1, shear], [0, 1]])
    )
    inverse = np.linalg.inv(forward)
    offset = np.array([source / 2, source / 2]) - inverse @ (np.array([side / 2, side / 2]) + shift)
    return (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])


def shoot(product: Image.Image, rng: np.random.Generator, side: int) -> bytes:
    """One JPEG photo (side x side) of an RGBA product picture, varied by `rng`."""
    warped = product.transform(
        (side, side), Image.Transform.AFFINE, _affine(rng, product.size[0], side), Image.Resampling.BILINEAR
    )
    pixels = np.asarray(warped, np.float32)
    alpha = pixels[..., 3:] * np.float32(1 / 255)
    background = _background(rng, side)
    photo = background + alpha * (pixels[..., :3] - background)
    gain, tint = rng.uniform(0.75, 1.2), rng.uniform(0.94, 1.06, size=3).astype(np.float32)
    contrast, mean = rng.uniform(0.8, 1.15), float(photo.mean())
    photo = (photo - mean) * np.float32(contrast) + np.float32(mean * gain)
    noise = rng.standard_normal(size=photo.shape, dtype=np.float32) * np.float32(rng.uniform(0, 5))
    photo = photo * tint + noise
    image = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(60, 96)))
    return buffer.getvalue()
