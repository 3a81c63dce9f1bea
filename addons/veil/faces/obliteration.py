"""Make every found face unrecognisable for good, change nothing else, re-encode as before.

Blurs and fine mosaics have been reversed (deconvolution; recognition networks trained on
obfuscated faces), so information is destroyed first: each enlarged face box is averaged down
to at most MAX_CELLS (5) cells across, every cell gets fresh random noise (a new generator per
call, no stored seed), and only then is it drawn back: smoothly (`blur`), as blocks
(`pixelate`), or not at all (`solid`, a black box).

The photo is decoded upright (orientation applied to the pixels, so no later metadata step
can turn it on its side) and re-encoded in its own format at its own quality: JPEG with its
quantisation tables and chroma subsampling, PNG, TIFF, BMP and lossless WebP losslessly.
Metadata is not carried over; `transform` strips the result afterwards in any case.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, JpegImagePlugin

from veil.faces import pixels
from veil.findings import Face, ImageReport
from veil.formats import UnsupportedImage
from veil.policy import Settings

# Cells across the enlarged box, on its long side (about 4 across the face itself). Measured
# on a 12-face corpus photo: with 8, CenterFace still found 20 of 24 smoothed faces at >= 0.5
# confidence (eyes and mouth still show as dark spots); with 5, 3 of 24.
MAX_CELLS = 5
MIN_CELL = 4  # pixels: small faces get fewer, not smaller, cells
MERGE_OVERLAP = 0.3  # boxes sharing this much of the smaller one are obliterated as one
NOISE_SIGMA = 12.0  # grey levels of noise added to every cell and channel
EDITABLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK"})
PILLOW_FORMATS = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "gif": "GIF",
    "tiff": "TIFF",
    "bmp": "BMP",
    "avif": "AVIF",
    "heif": "HEIF",  # saved through pillow-heif (x265)
}
LOSSY_QUALITY = 90  # WebP/AVIF do not record their quality: re-encode high
LOSSLESS_TIFF = frozenset({"raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits"})


def obliterate(data: bytes, report: ImageReport, settings: Settings) -> bytes:
    if not report.faces:
        return data
    pillow_format = PILLOW_FORMATS.get(report.format)
    if pillow_format is None:
        raise UnsupportedImage(f"faces cannot be blurred in {report.format} images yet")
    image = _decoded_ahead(report)
    if image is None:
        image = pixels.open_still(data, report.format)
    options = encode_options(image, report.format, data)
    image = _editable(pixels.loaded_upright(image, report.format, report.orientation))
    rng = np.random.default_rng()  # fresh OS entropy for every upload
    boxes = [enlarged_box(face, settings.face_scale, image.size) for face in report.faces]
    for box in merged_boxes(boxes):
        obliterate_box(image, box, settings.blur_style, rng)
    out = io.BytesIO()
    image.save(out, pillow_format, **options)
    return out.getvalue()


def _decoded_ahead(report: ImageReport) -> Image.Image | None:
    ahead, report.pixels_ahead = report.pixels_ahead, None
    return ahead.take() if ahead is not None else None


def enlarged_box(face: Face, scale: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The face box grown by `scale` around its centre (hair, ears, chin), inside the image."""
    width, height = size
    cx, cy = face.x + face.w / 2, face.y + face.h / 2
    half_w, half_h = face.w * scale / 2, face.h * scale / 2
    return (
        max(0, int(np.floor(cx - half_w))),
        max(0, int(np.floor(cy - half_h))),
        min(width, int(np.ceil(cx + half_w))),
        min(height, int(np.ceil(cy + half_h))),
    )


def merged_boxes(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Boxes that largely overlap (one face found twice, at two sizes) become their union, so
    that the face is obliterated once, as a whole, instead of in overlapping patches whose
    seams can follow its features. Repeated until no two boxes overlap that much."""
    merged = np.array(boxes, dtype=np.int64).reshape(-1, 4)
    while len(merged) > 1:
        pairs = np.argwhere(np.triu(_overlap_shares(merged) >= MERGE_OVERLAP, k=1))
        if not len(pairs):
            break
        i, j = pairs[0]
        merged[i, :2] = np.minimum(merged[i, :2], merged[j, :2])
        merged[i, 2:] = np.maximum(merged[i, 2:], merged[j, 2:])
        merged = np.delete(merged, j, axis=0)
    return [(int(x1), int(y1), int(x2), int(y2)) for x1, y1, x2, y2 in merged]


def _overlap_shares(boxes: np.ndarray) -> np.ndarray:
    """For every pair of boxes, their intersection's share of the smaller one."""
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    width = np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :])
    height = np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    areas = (x2 - x1) * (y2 - y1)
    smaller = np.maximum(np.minimum(areas[:, None], areas[None, :]), 1)
    return inter / smaller


