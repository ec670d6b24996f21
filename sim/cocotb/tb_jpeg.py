"""cocotb testbench for :class:`hdl.jpeg.rtl.JpegDecoder` (run by tests/test_jpeg_rtl.py).

Protocol behaviour under random backpressure: JPEG files go in back to back on ``i`` with
random pauses, ``o`` and ``status`` are drained with random pauses, :class:`StreamMonitor`
checks that no output drops ``valid`` or changes its payload before the transfer, and every
image's status code and pixels must be the golden model's (given by the pytest driver).

Environment: ``PREBA_JPEG_JOBS`` (JSON: a list of ``{"file": hex, "code": int, "pixels":
[packed rgb + last<<24, ...]}``), ``PREBA_SEED``, ``PREBA_PAUSE`` (pause probability).
"""
from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, with_timeout

from sim.cocotb.streams import StreamMonitor, StreamSink, StreamSource, random_pauses


@cocotb.test()
async def jpeg_protocol(dut):
    jobs = json.loads(open(os.environ["PREBA_JPEG_JOBS"]).read())
    seed = int(os.environ.get("PREBA_SEED", "1"))
    pause = float(os.environ.get("PREBA_PAUSE", "0.3"))
    rng = random.Random(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    src = StreamSource(dut, "i", dut.clk, random_pauses(rng, pause), reset=dut.rst)
    pix = StreamSink(dut, "o", dut.clk, random_pauses(rng, pause), reset=dut.rst)
    sts = StreamSink(dut, "status", dut.clk, random_pauses(rng, pause), reset=dut.rst)
    mon_o = StreamMonitor(dut, "o", dut.clk, reset=dut.rst)
    mon_s = StreamMonitor(dut, "status", dut.clk, reset=dut.rst)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    for job in jobs:
        data = bytes.fromhex(job["file"])
        for n, b in enumerate(data):
            src.send_nowait(b | ((n == len(data) - 1) << 8))
    for n, job in enumerate(jobs):
        word = await with_timeout(sts.recv(), 2_000_000, "ns")
        code = word & 0xFF
        got = []
        while not pix.empty():
            got.append(pix.recv_nowait())
        assert code == job["code"], f"image {n}: status {code}, golden {job['code']}"
        if job["code"] == 0:
            assert got == job["pixels"], f"image {n}: pixels differ"
            width, height = (word >> 8) & 0xFFFF, word >> 24
            assert width * height == len(got)
    await ClockCycles(dut.clk, 20)
    assert src.idle() and pix.empty() and sts.empty()
    assert len(mon_s.transfers) == len(jobs)
