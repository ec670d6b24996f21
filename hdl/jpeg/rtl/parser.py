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
waits in DONE for ``go`` (the top's next image). ``abort`` (the entropy decoder found an error)
sends it to DRAIN (or DONE, when it takes ``last`` in that clock). Every state leaves on
``last``, so it never waits for bytes that will not come.

Register stages (for 100+ MHz; the scan keeps one byte per clock, headers lose a few clocks
per segment):

1. input stage: the byte, ``last`` and the byte's decoded classes (FF/00/RSTn, the marker's
   kind and code in the header and in the trailer, small length values, the payload checks'
   byte compares) are registered; the state machine works on these. Full rate, with a second
   entry so that ``i.ready`` is a register; after a ``last`` it takes nothing until ``go``.
2. state machine: one payload byte per clock. The state is also kept as registered flags
   (``st_*``), which the byte handshake and the payload's actions decode. The payload length
   and the bytes left are counters, the offset is flags (one-hot up to 11), the segment kind
   one-hot: no wide compares in front of a byte's actions.
3. behind it: the table write ports (``q_*``, ``s_*`` a clock later, ``l_*`` two); a byte's
   own content error (``e_code``, a clock later); the DHT count checks (code space, symbol
   total against the remaining length, two clocks later from registered operands, ``d_*``);
   the SOF component id duplicate check (two clocks later); the tables' "defined" bits
   (``q_def``/``h_def``, once every earlier error is in).
