"""Safe image decoding for uploads: type by content, pixel limits, EXIF orientation, RGB.

Every failure a user can cause raises :class:`ImageDecodeError`, whose message is short, plain
and safe to show in a page or API response.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 40_000_000
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")

# ISO-BMFF major brands that libheif decodes as HEVC-coded HEIF (iPhone/Android "HEIC").
_HEIF_BRANDS = {
    b"heic",
    b"heix",
    b"hevc",
    b"hevx",
    b"heim",
    b"heis",
    b"hevm",
    b"hevs",
    b"mif1",
    b"msf1",
}
# Recognised but unsupported, so the message can name them.
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
)

_heif_registered = False


class ImageDecodeError(ValueError):
    """The upload is not a usable image; ``str(exc)`` is safe to show to a user."""


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        import pillow_heif

        pillow_heif.register_heif_opener()
        _heif_registered = True


def sniff_format(data: bytes) -> str | None:
    """Image format from the first bytes: ``"JPEG" | "PNG" | "WEBP" | "HEIF" | None``.

    File names and declared content types are never trusted; only the content counts.
    """
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and _heif_brand(data):
        return "HEIF"
    return None


def _heif_brand(data: bytes) -> bool:
    if len(data) < 12:
        return False
    if data[8:12] in _HEIF_BRANDS:
        return True
    # Compatible brands follow the minor version, up to the end of the ftyp box.
    (box_size,) = struct.unpack(">I", data[:4])
    compatible = data[16 : min(box_size, len(data), 256)]
    return any(compatible[i : i + 4] in _HEIF_BRANDS for i in range(0, len(compatible) - 3, 4))


def _other_format(data: bytes) -> str | None:
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "AVIF"
    for signature, name in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def _read_source(source: str | Path | bytes | BinaryIO) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | Path):
        return Path(source).read_bytes()
    return source.read()


def _megapixels(n: float) -> str:
    mp = n / 1e6
    return f"{mp:,.0f}" if mp >= 100 else f"{mp:.3g}"


def load_rgb(
    source: str | Path | bytes | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode an upload into a fully loaded, EXIF-oriented RGB image.

    Args:
        source: a path, the raw bytes, or a binary file object.
        max_pixels: width x height above which the image is refused (decompression bombs).
            Pillow's own bomb guard (2 x ``Image.MAX_IMAGE_PIXELS``) still applies on top.

    Raises:
        ImageDecodeError: empty, not an image, unsupported format, too large, truncated or
            corrupt. A missing path raises ``FileNotFoundError`` (a caller error, not a user's).
    """
    data = _read_source(source)
    if not data:
        raise ImageDecodeError("file is empty")
    fmt = sniff_format(data)
    if fmt is None:
        other = _other_format(data)
        if other:
            raise ImageDecodeError(
                f"unsupported image format: {other} (use JPEG, PNG, WebP or HEIC)"
            )
        raise ImageDecodeError("not an image (expected JPEG, PNG, WebP or HEIC)")
    if fmt == "HEIF":
        _register_heif()

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=[fmt])
            _check_pixels(opened.size, max_pixels)
            opened.load()
            img: Image.Image = ImageOps.exif_transpose(opened) or opened
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError:
        # Pillow refused before we could read the size; its limit is the binding one.
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise ImageDecodeError(
            f"image is too large: more than {_megapixels(limit)} megapixels, "
            f"limit {_megapixels(max_pixels)}"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
        raise ImageDecodeError("image is truncated or corrupt") from exc
    except ImportError as exc:
        # Once ultralytics is imported it wraps Image.open and, on a file Pillow cannot read,
        # retries through pi_heif, which is not installed: the file is still unreadable.
        raise ImageDecodeError("image is truncated or corrupt") from exc
    except MemoryError as exc:
        raise ImageDecodeError("image is too large to decode") from exc
    return to_rgb(img)


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageDecodeError("image is truncated or corrupt")
    if w * h > max_pixels:
        raise ImageDecodeError(
            f"image is too large: {_megapixels(w * h)} megapixels, limit {_megapixels(max_pixels)}"
        )


def to_rgb(img: Image.Image, *, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Transparency is composited onto ``background`` (white, like catalogue shots) rather than
    dropped, because dropped alpha often leaves black or garbage pixels behind. 16/32-bit
    greyscale is rescaled to 8 bits instead of clipped.
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if img.mode == "F" and arr.max(initial=0) <= 1.0 else None
        if top is None:
            top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "ImageDecodeError",
    "load_rgb",
    "sniff_format",
    "to_rgb",
]
