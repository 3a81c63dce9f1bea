"""Pillow's codecs get a whole photo per call (so they release the GIL once, not per 64 KiB)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from veil import pillow_codecs
from veil.faces import pixels

ADDONS = Path(__file__).resolve().parents[1] / "addons"
ENV = {**os.environ, "PYTHONPATH": str(ADDONS)}


class CountingReads(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self.reads.append(len(chunk))
        return chunk


class CountingWrites(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data, /) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)


def noisy_jpeg(size: tuple[int, int] = (2400, 1600)) -> bytes:
    """Noise compresses badly: about 3 MB, fifty of Pillow's default 64 KiB blocks."""
    rng = np.random.default_rng(7)
    pixels_ = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels_).save(out, "JPEG", quality=90)
    return out.getvalue()


def test_a_photo_is_decoded_from_one_read_of_its_whole_stream() -> None:
    data = noisy_jpeg()
    assert len(data) > 40 * 64 * 1024
    source = CountingReads(data)
    image = pixels.open_still(source, "jpeg")
    source.reads.clear()
    pixels.load(image, "jpeg")
    assert len(source.reads) == 1
    assert source.reads[0] > len(data) - 64 * 1024  # all but the header read by open()


def test_a_photo_is_encoded_into_one_buffer() -> None:
    image = Image.open(io.BytesIO(noisy_jpeg()))
    out = CountingWrites()
    image.save(out, "JPEG", quality=90)
    assert out.tell() > 40 * 64 * 1024
    assert out.writes == 1


@pytest.mark.parametrize(
    "module", ["veil.faces.pixels", "veil.audit.phash", "veil.formats.reencode"]
)
def test_each_module_that_runs_codecs_on_uploads_sets_the_block(module: str) -> None:
    probe = f"import {module}; from PIL import ImageFile; print(ImageFile.MAXBLOCK)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=ENV
    )
    assert int(out.stdout) == pillow_codecs.CODEC_BLOCK >= 4_000_000