4. segment verdict, three clocks after the last payload byte: SEGEND registers the kind's
   checks (length/dimension compares), SEGCHK the first failing check's code (DQT/DHT: the
   first content error, ``perr_now``), SEGACT acts (next state, ``res_code``, frame/scan
   registers, ``start``).
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
        # decoded classes (marker kinds, FF/00/RSTn, length field values, the payload checks'
        # byte compares), so no byte compare sits in front of its next-state logic. A second
        # entry (``sp_*``, the byte only) makes ``i.ready`` a register (no path from the state
        # machine back to the top's input buffer): full rate, the byte goes straight to the
        # first entry when it is free or taken in that clock, and is decoded on its way there.
        # After a byte with ``last`` it takes nothing until ``go``, as the parser takes no byte
        # of the next file before then.
        byte = Signal(8)
        last = Signal()
        valid = Signal()
        take = Signal()             # the state machine takes the staged byte
        eof_in = Signal()
        sp_byte = Signal(8)
        sp_last = Signal()
        sp_valid = Signal()
        ib = Signal(8)              # the byte the first entry loads (and decodes)
        m.d.comb += ib.eq(Mux(sp_valid, sp_byte, self.i.payload.byte))
        # Marker classes for ``dispatch`` (``h_beg``/``t_beg``: the marker begins a segment in
        # the header / the trailer; the same set of markers, of different kinds there).
        dqt, dht, dri = ib == 0xDB, ib == 0xC4, ib == 0xDD
        app0, app14, eoi = ib == 0xE0, ib == 0xEE, ib == 0xD9
        skip = ((ib >= 0xE0) & (ib <= 0xEF)) | (ib == 0xFE) | (ib == 0xDC)
        sof_t = (ib >= 0xC0) & (ib <= 0xCF) & (ib != 0xC4) & (ib != 0xCC) & (ib != 0xC8)
        sof01 = (ib == 0xC0) | (ib == 0xC1)
        sos = ib == 0xDA
        h_beg = dqt | dht | dri | skip
        lossless = _in(ib, _SOF_LOSSLESS)
        prog = _in(ib, _SOF_PROGRESSIVE + (0xDE, 0xDF))
        arith = _in(ib, _SOF_ARITHMETIC + (0xCC,))
        hi, lo = ib[4:], ib[:4]
        dec = {
            "ff": ib == 0xFF, "00": ib == 0x00, "d8": ib == 0xD8, "rst": ib[3:] == 0xD0 >> 3,
            "lt2": ib < 2, "eq2": ib == 2, "eq3": ib == 3,
            "tem": ib == 0x01, "sof01": sof01, "sos": sos,
            # dispatch: the marker begins a header segment (SOF0/1, SOS included: header_valid
            # decides), its kind there and in the trailer, and the code of an ending marker
            "h_any": h_beg | sof01 | sos, "t_beg": h_beg,
            # lengths below 67 / 19: the payload bytes after the first are < 64 / < 16
            "lt67": ib < 67, "lt19": ib < 19,
            # payload checks: SOF components, DQT / DHT headers, symbols, SOS selectors
            "gt3": ib > 3, "gt15": ib > 15,
            "hv_bad": (hi < 1) | (hi > 4) | (lo < 1) | (lo > 4),
            "pq1": hi == 1, "dqt_bad": (hi != 1) & ((hi != 0) | (lo > 3)),
            "pq0_ok": (hi == 0) & (lo <= 3),
            "dht_bad": (hi > 1) | (lo > 3), "sel_bad": (hi > 3) | (lo > 3),
        }
        # SOS component selectors against the SOF's component ids (set long before)
        cid = Array(Signal(8, name=f"cid{k}") for k in range(3))
        for k in range(3):
            dec[f"cid{k}"] = ib == cid[k]
        for n, tag in (("jfif", b"JFIF\0"), ("adobe", b"Adobe")):
            for k, c in enumerate(tag):
                dec[f"{n}{k}"] = ib == c
        kinds = {       # (h_kind, t_kind, h_code, t_code): 3-bit kinds, 8-bit codes
            "h_kind": Mux(sof01, K_SOF, Mux(sos, K_SOS, Mux(dqt, K_DQT, Mux(dht, K_DHT, Mux(
                dri, K_DRI, Mux(app0, K_APP0, Mux(app14, K_APP14, K_SKIP))))))),
            "t_kind": Mux(dqt, K_DQT, Mux(dht, K_DHT, K_SKIP)),
            "h_code": Mux(lossless, S.UNSUPPORTED_LOSSLESS, Mux(
                prog, S.UNSUPPORTED_PROGRESSIVE, Mux(
                    arith, S.UNSUPPORTED_ARITHMETIC, Mux(eoi, S.BAD_HEADER, S.BAD_MARKER)))),
            "t_code": Mux(eoi, S.OK, Mux(sos, S.MULTI_SCAN, Mux(
                sof_t, S.BAD_HEADER, S.BAD_MARKER))),
        }
        kw = {"h_kind": 3, "t_kind": 3, "h_code": 8, "t_code": 8}
        fl = {k: Signal(name=f"in_{k}") for k in dec}
        fk = {k: Signal(kw[k], name=f"in_{k}") for k in kinds}
        acc = Signal()
        m.d.comb += [self.i.ready.eq(~eof_in & ~sp_valid), acc.eq(self.i.valid & self.i.ready)]
        with m.If(take | ~valid):
            with m.If(sp_valid | acc):
                m.d.sync += [byte.eq(ib), last.eq(Mux(sp_valid, sp_last, self.i.payload.last)),
                             valid.eq(1), sp_valid.eq(0),
                             *[fl[k].eq(v) for k, v in dec.items() if not k.startswith("cid")],
                             *[fk[k].eq(v) for k, v in kinds.items()]]
            with m.Else():
                m.d.sync += valid.eq(0)
        with m.Elif(acc):
            m.d.sync += [sp_byte.eq(self.i.payload.byte), sp_last.eq(self.i.payload.last),
                         sp_valid.eq(1)]
        with m.If(acc & self.i.payload.last):
            m.d.sync += eof_in.eq(1)

        trailer = Signal()          # after the scan
        eof_seen = Signal()
        kind = Signal(3)
        kone = Signal(8)            # ``kind`` one-hot, for the payload byte's decode
        len_hi = Signal(8)
        len_hi0 = Signal()          # len_hi == 0
        # The payload offset of the current byte as flags, not a counter to compare: ``o1h``
        # one-hot for offsets 0..11, ``off_lt5``/``off_ge6``, ``odd`` (offset bit 0).
        o1h = Signal(12)
        off_lt5 = Signal()
        off_ge6 = Signal()
        odd = Signal()
        perr = Signal(8)            # first content error of the segment (0 = none)
        # The segment's payload length and the bytes left after the current one are kept in
        # registers (set from the length field, then counted down) rather than derived from
        # the offset per byte: no subtract/compare chain in front of the byte's next state.
        plen = Signal(16)
        rem_after = Signal(16)      # payload bytes after the current one
        pay_last = Signal()         # the current payload byte is the segment's last
        rem_lt64 = Signal()         # rem_after < 64 (set with it)
        rem_lt16 = Signal()         # rem_after < 16

        # Payload checks leave through registers, in byte order: a byte's own first error is
        # registered with it (``e_code``, from the input stage's byte classes); a DHT code
        # count's checks (code space overflow, symbol total against the segment's remaining
        # length: an add and compares) are made from registered copies (``d_*``) into
        # ``d_err`` a clock after that; ``perr`` takes the first of them. All DHT errors are
        # BAD_TABLE; SEGCHK reads the segment's through ``perr_now``, when every byte's is in.
        e_code = Signal(8)
        e_any = Signal()
        m.d.sync += [e_code.eq(0), e_any.eq(0)]
        d_chk = Signal()
        d_last = Signal()
        d_hpos = Signal(5)
        d_newcode = Signal(18)
        d_tot = Signal(12)
        d_rem = Signal(16)
        d_err = Signal()
        m.d.sync += [d_chk.eq(0),
                     d_err.eq(d_chk & ((d_newcode > (Const(1, 18) << d_hpos)) |
                                       (d_last & ((d_tot > 256) | (d_rem < d_tot)))))]
        # (``d_err`` is of an earlier byte than ``e_code`` when both are set)
        with m.If(perr == 0):
            m.d.sync += perr.eq(Mux(d_err, S.BAD_TABLE, e_code))
        perr_now = Mux(perr != 0, perr, Mux(d_err, S.BAD_TABLE, e_code))
        # The table writes' gate: no error before the byte, but for the code space check of
        # the byte just before (still in ``d_*``). A write past an error is of no consequence:
        # the error ends the image, and an image reads only tables it defined itself.
        perr_ok = (perr == 0) & ~e_any & ~d_err

        def set_err(cond, code):
            with m.If(cond):
                m.d.sync += [e_code.eq(code), e_any.eq(1)]

        # The state machine's state, also as registered flags (``st``: a state, ``st_free``:
        # a state that takes every byte), set wherever the next state is: the byte handshake,
        # the payload bytes' actions and the end of a file decode these, not the state.
        FREE = ("SOI0", "SOI1", "MARK0", "MARKF", "LEN0", "LEN1", "PAY", "DRAIN")
        st = {n: Signal(name=f"st_{n.lower()}") for n in
              ("LEN1", "PAY", "SCAN", "SCANFF", "PUSH_EOF", "DONE")}
        st_free = Signal(init=1)    # SOI0 first

        # The SOS selectors' compares (``in_cid*``, a byte compare behind the entry's byte mux)
        # load with the first entry everywhere but in the scan, where they keep their value:
        # the scan's handshake (``take`` there depends on the byte's FF/00 classes and the
        # boundary push) was one LUT level too many in front of them. Only an SOS payload
        # byte reads them, and none follows a scan (an SOS after it ends the image).
        cid_load = Signal()
        m.d.comb += cid_load.eq((st_free | ~valid) & (sp_valid | acc))
        with m.If(cid_load):
            m.d.sync += [fl[f"cid{k}"].eq(dec[f"cid{k}"]) for k in range(3)]

        def nxt(state):
            m.next = state
            m.d.sync += [f.eq(n == state) for n, f in st.items()]
            m.d.sync += st_free.eq(state in FREE)

        res_code, res_valid = self.res_code, self.res_valid
        mark_eof = Mux(trailer, S.MISSING_EOI, S.TRUNCATED)

        def finish(code, eof):
            m.d.sync += [res_code.eq(code), res_valid.eq(1)]
            with m.If(eof):
                nxt("DONE")
            with m.Else():
                nxt("DRAIN")

        def goto(state, eof, eof_code):
            with m.If(eof):
                finish(eof_code, 1)
            with m.Else():
                nxt(state)

        # ---- frame / scan / table state -----------------------------------------------------
        q_def = Signal(4)
        h_def = Signal(8)           # bit tc*4 + th
        # A table's "defined" bit is set the clock after its last byte, once every error up
        # to that byte is in (``perr``, ``e_any``; the code space checks up to the byte before
        # it, ``d_err``); the last byte's own errors are excluded where the request is made,
        # as they would have been.
        q_req = Signal(4)
        h_req = Signal(8)
        m.d.sync += [q_req.eq(0), h_req.eq(0)]
        with m.If((perr == 0) & ~e_any & ~d_err):
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
        c_h = Array(Signal(4, name=f"ch{k}") for k in range(3))
        c_v = Array(Signal(4, name=f"cv{k}") for k in range(3))
        c_tq = Array(Signal(2, name=f"ctq{k}") for k in range(3))
        # ``c_tq`` one-hot, for the SOS check: a register of its own, so that the ``tq`` port's
        # registers feed no logic (Yosys 0.70's ABC9 reintegration fails on a logic input whose
        # name is the port's ``tq[k]``)
        c_tq1h = Array(Signal(4, init=1, name=f"ctq1h{k}") for k in range(3))
        ci = Signal(8)              # component index within SOF / SOS
        ci_lt3 = Signal()           # ci < 3
        cf = Signal(2)              # field within the component
        # DQT / DHT
        tpos = Signal(7)
        t_hdr = Signal()            # tpos == 0
        t_end = Signal()            # tpos == 64
        cur_tq = Signal(2)
        hpos = Signal(5)
        h_hdr = Signal()            # hpos == 0
        h16 = Signal()              # hpos == 16
        tc = Signal(1)
        th = Signal(2)
        code = Signal(18)
        idx = Signal(12)
        total = Signal(12)
        tot0 = Signal()             # total == 0
        tot1 = Signal()             # total == 1
        sym_i = Signal(9)
        sym_left = Signal(12)       # the table's symbol bytes not taken yet
        sym_last = Signal()         # the next symbol byte is the table's last
        in_syms = Signal()
        # DRI
        ri_tmp = Signal(16)
        # SOS
        ns = Signal(8)
        ns_m1 = Signal(8)           # ns - 1
        ci_lt_ns = Signal()         # ci < ns
        tail = Signal(2)            # the bytes after the components: Ss, Se, Ah/Al
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

        # SOF component ids: the duplicate check (a set of 256 bits) is made off the byte's
        # clock, in two register stages: ``sc_*`` holds the id, ``sh_*`` the id's bit in each
        # of the eight 32-bit words (the set takes the id there), then ``comp_err``. Where
        # ``comp_err`` decides the verdict (the length is that of ``nf`` components) the last
        # id is two bytes before the segment's last, so SEGEND sees it; otherwise the length
        # check, of the same code (BAD_HEADER) or ahead of it, fails anyway.
        sc_chk = Signal()
        sc_id = Signal(8)
        sh_chk = Signal()
        sh_w = Signal(3)
        sh_hit = Signal(8)
        m.d.sync += [sc_chk.eq(0), sh_chk.eq(sc_chk), sh_w.eq(sc_id[5:])]
        for w in range(8):
            m.d.sync += sh_hit[w].eq(seen[w].bit_select(sc_id[:5], 1))
            with m.If(sc_chk & (sc_id[5:] == w)):
                m.d.sync += seen[w].eq(seen[w] | (Const(1, 32) << sc_id[:5]))
        with m.If(sh_chk & sh_hit.bit_select(sh_w, 1)):
            m.d.sync += comp_err.eq(1)

        # Table writes leave through a register: the RAMs and lim/base registers they feed
        # are read only after the SOS, long after the DQT/DHT that writes them. The lim/base
        # writes through two: ``lim`` is the code (an add on the byte) shifted, made from the
        # registered code ``d_newcode`` in the second.
        tw = {n: Signal.like(getattr(self, n), name=f"tw_{n}") for n in
              ("q_we", "q_addr", "q_data", "s_we", "s_addr", "s_data",
               "l_we", "l_tbl", "l_len", "l_base")}
        for n, sig in tw.items():
            if n.startswith("l_"):
                q = Signal.like(sig, name=f"tq_{n}")
                m.d.sync += [q.eq(sig), getattr(self, n).eq(q)]
            else:
                m.d.sync += getattr(self, n).eq(sig)
        (tw_q_we, tw_q_addr, tw_q_data, tw_s_we, tw_s_addr, tw_s_data,
         tw_l_we, tw_l_tbl, tw_l_len, tw_l_base) = tw.values()

        # The write data and the delayed checks' operands do not wait for the state decode;
        # only the write enables and ``d_chk`` do.
        newcode = Signal(18)
        m.d.comb += [
            newcode.eq(code + byte),
            tw_q_addr.eq(Cat((tpos - 1)[:6], cur_tq)), tw_q_data.eq(byte),
            tw_s_addr.eq(Cat(sym_i[:8], th, tc)), tw_s_data.eq(byte),
            tw_l_tbl.eq(Cat(th, tc)), tw_l_len.eq((hpos - 1)[:4]),
            tw_l_base.eq(idx - code),
        ]
        m.d.sync += [d_last.eq(h16), d_hpos.eq(hpos), d_newcode.eq(newcode),
                     d_tot.eq(total + byte), d_rem.eq(rem_after),
                     self.l_lim.eq(d_newcode << (16 - d_hpos)[:5].as_unsigned())]

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
        # (the marker's kind and ending code come decoded from the input stage)
        # ``kind`` loads in every clock of the states that dispatch (MARKF, SCANFF), whatever
        # the byte: only the segment that a dispatch begins reads it, and a clock enable of
        # the state alone keeps the byte handshake and the marker's checks out of its path.
        def load_kind():
            k = Mux(trailer, fk["t_kind"], fk["h_kind"])
            m.d.sync += [kind.eq(k), kone.eq(Const(1, 8) << k)]

        def begin_segment():
            goto("LEN0", last, S.TRUNCATED)

        def dispatch():
            with m.If(trailer):
                with m.If(fl["t_beg"]):
                    begin_segment()
                with m.Elif(fl["tem"]):
                    goto("MARK0", last, mark_eof)
                with m.Else():
                    finish(fk["t_code"], last)
            with m.Elif(fl["h_any"]):
                # a second SOF, or an SOS before the SOF
                with m.If((fl["sof01"] & self.header_valid) | (fl["sos"] & ~self.header_valid)):
                    finish(S.BAD_HEADER, last)
                with m.Else():
                    begin_segment()
            with m.Elif(fl["tem"]):
                goto("MARK0", last, mark_eof)
            with m.Else():
                finish(fk["h_code"], last)

        # ---- payload bytes ------------------------------------------------------------------
        def payload_byte(b):
            with m.If(kone[K_SOF]):
                for n, sig in enumerate((prec, f_h[8:], f_h[:8], f_w[8:], f_w[:8])):
                    with m.If(o1h[n]):
                        m.d.sync += sig.eq(b)
                with m.If(o1h[5]):
                    m.d.sync += [nf.eq(b), ci.eq(0), ci_lt3.eq(1), cf.eq(0)]
                with m.If(off_ge6):
                    with m.Switch(cf):
                        with m.Case(0):
                            m.d.sync += [sc_chk.eq(1), sc_id.eq(b)]   # the duplicate check
                            with m.If(ci_lt3):
                                m.d.sync += cid[ci[:2]].eq(b)
                            m.d.sync += cf.eq(1)
                        with m.Case(1):
                            with m.If(fl["hv_bad"]):
                                m.d.sync += comp_err.eq(1)
                            with m.If(ci_lt3):
                                m.d.sync += [c_h[ci[:2]].eq(b[4:]), c_v[ci[:2]].eq(b[:4])]
                            m.d.sync += cf.eq(2)
                        with m.Default():
                            with m.If(fl["gt3"]):
                                m.d.sync += comp_err.eq(1)
                            with m.If(ci_lt3):
                                m.d.sync += [c_tq[ci[:2]].eq(b[:2]),
                                             c_tq1h[ci[:2]].eq(1 << b[:2])]
                            m.d.sync += [cf.eq(0), ci.eq(ci + 1),
                                         ci_lt3.eq(ci_lt3 & (ci[:2] != 2))]
            with m.If(kone[K_DQT]):
                with m.If(t_hdr):
                    set_err(fl["pq1"], S.UNSUPPORTED_PRECISION)
                    set_err(fl["dqt_bad"], S.BAD_TABLE)
                    set_err(fl["pq0_ok"] & rem_lt64, S.BAD_TABLE)
                    m.d.sync += [cur_tq.eq(b[:2]), tpos.eq(1), t_hdr.eq(0), t_end.eq(0)]
                with m.Else():
                    set_err(fl["00"], S.BAD_TABLE)
                    m.d.comb += tw_q_we.eq(~trailer & perr_ok)
                    with m.If(t_end):
                        m.d.sync += [tpos.eq(0), t_hdr.eq(1), t_end.eq(0)]
                        with m.If(~trailer & ~fl["00"]):
                            m.d.sync += q_req.eq(1 << cur_tq)
                    with m.Else():
                        m.d.sync += [tpos.eq(tpos + 1), t_end.eq(tpos == 63)]
            with m.If(kone[K_DHT]):
                tbl = Cat(th, tc)
                with m.If(in_syms):
                    sym_bad = ~tc & fl["gt15"]
                    set_err(sym_bad, S.BAD_TABLE)
                    m.d.comb += tw_s_we.eq(~trailer & perr_ok)
                    m.d.sync += [sym_i.eq(sym_i + 1), sym_left.eq(sym_left - 1),
                                 sym_last.eq(sym_left == 2)]
                    with m.If(sym_last):
                        m.d.sync += [in_syms.eq(0), hpos.eq(0), h_hdr.eq(1), h16.eq(0)]
                        with m.If(~trailer & ~sym_bad):
                            m.d.sync += h_req.eq(1 << tbl)
                with m.Elif(h_hdr):
                    set_err(fl["dht_bad"] | rem_lt16, S.BAD_TABLE)
                    m.d.sync += [tc.eq(b[4]), th.eq(b[:2]), hpos.eq(1), h_hdr.eq(0), h16.eq(0),
                                 code.eq(0), idx.eq(0), total.eq(0), tot0.eq(1), tot1.eq(0)]
                with m.Else():
                    m.d.sync += d_chk.eq(1)
                    m.d.comb += tw_l_we.eq(~trailer & perr_ok)
                    # total + b: 0 and 1 from the flags (the byte is 0 / 1)
                    t0_next = tot0 & fl["00"]
                    t1_next = (tot0 & fl["tem"]) | (tot1 & fl["00"])
                    m.d.sync += [idx.eq(idx + b), code.eq(newcode << 1), total.eq(total + b),
                                 tot0.eq(t0_next), tot1.eq(t1_next)]
                    with m.If(h16):
                        m.d.sync += [sym_i.eq(0), sym_left.eq(total + b), sym_last.eq(t1_next)]
                        # total + b cannot wrap (16 counts of at most 255 fit 12 bits)
                        with m.If(t0_next):
                            # no symbols: every count was 0, so the code space is fine
                            m.d.sync += [hpos.eq(0), h_hdr.eq(1), h16.eq(0)]
                            with m.If(~trailer):
                                m.d.sync += h_req.eq(1 << tbl)
                        with m.Else():
                            m.d.sync += in_syms.eq(1)
                    with m.Else():
                        m.d.sync += [hpos.eq(hpos + 1), h16.eq(hpos == 15)]
            with m.If(kone[K_DRI]):
                with m.If(o1h[0]):
                    m.d.sync += ri_tmp[8:].eq(b)
                with m.If(o1h[1]):
                    m.d.sync += ri_tmp[:8].eq(b)
            with m.If(kone[K_SOS]):
                # offset 0: Ns; then a component selector (odd offsets) and its table selectors
                # (even) while ci < ns; then Ss, Se, Ah/Al
                with m.If(o1h[0]):
                    m.d.sync += [ns.eq(b), ns_m1.eq(b - 1), ci.eq(0), ci_lt3.eq(1),
                                 ci_lt_ns.eq(~fl["00"]), used.eq(0), tail.eq(0)]
                with m.Elif(ci_lt_ns & odd):                  # component selector
                    hit = [fl[f"cid{k}"] & ((k == 0) | self.three) for k in range(3)]
                    fi = Mux(hit[0], 0, Mux(hit[1], 1, 2))
                    any_hit = hit[0] | hit[1] | hit[2]
                    with m.If(~any_hit | (used >> fi)[0] | ~ci_lt3):
                        m.d.sync += sos_bad.eq(1)
                    m.d.sync += used.eq(used | (1 << fi))
                    with m.If(ci_lt3):
                        m.d.sync += s_fidx[ci[:2]].eq(fi)
                with m.Elif(ci_lt_ns):                        # table selectors
                    with m.If(fl["sel_bad"]):
                        m.d.sync += sos_bad.eq(1)
                    with m.If(ci_lt3):
                        m.d.sync += [s_td[ci[:2]].eq(b[4:]), s_ta[ci[:2]].eq(b[:4])]
                    m.d.sync += [ci.eq(ci + 1), ci_lt3.eq(ci_lt3 & (ci[:2] != 2)),
                                 ci_lt_ns.eq(ci != ns_m1)]
                with m.Else():
                    for n, sig in enumerate((ss, se, ahal)):
                        with m.If(tail == n):
                            m.d.sync += sig.eq(b)
                    with m.If(tail != 3):
                        m.d.sync += tail.eq(tail + 1)
            with m.If(kone[K_APP0] | kone[K_APP14]):
                # the tag's bytes: "JFIF\0" / "Adobe"
                tag_ok = Const(0, 1)
                for n in range(5):
                    tag_ok = tag_ok | (o1h[n] & Mux(kone[K_APP0], fl[f"jfif{n}"],
                                                    fl[f"adobe{n}"]))
                with m.If(off_lt5 & ~tag_ok):
                    m.d.sync += app_match.eq(0)
                with m.If(o1h[11]):
                    m.d.sync += ri_tmp[:8].eq(b)     # Adobe transform byte (scratch)

        # ---- segment verdicts ---------------------------------------------------------------
        # Decided over three clocks after the segment's last byte: SEGEND registers each check
        # of the segment's kind (``v_flags``; the wide length/dimension compares end there),
        # SEGCHK turns them into the error code in the golden model's priority order
        # (``v_code``, 0 = none; DQT/DHT: ``perr_now``), SEGACT acts on it (next state,
        # frame/scan registers).
        v_flags = Signal(8)
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
                with m.Case(K_DRI):
                    verdict(K_DRI, (~trailer & (plen != 2), S.BAD_HEADER))
                with m.Case(K_SOS):
                    n_frame = Mux(self.three, 3, 1)
                    ids_rgb = (cid[0] == 82) & (cid[1] == 71) & (cid[2] == 66)
                    rgb = self.three & ~jfif & Mux(adobe_valid, adobe == 0, ids_rgb)
                    q_ok = ((q_def & c_tq1h[0]).any() &
                            (~self.three | ((q_def & c_tq1h[1]).any() &
                                            (q_def & c_tq1h[2]).any())))
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
                    m.d.sync += v_code.eq(perr_now)
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
                            nxt("PUSH_EOF")
                        with m.Else():
                            nxt("SCAN")
                    with m.Default():
                        goto("MARK0", nxt_eof, mark_eof)

        # ---- the state machine --------------------------------------------------------------
        # ``abort`` (the image has failed: the parser is in the scan or the trailer then) only
        # sends the state machine to DRAIN, or to DONE when the byte it takes in that clock is
        # the last; it stays off the byte handshake (``take``, ``bo``) and the states' other
        # actions, which are of no consequence once the image's verdict is made.
        def drain_on_abort():
            with m.If(self.abort):
                with m.If(take & last):
                    nxt("DONE")
                with m.Else():
                    nxt("DRAIN")

        # The byte handshake, the data bytes and the boundaries, from the state flags.
        fsm_ready = Signal()
        ff, z00 = fl["ff"], fl["00"]
        m.d.comb += [
            fsm_ready.eq(st_free | (st["SCAN"] & (ff | self.bo.ready)) |
                         (st["SCANFF"] & (ff | (z00 & self.bo.ready) | (~ff & ~z00 & b_done)))),
            take.eq(valid & fsm_ready),
            # SCAN: a data byte; SCANFF: FF00 is a data byte FF
            self.bo.valid.eq(valid & ((st["SCAN"] & ~ff) | (st["SCANFF"] & z00))),
            self.bo.payload.eq(Mux(st["SCANFF"], 0xFF, byte)),
            # SCANFF: a marker that ends the restart segment; PUSH_EOF: the end of the file
            b_try.eq((valid & st["SCANFF"] & ~ff & ~z00) | st["PUSH_EOF"]),
            b_rst.eq(st["SCANFF"] & fl["rst"]), b_term.eq(Mux(st["SCANFF"], byte[:3], 0)),
            b_eof.eq(st["PUSH_EOF"]),
            self.at_end.eq(st["DONE"]),
        ]
        with m.FSM(name="parser"):
            with m.State("SOI0"):
                with m.If(valid):
                    with m.If(~fl["ff"]):
                        finish(S.NOT_JPEG, last)
                    with m.Else():
                        goto("SOI1", last, S.NOT_JPEG)
            with m.State("SOI1"):
                with m.If(valid):
                    with m.If(~fl["d8"]):
                        finish(S.NOT_JPEG, last)
                    with m.Else():
                        goto("MARK0", last, S.TRUNCATED)
            with m.State("MARK0"):
                with m.If(valid):
                    with m.If(~fl["ff"]):
                        finish(S.BAD_MARKER, last)
                    with m.Else():
                        goto("MARKF", last, mark_eof)
                drain_on_abort()
            with m.State("MARKF"):
                load_kind()
                with m.If(valid):
                    with m.If(fl["ff"]):
                        goto("MARKF", last, mark_eof)
                    with m.Elif(fl["00"]):
                        finish(S.BAD_MARKER, last)
                    with m.Else():
                        dispatch()
                drain_on_abort()
            with m.State("LEN0"):
                with m.If(valid):
                    m.d.sync += [len_hi.eq(byte), len_hi0.eq(fl["00"])]
                    goto("LEN1", last, S.TRUNCATED)
                drain_on_abort()
            with m.State("LEN1"):
                with m.If(valid):
                    with m.If(len_hi0 & fl["lt2"]):
                        finish(Mux(kone[K_DQT] | kone[K_DHT], S.BAD_TABLE, S.BAD_HEADER), last)
                    with m.Elif(len_hi0 & fl["eq2"]):
                        nxt("SEGEND")
                    with m.Else():
                        goto("PAY", last, S.TRUNCATED)
                drain_on_abort()
            with m.State("PAY"):
                with m.If(valid):
                    with m.If(pay_last):
                        m.d.sync += eof_seen.eq(last)
                        nxt("SEGEND")
                    with m.Else():
                        goto("PAY", last, S.TRUNCATED)
                drain_on_abort()
            with m.State("SEGEND"):
                segment_check()
                nxt("SEGCHK")
                drain_on_abort()
            with m.State("SEGCHK"):
                segment_prio()
                nxt("SEGACT")
                drain_on_abort()
            with m.State("SEGACT"):
                segment_end()
                drain_on_abort()
            # ---- entropy-coded data ----
            with m.State("SCAN"):
                with m.If(take):
                    with m.If(last):
                        nxt("PUSH_EOF")
                    with m.Elif(fl["ff"]):
                        nxt("SCANFF")
                drain_on_abort()
            with m.State("SCANFF"):
                load_kind()
                with m.If(take):
                    with m.If(fl["ff"] | fl["00"] | fl["rst"]):
                        with m.If(last):
                            nxt("PUSH_EOF")
                        with m.Elif(~fl["ff"]):
                            nxt("SCAN")
                    with m.Else():
                        m.d.sync += self.zfill.eq(1)
                        dispatch()          # in the trailer
                drain_on_abort()
            with m.State("PUSH_EOF"):
                with m.If(b_done):
                    m.d.sync += [self.zfill.eq(1), res_code.eq(S.MISSING_EOI),
                                 res_valid.eq(1)]
                    nxt("DONE")
            with m.State("DRAIN"):
                with m.If(valid & last):
                    nxt("DONE")
            with m.State("DONE"):
                with m.If(self.go):
                    nxt("SOI0")

        # The states' actions on many registers, from the state flags (in LEN1 and PAY these
        # are whatever the byte; the next state is the state machine's).
        with m.If(st["LEN1"] & valid):
            ln = Cat(byte, len_hi)
            m.d.sync += [plen.eq(ln - 2), rem_after.eq(ln - 3),
                         pay_last.eq(len_hi0 & fl["eq3"]),
                         rem_lt64.eq(len_hi0 & fl["lt67"]),
                         rem_lt16.eq(len_hi0 & fl["lt19"]),
                         o1h.eq(1), off_lt5.eq(1), off_ge6.eq(0), odd.eq(0), perr.eq(0),
                         eof_seen.eq(last),
                         tpos.eq(0), t_hdr.eq(1), t_end.eq(0),
                         hpos.eq(0), h_hdr.eq(1), h16.eq(0), in_syms.eq(0),
                         comp_err.eq(0),
                         *[sw.eq(0) for sw in seen], sos_bad.eq(0), app_match.eq(1),
                         prec.eq(0), nf.eq(0), ss.eq(0), se.eq(0), ahal.eq(0),
                         ci.eq(0), ci_lt3.eq(1), cf.eq(0)]
        with m.If(st["PAY"] & valid):
            payload_byte(byte)
            # the offset flags, and the bytes left (``rem_after`` - 1 < 64 / < 16)
            m.d.sync += [o1h.eq(o1h << 1), off_lt5.eq(off_lt5 & ~o1h[4]),
                         off_ge6.eq(off_ge6 | o1h[5]), odd.eq(~odd),
                         rem_after.eq(rem_after - 1), pay_last.eq(rem_after == 1),
                         rem_lt64.eq(rem_after <= 64), rem_lt16.eq(rem_after <= 16)]
        with m.If(st["DONE"] & self.go):
            m.d.sync += [
                trailer.eq(0), res_valid.eq(0), res_code.eq(0), self.started.eq(0),
                self.header_valid.eq(0), self.width.eq(0), self.height.eq(0),
                eof_in.eq(0),
                q_def.eq(0), h_def.eq(0), jfif.eq(0), adobe_valid.eq(0),
                self.ri.eq(0), self.zfill.eq(0), cnt.eq(0), same_cnt.eq(0),
                at_bpos.eq(1),
            ]
        return m
