"""Pieces shared by the horizontal and vertical resample units."""
from __future__ import annotations

from amaranth import Mux, signed
from amaranth.lib import memory, stream
from amaranth.lib.wiring import In, Out

from ..fixedpoint import RESAMPLE_ACC, RESAMPLE_PRECISION
from .layouts import Pixel, StepLayout

#: Pillow's rounding bias: the accumulator starts at one half of an output step.
BIAS = 1 << (RESAMPLE_PRECISION - 1)
ACC = signed(RESAMPLE_ACC.width)


def clip8(acc):
    """Pillow's clip8(): ``clamp(acc >> 22, 0, 255)`` for a RESAMPLE_ACC value."""
    v = acc >> RESAMPLE_PRECISION
    return Mux(v < 0, 0, Mux(v > 255, 255, v[:8]))


def unit_members(depth: int, banks: int) -> dict:
    """Ports every resample unit has: pixel streams in and out, this job's schedule (``run``,
    ``steps``, ``mode``, ``bank``) and the write port of its step table (``tbl_*``)."""
    return {
        "i": In(stream.Signature(Pixel)),
        "o": Out(stream.Signature(Pixel)),
        "run": In(1),
        "steps": In(16),
        "mode": In(1),
        "bank": In(range(banks)) if banks > 1 else In(1),
        "tbl_addr": In(range(depth * banks)),
        "tbl_data": In(StepLayout),
        "tbl_we": In(1),
    }


def step_table(m, unit) -> memory.ReadPort:
    """The unit's table of ``banks`` schedules: the job loader writes it through the unit's
    ``tbl_*`` ports while the unit reads the running job's bank. Returns the read port."""
    m.submodules.table = table = memory.Memory(shape=StepLayout, depth=unit.depth * unit.banks,
                                               init=[])
    wr = table.write_port()
    m.d.comb += [wr.addr.eq(unit.tbl_addr), wr.data.eq(unit.tbl_data), wr.en.eq(unit.tbl_we)]
    return table.read_port()
