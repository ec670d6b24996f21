"""The entropy decoder: unstuffed scan bytes in, quantized coefficients out, block by block.

* Bit buffer: 64 bits, MSB = next bit, refilled one byte per clock from the parser (``bi``);
  after the scan's last segment it reads zero bytes (``zfill``), as the golden model's window
  does past the end of its data. ``pos`` counts bits consumed since the scan's start.
* Boundary FIFO (8 entries): the end of each restart segment (byte position, RSTn or other
  marker / end of file). A symbol consumed past the current segment's end is an overrun
  (TRUNCATED, or BAD_RESTART when an RSTn ended the segment): once past the end, nothing the
  golden model can still find changes that verdict, so it is reported at once. Lookahead bits
  past the end come from the following segments, exactly as in the golden model.
* Huffman: canonical code tables as ``lim``/``base`` per code length (written by the parser at
  DHT time into 16 small RAMs, 37 bits x 16 physical tables, read asynchronously by the
  current table ``tbl``: distributed RAM) and a symbol RAM (8 loadable tables + the 4 Annex K
  default tables as initial contents, 3 KiB) with a synchronous read: block RAM on an FPGA.
* One symbol (DC difference, AC coefficient, ZRL or EOB) every 4 clocks, the decode loop cut
  into 4 phases (``ph``). The architectural state (bit buffer, ``pos``, ``tbl``, ``k``, MCU
  position, DC predictors, verdicts) changes only at phase 3, so each phase's registers, which
  load every clock, hold what the phase before computed from that stable state:

  0. once ``fire`` (enough bits, and for a DC symbol a coefficient buffer claimed in that
     clock): the 16 ``peek < lim[L]`` compares on the 16-bit lookahead and each length's index
     ``base[L] + code``, registered, with the 27-bit window and the bits left in the segment.
  1. the first hit (hits are monotonic in L) selects the code length and, one-hot, the index:
     the symbol RAM's address (registered inside the block RAM).
  2. the symbol RAM's data straight into a register; from the code length: the buffer shifted
     past the code, the 11 bits after the code (the magnitude, MSB first), and the bits left in
     the segment after the code (< 0, < 16, low 4 bits), all registered.
  3. the verdicts that stop the decode (BAD_HUFFMAN, overrun, a run past coefficient 63), the
     run/EOB/MCU bookkeeping (its compares are registered every clock from the stable state;
     at a block's end the MCU position itself moves in the clock after, ``blk_upd``), the next
     symbol's table, the magnitude's value, and the buffer shifted by the magnitude size (it
     consumes the symbol whatever the verdict: a stopping verdict ends the scan).

  Two more stages follow each symbol off the loop: stage 2 (the clock after phase 3) computes
  the beat flags from the verdict bits registered at phase 3, the DC prediction and its range
  check, registered; stage 3 emits the coefficient and block-end beats and updates the
  predictor, or stops the decode (BAD_COEFFICIENT) no later than the next symbol's phase 1,
  before that symbol's own verdicts (phase 3), so the stream order of verdicts is kept (a DC
  symbol never ends a block, so a restart or the scan's end never comes between).

  A symbol waits in phase 0 until the buffer holds 27 bits (or the boundary FIFO is full: see
  ``bits_ok``), a block's DC symbol also for a coefficient buffer and the line-buffer gate
  (``gate_ok``, registered: two clocks more at the start of an MCU row). A block costs 4
  clocks per symbol; a restart interval's end takes 3 clocks more (IEND0, IEND, ALIGN) and the
  scan's end 2 (SEND0, SEND): IEND/SEND decide on the bits left in the segment, the FIFO state
  and the bit count registered the clock before.
  The buffer takes one byte per clock except in phases 2 and 3 and ALIGN (so that a refill
  and a consuming shift are never in series), through a one-byte holding register; ``free``
  (56 - ``nbits``, a register) places the byte. Two bytes per symbol are more than the symbols consume on average (about 5 bits per
  symbol at quality 95), so the buffer stays near full.
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
        sr = syms.read_port(domain="sync", transparent_for=())
        m.d.comb += [sw.addr.eq(self.s_addr), sw.data.eq(self.s_data), sw.en.eq(self.s_we)]

        # lim/base per code length: one small RAM per length, addressed by the physical table
        # (0-7 loadable, 8-11 the Annex K tables as initial contents, 12-15 unused), so that
        # phase 0 reads the 16 (lim, base) pairs of the current table in parallel.
        std = {}
        for (tc, th), spec in STD_HUFFMAN.items():
            std[STD_PHYS[(tc, th)]] = canonical(spec.counts)
        tbl = Signal(4)             # physical table of the current symbol (DC or AC of slot j)
        lims = []
        bases = []
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
            rp_ = mem.read_port(domain="comb")
            lim_r = Signal(17, name=f"lim{L + 1}")
            base_r = Signal(signed(20), name=f"base{L + 1}")
            m.d.comb += rp_.addr.eq(tbl)
            m.d.comb += [lim_r.eq(rp_.data[:17]), base_r.eq(rp_.data[17:].as_signed())]
            lims.append(lim_r)
            bases.append(base_r)

        # ---- bit buffer and boundary FIFO ---------------------------------------------------
        buf = Signal(64)
        nbits = Signal(7)
        free = Signal(signed(8), init=56)   # 56 - nbits: where the next byte goes, if >= 0
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

        # ``fifo_room`` (count < FIFO_DEPTH) is a register set from the next count: ``bnd.ready``
        # reaches the parser's byte handshake, and a compare of the count there, placed by
        # the entropy decoder, was the ECP5 build's critical path.
        fifo_room = Signal(init=1)
        count_next = Signal(4)
        push = self.bnd.valid & self.bnd.ready
        m.d.comb += self.bnd.ready.eq(fifo_room)
        m.d.comb += [fifo_w.addr.eq(wp), fifo_w.data.eq(self.bnd.payload.as_value()),
                     fifo_w.en.eq(push)]
        with m.If(push):
            m.d.sync += wp.eq(wp + 1)
        with m.If(pop):
            m.d.sync += rp.eq(rp + 1)
        m.d.comb += count_next.eq(count + push - pop)
        m.d.sync += [count.eq(count_next), fifo_room.eq(count_next < FIFO_DEPTH)]

        # ---- MCU bookkeeping ----------------------------------------------------------------
        # the last MCU column and row (registered: the configuration is stable during the scan)
        mx1 = Signal(16)
        my1 = Signal(16)
        m.d.sync += [
            mx1.eq(Mux(self.three & self.h2, (self.width + 15) >> 4, (self.width + 7) >> 3) - 1),
            my1.eq(Mux(self.three & self.v2, (self.height + 15) >> 4, (self.height + 7) >> 3) - 1),
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
        preds = Array(Signal(signed(12), name=f"pred{q}") for q in range(3))
        ph = Signal(2)              # the current symbol's phase (SYM state)

        fidx = self.s_fidx[j]
        luma = self.three & (fidx == 0)
        cur_h2 = luma & self.h2
        cur_v2 = luma & self.v2

        # The block-end bookkeeping's compares, registered every clock: the state they read
        # changes only at a symbol's last phase, so they are valid from phase 1 on.
        last_in_comp = Signal()
        bx_last = Signal()
        mcu_end = Signal()
        last_col = Signal()
        last_mcu = Signal()
        int_end = Signal()
        dc_next = Signal(4)         # the next block's DC table
        ac_tbl = Signal(4)          # this block's AC table
        room = Signal(signed(8))    # 63 - k: the coefficients left in the block
        lic = (bx == cur_h2) & (by == cur_v2)
        me = lic & (j == self.ns - 1)
        lc = mcu_x == mx1
        m.d.sync += [
            last_in_comp.eq(lic), bx_last.eq(bx == cur_h2), mcu_end.eq(me), last_col.eq(lc),
            last_mcu.eq(lc & (mcu_y == my1)),
            int_end.eq((self.ri != 0) & (int_cnt + 1 == self.ri)),
            dc_next.eq(self.s_dc[Mux(me, 0, Mux(lic, j + 1, j))[:2]]),
            ac_tbl.eq(self.s_ac[j]),
            room.eq(63 - k),
        ]

        # ---- phase 0: the 16 code compares -----------------------------------------------------
        # ``peek < lim[L]`` for each code length L (hits are monotonic in L: the first hit gives
        # the code length), and each length's symbol index ``base[L] + code``, registered.
        # Registers of the symbol's phases load every clock: a phase's inputs are the
        # previous phase's registers, which hold their value through it.
        peek = buf[48:]
        p1_hits = Signal(16)
        p1_cands = [Signal(9, name=f"p1_cand{L + 1}") for L in range(16)]
        p1_top = Signal(NEED_BITS)      # the window the code was decoded from
        p1_left = Signal(signed(36))    # bits left in the current segment (pos, head: stable)
        p1_have_end = Signal()
        for Lm1 in range(16):
            m.d.sync += [p1_hits[Lm1].eq(peek < lims[Lm1]),
                         p1_cands[Lm1].eq((bases[Lm1] + (peek >> (15 - Lm1)))[:9])]
        m.d.sync += [p1_top.eq(buf[64 - NEED_BITS:]), p1_left.eq(head_end - pos),
                     p1_have_end.eq(have_end)]

        # ---- phase 1: the first hit selects the code length and the symbol RAM's address -------
        cand_terms = []
        len_terms = []
        for Lm1 in range(16):
            first = p1_hits[Lm1] if Lm1 == 0 else p1_hits[Lm1] & ~p1_hits[Lm1 - 1]
            cand_terms.append(Mux(first, p1_cands[Lm1], 0))
            len_terms.append(Mux(first, Lm1 + 1, 0))
        cand = Signal(9)
        p2_len = Signal(5)
        p2_valid = Signal()
        p2_top = Signal(NEED_BITS)
        p2_left = Signal(signed(36))
        p2_have_end = Signal()
        # the symbol RAM (a block RAM) registers the address
        m.d.comb += [cand.eq(_or_tree(cand_terms)), sr.addr.eq(Cat(cand[:8], tbl))]
        m.d.sync += [p2_len.eq(_or_tree(len_terms)), p2_valid.eq(p1_hits != 0),
                     p2_top.eq(p1_top), p2_left.eq(p1_left), p2_have_end.eq(p1_have_end)]

        # ---- phase 2: the symbol RAM's data straight into a register; the magnitude's bits ------
        p3_sym = Signal(8)
        p3_valid = Signal()
        p3_len = Signal(5)
        # bits left in the segment after the code: < 0, < 16, and its low 4 bits
        left_l = Signal(signed(37))
        m.d.comb += left_l.eq(p2_left - p2_len)
        p3_ll_neg = Signal()
        p3_ll_lt16 = Signal()
        p3_ll4 = Signal(4)
        p3_have_end = Signal()
        p3_mag = Signal(11)         # the 11 bits after the code: the magnitude, MSB first
        p3_buf = Signal(64)         # the buffer after the code (no refill in phases 2 and 3)
        m.d.sync += p3_buf.eq(_shl64(buf, p2_len))
        m.d.sync += [
            p3_sym.eq(sr.data), p3_valid.eq(p2_valid), p3_len.eq(p2_len),
            p3_ll_neg.eq(left_l < 0), p3_ll_lt16.eq(left_l < 16), p3_ll4.eq(left_l[:4]),
            p3_have_end.eq(p2_have_end),
            p3_mag.eq((p2_top >> (16 - p2_len)[:4])[:11]),
        ]

        # ---- phase 3: the symbol's verdicts, consume it, the magnitude's value -----------------
        sym = p3_sym
        size = Signal(4)
        run = Signal(4)
        m.d.comb += [size.eq(sym[:4]), run.eq(Mux(is_dc, 0, sym[4:]))]
        p3_ok = Signal()            # a valid code with an allowed symbol
        p3_ovr = Signal()           # the magnitude reaches past the segment's end
        p3_eob = Signal()
        p3_run_end = Signal()       # knew == 63
        p3_run_over = Signal()      # knew > 63
        p3_knew = Signal(8)
        p3_nsym = Signal(5)
        bad = Mux(is_dc, sym > 11,
                  (sym[:4] > 10) | ((sym[:4] == 0) & (sym != 0) & (sym != 0xF0)))
        m.d.comb += [
            p3_ok.eq(p3_valid & ~bad),
            p3_ovr.eq(p3_have_end & (p3_ll_neg | (p3_ll_lt16 & (size > p3_ll4)))),
            p3_eob.eq(sym == 0),
            p3_run_end.eq((room < 16) & (run == room[:4])),
            p3_run_over.eq((room < 0) | ((room < 16) & (run > room[:4]))),
            p3_knew.eq(k + run), p3_nsym.eq(p3_len + size),
        ]
        raw = Signal(11)
        m.d.comb += raw.eq(p3_mag >> (11 - size)[:4])
        ext = Signal(signed(12))
        with m.If(size == 0):
            m.d.comb += ext.eq(0)
        with m.Elif(p3_mag[10]):
            m.d.comb += ext.eq(raw)
        with m.Else():
            m.d.comb += ext.eq(raw - (Const(1, 12) << size) + 1)

        # Enough bits for any symbol (a code and its magnitude: 27), or a full boundary FIFO
        # and no byte waiting in ``ib``/``sk`` (the parser stalled on a marker: then every bit
        # up to three boundaries past the segment's end is in the buffer, and a symbol longer
        # than that is an overrun anyway; a waiting byte goes in unless the buffer is full,
        # and a full buffer holds 27 bits).
        bits_ok = Signal()     # (set below, with ``ib``)

        # Refill: one byte per clock right after the buffer's valid bits (bits past ``nbits``
        # are zero), except in a symbol's phases 2 and 3 (phase 3 consumes from the buffer
        # phase 2 shifted past the code) and ALIGN, so that no clock has a refill and a
        # consuming shift in series. ``zfill`` bytes are zero: only ``nbits`` grows. A refill
        # never changes the top 27 bits a pending symbol saw.
        sym_go = Signal()
        align_go = Signal()
        align = Signal(3)
        consuming = Signal()
        # The byte from the parser waits a clock in ``ib`` before it goes into the buffer: the
        # parser's output handshake and the 64-bit placing shift do not fit one clock together
        # on the ECP5. A second entry, ``sk``, takes the byte that arrives while ``ib`` is
        # full and not taken, so that ``bi.ready`` is a flip-flop (``~sk_v``): the buffer's
        # state (``free``, the phase) reached the parser's byte handshake and all its enables
        # through it, across the die. ``sk`` is only full while ``ib`` is, and ``zfill`` bytes
        # only follow once ``ib`` is empty, so the order holds.
        ib = Signal(8, reset_less=True)
        ib_v = Signal()
        sk = Signal(8, reset_less=True)
        sk_v = Signal()
        take = Signal()
        arrive = Signal()
        m.d.comb += [take.eq(ib_v & ~free[-1] & ~consuming),
                     self.bi.ready.eq(~sk_v), arrive.eq(self.bi.valid & ~sk_v)]
        with m.If(take | ~ib_v):
            m.d.sync += [ib.eq(Mux(sk_v, sk, self.bi.payload)), ib_v.eq(sk_v | arrive),
                         sk_v.eq(0)]
        with m.Elif(arrive):
            m.d.sync += [sk.eq(self.bi.payload), sk_v.eq(1)]
        m.d.comb += bits_ok.eq((nbits >= NEED_BITS) | (~fifo_room & ~ib_v))
        grow = take | (self.zfill & ~ib_v & ~free[-1] & ~consuming)
        with m.If(sym_go):
            m.d.sync += [buf.eq(_shl64(p3_buf, size)), nbits.eq(nbits - p3_nsym),
                         free.eq(free + p3_nsym),
                         pos.eq(pos + p3_nsym)]
        with m.Elif(align_go):
            m.d.sync += [buf.eq(_shl64(buf, align)), nbits.eq(nbits - align),
                         free.eq(free + align),
                         pos.eq(pos + align)]
        with m.Elif(grow):
            m.d.sync += [nbits.eq(nbits + 8), free.eq(free - 8)]
            with m.If(take):
                m.d.sync += buf.eq(buf | _shl64(ib, free[:6]))

        # ---- stage 2: DC prediction, coefficient and block beats ------------------------------
        s2_go = Signal()            # phase 3 was in the last clock
        s2_ok = Signal()            # and the symbol had no stopping verdict of its own
        s2_dc = Signal()
        s2_eob = Signal()
        s2_run_end = Signal()
        s2_run_over = Signal()
        s2_k = Signal(6)
        s2_ext = Signal(signed(12))
        s2_j = Signal(2)
        s2_tq = Signal(2)
        s2_meta = Signal(2 + 13 + 13 + 1)
        # the data registers load every clock; the beat flags are set by the symbol's verdict
        m.d.sync += [s2_go.eq(sym_go), s2_ok.eq(p3_ok & ~p3_ovr), s2_eob.eq(p3_eob),
                     s2_run_end.eq(p3_run_end), s2_run_over.eq(p3_run_over),
                     s2_dc.eq(is_dc), s2_k.eq(Mux(is_dc, 0, p3_knew[:6])), s2_ext.eq(ext),
                     s2_j.eq(j), s2_tq.eq(self.tq[fidx]),
                     s2_meta.eq(Cat(fidx, Mux(cur_h2, Cat(bx, mcu_x), mcu_x)[:13],
                                    Mux(cur_v2, Cat(by, mcu_y), mcu_y)[:13],
                                    mcu_end & last_col))]

        # the beats, from the verdict bits registered at phase 3: the DC symbol's coefficient,
        # an AC coefficient (its block's last at a run to 63), the block's end (EOB or run to 63)
        s2_cw = Signal()
        s2_be = Signal()
        m.d.comb += [
            s2_cw.eq(s2_go & s2_ok & (s2_dc | (~s2_eob & ~s2_run_over))),
            s2_be.eq(s2_go & s2_ok & ~s2_dc & (s2_eob | (s2_run_end & ~s2_run_over))),
        ]

        # stage 2 (the clock after phase 3): the DC prediction and its range check, registered
        dcv = Signal(signed(14))
        m.d.comb += dcv.eq(preds[s2_j] + s2_ext)
        s3_cw = Signal()
        s3_dc = Signal()
        s3_be = Signal()
        s3_bad = Signal()
        s3_k = Signal(6)
        s3_val = Signal(signed(12))
        s3_j = Signal(2)
        s3_tq = Signal(2)
        s3_meta = Signal(2 + 13 + 13 + 1)
        m.d.sync += [s3_cw.eq(s2_cw), s3_dc.eq(s2_dc), s3_be.eq(s2_be),
                     s3_bad.eq(s2_dc & ((dcv > 2047) | (dcv < -2047))),
                     s3_k.eq(s2_k), s3_val.eq(Mux(s2_dc, dcv, s2_ext)), s3_j.eq(s2_j),
                     s3_tq.eq(s2_tq), s3_meta.eq(s2_meta)]
        # stage 3: the beats, and the prediction's update (the next DC symbol of that
        # component is at least one symbol, four clocks, later)
        dc_bad = Signal()
        m.d.comb += dc_bad.eq(s3_cw & s3_bad)
        with m.If(s3_cw & s3_dc & ~s3_bad):
            m.d.sync += preds[s3_j].eq(s3_val)
        m.d.comb += [
            self.cw_valid.eq(s3_cw & ~s3_bad), self.cw_k.eq(s3_k),
            self.cw_val.eq(s3_val), self.cw_tq.eq(s3_tq),
            self.be_valid.eq(s3_be),
            Cat(self.be_comp, self.be_bcol, self.be_brow, self.be_row_end).eq(s3_meta),
        ]

        err = self.err

        def fail(code):
            m.d.sync += err.eq(code)
            m.next = "ERR"

        # The line-buffer gate for a block's DC symbol, registered. ``mcu_y`` changes only
        # when the block that ends an MCU row updates the MCU position (``blk_upd``, the clock
        # after its phase 3): the gate is held closed in that clock and the one before, so it
        # is never stale (a block waits two clocks more at the start of an MCU row).
        gate_ok = Signal()
        blk_upd = Signal()
        row_end = mcu_end & last_col
        m.d.sync += gate_ok.eq((mcu_y < self.row_limit) & ~(row_end & ((ph == 3) | blk_upd)))
        # IEND/SEND decide on the registered bits left in the segment, boundary FIFO state and
        # bit count of the clock before (their first clock only waits for these to settle)
        left = p1_left
        nbits8 = Signal()
        m.d.sync += nbits8.eq(nbits >= 8)

        # the table the symbol after this one is decoded with (loaded into ``tbl`` and read
        # into the lim/base registers at phase 2, for the next phase 0)
        blk_end = p3_eob | p3_run_end
        tbl_next = Mux(is_dc, ac_tbl, Mux(blk_end, dc_next, tbl))

        def block_end():
            """The block's last symbol: the next block's DC follows; the MCU bookkeeping."""
            m.d.sync += [is_dc.eq(1), k.eq(0), blk_upd.eq(1)]
            with m.If(mcu_end):
                with m.If(last_mcu):
                    m.next = "SEND0"
                with m.Elif(int_end):
                    m.next = "IEND0"

        # The MCU position moves a clock after the block's last phase 3 (``blk_upd``), from
        # the compares registered before it (the state they read has not changed yet), so the
        # symbol's verdicts do not reach these registers' enables. The next block's DC symbol
        # reads the position from its phase 1 on and the compares (``ac_tbl``) from its phase
        # 2 on; its own table was chosen before (``dc_next``).
        m.d.sync += blk_upd.eq(0)
        with m.If(blk_upd):
            with m.If(mcu_end):
                m.d.sync += [bx.eq(0), by.eq(0), j.eq(0)]
                with m.If(last_col):
                    m.d.sync += [mcu_x.eq(0), mcu_y.eq(mcu_y + 1)]
                with m.Else():
                    m.d.sync += mcu_x.eq(mcu_x + 1)
                with m.If(~last_mcu):
                    m.d.sync += int_cnt.eq(Mux(int_end, 0, int_cnt + 1))
            with m.Else():
                with m.If(last_in_comp):
                    m.d.sync += [bx.eq(0), by.eq(0), j.eq(j + 1)]
                with m.Elif(bx_last):
                    m.d.sync += [bx.eq(0), by.eq(by + 1)]
                with m.Else():
                    m.d.sync += bx.eq(bx + 1)

        # a block starts (DC symbol) once a coefficient buffer is claimed in the same clock
        fire = bits_ok & (~is_dc | (self.can_claim & gate_ok))

        # The buffer's consuming clocks from registers, not the state decode: ``ph`` is 0
        # outside SYM, and ``in_align`` is the ALIGN state.
        in_align = Signal()
        m.d.comb += [self.claim.eq(0), pop.eq(in_align), sym_go.eq(ph == 3),
                     align_go.eq(in_align), consuming.eq(ph[1] | in_align)]
        with m.FSM(name="entropy"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [mcu_x.eq(0), mcu_y.eq(0), j.eq(0), bx.eq(0), by.eq(0),
                                 int_cnt.eq(0), int_no.eq(0), is_dc.eq(1), k.eq(0), ph.eq(0)]
                    m.d.sync += [preds[q].eq(0) for q in range(3)]
                    m.next = "INIT"
            with m.State("INIT"):           # the scan's table selectors are valid now
                m.d.sync += tbl.eq(self.s_dc[0])
                m.next = "SYM"
            with m.State("SYM"):
                with m.If(ph == 0):
                    with m.If(fire):
                        m.d.comb += self.claim.eq(is_dc)
                        m.d.sync += ph.eq(1)
                with m.Elif(ph == 1):
                    m.d.sync += ph.eq(2)
                with m.Elif(ph == 2):
                    m.d.sync += ph.eq(3)
                with m.Else():
                    # the buffer consumes the symbol whatever its verdict (a stopping verdict
                    # ends the scan), so that the verdicts do not gate the buffer (``sym_go``)
                    m.d.sync += [ph.eq(0), tbl.eq(tbl_next)]
                    with m.If(~p3_ok):
                        fail(S.BAD_HUFFMAN)
                    with m.Elif(p3_ovr):
                        fail(Mux(head.rst, S.BAD_RESTART, S.TRUNCATED))
                    with m.Elif(is_dc):
                        m.d.sync += [is_dc.eq(0), k.eq(1)]
                    with m.Else():
                        with m.If(p3_eob):
                            block_end()
                        with m.Elif(p3_run_over):
                            fail(S.BAD_COEFFICIENT)
                        with m.Else():
                            m.d.sync += k.eq(p3_knew + 1)
                            with m.If(p3_run_end):
                                block_end()
                # stage 2's verdict is on an earlier symbol: it wins (in any phase: ``ph`` is
                # 0 outside SYM, as ``consuming``/``sym_go`` read it alone)
                with m.If(dc_bad):
                    fail(S.BAD_COEFFICIENT)
                    m.d.sync += ph.eq(0)
            with m.State("IEND0"):
                m.next = "IEND"
            with m.State("IEND"):
                with m.If(~p1_have_end):
                    with m.If(nbits8):
                        fail(S.BAD_RESTART)
                with m.Elif(left >= 8):
                    fail(S.BAD_RESTART)
                with m.Elif(head.rst & (head.term == int_no)):
                    m.d.sync += [align.eq(left[:3]), in_align.eq(1)]
                    m.next = "ALIGN"
                with m.Else():
                    fail(Mux(~head.rst & head.eof, S.TRUNCATED, S.BAD_RESTART))
            with m.State("ALIGN"):          # the bits up to the RSTn marker's byte boundary
                m.d.sync += [int_no.eq(int_no + 1), in_align.eq(0)]
                m.d.sync += [preds[q].eq(0) for q in range(3)]
                m.next = "SYM"
            with m.State("SEND0"):
                m.next = "SEND"
            with m.State("SEND"):
                with m.If(~p1_have_end):
                    with m.If(nbits8):
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