def obliterate_box(
    image: Image.Image, box: tuple[int, int, int, int], style: str, rng: np.random.Generator
) -> None:
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        return
    size = (x2 - x1, y2 - y1)
    if style == "solid":
        patch = Image.new(image.mode, size, _black(image.mode))
    else:
        cells = image.crop(box).resize(cell_grid(size), Image.Resampling.BOX)
        cells = _with_noise(cells, rng)
        smooth = Image.Resampling.BICUBIC if style == "blur" else Image.Resampling.NEAREST
        patch = cells.resize(size, smooth)
    image.paste(patch, (x1, y1))


def cell_grid(size: tuple[int, int]) -> tuple[int, int]:
    """How many cells across and down: at most MAX_CELLS, each at least MIN_CELL pixels."""
    width, height = size
    long_cells = max(1, min(MAX_CELLS, max(width, height) // MIN_CELL))
    unit = max(width, height) / long_cells
    return max(1, round(width / unit)), max(1, round(height / unit))


def _with_noise(cells: Image.Image, rng: np.random.Generator) -> Image.Image:
    values = np.asarray(cells, dtype=np.float32).reshape(cells.height, cells.width, -1)
    noise = rng.normal(0.0, NOISE_SIGMA, values.shape).astype(np.float32)
    if "A" in cells.getbands():
        noise[..., cells.getbands().index("A")] = 0  # transparency is not face detail
    noisy = np.clip(np.rint(values + noise), 0, 255).astype(np.uint8)
    return Image.frombytes(cells.mode, cells.size, noisy.tobytes())


def _black(mode: str) -> tuple[int, ...] | int:
    return {"L": 0, "LA": (0, 255), "RGB": (0, 0, 0), "RGBA": (0, 0, 0, 255)}.get(
        mode, (0, 0, 0, 255)
    )


def _editable(image: Image.Image) -> Image.Image:
    if image.mode in EDITABLE_MODES:
        return image
    if image.mode == "1":
        return image.convert("L")
    transparent = "A" in image.getbands() or "transparency" in image.info
    return image.convert("RGBA" if transparent else "RGB")


def encode_options(image: Image.Image, fmt: str, data: bytes) -> dict:
    """Options for Pillow's encoder that keep the source's quality (read before any change;
    no metadata is carried over)."""
    options: dict = {}
    icc = image.info.get("icc_profile")
    if icc and fmt in ("jpeg", "png", "webp", "tiff", "avif", "heif"):
        options["icc_profile"] = icc  # colour, not metadata; strip keeps or drops it by policy
    if fmt == "jpeg":
        options.update(_jpeg_params(image))
    elif fmt == "png":
        if "transparency" in image.info and image.mode in ("L", "RGB"):
            options["transparency"] = image.info["transparency"]
    elif fmt == "webp":
        options.update({"lossless": True} if _webp_lossless(data) else {"quality": LOSSY_QUALITY})
    elif fmt == "tiff":
        compression = image.info.get("compression", "raw")
        options["compression"] = compression if compression in LOSSLESS_TIFF else "tiff_lzw"
    elif fmt in ("avif", "heif"):
        options["quality"] = LOSSY_QUALITY
    return options


def _jpeg_params(image: Image.Image) -> dict:
    """Pillow's quality="keep", spelled out: it only works on the unmodified source image."""
    params: dict = {"qtables": image.quantization}
    sampling = JpegImagePlugin.get_sampling(image)
    if sampling != -1:
        params["subsampling"] = sampling
    if image.info.get("progressive") or image.info.get("progression"):
        params["progressive"] = True
    if "dpi" in image.info:
        params["dpi"] = image.info["dpi"]
    return params


def _webp_lossless(data: bytes) -> bool:
    """Whether the WebP's image chunk is VP8L (lossless) rather than VP8 (lossy)."""
    pos = 12
    while pos + 8 <= len(data):
        fourcc = data[pos : pos + 4]
        if fourcc in (b"VP8 ", b"VP8L"):
            return fourcc == b"VP8L"
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        pos += 8 + size + (size & 1)
    return False
