"""Find faces: an upright, reduced canvas of the photo through CenterFace, boxes mapped back.

The operating point favours recall (a missed face is a leak, a false box only blurs a patch):
a canvas of `face_canvas` pixels on the long side, JPEG draft-mode decoding so that a 12 MP
photo is decoded at a half or a quarter of its size in the first place, a low threshold
(`face_threshold`), and two extra kinds of pass:

- a coarse pass on a COARSE_SIDE canvas for faces too large for the main one: CenterFace
  cannot draw a box much over ~400 px, so a selfie or a close-up (a face filling the frame)
  was only partly covered on a 1280 px canvas (a third of the face, measured);
- for photos without an orientation tag when `face_rotations` is set, the canvas turned a
  quarter, a half and three quarters round (each turn costs one more detection).

Boxes from different passes that cover the same face are merged into their union, so that
no pass can shrink what another found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from veil.faces import centerface, pixels
from veil.findings import THUMBNAIL_SIDE, Face, ImageReport
from veil.policy import Settings

# Quarter turns tried for photos whose orientation is unknown (np.rot90's k, anticlockwise).
EXTRA_TURNS = (1, 2, 3)
COARSE_SIDE = 320  # px, long side of the pass for very large faces (about 1/16 of the cost)
# The coarse pass only adds faces of at least this many of its pixels (154 on a 1024 canvas);
# smaller ones the main pass sees better, with tighter boxes.
COARSE_MIN_FACE = 48
SAME_FACE_INSIDE = 0.8  # a box this much inside another is the same face seen at another scale


@dataclass(frozen=True)
class Canvas:
    """The upright photo, reduced for detection, and how its pixels map to displayed ones."""

    image: Image.Image  # RGB
    rgb: np.ndarray  # the same pixels, H x W x 3 uint8
    x_scale: float  # displayed pixels per canvas pixel
    y_scale: float
    display_size: tuple[int, int]
    orientation_known: bool


def detect(data: bytes, report: ImageReport, settings: Settings) -> list[Face]:
    model = centerface.load(settings.face_precision)
    canvas = detection_canvas(data, report, settings.face_canvas)
    if report.pixels_ahead is not None:
        report.pixels_ahead.pause()
    report.thumbnail = thumbnail(canvas.image)
    turns = (0,)
    if settings.face_rotations and not canvas.orientation_known:
        turns = (0, *EXTRA_TURNS)
    passes = [
        _scaled(_find(model, rgb, turns, settings.face_threshold, min_face), factor)
        for rgb, factor, min_face in _scales(canvas)
    ]
    boxes = merge_passes(passes)
    return [_face(box, canvas) for box in boxes[np.argsort(-boxes[:, 4], kind="stable")]]


def thumbnail(canvas: Image.Image) -> Image.Image:
    """The upright canvas, grey and THUMBNAIL_SIDE px square (the audit hashes it)."""
    side = THUMBNAIL_SIDE
    return canvas.convert("L").resize((side, side), Image.Resampling.BOX)


def _scales(canvas: Canvas) -> list[tuple[np.ndarray, tuple[float, float], int]]:
    """The canvas, and a coarse copy when the canvas is much larger than COARSE_SIDE; with the
    factors back to canvas pixels and the smallest face each one reports."""
    width, height = canvas.image.size
    scales = [(canvas.rgb, (1.0, 1.0), 0)]
    if max(width, height) >= 2 * COARSE_SIDE:
        ratio = COARSE_SIDE / max(width, height)
        size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
        coarse = _resized(canvas.image, size)
        scales.append((np.asarray(coarse), (width / size[0], height / size[1]), COARSE_MIN_FACE))
    return scales


def _find(
    model: centerface.CenterFace,
    rgb: np.ndarray,
    turns: tuple[int, ...],
    threshold: float,
    min_face: int,
) -> np.ndarray:
    size = (rgb.shape[1], rgb.shape[0])
    found = [
        unturn(model.detect(np.ascontiguousarray(np.rot90(rgb, k)), threshold), k, size)
        for k in turns
    ]
    boxes = merge_passes(found)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return boxes[sides >= min_face]


def _scaled(boxes: np.ndarray, factor: tuple[float, float]) -> np.ndarray:
    return boxes * np.array([factor[0], factor[1], factor[0], factor[1], 1.0], dtype=np.float32)


def merge_passes(passes: list[np.ndarray]) -> np.ndarray:
    """One box per face: a box of a later pass that covers faces already found (IoU >= 0.3,
    or one box mostly inside the other) replaces them with the union of them all; a box that
    covers none is added."""
    kept = [box for box in passes[0]]
    for boxes in passes[1:]:
        for box in boxes[np.argsort(-boxes[:, 4], kind="stable")]:
            same = [k for k in kept if _same_face(k, box)]
            if same:
                kept = [k for k in kept if not any(k is s for s in same)]
                box = _union([box, *same])
            kept.append(box)
    return np.array(kept, dtype=np.float32).reshape(-1, 5)


def _union(boxes: list[np.ndarray]) -> np.ndarray:
    stacked = np.stack(boxes)
    return np.array(
        [*stacked[:, :2].min(axis=0), *stacked[:, 2:4].max(axis=0), stacked[:, 4].max()],
        dtype=np.float32,
    )


def _same_face(a, b) -> bool:
    inter_w = min(a[2], b[2]) - max(a[0], b[0])
    inter_h = min(a[3], b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return False
    inter = inter_w * inter_h
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    iou = inter / (area_a + area_b - inter)
    return iou >= centerface.NMS_IOU or inter >= SAME_FACE_INSIDE * min(area_a, area_b)


DRAFT_SLACK = 0.9


def detection_canvas(data: bytes, report: ImageReport, long_side: int) -> Canvas:
    image = pixels.open_still(data, report.format)
    orientation_known = pixels.has_orientation_tag(image)
    stored_w, stored_h = image.size
    ratio = long_side / max(stored_w, stored_h)
    target = (max(1, round(stored_w * ratio)), max(1, round(stored_h * ratio)))
    if ratio < 1:
        # JPEG decodes at 1/2, 1/4 or 1/8 (DCT scaling). A canvas up to DRAFT_SLACK smaller
        # than asked is accepted when it lets the decoder scale further: a 4032 px photo is
        # 1008 px at 1/4, where 1024 px would need decoding at 1/2 and reducing (3x the cost).
        image.draft("RGB", (round(target[0] * DRAFT_SLACK), round(target[1] * DRAFT_SLACK)))
    image = pixels.load(image, report.format)
    if image.mode != "RGB":
        image = image.convert("RGB")
    drafted = ratio < 1 and max(image.size) <= long_side  # within the slack: used as it is
    if not drafted:
        image = _resized(image, target)
    orientation = pixels.pixel_orientation(report.format, report.orientation)
    image = pixels.upright(image, orientation)
    display_w, display_h = pixels.displayed_size(stored_w, stored_h, orientation)
    return Canvas(
        image=image,
        rgb=np.asarray(image),
        x_scale=display_w / image.width,
        y_scale=display_h / image.height,
        display_size=(display_w, display_h),
        orientation_known=orientation_known,
    )


def _resized(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """Averaging by whole factors first (draft mode already did for JPEG), then nearest for
    the rest of a reduction: on 12 MP photos as good for recall as bilinear, at half the cost
    (measured: 53 against 103 ms for decode and resize, 96.9% against 96.5% covered)."""
    factor = min(image.width // target[0], image.height // target[1])
    if factor >= 2:
        image = image.reduce(factor)
    if image.size == target:
        return image
    shrinking = image.width > target[0]
    return image.resize(
        target, Image.Resampling.NEAREST if shrinking else Image.Resampling.BILINEAR
    )


def unturn(boxes: np.ndarray, turns: int, size: tuple[int, int]) -> np.ndarray:
    """Boxes found on np.rot90(canvas, turns), in the coordinates of `canvas` (width, height)."""
    width, height = size
    out = boxes.copy()
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    turns %= 4
    if turns == 0:
        return out
    if turns == 1:  # (x, y) was turned to (y, width - x)
        out[:, 0], out[:, 1], out[:, 2], out[:, 3] = width - y2, x1, width - y1, x2
    elif turns == 2:
        out[:, 0], out[:, 2] = width - x2, width - x1
        out[:, 1], out[:, 3] = height - y2, height - y1
    elif turns == 3:  # (x, y) was turned to (height - y, x)
        out[:, 0], out[:, 1], out[:, 2], out[:, 3] = y1, height - x2, y2, height - x1
    return out


def _face(box: np.ndarray, canvas: Canvas) -> Face:
    width, height = canvas.display_size
    x1 = max(0, int(np.floor(box[0] * canvas.x_scale)))
    y1 = max(0, int(np.floor(box[1] * canvas.y_scale)))
    x2 = min(width, int(np.ceil(box[2] * canvas.x_scale)))
    y2 = min(height, int(np.ceil(box[3] * canvas.y_scale)))
    return Face(x1, y1, max(1, x2 - x1), max(1, y2 - y1), float(box[4]))
