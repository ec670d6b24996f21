"""``preba serve``'s protocol layer without a server: tensors, the HTTP binary extension, the gRPC
messages, request validation and the JPEG check. Fast; the end-to-end tests are test_serve*.py.
"""
from __future__ import annotations

import base64
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from pyhost.kserve.codec import (BadImage, BodyTooLarge, InferResponse, InvalidRequest,
                                 ModelSchema, OutputTensor, RequestedOutput, Unsupported,
                                 check_jpeg, classification_strings, deserialize_bytes,
                                 encode_http_response, parse_http_request, serialize_bytes,
                                 validate_request)
from pyhost.kserve.grpc import encode_grpc_response, parse_grpc_request
from pyhost.kserve.launcher import same_prediction

from conftest import SHARED_IMAGES as IMAGES  # noqa: E402
ORIG = (IMAGES / "testorig.jpg").read_bytes()
SCHEMA = ModelSchema("m", "1", 5, False, 8192, 8192, 100)


def jpeg(size=(64, 48), mode="RGB", **kw) -> bytes:
    b = io.BytesIO()
    Image.new(mode, size, (90, 150, 30) if mode == "RGB" else None).save(b, "JPEG", **kw)
    return b.getvalue()


def http_body(inputs, outputs=None, params=None, binary=True):
    """What tritonclient sends: JSON header + binary data, and the header's length."""
    doc, blobs = {"inputs": []}, []
    for name, dt, shape, elems in inputs:
        t = {"name": name, "datatype": dt, "shape": shape}
        if binary:
            raw = serialize_bytes(elems) if dt == "BYTES" else np.asarray(elems).tobytes()
            t["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            t["data"] = elems
        doc["inputs"].append(t)
    if outputs is not None:
        doc["outputs"] = outputs
    if params:
        doc["parameters"] = params
    head = json.dumps(doc).encode()
    return head + b"".join(blobs), (len(head) if blobs else None)


# --- tensors -------------------------------------------------------------------------------------
def test_bytes_tensor_round_trip_matches_tritonclient():
    elems = [b"", b"\x00\xff", ORIG, b"abc"]
    ours = serialize_bytes(elems)
    assert ours == serialize_byte_tensor(np.array(elems, dtype=object)).item()
    assert deserialize_bytes(ours) == elems
    assert list(deserialize_bytes_tensor(ours)) == elems


@pytest.mark.parametrize("raw, what", [(b"\x05\x00\x00\x00abc", "says 5 bytes but only 3"),
                                       (b"\x01\x00\x00\x00a\x02\x00", "stray byte")])
def test_malformed_bytes_tensor_is_named(raw, what):
    with pytest.raises(InvalidRequest, match=what):
        deserialize_bytes(raw, "input 'IMAGE'")


# --- HTTP ----------------------------------------------------------------------------------------
def test_http_binary_request_parses():
    body, hl = http_body([("IMAGE", "BYTES", [2], [ORIG, b"x"])],
                         outputs=[{"name": "SCORES", "parameters": {"binary_data": False}}],
                         params={"timeout": 2500})
    req = parse_http_request(body, hl, "m", "")
    assert req.inputs[0].elements == [ORIG, b"x"] and req.inputs[0].shape == [2]
    assert req.outputs == [RequestedOutput("SCORES", False, 0)]
    assert req.timeout_us == 2500 and req.binary_default is False


def test_http_json_request_with_strings_and_b64():
    doc = {"id": "r1", "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [2],
                                   "data": [["text", {"b64": base64.b64encode(ORIG).decode()}]]}]}
    req = parse_http_request(json.dumps(doc).encode(), None, "m", "")
    assert req.id == "r1" and req.inputs[0].elements == [b"text", ORIG]


_SHORT = (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], '
          b'"parameters": {"binary_data_size": 10}}]}')
_DATA = b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}'


