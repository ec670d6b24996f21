"""Tensors and requests of the KServe v2 inference protocol, shared by the HTTP and gRPC fronts.

Both fronts turn what arrived into the same :class:`InferRequest` (HTTP: the JSON header and the
binary tensor data extension; gRPC: the protobuf message) and encode the same
:class:`InferResponse`. Everything a client can get wrong raises :class:`InvalidRequest` (HTTP
400, gRPC INVALID_ARGUMENT) with a message that names the problem and, for an image, the element.

Wire formats (https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ and
Triton's ``binary_tensor_data`` / ``classification`` extensions):

- a BYTES tensor in binary form is its elements in row-major order, each a 4-byte little-endian
  length followed by the bytes; other datatypes are their little-endian values;
- HTTP: the body is a JSON header, optionally followed by the binary data of the inputs that
  carry ``parameters.binary_data_size``, in input order; ``Inference-Header-Content-Length``
  gives the JSON header's length. A response puts an output in binary form when the output
  asks for it (``parameters.binary_data``) or, when it does not say, when the request does
  (``parameters.binary_data_output``);
- JSON BYTES elements are strings (their UTF-8 bytes, as Triton reads them); since a JPEG is not
  UTF-8, ``{"b64": "<base64>"}`` elements are accepted as well.
"""
from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["ServeError", "InvalidRequest", "BadImage", "BodyTooLarge", "NotFound",
           "Unavailable", "DeadlineError", "Unsupported", "InternalError", "TensorIn",
           "RequestedOutput", "InferRequest", "OutputTensor", "InferResponse", "ModelSchema",
           "serialize_bytes", "deserialize_bytes", "to_raw", "parse_http_request",
           "encode_http_response", "validate_request", "check_jpeg", "classification_strings"]

INPUT = "IMAGE"
CLASSES, SCORES, LABELS = "CLASSES", "SCORES", "LABELS"


# --- errors ------------------------------------------------------------------------------------
class ServeError(Exception):
    """A request the endpoint answers with an error: ``http_status``, ``grpc_code`` (a
    ``grpc.StatusCode`` name) and ``reason`` (the label of the failure metric)."""
    http_status = 500
    grpc_code = "INTERNAL"
    reason = "internal"

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidRequest(ServeError):
    http_status, grpc_code, reason = 400, "INVALID_ARGUMENT", "bad_request"


class BadImage(InvalidRequest):
    reason = "bad_image"


class BodyTooLarge(InvalidRequest):
    reason = "body_too_large"


class Unsupported(InvalidRequest):
    grpc_code, reason = "UNIMPLEMENTED", "unsupported"


class NotFound(ServeError):
    http_status, grpc_code, reason = 404, "NOT_FOUND", "unknown_model"


class Unavailable(ServeError):
    http_status, grpc_code, reason = 503, "UNAVAILABLE", "overloaded"


class DeadlineError(ServeError):
    http_status, grpc_code, reason = 504, "DEADLINE_EXCEEDED", "deadline_exceeded"


class InternalError(ServeError):
    pass


# --- the neutral request and response --------------------------------------------------------
@dataclass
class TensorIn:
    """One input as it arrived: ``elements`` (BYTES, already split) or ``values`` (anything
    else, only kept to report what was sent)."""
    name: str
    datatype: str
    shape: list[int]
    elements: list[bytes] | None = None
    count: int | None = None  # number of elements the data held (None: no data at all)


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None       # None: the request's default
    classification: int = 0          # > 0: Triton's classification extension, top-k strings


@dataclass
class InferRequest:
    model_name: str
    model_version: str
    id: str = ""
    inputs: list[TensorIn] = field(default_factory=list)
    outputs: list[RequestedOutput] = field(default_factory=list)
    binary_default: bool = False     # HTTP: parameters.binary_data_output
    timeout_us: int | None = None    # parameters.timeout (microseconds, as Triton)


@dataclass
class OutputTensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray | list[bytes]
    binary: bool = True


@dataclass
class InferResponse:
    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]


