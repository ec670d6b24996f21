"""Vertical resampling: rows of pixels in, resampled (and cropped) rows out.

One schedule step covers a whole row. Scatter mode (downscale) keeps ``LANES`` row accumulators
in memories as wide as the output row and read-modify-writes them as pixels stream through;
every input row costs its width in clocks whatever the ratio. Gather mode (upscale) keeps the
last three rows in the same memories (a ring) and computes output rows from them; a step that
does not consume a row re-reads the ring.

Row start: one clock per row takes the row's step from the table into registers (the table is
always read one step ahead, so its read data goes straight into those registers). `fire`,
``i.ready`` and the end-of-row and end-of-job tests come from flip-flops.

Pipeline (every stage advances with ``en``, which comes from the output skid buffer's flip-flop
rather than from the downstream ``ready``):

- tick: the step's weights, the incoming pixel, x and the ring slots → S1 (and a copy of the
  multiplier operands per product); the lane memories are read at S1's x;
- S1 → S2: partial products of weight x pixel (one MULT18X18D each); whether S2's row is still
  being written by the items ahead (forwarding flags);
- S2 → S3: the products; the lane rows straight from the memories, and beside them the row
  forwarded from the item writing now or the one that wrote at the read's own clock edge;
- S3: picks the memory's or the forwarded row; scatter adds the products to the lane rows and
  writes them back at x; gather writes the incoming row into its ring slot. S3 → S4: scatter:
  the emitted lane's sum; gather: the three taps selected by ring slot;
- S4 → S5: scatter: clip8; gather: partial products of the taps;
- S5 → S6: gather: the products;
- S6 → S7: gather: ``BIAS + p0`` and ``p1 + p2``;
- S7 → S8: gather: the last add;
- S8 → output: gather: clip8; into the output register (or the skid register while the output
  waits).
"""
from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In

from ..resample import GATHER, LANES
from .layouts import Pixel
from .dsp import registered_product
from .resample_common import (ACC, BIAS, W_LO, StepTable, clip8, join_products, output_skid,
                              partial_products, unit_members)

LaneRow = data.ArrayLayout(ACC, 3)


