"""``preba serve`` end to end: the real pretrained model behind the endpoint in a subprocess on
loopback, spoken to with the real ``tritonclient.http`` and ``tritonclient.grpc``.

One server for the module (``--partitions cpu:1``, ``--max-body-bytes 1MiB``): metadata, infer
(single and batched, checked against a direct model call in this process), requested outputs and
the binary / JSON / classification forms, every kind of bad input on both protocols (status code,
and a message that names the problem and the element), metrics, and CLI errors. Load, overload
and SIGTERM: test_serve_load.py, test_serve_overload.py.
"""
from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

tritonclient = pytest.importorskip("tritonclient")
import tritonclient.grpc as tgrpc  # noqa: E402
import tritonclient.http as thttp  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from pyhost.kserve.launcher import (REPO, ServeProcess, reference_predictions,  # noqa: E402
                                    same_prediction)

from conftest import SHARED_IMAGES as IMAGES  # noqa: E402
ORIG = (IMAGES / "testorig.jpg").read_bytes()
INT = (IMAGES / "testimgint.jpg").read_bytes()
MODEL = "efficientnet-lite0"
LIMIT = 1 << 20


def jpeg(size=(96, 64), mode="RGB", seed=0, **kw) -> bytes:
    rng = np.random.default_rng(seed)
    if mode == "CMYK":
        im = Image.new("CMYK", size, (10, 80, 160, 20))
    else:
        y, x = np.mgrid[0:size[1], 0:size[0]]
        a = np.stack([(x * 3 + seed * 40) % 256, (y * 5) % 256, (x + y + seed * 70) % 256], -1)
        a = np.clip(a + rng.integers(0, 40, a.shape), 0, 255).astype(np.uint8)
        im = Image.fromarray(a).convert(mode)
    b = io.BytesIO()
    im.save(b, "JPEG", quality=90, **kw)
    return b.getvalue()


SMALL = jpeg(seed=1)
GOOD = [ORIG, INT, SMALL]


@pytest.fixture(scope="module")
def srv():
    with ServeProcess(["--model", MODEL, "--partitions", "cpu:1", "--buckets", "1,2,4,8",
                       "--profile-iters", "2", "--max-body-bytes", str(LIMIT)]) as s:
        yield s


@pytest.fixture(scope="module")
def ref():
    return reference_predictions(GOOD, MODEL)


@pytest.fixture(scope="module")
def hc(srv):
    c = thttp.InferenceServerClient(srv.http_url, network_timeout=120)
    yield c
    c.close()


@pytest.fixture(scope="module")
def gc(srv):
    c = tgrpc.InferenceServerClient(srv.grpc_url)
    yield c
    c.close()


def http_input(elems, name="IMAGE", dt="BYTES", shape=None):
    arr = np.array(elems, dtype=object) if dt == "BYTES" else np.asarray(elems)
    inp = thttp.InferInput(name, list(shape or arr.shape), dt)
    inp.set_data_from_numpy(arr.reshape(shape) if shape else arr)
    return inp


def grpc_input(elems, name="IMAGE", dt="BYTES", shape=None):
    arr = np.array(elems, dtype=object) if dt == "BYTES" else np.asarray(elems)
    inp = tgrpc.InferInput(name, list(shape or arr.shape), dt)
    inp.set_data_from_numpy(arr.reshape(shape) if shape else arr)
    return inp


