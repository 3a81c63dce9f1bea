"""Find faces: an upright, reduced canvas of the photo through CenterFace, boxes mapped back.

The operating point favours recall (a missed face is a leak, a false box only blurs a patch):
a canvas of `face_canvas` pixels on the long side, JPEG draft-mode decoding so that a 12 MP
photo is decoded at a half or a quarter of its size in the first place, a low threshold
(`face_threshold`), and, for photos without an orientation tag when `face_rotations` is set,
extra passes with the canvas turned a quarter, a half and three quarters round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from veil.faces import centerface, pixels
from veil.findings import Face, ImageReport
from veil.policy import Settings

# Quarter turns tried for photos whose orientation is unknown (np.rot90's k, anticlockwise).
EXTRA_TURNS = (1, 2, 3)


@dataclass(frozen=True)
class Canvas:
    """The upright photo, reduced for detection, and how its pixels map to displayed ones."""

    pixels: np.ndarray  # H x W x 3, RGB uint8
    x_scale: float  # displayed pixels per canvas pixel
    y_scale: float
    display_size: tuple[int, int]
    orientation_known: bool


def detect(data: bytes, report: ImageReport, settings: Settings) -> list[Face]:
    model = centerface.load()
    canvas = detection_canvas(data, report, settings.face_canvas)
    boxes = model.detect(canvas.pixels, settings.face_threshold)
    if settings.face_rotations and not canvas.orientation_known:
        boxes = _with_turned_passes(model, canvas.pixels, boxes, settings.face_threshold)
    return [_face(box, canvas) for box in boxes]


def detection_canvas(data: bytes, report: ImageReport, long_side: int) -> Canvas:
    image = pixels.open_still(data, report.format)
    orientation_known = pixels.has_orientation_tag(image)
    stored_w, stored_h = image.size
    ratio = long_side / max(stored_w, stored_h)
    target = (max(1, round(stored_w * ratio)), max(1, round(stored_h * ratio)))
    if ratio < 1:
        image.draft("RGB", target)  # JPEG: decode at 1/2, 1/4 or 1/8 (DCT scaling)
    image = pixels.load(image, report.format)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != target:
        image = image.resize(target, Image.Resampling.BILINEAR)
    image = pixels.upright(image, report.orientation)
    display_w, display_h = pixels.displayed_size(stored_w, stored_h, report.orientation)
    return Canvas(
        pixels=np.asarray(image),
        x_scale=display_w / image.width,
        y_scale=display_h / image.height,
        display_size=(display_w, display_h),
        orientation_known=orientation_known,
    )


def _with_turned_passes(
    model: centerface.CenterFace, canvas: np.ndarray, boxes: np.ndarray, threshold: float
) -> np.ndarray:
    found = [boxes]
    for turns in EXTRA_TURNS:
        turned = np.ascontiguousarray(np.rot90(canvas, turns))
        found.append(unturn(model.detect(turned, threshold), turns, canvas.shape[1::-1]))
    return centerface.non_maximum_suppression(np.concatenate(found), centerface.NMS_IOU)


def unturn(boxes: np.ndarray, turns: int, size: tuple[int, int]) -> np.ndarray:
    """Boxes found on np.rot90(canvas, turns), in the coordinates of `canvas` (width, height)."""
    width, height = size
    out = boxes.copy()
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    turns %= 4
    if turns == 1:  # (x, y) was turned to (y, width - x)
        out[:, 0], out[:, 1], out[:, 2], out[:, 3] = width - y2, x1, width - y1, x2
    elif turns == 2:
        out[:, 0], out[:, 1], out[:, 2], out[:, 3] = (
            width - x2,
            height - y2,
            width - x1,
            height - y1,
        )
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
