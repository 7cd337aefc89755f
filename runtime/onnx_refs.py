"""The external-data references of an ONNX file, read from its protobuf wire format without the onnx package.

An ONNX tensor may keep its values in another file (``external_data`` with a ``location`` key). ONNX Runtime
refuses locations outside the model's folder, but other readers (OpenCV's DNN module among them) follow them
anywhere, so the bundle reader lists them here and accepts only the bundle's own files.

Only the messages that can hold a tensor are walked: graphs, nodes, attributes, functions, training graphs and
sparse tensors; everything else, raw tensor bytes included, is skipped by its length.
"""

from __future__ import annotations

from collections.abc import Iterator

#: message -> {field number: message it holds}, after onnx.proto (ModelProto, GraphProto, NodeProto, ...)
_CHILDREN = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node", 11: "attribute"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
}
_EXTERNAL_DATA = 13
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_LENGTH_DELIMITED = 2


class NotProtobuf(ValueError):
    """Bytes that do not parse as a protobuf message."""


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise NotProtobuf("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, memoryview | None]]:
    """(field number, payload of a length-delimited field or None) for every field of one message."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire = key & 7
        payload = None
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == _LENGTH_DELIMITED:
            length, pos = _varint(data, pos)
            payload = data[pos : pos + length]
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise NotProtobuf(f"wire type {wire}")
        if pos > len(data):
            raise NotProtobuf("a field runs past the end")
        yield key >> 3, payload


def _entry(data: memoryview) -> tuple[str, str]:
    key = value = ""
    for number, payload in _fields(data):
        if payload is not None and number in (_ENTRY_KEY, _ENTRY_VALUE):
            text = bytes(payload).decode("utf-8", "replace")
            key, value = (text, value) if number == _ENTRY_KEY else (key, text)
    return key, value


def external_locations(model: bytes) -> list[str]:
    """Every ``location`` an ONNX model's tensors read their values from, in file order."""
    locations: list[str] = []
    stack = [("model", memoryview(model))]
    while stack:
        kind, data = stack.pop()
        children = _CHILDREN[kind]
        for number, payload in _fields(data):
            if payload is None or number not in children:
                continue
            child = children[number]
            if kind == "tensor" and number == _EXTERNAL_DATA:
                key, value = _entry(payload)
                if key == "location":
                    locations.append(value)
            else:
                stack.append((child, payload))
    return locations