def post(srv, path, body: bytes, headers=None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(f"http://{srv.http_url}{path}", data=body, method="POST",
                                 headers=headers or {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def check_matches(classes, scores, ref, images_idx):
    assert classes.shape == (len(images_idx), 5) and classes.dtype == np.int64
    assert scores.shape == (len(images_idx), 5) and scores.dtype == np.float32
    for row, i in enumerate(images_idx):
        rc, rs = ref[i]
        assert same_prediction(classes[row], scores[row], rc, rs), \
            f"image {i}: server {classes[row]} {scores[row]} vs library {rc} {rs}"


# --- metadata ------------------------------------------------------------------------------------
def test_http_health_and_metadata(srv, hc):
    assert hc.is_server_live() and hc.is_server_ready() and hc.is_model_ready(MODEL)
    assert hc.is_model_ready(MODEL, "1") and not hc.is_model_ready("resnet50")
    meta = hc.get_server_metadata()
    assert meta["name"] == "preba" and "binary_tensor_data" in meta["extensions"]
    m = hc.get_model_metadata(MODEL)
    assert m["inputs"] == [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: (o["datatype"], o["shape"]) for o in m["outputs"]} == {
        "CLASSES": ("INT64", [-1, 5]), "SCORES": ("FP32", [-1, 5])}
    cfg = hc.get_model_config(MODEL)
    assert cfg["name"] == MODEL and cfg["input"][0]["data_type"] == "TYPE_STRING"
    assert cfg["parameters"]["preba_partitions"]["string_value"] == "cpu0"
    assert hc.get_model_repository_index() == [{"name": MODEL, "version": "1", "state": "READY"}]
    with pytest.raises(InferenceServerException) as e:
        hc.get_model_metadata("resnet50")
    assert e.value.status() == "404" and "unknown model 'resnet50'" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        hc.get_model_metadata(MODEL, "7")
    assert e.value.status() == "404" and "no version '7'" in e.value.message()


def test_grpc_health_and_metadata(gc):
    assert gc.is_server_live() and gc.is_server_ready() and gc.is_model_ready(MODEL)
    assert gc.get_server_metadata().name == "preba"
    m = gc.get_model_metadata(MODEL)
    assert [(t.name, t.datatype, list(t.shape)) for t in m.inputs] == [("IMAGE", "BYTES", [-1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in m.outputs] == [
        ("CLASSES", "INT64", [-1, 5]), ("SCORES", "FP32", [-1, 5])]
    cfg = gc.get_model_config(MODEL).config
    assert cfg.name == MODEL and list(cfg.output[0].dims) == [-1, 5]
    assert [x.name for x in gc.get_model_repository_index().models] == [MODEL]
    with pytest.raises(InferenceServerException) as e:
        gc.get_model_metadata("resnet50")
    assert e.value.status() == "StatusCode.NOT_FOUND" and "unknown model" in e.value.message()


# --- infer ---------------------------------------------------------------------------------------
def test_http_infer_single_and_batched_match_the_library(hc, ref):
    r = hc.infer(MODEL, [http_input([ORIG])])
    check_matches(r.as_numpy("CLASSES"), r.as_numpy("SCORES"), ref, [0])
    r = hc.infer(MODEL, [http_input(GOOD)], request_id="batch-1")
    assert r.get_response()["id"] == "batch-1"
    check_matches(r.as_numpy("CLASSES"), r.as_numpy("SCORES"), ref, [0, 1, 2])
    assert r.as_numpy("CLASSES")[0, 0] == 989  # testorig.jpg: a red rose -> "rose hip"


def test_grpc_infer_single_and_batched_match_the_library(gc, ref):
    r = gc.infer(MODEL, [grpc_input([INT])])
    check_matches(r.as_numpy("CLASSES"), r.as_numpy("SCORES"), ref, [1])
    r = gc.infer(MODEL, [grpc_input([SMALL, ORIG, INT])], request_id="g1",
                 outputs=[tgrpc.InferRequestedOutput("SCORES"),
                          tgrpc.InferRequestedOutput("CLASSES")])
    assert r.get_response().id == "g1"
    assert [o.name for o in r.get_response().outputs] == ["SCORES", "CLASSES"]
    check_matches(r.as_numpy("CLASSES"), r.as_numpy("SCORES"), ref, [2, 0, 1])


def test_grpc_stream_answers_each_request(gc, ref):
    import queue
    results: queue.Queue = queue.Queue()
    gc.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        gc.async_stream_infer(MODEL, [grpc_input([ORIG])], request_id="s0")
        gc.async_stream_infer(MODEL, [grpc_input([b"not a jpeg"])], request_id="s1")
        got = [results.get(timeout=120) for _ in range(2)]
    finally:
        gc.stop_stream()
    ok = [r for r, e in got if e is None]
    bad = [e for r, e in got if e is not None]
    assert len(ok) == 1 and len(bad) == 1
    check_matches(ok[0].as_numpy("CLASSES"), ok[0].as_numpy("SCORES"), ref, [0])
    assert "element 0" in bad[0].message() and "not_jpeg" in bad[0].message()


def test_http_requested_outputs_binary_json_and_classification(srv, hc, ref):
    r = hc.infer(MODEL, [http_input([ORIG, INT])], outputs=[
        thttp.InferRequestedOutput("SCORES", binary_data=False),
        thttp.InferRequestedOutput("CLASSES", class_count=3)])
    outs = r.get_response()["outputs"]
    assert [o["name"] for o in outs] == ["SCORES", "CLASSES"]
    assert "data" in outs[0] and "parameters" not in outs[0]           # JSON, as asked
    assert outs[1]["datatype"] == "BYTES" and outs[1]["shape"] == [2, 3]
    cls = r.as_numpy("CLASSES")
    for row, i in enumerate([0, 1]):
        score, klass = cls[row, 0].decode().split(":")[:2]
        assert int(klass) == ref[i][0][0] and abs(float(score) - ref[i][1][0]) < 2e-3
    np.testing.assert_allclose(r.as_numpy("SCORES")[:, 0], [ref[0][1][0], ref[1][1][0]],
                               atol=2e-3)
    # gzip both ways (responses are compressed from 1 KiB up: 18 images)
    r = hc.infer(MODEL, [http_input(GOOD * 6)], request_compression_algorithm="gzip",
                 response_compression_algorithm="gzip")
    check_matches(r.as_numpy("CLASSES"), r.as_numpy("SCORES"), ref, [0, 1, 2] * 6)
    # plain JSON, no binary extension at all: base64 elements in, JSON data out
    body = json.dumps({"id": "j", "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1],
                                              "data": [{"b64": base64.b64encode(INT).decode()}]}]})
    status, headers, raw = post(srv, f"/v2/models/{MODEL}/infer", body.encode())
    assert status == 200 and "Inference-Header-Content-Length" not in headers
    doc = json.loads(raw)
    data = {o["name"]: o["data"] for o in doc["outputs"]}
    assert doc["id"] == "j"
    check_matches(np.array(data["CLASSES"]).reshape(1, 5),
                  np.array(data["SCORES"], np.float32).reshape(1, 5), ref, [1])


# --- bad input -----------------------------------------------------------------------------------
BAD_IMAGES = [  # (element, what the message must say)
    (b"plain text, not an image", "not_jpeg"),
    (ORIG[:len(ORIG) // 2], "truncated"),
    (jpeg(progressive=True), "progressive"),
    (jpeg(mode="CMYK"), "CMYK"),
    (jpeg(size=(8200, 16)), "bad_dimensions"),
    ((IMAGES / "testimgari.jpg").read_bytes(), "arithmetic"),
    (b"", "empty"),
]
BAD_TENSORS = [  # (name, datatype, elements, shape, what the message must say)
    ("PIXELS", "BYTES", [ORIG], None, "unexpected input 'PIXELS'"),
    ("IMAGE", "FP32", np.zeros(3, np.float32), None, "datatype FP32; expected BYTES"),
    ("IMAGE", "BYTES", [ORIG, INT], [1, 2], "shape [1, 2]; expected [N]"),
]


def test_http_bad_input_is_400_naming_the_problem(srv, hc, ref):
    for data, what in BAD_IMAGES:
        with pytest.raises(InferenceServerException) as e:
            hc.infer(MODEL, [http_input([ORIG, data, INT])])
        msg = e.value.message()
        assert e.value.status() == "400", msg
        assert "element 1" in msg and what in msg, msg
    for name, dt, elems, shape, what in BAD_TENSORS:
        with pytest.raises(InferenceServerException) as e:
            hc.infer(MODEL, [http_input(elems, name, dt, shape)])
        assert e.value.status() == "400" and what in e.value.message(), e.value.message()
    with pytest.raises(InferenceServerException) as e:
        hc.infer(MODEL, [http_input([ORIG])], outputs=[thttp.InferRequestedOutput("PROBS")])
    assert e.value.status() == "400" and "unknown output 'PROBS'" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        hc.infer("resnet50", [http_input([ORIG])])
    assert e.value.status() == "404" and "unknown model 'resnet50'" in e.value.message()
    # over --max-body-bytes: refused before it is parsed
    with pytest.raises(InferenceServerException) as e:
        hc.infer(MODEL, [http_input([ORIG, b"\0" * (LIMIT + 1000)])])
    assert e.value.status() == "400" and f"limit of {LIMIT} bytes" in e.value.message()
    # bodies tritonclient cannot produce
    head = (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], '
            b'"parameters": {"binary_data_size": 999}}]}')
    for body, headers, what in [
            (b'{"inputs": [{"name": "IMAGE",', None, "malformed JSON"),
            (head + b"\0" * 10, {"Inference-Header-Content-Length": str(len(head))},
             "runs past the end"),
            (b'{}', {"Inference-Header-Content-Length": "abc"}, "must be an integer")]:
        status, _, raw = post(srv, f"/v2/models/{MODEL}/infer", body, headers)
        assert status == 400 and what in json.loads(raw)["error"], raw
    status, _, raw = post(srv, "/v2/models/x/nothing", b"{}")
    assert status == 404 and "no such endpoint" in json.loads(raw)["error"]
    # and the server goes on serving
    r = hc.infer(MODEL, [http_input(GOOD)])
    check_matches(r.as_numpy("CLASSES"), r.as_numpy("SCORES"), ref, [0, 1, 2])


def test_grpc_bad_input_is_invalid_argument_naming_the_problem(gc, ref):
    for data, what in BAD_IMAGES:
        with pytest.raises(InferenceServerException) as e:
            gc.infer(MODEL, [grpc_input([INT, SMALL, ORIG, data])])
        msg = e.value.message()
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT", msg
        assert "element 3" in msg and what in msg, msg
    for name, dt, elems, shape, what in BAD_TENSORS:
        with pytest.raises(InferenceServerException) as e:
            gc.infer(MODEL, [grpc_input(elems, name, dt, shape)])
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT", e.value.message()
        assert what in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        gc.infer(MODEL, [grpc_input([ORIG, b"\0" * (LIMIT + 1000)])])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert f"limit of {LIMIT} bytes" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        gc.infer("resnet50", [grpc_input([ORIG])])
    assert e.value.status() == "StatusCode.NOT_FOUND"
    r = gc.infer(MODEL, [grpc_input(GOOD)])
    check_matches(r.as_numpy("CLASSES"), r.as_numpy("SCORES"), ref, [0, 1, 2])


def test_request_timeout_is_a_deadline(hc, gc):
    """Triton's ``timeout`` request parameter (microseconds) bounds the time in the server."""
    with pytest.raises(InferenceServerException) as e:
        hc.infer(MODEL, [http_input([ORIG])], timeout=1)
    assert e.value.status() == "504" and "deadline" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        gc.infer(MODEL, [grpc_input([ORIG])], timeout=1)
    assert e.value.status() == "StatusCode.DEADLINE_EXCEEDED" and "deadline" in e.value.message()
    assert hc.infer(MODEL, [http_input([ORIG])], timeout=300_000_000).as_numpy("CLASSES")[0, 0] \
        == 989


# --- metrics -------------------------------------------------------------------------------------
def test_metrics(srv, hc, gc):
    from prometheus_client.parser import text_string_to_metric_families

    hc.infer(MODEL, [http_input([ORIG, INT])])
    gc.infer(MODEL, [grpc_input([SMALL])])
    with pytest.raises(InferenceServerException):
        hc.infer(MODEL, [http_input([b"junk"])])
    text = urllib.request.urlopen(f"http://{srv.http_url}/metrics", timeout=60).read().decode()
    fam = {f.name: f for f in text_string_to_metric_families(text)}
    samples = [s for f in fam.values() for s in f.samples]

    def value(name, **labels):
        found = [s for s in samples if s.name == name]
        assert found, f"{name} is not in /metrics"
        return sum(s.value for s in found
                   if all(s.labels.get(k) == v for k, v in labels.items()))

    assert value("preba_requests_total", protocol="http") >= 2
    assert value("preba_requests_total", protocol="grpc") >= 1
    assert value("preba_images_total", protocol="http") >= 2
    assert value("preba_request_failures_total", protocol="http", reason="bad_image") >= 1
    assert {s.labels["reason"] for s in fam["preba_request_failures"].samples} >= {
        "bad_request", "bad_image", "body_too_large", "overloaded", "deadline_exceeded"}
    assert value("preba_ready") == 1
    assert value("preba_queue_depth", partition="cpu0") >= 0
    assert value("preba_batch_size_count", partition="cpu0") >= 2
    assert value("preba_inference_latency_seconds_count", partition="cpu0") >= 3
    assert value("preba_compute_seconds_count", partition="cpu0") >= 3
    assert value("preba_preprocess_seconds_count") >= 3
    assert value("preba_server_outcomes_total", outcome="completed") >= 3
    assert value("preba_request_duration_seconds_count", protocol="grpc") >= 1
    stats = gc.get_inference_statistics(MODEL).model_stats[0]
    assert stats.inference_count >= 3 and stats.inference_stats.success.count >= 2


# --- the command line ----------------------------------------------------------------------------
def _serve(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "pyhost.cli", "serve", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_errors_say_what_to_do():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = _serve("--port", str(port), "--grpc-port", "0", "--partitions", "cpu:1")
        assert r.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port} (HTTP)" in r.stderr
        assert "choose another --port" in r.stderr
        r = _serve("--port", "0", "--grpc-port", str(port), "--partitions", "cpu:1")
        assert r.returncode == 2 and "choose another --grpc-port" in r.stderr
    r = _serve("--model", "no-such-model", "--port", "0")
    assert r.returncode == 2 and "unknown model" in r.stderr
    r = _serve("--max-body-bytes", "lots")
    assert r.returncode == 2 and "64MiB" in r.stderr
    r = _serve("--help")
    assert r.returncode == 0 and "KServe v2" in r.stdout and "--max-queue" in r.stdout