class VResample(wiring.Component):
    """Parameters: ``depth`` (table steps), ``width_limit`` (widest row the memories hold).

    Ports as :class:`HResample`, plus ``width``: this job's row width (the tensor width).

    Table timing: the unit reads step 0 of ``bank`` in the first clock of ``run`` and takes it
    in the next; ``bank`` must be set one clock before ``run`` rises, and ``steps`` and
    ``width`` be valid with ``run``.
    """

    def __init__(self, depth: int, width_limit: int, banks: int = 1):
        self.depth = depth
        self.width_limit = width_limit
        self.banks = banks
        super().__init__({**unit_members(depth, banks), "width": In(16)})

    def elaborate(self, platform):
        m = Module()
        tbl = StepTable(m, self)
        en, push, out_data = output_skid(m, self.o)

        gather = self.mode == GATHER
        step = Signal(range(self.depth + 1))
        x = Signal(range(self.width_limit))
        row_end = Signal()          # x is the row's last pixel
        done = Signal()             # every step has run
        ring = Signal(range(3))     # ring slot the next consumed row is written to
        primed = Signal()
        loaded = Signal()           # the registers hold the row's step
        entry = tbl.entry
        # The table address of the step after the current one: the row-start clock takes the
        # step read at the row's last clock.
        raddr = Signal(range(self.depth * self.banks + 1))
        base0 = Mux(self.bank, self.depth, 0) if self.banks > 1 else 0

        can_tick = self.run & primed & loaded & en & ~done
        fire = Signal()
        m.d.comb += fire.eq(can_tick & (~entry.adv | self.i.valid))
        m.d.comb += self.i.ready.eq(can_tick & entry.adv)
        m.d.comb += [tbl.addr.eq(raddr), tbl.en.eq(1)]
        m.d.sync += primed.eq(self.run)
        # The job's width and step count, compared with x and step below, as local registers
        # taken before the job runs: the header registers sit elsewhere on the chip, and a
        # compare against them was a cross-die route plus a carry chain.
        width_is1 = Signal()
        width_m2 = Signal(signed(18))
        steps_m1 = Signal(signed(18))
        with m.If(~primed):
            m.d.sync += [raddr.eq(base0), done.eq(self.steps == 0),
                         row_end.eq(self.width == 1), width_is1.eq(self.width == 1),
                         width_m2.eq(self.width - 2), steps_m1.eq(self.steps - 1)]
        with m.Elif(self.run & ~loaded & ~done):
            m.d.comb += tbl.cap.eq(1)
            m.d.sync += [loaded.eq(1), raddr.eq(raddr + 1)]
        with m.If(fire):
            m.d.sync += [x.eq(Mux(row_end, 0, x + 1)),
                         row_end.eq(Mux(row_end, width_is1, x == width_m2))]
            with m.If(row_end):
                m.d.sync += [loaded.eq(0), step.eq(step + 1), done.eq(step == steps_m1)]
                with m.If(entry.adv):
                    m.d.sync += ring.eq(Mux(ring == 2, 0, ring + 1))

        weights = [entry.w0, entry.w1, entry.w2]
        w_shape = weights[0].shape()
        lanes = []
        for l in range(LANES):
            mem = memory.Memory(shape=LaneRow, depth=self.width_limit, init=[])
            m.submodules[f"lane{l}"] = mem
            lanes.append((mem.read_port(), mem.write_port()))

        # Tick → S1.
        stage = data.StructLayout({
            "valid": 1, "x": unsigned(len(x)), "emit": 1, "lane": 2, "init": LANES, "adv": 1,
            "w": data.ArrayLayout(w_shape, 3), "pix": Pixel,
            "slot": data.ArrayLayout(2, 3),   # gather: ring slot of window[j]
            "wmask": LANES,                    # lanes this item writes at S3
        })
        s1 = Signal(stage)
        s2 = Signal(stage)
        s3 = Signal(stage)
        # Gather window after this step: rows (n-3+j) for n rows consumed, so slot (n+j) mod 3.
        n_mod = Mux(entry.adv, Mux(ring == 2, 0, ring + 1), ring)
        # The scatter products' operands go into each multiplier's own operand registers at
        # ``fire`` (inside the MULT18X18Ds on the ECP5, hdl/rtl/dsp.py): one shared register
        # feeding six multipliers spread over the die costs 3 ns and more of routing.
        with m.If(en):
            m.d.sync += s1.valid.eq(fire)
        with m.If(fire):
            m.d.sync += [s1.x.eq(x), s1.emit.eq(entry.emit), s1.lane.eq(entry.lane),
                         s1.init.eq(entry.init), s1.adv.eq(entry.adv), s1.pix.eq(self.i.payload)]
            m.d.sync += [s1.w[j].eq(weights[j]) for j in range(3)]
            for j in range(3):
                m.d.sync += s1.slot[j].eq(Mux(n_mod + j >= 3, n_mod + j - 3, n_mod + j))
            # Scatter writes every lane; gather writes the incoming row into slot `ring`.
            m.d.sync += s1.wmask.eq(Mux(gather, Mux(entry.adv, 1 << ring, 0), (1 << LANES) - 1))

        def writes(s):
            return Mux(s.valid, s.wmask, 0)

        # S1 → S2 → S3; the lane memories are read at S1's x, so their output belongs to S2.
        lo = [[Signal(unsigned(W_LO + 8), name=f"lo{l}_{c}") for c in range(3)]
              for l in range(LANES)]
        hi = [[Signal(signed(17), name=f"hi{l}_{c}") for c in range(3)] for l in range(LANES)]
        prod = [[Signal(ACC, name=f"prod{l}_{c}") for c in range(3)] for l in range(LANES)]
        # S2's row is being written by the item in S3 (`fwd_now`), or was written by the item
        # ahead of it at the very clock edge that read it (either: `fwd`); items further ahead
        # wrote before the read. S3 takes the memory's data and the forwarded row into separate
        # registers, so that the block RAM's output goes straight into a flip-flop.
        fwd_now = Signal(LANES)
        fwd = Signal(LANES)
        use_fwd = Signal(LANES)
        mem_q = [Signal(LaneRow, name=f"mem_q{l}") for l in range(LANES)]
        fwd_q = [Signal(LaneRow, name=f"fwd_q{l}") for l in range(LANES)]
        rows = [Signal(LaneRow, name=f"row{l}") for l in range(LANES)]
        last_w = [Signal(LaneRow, name=f"last_w{l}") for l in range(LANES)]
        sums = [[Signal(ACC, name=f"sum{l}_{c}") for c in range(3)] for l in range(LANES)]
        wdata = [Signal(LaneRow, name=f"wdata{l}") for l in range(LANES)]
        for l, (rp, wp) in enumerate(lanes):
            m.d.comb += [rp.addr.eq(s1.x), rp.en.eq(en)]
            m.d.comb += rows[l].eq(Mux(use_fwd[l], fwd_q[l], mem_q[l]))
            for c in range(3):
                base_acc = Mux(s3.init[l], BIAS, rows[l][c])
                m.d.comb += sums[l][c].eq(base_acc + prod[l][c])
                m.d.comb += wdata[l][c].eq(Mux(gather, s3.pix[c].as_unsigned(), sums[l][c]))
            m.d.comb += [wp.addr.eq(s3.x), wp.data.eq(wdata[l]), wp.en.eq(en & writes(s3)[l])]
        with m.If(en):
            m.d.sync += [s2.eq(s1), s3.eq(s2)]
            same_now = s1.x == s2.x
            same_last = s1.x == s3.x
            m.d.sync += [fwd_now.eq(Mux(same_now, writes(s2), 0)),
                         fwd.eq(Mux(same_now, writes(s2), 0) | Mux(same_last, writes(s3), 0)),
                         use_fwd.eq(fwd)]
            for l in range(LANES):
                m.d.sync += [last_w[l].eq(wdata[l]), mem_q[l].eq(lanes[l][0].data),
                             fwd_q[l].eq(Mux(fwd_now[l], wdata[l], last_w[l]))]
                for c in range(3):
                    m.d.sync += prod[l][c].eq(join_products(lo[l][c], hi[l][c]))
        for l in range(LANES):
            for c in range(3):
                w, px = weights[l], self.i.payload[c]
                for part, a, dst in (("lo", w[:W_LO], lo), ("hi", w[W_LO:].as_signed(), hi)):
                    m.d.comb += dst[l][c].eq(registered_product(
                        m, f"mul_{part}{l}_{c}", a, px, dst[l][c].shape(),
                        a_en=fire, b_en=fire, p_en=en))

        # S3 → S4: scatter: the emitted lane's sum; gather: the taps.
        s4 = Signal(data.StructLayout({"emit": 1}))
        s4_sc = [Signal(ACC, name=f"s4_sc{c}") for c in range(3)]
        s4_tap = [[Signal(8, name=f"s4_tap{j}_{c}") for c in range(3)] for j in range(3)]
        s4_w = Signal(data.ArrayLayout(data.ArrayLayout(w_shape, 3), 3),   # as ops.w
                      init=[[3 * j + c + 1 for c in range(3)] for j in range(3)])
        with m.If(en):
            m.d.sync += [s4.emit.eq(s3.valid & s3.emit)]
            m.d.sync += [s4_w[j][c].eq(s3.w[j]) for j in range(3) for c in range(3)]
            for c in range(3):
                m.d.sync += s4_sc[c].eq(Array(sums[l][c] for l in range(LANES))[s3.lane])
                rows_by_slot = Array(rows[l][c][:8] for l in range(LANES))
                for j in range(3):
                    tap = rows_by_slot[s3.slot[j]]
                    if j == 2:
                        tap = Mux(s3.adv, s3.pix[c], tap)
                    m.d.sync += s4_tap[j][c].eq(tap)

        # S4 → S5 → S6 → S7.
        emit = [Signal(name=f"s{k}_emit") for k in (5, 6, 7)]
        sc = [Signal(Pixel, name=f"s{k}_sc") for k in (5, 6, 7)]
        glo = [[Signal(unsigned(W_LO + 8), name=f"glo{j}_{c}") for c in range(3)]
               for j in range(3)]
        ghi = [[Signal(signed(17), name=f"ghi{j}_{c}") for c in range(3)] for j in range(3)]
        gprod = [[Signal(ACC, name=f"gprod{j}_{c}") for c in range(3)] for j in range(3)]
        wide = signed(ACC.width + 2)
        gx = [Signal(wide, name=f"gx{c}") for c in range(3)]
        gy = [Signal(wide, name=f"gy{c}") for c in range(3)]
        with m.If(en):
            m.d.sync += [emit[0].eq(s4.emit), emit[1].eq(emit[0]), emit[2].eq(emit[1]),
                         sc[1].eq(sc[0]), sc[2].eq(sc[1])]
            for c in range(3):
                m.d.sync += sc[0][c].eq(clip8(s4_sc[c]))
                for j in range(3):
                    p_lo, p_hi = partial_products(s4_w[j][c], s4_tap[j][c])
                    m.d.sync += [glo[j][c].eq(p_lo), ghi[j][c].eq(p_hi),
                                 gprod[j][c].eq(join_products(glo[j][c], ghi[j][c]))]
                m.d.sync += [gx[c].eq(Const(BIAS, ACC) + gprod[0][c]),
                             gy[c].eq(gprod[1][c] + gprod[2][c])]

        # S8: gather's last add; then clip8 into the output register (through the skid buffer).
        s8_emit = Signal()
        s8_sc = Signal(Pixel)
        s8_total = [Signal(signed(wide.width + 1), name=f"s8_total{c}") for c in range(3)]
        with m.If(en):
            m.d.sync += [s8_emit.eq(emit[2]), s8_sc.eq(sc[2])]
            m.d.sync += [s8_total[c].eq(gx[c] + gy[c]) for c in range(3)]
        m.d.comb += push.eq(s8_emit)
        m.d.comb += [out_data[c].eq(Mux(gather, clip8(s8_total[c]), s8_sc[c])) for c in range(3)]
        return m
