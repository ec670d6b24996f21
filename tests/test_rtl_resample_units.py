"""The resample units alone, in Amaranth's simulator: schedules for up- and downscales, with
random stalls on both sides, against the golden resampler bit for bit."""
from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.golden.resize import resample_axis
from hdl.resample import STEP_FIELDS, build_schedule
from hdl.rtl.hresample import HResample
from hdl.rtl.vresample import VResample

SEED = 7


def _load_table(ctx, unit, sched):
    for i, row in enumerate(sched.steps):
        ctx.set(unit.tbl_addr, i)
        ctx.set(unit.tbl_data, {name: int(row[name]) for name, _ in STEP_FIELDS})
        ctx.set(unit.tbl_we, 1)
        yield
    ctx.set(unit.tbl_we, 0)


def simulate(unit, sched, pixels: list[tuple[int, int, int]], n_out: int, extra: dict,
             rng: random.Random, stall: float) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    sim = Simulator(unit)
    sim.add_clock(1e-6)

    async def tb(ctx):
        for _ in _load_table(ctx, unit, sched):
            await ctx.tick()
        ctx.set(unit.steps, len(sched))
        ctx.set(unit.mode, sched.mode)
        for k, v in extra.items():
            ctx.set(getattr(unit, k), v)
        ctx.set(unit.run, 1)
        i = 0
        cycles = 0
        while len(out) < n_out or i < len(pixels):
            cycles += 1
            assert cycles < 20 * (len(pixels) + n_out) + 100, "unit stopped making progress"
            send = i < len(pixels) and rng.random() >= stall
            ctx.set(unit.i.valid, send)
            if send:
                ctx.set(unit.i.payload, list(pixels[i]))
            take = rng.random() >= stall
            ctx.set(unit.o.ready, take)
            await ctx.delay(1e-8)
            if send and ctx.get(unit.i.ready):
                i += 1
            if take and ctx.get(unit.o.valid):
                out.append(tuple(int(v) for v in ctx.get(unit.o.payload)))
            await ctx.tick()
        assert i == len(pixels), f"unit consumed {i} of {len(pixels)} inputs"

    sim.add_testbench(tb)
    sim.run()
    return out


CASES = [(1, 5), (5, 1), (7, 3), (64, 7), (40, 40), (3, 10), (11, 29), (100, 8), (200, 9),
         (2, 50), (1, 30), (13, 12), (12, 13)]


@pytest.mark.parametrize("n_in,n_out", CASES)
def test_hresample(n_in, n_out):
    rng = random.Random(SEED + n_in * 131 + n_out)
    nrng = np.random.default_rng(SEED)
    rows = 2
    img = nrng.integers(0, 256, (rows, n_in, 3), dtype=np.uint8)
    first, count = (1, n_out - 2) if n_out > 3 else (0, n_out)   # a cropped window too
    sched = build_schedule(n_in, n_out, first, count)
    unit = HResample(depth=len(sched) + 3)
    pixels = [tuple(int(v) for v in p) for p in img.reshape(-1, 3)]
    got = simulate(unit, sched, pixels, rows * count, {}, rng, stall=0.3)
    want = resample_axis(img, 1, n_out, first, count).reshape(-1, 3)
    assert np.array_equal(np.array(got, np.uint8), want)


@pytest.mark.parametrize("n_in,n_out", CASES)
def test_vresample(n_in, n_out):
    rng = random.Random(SEED + n_in * 17 + n_out)
    nrng = np.random.default_rng(SEED)
    # 1, 2 and 3 wide: a read meets the writes of each of the items ahead of it still in flight
    width = 1 + (n_in + n_out) % 3 if n_in * n_out < 400 else 1
    img = nrng.integers(0, 256, (n_in, width, 3), dtype=np.uint8)
    first, count = (1, n_out - 2) if n_out > 3 else (0, n_out)
    sched = build_schedule(n_in, n_out, first, count)
    unit = VResample(depth=len(sched) + 3, width_limit=4)
    pixels = [tuple(int(v) for v in p) for p in img.reshape(-1, 3)]
    got = simulate(unit, sched, pixels, count * width, {"width": width}, rng, stall=0.3)
    want = resample_axis(img, 0, n_out, first, count).reshape(-1, 3)
    assert np.array_equal(np.array(got, np.uint8), want)
