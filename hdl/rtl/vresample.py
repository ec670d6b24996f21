"""Vertical resampling: rows of pixels in, resampled (and cropped) rows out.

One schedule step covers a whole row. Scatter mode (downscale) keeps ``LANES`` row accumulators
in memories as wide as the output row and read-modify-writes them as pixels stream through;
every input row costs its width in clocks whatever the ratio. Gather mode (upscale) keeps the
last three rows in the same memories (a ring) and computes output rows from them; a step that
does not consume a row re-reads the ring.

Row start: one clock per row takes the row's step from the table into registers (the table is
always read one step ahead, so its read data goes straight into those registers). `fire`,
``i.ready`` and the end-of-row and end-of-job tests come from flip-flops.

Pipeline (every stage advances with ``en``, which is the output skid buffer's flip-flop rather
than the downstream ``ready``):

- tick: the step's weights, the incoming pixel, x and the ring slots → S0 (with each lane's
  multiplier operands as picked);
- S0 → S1: S0 → the multipliers' operand registers (inside the MULT18X18Ds on the ECP5); the
  lane memories are read at S1's x;
- S1 → S2: partial products of weight x pixel (one MULT18X18D each); whether S2's row is still
  being written by the items ahead (forwarding flags);
- S2 → S3: the products; the lane rows straight from the memories, and beside them the row
  forwarded from the newest of the three items whose writes the read missed (the one writing
  a clock later, the one at S3's output and the one whose write was waiting) or, for a scatter
  lane that the item restarts, the rounding bias;
- S3: picks the memory's or the forwarded row; scatter adds the products to the lane rows,
  gather takes the incoming row for its ring slot; the sums go into registers and from there
  back into the lane memories at x a clock later. S3 → S4: scatter: the emitted lane (its sum
  is the lane's written-back row, registered for the write and for forwarding); gather: the
  three taps selected by ring slot (fabric registers);
- S4 → S5: scatter: the emitted lane's sum, clip8; gather: the taps and weights into the
  multipliers' operand registers (inside the MULT18X18Ds on the ECP5);
- S5 → S6: gather: partial products of the taps;
- S6 → S7: gather: the products;
- S7 → S8: gather: ``BIAS + p0`` and ``p1 + p2``;
- S8 → S9: gather: the last add;
- S9 → output: gather: clip8; into the output register (or the skid register while the output
  waits).

Only the valid flags and the per-job control are reset: the data registers are loaded before
anything uses them, and the job-start registers (x, step, table address, the width compares)
are set every clock until the unit is ``primed``, so after any reset.
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In

from ..resample import GATHER, LANES
from .layouts import Pixel
from .resample_common import (ACC, BIAS, W_LO, StepTable, clip8, join_products, output_skid,
                              unit_members, weight_products)

#: A lane memory's word: three ACC sums. A flat value rather than an ArrayLayout: Yosys (0.70,
#: in ABC9's reintegration) confuses a wire's bit ``x[1]`` with an array field named ``x[1]``,
#: and vresample's rows hit that assertion.
LaneRow = unsigned(3 * ACC.width)


def _ch(row, c):
    """Channel ``c``'s sum in a LaneRow value."""
    return row[c * ACC.width:(c + 1) * ACC.width]


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

        # The job's mode as a local register, taken before the job runs like the compares
        # below: it selects the adders' operands in the read-modify-write loop.
        gather = Signal(reset_less=True)
        step = Signal(range(self.depth + 1), reset_less=True)
        x = Signal(range(self.width_limit), reset_less=True)
        row_end = Signal(reset_less=True)   # x is the row's last pixel
        done = Signal()             # every step has run
        ring = Signal(range(3))     # ring slot the next consumed row is written to
        primed = Signal()
        loaded = Signal()           # the registers hold the row's step
        entry = tbl.entry
        # The table address of the step after the current one: the row-start clock takes the
        # step read at the row's last clock.
        raddr = Signal(range(self.depth * self.banks + 1), reset_less=True)
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
        width_is1 = Signal(reset_less=True)
        width_m2 = Signal(signed(18), reset_less=True)
        steps_m1 = Signal(signed(18), reset_less=True)
        with m.If(~primed):
            m.d.sync += [raddr.eq(base0), done.eq(self.steps == 0), x.eq(0), step.eq(0),
                         gather.eq(self.mode == GATHER),
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
            # no_rw_check: a read that meets a write to its word in the same clock is replaced
            # by the forwarded row (`fwd` below), so the memory's data then does not matter;
            # without it Yosys adds collision logic between the block RAMs and `mem_q`. (An
            # asynchronous port and a register, `mem_rd`, that Yosys merges into the block RAM's
            # synchronous port: it honours no_rw_check only for a port it builds itself.)
            mem = memory.Memory(shape=LaneRow, depth=self.width_limit, init=[],
                                attrs={"no_rw_check": 1})
            m.submodules[f"lane{l}"] = mem
            lanes.append((mem.read_port(domain="comb"), mem.write_port()))

        # Tick → S0.
        stage = data.StructLayout({
            "x": unsigned(len(x)), "emit": 1, "lane": 2, "adv": 1,
            "init": LANES,                     # scatter lanes this item restarts (0 in gather)
            "w": data.ArrayLayout(w_shape, 3), "pix": Pixel,
            "slot": data.ArrayLayout(2, 3),   # gather: ring slot of window[j]
            "wmask": LANES,                    # lanes this item writes at S3
        })
        s0, s1, s2, s3 = (Signal(stage, name=f"s{k}", reset_less=True) for k in (0, 1, 2, 3))
        s0_valid, s1_valid, s2_valid, s3_valid = (Signal(name=f"s{k}_valid") for k in range(4))
        # Gather window after this step: rows (n-3+j) for n rows consumed, so slot (n+j) mod 3.
        n_mod = Mux(entry.adv, Mux(ring == 2, 0, ring + 1), ring)
        # The scatter products' operands go into each multiplier's own operand registers (inside
        # the MULT18X18Ds on the ECP5, hdl/rtl/dsp.py) from S0's flip-flops: the weights are
        # picked (table memory, gather's weight 1) by a LUT behind the step table's registers,
        # and that LUT plus the route to the DSP columns missed 10 ns, so S0 registers each
        # lane's operands as picked and the fabric places them between the two. S0, S1 and
        # those operand registers load at every ``en``, not only at ``fire``: what they take on
        # a clock that does not fire is never used (``s0_valid`` is 0), and the multipliers'
        # clock enables are then a flip-flop rather than the logic of ``fire``.
        op_lo = [Signal(unsigned(W_LO), name=f"op_lo{l}", reset_less=True) for l in range(LANES)]
        op_hi = [Signal(signed(w_shape.width - W_LO), name=f"op_hi{l}", reset_less=True)
                 for l in range(LANES)]
        with m.If(en):
            m.d.sync += s0_valid.eq(fire)
            m.d.sync += [s0.x.eq(x), s0.emit.eq(entry.emit), s0.lane.eq(entry.lane),
                         s0.init.eq(Mux(gather, 0, entry.init)), s0.adv.eq(entry.adv),
                         s0.pix.eq(self.i.payload)]
            m.d.sync += [s0.w[j].eq(weights[j]) for j in range(3)]
            for j in range(3):
                m.d.sync += s0.slot[j].eq(Mux(n_mod + j >= 3, n_mod + j - 3, n_mod + j))
            # Scatter writes every lane; gather writes the incoming row into slot `ring`.
            m.d.sync += s0.wmask.eq(Mux(gather, Mux(entry.adv, 1 << ring, 0), (1 << LANES) - 1))
            for l in range(LANES):
                # gather: weight 1, so that the product is the pixel (see `base`)
                m.d.sync += [op_lo[l].eq(Mux(gather, 1, weights[l][:W_LO])),
                             op_hi[l].eq(Mux(gather, 0, weights[l][W_LO:].as_signed()))]

        def writes(s, valid):
            return Mux(valid, s.wmask, 0)

        # S0 → S1 → S2 → S3; the lane memories are read at S1's x, so their output belongs to S2.
        lo = [[Signal(unsigned(W_LO + 8), name=f"lo{l}_{c}") for c in range(3)]
              for l in range(LANES)]
        hi = [[Signal(signed(17), name=f"hi{l}_{c}") for c in range(3)] for l in range(LANES)]
        prod = [[Signal(ACC, name=f"prod{l}_{c}", reset_less=True) for c in range(3)]
                for l in range(LANES)]
        # S2's row is being written by the item in S3 (`fwd_now`), or was written by the item
        # ahead of it at the very clock edge that read it (either: `fwd`); items further ahead
        # wrote before the read. S3 takes the memory's data and the forwarded row into separate
        # registers, so that the block RAM's output goes straight into a flip-flop.
        #
        # The read-modify-write loop (S3's row, the add, the write-back and the forwarded row)
        # has one LUT level besides the adder: a scatter lane that S2's item restarts (`init`)
        # takes the rounding bias as a forwarded row, and in gather the adder itself writes the
        # incoming row (the row operand is masked to 0 and the multipliers weigh the pixel by
        # 1), so neither is a mux of its own before or after the adder.
        #
        # The pick between the memory's and the forwarded row drives three adders of ACC bits
        # per lane, whose sums go to the lane memories and into the forwarded row: one select
        # flip-flop per lane fanned out to all of them was the loop's worst route. So each
        # channel's adder has a select of its own (`use_fwd_ch`) and the gather taps another
        # (`use_fwd`). Yosys merges flip-flops with the same input, so the copies are made
        # different where their value does not matter: in gather the adders' row operand is 0
        # whatever the select, and in scatter the taps are not used.
        fwd_now = Signal(LANES)
        fwd_last = Signal(LANES)    # S2's row was last written by the item now at S3's output
        fwd = Signal(LANES)
        use_fwd = Signal(LANES)
        use_fwd_ch = [[Signal(name=f"use_fwd{l}_ch{c}") for c in range(3)] for l in range(LANES)]
        mem_q = [Signal(LaneRow, name=f"mem_q{l}", reset_less=True) for l in range(LANES)]
        fwd_q = [Signal(LaneRow, name=f"fwd_q{l}", reset_less=True) for l in range(LANES)]
        rows = [Signal(LaneRow, name=f"row{l}") for l in range(LANES)]
        base = [Signal(LaneRow, name=f"base{l}") for l in range(LANES)]     # the adders' rows
        last_w = [Signal(LaneRow, name=f"last_w{l}", reset_less=True) for l in range(LANES)]
        # The write-back leaves from registers a clock after S3 (``last_w`` with ``w_x`` and
        # ``w_mask``): the adders' sums went straight to the block RAMs' data inputs, and that
        # route across the die missed 10 ns. The item whose write waits there is one more that
        # a read may miss, so its row (``last_w2`` by the time the reader is at S2) is
        # forwarded too.
        w_x = Signal(len(s3.x), reset_less=True)
        w_mask = Signal(LANES)
        last_w2 = [Signal(LaneRow, name=f"last_w2_{l}", reset_less=True) for l in range(LANES)]
        bias_row = Cat(*(Const(BIAS, ACC) for _ in range(3)))
        sums = [[Signal(ACC, name=f"sum{l}_{c}") for c in range(3)] for l in range(LANES)]
        wdata = [Signal(LaneRow, name=f"wdata{l}") for l in range(LANES)]
        mem_rd = [Signal(LaneRow, name=f"mem_rd{l}", reset_less=True) for l in range(LANES)]
        for l, (rp, wp) in enumerate(lanes):
            m.d.comb += rp.addr.eq(s1.x)
            with m.If(en):
                m.d.sync += mem_rd[l].eq(rp.data)
            m.d.comb += rows[l].eq(Mux(use_fwd[l], fwd_q[l], mem_q[l]))
            for c in range(3):
                m.d.comb += _ch(base[l], c).eq(
                    Mux(gather, 0, Mux(use_fwd_ch[l][c], _ch(fwd_q[l], c), _ch(mem_q[l], c))))
                # gather: 0 + pixel, the incoming row
                m.d.comb += sums[l][c].eq(_ch(base[l], c).as_signed() + prod[l][c])
                m.d.comb += _ch(wdata[l], c).eq(sums[l][c])
            m.d.comb += [wp.addr.eq(w_x), wp.data.eq(last_w[l]), wp.en.eq(en & w_mask[l])]
        with m.If(en):
            m.d.sync += [s1.eq(s0), s2.eq(s1), s3.eq(s2),
                         s1_valid.eq(s0_valid), s2_valid.eq(s1_valid), s3_valid.eq(s2_valid),
                         w_x.eq(s3.x), w_mask.eq(writes(s3, s3_valid))]
            # the items that write after S1's read: S2's, S3's and the waiting write's
            same_now = Mux(s1.x == s2.x, writes(s2, s2_valid), 0)
            same_last = Mux(s1.x == s3.x, writes(s3, s3_valid), 0)
            same_w = Mux(s1.x == w_x, w_mask, 0)
            m.d.sync += [fwd_now.eq(same_now), fwd_last.eq(same_last),
                         fwd.eq(same_now | same_last | same_w),
                         use_fwd.eq(fwd | s2.init)]
            for l in range(LANES):
                u = fwd[l] | s2.init[l]
                m.d.sync += [use_fwd_ch[l][0].eq(u | gather), use_fwd_ch[l][1].eq(u & ~gather),
                             use_fwd_ch[l][2].eq(u ^ gather)]
                m.d.sync += [last_w[l].eq(wdata[l]), last_w2[l].eq(last_w[l]),
                             mem_q[l].eq(mem_rd[l]),
                             fwd_q[l].eq(Mux(s2.init[l], bias_row, Mux(
                                 fwd_now[l], wdata[l], Mux(fwd_last[l], last_w[l], last_w2[l]))))]
                for c in range(3):
                    m.d.sync += prod[l][c].eq(join_products(lo[l][c], hi[l][c]))
        for l in range(LANES):
            for c in range(3):
                plo, phi = weight_products(m, (f"mul_lo{l}_{c}", f"mul_hi{l}_{c}"), op_lo[l],
                                           op_hi[l], s0.pix[c], en)
                m.d.comb += [lo[l][c].eq(plo), hi[l][c].eq(phi)]

        # S3 → S4: scatter: the emitted lane (its sum is in `last_w`, registered there for the
        # forwarded row anyway, so no lane mux sits behind the adders); gather: the taps and
        # their weights.
        s4_emit = Signal()
        s4_lane = Signal(2, reset_less=True)
        s4_tap = [[Signal(8, name=f"s4_tap{j}_{c}", reset_less=True) for c in range(3)]
                  for j in range(3)]
        s4_w = [Signal(w_shape, name=f"s4_w{j}", reset_less=True) for j in range(3)]
        with m.If(en):
            m.d.sync += [s4_emit.eq(s3_valid & s3.emit), s4_lane.eq(s3.lane)]
            m.d.sync += [s4_w[j].eq(s3.w[j]) for j in range(3)]
            for c in range(3):
                rows_by_slot = Array(_ch(rows[l], c)[:8] for l in range(LANES))
                for j in range(3):
                    tap = rows_by_slot[s3.slot[j]]
                    if j == 2:
                        tap = Mux(s3.adv, s3.pix[c], tap)
                    m.d.sync += s4_tap[j][c].eq(tap)

        # S4 → S5: the gather products' operand registers (inside the MULT18X18Ds on the ECP5,
        # straight from S4's flip-flops: the taps are picked by logic, and the multipliers sit
        # in DSP columns far away); S5 → S6: the partial products; S6 → S7: the products;
        # S7 → S8: the first adds; S8 → S9: the last add. Scatter's clipped sum follows along.
        emit = [Signal(name=f"s{k}_emit") for k in (5, 6, 7, 8, 9)]
        sc = [Signal(Pixel, name=f"s{k}_sc", reset_less=True) for k in (5, 6, 7, 8, 9)]
        glo = [[Signal(unsigned(W_LO + 8), name=f"glo{j}_{c}") for c in range(3)]
               for j in range(3)]
        ghi = [[Signal(signed(17), name=f"ghi{j}_{c}") for c in range(3)] for j in range(3)]
        gprod = [[Signal(ACC, name=f"gprod{j}_{c}", reset_less=True) for c in range(3)]
                 for j in range(3)]
        wide = signed(ACC.width + 2)
        gx = [Signal(wide, name=f"gx{c}", reset_less=True) for c in range(3)]
        gy = [Signal(wide, name=f"gy{c}", reset_less=True) for c in range(3)]
        total = [Signal(signed(wide.width + 1), name=f"s9_total{c}", reset_less=True)
                 for c in range(3)]
        for j in range(3):
            for c in range(3):
                w = s4_w[j]
                plo, phi = weight_products(m, (f"gmul_lo{j}_{c}", f"gmul_hi{j}_{c}"), w[:W_LO],
                                           w[W_LO:].as_signed(), s4_tap[j][c], en)
                m.d.comb += [glo[j][c].eq(plo), ghi[j][c].eq(phi)]
        with m.If(en):
            m.d.sync += [emit[0].eq(s4_emit)] + [emit[k + 1].eq(emit[k]) for k in range(4)]
            m.d.sync += [sc[k + 1].eq(sc[k]) for k in range(4)]
            for c in range(3):
                m.d.sync += sc[0][c].eq(clip8(Array(_ch(last_w[l], c)
                                                    for l in range(LANES))[s4_lane]))
                m.d.sync += [gprod[j][c].eq(join_products(glo[j][c], ghi[j][c]))
                             for j in range(3)]
                m.d.sync += [gx[c].eq(Const(BIAS, ACC) + gprod[0][c]),
                             gy[c].eq(gprod[1][c] + gprod[2][c]),
                             total[c].eq(gx[c] + gy[c])]

        # Gather: clip8; into the output register (through the skid buffer).
        m.d.comb += push.eq(emit[4])
        m.d.comb += [out_data[c].eq(Mux(gather, clip8(total[c]), sc[4][c])) for c in range(3)]
        return m
