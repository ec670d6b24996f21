"""cocotb testbench for :class:`hdl.rtl.convert.OutputConvert` (run by tests/test_rtl_convert.py).

Environment (set by the pytest driver): ``CONVERT_DTYPE`` (float16 | bfloat16 | uint8 | int8),
``CONVERT_SEED`` (int), ``CONVERT_VECTORS`` (beats for the random test), ``CONVERT_LATENCY``.
The DUT's ports are ``i`` ``{data: 3 x signed(49), side}`` and ``o`` ``{data: 3 x E, side}``; the
side width is whatever is left of the payload.
"""
from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from hdl.fixedpoint import NORM_VALUE
from hdl.golden.convert import BFLOAT16, FLOAT16, convert, element_bits
from sim.cocotb.streams import StreamMonitor, StreamSink, StreamSource, random_pauses

LANES = 3
IN_BITS = NORM_VALUE.width
FRAC = NORM_VALUE.frac_bits


def _env() -> tuple[str, int, int, int]:
    return (os.environ["CONVERT_DTYPE"], int(os.environ.get("CONVERT_SEED", "1")),
            int(os.environ.get("CONVERT_VECTORS", "3000")),
            int(os.environ.get("CONVERT_LATENCY", "2")))


def make_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n x LANES`` NORM_VALUE raw values that stress every rounding and range edge of every
    dtype (the same vectors are good for all four): each element is drawn from one of the
    classes below, then clipped to NORM_VALUE."""
    lo, hi = NORM_VALUE.lo, NORM_VALUE.hi
    fixed = [0, 1, -1, 2, -2, hi, lo, hi - 1, lo + 1, 1 << FRAC, -(1 << FRAC),
             65504 << FRAC, 65520 << FRAC, (65520 << FRAC) - 1, -(65520 << FRAC),
             -(65520 << FRAC) + 1, 1 << 8, 1 << 7, (1 << 7) + 1, 3 << 7, (1 << 18) - 1,
             (255 << FRAC) + (1 << 31), (127 << FRAC) + (1 << 31), -(128 << FRAC) - (1 << 31),
             (1 << 31), 3 << 31, -(1 << 31), -(3 << 31)]

    def magnitude(lead: np.ndarray) -> np.ndarray:
        """A random magnitude whose leading one is bit ``lead``."""
        low = rng.integers(0, 1 << 62, lead.shape) >> (62 - lead)
        return (np.int64(1) << lead) | low

    def ties(fmt) -> np.ndarray:
        """Exact halfway points (and their neighbours) between two ``fmt`` values."""
        lead = rng.integers(0, IN_BITS - 1, n * LANES)
        s = np.array([fmt.shift(int(p)) for p in lead])
        s = np.maximum(s, 1)
        m = magnitude(lead)
        return ((m >> s) << s) | (np.int64(1) << (s - 1))

    size = n * LANES
    sign = np.where(rng.random(size) < 0.5, -1, 1)
    classes = [
        np.zeros(size, np.int64),                                   # zero
        rng.integers(1, 1 << 8, size),                              # below f16 subnormals
        rng.integers(1 << 7, 1 << 19, size),                        # f16 subnormal range
        magnitude(rng.integers(0, IN_BITS - 1, size)),              # log-uniform
        ties(FLOAT16),
        ties(BFLOAT16),
        (rng.integers(0, 300, size) << FRAC) | (1 << (FRAC - 1)),  # int ties
        rng.integers(65504 << FRAC, 1 << 48, size),                 # f16 overflow edge
        (rng.choice([0, 127, 128, 255, 256], size) << FRAC)        # int saturation edges
        + rng.integers(-(1 << 33), 1 << 33, size),
        rng.integers(lo, hi, size, endpoint=True),                  # uniform
    ]
    pick = rng.integers(0, len(classes), size)
    raw = np.choose(pick, classes) * sign
    raw += np.where(rng.random(size) < 0.2, rng.integers(-1, 2, size), 0)  # tie neighbours
    raw = np.clip(raw, lo, hi)
    raw[:len(fixed)] = fixed
    return raw.reshape(n, LANES)


def expected_bits(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Golden output element bit patterns (unsigned, E bits) for ``raw``."""
    g = convert(raw, dtype)
    bits = g.view(np.uint16) if g.dtype == np.float16 else g
    return bits.astype(np.int64) & ((1 << element_bits(dtype)) - 1)


