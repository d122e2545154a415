"""Read a frozen TensorFlow graph (`GraphDef` .pb) without TensorFlow.

A frozen graph is a protocol-buffer message. Only a handful of its fields matter to us (node names,
ops, inputs, attributes and the values of constants), so instead of depending on TensorFlow's
generated classes we decode the protobuf wire format directly. Field numbers follow TensorFlow's
`graph.proto`, `node_def.proto`, `attr_value.proto`, `tensor.proto` and `tensor_shape.proto`.

Large constants (the weights) are kept as undecoded bytes and only turned into arrays on request,
so reading the 13 MB person-detector graph takes a fraction of a second.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdpose_core.errors import DataError

# Wire types of the protobuf encoding.
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5

# TensorFlow DataType enum values -> numpy dtypes (the ones a detection graph uses).
TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.float64),
    3: np.dtype(np.int32),
    4: np.dtype(np.uint8),
    9: np.dtype(np.int64),
    10: np.dtype(np.bool_),
}
TF_DTYPE_NAMES: dict[int, str] = {1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 7: "DT_STRING",
                                  9: "DT_INT64", 10: "DT_BOOL"}


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _signed64(value: int) -> int:
    """Varints hold int64 in two's complement: reinterpret values with the top bit set as negative."""
    return value - (1 << 64) if value >= (1 << 63) else value


def iter_fields(buf: bytes):
    """Yield (field_number, wire_type, value) for one message; length-delimited values are bytes."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire_type == _LENGTH:
            length, pos = _read_varint(buf, pos)
            value = buf[pos:pos + length]
            pos += length
        elif wire_type == _FIXED32:
            value = buf[pos:pos + 4]
            pos += 4
        elif wire_type == _FIXED64:
            value = buf[pos:pos + 8]
            pos += 8
        else:
            raise DataError(f"unsupported protobuf wire type {wire_type} (field {number}): not a GraphDef?")
        yield number, wire_type, value


def _packed_varints(wire_type: int, value: Any) -> list[int]:
    if wire_type == _VARINT:
        return [value]
    out = []
    pos = 0
    while pos < len(value):
        item, pos = _read_varint(value, pos)
        out.append(item)
    return out


def _packed_floats(value: bytes) -> list[float]:
    # float fields are fixed32: one value (unpacked) or a packed run of them, little-endian either way.
    return list(struct.unpack(f"<{len(value) // 4}f", value))


def decode_shape(buf: bytes) -> list[int] | None:
    """TensorShapeProto -> list of dims (-1 where unknown), or None for an unknown rank."""
    dims: list[int] = []
    for number, _, value in iter_fields(buf):
        if number == 2:  # dim { size: ... }
            size = 0
            for sub_number, _, sub_value in iter_fields(value):
                if sub_number == 1:
                    size = _signed64(sub_value)
            dims.append(size)
        elif number == 3 and value:  # unknown_rank
            return None
    return dims


def decode_tensor(buf: bytes) -> np.ndarray:
    """TensorProto -> numpy array (from tensor_content or the typed *_val fields)."""
    dtype_enum = 1
    shape: list[int] | None = []
    content = b""
    values: list[Any] = []
    for number, wire_type, value in iter_fields(buf):
        if number == 1:
            dtype_enum = value
        elif number == 2:
            shape = decode_shape(value)
        elif number == 4:
            content = value
        elif number == 5:  # float_val
            values.extend(_packed_floats(value))
        elif number in (7, 10, 11):  # int_val, int64_val, bool_val
            values.extend(_signed64(v) for v in _packed_varints(wire_type, value))
    if dtype_enum not in TF_DTYPES:
        raise DataError(f"constant of TensorFlow dtype {TF_DTYPE_NAMES.get(dtype_enum, dtype_enum)} is not supported")
    dtype = TF_DTYPES[dtype_enum]
    dims = [max(d, 0) for d in (shape or [])]
    count = int(np.prod(dims)) if dims else 1
    if content:
        array = np.frombuffer(content, dtype=dtype).copy()
    elif values:
        array = np.asarray(values, dtype=dtype)
        if array.size < count:  # TensorFlow repeats the last value to fill the tensor
            array = np.concatenate([array, np.full(count - array.size, array[-1], dtype=dtype)])
    else:
        array = np.zeros(count, dtype=dtype)
    return array.reshape(dims) if dims else array.reshape(())


def decode_attr(buf: bytes) -> Any:
    """AttrValue -> python value: bytes->str, int, float, bool, dtype name, shape list, ndarray or list dict."""
    for number, _, value in iter_fields(buf):
        if number == 2:
            return value.decode("utf-8", "replace")
        if number == 3:
            return _signed64(value)
        if number == 4:
            return struct.unpack("<f", value)[0]
        if number == 5:
            return bool(value)
        if number == 6:
            return TF_DTYPE_NAMES.get(value, f"DT_{value}")
        if number == 7:
            return decode_shape(value)
        if number == 8:
            return decode_tensor(value)
        if number == 1:  # ListValue
            items: dict[str, list[Any]] = {}
            for sub_number, sub_wire, sub_value in iter_fields(value):
                if sub_number == 2:
                    items.setdefault("s", []).append(sub_value.decode("utf-8", "replace"))
                elif sub_number == 3:
                    items.setdefault("i", []).extend(_signed64(v) for v in _packed_varints(sub_wire, sub_value))
                elif sub_number == 4:
                    items.setdefault("f", []).extend(_packed_floats(sub_value))
                elif sub_number == 5:
                    items.setdefault("b", []).extend(bool(v) for v in _packed_varints(sub_wire, sub_value))
                elif sub_number == 6:
                    items.setdefault("type", []).extend(
                        TF_DTYPE_NAMES.get(v, f"DT_{v}") for v in _packed_varints(sub_wire, sub_value))
            return items
    return None


@dataclass
class GraphNode:
    """One NodeDef: attributes stay encoded until `attr()` asks for one."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    raw_attrs: dict[str, bytes] = field(default_factory=dict)

    def attr(self, key: str, default: Any = None) -> Any:
        raw = self.raw_attrs.get(key)
        return default if raw is None else decode_attr(raw)

    def const_value(self) -> np.ndarray:
        if self.op != "Const":
            raise DataError(f"graph node {self.name!r} is a {self.op}, not a Const")
        return np.asarray(self.attr("value"))


