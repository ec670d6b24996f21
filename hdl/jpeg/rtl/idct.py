"""Dequantize, coefficient block buffer and the IDCTs of libjpeg-turbo, full size and reduced:
jidctint.c ``jpeg_idct_islow`` (8x8) and jidctred.c ``jpeg_idct_4x4`` / ``_2x2`` / ``_1x1`` (the
outputs of scaled decoding), as :mod:`hdl.jpeg.idct` computes them.

* Dequantize on the way in: the quantization RAM (4 tables x 64, zigzag order, written by the
  parser) is read at the coefficient's zigzag index, the product goes to its natural position.
* Two block buffers (ping-pong) with a written-mask each, so a block never needs clearing: the
  entropy decoder claims a free buffer at the start of each block.
* Per block, the IDCT size ``s`` (8, 4, 2 or 1) of its component: ``log2 s`` = ``ls`` for
  component 0, ``cs`` for the others (the decoder's plan, see :mod:`hdl.jpeg.rtl.decoder`).
* IDCT: pass 1 one coefficient column per clock (13-bit constants; the ``s`` workspace rows of
  that column, descaled by 11 / 12 / 13 bits for s = 8 / 4 / 2, the DC term as it is for s = 1),
  pass 2 one workspace row per clock (descale by 18 / 19 / 20 / 3, ``& 1023`` wrap, +128,
  clamp) -> one row of ``s`` samples to the line buffers (``lw_data`` bits ``[0, 8 s)``).
  Pass 1 skips the columns pass 2 never reads (column 4 for 4x4; 2, 4, 6 for 2x2; all but 0
  for 1x1). The passes share one workspace and do not overlap: 8 + 8 = 16 clocks per block at
  s = 8, 7 + 4 = 11 at s = 4, 5 + 2 = 7 at s = 2, 1 + 1 = 2 at s = 1.
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .. import idct as G
from .consts import ZIGZAG_LIST

__all__ = ["BlockIdct", "islow_1d", "red4_1d", "red2_1d", "range_limit"]

WS_BITS = 28

# descale amounts: pass 1 / pass 2, by log2 of the output size (0 = 1x1 ... 3 = 8x8)
_SH1 = {3: G.CONST_BITS - G.PASS1_BITS, 2: G.CONST_BITS - G.PASS1_BITS + 1,
        1: G.CONST_BITS - G.PASS1_BITS + 2, 0: 0}
_SH2 = {3: G.CONST_BITS + G.PASS1_BITS + 3, 2: G.CONST_BITS + G.PASS1_BITS + 3 + 1,
        1: G.CONST_BITS + G.PASS1_BITS + 3 + 2, 0: 3}


def islow_1d(d):
    """One 8-point pass of jpeg_idct_islow on Amaranth values; outputs before descaling."""
    z2, z3 = d[2], d[6]
    z1 = (z2 + z3) * G.F0_541196100
    tmp2 = z1 - z3 * G.F1_847759065
    tmp3 = z1 + z2 * G.F0_765366865
    tmp0 = (d[0] + d[4]) << G.CONST_BITS
    tmp1 = (d[0] - d[4]) << G.CONST_BITS
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    t0, t1, t2, t3 = d[7], d[5], d[3], d[1]
    z1, z2, z3, z4 = t0 + t3, t1 + t2, t0 + t2, t1 + t3
    z5 = (z3 + z4) * G.F1_175875602
    t0 = t0 * G.F0_298631336
    t1 = t1 * G.F2_053119869
    t2 = t2 * G.F3_072711026
    t3 = t3 * G.F1_501321110
    z1 = z1 * -G.F0_899976223
    z2 = z2 * -G.F2_562915447
    z3 = z3 * -G.F1_961570560 + z5
    z4 = z4 * -G.F0_390180644 + z5
    t0 = t0 + z1 + z3
    t1 = t1 + z2 + z4
    t2 = t2 + z2 + z3
    t3 = t3 + z1 + z4
    return [tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0,
            tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3]


def red4_1d(d):
    """One 4-output pass of jpeg_idct_4x4 (input 4 unused); outputs before descaling."""
    tmp0 = d[0] << (G.CONST_BITS + 1)
    tmp2 = d[2] * G.F1_847759065 - d[6] * G.F0_765366865
    tmp10, tmp12 = tmp0 + tmp2, tmp0 - tmp2
    z1, z2, z3, z4 = d[7], d[5], d[3], d[1]
    tmp0 = (z2 * G.F1_451774981 + z4 * G.F1_061594337) - (z1 * G.F0_211164243
                                                          + z3 * G.F2_172734803)
    tmp2 = (z3 * G.F0_899976223 + z4 * G.F2_562915447) - (z1 * G.F0_509795579
                                                          + z2 * G.F0_601344887)
    return [tmp10 + tmp2, tmp12 + tmp0, tmp12 - tmp0, tmp10 - tmp2]


def red2_1d(d):
    """One 2-output pass of jpeg_idct_2x2 (inputs 2, 4, 6 unused); outputs before descaling."""
    tmp10 = d[0] << (G.CONST_BITS + 2)
    tmp0 = (d[5] * G.F0_850430095 + d[1] * G.F3_624509785) - (d[7] * G.F0_720959822
                                                              + d[3] * G.F1_272758580)
    return [tmp10 + tmp0, tmp10 - tmp0]


def range_limit(m: Module, x, name: str) -> Signal:
    """libjpeg's post-IDCT limit of a value already descaled: clamp(wrap10(x) + 128, 0, 255)."""
    t = Signal(10, name=f"{name}_w")
    out = Signal(8, name=name)
    m.d.comb += t.eq(x + 512)
    m.d.comb += out.eq(Mux(t < 384, 0, Mux(t > 639, 255, t - 384)))
    return out


