"""Re-encoding, for the rare file whose container cannot be cleaned by surgery.

Every metadata argument is passed explicitly: pillow-heif copies EXIF, XMP and ICC into the
new file by default, and Pillow's AVIF writer keeps the ICC profile.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps

import veil.pillow_codecs  # noqa: F401  (codecs without the GIL: see there)
from veil.formats.base import UnsupportedImage

QUALITY = 95


def heif(data: bytes, fmt: str, *, keep_icc: bool) -> bytes:
    """HEIF (through pillow-heif, x265) or AVIF (through Pillow) with only the pixels."""
    try:
        import pillow_heif
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise UnsupportedImage(f"{fmt} cannot be cleaned: pillow-heif is not installed") from exc
    try:
        if fmt == "avif":
            image = Image.open(io.BytesIO(data))
        else:
            image = pillow_heif.open_heif(io.BytesIO(data)).to_pillow()
        image.load()
    except Exception as exc:  # the decoder's own errors, whatever their type
        raise UnsupportedImage(f"{fmt} image could not be decoded for re-encoding: {exc}") from exc
    icc = image.info.get("icc_profile") if keep_icc else None
    image = ImageOps.exif_transpose(image)  # libheif applies irot/imir; EXIF is informative
    image.info = {}  # nothing from the source may ride along
    out = io.BytesIO()
    if fmt == "avif":
        image.save(out, format="AVIF", quality=QUALITY, exif=b"", xmp=b"", icc_profile=icc or b"")
    else:
        heif_file = pillow_heif.from_pillow(image)
        heif_file.save(out, quality=QUALITY, exif=None, xmp=None, icc_profile=icc)
    return out.getvalue()