@dataclass(frozen=True)
class ModelSchema:
    """What the endpoint serves: one model, one version, IMAGE in, top-k out."""
    name: str
    version: str
    topk: int
    has_labels: bool
    max_width: int
    max_height: int
    max_images: int                  # elements per request

    @property
    def output_names(self) -> tuple[str, ...]:
        return (CLASSES, SCORES, LABELS) if self.has_labels else (CLASSES, SCORES)

    def metadata(self) -> dict:
        k = self.topk
        outs = [{"name": CLASSES, "datatype": "INT64", "shape": [-1, k]},
                {"name": SCORES, "datatype": "FP32", "shape": [-1, k]}]
        if self.has_labels:
            outs.append({"name": LABELS, "datatype": "BYTES", "shape": [-1, k]})
        return {"name": self.name, "versions": [self.version], "platform": "pytorch_libtorch",
                "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
                "outputs": outs}

    def config(self, parameters: dict[str, str] | None = None) -> dict:
        """The model configuration in Triton's JSON form (``model_config.proto``)."""
        k = self.topk
        outs = [{"name": CLASSES, "data_type": "TYPE_INT64", "dims": [-1, k]},
                {"name": SCORES, "data_type": "TYPE_FP32", "dims": [-1, k]}]
        if self.has_labels:
            outs.append({"name": LABELS, "data_type": "TYPE_STRING", "dims": [-1, k]})
        cfg = {"name": self.name, "platform": "pytorch_libtorch", "backend": "preba",
               "max_batch_size": 0,
               "input": [{"name": INPUT, "data_type": "TYPE_STRING", "dims": [-1]}],
               "output": outs}
        if parameters:
            cfg["parameters"] = {k: {"string_value": str(v)} for k, v in parameters.items()}
        return cfg


# --- tensor encoding -----------------------------------------------------------------------------
_NP = {"INT64": "<i8", "FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "UINT8": "u1", "INT8": "i1",
       "INT16": "<i2", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2",
       "BOOL": "?"}
DATATYPES = tuple(_NP) + ("BYTES", "BF16")


def serialize_bytes(elements: Sequence[bytes]) -> bytes:
    """BYTES elements -> the binary form: 4-byte little-endian length + bytes, each."""
    out = bytearray()
    for e in elements:
        out += struct.pack("<I", len(e))
        out += e
    return bytes(out)


def deserialize_bytes(raw: bytes | memoryview, what: str = "tensor") -> list[bytes]:
    """The binary form of a BYTES tensor -> its elements; InvalidRequest if it is malformed."""
    mv = memoryview(raw)
    out, off, n = [], 0, len(mv)
    while off < n:
        if n - off < 4:
            raise InvalidRequest(f"{what}: binary BYTES data is malformed: {n - off} stray "
                                 f"byte(s) at offset {off} where a 4-byte length should be "
                                 "(each element is a 4-byte little-endian length, then the bytes)")
        (length,) = struct.unpack_from("<I", mv, off)
        off += 4
        if length > n - off:
            raise InvalidRequest(f"{what}: binary BYTES data is malformed: element "
                                 f"{len(out)} says {length} bytes but only {n - off} remain "
                                 "(each element is a 4-byte little-endian length, then the bytes)")
        out.append(bytes(mv[off:off + length]))
        off += length
    return out


def to_raw(t: OutputTensor) -> bytes:
    if t.datatype == "BYTES":
        return serialize_bytes(t.data)
    return np.ascontiguousarray(t.data, dtype=_NP[t.datatype]).tobytes()


def classification_strings(classes: np.ndarray, scores: np.ndarray, labels, k: int
                           ) -> list[bytes]:
    """Triton's classification output: ``"score:class"`` or ``"score:class:label"``, top ``k``
    per row, row-major."""
    out = []
    for cl, sc in zip(classes, scores):
        for c, s in zip(cl[:k], sc[:k]):
            text = f"{float(s):f}:{int(c)}"
            if labels is not None:
                text += f":{labels[int(c)]}"
            out.append(text.encode())
    return out


