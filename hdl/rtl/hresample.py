"""Horizontal resampling: a pixel stream in, the resampled (and cropped) row pixels out.

Runs the per-row step schedule of :mod:`hdl.resample` from a table memory. Scatter mode
(downscale) consumes one input pixel per step and keeps ``LANES`` output accumulators open, so
the cost per input pixel is one clock whatever the ratio. Gather mode (upscale) keeps the last
three input pixels and computes one output per step.

Pipeline (all stages advance together when the output register is free):
table entry → weights and operands (S0) → products (S1) → accumulate / first adds (S2) → last add,
clip8 → output register.
"""
from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..resample import GATHER, LANES
from .layouts import Pixel, StepLayout
from .resample_common import ACC, BIAS, clip8, step_table, unit_members


class HResample(wiring.Component):
    """Parameters: ``depth``, the number of steps the table holds.

    Ports: ``i``/``o`` pixel streams; ``run`` (tables loaded, job running); ``steps``/``mode``
    (this job's schedule, from the job header); ``tbl_*`` the table's write port; with
    ``banks`` > 1 the table holds that many schedules and ``bank`` picks the one to run (the
    next job's schedule loads into another bank meanwhile). A
    ``ResetInserter`` around the unit empties it between jobs.
    """

    def __init__(self, depth: int, banks: int = 1):
        self.depth = depth
        self.banks = banks
        super().__init__(unit_members(depth, banks))

    def elaborate(self, platform):
        m = Module()
        rd = step_table(m, self)

        gather = self.mode == GATHER
        step = Signal(range(self.depth))
        primed = Signal()           # rd.data holds the entry of `step`
        entry = rd.data

        en = ~self.o.valid | self.o.ready
        can_step = self.run & primed & en
        fire = can_step & (~entry.adv | self.i.valid)
        m.d.comb += self.i.ready.eq(can_step & entry.adv)

        # The table addresses of `step` and of the step after it are kept in registers, so that
        # the table's output (`adv`, hence `fire`) only picks one of them: no compare or adder
        # between the table memory's output and its address.
        def wrap(v):
            return Mux(v == self.steps - 1, 0, v + 1)
        tbl_base = self.bank * self.depth
        nstep = Signal(range(self.depth))
        addr_cur = Signal(range(self.depth * self.banks))
        addr_nxt = Signal(range(self.depth * self.banks))
        # Before the job runs, the table is read at `step` directly (and the registers load).
        m.d.comb += rd.addr.eq(Mux(primed, Mux(fire, addr_nxt, addr_cur), step + tbl_base))
        with m.If(~primed):
            m.d.sync += [nstep.eq(wrap(step)), addr_cur.eq(step + tbl_base),
                         addr_nxt.eq(wrap(step) + tbl_base)]
        with m.Elif(fire):
            m.d.sync += [step.eq(nstep), nstep.eq(wrap(nstep)), addr_cur.eq(addr_nxt),
                         addr_nxt.eq(wrap(nstep) + tbl_base)]
        # One cycle of reading `step` once the job runs: the table was just written.
        m.d.sync += primed.eq(self.run)

        # Window of the last three input pixels; window[2] is the newest.
        window = [Signal(Pixel, name=f"win{j}") for j in range(3)]
        shifted = [window[1], window[2], self.i.payload]
        new_window = [Mux(entry.adv, shifted[j].as_value(), window[j].as_value())
                      for j in range(3)]
        with m.If(fire & entry.adv):
            m.d.sync += [window[j].eq(shifted[j]) for j in range(3)]

        # S0: the step's weights and operands, registered so that the table memory's output
        # does not feed the multipliers in the same clock (the long path on an FPGA).
        s0_valid = Signal()
        s0 = Signal(data.StructLayout({
            "emit": 1, "lane": 2, "init": LANES,
            "w": data.ArrayLayout(entry.w0.shape(), 3),
            "op": data.ArrayLayout(Pixel, 3),
        }))
        with m.If(en):
            m.d.sync += s0_valid.eq(fire)
        with m.If(fire):
            m.d.sync += [s0.emit.eq(entry.emit), s0.lane.eq(entry.lane), s0.init.eq(entry.init),
                         s0.w[0].eq(entry.w0), s0.w[1].eq(entry.w1), s0.w[2].eq(entry.w2)]
            for l in range(LANES):
                # Scatter: every lane weighs the newest pixel; gather: lane l weighs window[l].
                m.d.sync += s0.op[l].eq(Mux(gather, new_window[l], new_window[2]))

        # S1: products.
        s1_valid = Signal()
        s1_emit = Signal()
        s1_lane = Signal(2)
        s1_init = Signal(LANES)
        prod = [[Signal(ACC, name=f"prod{l}_{c}") for c in range(3)] for l in range(LANES)]
        with m.If(en):
            m.d.sync += s1_valid.eq(s0_valid)
            with m.If(s0_valid):
                m.d.sync += [s1_emit.eq(s0.emit), s1_lane.eq(s0.lane), s1_init.eq(s0.init)]
                for l in range(LANES):
                    for c in range(3):
                        m.d.sync += prod[l][c].eq(s0.w[l] * s0.op[l][c])

        acc = [[Signal(ACC, name=f"acc{l}_{c}") for c in range(3)] for l in range(LANES)]
        sums = [[Signal(ACC, name=f"sum{l}_{c}") for c in range(3)] for l in range(LANES)]
        for l in range(LANES):
            for c in range(3):
                base = Mux(s1_init[l], BIAS, acc[l][c])
                m.d.comb += sums[l][c].eq(base + prod[l][c])
        # S2: the first adds (gather: BIAS + p0 and p1 + p2; scatter: the emitted lane's sum),
        # registered; then the last add, clip8 and the output register.
        wide = signed(ACC.width + 2)
        s2_emit = Signal()
        s2_x = [Signal(wide, name=f"s2_x{c}") for c in range(3)]
        s2_y = [Signal(wide, name=f"s2_y{c}") for c in range(3)]
        with m.If(en):
            m.d.sync += s2_emit.eq(s1_valid & s1_emit)
            with m.If(s1_valid):
                with m.If(~gather):
                    m.d.sync += [acc[l][c].eq(sums[l][c]) for l in range(LANES) for c in range(3)]
                with m.If(s1_emit):
                    for c in range(3):
                        lane_sum = Array(sums[l][c] for l in range(LANES))[s1_lane]
                        m.d.sync += [
                            s2_x[c].eq(Mux(gather, Const(BIAS, ACC) + prod[0][c], lane_sum)),
                            s2_y[c].eq(Mux(gather, prod[1][c] + prod[2][c], 0)),
                        ]

        with m.If(en):
            m.d.sync += self.o.valid.eq(s2_emit)
            with m.If(s2_emit):
                m.d.sync += [self.o.payload[c].eq(clip8(s2_x[c] + s2_y[c])) for c in range(3)]
        return m
