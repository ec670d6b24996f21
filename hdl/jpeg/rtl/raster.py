"""MCU-row line buffers -> fancy upsampling -> YCbCr to RGB -> raster-order pixels.

Line buffers: one RAM per component, 64-bit words (8 samples, one IDCT block row), 32 lines of
``stride`` words each (``stride`` = the next power of two >= max_width / 8): 32 lines hold two
MCU rows of 4:2:0 luma (16 lines each) and four MCU rows of chroma. The entropy decoder may
start MCU row ``d`` only when the raster stage has finished reading MCU row ``d - 2``
(``out_rows``); the raster stage starts a line only when every MCU row it reads is written
(``rows_done``), including the next row's first chroma line that the triangle filter needs.

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

__all__ = ["Raster", "line_stride"]

LINES = 32


def line_stride(max_width: int) -> int:
    words = max(1, -(-max_width // 8))
    return 1 << (words - 1).bit_length()


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
            "lw_data": In(64),
            "rows_done": In(16),
            "start": In(1),
            "width": In(16), "height": In(16), "three": In(1), "h2": In(1), "v2": In(1),
            "halt": In(1),
            "o": Out(stream.Signature(PixelIn)),
            "out_rows": Out(16),
            "done": Out(1), "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = LINES * self.stride
        sb = self.sbits
        mems = []
        for name in ("ymem", "cbmem", "crmem"):
            mem = memory.Memory(shape=64, depth=depth, init=[])
            m.submodules[name] = mem
            mems.append(mem)
        for q, mem in enumerate(mems):
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(Cat(self.lw_col[:sb] if sb else Const(0, 0), self.lw_line)),
                         wp.data.eq(self.lw_data), wp.en.eq(self.lw_en & (self.lw_comp == q))]

        en = Signal()
        m.d.comb += en.eq(~self.o.valid | self.o.ready)

        hs = self.three & self.h2
        vs = self.three & self.v2
        W, H = self.width, self.height
        cw = Signal(16)
        ch = Signal(16)
        m.d.comb += [cw.eq(Mux(hs, (W + 1) >> 1, W)), ch.eq(Mux(vs, (H + 1) >> 1, H))]
        hf = hs & (cw > 2)
        vf = vs & (~hs | (cw > 2))

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
        with m.If(vf & (y[0] == 0)):
            m.d.comb += cn.eq(Mux(cy == 0, 0, cy - 1))
        with m.Elif(vf):
            m.d.comb += cn.eq(below)
        with m.Else():
            m.d.comb += cn.eq(cy)
        need = Mux(vf & y[0], below, cy) >> 3
        line_ok = need < self.rows_done
        fire = Signal()
        m.d.comb += fire.eq(running & line_ok & en & ~self.halt)
        m.d.comb += self.out_rows.eq(Mux(vs, y >> 4, y >> 3))

        with m.If(self.start):
            m.d.sync += [running.eq(1), x.eq(0), y.eq(0)]
        with m.If(fire):
            with m.If(x == W - 1):
                m.d.sync += [x.eq(0), y.eq(y + 1)]
                with m.If(y == H - 1):
                    m.d.sync += running.eq(0)
            with m.Else():
                m.d.sync += x.eq(x + 1)

        def addr(row, col):
            return Cat(col[3:3 + sb] if sb else Const(0, 0), row[:5])

        yr = mems[0].read_port(transparent_for=())
        m.d.comb += [yr.addr.eq(addr(y, x)), yr.en.eq(en)]
        cports = []
        for mem in mems[1:]:
            ports = []
            for row, col in ((cy, cx), (cy, nx), (cn, cx), (cn, nx)):
                rp = mem.read_port(transparent_for=())
                m.d.comb += [rp.addr.eq(addr(row, col)), rp.en.eq(en)]
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
            d = ports[3].data.word_select(s1_nx, 8)
            vc = Signal(10, name=f"vc{q}")
            vn = Signal(10, name=f"vn{q}")
            m.d.comb += [vc.eq(Mux(vf, 3 * a + c, a << 2)), vn.eq(Mux(vf, 3 * b + d, b << 2))]
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
                m.d.sync += [self.o.payload.rgb[0].eq(Mux(self.three, R, yv)),
                             self.o.payload.rgb[1].eq(Mux(self.three, Gc, yv)),
                             self.o.payload.rgb[2].eq(Mux(self.three, B, yv)),
                             self.o.payload.last.eq(s1_last)]
        with m.If(self.o.valid & self.o.ready & self.o.payload.last):
            m.d.sync += self.done.eq(1)
        m.d.comb += self.idle.eq(~s1_valid & ~self.o.valid)
        return m
