"""Image formats behind one registry: recognise bytes, read dimensions, list and strip metadata.

Formats are recognised by their bytes (magic numbers), never by a declared type or file name.
"""

from __future__ import annotations

from veil.formats.base import (
    ImageError,
    ImageFormat,
    MalformedImage,
    StripOptions,
    Stripped,
    UnsupportedImage,
)
from veil.formats.bmff import Avif, Heif
from veil.formats.bmp import DIB_SIZES, Bmp
from veil.formats.gif import Gif
from veil.formats.jpeg import Jpeg
from veil.formats.png import Png
from veil.formats.tiff import Tiff
from veil.formats.webp import WebP

__all__ = [
    "ImageError",
    "ImageFormat",
    "MalformedImage",
    "StripOptions",
    "Stripped",
    "UnsupportedImage",
    "detect",
    "open_image",
]

# Every image format Veil recognises, with the class that handles it.
_HANDLERS: dict[str, type[ImageFormat]] = {
    "jpeg": Jpeg,
    "png": Png,
    "gif": Gif,
    "webp": WebP,
    "heif": Heif,
    "avif": Avif,
    "tiff": Tiff,
    "bmp": Bmp,
}

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"mif2"}
_AVIF_BRANDS = {b"avif", b"avis"}

# Non-image documents that are worth naming when seen (they are not transformed).
DOCUMENT_FORMATS = frozenset({"pdf"})


def detect(data: bytes) -> str | None:
    """The format these bytes start with, or None. Cheap: looks at the first 32 bytes."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(len(head), 32), 4)}
        if brands & _AVIF_BRANDS:
            return "avif"
        if brands & _HEIF_BRANDS:
            return "heif"
        return None
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):  # TIFF, BigTIFF
        return "tiff"
    if head.startswith(b"BM") and len(head) >= 18 and _plausible_bmp(head):
        return "bmp"
    if head.startswith(b"%PDF-"):
        return "pdf"
    return None


def _plausible_bmp(head: bytes) -> bool:
    # "BM" alone is too weak (text can start with it): require a known DIB header size.
    return int.from_bytes(head[14:18], "little") in DIB_SIZES


def is_image_format(fmt: str | None) -> bool:
    return fmt in _HANDLERS


def open_image(data: bytes, fmt: str | None = None) -> ImageFormat:
    """Parse an image; raises ImageError when it cannot be inspected and cleaned."""
    fmt = fmt or detect(data)
    if fmt not in _HANDLERS:
        raise UnsupportedImage(f"not a recognised image format ({fmt or 'unknown bytes'})")
    return _HANDLERS[fmt](data)
