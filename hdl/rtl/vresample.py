"""Vertical resampling: rows of pixels in, resampled (and cropped) rows out.

One schedule step covers a whole row. Scatter mode (downscale) keeps ``LANES`` row accumulators
in memories as wide as the output row and read-modify-writes them as pixels stream through;
every input row costs its width in clocks whatever the ratio. Gather mode (upscale) keeps the
last three rows in the same memories (a ring) and computes output rows from them; a step that
does not consume a row re-reads the ring.

Pipeline: row start (load the row's step into a register, one clock) → tick (read memories at
x, products of the incoming pixel) → S1 (scatter: accumulate
and write back; gather: nothing yet) → S2 (gather: lane rows registered) → S3 (taps selected)
→ S4 (tap products) → sum, clip8 → output register.
"""
from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..resample import GATHER, LANES
from .layouts import Pixel, StepLayout
from .resample_common import ACC, BIAS, clip8, step_table, unit_members

LaneRow = data.ArrayLayout(ACC, 3)


class VResample(wiring.Component):
    """Parameters: ``depth`` (table steps), ``width_limit`` (widest row the memories hold).

    Ports as :class:`HResample`, plus ``width``: this job's row width (the tensor width).
    """

    def __init__(self, depth: int, width_limit: int, banks: int = 1):
        self.depth = depth
        self.width_limit = width_limit
        self.banks = banks
        super().__init__({**unit_members(depth, banks), "width": In(16)})

    def elaborate(self, platform):
        m = Module()
        rd = step_table(m, self)

        gather = self.mode == GATHER
        step = Signal(range(self.depth + 1))
        x = Signal(range(self.width_limit))
        ring = Signal(range(3))     # ring slot the next consumed row is written to
        primed = Signal()
        # The row's step, registered: one clock per row to load it keeps the table memory's
        # output away from the multipliers (the FPGA's critical path otherwise).
        entry = Signal(StepLayout)
        loaded = Signal()
        row_end = x == self.width - 1
        done = step == self.steps

        en = Signal()
        m.d.comb += en.eq(~self.o.valid | self.o.ready)
        can_tick = self.run & primed & loaded & en & ~done
        fire = can_tick & (~entry.adv | self.i.valid)
        m.d.comb += self.i.ready.eq(can_tick & entry.adv)
        m.d.comb += rd.addr.eq(Mux(fire & row_end, step + 1, step) + self.bank * self.depth)
        m.d.sync += primed.eq(self.run)
        with m.If(self.run & primed & ~loaded & ~done):
            m.d.sync += [entry.eq(rd.data), loaded.eq(1)]
        with m.If(fire):
            m.d.sync += x.eq(Mux(row_end, 0, x + 1))
            with m.If(row_end):
                m.d.sync += loaded.eq(0)
                m.d.sync += step.eq(step + 1)
                with m.If(entry.adv):
                    m.d.sync += ring.eq(Mux(ring == 2, 0, ring + 1))

        lanes = []
        for l in range(LANES):
            mem = memory.Memory(shape=LaneRow, depth=self.width_limit, init=[])
            m.submodules[f"lane{l}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=(wp,))
            m.d.comb += [rp.addr.eq(x), rp.en.eq(en)]
            lanes.append((rp, wp))

        # Tick → S1.
        weights = [entry.w0, entry.w1, entry.w2]
        s1_valid = Signal()
        s1 = Signal(data.StructLayout({
            "x": unsigned(len(x)), "emit": 1, "lane": 2, "init": LANES, "adv": 1,
            "w": data.ArrayLayout(weights[0].shape(), 3), "pix": Pixel,
            "slot": data.ArrayLayout(2, 3),   # gather: ring slot of window[j]
            "wslot": 2,                        # gather: ring slot the incoming row goes to
        }))
        s1_prod = [[Signal(ACC, name=f"s1_prod{l}_{c}") for c in range(3)] for l in range(LANES)]
        # Gather window after this step: rows (n-3+j) for n rows consumed, so slot (n+j) mod 3.
        n_mod = Mux(entry.adv, Mux(ring == 2, 0, ring + 1), ring)
        with m.If(en):
            m.d.sync += s1_valid.eq(fire)
        with m.If(fire):
            m.d.sync += [s1.x.eq(x), s1.emit.eq(entry.emit), s1.lane.eq(entry.lane),
                         s1.init.eq(entry.init), s1.adv.eq(entry.adv), s1.pix.eq(self.i.payload),
                         s1.wslot.eq(ring)]
            m.d.sync += [s1.w[j].eq(weights[j]) for j in range(3)]
            for j in range(3):
                m.d.sync += s1.slot[j].eq(Mux(n_mod + j >= 3, n_mod + j - 3, n_mod + j))
            for l in range(LANES):
                for c in range(3):
                    m.d.sync += s1_prod[l][c].eq(weights[l] * self.i.payload[c])

        # S1: scatter accumulates in place; gather forms its tap products.
        mem_rows = [rp.data for rp, _ in lanes]
        sums = [[Signal(ACC, name=f"sum{l}_{c}") for c in range(3)] for l in range(LANES)]
        for l in range(LANES):
            for c in range(3):
                base = Mux(s1.init[l], BIAS, mem_rows[l][c])
                m.d.comb += sums[l][c].eq(base + s1_prod[l][c])
        for l, (_, wp) in enumerate(lanes):
            m.d.comb += wp.addr.eq(s1.x)
            incoming = [s1.pix[c].as_unsigned() for c in range(3)]
            with m.If(gather):
                m.d.comb += [wp.data[c].eq(incoming[c]) for c in range(3)]
                m.d.comb += wp.en.eq(en & s1_valid & s1.adv & (s1.wslot == l))
            with m.Else():
                m.d.comb += [wp.data[c].eq(sums[l][c]) for c in range(3)]
                m.d.comb += wp.en.eq(en & s1_valid)

        # Gather after S1 (scatter results ride along): S2 registers the lane rows' read data
        # straight out of the memories (no logic between block RAM and flip-flop), S3 selects
        # the taps by ring slot, S4 forms the products, then sum, clip8 and the output
        # register. Every stage advances with `en`: one pixel per clock, three clocks more
        # latency than forming the products in S1.
        s2_emit = Signal()
        s2_scatter = Signal(Pixel)
        s2_rows = [[Signal(8, name=f"s2_row{l}_{c}") for c in range(3)] for l in range(LANES)]
        s2 = Signal(data.StructLayout({
            "adv": 1, "w": data.ArrayLayout(weights[0].shape(), 3), "pix": Pixel,
            "slot": data.ArrayLayout(2, 3),
        }))
        with m.If(en):
            m.d.sync += s2_emit.eq(s1_valid & s1.emit)
            with m.If(s1_valid):
                m.d.sync += [s2.adv.eq(s1.adv), s2.w.eq(s1.w), s2.pix.eq(s1.pix),
                             s2.slot.eq(s1.slot)]
                for c in range(3):
                    lane_sum = Array(sums[l][c] for l in range(LANES))[s1.lane]
                    m.d.sync += s2_scatter[c].eq(clip8(lane_sum))
                    for l in range(LANES):
                        m.d.sync += s2_rows[l][c].eq(mem_rows[l][c][:8])

        s3_emit = Signal()
        s3_scatter = Signal(Pixel)
        s3_w = Signal(data.ArrayLayout(weights[0].shape(), 3))
        s3_tap = [[Signal(8, name=f"s3_tap{j}_{c}") for c in range(3)] for j in range(3)]
        with m.If(en):
            m.d.sync += [s3_emit.eq(s2_emit), s3_scatter.eq(s2_scatter), s3_w.eq(s2.w)]
            for c in range(3):
                rows_by_slot = Array(s2_rows[l][c] for l in range(LANES))
                for j in range(3):
                    tap = rows_by_slot[s2.slot[j]]
                    if j == 2:
                        tap = Mux(s2.adv, s2.pix[c], tap)
                    m.d.sync += s3_tap[j][c].eq(tap)

        s4_emit = Signal()
        s4_scatter = Signal(Pixel)
        s4_prod = [[Signal(ACC, name=f"s4_prod{j}_{c}") for c in range(3)] for j in range(3)]
        with m.If(en):
            m.d.sync += [s4_emit.eq(s3_emit), s4_scatter.eq(s3_scatter)]
            for c in range(3):
                for j in range(3):
                    m.d.sync += s4_prod[j][c].eq(s3_w[j] * s3_tap[j][c])

        # S4 → output register.
        with m.If(en):
            m.d.sync += self.o.valid.eq(s4_emit)
            with m.If(s4_emit):
                for c in range(3):
                    total = (Const(BIAS, ACC) + s4_prod[0][c] + s4_prod[1][c]
                             + s4_prod[2][c])
                    m.d.sync += self.o.payload[c].eq(Mux(gather, clip8(total), s4_scatter[c]))
        return m
