"""A perceptual hash of an image (DCT pHash), so that a photo can be found again after it was
resized or re-encoded: the 8x8 lowest frequencies of a 32x32 grey thumbnail, one bit each for
"above the median". Copies of the same photo differ in a few of the 64 bits; different
photos in about half of them.

Pure Pillow and Python: the thumbnail is small, so the transform costs about a millisecond,
and a JPEG is decoded at 1/8 scale (Pillow's draft mode), which keeps large photos cheap.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache

from PIL import Image, ImageOps

import veil.pillow_codecs  # noqa: F401  (codecs without the GIL: see there)

SIZE = 32  # side of the grey thumbnail
LOW = 8  # side of the block of low frequencies kept: 64 bits
# Measured on the photos in ../shared/corpora/metadata: copies resized to 1/2 or 1/4 and saved
# as JPEG (quality 50-85), PNG or WebP are 0-6 bits from the original; any two different
# photos are 22 or more bits apart.
SIMILAR = 10
BACKGROUND_THREADS = 2  # in_background's

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def perceptual_hash(data: bytes, displayed: Image.Image | None = None) -> str | None:
    """16 hex digits, or None when Pillow cannot decode the image (the record says so).

    `displayed`: the image as people see it (upright), already decoded at a reduced size
    (inspection's `ImageReport.thumbnail`, at least SIZE px a side): hashed instead of decoding
    `data` again, which for a 12 MP JPEG saves a 1/8-scale decode (about 25 ms)."""
    if displayed is not None:
        return _hash_pixels(_grey(displayed))
    try:
        grey = _thumbnail(data)
    except Exception:  # any undecodable image: the hash is an aid, never a reason to fail
        return None
    return _hash_pixels(grey)


def in_background(data: bytes) -> Future[str | None]:
    """`perceptual_hash(data)`, started now on one of BACKGROUND_THREADS: for an upload that is
    only stripped, decoding it for the hash is the costliest step of recording it (25-55 ms at
    12 MP), and it can run while the upload is inspected and stripped on another core."""
    return _executor().submit(perceptual_hash, data)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(BACKGROUND_THREADS, thread_name_prefix="veil-phash")
        return _pool


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _thumbnail(data: bytes) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as im:
            im.draft("L", (SIZE * 4, SIZE * 4))  # JPEG: decode straight at a reduced scale
            upright = ImageOps.exif_transpose(im)  # hash what people see, not the raw sensor
            return _grey(upright)


def _grey(image: Image.Image) -> bytes:
    return image.convert("L").resize((SIZE, SIZE), Image.Resampling.BOX).tobytes()


def _hash_pixels(pixels: bytes) -> str:
    table = _cosines()
    rows = [pixels[y * SIZE : (y + 1) * SIZE] for y in range(SIZE)]
    # Separable 2-D DCT-II, computing only the LOW x LOW corner that the hash keeps.
    row_freq = [
        [sum(p * c for p, c in zip(row, table[u], strict=True)) for u in range(LOW)] for row in rows
    ]
    coefficients = [
        sum(row_freq[y][u] * table[v][y] for y in range(SIZE))
        for v in range(LOW)
        for u in range(LOW)
    ]
    median = sorted(coefficients)[len(coefficients) // 2]
    bits = 0
    for c in coefficients:
        bits = (bits << 1) | (c > median)
    return f"{bits:016x}"


@cache
def _cosines() -> tuple[tuple[float, ...], ...]:
    return tuple(
        tuple(math.cos((2 * x + 1) * u * math.pi / (2 * SIZE)) for x in range(SIZE))
        for u in range(LOW)
    )
