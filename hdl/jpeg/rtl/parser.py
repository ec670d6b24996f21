"""The marker parser: the JPEG file's bytes in, tables into RAM, the scan's data bytes out.

One byte per clock, the same state machine as :mod:`hdl.jpeg.markers`:

* header (SOI .. SOS): marker, 16-bit length, payload. DQT entries and DHT symbols go to the
  table RAMs (``q_*``, ``s_*`` write ports), DHT code counts become the canonical
  ``lim``/``base`` registers of the entropy decoder (``l_*``), SOF/SOS/DRI fill the frame and
  scan registers. A segment's content errors are kept until its last byte, as the golden model
  reads the whole segment first (a truncated segment is TRUNCATED whatever it holds).
* scan: removes FF00 stuffing and FF fill bytes; data bytes go out on ``bo``, and every marker
  that ends a restart segment becomes a ``bnd`` beat (its byte position in the unstuffed data,
  RSTn number or "other marker"/end of file). After the last segment the entropy decoder reads
  zeros (``zfill``) as the golden model does past the end of its data.
* trailer (after the scan .. EOI): checked only; tables are not written.

On an error the parser records the code (``res_code``), drains the input up to ``last`` and
waits in DONE for ``go`` (the top's next image). ``abort`` makes it drain at once (the entropy
decoder found an error). Every state leaves on ``last``, so it never waits for bytes that will
not come.

Register stages (for 100+ MHz; the scan keeps one byte per clock, headers lose a few clocks
per segment):

1. input stage: the byte, ``last`` and the byte's decoded classes (FF/00/RSTn, the marker's
   action in the header and in the trailer, small length values) are registered; the state
   machine works on these. Full rate (it refills in the clock its byte is taken); after a
   ``last`` it takes nothing until ``go``.
2. state machine: one payload byte per clock. The payload length and the bytes left are
   counters, not ``off`` compares.
3. behind it, a clock later: the table write ports (``q_*``, ``s_*``, ``l_*``, registered);
   the DHT count checks (code space, symbol total against the remaining length, from
   registered operands, ``d_*``); the tables' "defined" bits (``q_def``/``h_def``, once
   ``perr`` holds those checks).
4. segment verdict, three clocks after the last payload byte: SEGEND registers the kind's
   checks (length/dimension compares), SEGCHK the first failing check's code, SEGACT acts
   (next state, ``res_code``, frame/scan registers, ``start``).
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .consts import S

__all__ = ["MarkerParser", "InByte", "Boundary"]

InByte = data.StructLayout({"byte": unsigned(8), "last": unsigned(1)})
#: A restart-segment boundary: ``pos`` = unstuffed data bytes before it; ``rst`` = 1 for RSTn
#: (``term`` = n), 0 for another marker or the end of the file (``eof``).
Boundary = data.StructLayout({"pos": unsigned(32), "term": unsigned(3), "rst": unsigned(1),
                              "eof": unsigned(1)})

# payload kinds
K_SOF, K_DQT, K_DHT, K_DRI, K_SOS, K_APP0, K_APP14, K_SKIP = range(8)

_SOF_LOSSLESS = (0xC3, 0xC7, 0xCB, 0xCF)
_SOF_PROGRESSIVE = (0xC2, 0xC6, 0xCA, 0xCE, 0xC5)
_SOF_ARITHMETIC = (0xC9, 0xCD)


def _in(x, values):
    out = Const(0, 1)
    for v in values:
        out = out | (x == v)
    return out


class MarkerParser(wiring.Component):
    def __init__(self, max_width: int, max_height: int):
        self.max_width = max_width
        self.max_height = max_height
        super().__init__({
            "i": In(stream.Signature(InByte)),
            "bo": Out(stream.Signature(unsigned(8))),
            "bnd": Out(stream.Signature(Boundary)),
            "zfill": Out(1),
            # table writes
            "q_we": Out(1), "q_addr": Out(8), "q_data": Out(8),
            "s_we": Out(1), "s_addr": Out(11), "s_data": Out(8),
            "l_we": Out(1), "l_tbl": Out(3), "l_len": Out(4), "l_lim": Out(17),
            "l_base": Out(signed(20)),
            # frame
            "header_valid": Out(1), "width": Out(16), "height": Out(16),
            "three": Out(1), "h2": Out(1), "v2": Out(1),
            "tq": Out(data.ArrayLayout(2, 3)),
            # scan
            "ns": Out(2), "s_fidx": Out(data.ArrayLayout(2, 3)),
            "s_dc": Out(data.ArrayLayout(4, 3)), "s_ac": Out(data.ArrayLayout(4, 3)),
            "ri": Out(16),
            # control
            "go": In(1), "abort": In(1),
            "start": Out(1),        # pulse: SOS accepted, the scan config is valid
            "started": Out(1),      # held: the scan started (results are trailer results)
            "res_valid": Out(1), "res_code": Out(8),
            "at_end": Out(1),       # `last` consumed, waiting for go
        })

    def elaborate(self, platform):
        m = Module()
        # ---- input stage ----------------------------------------------------------------------
        # The state machine works on a registered copy of the input byte together with its
        # decoded classes (marker kinds, FF/00/RSTn, length field values), so no byte compare
        # sits in front of its next-state logic. Full rate: the stage takes a byte whenever
        # it is empty or its byte is taken (``take``). After a byte with ``last`` it takes
        # nothing until ``go``, as the parser takes no byte of the next file before then.
        byte = Signal(8)
        last = Signal()
        valid = Signal()
        take = Signal()             # the state machine takes the staged byte
        eof_in = Signal()
        ib = self.i.payload.byte
        # Marker classes for ``dispatch`` (``h_beg``/``t_beg``: the marker begins a segment in
        # the header / the trailer; the same set of markers, of different kinds there).
        dqt, dht, dri = ib == 0xDB, ib == 0xC4, ib == 0xDD
        app0, app14, eoi = ib == 0xE0, ib == 0xEE, ib == 0xD9
        skip = ((ib >= 0xE0) & (ib <= 0xEF)) | (ib == 0xFE) | (ib == 0xDC)
        sof_t = (ib >= 0xC0) & (ib <= 0xCF) & (ib != 0xC4) & (ib != 0xCC) & (ib != 0xC8)
        dec = {
            "ff": ib == 0xFF, "00": ib == 0x00, "d8": ib == 0xD8, "rst": ib[3:] == 0xD0 >> 3,
            "lt2": ib < 2, "eq2": ib == 2, "eq3": ib == 3,
            "tem": ib == 0x01, "sof01": (ib == 0xC0) | (ib == 0xC1), "sos": ib == 0xDA,
            "h_beg": dqt | dht | dri | skip,
            "dqt": dqt, "dht": dht, "dri": dri, "app0": app0, "app14": app14,
            "lossless": _in(ib, _SOF_LOSSLESS),
            "prog": _in(ib, _SOF_PROGRESSIVE + (0xDE, 0xDF)),
            "arith": _in(ib, _SOF_ARITHMETIC + (0xCC,)), "eoi": eoi, "sof_t": sof_t,
            "t_beg": dqt | dht | dri | skip,
        }
        fl = {k: Signal(name=f"in_{k}") for k in dec}
        m.d.comb += self.i.ready.eq(~eof_in & (~valid | take))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [byte.eq(ib), last.eq(self.i.payload.last), valid.eq(1),
                         *[fl[k].eq(v) for k, v in dec.items()]]
            with m.If(self.i.payload.last):
                m.d.sync += eof_in.eq(1)
        with m.Elif(take):
            m.d.sync += valid.eq(0)

        trailer = Signal()          # after the scan
        eof_seen = Signal()
        kind = Signal(3)
        len_hi = Signal(8)
        len_hi0 = Signal()          # len_hi == 0
        off = Signal(16)            # payload offset of the current byte
        perr = Signal(8)            # first content error of the segment (0 = none)
        # The segment's payload length and the bytes left after the current one are kept in
        # registers (set from the length field, then counted down) rather than derived from
        # ``off`` per byte: no subtract/compare chain in front of the byte's next state.
        plen = Signal(16)
        rem_after = Signal(16)      # payload bytes after the current one
        pay_last = Signal()         # the current payload byte is the segment's last

        # A DHT code count's checks (code space overflow, symbol total against the segment's
        # remaining length) need an add and a compare after the byte; they are made one clock
        # later from registered copies (``d_*``), and their error counts as the segment's
        # first (``dly_err``) ahead of any error of the byte after. DHT errors are all
        # BAD_TABLE, which SEGEND reads through ``perr_now``.
        d_chk = Signal()
        d_last = Signal()
        d_hpos = Signal(5)
        d_newcode = Signal(18)
        d_tot = Signal(12)
        d_rem = Signal(16)
        dly_err = Signal()
        m.d.comb += dly_err.eq(d_chk & ((d_newcode > (Const(1, 18) << d_hpos)) |
                                        (d_last & ((d_tot > 256) | (d_rem < d_tot)))))
        m.d.sync += d_chk.eq(0)
        perr_ok = (perr == 0) & ~dly_err
        perr_now = Mux(perr != 0, perr, Mux(dly_err, S.BAD_TABLE, 0))
        with m.If(dly_err & (perr == 0)):
            m.d.sync += perr.eq(S.BAD_TABLE)

        def set_perr(cond, code):
            with m.If(cond & perr_ok):
                m.d.sync += perr.eq(code)

        res_code, res_valid = self.res_code, self.res_valid
        mark_eof = Mux(trailer, S.MISSING_EOI, S.TRUNCATED)

        def finish(code, eof):
            m.d.sync += [res_code.eq(code), res_valid.eq(1)]
            with m.If(eof):
                m.next = "DONE"
            with m.Else():
                m.next = "DRAIN"

        def goto(state, eof, eof_code):
            with m.If(eof):
                finish(eof_code, 1)
            with m.Else():
                m.next = state

        # ---- frame / scan / table state -----------------------------------------------------
        q_def = Signal(4)
        h_def = Signal(8)           # bit tc*4 + th
        # A table's "defined" bit is set the clock after its last byte, once ``perr`` holds
        # every error up to that byte (the delayed DHT checks included); the last byte's own
        # errors are excluded where the request is made, as they would have been.
        q_req = Signal(4)
        h_req = Signal(8)
        m.d.sync += [q_req.eq(0), h_req.eq(0)]
        with m.If(perr == 0):
            m.d.sync += [q_def.eq(q_def | q_req), h_def.eq(h_def | h_req)]
        jfif = Signal()
        adobe_valid = Signal()
        adobe = Signal(8)
        app_match = Signal()
        prec = Signal(8)
        f_h = Signal(16)
        f_w = Signal(16)
        nf = Signal(8)
        comp_err = Signal()
        seen = [Signal(32, name=f"seen{w}") for w in range(8)]   # component ids seen (SOF)
        cid = Array(Signal(8, name=f"cid{k}") for k in range(3))
        c_h = Array(Signal(4, name=f"ch{k}") for k in range(3))
        c_v = Array(Signal(4, name=f"cv{k}") for k in range(3))
        c_tq = Array(Signal(2, name=f"ctq{k}") for k in range(3))
        ci = Signal(8)              # component index within SOF / SOS
        cf = Signal(2)              # field within the component
        # DQT / DHT
        tpos = Signal(7)
        cur_tq = Signal(2)
        hpos = Signal(5)
        tc = Signal(1)
        th = Signal(2)
        code = Signal(18)
        idx = Signal(12)
        total = Signal(12)
        sym_i = Signal(9)
        sym_last = Signal()         # the next symbol byte is the table's last (sym_i + 1 == total)
        in_syms = Signal()
        # DRI
        ri_tmp = Signal(16)
        # SOS
        ns = Signal(8)
        used = Signal(3)
        sos_bad = Signal()
        s_td = Array(Signal(4, name=f"std{k}") for k in range(3))
        s_ta = Array(Signal(4, name=f"sta{k}") for k in range(3))
        s_fidx = Array(Signal(2, name=f"sfidx{k}") for k in range(3))
        ss = Signal(8)
        se = Signal(8)
        ahal = Signal(8)
        # scan
        cnt = Signal(32)
        same_cnt = Signal(2)

        # Table writes leave through a register: the RAMs and lim/base registers they feed
        # are read only after the SOS, long after the DQT/DHT that writes them.
        tw = {n: Signal.like(getattr(self, n), name=f"tw_{n}") for n in
              ("q_we", "q_addr", "q_data", "s_we", "s_addr", "s_data",
               "l_we", "l_tbl", "l_len", "l_lim", "l_base")}
        for n, sig in tw.items():
            m.d.sync += getattr(self, n).eq(sig)
        (tw_q_we, tw_q_addr, tw_q_data, tw_s_we, tw_s_addr, tw_s_data,
         tw_l_we, tw_l_tbl, tw_l_len, tw_l_lim, tw_l_base) = tw.values()

        # The write data and the delayed checks' operands do not wait for the state decode;
        # only the write enables and ``d_chk`` do.
        newcode = Signal(18)
        m.d.comb += [
            newcode.eq(code + byte),
            tw_q_addr.eq(Cat((tpos - 1)[:6], cur_tq)), tw_q_data.eq(byte),
            tw_s_addr.eq(Cat(sym_i[:8], th, tc)), tw_s_data.eq(byte),
            tw_l_tbl.eq(Cat(th, tc)), tw_l_len.eq((hpos - 1)[:4]),
            tw_l_lim.eq(newcode << (16 - hpos)[:5].as_unsigned()),
            tw_l_base.eq(idx - code),
        ]
        m.d.sync += [d_last.eq(hpos == 16), d_hpos.eq(hpos), d_newcode.eq(newcode),
                     d_tot.eq(total + byte), d_rem.eq(rem_after)]

        # defaults
        m.d.comb += [tw_q_we.eq(0), tw_s_we.eq(0), tw_l_we.eq(0), self.start.eq(0)]
        m.d.comb += self.ns.eq(ns[:2])
        for k in range(3):
            m.d.comb += [self.tq[k].eq(c_tq[k]), self.s_fidx[k].eq(s_fidx[k])]

        # ---- boundary push with de-duplication ---------------------------------------------
        # The entropy decoder needs at most two boundaries at one position (an empty restart
        # segment always ends the scan with an error), so a third one is dropped; this bounds
        # the boundary FIFO's occupancy per unstuffed byte.
        b_try = Signal()
        b_rst = Signal()
        b_term = Signal(3)
        b_eof = Signal()
        b_drop = Signal()
        b_done = Signal()
        # ``at_bpos``: the last boundary pushed is at ``cnt`` (a data byte moves ``cnt`` past it,
        # a boundary catches up; never both in one clock), a flag instead of a 32-bit compare
        # in front of the boundary handshake.
        at_bpos = Signal(init=1)
        m.d.comb += [
            b_drop.eq(at_bpos & same_cnt[1]),
            self.bnd.valid.eq(b_try & ~b_drop),
            self.bnd.payload.pos.eq(cnt),
            self.bnd.payload.term.eq(b_term),
            self.bnd.payload.rst.eq(b_rst),
            self.bnd.payload.eof.eq(b_eof),
            b_done.eq(b_try & (b_drop | self.bnd.ready)),
        ]
        with m.If(b_done):
            with m.If(at_bpos):
                with m.If(same_cnt < 3):
                    m.d.sync += same_cnt.eq(same_cnt + 1)
            with m.Else():
                m.d.sync += [same_cnt.eq(1), at_bpos.eq(1)]
        with m.If(self.bo.valid & self.bo.ready):
            m.d.sync += [cnt.eq(cnt + 1), at_bpos.eq(0)]

        # ---- marker dispatch ----------------------------------------------------------------
        def begin_segment(k):
            m.d.sync += kind.eq(k)
            goto("LEN0", last, S.TRUNCATED)

        def dispatch():
            with m.If(trailer):
                with m.If(fl["t_beg"]):
                    begin_segment(Mux(fl["dqt"], K_DQT, Mux(fl["dht"], K_DHT, K_SKIP)))
                with m.Elif(fl["tem"]):
                    goto("MARK0", last, mark_eof)
                with m.Else():
                    finish(Mux(fl["eoi"], S.OK, Mux(fl["sos"], S.MULTI_SCAN, Mux(
                        fl["sof_t"], S.BAD_HEADER, S.BAD_MARKER))), last)
            with m.Elif(fl["sof01"]):
                with m.If(self.header_valid):
                    finish(S.BAD_HEADER, last)
                with m.Else():
                    begin_segment(K_SOF)
            with m.Elif(fl["sos"]):
                with m.If(self.header_valid):
                    begin_segment(K_SOS)
                with m.Else():
                    finish(S.BAD_HEADER, last)
            with m.Elif(fl["h_beg"]):
                begin_segment(Mux(fl["dqt"], K_DQT, Mux(fl["dht"], K_DHT, Mux(
                    fl["dri"], K_DRI, Mux(fl["app0"], K_APP0, Mux(fl["app14"], K_APP14,
                                                                  K_SKIP))))))
            with m.Elif(fl["tem"]):
                goto("MARK0", last, mark_eof)
            with m.Else():
                finish(Mux(fl["lossless"], S.UNSUPPORTED_LOSSLESS, Mux(
                    fl["prog"], S.UNSUPPORTED_PROGRESSIVE, Mux(
                        fl["arith"], S.UNSUPPORTED_ARITHMETIC, Mux(
                            fl["eoi"], S.BAD_HEADER, S.BAD_MARKER)))), last)

        # ---- payload bytes ------------------------------------------------------------------
        def payload_byte(b):
            with m.Switch(kind):
                with m.Case(K_SOF):
                    with m.Switch(off):
                        with m.Case(0):
                            m.d.sync += prec.eq(b)
                        with m.Case(1):
                            m.d.sync += f_h[8:].eq(b)
                        with m.Case(2):
                            m.d.sync += f_h[:8].eq(b)
                        with m.Case(3):
                            m.d.sync += f_w[8:].eq(b)
                        with m.Case(4):
                            m.d.sync += f_w[:8].eq(b)
                        with m.Case(5):
                            m.d.sync += [nf.eq(b), ci.eq(0), cf.eq(0)]
                        with m.Default():
                            with m.Switch(cf):
                                with m.Case(0):
                                    with m.If(Array(seen)[b[5:]].bit_select(b[:5], 1)):
                                        m.d.sync += comp_err.eq(1)
                                    for w in range(8):
                                        with m.If(b[5:] == w):
                                            m.d.sync += seen[w].eq(seen[w] |
                                                                   (Const(1, 1) << b[:5]))
                                    with m.If(ci < 3):
                                        m.d.sync += cid[ci[:2]].eq(b)
                                    m.d.sync += cf.eq(1)
                                with m.Case(1):
                                    hh, vv = b[4:], b[:4]
                                    with m.If((hh < 1) | (hh > 4) | (vv < 1) | (vv > 4)):
                                        m.d.sync += comp_err.eq(1)
                                    with m.If(ci < 3):
                                        m.d.sync += [c_h[ci[:2]].eq(hh), c_v[ci[:2]].eq(vv)]
                                    m.d.sync += cf.eq(2)
                                with m.Default():
                                    with m.If(b > 3):
                                        m.d.sync += comp_err.eq(1)
                                    with m.If(ci < 3):
                                        m.d.sync += c_tq[ci[:2]].eq(b[:2])
                                    m.d.sync += [cf.eq(0), ci.eq(ci + 1)]
                with m.Case(K_DQT):
                    with m.If(tpos == 0):
                        pq, tq = b[4:], b[:4]
                        set_perr(pq == 1, S.UNSUPPORTED_PRECISION)
                        set_perr((pq != 1) & ((pq != 0) | (tq > 3)), S.BAD_TABLE)
                        set_perr((pq == 0) & (tq <= 3) & (rem_after < 64), S.BAD_TABLE)
                        m.d.sync += [cur_tq.eq(tq[:2]), tpos.eq(1)]
                    with m.Else():
                        set_perr(b == 0, S.BAD_TABLE)
                        m.d.comb += tw_q_we.eq(~trailer & perr_ok)
                        with m.If(tpos == 64):
                            m.d.sync += tpos.eq(0)
                            with m.If(~trailer & (b != 0)):
                                m.d.sync += q_req.eq(1 << cur_tq)
                        with m.Else():
                            m.d.sync += tpos.eq(tpos + 1)
                with m.Case(K_DHT):
                    tbl = Cat(th, tc)
                    with m.If(in_syms):
                        set_perr((tc == 0) & (b > 15), S.BAD_TABLE)
                        m.d.comb += tw_s_we.eq(~trailer & perr_ok)
                        m.d.sync += [sym_i.eq(sym_i + 1),
                                     sym_last.eq((sym_i + 1)[:9] + 1 == total)]
                        with m.If(sym_last):
                            m.d.sync += [in_syms.eq(0), hpos.eq(0)]
                            with m.If(~trailer & ~((tc == 0) & (b > 15))):
                                m.d.sync += h_req.eq(1 << tbl)
                    with m.Elif(hpos == 0):
                        t_c, t_h = b[4:], b[:4]
                        set_perr((t_c > 1) | (t_h > 3), S.BAD_TABLE)
                        set_perr(rem_after < 16, S.BAD_TABLE)
                        m.d.sync += [tc.eq(t_c[0]), th.eq(t_h[:2]), hpos.eq(1), code.eq(0),
                                     idx.eq(0), total.eq(0)]
                    with m.Else():
                        m.d.sync += d_chk.eq(1)
                        m.d.comb += tw_l_we.eq(~trailer & perr_ok)
                        m.d.sync += [idx.eq(idx + b), code.eq(newcode << 1),
                                     total.eq(total + b)]
                        with m.If(hpos == 16):
                            m.d.sync += [sym_i.eq(0),
                                         sym_last.eq(((total == 0) & (b == 1)) |
                                                     ((total == 1) & (b == 0)))]
                            # total + b cannot wrap (16 counts of at most 255 fit 12 bits)
                            with m.If((total == 0) & (b == 0)):
                                # no symbols: every count was 0, so the code space is fine
                                m.d.sync += hpos.eq(0)
                                with m.If(~trailer):
                                    m.d.sync += h_req.eq(1 << tbl)
                            with m.Else():
                                m.d.sync += in_syms.eq(1)
                        with m.Else():
                            m.d.sync += hpos.eq(hpos + 1)
                with m.Case(K_DRI):
                    with m.If(off == 0):
                        m.d.sync += ri_tmp[8:].eq(b)
                    with m.If(off == 1):
                        m.d.sync += ri_tmp[:8].eq(b)
                with m.Case(K_SOS):
                    with m.If(off == 0):
                        m.d.sync += [ns.eq(b), ci.eq(0), used.eq(0)]
                    with m.Elif((off[0] == 1) & (ci < ns)):       # component selector
                        hit = [(cid[k] == b) & ((k == 0) | self.three) for k in range(3)]
                        fi = Mux(hit[0], 0, Mux(hit[1], 1, 2))
                        any_hit = hit[0] | hit[1] | hit[2]
                        with m.If(~any_hit | (used >> fi)[0] | (ci >= 3)):
                            m.d.sync += sos_bad.eq(1)
                        m.d.sync += used.eq(used | (1 << fi))
                        with m.If(ci < 3):
                            m.d.sync += s_fidx[ci[:2]].eq(fi)
                    with m.Elif((off[0] == 0) & (ci < ns)):       # table selectors
                        with m.If((b[4:] > 3) | (b[:4] > 3)):
                            m.d.sync += sos_bad.eq(1)
                        with m.If(ci < 3):
                            m.d.sync += [s_td[ci[:2]].eq(b[4:]), s_ta[ci[:2]].eq(b[:4])]
                        m.d.sync += ci.eq(ci + 1)
                    with m.Elif(off == 1 + 2 * ns):
                        m.d.sync += ss.eq(b)
                    with m.Elif(off == 2 + 2 * ns):
                        m.d.sync += se.eq(b)
                    with m.Elif(off == 3 + 2 * ns):
                        m.d.sync += ahal.eq(b)
                with m.Case(K_APP0, K_APP14):
                    tag = Mux(kind == K_APP0, Const(int.from_bytes(b"JFIF\0", "little"), 40),
                              Const(int.from_bytes(b"Adobe", "little"), 40))
                    with m.If(off < 5):
                        with m.If(b != (tag >> (off[:3] * 8))[:8]):
                            m.d.sync += app_match.eq(0)
                    with m.If(off == 11):
                        m.d.sync += ri_tmp[:8].eq(b)     # Adobe transform byte (scratch)

        # ---- segment verdicts ---------------------------------------------------------------
        # Decided over three clocks after the segment's last byte: SEGEND registers each check
        # of the segment's kind (``v_flags``; the wide length/dimension compares end there),
        # SEGCHK turns them into the error code in the golden model's priority order
        # (``v_code``, 0 = none), SEGACT acts on it (next state, frame/scan registers).
        v_flags = Signal(8)
        v_perr = Signal(8)
        v_code = Signal(8)
        v_codes = {}                # kind -> the codes of its checks, by priority

        def segment_check():
            """SEGEND: the checks of the segment's kind."""
            def verdict(kd, *checks):
                v_codes[kd] = [c for _, c in checks]
                m.d.sync += v_flags.eq(Cat(*[cond for cond, _ in checks]))

            with m.Switch(kind):
                with m.Case(K_SOF):
                    w_ok = (f_w != 0) & (f_h != 0) & (f_w <= self.max_width) & \
                           (f_h <= self.max_height)
                    l12 = lambda k: (c_h[k] >= 1) & (c_h[k] <= 2) & (c_v[k] >= 1) & (c_v[k] <= 2)
                    one = lambda k: (c_h[k] == 1) & (c_v[k] == 1)
                    samp_ok = Mux(nf == 1, l12(0), l12(0) & one(1) & one(2))
                    verdict(K_SOF, (plen < 6, S.BAD_HEADER),
                            (prec != 8, S.UNSUPPORTED_PRECISION),
                            ((nf == 0) | (plen != 6 + (nf << 1) + nf), S.BAD_HEADER),
                            (comp_err, S.BAD_HEADER),
                            ((nf != 1) & (nf != 3), S.UNSUPPORTED_COMPONENTS),
                            (~w_ok, S.BAD_DIMENSIONS),
                            (~samp_ok, S.UNSUPPORTED_SAMPLING))
                with m.Case(K_DQT, K_DHT):
                    m.d.sync += v_perr.eq(perr_now)
                with m.Case(K_DRI):
                    verdict(K_DRI, (~trailer & (plen != 2), S.BAD_HEADER))
                with m.Case(K_SOS):
                    n_frame = Mux(self.three, 3, 1)
                    ids_rgb = (cid[0] == 82) & (cid[1] == 71) & (cid[2] == 66)
                    rgb = self.three & ~jfif & Mux(adobe_valid, adobe == 0, ids_rgb)
                    q_ok = (q_def >> c_tq[0])[0] & (~self.three | ((q_def >> c_tq[1])[0] &
                                                                    (q_def >> c_tq[2])[0]))
                    h_ok = Const(1, 1)
                    for k in range(3):
                        dc_ok = (h_def >> s_td[k][:2])[0] | (s_td[k] <= 1)
                        ac_ok = (h_def >> (4 + s_ta[k][:2]))[0] | (s_ta[k] <= 1)
                        h_ok = h_ok & ((k >= ns) | (dc_ok & ac_ok))
                    hdr_bad = ((ns < 1) | (ns > 4) | (plen != 4 + (ns << 1)) | sos_bad |
                               (ss != 0) | (se != 63) | (ahal != 0))
                    verdict(K_SOS, (hdr_bad, S.BAD_HEADER),
                            (ns != n_frame, S.MULTI_SCAN),
                            (rgb, S.UNSUPPORTED_COMPONENTS),
                            (~q_ok | ~h_ok, S.BAD_TABLE))

        def segment_prio():
            """SEGCHK: the first failed check's code."""
            with m.Switch(kind):
                for kd, codes in v_codes.items():
                    with m.Case(kd):
                        with m.If(v_flags[0]):
                            m.d.sync += v_code.eq(codes[0])
                        for n, c in enumerate(codes[1:], 1):
                            with m.Elif(v_flags[n]):
                                m.d.sync += v_code.eq(c)
                        with m.Else():
                            m.d.sync += v_code.eq(0)
                with m.Case(K_DQT, K_DHT):
                    m.d.sync += v_code.eq(v_perr)
                with m.Default():
                    m.d.sync += v_code.eq(0)

        def segment_end():
            """SEGACT: acts on the verdict."""
            nxt_eof = eof_seen
            with m.If(v_code != 0):
                finish(v_code, nxt_eof)
            with m.Else():
                with m.Switch(kind):
                    with m.Case(K_SOF):
                        m.d.sync += [self.header_valid.eq(1), self.width.eq(f_w),
                                     self.height.eq(f_h), self.three.eq(nf == 3),
                                     self.h2.eq((nf == 3) & (c_h[0] == 2)),
                                     self.v2.eq((nf == 3) & (c_v[0] == 2))]
                        goto("MARK0", nxt_eof, mark_eof)
                    with m.Case(K_DRI):
                        with m.If(~trailer):
                            m.d.sync += self.ri.eq(ri_tmp)
                        goto("MARK0", nxt_eof, mark_eof)
                    with m.Case(K_APP0):
                        with m.If(app_match & (plen >= 14)):
                            m.d.sync += jfif.eq(1)
                        goto("MARK0", nxt_eof, mark_eof)
                    with m.Case(K_APP14):
                        with m.If(app_match & (plen >= 12)):
                            m.d.sync += [adobe_valid.eq(1), adobe.eq(ri_tmp[:8])]
                        goto("MARK0", nxt_eof, mark_eof)
                    with m.Case(K_SOS):
                        for k in range(3):
                            m.d.sync += [
                                self.s_dc[k].eq(Mux((h_def >> s_td[k][:2])[0], s_td[k][:2],
                                                    8 + s_td[k][:2])),
                                self.s_ac[k].eq(Mux((h_def >> (4 + s_ta[k][:2]))[0],
                                                    4 + s_ta[k][:2], 10 + s_ta[k][:2])),
                            ]
                        m.d.comb += self.start.eq(1)
                        m.d.sync += [self.started.eq(1), trailer.eq(1)]
                        with m.If(nxt_eof):
                            m.next = "PUSH_EOF"
                        with m.Else():
                            m.next = "SCAN"
                    with m.Default():
                        goto("MARK0", nxt_eof, mark_eof)

        # ---- the state machine --------------------------------------------------------------
        fsm_ready = Signal()
        m.d.comb += [self.bo.valid.eq(0), self.bo.payload.eq(byte), fsm_ready.eq(0),
                     take.eq(valid & fsm_ready)]
        with m.FSM(name="parser"):
            with m.State("SOI0"):
                m.d.comb += fsm_ready.eq(1)
                with m.If(valid):
                    with m.If(~fl["ff"]):
                        finish(S.NOT_JPEG, last)
                    with m.Else():
                        goto("SOI1", last, S.NOT_JPEG)
            with m.State("SOI1"):
                m.d.comb += fsm_ready.eq(1)
                with m.If(valid):
                    with m.If(~fl["d8"]):
                        finish(S.NOT_JPEG, last)
                    with m.Else():
                        goto("MARK0", last, S.TRUNCATED)
            with m.State("MARK0"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += fsm_ready.eq(1)
                    with m.If(valid):
                        with m.If(~fl["ff"]):
                            finish(S.BAD_MARKER, last)
                        with m.Else():
                            goto("MARKF", last, mark_eof)
            with m.State("MARKF"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += fsm_ready.eq(1)
                    with m.If(valid):
                        with m.If(fl["ff"]):
                            goto("MARKF", last, mark_eof)
                        with m.Elif(fl["00"]):
                            finish(S.BAD_MARKER, last)
                        with m.Else():
                            dispatch()
            with m.State("LEN0"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += fsm_ready.eq(1)
                    with m.If(valid):
                        m.d.sync += [len_hi.eq(byte), len_hi0.eq(fl["00"])]
                        goto("LEN1", last, S.TRUNCATED)
            with m.State("LEN1"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += fsm_ready.eq(1)
                    with m.If(valid):
                        ln = Cat(byte, len_hi)
                        m.d.sync += [plen.eq(ln - 2), rem_after.eq(ln - 3),
                                     pay_last.eq(len_hi0 & fl["eq3"]), off.eq(0), perr.eq(0),
                                     eof_seen.eq(last),
                                     tpos.eq(0), hpos.eq(0), in_syms.eq(0), comp_err.eq(0),
                                     *[sw.eq(0) for sw in seen], sos_bad.eq(0), app_match.eq(1),
                                     prec.eq(0), nf.eq(0), ss.eq(0), se.eq(0), ahal.eq(0),
                                     ci.eq(0), cf.eq(0)]
                        with m.If(len_hi0 & fl["lt2"]):
                            finish(Mux((kind == K_DQT) | (kind == K_DHT), S.BAD_TABLE,
                                       S.BAD_HEADER), last)
                        with m.Elif(len_hi0 & fl["eq2"]):
                            m.next = "SEGEND"
                        with m.Else():
                            goto("PAY", last, S.TRUNCATED)
            with m.State("PAY"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += fsm_ready.eq(1)
                    with m.If(valid):
                        payload_byte(byte)
                        m.d.sync += [off.eq(off + 1), rem_after.eq(rem_after - 1),
                                     pay_last.eq(rem_after == 1)]
                        with m.If(pay_last):
                            m.d.sync += eof_seen.eq(last)
                            m.next = "SEGEND"
                        with m.Else():
                            goto("PAY", last, S.TRUNCATED)
            with m.State("SEGEND"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    segment_check()
                    m.next = "SEGCHK"
            with m.State("SEGCHK"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    segment_prio()
                    m.next = "SEGACT"
            with m.State("SEGACT"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    segment_end()
            # ---- entropy-coded data ----
            with m.State("SCAN"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    with m.If(~fl["ff"]):
                        m.d.comb += [self.bo.valid.eq(valid), fsm_ready.eq(self.bo.ready)]
                    with m.Else():
                        m.d.comb += fsm_ready.eq(1)
                    with m.If(valid & fsm_ready):
                        with m.If(last):
                            m.next = "PUSH_EOF"
                        with m.Elif(fl["ff"]):
                            m.next = "SCANFF"
            with m.State("SCANFF"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    with m.If(fl["ff"]):
                        m.d.comb += fsm_ready.eq(1)
                    with m.Elif(fl["00"]):
                        m.d.comb += [self.bo.valid.eq(valid), self.bo.payload.eq(0xFF),
                                     fsm_ready.eq(self.bo.ready)]
                    with m.Else():
                        m.d.comb += [b_try.eq(valid), b_rst.eq(fl["rst"]), b_term.eq(byte[:3]),
                                     b_eof.eq(0), fsm_ready.eq(b_done)]
                    with m.If(valid & fsm_ready):
                        with m.If(fl["ff"] | fl["00"] | fl["rst"]):
                            with m.If(last):
                                m.next = "PUSH_EOF"
                            with m.Elif(~fl["ff"]):
                                m.next = "SCAN"
                        with m.Else():
                            m.d.sync += self.zfill.eq(1)
                            dispatch()          # in the trailer
            with m.State("PUSH_EOF"):
                m.d.comb += [b_try.eq(1), b_rst.eq(0), b_term.eq(0), b_eof.eq(1)]
                with m.If(b_done):
                    m.d.sync += [self.zfill.eq(1), res_code.eq(S.MISSING_EOI),
                                 res_valid.eq(1)]
                    m.next = "DONE"
            with m.State("DRAIN"):
                m.d.comb += fsm_ready.eq(1)
                with m.If(valid & last):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.at_end.eq(1)
                with m.If(self.go):
                    m.d.sync += [
                        trailer.eq(0), res_valid.eq(0), res_code.eq(0), self.started.eq(0),
                        self.header_valid.eq(0), self.width.eq(0), self.height.eq(0),
                        eof_in.eq(0),
                        q_def.eq(0), h_def.eq(0), jfif.eq(0), adobe_valid.eq(0),
                        self.ri.eq(0), self.zfill.eq(0), cnt.eq(0), same_cnt.eq(0),
                        at_bpos.eq(1),
                    ]
                    m.next = "SOI0"
        return m