@pytest.mark.parametrize("body, hl, match", [
    (b'{"inputs": [', None, "malformed JSON"),
    (b"[1, 2]", None, "must be an object"),
    (b'{"inputs": []}', None, "'inputs' must be a non-empty list"),
    (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": "2"}]}', None,
     "'shape' must be a list"),
    (_SHORT + b"abc", len(_SHORT), "runs past the end"),
    (_DATA + b"xyz", len(_DATA), "no input claims"),
    (b'{"inputs": []}', 999, "Inference-Header-Content-Length is 999"),
    (b'\xff\xfe{"inputs": []}', None, "malformed JSON"),
    (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": [{"b64": "!"}]}]}',
     None, "invalid base64"),
    (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": [3]}]}', None,
     "must be a string"),
])
def test_http_malformed_requests_say_what_is_wrong(body, hl, match):
    with pytest.raises(InvalidRequest, match=match):
        parse_http_request(body, hl, "m", "")


def test_http_shared_memory_is_unsupported():
    doc = {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1],
                       "parameters": {"shared_memory_region": "r"}}]}
    with pytest.raises(Unsupported, match="shared memory"):
        parse_http_request(json.dumps(doc).encode(), None, "m", "")


def test_http_response_mixes_binary_and_json_outputs():
    classes = np.arange(10, dtype=np.int64).reshape(2, 5)
    scores = np.linspace(0, 1, 10, dtype=np.float32).reshape(2, 5)
    resp = InferResponse("m", "1", "id7", [
        OutputTensor("CLASSES", "INT64", [2, 5], classes, True),
        OutputTensor("SCORES", "FP32", [2, 5], scores, False),
        OutputTensor("LABELS", "BYTES", [2, 1], [b"a", b"bc"], True)])
    body, hl = encode_http_response(resp, False)
    head = json.loads(body[:hl])
    assert head["id"] == "id7"
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 80
    assert head["outputs"][1]["data"] == pytest.approx(scores.ravel().tolist())
    rest = body[hl:]
    assert np.frombuffer(rest[:80], "<i8").tolist() == list(range(10))
    assert deserialize_bytes(rest[80:]) == [b"a", b"bc"]
    # every output JSON: no header length
    resp.outputs = [OutputTensor("CLASSES", "INT64", [2, 5], classes, False)]
    body, hl = encode_http_response(resp, False)
    assert hl is None and json.loads(body)["outputs"][0]["data"] == list(range(10))


def test_classification_strings():
    out = classification_strings(np.array([[3, 1]]), np.array([[0.5, 0.25]]), None, 2)
    assert out == [b"0.500000:3", b"0.250000:1"]
    labels = [f"c{i}" for i in range(5)]
    assert classification_strings(np.array([[3]]), np.array([[1.0]]), labels, 1) == \
        [b"1.000000:3:c3"]


# --- validation ----------------------------------------------------------------------------------
def _req(name="IMAGE", dt="BYTES", shape=(1,), elems=(ORIG,), outputs=None):
    body, hl = http_body([(name, dt, list(shape), list(elems))], outputs=outputs)
    return parse_http_request(body, hl, "m", "")


@pytest.mark.parametrize("kw, match", [
    (dict(name="PIXELS"), "unexpected input 'PIXELS'"),
    (dict(dt="FP32", elems=np.zeros(1, np.float32)), "datatype FP32; expected BYTES"),
    (dict(shape=(1, 1)), r"shape \[1, 1\]; expected \[N\]"),
    (dict(shape=(0,), elems=()), "no images"),
    (dict(shape=(2,)), r"shape \[2\] but its data holds 1"),
    (dict(shape=(101,), elems=[ORIG] * 101), "at most 100 per request"),
    (dict(outputs=[{"name": "PROBS"}]), "unknown output 'PROBS'"),
    (dict(outputs=[{"name": "LABELS"}]), "'LABELS' is not available"),
    (dict(outputs=[{"name": "SCORES"}, {"name": "SCORES"}]), "requested twice"),
    (dict(outputs=[{"name": "SCORES", "parameters": {"classification": 9}}]),
     "classification 9 is more than the 5"),
])
def test_validation_names_the_problem(kw, match):
    with pytest.raises(InvalidRequest, match=match):
        validate_request(_req(**kw), SCHEMA)


