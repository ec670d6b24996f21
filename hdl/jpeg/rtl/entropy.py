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
  parser at DHT time) and a symbol RAM (8 loadable tables + the 4 Annex K default tables as
  initial contents, 3 KiB) read asynchronously: distributed RAM on an FPGA (ECP5, this block
  alone: 8.5k LUT4 and no block RAM, against 3.5k LUT4 and 2 EBR with a synchronous read).
* One symbol per clock (DC difference, AC coefficient, ZRL or EOB), in two stages:

  1. decode, one symbol per clock (the loop): the 16 ``peek < lim[L]`` compares on the 16-bit
     lookahead (hits are monotonic in L: the first hit gives the code length and symbol index,
     selected one-hot), the symbol RAM read, and code + magnitude (up to 27 bits) consumed at
     once; run/EOB bookkeeping, the next symbol's table (a register: the AC table after the
     DC, the next block's DC table at the block's last symbol), the MCU position, and the
     verdicts that stop the decode (BAD_HUFFMAN, overrun, a run past coefficient 63).
  2. the clock after: the magnitude's value (from the 27-bit lookahead the symbol saw), the
     DC prediction and its range check (BAD_COEFFICIENT, which wins over any verdict stage 1
     reaches on the next symbol in that clock, being earlier in the stream), the coefficient
     beat and the block-end beat.

  A symbol waits until the buffer holds 27 bits (or the boundary FIFO is full: see
  ``bits_ok``). The next block's DC symbol claims its coefficient buffer in the clock it is
  decoded, so a block costs exactly its symbols; a restart interval's end and the scan's end
  take one clock more. The buffer takes one byte per clock, more than the symbols consume on
  average (about 5 bits per symbol at quality 95), so it stays near full.
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
    init = [0] * (N_PHYS_TABLES * 256)
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


