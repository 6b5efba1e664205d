"""ml.images: every user-caused failure becomes an ImageDecodeError with a plain message."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.images import ImageDecodeError, load_rgb, sniff_format


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def two_halves(w: int = 40, h: int = 20) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", (w, h), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, w // 2, h))
    return img


def test_sniff_format():
    img = Image.new("RGB", (8, 8))
    assert sniff_format(encode(img, "JPEG")) == "JPEG"
    assert sniff_format(encode(img, "PNG")) == "PNG"
    assert sniff_format(encode(img, "WEBP")) == "WEBP"
    assert sniff_format(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") == "HEIF"
    # major brand mif1 alone is HEIF too; compatible brands are scanned
    assert sniff_format(b"\x00\x00\x00\x14ftypmsf1\x00\x00\x00\x00hevc") == "HEIF"
    assert sniff_format(b"\x00\x00\x00\x14ftypavif\x00\x00\x00\x00avif") is None
    assert sniff_format(encode(img, "GIF")) is None
    assert sniff_format(b"hello") is None and sniff_format(b"") is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_formats_and_sources(tmp_path: Path, fmt: str):
    data = encode(two_halves(), fmt, **({"quality": 95} if fmt != "PNG" else {}))
    path = tmp_path / "photo.bin"
    path.write_bytes(data)
    for source in (data, path, str(path), io.BytesIO(data)):
        img = load_rgb(source)
        assert img.mode == "RGB" and img.size == (40, 20)
        r, _, b = img.getpixel((5, 10))
        assert r > 200 and b < 60


def test_png_with_wrong_extension_is_accepted(tmp_path: Path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(two_halves(), "PNG"))
    assert load_rgb(path).size == (40, 20)


def test_empty_file(tmp_path: Path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="^file is empty$"):
        load_rgb(tmp_path / "empty.jpg")


def test_text_file_is_not_an_image():
    with pytest.raises(ImageDecodeError, match="^not an image"):
        load_rgb(b"name,price\nbag,100\n")


def test_unsupported_format_is_named():
    with pytest.raises(ImageDecodeError, match="unsupported image format: GIF"):
        load_rgb(encode(Image.new("RGB", (8, 8)), "GIF"))


def test_truncated_jpeg():
    data = encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG", quality=90)
    for cut in (len(data) // 2, 200, 4):
        with pytest.raises(ImageDecodeError, match="^image is truncated or corrupt$"):
            load_rgb(data[:cut])


def test_corrupt_png():
    data = bytearray(encode(Image.effect_noise((64, 64), 64), "PNG"))
    data[60:80] = b"\x00" * 20
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        load_rgb(bytes(data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height``: a decompression bomb's calling card."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 100)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_header():
    with pytest.raises(ImageDecodeError, match=r"^image is too large: .* megapixels, limit 40$"):
        load_rgb(png_header_only(100_000, 100_000))
    with pytest.raises(ImageDecodeError, match="image is too large: 50 megapixels, limit 40"):
        load_rgb(png_header_only(10_000, 5_000))


def test_real_image_over_lowered_limit():
    data = encode(Image.new("RGB", (300, 300)), "PNG")
    with pytest.raises(ImageDecodeError, match="image is too large: 0.09 megapixels, limit 0.05"):
        load_rgb(data, max_pixels=50_000)
    assert load_rgb(data, max_pixels=90_000).size == (300, 300)


def test_exif_orientation_6_rotates():
    img = two_halves(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = load_rgb(encode(img, "JPEG", quality=95, exif=exif.tobytes()))
    assert out.size == (20, 40)
    top, bottom = np.asarray(out)[5, 10], np.asarray(out)[35, 10]
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_modes_become_rgb():
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent red
    assert load_rgb(encode(rgba, "PNG")).getpixel((3, 3)) == (255, 255, 255)
    opaque = Image.new("RGBA", (10, 10), (0, 128, 0, 255))
    assert load_rgb(encode(opaque, "PNG")).getpixel((3, 3)) == (0, 128, 0)
    pal = Image.new("RGB", (10, 10), (0, 0, 200)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert load_rgb(encode(pal, "PNG")).getpixel((1, 1)) == (0, 0, 200)
    grey = Image.new("L", (10, 10), 77)
    assert load_rgb(encode(grey, "PNG")).getpixel((1, 1)) == (77, 77, 77)
    cmyk = Image.new("CMYK", (10, 10), (0, 255, 255, 0))  # red in CMYK
    r, g, b = load_rgb(encode(cmyk, "JPEG", quality=95)).getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60
    deep = Image.fromarray(np.full((10, 10), 65535 // 2, dtype=np.uint16))
    out = load_rgb(encode(deep, "PNG"))
    assert out.mode == "RGB" and abs(out.getpixel((1, 1))[0] - 128) <= 1


def test_heic_round_trip():
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("encoders"):
        pytest.skip("pillow-heif has no HEVC encoder here")
    pillow_heif.register_heif_opener()
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    data = encode(img, "HEIF", quality=90)
    assert sniff_format(data) == "HEIF"
    out = load_rgb(data)
    assert out.size == (64, 48) and out.mode == "RGB"
    r, g, b = out.getpixel((30, 20))
    assert r > 170 and g < 70 and b < 70
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        load_rgb(data[: len(data) // 2])


def test_unreadable_files_stay_a_clear_error_once_ultralytics_wraps_image_open():
    """ultralytics patches Image.open on import and retries a failure through pi_heif (not
    installed); the caller must still get the plain decode error."""
    pytest.importorskip("ultralytics.utils.patches", reason="ultralytics is not installed")
    import ultralytics.utils.patches  # noqa: F401 - the import applies the patch

    data = encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError, match="^image is truncated or corrupt$"):
        load_rgb(data[:4])
