"""load_image: every awkward file real product photos throw at us is decoded right or refused clearly."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eproduct_core.errors import EproductError
from eproduct_core.images import MAX_PIXELS, load_image


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _both(data: bytes, tmp_path: Path, suffix: str) -> list[Image.Image]:
    """Load the same bytes from memory and from a file: both ways must agree."""
    path = tmp_path / f"image{suffix}"
    path.write_bytes(data)
    from_bytes, from_path = load_image(data), load_image(path)
    assert np.array_equal(np.asarray(from_bytes), np.asarray(from_path))
    return [from_bytes, from_path]


def _refused(data: bytes, tmp_path: Path, suffix: str, match: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(EproductError, match=match):
            load_image(source)
    with pytest.raises(EproductError, match="upload.jpg"):
        load_image(data, name="upload.jpg")  # messages name the file


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A real, valid 30000x30000 1-bit PNG (~110 KB): every row is filter byte 0 then zeros."""
    side = 30000
    row = bytes(1 + side // 8)
    packer = zlib.compressobj(9)
    compressed = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", compressed) + _png_chunk(b"IEND", b"")
    )


def test_plain_rgb_jpeg_and_grayscale(tmp_path):
    red = Image.new("RGB", (30, 20), (200, 10, 10))
    for image in _both(_encode(red, "JPEG", quality=95), tmp_path, ".jpg"):
        assert image.mode == "RGB" and image.size == (30, 20)
        assert np.abs(np.asarray(image, int) - [200, 10, 10]).max() < 8
    gray = Image.new("L", (16, 16), 77)
    for image in _both(_encode(gray, "PNG"), tmp_path, ".png"):
        pixels = np.asarray(image)
        assert image.mode == "RGB" and (pixels == 77).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red ink
    for image in _both(_encode(cmyk, "JPEG", quality=95), tmp_path, ".jpg"):
        r, g, b = np.asarray(image, int).reshape(-1, 3).mean(axis=0)
        assert image.mode == "RGB" and r > 230 and g < 30 and b < 30


def test_16_bit_png_keeps_brightness(tmp_path):
    levels = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    for image in _both(_encode(Image.fromarray(levels), "PNG"), tmp_path, ".png"):
        row = np.asarray(image)[0, :, 0]
        assert image.mode == "RGB" and list(row) == [0, 4, 128, 255]  # value / 257, not stretched


def test_palette_png_with_transparency_is_flattened_on_white(tmp_path):
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.putpixel((0, 0), 0)
    data = _encode(palette, "PNG", transparency=0)
    for image in _both(data, tmp_path, ".png"):
        pixels = np.asarray(image)
        assert tuple(pixels[0, 0]) == (255, 255, 255)  # the transparent index
        assert tuple(pixels[3, 3]) == (10, 200, 30)


def test_rgba_png_is_composited_on_white(tmp_path):
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    (image,) = _both(_encode(half, "PNG"), tmp_path, ".png")[:1]
    assert abs(int(np.asarray(image)[0, 0, 0]) - 127) <= 1


def test_animated_gif_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    for image in _both(data, tmp_path, ".gif"):
        assert tuple(np.asarray(image)[4, 4]) == (255, 0, 0)


def test_exif_orientation_is_applied(tmp_path):
    picture = Image.new("RGB", (40, 20), (0, 0, 255))
    picture.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    for image in _both(_encode(picture, "JPEG", quality=95, exif=exif), tmp_path, ".jpg"):
        pixels = np.asarray(image, int)
        assert image.size == (20, 40)  # portrait after rotation
        assert pixels[5, 10, 0] > 200 and pixels[5, 10, 2] < 60  # the red half is now on top
        assert pixels[35, 10, 2] > 200 and pixels[35, 10, 0] < 60


def test_zero_byte_file_is_refused(tmp_path):
    _refused(b"", tmp_path, ".jpg", "empty")


def test_text_named_jpg_is_refused(tmp_path):
    _refused(b"image_id,path\nq1,a.jpg\n", tmp_path, ".jpg", "not an image")


def test_truncated_png_is_refused(tmp_path):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = _encode(noise, "PNG")
    _refused(data[: len(data) // 2], tmp_path, ".png", "corrupt or truncated")


def test_corrupt_and_truncated_jpeg_are_refused(tmp_path):
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = _encode(noise, "JPEG", quality=90)
    _refused(data[: len(data) // 3], tmp_path, ".jpg", "corrupt or truncated")
    _refused(data[:20] + b"\x00" * 200, tmp_path, ".jpg", "corrupt|not an image")


def test_decompression_bomb_is_refused_without_decoding(tmp_path, bomb_png):
    assert len(bomb_png) < 1_000_000
    assert struct.unpack(">II", bomb_png[16:24]) == (30000, 30000)  # the IHDR really says so
    assert 30000 * 30000 > MAX_PIXELS
    _refused(bomb_png, tmp_path, ".png", "decompression bomb|too large")


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(EproductError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")