def pack(fields: list[int], width: int) -> int:
    return sum((int(f) & ((1 << width) - 1)) << (k * width) for k, f in enumerate(fields))


def unpack(word: int, width: int, count: int) -> list[int]:
    return [(word >> (k * width)) & ((1 << width) - 1) for k in range(count)]


async def _start(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0


def _side_bits(dut) -> int:
    return len(dut.i__payload) - LANES * IN_BITS


@cocotb.test()
async def random_backpressure(dut):
    """Every vector through random stalls on both sides, compared lane by lane, bit for bit."""
    dtype, seed, n, _ = _env()
    dut._log.info("dtype %s, seed %d (rerun with CONVERT_SEED=%d), %d beats", dtype, seed,
                  seed, n)
    elem, side_w = element_bits(dtype), _side_bits(dut)
    assert len(dut.o__payload) == LANES * elem + side_w
    nrng, prng = np.random.default_rng(seed), random.Random(seed)
    raw = make_vectors(nrng, n)
    want = expected_bits(raw, dtype)
    side = [prng.getrandbits(side_w) for _ in range(n)]

    src = StreamSource(dut, "i", dut.clk, random_pauses(prng, 0.3), reset=dut.rst)
    snk = StreamSink(dut, "o", dut.clk, random_pauses(prng, 0.3), reset=dut.rst)
    StreamMonitor(dut, "o", dut.clk, reset=dut.rst)
    await _start(dut)
    for row, sd in zip(raw, side):
        src.send_nowait(pack(list(row), IN_BITS) | (sd << (LANES * IN_BITS)))

    mismatches = 0
    for b in range(n):
        word = await snk.recv()
        got = unpack(word, elem, LANES)
        got_side = word >> (LANES * elem)
        assert got_side == side[b], f"beat {b}: side {got_side:#x}, expected {side[b]:#x}"
        for k in range(LANES):
            if got[k] != want[b, k]:
                mismatches += 1
                if mismatches <= 20:
                    dut._log.error("beat %d lane %d: raw %d (%.17g): got %#x, golden %#x", b, k,
                                   raw[b, k], raw[b, k] / 2 ** FRAC, got[k], want[b, k])
    await ClockCycles(dut.clk, 5)
    assert snk.empty(), "more beats came out than went in"
    assert mismatches == 0, f"{mismatches} of {n * LANES} lanes differ from the golden model"
    dut._log.info("%d beats x %d lanes bit-exact (%s)", n, LANES, dtype)


@cocotb.test()
async def full_throughput(dut):
    """With no stalls the pipeline takes one beat per clock and delivers each LATENCY
    cycles after it was accepted."""
    dtype, seed, _, latency = _env()
    n = 64
    raw = make_vectors(np.random.default_rng(seed + 1), n)
    want = expected_bits(raw, dtype)
    src = StreamSource(dut, "i", dut.clk, reset=dut.rst)
    snk = StreamSink(dut, "o", dut.clk, reset=dut.rst)
    mon_i = StreamMonitor(dut, "i", dut.clk, reset=dut.rst)
    mon_o = StreamMonitor(dut, "o", dut.clk, reset=dut.rst)
    await _start(dut)
    for row in raw:
        src.send_nowait(pack(list(row), IN_BITS))
    got = [await snk.recv() for _ in range(n)]
    await RisingEdge(dut.clk)
    elem = element_bits(dtype)
    assert [unpack(w, elem, LANES) for w in got] == want.tolist()
    ci = [c for c, _ in mon_i.transfers]
    co = [c for c, _ in mon_o.transfers]
    assert ci == list(range(ci[0], ci[0] + n)), "input stalled with an always-ready sink"
    assert co == [c + latency for c in ci], f"latency is not {latency}"
