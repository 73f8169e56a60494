"""Safe image decoding: one place that turns bytes or a path into an RGB PIL image, or refuses.

Handles what real product photos throw at us: EXIF rotation, CMYK, 16-bit and palette PNGs with
transparency (flattened on white), animated images (first frame), grayscale. Refuses corrupt,
truncated, empty, non-image and decompression-bomb files with an `EproductError` that names the
file and says what to do. Decoding is done fully here, so a truncated file fails now, not later.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import EproductError

MAX_PIXELS = 40_000_000  # ~6300x6300; eProduct photos are far smaller, a bomb is far larger
MAX_BYTES = 50 * 1024 * 1024  # an upload or catalog file above this is refused before decoding


def _describe(source: str | Path | bytes, name: str | None) -> str:
    if name:
        return repr(name)
    if isinstance(source, (str, Path)):
        return repr(str(source))
    return "the uploaded image"


def _read_bytes(source: str | Path | bytes, what: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise EproductError(f"Image {what} does not exist or is not a file. Check the path.")
        if path.stat().st_size > MAX_BYTES:
            raise EproductError(f"Image {what} is larger than {MAX_BYTES // 2**20} MiB. Resize it and try again.")
        data = path.read_bytes()
    if not data:
        raise EproductError(f"Image {what} is empty (0 bytes). Use a JPEG, PNG, GIF, BMP or WebP photo.")
    if len(data) > MAX_BYTES:
        raise EproductError(f"Image {what} is larger than {MAX_BYTES // 2**20} MiB. Resize it and try again.")
    return data


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I"):  # 16/32-bit grayscale: map the 16-bit range onto 8 bits (no auto-contrast)
        array = np.asarray(image, dtype=np.float64)
        top = float(array.max()) if array.size else 0.0
        if image.mode.startswith("I;16") or 255 < top <= 65535:
            peak = 65535.0
        else:
            peak = top if top > 65535 else 255.0
        return Image.fromarray((array / peak * 255.0).round().clip(0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:  # flatten on white
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Decode `source` (a path or raw bytes) into an RGB image, or raise `EproductError`.

    `name` is how the message refers to the image (e.g. the uploaded file's name).
    """
    what = _describe(source, name)
    data = _read_bytes(source, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
                if width * height > MAX_PIXELS:
                    raise EproductError(
                        f"Image {what} is {width}x{height} pixels, more than the {MAX_PIXELS:,} allowed "
                        "(it may be a decompression bomb). Resize it and try again."
                    )
                opened.seek(0)  # animated images: the first frame
                opened.load()
                image = ImageOps.exif_transpose(opened) or opened
                return _to_rgb(image)
    except EproductError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise EproductError(f"Image {what} is too large to decode safely ({err}). Resize it and try again.") from err
    except UnidentifiedImageError as err:
        raise EproductError(
            f"Image {what} is not an image Pillow can read (wrong extension, or not a picture). "
            "Use a JPEG, PNG, GIF, BMP or WebP photo."
        ) from err
    except (OSError, SyntaxError, ValueError) as err:
        raise EproductError(f"Image {what} is corrupt or truncated ({err}). Re-export or re-download it.") from err
