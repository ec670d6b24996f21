"""Horizontal resampling: a pixel stream in, the resampled (and cropped) row pixels out.

Runs the per-row step schedule of :mod:`hdl.resample` from a table memory. Scatter mode
(downscale) consumes one input pixel per step and keeps ``LANES`` output accumulators open, so
the cost per input pixel is one clock whatever the ratio. Gather mode (upscale) keeps the last
three input pixels and computes one output per step.

The schedule is walked in order, so the table is read ahead: the current step's entry sits in
registers and the next one in the block RAMs' output, and a step that fires (`fire`) moves the
next entry into the registers and reads the one after it. `fire`, `adv` and the weights
therefore come from flip-flops; the table's read data goes straight into registers.

Pipeline (every stage advances with ``en``, which is the output skid buffer's flip-flop rather
than the downstream ``ready``):

- fire: the step's weights and operands (the window or the incoming pixel) → S0 (fabric
  registers, loaded at every ``en``: a clock that does not fire leaves S0 invalid);
- S0 → S1: into the multipliers' operand registers (inside the MULT18X18Ds on the ECP5);
- S1 → S2: the two partial products of each weight x sample (one MULT18X18D each);
- S2 → S3: the partial products joined into the products;
- S3 → S4: scatter: lane accumulators (and the emitted lane's sum); gather: ``BIAS + p0`` and
  ``p1 + p2``;
- S4 → S5: the last add;
- S5 → output: clip8 into the output register (or the skid register while the output waits).

S0 is there for the multipliers' sake: ``fire`` is logic (it waits on ``i.valid``), and the
multipliers sit in DSP columns far from the rest of the unit, so their operand registers take
S0's flip-flops at every ``en`` rather than the operands at ``fire``: every pin of a MULT18X18D
(clock enables included) is driven straight from a flip-flop.
"""
from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring

from ..resample import GATHER, LANES
from .layouts import Pixel
from .resample_common import (ACC, BIAS, W_LO, StepTable, clip8, join_products, output_skid,
                              unit_members, weight_products)