def _or_tree(terms):
    """OR of the terms as a balanced tree (one-hot selects: an AND-OR multiplexer)."""
    while len(terms) > 1:
        terms = [terms[i] | terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


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
            "row_limit": In(17),        # MCU rows below this one may start (line buffer room)
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
        m.submodules.syms = syms = memory.Memory(shape=8, depth=N_PHYS_TABLES * 256,
                                                 init=_sym_init())
        sw = syms.write_port()
        sr = syms.read_port(domain="comb")
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

        # Refill: the new byte goes right after the buffer's valid bits *before* this clock's
        # consumption shifts the buffer (bits past ``nbits`` are zero), so the refill is off
        # the decode loop. ``zfill`` bytes are zero: only ``nbits`` grows.
        m.d.comb += self.bi.ready.eq(nbits <= 56)
        take = self.bi.valid & self.bi.ready
        buf_in = Signal(64)
        nb_in = Signal(7)
        m.d.comb += [
            buf_in.eq(Mux(take, buf | _shl64(self.bi.payload, (56 - nbits)[:6].as_unsigned()),
                          buf)),
            nb_in.eq(Mux(take | (self.zfill & (nbits <= 56)), nbits + 8, nbits)),
        ]

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
        tbl = Signal(4)             # physical table of the next symbol (DC or AC of slot j)
        preds = Array(Signal(signed(12), name=f"pred{q}") for q in range(3))

        fidx = self.s_fidx[j]
        luma = self.three & (fidx == 0)
        cur_h2 = luma & self.h2
        cur_v2 = luma & self.v2

        last_in_comp = (bx == cur_h2) & (by == cur_v2)
        last_slot = j == self.ns - 1
        mcu_end = last_in_comp & last_slot
        last_col = mcu_x == mx - 1
        last_mcu = last_col & (mcu_y == my - 1)
        j_next = Mux(mcu_end, 0, Mux(last_in_comp, j + 1, j))[:2]

        # ---- stage 1: one symbol per clock ----------------------------------------------------
        # The decode loop, buffer -> buffer in one clock: the 16 ``peek < lim[L]`` compares
        # (hits are monotonic in L, so the code length is the first hit, selected one-hot),
        # the symbol index, the symbol RAM read, and the buffer shifted by the code length
        # (in parallel with the RAM read) then by the magnitude size. Run/EOB bookkeeping
        # (k, block end, the next symbol's table) and the verdicts that stop the decode are
        # here too; the magnitude's value goes to stage 2.
        peek = buf[48:]
        hits = []
        cand_terms = []
        len_terms = []
        for Lm1 in range(16):
            lbp = lb_ports[Lm1]
            m.d.comb += lbp.addr.eq(tbl)
            lim_s = lbp.data[:17]
            base_s = lbp.data[17:].as_signed()
            hit = Signal(name=f"hit{Lm1 + 1}")
            m.d.comb += hit.eq(peek < lim_s)
            first = hit if Lm1 == 0 else hit & ~hits[-1]
            hits.append(hit)
            cand_terms.append(Mux(first, (base_s + (peek >> (15 - Lm1)))[:9], 0))
            len_terms.append(Mux(first, Lm1 + 1, 0))
        cand = Signal(9)
        valid_code = Signal()
        Lf = Signal(5)
        m.d.comb += [cand.eq(_or_tree(cand_terms)), Lf.eq(_or_tree(len_terms)),
                     valid_code.eq(_or_tree(hits))]
        m.d.comb += sr.addr.eq(Cat(cand[:8], tbl))

        sym = sr.data
        size = Signal(4)
        run = Signal(4)
        bad = Signal()
        m.d.comb += [size.eq(sym[:4]), run.eq(Mux(is_dc, 0, sym[4:]))]
        m.d.comb += bad.eq(Mux(is_dc, sym > 11,
                               (sym[:4] > 10) | ((sym[:4] == 0) & (sym != 0) & (sym != 0xF0))))
        nsym = Signal(6)
        m.d.comb += nsym.eq(Lf + size)
        knew = Signal(8)
        m.d.comb += knew.eq(k + run)
        # run vs the coefficients left in the block (63 - k, known before the symbol is)
        room = Signal(signed(8))
        m.d.comb += room.eq(63 - k)
        run_end = Signal()          # knew == 63
        run_over = Signal()         # knew > 63
        m.d.comb += [run_end.eq((room < 16) & (run == room[:4])),
                     run_over.eq((room < 0) | ((room < 16) & (run > room[:4])))]
        # bits left in the current segment (pos never passes its end while decoding), and
        # after the code: the symbol overruns when its magnitude is longer than that
        left = Signal(signed(36))
        m.d.comb += left.eq(head_end - pos)
        left_l = Signal(signed(37))
        m.d.comb += left_l.eq(left - Lf)
        ovr = have_end & ((left_l < 0) | ((left_l < 16) & (size > left_l[:4])))
        ovr_code = Mux(head.rst, S.BAD_RESTART, S.TRUNCATED)
        # Enough bits for any symbol (a code and its magnitude: 27), or a full boundary FIFO
        # (the parser stalled on a marker: then every bit up to three boundaries past the
        # segment's end is in the buffer, and a symbol longer than that is an overrun anyway).
        # The one-byte-per-clock refill keeps the buffer above that at one symbol per clock.
        bits_ok = Signal()
        m.d.comb += bits_ok.eq((nbits >= NEED_BITS) | (count == FIFO_DEPTH))

        # buffer update: consume the symbol (sym_go), the bits up to a byte boundary at a
        # restart marker (iend_go), or nothing
        sym_go = Signal()
        iend_go = Signal()
        buf_l = Signal(64)
        m.d.comb += buf_l.eq(_shl64(buf_in, Lf))
        with m.If(sym_go):
            m.d.sync += [buf.eq(_shl64(buf_l, size)), nbits.eq(nb_in - nsym),
                         pos.eq(pos + nsym)]
        with m.Elif(iend_go):
            m.d.sync += [buf.eq(_shl64(buf_in, left[:3])), nbits.eq(nb_in - left[:3]),
                         pos.eq(pos + left[:3])]
        with m.Else():
            m.d.sync += [buf.eq(buf_in), nbits.eq(nb_in)]

        # ---- stage 2: magnitude, DC prediction, coefficient and block beats -------------------
        s2_cw = Signal()
        s2_dc = Signal()
        s2_be = Signal()
        s2_k = Signal(6)
        s2_top = Signal(NEED_BITS)
        s2_nsym = Signal(6)
        s2_size = Signal(4)
        s2_j = Signal(2)
        s2_tq = Signal(2)
        s2_meta = Signal(2 + 13 + 13 + 1)
        # the data registers load every clock (no enable on the decode loop's late verdicts);
        # the beat flags are set by the symbol's verdict
        m.d.sync += [s2_cw.eq(0), s2_be.eq(0),
                     s2_dc.eq(is_dc), s2_k.eq(Mux(is_dc, 0, knew[:6])),
                     s2_top.eq(buf[64 - NEED_BITS:]), s2_nsym.eq(nsym), s2_size.eq(size),
                     s2_j.eq(j), s2_tq.eq(self.tq[fidx]),
                     s2_meta.eq(Cat(fidx, Mux(cur_h2, Cat(bx, mcu_x), mcu_x)[:13],
                                    Mux(cur_v2, Cat(by, mcu_y), mcu_y)[:13],
                                    mcu_end & last_col))]

        def to_stage2(cw, be):
            m.d.sync += [s2_cw.eq(cw), s2_be.eq(be)]

        # the ``size`` magnitude bits after the code: lookahead bits [27 - nsym, 27 - L)
        raw = Signal(11)
        m.d.comb += raw.eq((s2_top >> (NEED_BITS - s2_nsym)[:5].as_unsigned())[:11] &
                           ((Const(1, 12) << s2_size) - 1)[:11])
        ext = Signal(signed(12))
        msb = raw.bit_select((s2_size - 1)[:4].as_unsigned(), 1)
        with m.If(s2_size == 0):
            m.d.comb += ext.eq(0)
        with m.Elif(msb):
            m.d.comb += ext.eq(raw)
        with m.Else():
            m.d.comb += ext.eq(raw - (Const(1, 12) << s2_size) + 1)
        dcv = Signal(signed(14))
        m.d.comb += dcv.eq(preds[s2_j] + ext)
        dc_bad = Signal()
        m.d.comb += dc_bad.eq(s2_cw & s2_dc & ((dcv > 2047) | (dcv < -2047)))
        with m.If(s2_cw & s2_dc & ~dc_bad):
            m.d.sync += preds[s2_j].eq(dcv)
        m.d.comb += [
            self.cw_valid.eq(s2_cw & ~dc_bad), self.cw_k.eq(s2_k),
            self.cw_val.eq(Mux(s2_dc, dcv, ext)), self.cw_tq.eq(s2_tq),
            self.be_valid.eq(s2_be),
            Cat(self.be_comp, self.be_bcol, self.be_brow, self.be_row_end).eq(s2_meta),
        ]

        err = self.err

        def fail(code):
            m.d.sync += err.eq(code)
            m.next = "ERR"

        gate_ok = mcu_y < self.row_limit

        def block_end():
            """The block's last symbol: MCU bookkeeping, and the next block's DC follows."""
            m.d.sync += [is_dc.eq(1), k.eq(0), tbl.eq(self.s_dc[j_next])]
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
            with m.Else():
                with m.If(last_in_comp):
                    m.d.sync += [bx.eq(0), by.eq(0), j.eq(j + 1)]
                with m.Elif(bx == cur_h2):
                    m.d.sync += [bx.eq(0), by.eq(by + 1)]
                with m.Else():
                    m.d.sync += bx.eq(bx + 1)

        # a block starts (DC symbol) once a coefficient buffer is claimed in the same clock
        fire = bits_ok & (~is_dc | (self.can_claim & gate_ok))

        m.d.comb += [self.claim.eq(0), pop.eq(0), sym_go.eq(0), iend_go.eq(0)]
        with m.FSM(name="entropy"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [mcu_x.eq(0), mcu_y.eq(0), j.eq(0), bx.eq(0), by.eq(0),
                                 int_cnt.eq(0), int_no.eq(0), is_dc.eq(1), k.eq(0)]
                    m.d.sync += [preds[q].eq(0) for q in range(3)]
                    m.next = "INIT"
            with m.State("INIT"):           # the scan's table selectors are valid now
                m.d.sync += tbl.eq(self.s_dc[0])
                m.next = "SYM"
            with m.State("SYM"):
                with m.If(fire):
                    m.d.comb += self.claim.eq(is_dc)
                    with m.If(~valid_code | bad):
                        fail(S.BAD_HUFFMAN)
                    with m.Elif(ovr):
                        fail(ovr_code)
                    with m.Elif(is_dc):
                        m.d.comb += sym_go.eq(1)
                        m.d.sync += [is_dc.eq(0), k.eq(1), tbl.eq(self.s_ac[j])]
                        to_stage2(1, 0)
                    with m.Else():
                        m.d.comb += sym_go.eq(1)
                        with m.If(sym == 0):
                            to_stage2(0, 1)
                            block_end()
                        with m.Elif(run_over):
                            fail(S.BAD_COEFFICIENT)
                        with m.Else():
                            to_stage2(1, run_end)
                            m.d.sync += k.eq(knew + 1)
                            with m.If(run_end):
                                block_end()
                # stage 2's verdict is on an earlier symbol: it wins
                with m.If(dc_bad):
                    m.d.sync += [s2_cw.eq(0), s2_be.eq(0)]
                    fail(S.BAD_COEFFICIENT)
            with m.State("IEND"):
                with m.If(~have_end):
                    with m.If(nbits >= 8):
                        fail(S.BAD_RESTART)
                with m.Elif(left >= 8):
                    fail(S.BAD_RESTART)
                with m.Elif(head.rst & (head.term == int_no)):
                    m.d.comb += [iend_go.eq(1), pop.eq(1)]
                    m.d.sync += [int_no.eq(int_no + 1)]
                    m.d.sync += [preds[q].eq(0) for q in range(3)]
                    m.next = "SYM"
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