def _descale(x, n: int):
    return (x + (1 << (n - 1))) >> n if n else x


def _idct_pass(m: Module, d, sz, shifts, name: str) -> list[Signal]:
    """One 1-D pass at the block's IDCT size (``sz`` = log2 of 8/4/2/1): the size's outputs,
    descaled by ``shifts[sz]``; outputs past the size are left zero."""
    outs = {3: islow_1d(d), 2: red4_1d(d), 1: red2_1d(d), 0: [d[0]]}
    res = []
    for i in range(8):
        v = Signal(signed(WS_BITS), name=f"{name}_{i}")
        with m.Switch(sz):
            for size, o in outs.items():
                if i < len(o):
                    with m.Case(size):
                        m.d.comb += v.eq(_descale(o[i], shifts[size]))
        res.append(v)
    return res


class BlockIdct(wiring.Component):
    def __init__(self):
        super().__init__({
            "q_we": In(1), "q_addr": In(8), "q_data": In(8),
            # log2 of the IDCT size of component 0 / of the others (stable during a scan)
            "ls": In(2, init=3), "cs": In(2, init=3),
            "claim": In(1), "can_claim": Out(1),
            "cw_valid": In(1), "cw_k": In(6), "cw_val": In(signed(12)), "cw_tq": In(2),
            "be_valid": In(1), "be_comp": In(2), "be_bcol": In(13), "be_brow": In(13),
            "be_row_end": In(1),
            # one block row of s = 1 << lw_size samples to the line buffers: component sample
            # row ``brow * s + r`` mod 32 (lw_line), block column lw_col (sample column
            # lw_col * s), samples in lw_data[0:8 s]
            "lw_en": Out(1), "lw_comp": Out(2), "lw_line": Out(5), "lw_col": Out(13),
            "lw_size": Out(2), "lw_data": Out(64),
            "rows_done": Out(16),       # MCU rows completely written
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.qmem = qmem = memory.Memory(shape=8, depth=256, init=[])
        qw = qmem.write_port()
        qr = qmem.read_port(transparent_for=())
        m.d.comb += [qw.addr.eq(self.q_addr), qw.data.eq(self.q_data), qw.en.eq(self.q_we)]

        # ---- stage 1: quantizer read ---------------------------------------------------------
        m.d.comb += qr.addr.eq(Cat(self.cw_k, self.cw_tq))
        s1_cw = Signal()
        s1_k = Signal(6)
        s1_val = Signal(signed(12))
        s1_be = Signal()
        s1_meta = Signal(2 + 13 + 13 + 1)
        m.d.sync += [s1_cw.eq(self.cw_valid), s1_k.eq(self.cw_k), s1_val.eq(self.cw_val),
                     s1_be.eq(self.be_valid),
                     s1_meta.eq(Cat(self.be_comp, self.be_bcol, self.be_brow, self.be_row_end))]

        # ---- coefficient buffers -------------------------------------------------------------
        # One RAM per coefficient row (natural order), addressed by (buffer, column): pass 1
        # reads one column of the buffer ``rb`` (all eight rows) per clock.
        mask = [Signal(64, name=f"mask{b}") for b in range(2)]
        full = [Signal(name=f"full{b}") for b in range(2)]
        meta = [Signal(len(s1_meta), name=f"meta{b}") for b in range(2)]
        wb = Signal()
        rb = Signal()
        claimed = Signal(2)
        free = Signal()
        m.d.comb += self.can_claim.eq(claimed < 2)
        m.d.sync += claimed.eq(claimed + self.claim - free)

        nat = Signal(6)
        m.d.comb += nat.eq(Array(Const(z, 6) for z in ZIGZAG_LIST)[s1_k])
        prod = Signal(signed(20))
        m.d.comb += prod.eq(s1_val * qr.data)
        c1 = Signal(3)
        coef_rd = []
        for r in range(8):
            mem = memory.Memory(shape=signed(20), depth=16, init=[])
            m.submodules[f"coef{r}"] = mem
            w = mem.write_port()
            m.d.comb += [w.addr.eq(Cat(nat[:3], wb)), w.data.eq(prod),
                         w.en.eq(s1_cw & (nat[3:] == r))]
            rp = mem.read_port(domain="comb")
            m.d.comb += rp.addr.eq(Cat(c1, rb))
            coef_rd.append(rp.data)
        for b in range(2):
            with m.If(s1_cw & (wb == b)):
                m.d.sync += mask[b].eq(mask[b] | (Const(1, 1) << nat))     # 64 bits wide
            with m.If(s1_be & (wb == b)):
                m.d.sync += [full[b].eq(1), meta[b].eq(s1_meta)]
            with m.If(free & (rb == b)):
                m.d.sync += [mask[b].eq(0), full[b].eq(0)]
        with m.If(s1_be):
            m.d.sync += wb.eq(~wb)

        # ---- pass 1: columns -----------------------------------------------------------------
        # workspace: one RAM of 64 words (row * 8 + column), eight write ports (pass 1 writes
        # a column) and eight read ports (pass 2 reads a row)
        m.submodules.ws = wsmem = memory.Memory(shape=signed(WS_BITS), depth=64, init=[])
        p1 = Signal()               # pass 1 running on buffer rb
        rmeta = Signal(len(s1_meta))
        m.d.comb += rmeta.eq(Mux(rb, meta[1], meta[0]))
        sz1 = Signal(2)             # log2 IDCT size of the block in buffer rb
        m.d.comb += sz1.eq(Mux(rmeta[:2] == 0, self.ls, self.cs))
        rmask = Signal(64)
        m.d.comb += rmask.eq(Mux(rb, mask[1], mask[0]))
        d_in = []
        for r in range(8):
            d_in.append(Mux(rmask.bit_select(Cat(c1, Const(r, 3)), 1), coef_rd[r], 0))
        for r, v in enumerate(_idct_pass(m, d_in, sz1, _SH1, "p1")):
            w = wsmem.write_port()
            m.d.comb += [w.addr.eq(Cat(c1, Const(r, 3))), w.data.eq(v), w.en.eq(p1)]
        # the columns pass 2 reads: all for 8x8; not 4 for 4x4; 0, 1, 3, 5, 7 for 2x2; 0 for 1x1
        c1_last = Signal()
        c1_next = Signal(3)
        m.d.comb += c1_last.eq(Mux(sz1 == 0, 1, c1 == 7))
        with m.Switch(sz1):
            with m.Case(2):
                m.d.comb += c1_next.eq(Mux(c1 == 3, 5, c1 + 1))
            with m.Case(1):
                m.d.comb += c1_next.eq(Mux(c1 == 0, 1, c1 + 2))
            with m.Default():
                m.d.comb += c1_next.eq(c1 + 1)

        # ---- pass 2: rows --------------------------------------------------------------------
        r2 = Signal(3)
        p2 = Signal()
        meta2 = Signal(len(s1_meta))
        sz2 = Signal(2)
        m2_comp, m2_bcol, m2_brow, m2_end = meta2[:2], meta2[2:15], meta2[15:28], meta2[28]
        d2 = []
        for c in range(8):
            rp = wsmem.read_port(domain="comb")
            m.d.comb += rp.addr.eq(Cat(Const(c, 3), r2))
            d2.append(rp.data)
        samples = [range_limit(m, y, f"px{c}")
                   for c, y in enumerate(_idct_pass(m, d2, sz2, _SH2, "p2"))]
        line = Signal(5)
        with m.Switch(sz2):
            for sz in range(4):
                with m.Case(sz):
                    m.d.comb += line.eq(Cat(r2[:sz], m2_brow)[:5])
        r2_last = Signal()
        m.d.comb += r2_last.eq(r2 == (Const(1, 4) << sz2) - 1)
        m.d.comb += [self.lw_en.eq(p2), self.lw_comp.eq(m2_comp), self.lw_line.eq(line),
                     self.lw_col.eq(m2_bcol), self.lw_size.eq(sz2),
                     self.lw_data.eq(Cat(*samples))]

        # pass 1 writes one workspace column per clock while pass 2 reads one row per clock,
        # so they must not overlap: pass 1 waits for pass 2's last row.
        p2_last = p2 & r2_last
        start1 = ~p1 & Mux(rb, full[1], full[0]) & (~p2 | p2_last)
        with m.If(start1):
            m.d.sync += [p1.eq(1), c1.eq(0)]
        with m.If(p1):
            m.d.sync += c1.eq(c1_next)
            with m.If(c1_last):
                m.d.comb += free.eq(1)
                m.d.sync += [p1.eq(0), rb.eq(~rb), p2.eq(1), r2.eq(0), meta2.eq(rmeta),
                             sz2.eq(sz1)]
        with m.If(p2):
            m.d.sync += r2.eq(r2 + 1)
            with m.If(r2_last):
                with m.If(~(p1 & c1_last)):
                    m.d.sync += p2.eq(0)
                with m.If(m2_end):
                    m.d.sync += self.rows_done.eq(self.rows_done + 1)
        m.d.comb += self.busy.eq(p1 | p2 | full[0] | full[1])
        return m