def _decode_node(buf: bytes) -> GraphNode:
    node = GraphNode(name="", op="")
    for number, _, value in iter_fields(buf):
        if number == 1:
            node.name = value.decode("utf-8")
        elif number == 2:
            node.op = value.decode("utf-8")
        elif number == 3:
            node.inputs.append(value.decode("utf-8"))
        elif number == 5:  # map<string, AttrValue> entry
            key, attr_bytes = "", b""
            for sub_number, _, sub_value in iter_fields(value):
                if sub_number == 1:
                    key = sub_value.decode("utf-8")
                elif sub_number == 2:
                    attr_bytes = sub_value
            node.raw_attrs[key] = attr_bytes
    return node


def read_graph(path: str | Path) -> dict[str, GraphNode]:
    """All nodes of a frozen GraphDef, by name, in file order."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the frozen graph {path}: {exc}") from exc
    nodes: dict[str, GraphNode] = {}
    try:
        for number, _, value in iter_fields(buf):
            if number == 1:  # GraphDef.node
                node = _decode_node(value)
                nodes[node.name] = node
    except (DataError, IndexError, UnicodeDecodeError, struct.error) as exc:
        raise DataError(f"{path} is not a valid TensorFlow GraphDef (.pb): {exc}") from exc
    if not nodes:
        raise DataError(f"{path} holds no graph nodes: is it a frozen TensorFlow graph (.pb)?")
    return nodes


def input_node_name(reference: str) -> str:
    """'^ctrl' / 'name:1' -> 'name': the node an input string refers to."""
    return reference.lstrip("^").split(":")[0]