# --- HTTP ------------------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _flatten(data) -> list:
    if not isinstance(data, list):
        return [data]
    out = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _json_element(v, name: str, i: int) -> bytes:
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, dict) and set(v) == {"b64"} and isinstance(v["b64"], str):
        try:
            return base64.b64decode(v["b64"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidRequest(f"input {name!r} element {i}: invalid base64 in "
                                 f"{{\"b64\": ...}}: {e}") from None
    raise InvalidRequest(f"input {name!r} element {i}: a JSON BYTES element must be a string or "
                         f"{{\"b64\": \"<base64>\"}}, not {type(v).__name__}; send images as "
                         "binary data (tritonclient's default) or base64")


def _params(obj: dict, where: str) -> dict:
    p = obj.get("parameters", {})
    if not isinstance(p, dict):
        raise InvalidRequest(f"{where}: 'parameters' must be a JSON object")
    for key in ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"):
        if key in p:
            raise Unsupported(f"{where}: shared memory is not supported by this server; send the "
                              "data in the request")
    return p


def parse_http_request(body: bytes, header_length: int | None, model_name: str,
                       model_version: str) -> InferRequest:
    """An HTTP infer body (JSON, or JSON + binary data) -> InferRequest."""
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        if header_length < 0 or header_length > len(body):
            raise InvalidRequest(f"Inference-Header-Content-Length is {header_length} but the "
                                 f"body has {len(body)} bytes")
        header, binary = body[:header_length], memoryview(body)[header_length:]
    try:
        doc = json.loads(header)
    except UnicodeDecodeError as e:
        raise InvalidRequest(f"malformed JSON in the inference request: not UTF-8 ({e}); if "
                             "the body carries binary tensor data, set the Inference-Header-"
                             "Content-Length header to the JSON's length") from None
    except ValueError as e:
        raise InvalidRequest(f"malformed JSON in the inference request: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("malformed inference request: the JSON must be an object with "
                             "'inputs'")
    req = InferRequest(model_name, model_version)
    rid = doc.get("id", "")
    if not isinstance(rid, str):
        raise InvalidRequest("malformed inference request: 'id' must be a string")
    req.id = rid
    params = _params(doc, "request")
    bdo = params.get("binary_data_output", False)
    if not isinstance(bdo, bool):
        raise InvalidRequest("request parameter 'binary_data_output' must be true or false")
    req.binary_default = bdo
    req.timeout_us = _timeout(params.get("timeout"))

    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest("malformed inference request: 'inputs' must be a non-empty list")
    offset = 0
    for k, t in enumerate(inputs):
        if not isinstance(t, dict):
            raise InvalidRequest(f"malformed inference request: inputs[{k}] must be an object")
        name, dt, shape = t.get("name"), t.get("datatype"), t.get("shape")
        if not isinstance(name, str):
            raise InvalidRequest(f"malformed inference request: inputs[{k}] has no 'name'")
        if not isinstance(dt, str):
            raise InvalidRequest(f"input {name!r}: missing 'datatype'")
        if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
            raise InvalidRequest(f"input {name!r}: 'shape' must be a list of integers")
        p = _params(t, f"input {name!r}")
        tin = TensorIn(name, dt, shape)
        size = p.get("binary_data_size")
        if size is not None:
            if not _is_int(size) or size < 0:
                raise InvalidRequest(f"input {name!r}: binary_data_size must be a non-negative "
                                     "integer")
            if "data" in t:
                raise InvalidRequest(f"input {name!r} has both 'data' and binary_data_size; "
                                     "send one")
            if offset + size > len(binary):
                raise InvalidRequest(f"input {name!r}: binary_data_size {size} runs past the end "
                                     f"of the body's binary data ({len(binary) - offset} bytes "
                                     f"left); check Inference-Header-Content-Length")
            raw = binary[offset:offset + size]
            offset += size
            if dt == "BYTES":
                tin.elements = deserialize_bytes(raw, f"input {name!r}")
                tin.count = len(tin.elements)
            else:
                item = np.dtype(_NP.get(dt, "u1")).itemsize if dt != "BF16" else 2
                tin.count = size // item
        elif "data" in t:
            flat = _flatten(t["data"])
            if dt == "BYTES":
                tin.elements = [_json_element(v, name, i) for i, v in enumerate(flat)]
            tin.count = len(flat)
        req.inputs.append(tin)
    if offset != len(binary):
        raise InvalidRequest(f"the body has {len(binary) - offset} bytes of binary data that no "
                             "input claims (binary_data_size); check "
                             "Inference-Header-Content-Length")

    outputs = doc.get("outputs", [])
    if not isinstance(outputs, list):
        raise InvalidRequest("malformed inference request: 'outputs' must be a list")
    for k, o in enumerate(outputs):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise InvalidRequest(f"malformed inference request: outputs[{k}] must be an object "
                                 "with a 'name'")
        p = _params(o, f"output {o['name']!r}")
        binary_flag = p.get("binary_data")
        if binary_flag is not None and not isinstance(binary_flag, bool):
            raise InvalidRequest(f"output {o['name']!r}: binary_data must be true or false")
        req.outputs.append(RequestedOutput(o["name"], binary_flag,
                                           _classification(p.get("classification"), o["name"])))
    return req


def _timeout(v) -> int | None:
    if v is None:
        return None
    if not _is_int(v) or v < 0:
        raise InvalidRequest("request parameter 'timeout' must be a non-negative integer "
                             "(microseconds)")
    return v or None


def _classification(v, name: str) -> int:
    if v is None:
        return 0
    if not _is_int(v) or v < 0:
        raise InvalidRequest(f"output {name!r}: classification must be a positive integer")
    return v


def encode_http_response(resp: InferResponse, binary_default: bool
                         ) -> tuple[bytes, int | None]:
    """The response body and, when some output is binary, the JSON header's length."""
    outs, blobs = [], []
    for t in resp.outputs:
        d: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        if t.binary:
            raw = to_raw(t)
            d["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif t.datatype == "BYTES":
            d["data"] = [e.decode("utf-8", "replace") for e in t.data]
        else:
            d["data"] = np.asarray(t.data).reshape(-1).tolist()
        outs.append(d)
    doc: dict[str, Any] = {"model_name": resp.model_name, "model_version": resp.model_version}
    if resp.id:
        doc["id"] = resp.id
    doc["outputs"] = outs
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


# --- validation (both fronts) -----------------------------------------------------------------
def validate_request(req: InferRequest, schema: ModelSchema) -> tuple[list[bytes],
                                                                      list[RequestedOutput]]:
    """The request's images and the outputs to return, or InvalidRequest naming the problem."""
    want = f"model {schema.name!r} takes one input {INPUT!r}: BYTES, shape [N], one JPEG file " \
           "per element"
    names = [t.name for t in req.inputs]
    extra = [n for n in names if n != INPUT]
    if extra:
        raise InvalidRequest(f"unexpected input {extra[0]!r}; {want}")
    if not names:
        raise InvalidRequest(f"missing input {INPUT!r}; {want}")
    if len(names) > 1:
        raise InvalidRequest(f"input {INPUT!r} is given {len(names)} times; {want}")
    t = req.inputs[0]
    if t.datatype != "BYTES":
        raise InvalidRequest(f"input {INPUT!r} has datatype {t.datatype}; expected BYTES (one "
                             "JPEG file per element)")
    if len(t.shape) != 1:
        raise InvalidRequest(f"input {INPUT!r} has shape {t.shape}; expected [N] (one JPEG file "
                             "per element)")
    n = t.shape[0]
    if n < 1:
        raise InvalidRequest(f"input {INPUT!r} has shape {t.shape}: no images; send at least one")
    if n > schema.max_images:
        raise InvalidRequest(f"input {INPUT!r} has {n} images; this server takes at most "
                             f"{schema.max_images} per request (--max-pending); split the request")
    if t.elements is None:
        raise InvalidRequest(f"input {INPUT!r} has no data: send 'data' or binary data "
                             "(binary_data_size)")
    if len(t.elements) != n:
        raise InvalidRequest(f"input {INPUT!r} has shape [{n}] but its data holds "
                             f"{len(t.elements)} element(s)")

    outputs = req.outputs or [RequestedOutput(o) for o in schema.output_names]
    seen = set()
    for o in outputs:
        if o.name not in (CLASSES, SCORES, LABELS):
            raise InvalidRequest(f"unknown output {o.name!r}; model {schema.name!r} has outputs "
                                 f"{', '.join(schema.output_names)}")
        if o.name == LABELS and not schema.has_labels:
            raise InvalidRequest(f"output {LABELS!r} is not available: no class names are "
                                 "installed for this model (torchvision ships ImageNet's); ask "
                                 f"for {CLASSES} and {SCORES}")
        if o.name in seen:
            raise InvalidRequest(f"output {o.name!r} is requested twice")
        seen.add(o.name)
        if o.classification > schema.topk:
            raise InvalidRequest(f"output {o.name!r}: classification {o.classification} is more "
                                 f"than the {schema.topk} classes this server computes (--topk)")
    return t.elements, outputs


def check_jpeg(data: bytes, i: int, schema: ModelSchema) -> None:
    """BadImage naming element ``i`` unless ``data`` starts as a JPEG the hardware decodes
    (baseline, 8-bit, gray or YCbCr, within the pipeline's size limit): the check the
    accelerator's decoder makes, applied whatever preprocessing backend runs now, so that what
    the service accepts does not change with the backend."""
    from hdl.jpeg import JpegError, read_header
    if not data:
        raise BadImage(f"element {i}: empty (0 bytes); each element must be one JPEG file")
    try:
        read_header(data, max_width=schema.max_width, max_height=schema.max_height)
    except JpegError as e:
        raise BadImage(f"element {i} ({len(data)} bytes): {e.code.name.lower()}: "
                       f"{e.message}") from None
