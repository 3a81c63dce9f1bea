"""Decoding an upload's pixels for the face steps: upright (orientation applied), still only.

Face boxes are in displayed pixels, so orientation is applied before detection (a photo
stored on its side loses a third of its faces otherwise) and before obliteration.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image

import veil.pillow_codecs  # noqa: F401  (codecs without the GIL: see there)
from veil.formats import MalformedImage, UnsupportedImage

# EXIF orientation (what a viewer does to the stored pixels) as a Pillow transposition.
ORIENTATION_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
ORIENTATION_TAG = 0x0112
# Pillow opens a phone JPEG with MPF preview images as several frames; only the primary image
# is sent on (the previews are stripped), so only it is checked.
PRIMARY_IMAGE_ONLY = frozenset({"jpeg"})
# Formats whose decoder turns the pixels upright itself (pillow-heif applies HEIF irot/imir).
UPRIGHT_WHEN_DECODED = frozenset({"heif"})


def pixel_orientation(fmt: str, orientation: int) -> int:
    """The orientation still to apply to the decoded pixels of an image in this format."""
    return 1 if fmt in UPRIGHT_WHEN_DECODED else orientation


def open_still(data: bytes | io.BytesIO, fmt: str) -> Image.Image:
    """Open (not yet decode) the image; refuses animations, whose later frames go unchecked."""
    if fmt == "heif":
        _register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(data if isinstance(data, io.BytesIO) else io.BytesIO(data))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnsupportedImage(f"{fmt} pixels cannot be decoded for face detection: {exc}") from exc
    if getattr(image, "n_frames", 1) > 1 and fmt not in PRIMARY_IMAGE_ONLY:
        raise UnsupportedImage(
            f"animated {fmt} ({image.n_frames} frames): faces can only be checked in still images"
        )
    return image


def load(image: Image.Image, fmt: str) -> Image.Image:
    """Decode the pixels; a truncated or corrupt image raises MalformedImage."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise MalformedImage(f"{fmt} pixels cannot be decoded: {exc}") from exc
    return image


def loaded_upright(image: Image.Image, fmt: str, orientation: int) -> Image.Image:
    """The opened image decoded and turned as a viewer shows it (`orientation`: the EXIF tag)."""
    return upright(load(image, fmt), pixel_orientation(fmt, orientation))


def upright(image: Image.Image, orientation: int) -> Image.Image:
    method = ORIENTATION_TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def displayed_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def has_orientation_tag(image: Image.Image) -> bool:
    try:
        return ORIENTATION_TAG in image.getexif()
    except Exception:  # a broken EXIF block says nothing trustworthy about orientation
        return False


def _register_heif() -> None:
    """Teach Pillow to open (and save) HEIF through pillow-heif, once per process."""
    import pillow_heif

    pillow_heif.register_heif_opener()
