"""The inference server with real worker processes and the real pretrained model, on the CPU.

One server (two CPU workers, EfficientNet-Lite0) is shared by the module's tests: starting
workers is the slow part. Its profile is given (not measured) so that the batching rules' numbers
are known: L(1) = 20 ms, L(2) = 22 ms, L(4) = 60 ms -> Batch_knee 2, Time_knee 22 ms.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from pyhost import Accelerator, InferenceServer, PreprocessError
from pyhost.models import EFFICIENTNET_LITE_PIPELINE, build_module
from pyhost.partitions import cpu_partitions
from pyhost.preprocessing import CycleTable, FpgaModel, FpgaParams, backend_available
from pyhost.profile import BatchStats, PartitionProfile, Profile, synthetic_profile
from pyhost.server import DeadlineExceeded, Overloaded, WorkerFailed
from pyhost.worker import forward_topk

from conftest import SHARED_IMAGES as IMAGES  # noqa: E402
ORIG, INT = IMAGES / "testorig.jpg", IMAGES / "testimgint.jpg"
PARTS = cpu_partitions(2)
KEY = PARTS[0].profile_key


def knee2_profile(key: str = KEY) -> Profile:
    pts = [(1, 20.0), (2, 22.0), (4, 60.0)]
    return Profile("efficientnet-lite0", {key: PartitionProfile(
        key, [BatchStats(b, ms, ms, ms, ms, b * 1000 / ms) for b, ms in pts])}, "cpu", "test")


@pytest.fixture(scope="module")
def loop():
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def srv(loop):
    s = InferenceServer("efficientnet-lite0", PARTS, "preba", profile=knee2_profile(),
                        preprocess="pillow", preprocess_workers=1, buckets=(1, 2, 4))
    loop.run_until_complete(s.start())
    yield s
    loop.run_until_complete(s.stop())


@pytest.fixture(scope="module")
def tensors():
    acc = Accelerator(EFFICIENTNET_LITE_PIPELINE, "pillow")
    return [acc.preprocess(ORIG), acc.preprocess(INT)]


@pytest.fixture(scope="module")
def direct(tensors):
    """Top-5 of a direct model call on each tensor, in this process."""
    import torch
    m = build_module("efficientnet-lite0").to(memory_format=torch.channels_last)
    out = []
    with torch.inference_mode():
        for t in tensors:
            c, s = forward_topk(m, torch.from_numpy(t)[None], 5, torch.float32, True)
            out.append((c[0].numpy(), s[0].numpy()))
    return out


def run(loop, coro):
    return loop.run_until_complete(coro)


def test_profile_sets_the_policy_numbers(srv):
    pp = srv.profile[KEY]
    assert (pp.batch_knee, pp.time_knee_ms) == (2, 22.0)
    lim = srv.stats()["partitions"][0]["limits"]
    assert lim == {"max_batch": 2, "timeout_ms": 11.0}  # Time_knee / 2 partitions


def test_prediction_equals_direct_model_call(srv, loop, tensors, direct):
    srv.set_batching("preba")
    one = run(loop, srv.infer(tensors[0]))
    many = run(loop, srv.infer_many([tensors[0], tensors[1], tensors[1], tensors[0]]))
    for p, i in [(one, 0), (many[0], 0), (many[1], 1), (many[2], 1), (many[3], 0)]:
        classes, scores = direct[i]
        assert p.classes == tuple(int(c) for c in classes)
        np.testing.assert_allclose(p.scores, scores, rtol=1e-4, atol=1e-5)
    assert one.labels is None and one.label is None  # no installed package ships labels
    assert {p.partition for p in many} <= {"cpu0", "cpu1"}


def test_jpeg_bytes_and_paths_go_through_preprocessing(srv, loop, direct):
    by_bytes = run(loop, srv.infer(ORIG.read_bytes()))
    by_path = run(loop, srv.infer(str(INT)))
    assert by_bytes.classes == tuple(int(c) for c in direct[0][0])
    assert by_path.classes == tuple(int(c) for c in direct[1][0])
    assert by_bytes.top1 == 989  # "hip, rose hip": testorig.jpg is a red rose
    assert by_bytes.preprocess_ms > 0 and by_bytes.compute_ms > 0
    assert by_bytes.latency_ms >= by_bytes.preprocess_ms + by_bytes.queue_ms


@pytest.mark.skipif(not backend_available("golden"), reason="golden backend not installed")
def test_golden_and_pillow_preprocessing_agree_on_top1(srv, loop, tensors):
    gold = Accelerator(EFFICIENTNET_LITE_PIPELINE, "golden")
    for path, pil in zip((ORIG, INT), tensors):
        a, b = run(loop, srv.infer_many([pil, gold.preprocess(path)]))
        assert a.top1 == b.top1, path.name


def test_infer_many_names_the_bad_element(srv, loop):
    before = srv.stats()
    with pytest.raises(PreprocessError, match=r"element 1 \(<4 bytes>\): not an image") as ei:
        run(loop, srv.infer_many([ORIG.read_bytes(), b"junk", INT.read_bytes()]))
    assert ei.value.source.startswith("element 1")
    after = srv.stats()
    assert after["failed_preprocess"] == before["failed_preprocess"] + 1
    # all or nothing: no batch ran for the good elements
    assert sum(p["batches"] for p in after["partitions"]) == \
        sum(p["batches"] for p in before["partitions"])


def test_policies_form_their_batch_sizes(srv, loop, tensors):
    t = tensors[0]
    srv.set_batching("none")
    assert {p.batch_size for p in run(loop, srv.infer_many([t] * 6))} == {1}
    srv.set_batching("triton", triton_max_batch=4)
    ps = run(loop, srv.infer_many([t] * 10))
    sizes = [p.batch_size for p in ps]
    # 10 at once over 2 partitions: 5 each (earliest-finish routing) -> a batch of 4, then 1
    assert max(sizes) == 4 and sizes.count(4) == 8 and sizes.count(1) == 2
    srv.set_batching("preba")
    ps = run(loop, srv.infer_many([t] * 8))
    assert {p.batch_size for p in ps} == {2}  # Batch_knee = 2
    with pytest.raises(ValueError, match="needs an SLO"):
        srv.set_batching("slo")
    srv.set_batching("slo", slo_ms=80.0)
    # idle: rate ~0 -> not saturated, L(b) + b/rate <= 80 only for b = 1 at low rates
    assert srv.stats()["partitions"][0]["limits"]["max_batch"] >= 1
    srv.set_batching("preba")


def test_preba_waits_for_its_timeout_when_the_batch_does_not_fill(srv, loop, tensors):
    srv.set_batching("preba")
    p = run(loop, srv.infer(tensors[0]))
    assert p.batch_size == 1
    assert p.queue_ms >= 11.0 - 0.5  # Time_knee 22 ms / 2 partitions
    srv.set_batching("triton")
    assert srv.stats()["partitions"][0]["limits"]["timeout_ms"] == 0.0
    srv.set_batching("preba")


def test_expired_requests_get_errors_and_are_counted(srv, loop, tensors):
    srv.set_batching("none")

    async def scenario():
        busy = asyncio.ensure_future(srv.infer_many([tensors[0]] * 4))
        while not all(lane.inflight for lane in srv.lanes):  # both workers busy, 1 queued each
            await asyncio.sleep(0)
        late = await asyncio.gather(*(srv.infer(tensors[1], deadline_ms=1.0) for _ in range(3)),
                                    return_exceptions=True)
        return await busy, late

    before = srv.stats()["expired"]
    ok, late = run(loop, scenario())
    assert len(ok) == 4
    assert all(isinstance(e, DeadlineExceeded) for e in late), late
    assert "deadline passed" in str(late[0])
    assert srv.stats()["expired"] == before + 3
    srv.set_batching("preba")


def test_refused_when_queues_are_full(srv, loop, tensors):
    srv.set_batching("none")
    srv.max_queue = 1
    try:
        before = srv.stats()
        async def burst():
            return await asyncio.gather(*(srv.infer(tensors[0]) for _ in range(8)),
                                        return_exceptions=True)
        res = run(loop, burst())
    finally:
        srv.max_queue = 1024
        srv.set_batching("preba")
    refused = [r for r in res if isinstance(r, Overloaded)]
    done = [r for r in res if not isinstance(r, Exception)]
    assert len(refused) == 6 and len(done) == 2  # one queued per partition, the rest refused
    after = srv.stats()
    assert after["refused"] - before["refused"] == 6
    assert after["completed"] - before["completed"] == 2


def test_infer_stream_keeps_order_and_yields_errors(srv, loop, tensors):
    async def collect():
        return [r async for r in srv.infer_stream([tensors[0], b"junk", tensors[1]] * 2,
                                                  window=3)]

    out = run(loop, collect())
    assert len(out) == 6
    assert isinstance(out[1], PreprocessError) and isinstance(out[4], PreprocessError)
    assert out[0].classes == out[3].classes and out[2].classes == out[5].classes
    assert out[0].classes != out[2].classes or out[0].scores != out[2].scores


def test_stats_account_for_every_request(srv):
    st = srv.stats()
    finished = (st["completed"] + st["refused"] + st["expired"] + st["failed_preprocess"]
                + st["failed_worker"] + st["cancelled"] + st["not_run"])
    assert st["pending"] == 0
    assert finished == st["submitted"]
    assert sum(p["completed"] for p in st["partitions"]) == st["completed"]
    assert all(0 <= p["util"] <= 1 for p in st["partitions"])


def test_accelerator_pipeline_mismatch_warns():
    with pytest.warns(UserWarning, match="not the one efficientnet-lite0 was trained with"):
        InferenceServer("efficientnet-lite0", PARTS, accelerator=Accelerator("imagenet", "pillow"))


# --- servers of their own (the null model starts fast) -------------------------------------------
def test_worker_crash_fails_its_requests_and_traffic_moves(tmp_path):
    prof = Profile("null", {KEY: synthetic_profile(KEY, 1.0, 0.1, (1, 2, 4))})

    async def scenario():
        async with InferenceServer("null", PARTS, "none", profile=prof, preprocess="tensors",
                                   buckets=(1, 2, 4)) as s:
            t = np.zeros(s.model.input_shape, np.float16)
            await s.infer_many([t] * 4)
            os.kill(s.lanes[0].info["pid"], signal.SIGKILL)
            res = await asyncio.gather(*(s.infer(t) for _ in range(6)), return_exceptions=True)
            for _ in range(200):  # until the routing process has seen the exit
                if not s.lanes[0].alive:
                    break
                await asyncio.sleep(0.01)
            after = await s.infer_many([t] * 4)
            return res, after, s.stats()

    res, after, st = asyncio.run(scenario())
    for r in res:
        assert isinstance(r, WorkerFailed) or r.partition == "cpu1", r
    assert {p.partition for p in after} == {"cpu1"}
    assert st["partitions"][0]["alive"] is False
    assert st["failed_worker"] == sum(isinstance(r, WorkerFailed) for r in res)


@pytest.mark.skipif(not backend_available("golden"), reason="golden backend not installed")
def test_startup_profile_and_fpga_model_timing():
    data = ORIG.read_bytes()

    async def scenario():
        spec = EFFICIENTNET_LITE_PIPELINE
        table = CycleTable(spec.name)
        table.put(data, "testorig.jpg", 30_000)  # 30 ms per image at 1 MHz
        fpga = FpgaModel(spec, table, FpgaParams(units=1, mhz=1.0, pcie_gbps=1.0), workers=1)
        async with InferenceServer("null", PARTS[:1], "none", pipeline=spec, preprocess=fpga,
                                   profile_iters=2, buckets=(1, 2)) as s:
            await fpga.prepare([data])
            t0 = time.perf_counter()
            ps = await asyncio.gather(*(s.infer(data) for _ in range(3)))
            wall = time.perf_counter() - t0
            with pytest.raises(PreprocessError, match="no RTL cycle count"):
                await s.infer(INT.read_bytes())
            return ps, wall, s.profile, s.stats()

    ps, wall, prof, st = asyncio.run(scenario())
    # one unit: deliveries at ~30, 60, 90 ms (+ PCIe), never earlier
    pre = sorted(p.preprocess_ms for p in ps)
    assert pre[0] >= 30.0 and pre[1] >= 60.0 and pre[2] >= 90.0
    assert wall >= 0.090
    assert st["preprocess"]["modeled"] is True and "MODEL" in st["preprocess"]["model"]
    pp = prof[PARTS[0].profile_key]
    assert pp.sizes == [1, 2] and all(b.samples == 2 for b in pp.batches)
    assert "measured at startup" in prof.source


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # TorchScript, as the issue asks
def test_torchscript_file_and_factory_models(tmp_path):
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=4)
            self.fc = torch.nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(self.conv(x).mean(dim=(2, 3)))

    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(Tiny().eval()), str(path))
    from pyhost.models import resolve_model
    assert resolve_model("pyhost.models:NullModel").pipeline.name == "imagenet"
    with pytest.raises(ValueError, match="cannot import"):
        resolve_model("no_such_module:make")
    with pytest.raises(ValueError, match="file not found"):
        resolve_model(str(tmp_path / "missing.pt"))
    info = resolve_model(str(path))
    x = np.random.default_rng(0).standard_normal(info.input_shape).astype(np.float16)

    async def scenario():
        async with InferenceServer(info, PARTS[:1], "none", preprocess="tensors", buckets=(1,),
                                   topk=3, profile_iters=1) as s:
            return await s.infer(x)

    p = asyncio.run(scenario())
    m = torch.jit.load(str(path)).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        c, sc = forward_topk(m, torch.from_numpy(x)[None], 3, torch.float32, True)
    assert p.classes == tuple(int(v) for v in c[0]) and len(p.classes) == 3
    np.testing.assert_allclose(p.scores, sc[0].numpy(), rtol=1e-4, atol=1e-6)
