"""The entropy decoder: unstuffed scan bytes in, quantized coefficients out, block by block.

* Bit buffer: 64 bits, MSB = next bit, refilled one byte per clock from the parser (``bi``);
  after the scan's last segment it reads zero bytes (``zfill``), as the golden model's window
  does past the end of its data. ``pos`` counts bits consumed since the scan's start.
* Boundary FIFO (8 entries): the end of each restart segment (byte position, RSTn or other
  marker / end of file). A symbol consumed past the current segment's end is an overrun
  (TRUNCATED, or BAD_RESTART when an RSTn ended the segment): once past the end, nothing the
  golden model can still find changes that verdict, so it is reported at once. Lookahead bits
  past the end come from the following segments, exactly as in the golden model.
* Huffman: canonical code tables as ``lim``/``base`` registers per code length (written by the
  parser at DHT time) and a symbol RAM (8 loadable tables + the 4 Annex K default tables in
  ROM). Two clocks per symbol: lookahead compare -> symbol RAM read; symbol -> magnitude bits,
  consume, coefficient out.
* MCU order, DC predictors, restart intervals (leftover bits, RSTn sequence) as
  :func:`hdl.jpeg.huffman.entropy_decode` checks them, with the same status codes.

Coefficient beats go to :class:`~.idct.BlockIdct`: ``cw_*`` (zigzag index, value, q table),
then ``be_*`` at the end of each block with where the block goes.
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..markers import STD_HUFFMAN
from .consts import N_PHYS_TABLES, STD_PHYS, S, canonical
from .parser import Boundary

__all__ = ["EntropyDecoder"]

FIFO_DEPTH = 8
NEED_BITS = 27          # longest code (16) + largest magnitude (11)


def _sym_init() -> list[int]:
    init = [0] * (16 * 256)
    for (tc, th), spec in STD_HUFFMAN.items():
        base = STD_PHYS[(tc, th)] * 256
        for i, s in enumerate(spec.symbols):
            init[base + i] = s
    return init


def _shl64(x, amount):
    """``(x << amount)`` truncated to 64 bits, as a log shifter of fixed-width stages (a plain
    ``<<`` is 64 + 2**len(amount) - 1 bits wide, which a simulator computes in wide words)."""
    v = x if len(x) == 64 else Cat(x, Const(0, 64 - len(x)))
    for i in range(len(amount)):
        v = Mux(amount[i], v.shift_left(1 << i)[:64] if (1 << i) < 64 else Const(0, 64), v)
    return v


class EntropyDecoder(wiring.Component):
    def __init__(self):
        super().__init__({
            "bi": In(stream.Signature(unsigned(8))),
            "bnd": In(stream.Signature(Boundary)),
            "zfill": In(1),
            "s_we": In(1), "s_addr": In(11), "s_data": In(8),
            "l_we": In(1), "l_tbl": In(3), "l_len": In(4), "l_lim": In(17),
            "l_base": In(signed(20)),
            # configuration (stable while the scan runs)
            "start": In(1),
            "width": In(16), "height": In(16), "three": In(1), "h2": In(1), "v2": In(1),
            "ns": In(2), "s_fidx": In(data.ArrayLayout(2, 3)),
            "s_dc": In(data.ArrayLayout(4, 3)), "s_ac": In(data.ArrayLayout(4, 3)),
            "tq": In(data.ArrayLayout(2, 3)), "ri": In(16),
            "out_rows": In(16),         # MCU rows the raster stage has finished reading
            # to the block buffer
            "can_claim": In(1), "claim": Out(1),
            "cw_valid": Out(1), "cw_k": Out(6), "cw_val": Out(signed(12)), "cw_tq": Out(2),
            "be_valid": Out(1), "be_comp": Out(2), "be_bcol": Out(13), "be_brow": Out(13),
            "be_row_end": Out(1),
            # result
            "done": Out(1), "err": Out(8),
        })

    def elaborate(self, platform):
        m = Module()

        # ---- Huffman tables -----------------------------------------------------------------
        m.submodules.syms = syms = memory.Memory(shape=8, depth=16 * 256, init=_sym_init())
        sw = syms.write_port()
        sr = syms.read_port(transparent_for=())
        m.d.comb += [sw.addr.eq(self.s_addr), sw.data.eq(self.s_data), sw.en.eq(self.s_we)]

        # lim/base per code length: one small RAM per length, addressed by the physical table
        # (0-7 loadable, 8-11 the Annex K tables as initial contents, 12-15 unused), so the
        # lookup reads the 16 (lim, base) pairs of the current table in parallel.
        std = {}
        for (tc, th), spec in STD_HUFFMAN.items():
            std[STD_PHYS[(tc, th)]] = canonical(spec.counts)
        lb_ports = []
        for L in range(16):
            init = []
            for t in range(16):
                lim_l, base_l = std.get(min(t, N_PHYS_TABLES - 1), ([0] * 16, [0] * 16)) \
                    if t >= 8 else ([0] * 16, [0] * 16)
                init.append(lim_l[L] | ((base_l[L] & ((1 << 20) - 1)) << 17))
            mem = memory.Memory(shape=37, depth=16, init=init)
            m.submodules[f"lb{L}"] = mem
            w = mem.write_port()
            m.d.comb += [w.addr.eq(self.l_tbl), w.data.eq(Cat(self.l_lim, self.l_base)),
                         w.en.eq(self.l_we & (self.l_len == L))]
            lb_ports.append(mem.read_port(domain="comb"))

        # ---- bit buffer and boundary FIFO ---------------------------------------------------
        buf = Signal(64)
        nbits = Signal(7)
        pos = Signal(35)
        consume = Signal(6)
        m.submodules.bfifo = bfifo = memory.Memory(shape=Boundary.size, depth=FIFO_DEPTH,
                                                   init=[])
        fifo_w = bfifo.write_port()
        fifo_r = bfifo.read_port(domain="comb")
        wp = Signal(3)
        rp = Signal(3)
        count = Signal(4)
        pop = Signal()
        head_raw = Signal(Boundary.size)
        m.d.comb += [fifo_r.addr.eq(rp), head_raw.eq(fifo_r.data)]
        head = data.View(Boundary, head_raw)
        head_end = Signal(35)
        m.d.comb += head_end.eq(Cat(Const(0, 3), head.pos))
        have_end = count != 0

        push = self.bnd.valid & self.bnd.ready
        m.d.comb += self.bnd.ready.eq(count < FIFO_DEPTH)
        m.d.comb += [fifo_w.addr.eq(wp), fifo_w.data.eq(self.bnd.payload.as_value()),
                     fifo_w.en.eq(push)]
        with m.If(push):
            m.d.sync += wp.eq(wp + 1)
        with m.If(pop):
            m.d.sync += rp.eq(rp + 1)
        m.d.sync += count.eq(count + push - pop)

        nb1 = Signal(7)
        buf1 = Signal(64)
        m.d.comb += [nb1.eq(nbits - consume), buf1.eq(_shl64(buf, consume)),
                     self.bi.ready.eq(nbits <= 56)]
        with m.If(self.bi.valid & self.bi.ready):
            m.d.sync += [buf.eq(buf1 | _shl64(self.bi.payload, (56 - nb1)[:6].as_unsigned())),
                         nbits.eq(nb1 + 8)]
        with m.Elif(self.zfill & (nbits <= 56)):
            m.d.sync += [buf.eq(buf1), nbits.eq(nb1 + 8)]
        with m.Else():
            m.d.sync += [buf.eq(buf1), nbits.eq(nb1)]
        m.d.sync += pos.eq(pos + consume)
        bits_ok = (nbits >= NEED_BITS) | (count == FIFO_DEPTH)

        # ---- MCU bookkeeping ----------------------------------------------------------------
        mx = Signal(16)
        my = Signal(16)
        m.d.comb += [
            mx.eq(Mux(self.three & self.h2, (self.width + 15) >> 4, (self.width + 7) >> 3)),
            my.eq(Mux(self.three & self.v2, (self.height + 15) >> 4, (self.height + 7) >> 3)),
        ]
        mcu_x = Signal(16)
        mcu_y = Signal(16)
        j = Signal(2)
        bx = Signal(1)
        by = Signal(1)
        int_cnt = Signal(16)
        int_no = Signal(3)
        k = Signal(7)
        is_dc = Signal()
        L = Signal(5)
        preds = Array(Signal(signed(12), name=f"pred{q}") for q in range(3))

        fidx = self.s_fidx[j]
        luma = self.three & (fidx == 0)
        cur_h2 = luma & self.h2
        cur_v2 = luma & self.v2
        tbl = Mux(is_dc, self.s_dc[j], self.s_ac[j])

        last_in_comp = (bx == cur_h2) & (by == cur_v2)
        last_slot = j == self.ns - 1
        mcu_end = last_in_comp & last_slot
        last_col = mcu_x == mx - 1
        last_mcu = last_col & (mcu_y == my - 1)

        m.d.comb += [
            self.cw_tq.eq(self.tq[fidx]),
            self.be_comp.eq(fidx),
            self.be_bcol.eq(Mux(cur_h2, Cat(bx, mcu_x), mcu_x)),
            self.be_brow.eq(Mux(cur_v2, Cat(by, mcu_y), mcu_y)),
            self.be_row_end.eq(mcu_end & last_col),
        ]

        # ---- symbol lookup (cycle A) ----------------------------------------------------------
        peek = buf[48:]
        cand = Signal(9)
        valid_code = Signal()
        Lf = Signal(5)
        c, lf, vf = Const(0, 9), Const(0, 5), Const(0, 1)
        for Lm1 in reversed(range(16)):
            rp = lb_ports[Lm1]
            m.d.comb += rp.addr.eq(tbl)
            lim_s = rp.data[:17]
            base_s = rp.data[17:].as_signed()
            hit = peek < lim_s
            c = Mux(hit, (base_s + (peek >> (15 - Lm1)))[:9], c)
            lf = Mux(hit, Lm1 + 1, lf)
            vf = vf | hit
        m.d.comb += [cand.eq(c), Lf.eq(lf), valid_code.eq(vf)]
        m.d.comb += sr.addr.eq(Cat(cand[:8], tbl))

        # ---- symbol use (cycle B) -------------------------------------------------------------
        sym = sr.data
        size = Signal(4)
        run = Signal(4)
        bad = Signal()
        m.d.comb += [size.eq(sym[:4]), run.eq(Mux(is_dc, 0, sym[4:]))]
        m.d.comb += bad.eq(Mux(is_dc, sym > 11,
                               (sym[:4] > 10) | ((sym[:4] == 0) & (sym != 0) & (sym != 0xF0))))
        shifted = Signal(64)
        m.d.comb += shifted.eq(_shl64(buf, L))
        raw = Signal(11)
        m.d.comb += raw.eq(shifted[53:] >> (11 - size)[:4].as_unsigned())
        ext = Signal(signed(12))
        msb = (raw >> (size - 1)[:4].as_unsigned())[0]
        with m.If(size == 0):
            m.d.comb += ext.eq(0)
        with m.Elif(msb):
            m.d.comb += ext.eq(raw)
        with m.Else():
            m.d.comb += ext.eq(raw - (Const(1, 12) << size) + 1)
        nsym = Signal(6)
        m.d.comb += nsym.eq(L + size)
        pos_new = pos + nsym
        ovr = have_end & (pos_new > head_end)
        ovr_code = Mux(head.rst, S.BAD_RESTART, S.TRUNCATED)
        dcv = Signal(signed(14))
        m.d.comb += dcv.eq(preds[j] + ext)
        knew = Signal(8)
        m.d.comb += knew.eq(k + run)

        err = self.err

        def fail(code):
            m.d.sync += err.eq(code)
            m.next = "ERR"

        left = Signal(35)
        m.d.comb += left.eq(head_end - pos)
        gate_ok = mcu_y <= self.out_rows + 1

        m.d.comb += [self.claim.eq(0), self.cw_valid.eq(0), self.be_valid.eq(0), pop.eq(0),
                     consume.eq(0), self.cw_k.eq(0), self.cw_val.eq(0)]
        with m.FSM(name="entropy"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [mcu_x.eq(0), mcu_y.eq(0), j.eq(0), bx.eq(0), by.eq(0),
                                 int_cnt.eq(0), int_no.eq(0)]
                    m.d.sync += [preds[q].eq(0) for q in range(3)]
                    m.next = "BLK"
            with m.State("BLK"):
                with m.If(self.can_claim & gate_ok):
                    m.d.comb += self.claim.eq(1)
                    m.d.sync += [is_dc.eq(1), k.eq(0)]
                    m.next = "SYMA"
            with m.State("SYMA"):
                with m.If(bits_ok):
                    with m.If(~valid_code):
                        fail(S.BAD_HUFFMAN)
                    with m.Else():
                        m.d.sync += L.eq(Lf)
                        m.next = "SYMB"
            with m.State("SYMB"):
                with m.If(bad):
                    fail(S.BAD_HUFFMAN)
                with m.Elif(ovr):
                    m.d.comb += consume.eq(nsym)
                    fail(ovr_code)
                with m.Elif(is_dc):
                    m.d.comb += consume.eq(nsym)
                    with m.If((dcv > 2047) | (dcv < -2047)):
                        fail(S.BAD_COEFFICIENT)
                    with m.Else():
                        m.d.sync += [preds[j].eq(dcv), is_dc.eq(0), k.eq(1)]
                        m.d.comb += [self.cw_valid.eq(1), self.cw_k.eq(0), self.cw_val.eq(dcv)]
                        m.next = "SYMA"
                with m.Else():
                    m.d.comb += consume.eq(nsym)
                    with m.If(sym == 0):
                        m.d.comb += self.be_valid.eq(1)
                        m.next = "NEXT"
                    with m.Elif(knew > 63):
                        fail(S.BAD_COEFFICIENT)
                    with m.Else():
                        m.d.comb += [self.cw_valid.eq(1), self.cw_k.eq(knew[:6]),
                                     self.cw_val.eq(ext)]
                        m.d.sync += k.eq(knew + 1)
                        with m.If(knew == 63):
                            m.d.comb += self.be_valid.eq(1)
                            m.next = "NEXT"
                        with m.Else():
                            m.next = "SYMA"
            with m.State("NEXT"):
                with m.If(mcu_end):
                    m.d.sync += [bx.eq(0), by.eq(0), j.eq(0)]
                    with m.If(last_col):
                        m.d.sync += [mcu_x.eq(0), mcu_y.eq(mcu_y + 1)]
                    with m.Else():
                        m.d.sync += mcu_x.eq(mcu_x + 1)
                    with m.If(last_mcu):
                        m.next = "SEND"
                    with m.Elif((self.ri != 0) & (int_cnt + 1 == self.ri)):
                        m.d.sync += int_cnt.eq(0)
                        m.next = "IEND"
                    with m.Else():
                        m.d.sync += int_cnt.eq(int_cnt + 1)
                        m.next = "BLK"
                with m.Else():
                    with m.If(last_in_comp):
                        m.d.sync += [bx.eq(0), by.eq(0), j.eq(j + 1)]
                    with m.Elif(bx == cur_h2):
                        m.d.sync += [bx.eq(0), by.eq(by + 1)]
                    with m.Else():
                        m.d.sync += bx.eq(bx + 1)
                    m.next = "BLK"
            with m.State("IEND"):
                with m.If(~have_end):
                    with m.If(nbits >= 8):
                        fail(S.BAD_RESTART)
                with m.Elif(left >= 8):
                    fail(S.BAD_RESTART)
                with m.Elif(head.rst & (head.term == int_no)):
                    m.d.comb += [consume.eq(left[:3]), pop.eq(1)]
                    m.d.sync += [int_no.eq(int_no + 1)]
                    m.d.sync += [preds[q].eq(0) for q in range(3)]
                    m.next = "BLK"
                with m.Else():
                    fail(Mux(~head.rst & head.eof, S.TRUNCATED, S.BAD_RESTART))
            with m.State("SEND"):
                with m.If(~have_end):
                    with m.If(nbits >= 8):
                        fail(S.BAD_MARKER)
                with m.Elif(left >= 8):
                    fail(S.BAD_MARKER)
                with m.Elif(head.rst):
                    fail(S.BAD_RESTART)
                with m.Else():
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
            with m.State("ERR"):
                pass
        return m
