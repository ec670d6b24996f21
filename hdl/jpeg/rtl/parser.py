"""The marker parser: the JPEG file's bytes in, tables into RAM, the scan's data bytes out.

One byte per clock, the same state machine as :mod:`hdl.jpeg.markers`:

* header (SOI .. SOS): marker, 16-bit length, payload. DQT entries and DHT symbols go straight
  to the table RAMs (``q_*``, ``s_*`` write ports), DHT code counts become the canonical
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
        byte = self.i.payload.byte
        last = self.i.payload.last
        valid = self.i.valid

        trailer = Signal()          # after the scan
        eof_seen = Signal()
        kind = Signal(3)
        seg_len = Signal(16)
        len_hi = Signal(8)
        off = Signal(16)            # payload offset of the current byte
        perr = Signal(8)            # first content error of the segment (0 = none)
        plen = seg_len - 2
        rem_after = Signal(16)      # payload bytes after the current one
        m.d.comb += rem_after.eq(plen - off - 1)

        def set_perr(cond, code):
            with m.If(cond & (perr == 0)):
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
        last_bpos = Signal(32)
        same_cnt = Signal(2)

        # defaults
        m.d.comb += [self.q_we.eq(0), self.s_we.eq(0), self.l_we.eq(0), self.start.eq(0)]
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
        m.d.comb += [
            b_drop.eq((cnt == last_bpos) & (same_cnt >= 2)),
            self.bnd.valid.eq(b_try & ~b_drop),
            self.bnd.payload.pos.eq(cnt),
            self.bnd.payload.term.eq(b_term),
            self.bnd.payload.rst.eq(b_rst),
            self.bnd.payload.eof.eq(b_eof),
            b_done.eq(b_try & (b_drop | self.bnd.ready)),
        ]
        with m.If(b_done):
            with m.If(cnt == last_bpos):
                with m.If(same_cnt < 3):
                    m.d.sync += same_cnt.eq(same_cnt + 1)
            with m.Else():
                m.d.sync += [last_bpos.eq(cnt), same_cnt.eq(1)]
        with m.If(self.bo.valid & self.bo.ready):
            m.d.sync += cnt.eq(cnt + 1)

        # ---- marker dispatch ----------------------------------------------------------------
        def begin_segment(k):
            m.d.sync += kind.eq(k)
            goto("LEN0", last, S.TRUNCATED)

        def dispatch_header(c):
            with m.If((c == 0xC0) | (c == 0xC1)):
                with m.If(self.header_valid):
                    finish(S.BAD_HEADER, last)
                with m.Else():
                    begin_segment(K_SOF)
            with m.Elif(_in(c, _SOF_LOSSLESS)):
                finish(S.UNSUPPORTED_LOSSLESS, last)
            with m.Elif(_in(c, _SOF_PROGRESSIVE + (0xDE, 0xDF))):
                finish(S.UNSUPPORTED_PROGRESSIVE, last)
            with m.Elif(_in(c, _SOF_ARITHMETIC + (0xCC,))):
                finish(S.UNSUPPORTED_ARITHMETIC, last)
            with m.Elif(c == 0xDB):
                begin_segment(K_DQT)
            with m.Elif(c == 0xC4):
                begin_segment(K_DHT)
            with m.Elif(c == 0xDD):
                begin_segment(K_DRI)
            with m.Elif(c == 0xE0):
                begin_segment(K_APP0)
            with m.Elif(c == 0xEE):
                begin_segment(K_APP14)
            with m.Elif(((c >= 0xE0) & (c <= 0xEF)) | (c == 0xFE) | (c == 0xDC)):
                begin_segment(K_SKIP)
            with m.Elif(c == 0x01):
                goto("MARK0", last, mark_eof)
            with m.Elif(c == 0xDA):
                with m.If(self.header_valid):
                    begin_segment(K_SOS)
                with m.Else():
                    finish(S.BAD_HEADER, last)
            with m.Elif(c == 0xD9):
                finish(S.BAD_HEADER, last)
            with m.Else():
                finish(S.BAD_MARKER, last)

        def dispatch_trailer(c):
            with m.If(c == 0xD9):
                finish(S.OK, last)
            with m.Elif(c == 0xDA):
                finish(S.MULTI_SCAN, last)
            with m.Elif(c == 0xDB):
                begin_segment(K_DQT)
            with m.Elif(c == 0xC4):
                begin_segment(K_DHT)
            with m.Elif((c == 0xDD) | ((c >= 0xE0) & (c <= 0xEF)) | (c == 0xFE) | (c == 0xDC)):
                begin_segment(K_SKIP)
            with m.Elif(c == 0x01):
                goto("MARK0", last, mark_eof)
            with m.Elif((c >= 0xC0) & (c <= 0xCF) & (c != 0xC4) & (c != 0xCC) & (c != 0xC8)):
                finish(S.BAD_HEADER, last)
            with m.Else():
                finish(S.BAD_MARKER, last)

        def dispatch(c):
            with m.If(trailer):
                dispatch_trailer(c)
            with m.Else():
                dispatch_header(c)

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
                        m.d.comb += [self.q_we.eq(~trailer & (perr == 0)),
                                     self.q_addr.eq(Cat((tpos - 1)[:6], cur_tq)),
                                     self.q_data.eq(b)]
                        with m.If(tpos == 64):
                            m.d.sync += tpos.eq(0)
                            with m.If(~trailer & (perr == 0) & (b != 0)):
                                m.d.sync += q_def.eq(q_def | (1 << cur_tq))
                        with m.Else():
                            m.d.sync += tpos.eq(tpos + 1)
                with m.Case(K_DHT):
                    tbl = Cat(th, tc)
                    with m.If(in_syms):
                        set_perr((tc == 0) & (b > 15), S.BAD_TABLE)
                        m.d.comb += [self.s_we.eq(~trailer & (perr == 0)),
                                     self.s_addr.eq(Cat(sym_i[:8], tbl)),
                                     self.s_data.eq(b)]
                        m.d.sync += sym_i.eq(sym_i + 1)
                        with m.If(sym_i + 1 == total):
                            m.d.sync += [in_syms.eq(0), hpos.eq(0)]
                            with m.If(~trailer & (perr == 0) & ~((tc == 0) & (b > 15))):
                                m.d.sync += h_def.eq(h_def | (1 << tbl))
                    with m.Elif(hpos == 0):
                        t_c, t_h = b[4:], b[:4]
                        set_perr((t_c > 1) | (t_h > 3), S.BAD_TABLE)
                        set_perr(rem_after < 16, S.BAD_TABLE)
                        m.d.sync += [tc.eq(t_c[0]), th.eq(t_h[:2]), hpos.eq(1), code.eq(0),
                                     idx.eq(0), total.eq(0)]
                    with m.Else():
                        newcode = Signal(18)
                        m.d.comb += newcode.eq(code + b)
                        set_perr(newcode > (Const(1, 18) << hpos), S.BAD_TABLE)
                        m.d.comb += [self.l_we.eq(~trailer & (perr == 0)),
                                     self.l_tbl.eq(tbl), self.l_len.eq((hpos - 1)[:4]),
                                     self.l_lim.eq(newcode << (16 - hpos)[:5].as_unsigned()),
                                     self.l_base.eq(idx - code)]
                        m.d.sync += [idx.eq(idx + b), code.eq(newcode << 1),
                                     total.eq(total + b)]
                        with m.If(hpos == 16):
                            tot = total + b
                            set_perr((tot > 256) | (rem_after < tot), S.BAD_TABLE)
                            m.d.sync += sym_i.eq(0)
                            with m.If(tot == 0):
                                m.d.sync += hpos.eq(0)
                                with m.If(~trailer & (perr == 0) & ~(newcode > (1 << 16))):
                                    m.d.sync += h_def.eq(h_def | (1 << tbl))
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
        def segment_end():
            """Returns nothing; decides the segment at its end (after its last byte)."""
            nxt_eof = eof_seen
            with m.Switch(kind):
                with m.Case(K_SOF):
                    w_ok = (f_w != 0) & (f_h != 0) & (f_w <= self.max_width) & \
                           (f_h <= self.max_height)
                    l12 = lambda k: (c_h[k] >= 1) & (c_h[k] <= 2) & (c_v[k] >= 1) & (c_v[k] <= 2)
                    one = lambda k: (c_h[k] == 1) & (c_v[k] == 1)
                    samp_ok = Mux(nf == 1, l12(0), l12(0) & one(1) & one(2))
                    with m.If(plen < 6):
                        finish(S.BAD_HEADER, nxt_eof)
                    with m.Elif(prec != 8):
                        finish(S.UNSUPPORTED_PRECISION, nxt_eof)
                    with m.Elif((nf == 0) | (plen != 6 + 3 * nf)):
                        finish(S.BAD_HEADER, nxt_eof)
                    with m.Elif(comp_err):
                        finish(S.BAD_HEADER, nxt_eof)
                    with m.Elif((nf != 1) & (nf != 3)):
                        finish(S.UNSUPPORTED_COMPONENTS, nxt_eof)
                    with m.Elif(~w_ok):
                        finish(S.BAD_DIMENSIONS, nxt_eof)
                    with m.Elif(~samp_ok):
                        finish(S.UNSUPPORTED_SAMPLING, nxt_eof)
                    with m.Else():
                        m.d.sync += [self.header_valid.eq(1), self.width.eq(f_w),
                                     self.height.eq(f_h), self.three.eq(nf == 3),
                                     self.h2.eq((nf == 3) & (c_h[0] == 2)),
                                     self.v2.eq((nf == 3) & (c_v[0] == 2))]
                        goto("MARK0", nxt_eof, mark_eof)
                with m.Case(K_DQT, K_DHT):
                    with m.If(perr != 0):
                        finish(perr, nxt_eof)
                    with m.Else():
                        goto("MARK0", nxt_eof, mark_eof)
                with m.Case(K_DRI):
                    with m.If(~trailer & (plen != 2)):
                        finish(S.BAD_HEADER, nxt_eof)
                    with m.Else():
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
                    hdr_bad = ((ns < 1) | (ns > 4) | (plen != 4 + 2 * ns) | sos_bad |
                               (ss != 0) | (se != 63) | (ahal != 0))
                    with m.If(hdr_bad):
                        finish(S.BAD_HEADER, nxt_eof)
                    with m.Elif(ns != n_frame):
                        finish(S.MULTI_SCAN, nxt_eof)
                    with m.Elif(rgb):
                        finish(S.UNSUPPORTED_COMPONENTS, nxt_eof)
                    with m.Elif(~q_ok | ~h_ok):
                        finish(S.BAD_TABLE, nxt_eof)
                    with m.Else():
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
        m.d.comb += [self.bo.valid.eq(0), self.bo.payload.eq(byte), self.i.ready.eq(0)]
        with m.FSM(name="parser"):
            with m.State("SOI0"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(valid):
                    with m.If(byte != 0xFF):
                        finish(S.NOT_JPEG, last)
                    with m.Else():
                        goto("SOI1", last, S.NOT_JPEG)
            with m.State("SOI1"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(valid):
                    with m.If(byte != 0xD8):
                        finish(S.NOT_JPEG, last)
                    with m.Else():
                        goto("MARK0", last, S.TRUNCATED)
            with m.State("MARK0"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(valid):
                        with m.If(byte != 0xFF):
                            finish(S.BAD_MARKER, last)
                        with m.Else():
                            goto("MARKF", last, mark_eof)
            with m.State("MARKF"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(valid):
                        with m.If(byte == 0xFF):
                            goto("MARKF", last, mark_eof)
                        with m.Elif(byte == 0x00):
                            finish(S.BAD_MARKER, last)
                        with m.Else():
                            dispatch(byte)
            with m.State("LEN0"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(valid):
                        m.d.sync += len_hi.eq(byte)
                        goto("LEN1", last, S.TRUNCATED)
            with m.State("LEN1"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(valid):
                        ln = Cat(byte, len_hi)
                        m.d.sync += [seg_len.eq(ln), off.eq(0), perr.eq(0), eof_seen.eq(last),
                                     tpos.eq(0), hpos.eq(0), in_syms.eq(0), comp_err.eq(0),
                                     *[sw.eq(0) for sw in seen], sos_bad.eq(0), app_match.eq(1),
                                     prec.eq(0), nf.eq(0), ss.eq(0), se.eq(0), ahal.eq(0),
                                     ci.eq(0), cf.eq(0)]
                        with m.If(ln < 2):
                            finish(Mux((kind == K_DQT) | (kind == K_DHT), S.BAD_TABLE,
                                       S.BAD_HEADER), last)
                        with m.Elif(ln == 2):
                            m.next = "SEGEND"
                        with m.Else():
                            goto("PAY", last, S.TRUNCATED)
            with m.State("PAY"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(valid):
                        payload_byte(byte)
                        m.d.sync += off.eq(off + 1)
                        with m.If(off + 1 == plen):
                            m.d.sync += eof_seen.eq(last)
                            m.next = "SEGEND"
                        with m.Else():
                            goto("PAY", last, S.TRUNCATED)
            with m.State("SEGEND"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    segment_end()
            # ---- entropy-coded data ----
            with m.State("SCAN"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    with m.If(byte != 0xFF):
                        m.d.comb += [self.bo.valid.eq(valid), self.i.ready.eq(self.bo.ready)]
                    with m.Else():
                        m.d.comb += self.i.ready.eq(1)
                    with m.If(valid & self.i.ready):
                        with m.If(last):
                            m.next = "PUSH_EOF"
                        with m.Elif(byte == 0xFF):
                            m.next = "SCANFF"
            with m.State("SCANFF"):
                with m.If(self.abort):
                    m.next = "DRAIN"
                with m.Else():
                    with m.If(byte == 0xFF):
                        m.d.comb += self.i.ready.eq(1)
                    with m.Elif(byte == 0x00):
                        m.d.comb += [self.bo.valid.eq(valid), self.bo.payload.eq(0xFF),
                                     self.i.ready.eq(self.bo.ready)]
                    with m.Else():
                        is_rst = (byte >= 0xD0) & (byte <= 0xD7)
                        m.d.comb += [b_try.eq(valid), b_rst.eq(is_rst), b_term.eq(byte[:3]),
                                     b_eof.eq(0), self.i.ready.eq(b_done)]
                    with m.If(valid & self.i.ready):
                        with m.If((byte == 0xFF) | (byte == 0x00) | ((byte >= 0xD0) &
                                                                    (byte <= 0xD7))):
                            with m.If(last):
                                m.next = "PUSH_EOF"
                            with m.Elif(byte != 0xFF):
                                m.next = "SCAN"
                        with m.Else():
                            m.d.sync += self.zfill.eq(1)
                            dispatch_trailer(byte)
            with m.State("PUSH_EOF"):
                m.d.comb += [b_try.eq(1), b_rst.eq(0), b_term.eq(0), b_eof.eq(1)]
                with m.If(b_done):
                    m.d.sync += [self.zfill.eq(1), res_code.eq(S.MISSING_EOI),
                                 res_valid.eq(1)]
                    m.next = "DONE"
            with m.State("DRAIN"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(valid & last):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.at_end.eq(1)
                with m.If(self.go):
                    m.d.sync += [
                        trailer.eq(0), res_valid.eq(0), res_code.eq(0), self.started.eq(0),
                        self.header_valid.eq(0), self.width.eq(0), self.height.eq(0),
                        q_def.eq(0), h_def.eq(0), jfif.eq(0), adobe_valid.eq(0),
                        self.ri.eq(0), self.zfill.eq(0), cnt.eq(0), same_cnt.eq(0),
                        last_bpos.eq(0),
                    ]
                    m.next = "SOI0"
        return m