class HResample(wiring.Component):
    """Parameters: ``depth``, the number of steps the table holds.

    Ports: ``i``/``o`` pixel streams; ``run`` (tables loaded, job running); ``steps``/``mode``
    (this job's schedule, from the job header); ``tbl_*`` the table's write port; with
    ``banks`` > 1 the table holds that many schedules and ``bank`` picks the one to run (the
    next job's schedule loads into another bank meanwhile). A
    ``ResetInserter`` around the unit empties it between jobs.

    Table timing: while ``run`` is low the unit keeps reading step 0 of ``bank``, and it takes
    that read in the first clock of ``run``; so ``bank`` must be set one clock before ``run``
    rises, and the table (step 0 at least) written two clocks before (a read in the clock of a
    write to its word returns the old word); ``steps`` must be valid with ``run``.
    """

    def __init__(self, depth: int, banks: int = 1):
        self.depth = depth
        self.banks = banks
        super().__init__(unit_members(depth, banks))

    def elaborate(self, platform):
        m = Module()
        tbl = StepTable(m, self)
        en, push, out_data = output_skid(m, self.o)

        gather = self.mode == GATHER
        primed = Signal()           # the registers hold the current step, the RAMs the next
        entry = tbl.entry

        can_step = self.run & primed & en
        fire = Signal()
        m.d.comb += fire.eq(can_step & (~entry.adv | self.i.valid))
        m.d.comb += self.i.ready.eq(can_step & entry.adv)

        # Read-ahead: `rd_step` is the step whose read is issued at the next firing; its
        # address is kept alongside, so no adder sits in front of the table's address.
        def base(s):
            return Mux(self.bank, self.depth + s, s) if self.banks > 1 else s

        # These registers are not reset: they are set every clock while not ``primed`` (so
        # after any reset).
        rd_step = Signal(range(self.depth), reset_less=True)
        rd_addr = Signal(range(self.depth * self.banks), reset_less=True)
        # The schedule's length as local registers, taken before the job runs (``steps`` is
        # valid with ``run``, and ``primed`` follows ``run`` by a clock): the header register
        # sits elsewhere on the chip, and the subtract and compare behind a cross-die route
        # were the board build's critical path. ``last`` (rd_step is the schedule's last
        # step) is kept with rd_step, as vresample keeps ``row_end`` with x: a compare in front
        # of rd_step's and rd_addr's updates was this unit's longest path.
        # A one-step schedule keeps step 0 in the registers (they take no other read), so the
        # table's address in the first clock of ``run`` does not wait on a compare of ``steps``.
        steps_m2 = Signal(signed(18), reset_less=True)
        steps_is1 = Signal(reset_less=True)
        last = Signal(reset_less=True)      # rd_step == steps - 1
        one = self.steps == 1
        m.d.sync += primed.eq(self.run)
        with m.If(~primed):
            m.d.sync += [steps_m2.eq(self.steps - 2), steps_is1.eq(one),
                         last.eq(Mux(self.steps <= 2, one, self.steps == 3))]
        with m.If(primed):
            m.d.comb += [tbl.addr.eq(rd_addr), tbl.en.eq(fire), tbl.cap.eq(fire & ~steps_is1)]
            with m.If(fire):
                m.d.sync += [rd_step.eq(Mux(last, 0, rd_step + 1)),
                             rd_addr.eq(Mux(last, base(0), rd_addr + 1)),
                             last.eq(Mux(last, steps_is1, rd_step == steps_m2))]
        with m.Else():
            # Before the job runs, step 0 is read every clock; the first clock of `run` takes
            # it into the registers and reads step 1.
            m.d.comb += [tbl.addr.eq(Mux(self.run, base(1), base(0))), tbl.en.eq(1),
                         tbl.cap.eq(self.run)]
            two = self.steps <= 2
            m.d.sync += [rd_step.eq(Mux(two, 0, 2)), rd_addr.eq(Mux(two, base(0), base(2)))]

        # Window of the last three input pixels; window[2] is the newest.
        window = [Signal(Pixel, name=f"win{j}") for j in range(3)]
        shifted = [window[1], window[2], self.i.payload]
        new_window = [Mux(entry.adv, shifted[j].as_value(), window[j].as_value())
                      for j in range(3)]
        with m.If(fire & entry.adv):
            m.d.sync += [window[j].eq(shifted[j]) for j in range(3)]

        # S0: the step's weights and operands in fabric registers. Loaded at every ``en``, not
        # only at ``fire``: what they take on a clock that does not fire is never used
        # (``s0_valid`` is 0), and ``fire`` (logic) keeps fewer clock enables.
        s0_valid = Signal()
        s0 = Signal(data.StructLayout({"emit": 1, "lane": 2, "init": LANES}), reset_less=True)
        with m.If(en):
            m.d.sync += s0_valid.eq(fire)
        weights = [entry.w0, entry.w1, entry.w2]
        # Scatter: every lane weighs the newest pixel; gather: lane l weighs window[l].
        operands = [data.View(Pixel, Mux(gather, new_window[l], new_window[2]))
                    for l in range(LANES)]
        s0_w = [Signal.like(weights[l], name=f"s0_w{l}", reset_less=True) for l in range(LANES)]
        s0_px = [Signal(Pixel, name=f"s0_px{l}", reset_less=True) for l in range(LANES)]
        with m.If(en):
            m.d.sync += [s0.emit.eq(entry.emit), s0.lane.eq(entry.lane), s0.init.eq(entry.init)]
            m.d.sync += [s0_w[l].eq(weights[l]) for l in range(LANES)]
            m.d.sync += [s0_px[l].eq(operands[l]) for l in range(LANES)]

        # S1: operand registers; S2: partial products; S3: products.
        ctl = data.StructLayout({"emit": 1, "lane": 2, "init": LANES})
        s1, s2, s3 = (Signal(ctl, name=f"s{k}", reset_less=True) for k in (1, 2, 3))
        s1_valid, s2_valid, s3_valid = (Signal(name=f"s{k}_valid") for k in (1, 2, 3))
        lo = [[Signal(unsigned(W_LO + 8), name=f"lo{l}_{c}") for c in range(3)]
              for l in range(LANES)]
        hi = [[Signal(signed(17), name=f"hi{l}_{c}") for c in range(3)] for l in range(LANES)]
        prod = [[Signal(ACC, name=f"prod{l}_{c}", reset_less=True) for c in range(3)]
                for l in range(LANES)]
        with m.If(en):
            m.d.sync += [s1_valid.eq(s0_valid), s2_valid.eq(s1_valid), s3_valid.eq(s2_valid),
                         s1.eq(s0), s2.eq(s1), s3.eq(s2)]
            for l in range(LANES):
                for c in range(3):
                    m.d.sync += prod[l][c].eq(join_products(lo[l][c], hi[l][c]))
        for l in range(LANES):
            for c in range(3):
                w = s0_w[l]
                plo, phi = weight_products(m, (f"mul_lo{l}_{c}", f"mul_hi{l}_{c}"), w[:W_LO],
                                           w[W_LO:].as_signed(), s0_px[l][c], en)
                m.d.comb += [lo[l][c].eq(plo), hi[l][c].eq(phi)]

        acc = [[Signal(ACC, name=f"acc{l}_{c}") for c in range(3)] for l in range(LANES)]
        sums = [[Signal(ACC, name=f"sum{l}_{c}") for c in range(3)] for l in range(LANES)]
        for l in range(LANES):
            for c in range(3):
                base_acc = Mux(s3.init[l], BIAS, acc[l][c])
                m.d.comb += sums[l][c].eq(base_acc + prod[l][c])
        # S4: the first adds (gather: BIAS + p0 and p1 + p2; scatter: the emitted lane's sum).
        wide = signed(ACC.width + 2)
        s4_emit = Signal()
        s4_x = [Signal(wide, name=f"s4_x{c}", reset_less=True) for c in range(3)]
        s4_y = [Signal(wide, name=f"s4_y{c}", reset_less=True) for c in range(3)]
        with m.If(en):
            m.d.sync += s4_emit.eq(s3_valid & s3.emit)
            with m.If(s3_valid):
                with m.If(~gather):
                    m.d.sync += [acc[l][c].eq(sums[l][c]) for l in range(LANES) for c in range(3)]
                with m.If(s3.emit):
                    for c in range(3):
                        lane_sum = Array(sums[l][c] for l in range(LANES))[s3.lane]
                        m.d.sync += [
                            s4_x[c].eq(Mux(gather, Const(BIAS, ACC) + prod[0][c], lane_sum)),
                            s4_y[c].eq(Mux(gather, prod[1][c] + prod[2][c], 0)),
                        ]

        # S5: the last add; then clip8 into the output register (through the skid buffer).
        s5_emit = Signal()
        s5_total = [Signal(signed(wide.width + 1), name=f"s5_total{c}", reset_less=True)
                    for c in range(3)]
        with m.If(en):
            m.d.sync += s5_emit.eq(s4_emit)
            m.d.sync += [s5_total[c].eq(s4_x[c] + s4_y[c]) for c in range(3)]
        m.d.comb += push.eq(s5_emit)
        m.d.comb += [out_data[c].eq(clip8(s5_total[c])) for c in range(3)]
        return m