def test_validation_defaults_to_every_output():
    images, outs = validate_request(_req(), SCHEMA)
    assert images == [ORIG] and [o.name for o in outs] == ["CLASSES", "SCORES"]


@pytest.mark.parametrize("data, match", [
    (b"", "empty"),
    (b"GIF89a....", "not_jpeg"),
    (ORIG[:100], "truncated"),  # within the header; later cuts are found by the decoder
    (jpeg(progressive=True), "unsupported_progressive"),
    (jpeg(mode="CMYK"), "unsupported_components"),
    (jpeg(size=(8200, 8)), "bad_dimensions"),
    ((IMAGES / "testimgari.jpg").read_bytes(), "unsupported_arithmetic"),
    ((IMAGES / "monkey12.jpg").read_bytes(), "unsupported_precision"),
])
def test_jpeg_check_names_element_and_problem(data, match):
    with pytest.raises(BadImage, match=rf"element 3\b.*{match}"):
        check_jpeg(data, 3, SCHEMA)


def test_jpeg_check_accepts_baseline_and_gray():
    for data in (ORIG, jpeg(), jpeg(mode="L"), jpeg(subsampling=0)):
        check_jpeg(data, 0, SCHEMA)


# --- gRPC messages -------------------------------------------------------------------------------
def test_grpc_request_raw_and_contents():
    msg = pb.ModelInferRequest(model_name="m", id="x")
    t = msg.inputs.add(name="IMAGE", datatype="BYTES", shape=[2])
    msg.raw_input_contents.append(serialize_bytes([ORIG, b"y"]))
    msg.parameters["timeout"].int64_param = 1000
    o = msg.outputs.add(name="SCORES")
    o.parameters["classification"].int64_param = 2
    req = parse_grpc_request(msg, 1 << 20)
    assert req.inputs[0].elements == [ORIG, b"y"] and req.timeout_us == 1000
    assert req.outputs == [RequestedOutput("SCORES", None, 2)]
    msg.ClearField("raw_input_contents")
    t.contents.bytes_contents.extend([b"a", b"b"])
    assert parse_grpc_request(msg, 1 << 20).inputs[0].elements == [b"a", b"b"]


def test_grpc_request_limits_and_mismatch():
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="IMAGE", datatype="BYTES", shape=[1])
    msg.raw_input_contents.append(serialize_bytes([ORIG]))
    with pytest.raises(BodyTooLarge, match="over this server's limit of 1024 bytes"):
        parse_grpc_request(msg, 1024)
    msg.raw_input_contents.append(b"")
    with pytest.raises(InvalidRequest, match="raw_input_contents has 2 entries for 1 input"):
        parse_grpc_request(msg, 1 << 20)


def test_grpc_response_is_raw():
    resp = InferResponse("m", "1", "", [
        OutputTensor("CLASSES", "INT64", [1, 2], np.array([[7, 8]]), False),
        OutputTensor("LABELS", "BYTES", [1, 2], [b"p", b"q"], False)])
    r = encode_grpc_response(resp)
    assert [o.name for o in r.outputs] == ["CLASSES", "LABELS"]
    assert list(r.outputs[0].shape) == [1, 2]
    assert np.frombuffer(r.raw_output_contents[0], "<i8").tolist() == [7, 8]
    assert r.raw_output_contents[1] == struct.pack("<I", 1) + b"p" + struct.pack("<I", 1) + b"q"


def test_same_prediction_tolerates_near_ties_only():
    ref_c, ref_s = (1, 2, 3), (0.5, 0.2, 0.2001)
    assert same_prediction((1, 3, 2), (0.5, 0.2001, 0.2), ref_c, ref_s)
    assert not same_prediction((2, 1, 3), (0.5, 0.2, 0.2001), ref_c, ref_s)
    assert not same_prediction((1, 2, 3), (0.4, 0.2, 0.2001), ref_c, ref_s)
