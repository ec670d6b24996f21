"""cocotb testbench for the preprocessing core (``PreprocessCore``).

The pytest side (tests/test_rtl_core.py) writes a jobs file: per image the cfg words, the pixel
words, and the golden model's tensor (element bit patterns) and status. This bench drives
``cfg``/``pix`` with stream sources and collects ``out``/``status`` with sinks, all four with
seeded random pauses, and scoreboards every output element against the golden tensor, bit for
bit: each element must arrive exactly once, at the offset the layout says, and ``last`` only on
the final beat.
"""
from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from sim.cocotb.streams import StreamSink, StreamSource, random_pauses


class CoreTB:
    def __init__(self, dut, manifest: dict, seed: int, pause: float):
        self.dut = dut
        self.manifest = manifest
        self.rng = random.Random(seed)
        dut._log.info(f"seed {seed}, pause probability {pause}")

        def pauses():
            return random_pauses(random.Random(self.rng.random()), pause) if pause else None

        self.cfg = StreamSource(dut, "cfg", dut.clk, pause_generator=pauses())
        self.pix = StreamSource(dut, "pix", dut.clk, pause_generator=pauses())
        self.out = StreamSink(dut, "out", dut.clk, pause_generator=pauses())
        self.status = StreamSink(dut, "status", dut.clk, pause_generator=pauses())
        out = manifest["ports"]["out"]
        self.ew = out["element_width"]
        self.data_lsb = out["fields"]["data"][0]
        self.last_bit = out["fields"]["last"][0]

    async def reset(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def decode_beat(self, beat: int) -> tuple[int, list[int], int]:
        mask = (1 << self.ew) - 1
        data = [(beat >> (self.data_lsb + c * self.ew)) & mask for c in range(3)]
        return beat & 0xFFFFFFFF, data, (beat >> self.last_bit) & 1

    def queue_job(self, job: dict) -> None:
        for w in job["cfg"]:
            self.cfg.send_nowait(int(w))
        for p in job["pix"]:
            self.pix.send_nowait(int(p))

    async def check_job(self, job: dict) -> None:
        """The next status and the out beats before it (a job's outputs all precede its
        status, and the next job starts only after it)."""
        name = job["name"]
        status_word = await self.status.recv()
        beats = []
        while not self.out.empty():
            beats.append(self.out.recv_nowait())
        code = status_word & 0xFF
        feed = (status_word >> 32) & 0xFFFFFFFF
        assert code == job["status"], f"{name}: status {code}, expected {job['status']}"
        if code != 0:
            return
        expected = np.asarray(job["expected"], np.int64)
        seen = np.zeros(len(expected), np.int64)
        stride = job["stride"]
        for i, beat in enumerate(beats):
            offset, data, last = self.decode_beat(beat)
            assert last == (i == len(beats) - 1), f"{name}: last={last} on beat {i}/{len(beats)}"
            for c in range(3):
                idx = offset + c * stride
                assert 0 <= idx < len(expected), f"{name}: offset {idx} outside the tensor"
                assert data[c] == expected[idx], (
                    f"{name}: element {idx} (beat {i}, channel {c}) is {data[c]:#x}, "
                    f"golden {int(expected[idx]):#x}")
                seen[idx] += 1
        assert (seen == 1).all(), (f"{name}: {int((seen == 0).sum())} elements missing, "
                                   f"{int((seen > 1).sum())} written twice")
        pixels = len(job["pix"])
        assert feed >= pixels, f"{name}: feed_cycles {feed} < {pixels} pixels"
        self.dut._log.info(f"{name}: {len(expected)} elements bit-exact, "
                           f"{feed / pixels:.3f} cycles per input pixel under backpressure")


@cocotb.test()
async def core_jobs(dut):
    """Every job in $PREBA_JOBS, queued all at once (so the next job's tables load while one
    runs), with random backpressure on all four streams."""
    with open(os.environ["PREBA_JOBS"]) as f:
        spec = json.load(f)
    tb = CoreTB(dut, spec["manifest"], int(os.environ.get("PREBA_SEED", "1")),
                float(os.environ.get("PREBA_PAUSE", "0.3")))
    await tb.reset()
    for job in spec["jobs"]:
        tb.queue_job(job)
    for job in spec["jobs"]:
        await tb.check_job(job)
