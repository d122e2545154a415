"""Generate the OpenCV text graph (.pbtxt) for a TensorFlow Object Detection API SSD frozen graph.

OpenCV's `cv2.dnn.readNetFromTensorflow(pb, pbtxt)` cannot run the TF post-processing (a while-loop
NMS and an anchor generator built from dozens of small ops). It can run the convolutional part, and it
has its own SSD layers (`PriorBox`, `DetectionOutput`). The text graph tells it which nodes of the
binary graph to build (weights are still read from the .pb by name) and adds those SSD layers.

Everything the SSD layers need is read from the graph itself, not from a training config:
  * input size          <- the Preprocessor's ResizeImage target
  * anchors per layer   <- the MultipleGridAnchorGenerator constants (aspect ratios feed a `Sqrt`;
                           the scales are what that `Sqrt` divides / multiplies; base anchor size)
  * classes and layers  <- the `BoxPredictor_i/{ClassPredictor,BoxEncodingPredictor}` bias sizes
  * box-coder scales    <- the divisors applied to each unstacked code in `Postprocessor/Decode`
  * NMS IoU / top-k     <- the constants of the `BatchMultiClassNonMaxSuppression` loop

Regenerate the committed asset with
    python -m sdpose_core.detection [--pb PATH] [--out assets/ssdlite_mobilenet_v2_person.pbtxt]
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdpose_core.detection.protowire import GraphNode, input_node_name, read_graph
from sdpose_core.errors import DataError

# Ops OpenCV builds from the feature extractor and box predictors; anything else there is unexpected.
_NETWORK_OPS = {"Placeholder", "Conv2D", "DepthwiseConv2dNative", "BiasAdd", "FusedBatchNorm", "FusedBatchNormV3",
                "Relu6", "Relu", "Add", "AddV2", "Mul", "Sub"}
# Attributes OpenCV reads, per op, with their text-format kind; the rest (T, use_cudnn_on_gpu, ...) is noise.
_KEPT_ATTRS = {
    "Conv2D": {"strides": "list_i", "padding": "s", "dilations": "list_i", "data_format": "s"},
    "DepthwiseConv2dNative": {"strides": "list_i", "padding": "s", "dilations": "list_i", "data_format": "s"},
    "FusedBatchNorm": {"epsilon": "f", "data_format": "s"},
    "FusedBatchNormV3": {"epsilon": "f", "data_format": "s"},
    "BiasAdd": {"data_format": "s"},
}


@dataclass(frozen=True)
class AnchorLayer:
    """Anchors of one feature map, normalised to the input image (TF `tile_anchors` semantics)."""

    grid: tuple[int, int]  # (rows, cols) of the feature map
    heights: tuple[float, ...]
    widths: tuple[float, ...]


@dataclass(frozen=True)
class SSDGraphSpec:
    """What the frozen SSD graph says about itself."""

    input_name: str
    input_size: tuple[int, int]  # (height, width) the graph resizes every image to
    num_classes: int  # without the background class
    layers: tuple[AnchorLayer, ...]
    box_coder_scales: tuple[float, float, float, float]  # (y, x, h, w) divisors of the box codes
    score_converter: str  # "Sigmoid" or "Softmax"
    nms_iou: float
    nms_score_threshold: float
    max_detections: int
    clip_to_image: bool

    @property
    def num_anchors(self) -> int:
        return sum(layer.grid[0] * layer.grid[1] * len(layer.widths) for layer in self.layers)


class _Graph:
    def __init__(self, nodes: dict[str, GraphNode], source: str):
        self.nodes = nodes
        self.source = source

    def get(self, name: str) -> GraphNode:
        node = self.nodes.get(input_node_name(name))
        if node is None:
            raise DataError(f"{self.source}: node {name!r} not found; is this a TF Object Detection API SSD graph?")
        return node

    def resolve(self, name: str) -> GraphNode:
        """Follow Identity nodes (e.g. `weights/read`) back to the node that produces the value."""
        node = self.get(name)
        while node.op == "Identity":
            node = self.get(node.inputs[0])
        return node

    def const(self, name: str) -> np.ndarray:
        return self.resolve(name).const_value()

    def ancestors(self, start: str) -> list[GraphNode]:
        seen: dict[str, GraphNode] = {}
        stack = [start]
        while stack:
            name = stack.pop()
            if name.startswith("^"):  # control dependencies carry no values
                continue
            node = self.get(name)
            if node.name in seen:
                continue
            seen[node.name] = node
            stack.extend(node.inputs)
        return list(seen.values())

    def find_suffix(self, suffix: str) -> GraphNode:
        matches = [node for name, node in self.nodes.items() if name.endswith(suffix)]
        if len(matches) != 1:
            raise DataError(f"{self.source}: expected one node named '*{suffix}', found {len(matches)}")
        return matches[0]


def _anchor_layer(graph: _Graph, anchor_output: str, input_size: tuple[int, int]) -> AnchorLayer:
    ancestors = graph.ancestors(anchor_output)
    sqrts = [node for node in ancestors if node.op == "Sqrt"]
    ranges = [node for node in ancestors if node.op == "Range"]
    if len(sqrts) != 1 or len(ranges) != 2:
        raise DataError(f"{graph.source}: anchors {anchor_output!r} do not look like a grid anchor generator "
                        f"({len(sqrts)} Sqrt, {len(ranges)} Range ops)")
    sqrt = sqrts[0]
    aspect_ratios = graph.const(sqrt.inputs[0]).astype(np.float64)
    # tile_anchors: heights = scales / sqrt(ar) * base_h ; widths = scales * sqrt(ar) * base_w
    height_scales = width_scales = None
    for node in ancestors:
        if node.op == "RealDiv" and input_node_name(node.inputs[1]) == sqrt.name:
            height_scales = graph.const(node.inputs[0]).astype(np.float64)
        elif node.op == "Mul" and sqrt.name in {input_node_name(i) for i in node.inputs}:
            other = next(i for i in node.inputs if input_node_name(i) != sqrt.name)
            width_scales = graph.const(other).astype(np.float64)
    if height_scales is None or width_scales is None:
        raise DataError(f"{graph.source}: cannot find the anchor scales of {anchor_output!r}")
    # base_anchor_size is a 2-vector constant read through StridedSlice ops (default [1, 1]).
    base = np.ones(2)
    for node in ancestors:
        if node.op == "StridedSlice":
            source = graph.resolve(node.inputs[0])
            if source.op == "Const" and source.const_value().shape == (2,) and source.const_value().dtype.kind == "f":
                base = source.const_value().astype(np.float64)
    # The generator normalises anchors by min(H, W) so they stay square on non-square inputs.
    height, width = input_size
    shortest = min(height, width)
    # tile_anchors makes range(grid_height) before range(grid_width); frozen graphs keep creation order.
    position = {name: index for index, name in enumerate(graph.nodes)}
    rows, cols = (int(graph.const(node.inputs[1])) for node in sorted(ranges, key=lambda n: position[n.name]))
    return AnchorLayer(
        grid=(rows, cols),
        heights=tuple(float(v) for v in height_scales / np.sqrt(aspect_ratios) * base[0] * shortest / height),
        widths=tuple(float(v) for v in width_scales * np.sqrt(aspect_ratios) * base[1] * shortest / width),
    )


def inspect_ssd_graph(nodes: dict[str, GraphNode], source: str = "graph") -> SSDGraphSpec:
    """Read input size, anchors, classes, box coder and NMS settings from an SSD frozen graph."""
    graph = _Graph(nodes, source)
    placeholders = [node for node in nodes.values() if node.op == "Placeholder"]
    if len(placeholders) != 1:
        raise DataError(f"{source}: expected one input placeholder, found {len(placeholders)}")
    input_size = tuple(int(v) for v in graph.find_suffix("ResizeImage/stack").const_value()[:2])

    anchor_outputs = [name for name in graph.get("Concatenate/concat").inputs
                      if graph.resolve(name).op != "Const"]
    layers = tuple(_anchor_layer(graph, name, input_size) for name in anchor_outputs)

    num_classes = None
    for index, layer in enumerate(layers):
        box_bias = graph.const(graph.get(f"BoxPredictor_{index}/BoxEncodingPredictor/BiasAdd").inputs[1])
        class_bias = graph.const(graph.get(f"BoxPredictor_{index}/ClassPredictor/BiasAdd").inputs[1])
        anchors = box_bias.size // 4
        if anchors != len(layer.widths):
            raise DataError(f"{source}: box predictor {index} predicts {anchors} boxes per cell but the anchor "
                            f"generator makes {len(layer.widths)}")
        layer_classes = class_bias.size // anchors - 1
        if num_classes is not None and layer_classes != num_classes:
            raise DataError(f"{source}: box predictors disagree on the number of classes")
        num_classes = layer_classes
    if f"BoxPredictor_{len(layers)}/ClassPredictor/BiasAdd" in nodes:
        raise DataError(f"{source}: more box predictors than anchor layers")

    expected = nodes.get("MultipleGridAnchorGenerator/assert_equal/x")
    spec_layers_total = sum(layer.grid[0] * layer.grid[1] * len(layer.widths) for layer in layers)
    if expected is not None and int(expected.const_value()) != spec_layers_total:
        raise DataError(f"{source}: anchors add up to {spec_layers_total}, the graph asserts "
                        f"{int(expected.const_value())}")

    # Postprocessor/Decode divides the unstacked codes (ty, tx, th, tw) by the box-coder scale factors.
    scales = {}
    for name, node in nodes.items():
        if name.startswith("Postprocessor/Decode/") and node.op == "RealDiv":
            source_name, _, output = node.inputs[0].partition(":")
            if source_name == "Postprocessor/Decode/unstack":
                scales[int(output or 0)] = float(graph.const(node.inputs[1]))
    if sorted(scales) != [0, 1, 2, 3]:
        raise DataError(f"{source}: cannot read the box-coder scale factors from Postprocessor/Decode")

    converter = graph.get("Postprocessor/convert_scores")
    logit_scale = float(graph.const("Postprocessor/scale_logits/y")) if "Postprocessor/scale_logits/y" in nodes else 1.0
    if converter.op not in ("Sigmoid", "Softmax") or not math.isclose(logit_scale, 1.0):
        raise DataError(f"{source}: score converter {converter.op} with logit scale {logit_scale} is not supported")

    return SSDGraphSpec(
        input_name=placeholders[0].name,
        input_size=(int(input_size[0]), int(input_size[1])),
        num_classes=int(num_classes),
        layers=layers,
        box_coder_scales=(scales[0], scales[1], scales[2], scales[3]),
        score_converter=converter.op,
        nms_iou=float(graph.find_suffix("non_max_suppression/iou_threshold").const_value()),
        nms_score_threshold=float(graph.find_suffix("non_max_suppression/score_threshold").const_value()),
        max_detections=int(graph.find_suffix("MultiClassNonMaxSuppression/Minimum/x").const_value()),
        clip_to_image=any("ClipToWindow" in name for name in nodes),
    )


def ssd_anchors(spec: SSDGraphSpec) -> np.ndarray:
    """All anchors as [N, 4] (ymin, xmin, ymax, xmax), normalised, in the order the predictors emit them."""
    blocks = []
    for layer in spec.layers:
        rows, cols = layer.grid
        cy = (np.arange(rows) + 0.5) / rows
        cx = (np.arange(cols) + 0.5) / cols
        heights, widths = np.asarray(layer.heights), np.asarray(layer.widths)
        cy, cx = np.meshgrid(cy, cx, indexing="ij")  # cell-major, anchor-minor like the conv outputs
        cy, cx = cy[..., None], cx[..., None]
        block = np.stack(np.broadcast_arrays(cy - heights / 2, cx - widths / 2, cy + heights / 2, cx + widths / 2),
                         axis=-1)
        blocks.append(block.reshape(-1, 4))
    return np.concatenate(blocks)


# --- text-format emission -------------------------------------------------------------------------

def _fmt_float(value: float) -> str:
    return format(float(np.float32(value)), ".9g")


def _render_attr(kind: str, value: Any, indent: str) -> list[str]:
    if kind == "list_i":
        return [f"{indent}list {{"] + [f"{indent}  i: {int(v)}" for v in value] + [f"{indent}}}"]
    if kind == "s":
        return [f'{indent}s: "{value}"']
    if kind == "f":
        return [f"{indent}f: {_fmt_float(value)}"]
    if kind == "i":
        return [f"{indent}i: {int(value)}"]
    if kind == "b":
        return [f"{indent}b: {'true' if value else 'false'}"]
    if kind == "type":
        return [f"{indent}type: {value}"]
    if kind == "shape":
        return [f"{indent}shape {{"] + [f"{indent}  dim {{ size: {int(d)} }}" for d in value] + [f"{indent}}}"]
    if kind in ("tensor_f", "tensor_i"):
        dtype, field = ("DT_FLOAT", "float_val") if kind == "tensor_f" else ("DT_INT32", "int_val")
        values = [_fmt_float(v) if kind == "tensor_f" else str(int(v)) for v in value]
        return ([f"{indent}tensor {{", f"{indent}  dtype: {dtype}",
                 f"{indent}  tensor_shape {{ dim {{ size: {len(values)} }} }}"]
                + [f"{indent}  {field}: {v}" for v in values] + [f"{indent}}}"])
    raise ValueError(f"unknown attribute kind {kind}")


@dataclass
class _TextNode:
    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, tuple[str, Any]]

    def render(self) -> str:
        lines = ["node {", f'  name: "{self.name}"', f'  op: "{self.op}"']
        lines += [f'  input: "{name}"' for name in self.inputs]
        for key in sorted(self.attrs):
            kind, value = self.attrs[key]
            lines += ["  attr {", f'    key: "{key}"', "    value {"]
            lines += _render_attr(kind, value, "      ")
            lines += ["    }", "  }"]
        lines.append("}")
        return "\n".join(lines)


def _network_nodes(graph: _Graph, spec: SSDGraphSpec, heads: list[str]) -> list[_TextNode]:
    """The feature extractor and box predictors in dependency order, Identity and TF preprocessing loop cut out."""
    order: list[_TextNode] = []
    done: set[str] = set()

    def source_of(reference: str) -> str:
        node = graph.resolve(reference)
        if node.name.startswith("Preprocessor/map"):  # the TF resize loop: OpenCV is fed resized pixels
            return spec.input_name
        return node.name

    def visit(name: str) -> None:
        stack = [(name, False)]
        while stack:
            current, expanded = stack.pop()
            if current in done:
                continue
            node = graph.get(current)
            data_inputs = [source_of(i) for i in node.inputs if not i.startswith("^")]
            if not expanded:
                stack.append((current, True))
                stack.extend((i, False) for i in data_inputs if graph.get(i).op != "Const" and i not in done)
                continue
            done.add(current)
            if node.op not in _NETWORK_OPS:
                raise DataError(f"{graph.source}: op {node.op} ({node.name}) in the network part is not supported")
            attrs = {}
            for key, kind in _KEPT_ATTRS.get(node.op, {}).items():
                if key in node.raw_attrs:
                    value = node.attr(key)
                    attrs[key] = (kind, value.get("i", []) if kind == "list_i" else value)
            if node.op == "Placeholder":
                attrs = {"dtype": ("type", node.attr("dtype")),
                         "shape": ("shape", [-1, spec.input_size[0], spec.input_size[1], 3])}
            order.append(_TextNode(node.name, node.op, data_inputs, attrs))

    for head in heads:
        visit(head)
    return order


def build_text_graph(pb_path: str | Path) -> str:
    """The OpenCV text graph for the SSD frozen graph at `pb_path`, as a string."""
    pb_path = Path(pb_path)
    nodes = read_graph(pb_path)
    graph = _Graph(nodes, str(pb_path))
    spec = inspect_ssd_graph(nodes, str(pb_path))
    layer_count = len(spec.layers)
    class_heads = [f"BoxPredictor_{i}/ClassPredictor/BiasAdd" for i in range(layer_count)]
    box_heads = [f"BoxPredictor_{i}/BoxEncodingPredictor/BiasAdd" for i in range(layer_count)]
    text_nodes = _network_nodes(graph, spec, class_heads + box_heads)

    for node in text_nodes:  # TF box codes are (ty, tx, th, tw); OpenCV expects (tx, ty, tw, th)
        if node.name.startswith("BoxPredictor_") and node.name.endswith("/BoxEncodingPredictor/Conv2D"):
            node.attrs["loc_pred_transposed"] = ("b", True)

    extra = [_TextNode("concat/axis_flatten", "Const", [], {"value": ("tensor_i", [-1])})]
    for label, heads in (("ClassPredictor", class_heads), ("BoxEncodingPredictor", box_heads)):
        flats = [_TextNode(f"{head}/Flatten", "Flatten", [head], {}) for head in heads]
        extra += flats
        extra.append(_TextNode(f"{label}/concat", "ConcatV2", [f.name for f in flats] + ["concat/axis_flatten"], {}))

    y_scale, x_scale, h_scale, w_scale = spec.box_coder_scales
    height, width = spec.input_size
    priors = []
    for index, layer in enumerate(spec.layers):
        priors.append(_TextNode(f"PriorBox_{index}", "PriorBox", [box_heads[index], spec.input_name], {
            "flip": ("b", False),
            "clip": ("b", False),
            "width": ("tensor_f", [w * width for w in layer.widths]),  # PriorBox takes pixels
            "height": ("tensor_f", [h * height for h in layer.heights]),
            "variance": ("tensor_f", [1 / x_scale, 1 / y_scale, 1 / w_scale, 1 / h_scale]),
        }))
    extra += priors
    extra.append(_TextNode("PriorBox/concat", "ConcatV2", [p.name for p in priors] + ["concat/axis_flatten"], {}))

    classes_with_background = spec.num_classes + 1
    extra.append(_TextNode("ClassPredictor/concat3d/shape", "Const", [],
                           {"value": ("tensor_i", [0, -1, classes_with_background])}))
    extra.append(_TextNode("ClassPredictor/concat3d", "Reshape",
                           ["ClassPredictor/concat", "ClassPredictor/concat3d/shape"], {}))
    scores = "ClassPredictor/scores"
    score_attrs = {"axis": ("i", -1)} if spec.score_converter == "Softmax" else {}
    extra.append(_TextNode(scores, spec.score_converter, ["ClassPredictor/concat3d"], score_attrs))
    extra.append(_TextNode(f"{scores}/Flatten", "Flatten", [scores], {}))
    extra.append(_TextNode("detection_out", "DetectionOutput",
                           ["BoxEncodingPredictor/concat", f"{scores}/Flatten", "PriorBox/concat"], {
                               "num_classes": ("i", classes_with_background),
                               "share_location": ("b", True),
                               "background_label_id": ("i", 0),
                               "nms_threshold": ("f", spec.nms_iou),
                               "confidence_threshold": ("f", spec.nms_score_threshold),
                               "top_k": ("i", spec.max_detections),
                               "keep_top_k": ("i", spec.max_detections),
                               "code_type": ("s", "CENTER_SIZE"),
                               "clip": ("b", spec.clip_to_image),
                           }))

    digest = hashlib.sha256(pb_path.read_bytes()).hexdigest()
    header = [
        "# OpenCV text graph generated by sdpose_core.detection.textgraph -- do not edit by hand.",
        f"# source sha256: {digest}",
        f"# input {height}x{width} RGB 0-255, {spec.num_classes} class(es) + background, "
        f"{layer_count} feature maps {[layer.grid for layer in spec.layers]}, {spec.num_anchors} anchors",
    ]
    return "\n".join(header + [node.render() for node in text_nodes + extra]) + "\n"


def text_graph_source_digest(text: str) -> str | None:
    """The sha256 of the .pb a generated text graph was made from (from its header), if recorded."""
    for line in text.splitlines()[:5]:
        if line.startswith("# source sha256: "):
            return line.split(": ", 1)[1].strip()
    return None
