"""``preba serve`` under load, and SIGTERM with requests in flight.

A bounded closed-loop load on loopback: ``PREBA_SERVE_LOAD_REQUESTS`` (default 2000) one-image
requests from 32 concurrent clients (16 ``tritonclient.grpc.aio``, 16 ``tritonclient.http.aio``)
against the real model on ``--partitions cpu:2``. Every request must be answered, without error,
with the prediction a direct model call in this process gives for the same image. Then SIGTERM
while requests are in flight: every one of them is answered and the server exits 0.
"""
from __future__ import annotations

import asyncio
import io
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tritonclient")
import tritonclient.grpc.aio as tgrpc_aio  # noqa: E402
import tritonclient.http.aio as thttp_aio  # noqa: E402
import tritonclient.grpc as tgrpc  # noqa: E402
import tritonclient.http as thttp  # noqa: E402

from pyhost.kserve.launcher import ServeProcess, reference_predictions, same_prediction  # noqa

from conftest import SHARED_IMAGES as IMAGES  # noqa: E402
MODEL = "efficientnet-lite0"
N_REQUESTS = int(os.environ.get("PREBA_SERVE_LOAD_REQUESTS", "2000"))
N_CLIENTS = 32
LOAD_TIMEOUT_S = 600.0


def small_jpegs(n: int) -> list[bytes]:
    """``n`` distinct small photos-ish JPEGs (smooth colour fields plus noise)."""
    out = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        w, h = 64 + 8 * (seed % 5), 48 + 8 * (seed % 3)
        y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
        base = rng.uniform(0, 255, (3, 3))
        a = np.stack([base[c, 0] * x + base[c, 1] * y + base[c, 2] * x * y for c in range(3)], -1)
        a = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
        b = io.BytesIO()
        Image.fromarray(a).save(b, "JPEG", quality=85)
        out.append(b.getvalue())
    return out


IMAGES_LOAD = small_jpegs(14) + [(IMAGES / "testorig.jpg").read_bytes(),
                                 (IMAGES / "testimgint.jpg").read_bytes()]


@pytest.fixture(scope="module")
def srv():
    with ServeProcess(["--model", MODEL, "--partitions", "cpu:2", "--buckets", "1,2,4,8,16",
                       "--profile-iters", "2", "--max-queue", "512"]) as s:
        yield s


@pytest.fixture(scope="module")
def ref():
    return reference_predictions(IMAGES_LOAD, MODEL)


def _request_image(j: int) -> int:
    return (j * 7) % len(IMAGES_LOAD)


async def _load(srv, n: int) -> tuple[list, list, float]:
    """Closed loop: client c sends requests c, c + 32, c + 64, ... one after another."""
    results: list = [None] * n
    latencies: list[float] = [0.0] * n
    http_clients = [thttp_aio.InferenceServerClient(srv.http_url, conn_timeout=120)
                    for _ in range(N_CLIENTS // 2)]
    grpc_clients = [tgrpc_aio.InferenceServerClient(srv.grpc_url) for _ in range(N_CLIENTS // 2)]

    async def client(c: int):
        use_grpc = c % 2 == 1
        cl = grpc_clients[c // 2] if use_grpc else http_clients[c // 2]
        mod = tgrpc if use_grpc else thttp
        for j in range(c, n, N_CLIENTS):
            inp = mod.InferInput("IMAGE", [1], "BYTES")
            inp.set_data_from_numpy(np.array([IMAGES_LOAD[_request_image(j)]], dtype=object))
            t0 = time.perf_counter()
            try:
                r = await cl.infer(MODEL, [inp])
                results[j] = (r.as_numpy("CLASSES")[0], r.as_numpy("SCORES")[0])
            except Exception as e:  # every outcome is recorded; the test reports them
                results[j] = e
            latencies[j] = time.perf_counter() - t0

    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(client(c) for c in range(N_CLIENTS))),
                               LOAD_TIMEOUT_S)
    finally:
        for cl in http_clients + grpc_clients:
            await cl.close()
    return results, latencies, time.perf_counter() - t0


def test_load_every_response_arrives_and_matches_the_library(srv, ref):
    results, lat, wall = asyncio.run(_load(srv, N_REQUESTS))
    errors = [(j, r) for j, r in enumerate(results) if not isinstance(r, tuple)]
    assert not errors, f"{len(errors)} of {N_REQUESTS} requests failed, e.g. {errors[:3]}"
    wrong = [j for j, (c, s) in enumerate(results)
             if not same_prediction(c, s, *ref[_request_image(j)])]
    assert not wrong, f"{len(wrong)} responses differ from the library, e.g. request " \
                      f"{wrong[0]}: {results[wrong[0]]} vs {ref[_request_image(wrong[0])]}"
    ms = np.array(lat) * 1e3
    print(f"\nload: {N_REQUESTS} requests, {N_CLIENTS} clients (16 gRPC + 16 HTTP), "
          f"{wall:.1f} s, {N_REQUESTS / wall:.1f} req/s, latency p50 {np.percentile(ms, 50):.0f} "
          f"ms, p99 {np.percentile(ms, 99):.0f} ms, max {ms.max():.0f} ms")


def test_sigterm_answers_requests_in_flight_and_exits_0(srv, ref):
    """SIGTERM while 12 requests (24 images) are in the server: all answered, exit status 0."""
    import urllib.request

    n = 12
    pair = [0, 15]

    async def run():
        gcl = tgrpc_aio.InferenceServerClient(srv.grpc_url)
        hcl = thttp_aio.InferenceServerClient(srv.http_url, conn_timeout=120)

        async def one(i):
            cl, mod = (gcl, tgrpc) if i % 2 else (hcl, thttp)
            inp = mod.InferInput("IMAGE", [2], "BYTES")
            inp.set_data_from_numpy(np.array([IMAGES_LOAD[k] for k in pair], dtype=object))
            try:
                r = await cl.infer(MODEL, [inp])
                return r.as_numpy("CLASSES"), r.as_numpy("SCORES")
            except Exception as e:
                return e

        def received() -> float:
            text = urllib.request.urlopen(f"http://{srv.http_url}/metrics", timeout=30).read()
            return sum(float(v) for v in re.findall(rb'preba_requests_total\{protocol="\w+"\} '
                                                    rb'([0-9.e+]+)', text))

        before = await asyncio.to_thread(received)
        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        for _ in range(600):  # until the server has taken every request (bounded: 60 s)
            if await asyncio.to_thread(received) >= before + n or all(t.done() for t in tasks):
                break
            await asyncio.sleep(0.1)
        srv.proc.send_signal(15)
        out = await asyncio.wait_for(asyncio.gather(*tasks), 300)
        await gcl.close()
        await hcl.close()
        return out

    out = asyncio.run(run())
    rc = srv.proc.wait(120)
    bad = [r for r in out if not isinstance(r, tuple)]
    assert not bad, f"{len(bad)} of {n} requests in flight at SIGTERM failed: {bad[:2]}"
    for c, s in out:
        for row, k in enumerate(pair):
            assert same_prediction(c[row], s[row], *ref[k])
    assert rc == 0, srv.log_tail()
    log = srv.log_text()
    m = re.search(r"stopped \((\d+) request\(s\) were in flight", log)
    assert m, log
    print(f"\nSIGTERM: {m.group(1)} request(s) in flight, all answered; exit 0")
