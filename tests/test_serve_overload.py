"""``preba serve`` overloaded: a bounded queue, and beyond it HTTP 503 / gRPC UNAVAILABLE at once.

One CPU partition, ``--max-queue 1``, no batching: a burst of 48 concurrent one-image requests
(24 over HTTP, 24 over gRPC, with ``tritonclient``'s asyncio clients) cannot all queue. Every
request is answered: served, or refused with 503 / UNAVAILABLE naming the overload, and the
refusals come back quickly rather than after the queue drains. Then the server serves normally.
"""
from __future__ import annotations

import asyncio
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("tritonclient")
import tritonclient.grpc as tgrpc  # noqa: E402
import tritonclient.grpc.aio as tgrpc_aio  # noqa: E402
import tritonclient.http as thttp  # noqa: E402
import tritonclient.http.aio as thttp_aio  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from pyhost.kserve.launcher import ServeProcess  # noqa: E402

from conftest import shared_image  # noqa: E402

ORIG = shared_image("testorig.jpg").read_bytes()
MODEL = "efficientnet-lite0"
BURST = 48


@pytest.fixture(scope="module")
def srv():
    with ServeProcess(["--model", MODEL, "--partitions", "cpu:1", "--batching", "none",
                       "--buckets", "1", "--profile-iters", "1", "--max-queue", "1"]) as s:
        yield s


async def _burst(srv):
    hcl = thttp_aio.InferenceServerClient(srv.http_url, conn_timeout=120)
    gcl = tgrpc_aio.InferenceServerClient(srv.grpc_url)

    async def one(i):
        cl, mod = (gcl, tgrpc) if i % 2 else (hcl, thttp)
        inp = mod.InferInput("IMAGE", [1], "BYTES")
        inp.set_data_from_numpy(np.array([ORIG], dtype=object))
        t0 = time.perf_counter()
        try:
            r = await cl.infer(MODEL, [inp])
            out = ("ok", int(r.as_numpy("CLASSES")[0, 0]))
        except InferenceServerException as e:
            out = (e.status(), e.message())
        return ("grpc" if i % 2 else "http",) + out + (time.perf_counter() - t0,)

    try:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(BURST))), 300)
    finally:
        await hcl.close()
        await gcl.close()


def test_burst_beyond_the_queue_is_refused_at_once(srv):
    out = asyncio.run(_burst(srv))
    assert len(out) == BURST
    ok = [o for o in out if o[1] == "ok"]
    refused = [o for o in out if o[1] in ("503", "StatusCode.UNAVAILABLE")]
    other = [o for o in out if o not in ok and o not in refused]
    assert not other, f"answers that are neither served nor refused: {other[:3]}"
    assert ok, "nothing was served"
    assert all(o[2] == 989 for o in ok)
    assert {o[0] for o in refused} == {"http", "grpc"}, \
        f"expected refusals on both protocols: {[(o[0], o[1]) for o in out]}"
    for o in refused:
        assert "overloaded" in o[2] and "max_queue=1" in o[2], o
    t_ok = np.median([o[3] for o in ok])
    t_refused = np.median([o[3] for o in refused])
    assert t_refused < t_ok or len(ok) == 1, (t_refused, t_ok)
    print(f"\nburst of {BURST}: {len(ok)} served (median {t_ok * 1e3:.0f} ms), {len(refused)} "
          f"refused (median {t_refused * 1e3:.0f} ms)")

    # the server goes on serving, and counted the refusals
    c = thttp.InferenceServerClient(srv.http_url, network_timeout=120)
    inp = thttp.InferInput("IMAGE", [1], "BYTES")
    inp.set_data_from_numpy(np.array([ORIG], dtype=object))
    assert c.infer(MODEL, [inp]).as_numpy("CLASSES")[0, 0] == 989
    c.close()
    text = urllib.request.urlopen(f"http://{srv.http_url}/metrics", timeout=60).read().decode()
    n = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("preba_request_failures_total{") and 'reason="overloaded"' in line)
    assert n == len(refused)
