"""MCU-row line buffers -> fancy upsampling -> YCbCr to RGB -> raster-order pixels, at full size
or scaled (1/2, 1/4, 1/8: the plan of :func:`hdl.jpeg.decoder.plan_components`).

Line buffers: one RAM per component, 64-bit words (8 samples), ``stride`` words per line
(``stride`` = the next power of two >= max_width / 8). A block row of ``s`` samples (the IDCT
size of its component: 8, 4, 2 or 1) is written with byte enables at sample column ``bcol * s``
of line ``(component sample row) mod lines``. Luma keeps 32 lines: two MCU rows of up to 16
lines (``vmax * 8 / d``). Chroma keeps 16 lines: two MCU rows of up to 8 lines (a chroma
component has one block row per MCU row, of at most 8 samples, also when 4:2:0 chroma gets the
larger IDCT at 1/2 .. 1/8).

Flow control at MCU-row granularity: ``out_rows`` is the oldest MCU row the raster still reads
(the chroma row above the current one counts while the vertical triangle filter needs it); the
decoder top turns it into the entropy decoder's ``row_limit`` (MCU row ``d`` may start when
``d <= out_rows + 1``, so at most two MCU rows are live in each ring). The raster starts a line
only when every MCU row it reads is written (``rows_done``), including the next row's first
chroma line that the filter needs. Each image starts in the rings where the front end put its
line 0 (``woff_y``/``woff_c``, latched at ``start``): right after the previous image's last MCU
row, so the next image's first row can be written while that row is read out.

The plan per image (registered at ``start``): output size ``ceil(W / d) x ceil(H / d)``; 4:2:0
at 1/2 .. 1/8 decodes chroma at the luma's resolution (no upsampling); 4:2:2 / 4:4:0 (and 4:2:0
at full size) upsample chroma by 2 as at full size; fancy filtering is off at 1/8 (replication).

One pixel per clock: the four chroma samples a pixel's filter reads (rows cy and its vertical
neighbour, columns cx and its horizontal neighbour) come from four read ports, the luma sample
from one. The filters of :mod:`hdl.jpeg.upsample` in one formula: with ``V(c) = 3*C[cy][c] +
C[cn][c]`` (or ``4*C[cy][c]`` without vertical filtering), the sample is ``(3*V(cx) + V(nx) +
bias) >> 4`` (or ``(4*V(cx) + bias) >> 4``); bias 8/7 (h2v2, by column parity), 4/8 (h2v1 by
column, h1v2 by row parity), 0 for replication. Edges replicate the last real row / column.
Colour: :mod:`hdl.jpeg.color`'s integer formulas.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...rtl.layouts import PixelIn
from ..color import ONE_HALF, SCALEBITS, _fix

__all__ = ["Raster", "line_stride", "scaled_size", "LUMA_LINES", "CHROMA_LINES"]

LUMA_LINES = 32
CHROMA_LINES = 16


def line_stride(max_width: int) -> int:
    words = max(1, -(-max_width // 8))
    return 1 << (words - 1).bit_length()


def scaled_size(v, scale):
    """``ceil(v / 2**scale)`` of a 16-bit value and a 2-bit scale code (an Amaranth value)."""
    return Mux(scale == 0, v, Mux(scale == 1, (v + 1) >> 1,
                                  Mux(scale == 2, (v + 3) >> 2, (v + 7) >> 3)))[:16]


def _clamp8(m, x, name):
    out = Signal(8, name=name)
    m.d.comb += out.eq(Mux(x < 0, 0, Mux(x > 255, 255, x)))
    return out


class Raster(wiring.Component):
    def __init__(self, max_width: int):
        self.stride = line_stride(max_width)
        self.sbits = (self.stride - 1).bit_length()
        super().__init__({
            "lw_en": In(1), "lw_comp": In(2), "lw_line": In(5), "lw_col": In(13),
            "lw_size": In(2, init=3), "lw_data": In(64),
            "rows_done": In(16),
            "start": In(1),
            "width": In(16), "height": In(16), "three": In(1), "h2": In(1), "v2": In(1),
            "scale": In(2),
            # where the front end writes its image's line 0 in each ring (luma, chroma): the
            # next image starts right after the previous one's last MCU row, so it can be
            # written while that row is still being read
            "woff_y": In(5), "woff_c": In(4),
            "halt": In(1),
            "o": Out(stream.Signature(PixelIn)),
            "out_rows": Out(16),
            "out_w": Out(16), "out_h": Out(16),     # this image's output size (from start)
            "done": Out(1), "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        sb = self.sbits
        mems = []
        for name, lines in (("ymem", LUMA_LINES), ("cbmem", CHROMA_LINES),
                            ("crmem", CHROMA_LINES)):
            mem = memory.Memory(shape=64, depth=lines * self.stride, init=[])
            m.submodules[name] = mem
            mems.append(mem)

        # ---- block rows in: s samples at sample column bcol * s, byte enables -----------------
        scol = Signal(16)
        m.d.comb += scol.eq(self.lw_col << self.lw_size)
        wdata = Signal(64)
        wmask = Signal(8)
        d = self.lw_data
        with m.Switch(self.lw_size):
            with m.Case(3):
                m.d.comb += [wdata.eq(d), wmask.eq(0xFF)]
            with m.Case(2):
                m.d.comb += [wdata.eq(Cat(d[:32], d[:32])), wmask.eq(Const(0x0F, 8) << scol[:3])]
            with m.Case(1):
                m.d.comb += [wdata.eq(Cat(*[d[:16]] * 4)), wmask.eq(Const(0x03, 8) << scol[:3])]
            with m.Case(0):
                m.d.comb += [wdata.eq(Cat(*[d[:8]] * 8)), wmask.eq(Const(1, 8) << scol[:3])]
        wcol = scol[3:3 + sb] if sb else Const(0, 0)
        for q, mem in enumerate(mems):
            wp = mem.write_port(granularity=8)
            lbits = 5 if q == 0 else 4
            wline = (self.lw_line + (self.woff_y if q == 0 else self.woff_c))[:lbits]
            m.d.comb += [wp.addr.eq(Cat(wcol, wline)), wp.data.eq(wdata),
                         wp.en.eq(Mux(self.lw_en & (self.lw_comp == q), wmask, 0))]

        en = Signal()
        m.d.comb += en.eq(~self.o.valid | self.o.ready)

        # ---- the plan, registered at start ---------------------------------------------------
        W = Signal(16)              # output size
        H = Signal(16)
        hs = Signal()               # chroma upsampled 2x horizontally / vertically
        vs = Signal()
        cw = Signal(16)             # chroma plane size
        ch = Signal(16)
        hf = Signal()               # fancy filtering horizontally / vertically
        vf = Signal()
        lc = Signal(2)              # log2 chroma lines per MCU row (luma lines for gray)
        three = Signal()
        roff_y = Signal(5)          # this image's line 0 in each ring
        roff_c = Signal(4)
        m.d.comb += [self.out_w.eq(W), self.out_h.eq(H)]
        with m.If(self.start):
            m.d.sync += [three.eq(self.three), roff_y.eq(self.woff_y), roff_c.eq(self.woff_c)]
            sc = self.scale
            ow = scaled_size(self.width, sc)
            oh = scaled_size(self.height, sc)
            c420s = self.three & self.h2 & self.v2 & (sc != 0)
            hs_n = self.three & self.h2 & ~c420s
            vs_n = self.three & self.v2 & ~c420s
            cw_n = Mux(hs_n, (ow + 1) >> 1, ow)
            ch_n = Mux(vs_n, (oh + 1) >> 1, oh)
            fancy = sc != 3
            m.d.sync += [W.eq(ow), H.eq(oh), hs.eq(hs_n), vs.eq(vs_n), cw.eq(cw_n),
                         ch.eq(ch_n), hf.eq(fancy & hs_n & (cw_n > 2)),
                         vf.eq(fancy & vs_n & (~hs_n | (cw_n > 2))),
                         lc.eq(3 - sc + c420s)]

        x = Signal(16)
        y = Signal(16)
        running = Signal()
        cx = Signal(16)
        cy = Signal(16)
        nx = Signal(16)
        cn = Signal(16)
        m.d.comb += [cx.eq(Mux(hs, x >> 1, x)), cy.eq(Mux(vs, y >> 1, y))]
        with m.If(hf & (x[0] == 0)):
            m.d.comb += nx.eq(Mux(cx == 0, 0, cx - 1))
        with m.Elif(hf):
            m.d.comb += nx.eq(Mux(cx + 1 >= cw, cw - 1, cx + 1))
        with m.Else():
            m.d.comb += nx.eq(cx)
        below = Signal(16)
        m.d.comb += below.eq(Mux(cy + 1 >= ch, ch - 1, cy + 1))
        up = vf & (y[0] == 0)
        with m.If(up):
            m.d.comb += cn.eq(Mux(cy == 0, 0, cy - 1))
        with m.Elif(vf):
            m.d.comb += cn.eq(below)
        with m.Else():
            m.d.comb += cn.eq(cy)
        need = Mux(vf & y[0], below, cy) >> lc
        line_ok = need < self.rows_done
        fire = Signal()
        m.d.comb += fire.eq(running & line_ok & en & ~self.halt)
        m.d.comb += self.out_rows.eq(Mux(up, cn, cy) >> lc)

        with m.If(self.start):
            m.d.sync += [running.eq(1), x.eq(0), y.eq(0)]
        with m.If(fire):
            with m.If(x == W - 1):
                m.d.sync += [x.eq(0), y.eq(y + 1)]
                with m.If(y == H - 1):
                    m.d.sync += running.eq(0)
            with m.Else():
                m.d.sync += x.eq(x + 1)

        def addr(row, col, lbits):
            line = (row + (roff_y if lbits == 5 else roff_c))[:lbits]
            return Cat(col[3:3 + sb] if sb else Const(0, 0), line)

        yr = mems[0].read_port(transparent_for=())
        m.d.comb += [yr.addr.eq(addr(y, x, 5)), yr.en.eq(en)]
        cports = []
        for mem in mems[1:]:
            ports = []
            for row, col in ((cy, cx), (cy, nx), (cn, cx), (cn, nx)):
                rp = mem.read_port(transparent_for=())
                m.d.comb += [rp.addr.eq(addr(row, col, 4)), rp.en.eq(en)]
                ports.append(rp)
            cports.append(ports)

        s1_valid = Signal()
        s1_x = Signal(3)
        s1_cx = Signal(3)
        s1_nx = Signal(3)
        s1_bias = Signal(4)
        s1_last = Signal()
        bias = Mux(hf & vf, Mux(x[0], 7, 8),
                   Mux(hf, Mux(x[0], 8, 4), Mux(vf, Mux(y[0], 8, 4), 0)))
        with m.If(en):
            m.d.sync += [s1_valid.eq(fire), s1_x.eq(x[:3]), s1_cx.eq(cx[:3]), s1_nx.eq(nx[:3]),
                         s1_bias.eq(bias), s1_last.eq((x == W - 1) & (y == H - 1))]

        yv = yr.data.word_select(s1_x, 8)
        chroma = []
        for q, ports in enumerate(cports):
            a = ports[0].data.word_select(s1_cx, 8)
            b = ports[1].data.word_select(s1_nx, 8)
            c = ports[2].data.word_select(s1_cx, 8)
            dd = ports[3].data.word_select(s1_nx, 8)
            vc = Signal(10, name=f"vc{q}")
            vn = Signal(10, name=f"vn{q}")
            m.d.comb += [vc.eq(Mux(vf, 3 * a + c, a << 2)), vn.eq(Mux(vf, 3 * b + dd, b << 2))]
            s = Signal(8, name=f"up{q}")
            m.d.comb += s.eq(Mux(hf, (3 * vc + vn + s1_bias) >> 4, ((vc << 2) + s1_bias) >> 4))
            chroma.append(s)
        cb = Signal(signed(9))
        cr = Signal(signed(9))
        m.d.comb += [cb.eq(chroma[0] - 128), cr.eq(chroma[1] - 128)]
        yy = Signal(signed(10))
        m.d.comb += yy.eq(yv)
        r_off = (cr * _fix(1.40200) + ONE_HALF) >> SCALEBITS
        b_off = (cb * _fix(1.77200) + ONE_HALF) >> SCALEBITS
        g_off = ((cb * -_fix(0.34414) + ONE_HALF) + cr * -_fix(0.71414)) >> SCALEBITS
        R = _clamp8(m, yy + r_off, "R")
        Gc = _clamp8(m, yy + g_off, "G")
        B = _clamp8(m, yy + b_off, "B")

        with m.If(en):
            m.d.sync += self.o.valid.eq(s1_valid)
            with m.If(s1_valid):
                m.d.sync += [self.o.payload.rgb[0].eq(Mux(three, R, yv)),
                             self.o.payload.rgb[1].eq(Mux(three, Gc, yv)),
                             self.o.payload.rgb[2].eq(Mux(three, B, yv)),
                             self.o.payload.last.eq(s1_last)]
        with m.If(self.o.valid & self.o.ready & self.o.payload.last):
            m.d.sync += self.done.eq(1)
        m.d.comb += self.idle.eq(~s1_valid & ~self.o.valid)
        return m
