"""MCU-row line buffers -> fancy upsampling -> YCbCr to RGB -> raster-order pixels, at full size
or scaled (1/2, 1/4, 1/8: the plan of :func:`hdl.jpeg.decoder.plan_components`).

Line buffers: 64-bit words (8 samples), ``stride`` words per line (``stride`` = the next power of
two >= max_width / 8). A block row of ``s`` samples (the IDCT size of its component: 8, 4, 2 or
1) is written with byte enables at sample column ``bcol * s`` of ring line ``(component sample
row + woff) mod lines``. Luma keeps 32 lines (one RAM): two MCU rows of up to 16 lines (``vmax *
8 / d``). Chroma keeps 16 lines: two MCU rows of up to 8 lines (a chroma component has one block
row per MCU row, of at most 8 samples, also when 4:2:0 chroma gets the larger IDCT at 1/2 ..
1/8). Each chroma component is split over two RAMs of 8 lines, one for the even and one for the
odd ring lines: the vertical filter's two rows (``cy`` and its neighbour ``cn``) are adjacent
ring lines, so each RAM is read once per pixel, by one read port. A block row's write is
registered once on its way to the RAMs, and ``rows_done`` with it.

Flow control at MCU-row granularity: ``out_rows`` is the oldest MCU row the raster still reads
(the chroma row above the current one counts while the vertical triangle filter needs it); the
decoder top turns it into the entropy decoder's ``row_limit`` (MCU row ``d`` may start when
``d <= out_rows + 1``, so at most two MCU rows are live in each ring). The raster starts a line
only when every MCU row it reads is written (``rows_done``), including the next row's first
chroma line that the filter needs; the last pixel of a line also waits for the next line's rows,
as it prefetches that line's first chroma words (below). Each image starts in the rings where
the front end put its line 0 (``woff_y``/``woff_c``, latched at ``start``): right after the
previous image's last MCU row, so the next image's first row can be written while that row is
read out.

The plan per image (from the inputs latched at ``start``, settled over a few clocks before the
first pixel): output size ``ceil(W / d) x ceil(H / d)``; 4:2:0 at 1/2 .. 1/8 decodes chroma at
the luma's resolution (no upsampling); 4:2:2 / 4:4:0 (and 4:2:0 at full size) upsample chroma by
2 as at full size; fancy filtering is off at 1/8 (replication).

The filters of :mod:`hdl.jpeg.upsample` in one formula: with ``V(c) = 3*C[cy][c] + C[cn][c]``
(or ``4*C[cy][c]`` without vertical filtering), the sample is ``(3*V(cx) + V(nx) + bias) >> 4``
(or ``(4*V(cx) + bias) >> 4``); bias 8/7 (h2v2, by column parity), 4/8 (h2v1 by column, h1v2 by
row parity), 0 for replication. Edges replicate the last real row / column. Colour:
:mod:`hdl.jpeg.color`'s integer formulas (gray: chroma forced to 128, which gives ``R=G=B=Y``).

Line state: the per-line values (chroma rows, ring lines, the MCU row each line needs, edge
flags) of the *next* line are computed from a line counter over three register stages (``nl_``)
and copied into the current line's registers (``cur_``) when the line's last pixel issues, so
the pixel loop only compares registers. Its availability is compared against ``rows_done`` into
registers too (``ok_c``, ``ok_n``); a line's last pixel waits until the next line's values have
settled, which only costs clocks on lines narrower than 5 pixels.

Pixel pipeline, one pixel per clock. It never stalls (no enable fans out to its registers):
a pixel issues only while the 32-entry output FIFO has room for every pixel issued and not yet
taken from ``o`` (``inflight``), more than the pipeline's latency, so a stream runs at full
rate. Register stages, each holding the result of the step named:

- SA (issue): the pixel counter ``x`` and the current line's registers give the RAM addresses:
  luma word ``x / 8``; each chroma RAM the word after the pixel's chroma word ``cx / 8`` (a
  prefetch) or, on the last pixel of a line, word 0 of the next line (and of line 0 once per
  image, before its first pixel). ``out_rows`` is registered here too, as the reads are.
- S1: the RAMs' read registers (asynchronous Amaranth ports plus a register: one DP16KD read).
- SR0: the read data straight into registers that feed nothing but SR's (the EBR's ~5.8 ns
  clock-to-output leaves no room for logic, nor for a route across the die, so these can sit
  beside their EBRs).
- SR: the read data again, now near the window logic.
- S2: a window of three chroma words per RAM (previous, current, next) slides on the first pixel
  of each chroma word and takes the read data as its next word, so the horizontal neighbour
  ``nx`` (``cx`` +- 1) is always in the window, with one read per pixel. Luma word.
- S3: byte selection: the luma sample; per RAM the samples at ``cx`` and ``nx``, swapped into
  rows ``cy`` / ``cn`` by the parity of ``cy``'s ring line.
- S4: vertical filter ``V = 3*a + c`` (shift + add).
- S5: horizontal filter ``3*V(cx) + V(nx)`` (shift + add).
- S6: ``+ bias >> 4``, minus 128: Cb / Cr, the multipliers' registered operands.
- S7: the four colour products (one MULT18X18D each).
- S8: ``+ ONE_HALF >> SCALEBITS``: the R / G / B offsets.
- S9: ``Y +`` offset.
- PX: clamped to 0..255: the output FIFO's write data.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ...rtl.dsp import registered_product
from ...rtl.layouts import PixelIn
from ..color import ONE_HALF, SCALEBITS, _fix

__all__ = ["Raster", "line_stride", "scaled_size", "LUMA_LINES", "CHROMA_LINES"]

LUMA_LINES = 32
CHROMA_LINES = 16

# clocks after ``start`` before the first pixel: 1 to latch the inputs, 3 plan stages, 3 line
# stages for line 0, then the copy into the current line and one clock for its ``ok_c``
_HOLD = 12
_PRIME = 2                  # the ``hold`` value at which line 0 becomes the current line
_OFIFO = 32                 # output FIFO: more than the pipeline's latency, for full rate
_LINE_LAT = 4               # clocks from a line counter step to the next line's ``ok_n``


def line_stride(max_width: int) -> int:
    words = max(1, -(-max_width // 8))
    return 1 << (words - 1).bit_length()


def scaled_size(v, scale):
    """``ceil(v / 2**scale)`` of a 16-bit value and a 2-bit scale code (an Amaranth value)."""
    return Mux(scale == 0, v, Mux(scale == 1, (v + 1) >> 1,
                                  Mux(scale == 2, (v + 3) >> 2, (v + 7) >> 3)))[:16]


class _LineRam:
    """A line buffer of 64-bit words, byte-enabled writes, one read port whose data is
    registered straight out of the RAM. A buffer of 2048 words or more is split into lanes
    exactly as deep as one DP16KD shape (2048 x 9, 4096 x 4, 8192 x 2, 16384 x 1): a lane that
    took several DP16KDs in depth would put a LUT mux after the EBRs' clock-to-output, which
    with the route is most of a 100 MHz clock. Smaller buffers stay one RAM of 64-bit words
    (fewer, wider DP16KDs)."""

    def __init__(self, m, name, depth):
        self.depth = depth
        n = 1 if depth < 2048 else min(64, 8 * (depth // 2048))
        # no_rw_check: the raster reads only lines that are completely written and not written
        # again while read (flow control), so a read and a write never meet on a word whose
        # data is used; without it yosys adds collision logic between the RAM and its register
        self.lanes = [memory.Memory(shape=64 // n, depth=depth, init=[],
                                    attrs={"no_rw_check": 1}) for _ in range(n)]
        for i, mem in enumerate(self.lanes):
            m.submodules[f"{name}_b{i}"] = mem

    def write(self, m, addr, data, mask):
        w = 64 // len(self.lanes)
        for i, mem in enumerate(self.lanes):
            if w > 8:
                wp = mem.write_port(granularity=8)
                en = mask[w // 8 * i:w // 8 * (i + 1)]
            else:
                wp = mem.write_port()
                en = mask[w * i // 8]          # the byte this narrow lane is part of
            m.d.comb += [wp.addr.eq(addr), wp.data.eq(data[w * i:w * i + w]), wp.en.eq(en)]

    def read(self, m, addr, name):
        # an asynchronous port and a plain register: yosys merges the two into the RAM's
        # synchronous read port and only then honours no_rw_check (a synchronous Amaranth port
        # arrives with its collision behaviour already fixed to "old data")
        data = Signal(64, name=name, reset_less=True)
        w = 64 // len(self.lanes)
        for i, mem in enumerate(self.lanes):
            rp = mem.read_port(domain="comb")
            m.d.comb += rp.addr.eq(addr)
            m.d.sync += data[w * i:w * i + w].eq(rp.data)
        return data


def _reg(m: Module, value, name: str) -> Signal:
    """``value`` one clock later (not reset)."""
    r = Signal(len(value), name=name, reset_less=True)
    m.d.sync += r.eq(value)
    return r


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
        half = CHROMA_LINES // 2
        ymem = _LineRam(m, "ymem", LUMA_LINES * self.stride)
        # cmems[q][p]: component q (Cb, Cr), ring lines of parity p
        cmems = []
        for q, name in enumerate(("cb", "cr")):
            pair = []
            for p in range(2):
                pair.append(_LineRam(m, f"{name}mem{p}", half * self.stride))
            cmems.append(pair)

        def wcat(word, line):
            return Cat(word[:sb], line) if sb else line

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
        wword = scol[3:]
        wline_y = (self.lw_line + self.woff_y)[:5]
        wline_c = (self.lw_line + self.woff_c)[:4]
        # The write is registered before it reaches the RAMs (address, data, byte enables):
        # the address arithmetic and the route to some 40 block RAMs across the die do not fit
        # one clock together. ``rows_done`` is delayed with it (``rows_in``), so a line is
        # never read before its last write has landed. None of them is reset: the raster's
        # reset between images (``back_rst``) comes while the front end is already writing the
        # next image's first rows, and must not drop the write in flight.
        w_addr_y = _reg(m, wcat(wword, wline_y), "w_addr_y")
        w_addr_c = _reg(m, wcat(wword, wline_c[1:]), "w_addr_c")
        w_data = _reg(m, wdata, "w_data")
        w_mask_y = _reg(m, Mux(self.lw_en & (self.lw_comp == 0), wmask, 0), "w_mask_y")
        ymem.write(m, w_addr_y, w_data, w_mask_y)
        for q, pair in enumerate(cmems):
            for p, mem in enumerate(pair):
                hit = self.lw_en & (self.lw_comp == q + 1) & (wline_c[0] == p)
                mem.write(m, w_addr_c, w_data,
                          _reg(m, Mux(hit, wmask, 0), f"w_mask_c{q}{p}"))
        rows_in = _reg(m, self.rows_done, "rows_in")

        # The pixel pipeline never stalls (no enable fanning out to its registers): a pixel
        # issues only while the output FIFO has room for every pixel in flight (credits).
        m.submodules.ofifo = ofifo = SyncFIFOBuffered(width=PixelIn.size, depth=_OFIFO)
        inflight = Signal(range(_OFIFO + 1))    # issued, not yet taken from ``o``
        room = Signal()
        pop = Signal()
        m.d.comb += [self.o.valid.eq(ofifo.r_rdy), self.o.payload.eq(ofifo.r_data),
                     ofifo.r_en.eq(self.o.ready), pop.eq(ofifo.r_rdy & self.o.ready),
                     room.eq(inflight < _OFIFO)]

        # ---- the plan: inputs latched at start, then three register stages -----------------
        width = Signal(16)
        height = Signal(16)
        sc = Signal(2)
        three = Signal()
        h2 = Signal()
        v2 = Signal()
        roff_y = Signal(5)          # this image's line 0 in each ring
        roff_c = Signal(4)
        with m.If(self.start):
            m.d.sync += [width.eq(self.width), height.eq(self.height), sc.eq(self.scale),
                         three.eq(self.three), h2.eq(self.h2), v2.eq(self.v2),
                         roff_y.eq(self.woff_y), roff_c.eq(self.woff_c)]
        W = Signal(16)              # output size
        H = Signal(16)
        hs = Signal()               # chroma upsampled 2x horizontally / vertically
        vs = Signal()
        fancy = Signal()
        lc = Signal(2)              # log2 chroma lines per MCU row (luma lines for gray)
        c420s = three & h2 & v2 & (sc != 0)
        m.d.sync += [W.eq(scaled_size(width, sc)), H.eq(scaled_size(height, sc)),
                     hs.eq(three & h2 & ~c420s), vs.eq(three & v2 & ~c420s),
                     fancy.eq(sc != 3), lc.eq(3 - sc + c420s)]
        cw = Signal(16)             # chroma plane size
        ch = Signal(16)
        Wm1 = Signal(16)
        Wm2 = Signal(16)
        Hm1 = Signal(16)
        w1 = Signal()               # one pixel wide: every pixel is a line's last
        m.d.sync += [cw.eq(Mux(hs, (W + 1) >> 1, W)), ch.eq(Mux(vs, (H + 1) >> 1, H)),
                     Wm1.eq(W - 1), Wm2.eq(W - 2), Hm1.eq(H - 1), w1.eq(W == 1)]
        hf = Signal()               # fancy filtering horizontally / vertically
        vf = Signal()
        chm1 = Signal(16)
        m.d.sync += [hf.eq(fancy & hs & (cw > 2)), vf.eq(fancy & vs & (~hs | (cw > 2))),
                     chm1.eq(ch - 1)]
        m.d.comb += [self.out_w.eq(W), self.out_h.eq(H)]

        # ---- the next line's values, three register stages from the line counter ny ---------
        ny = Signal(16)
        a_cy = Signal(16)           # chroma row
        a_y0 = Signal()
        a_cz = Signal()             # chroma row 0
        a_ge = Signal()             # last chroma row (the one below is replicated)
        a_cp1 = Signal(16)
        a_cm1 = Signal(16)
        a_ylast = Signal()
        a_ly = Signal(5)
        cyv = Mux(vs, ny >> 1, ny)
        m.d.sync += [a_cy.eq(cyv), a_y0.eq(ny[0]), a_cz.eq(cyv == 0), a_ge.eq(cyv >= chm1),
                     a_cp1.eq(cyv + 1), a_cm1.eq(cyv - 1), a_ylast.eq(ny == Hm1),
                     a_ly.eq((ny + roff_y)[:5])]
        b_cy = Signal(16)
        b_cn = Signal(16)
        b_need = Signal(16)         # before the shift by lc
        b_outr = Signal(16)
        b_vfe = Signal()            # the two rows differ: vertical filter on
        b_y0 = Signal()
        b_ylast = Signal()
        b_ly = Signal(5)
        below = Mux(a_ge, chm1, a_cp1)
        up = vf & ~a_y0
        cn = Mux(up, Mux(a_cz, 0, a_cm1), Mux(vf, below, a_cy))
        m.d.sync += [b_cy.eq(a_cy), b_cn.eq(cn), b_need.eq(Mux(vf & a_y0, below, a_cy)),
                     b_outr.eq(Mux(up, cn, a_cy)), b_vfe.eq(vf & Mux(up, ~a_cz, ~a_ge)),
                     b_y0.eq(a_y0), b_ylast.eq(a_ylast), b_ly.eq(a_ly)]
        # the values a line carries: (name, width)
        fields = [("need", 16), ("outr", 16), ("eline", 3), ("oline", 3), ("pc0", 1),
                  ("vfe", 1), ("y0", 1), ("ylast", 1), ("ly", 5)]
        nl = {n: Signal(w, name=f"nl_{n}") for n, w in fields}
        cur = {n: Signal(w, name=f"cur_{n}") for n, w in fields}
        pc = (b_cy + roff_c)[:4]
        pn = (b_cn + roff_c)[:4]
        m.d.sync += [nl["need"].eq(b_need >> lc), nl["outr"].eq(b_outr >> lc),
                     nl["eline"].eq(Mux(pc[0], pn[1:], pc[1:])),
                     nl["oline"].eq(Mux(pc[0], pc[1:], pn[1:])), nl["pc0"].eq(pc[0]),
                     nl["vfe"].eq(b_vfe), nl["y0"].eq(b_y0), nl["ylast"].eq(b_ylast),
                     nl["ly"].eq(b_ly)]
        # one clock late: the RAMs are read a clock after a pixel issues (below)
        m.d.sync += self.out_rows.eq(cur["outr"])

        # ---- pixel issue -------------------------------------------------------------------
        running = Signal()
        hold = Signal(range(_HOLD + 1))     # clocks until the first pixel of an image
        fresh = Signal(range(_LINE_LAT + 1))    # clocks until nl_* / ok_n are the next line's
        ok_c = Signal()             # the current line's rows are written
        ok_n_raw = Signal()         # the next line's rows are written
        x = Signal(16)
        x_first = Signal()
        x_last = Signal()
        # ``hold == 0`` and ``fresh == 0`` as flags kept with the counters: ``fire`` is the
        # enable of the pixel counter and the line registers, and ``halt`` arrives late
        hold_zero = Signal(init=1)
        fresh_zero = Signal(init=1)
        ok_n = ok_n_raw | cur["ylast"]
        fire = Signal()
        m.d.comb += fire.eq(running & hold_zero & ok_c & (~x_last | (ok_n & fresh_zero))
                            & room & ~self.halt)
        wrap = fire & x_last
        prime = Signal()            # line 0 becomes current; its first chroma words are read
        # (once line 0 is written: it reads line 0's first chroma words)
        m.d.comb += prime.eq((hold == _PRIME) & ok_n_raw)

        m.d.sync += [ok_c.eq(cur["need"] < rows_in),
                     ok_n_raw.eq(nl["need"] < rows_in)]
        with m.If(fresh != 0):
            m.d.sync += [fresh.eq(fresh - 1), fresh_zero.eq(fresh == 1)]
        with m.If((hold != 0) & ((hold != _PRIME) | ok_n_raw)):
            m.d.sync += [hold.eq(hold - 1), hold_zero.eq(hold == 1)]
        with m.If(prime | wrap):
            m.d.sync += [ny.eq(ny + 1), x.eq(0), x_first.eq(1), x_last.eq(w1),
                         fresh.eq(_LINE_LAT), fresh_zero.eq(0), ok_c.eq(ok_n_raw)]
            m.d.sync += [cur[n].eq(nl[n]) for n, _ in fields]
            with m.If(wrap & cur["ylast"]):
                m.d.sync += running.eq(0)
        with m.Elif(fire):
            m.d.sync += [x.eq(x + 1), x_first.eq(0), x_last.eq(x == Wm2)]
        with m.If(self.start):
            m.d.sync += [running.eq(1), hold.eq(_HOLD), hold_zero.eq(0), ny.eq(0)]

        # chroma column of the pixel and where its horizontal neighbour nx is: -1 / +1 / same
        cx3 = Mux(hs, x[1:4], x[:3])
        new_word = Mux(hs, x[:4] == 0, x[:3] == 0)
        left = hf & ~x[0] & ~x_first
        right = hf & x[0] & ~x_last
        nsrc = Signal(2)            # 0: current word, 1: previous word, 2: next word
        nidx = Signal(3)
        with m.If(left):
            m.d.comb += [nsrc.eq(Mux(cx3 == 0, 1, 0)), nidx.eq(cx3 - 1)]
        with m.Elif(right):
            m.d.comb += [nsrc.eq(Mux(cx3 == 7, 2, 0)), nidx.eq(cx3 + 1)]
        with m.Else():
            m.d.comb += [nsrc.eq(0), nidx.eq(cx3)]
        bias = Mux(hf & vf, Mux(x[0], 7, 8),
                   Mux(hf, Mux(x[0], 8, 4), Mux(vf, Mux(cur["y0"], 8, 4), 0)))

        # RAM addresses: luma the pixel's word; chroma the word after the pixel's chroma word,
        # or word 0 of the next line on a line's last pixel (and of line 0 when priming)
        yaddr = Signal(range(ymem.depth))
        m.d.sync += yaddr.eq(wcat(x[3:], cur["ly"]))
        ydata = ymem.read(m, yaddr, "ydata")
        to_next = x_last | prime
        cword = Mux(to_next, 0, Mux(hs, x[4:], x[3:]) + 1)
        cports = []
        for pair in cmems:
            ports = []
            for p, mem in enumerate(pair):
                key = "oline" if p else "eline"
                caddr = Signal(range(mem.depth), name=f"caddr{len(cports)}{p}")
                m.d.sync += caddr.eq(wcat(cword, Mux(to_next, nl[key], cur[key])))
                ports.append(mem.read(m, caddr, f"cdata{len(cports)}{p}"))
            cports.append(ports)

        # ---- SA: the issue registers --------------------------------------------------------
        sa = dict(valid=Signal(), win=Signal(), shift=Signal(), x3=Signal(3), cx3=Signal(3),
                  nsrc=Signal(2), nidx=Signal(3), pc0=Signal(), vfe=Signal(), bias=Signal(4),
                  last=Signal())
        m.d.sync += [sa["valid"].eq(fire), sa["win"].eq(fire | prime),
                     sa["shift"].eq(fire & new_word), sa["x3"].eq(x[:3]),
                     sa["cx3"].eq(cx3), sa["nsrc"].eq(nsrc), sa["nidx"].eq(nidx),
                     sa["pc0"].eq(cur["pc0"]), sa["vfe"].eq(cur["vfe"]),
                     sa["bias"].eq(bias), sa["last"].eq(x_last & cur["ylast"])]

        def stage(prev, n, keep):
            """The next pipeline stage's copies of ``keep`` from ``prev``."""
            s = {k: Signal.like(prev[k], name=f"s{n}_{k}") for k in keep}
            m.d.sync += [s[k].eq(prev[k]) for k in keep]
            return s

        s1 = stage(sa, 1, list(sa))
        # S1 (the RAMs' read registers) -> SR0: the read data straight into registers with no
        # other load (the EBR's clock-to-output takes most of a clock) -> SR
        sr0 = stage(s1, "r0", list(s1))
        sr = stage(sr0, "r", list(sr0))
        dy0 = _reg(m, ydata, "dy0")
        dy = Signal(64)
        dy2 = Signal(64)
        rdata = [[Signal(64, name=f"rd{q}{p}") for p in range(2)] for q in range(2)]
        m.d.sync += [dy.eq(dy0), dy2.eq(dy)]
        for q, ports in enumerate(cports):
            m.d.sync += [rdata[q][p].eq(_reg(m, rd, f"rd0_{q}{p}")) for p, rd in enumerate(ports)]

        # -> S2: the chroma windows slide; luma word
        s2 = stage(sr, 2, ["valid", "x3", "cx3", "nsrc", "nidx", "pc0", "vfe", "bias", "last"])
        wins = []                   # [q][p] = (previous, current, next) words
        for q in range(2):
            wq = []
            for p in range(2):
                wprev, wcur, wnext = (Signal(64, name=f"w{q}{p}_{k}") for k in "pcn")
                with m.If(sr["win"]):
                    m.d.sync += wnext.eq(rdata[q][p])
                    with m.If(sr["shift"]):
                        m.d.sync += [wprev.eq(wcur), wcur.eq(wnext)]
                wq.append((wprev, wcur, wnext))
            wins.append(wq)

        # ---- -> S3: byte selection -------------------------------------------------------
        s3 = stage(s2, 3, ["valid", "vfe", "bias", "last"])
        yv = [Signal(8, name=f"s{n}_y") for n in range(3, 10)]     # luma, stages S3..S9
        smp = [[Signal(8, name=f"s3_{q}{k}") for k in "abcd"] for q in range(2)]
        m.d.sync += yv[0].eq(dy2.word_select(s2["x3"], 8))
        for q, wq in enumerate(wins):
            at_c = []
            at_n = []
            for wprev, wcur, wnext in wq:
                at_c.append(wcur.word_select(s2["cx3"], 8))
                at_n.append(Mux(s2["nsrc"] == 1, wprev[56:],
                                Mux(s2["nsrc"] == 2, wnext[:8],
                                    wcur.word_select(s2["nidx"], 8))))
            a, b, c, dd = smp[q]
            odd = s2["pc0"]     # row cy is in the odd-line RAM
            m.d.sync += [a.eq(Mux(odd, at_c[1], at_c[0])), b.eq(Mux(odd, at_n[1], at_n[0])),
                         c.eq(Mux(odd, at_c[0], at_c[1])), dd.eq(Mux(odd, at_n[0], at_n[1]))]
        for n in range(1, len(yv)):
            m.d.sync += yv[n].eq(yv[n - 1])

        # ---- -> S4: vertical filter ------------------------------------------------------
        s4 = stage(s3, 4, ["valid", "bias", "last"])
        vcs = []
        for q in range(2):
            a, b, c, dd = smp[q]
            vc = Signal(10, name=f"s4_vc{q}")
            vn = Signal(10, name=f"s4_vn{q}")
            m.d.sync += [vc.eq(Mux(s3["vfe"], (a << 1) + a + c, a << 2)),
                         vn.eq(Mux(s3["vfe"], (b << 1) + b + dd, b << 2))]
            vcs.append((vc, vn))

        # ---- -> S5: horizontal filter ----------------------------------------------------
        s5 = stage(s4, 5, ["valid", "bias", "last"])
        hsum = []
        for q, (vc, vn) in enumerate(vcs):
            h = Signal(12, name=f"s5_h{q}")
            m.d.sync += h.eq(Mux(hf, (vc << 1) + vc + vn, vc << 2))
            hsum.append(h)

        # ---- -> S6: rounding; Cb / Cr as signed multiplier operands ----------------------
        s6 = stage(s5, 6, ["valid", "last"])
        # Cb and Cr go straight into the multipliers' operand registers (those are the S6
        # registers), and the products into their result registers (S7), inside the
        # MULT18X18Ds on the ECP5 (hdl/rtl/dsp.py): no fabric route on either side of the
        # multiplier.
        cb = Signal(signed(9))
        cr = Signal(signed(9))
        for h, dst in zip(hsum, (cb, cr)):
            up8 = ((h + s5["bias"]) >> 4)[:8]
            m.d.comb += dst.eq(Mux(three, Cat(up8[:7], ~up8[7], ~up8[7]), 0))

        # ---- -> S7: products -------------------------------------------------------------
        s7 = stage(s6, 7, ["valid", "last"])

        def product(name, v, k):
            return registered_product(m, name, v, Const(k, signed(18)), signed(28))
        p_r = product("mul_r", cr, _fix(1.40200))
        p_b = product("mul_b", cb, _fix(1.77200))
        p_gb = product("mul_gb", cb, -_fix(0.34414))
        p_gr = product("mul_gr", cr, -_fix(0.71414))

        # ---- -> S8: offsets --------------------------------------------------------------
        s8 = stage(s7, 8, ["valid", "last"])
        offs = [Signal(signed(10), name=f"s8_off{k}") for k in "rgb"]
        m.d.sync += [offs[0].eq((p_r + ONE_HALF) >> SCALEBITS),
                     offs[1].eq(((p_gb + ONE_HALF) + p_gr) >> SCALEBITS),
                     offs[2].eq((p_b + ONE_HALF) >> SCALEBITS)]

        # ---- -> S9: Y + offset -----------------------------------------------------------
        s9 = stage(s8, 9, ["valid", "last"])
        sums = [Signal(signed(11), name=f"s9_{k}") for k in "rgb"]
        m.d.sync += [s.eq(yv[5] + o) for s, o in zip(sums, offs)]

        # ---- -> PX: clamp into the output FIFO's write register --------------------------
        px = Signal(PixelIn)
        px_valid = Signal()
        m.d.sync += [px.rgb[k].eq(Mux(s < 0, 0, Mux(s > 255, 255, s[:8])))
                     for k, s in enumerate(sums)]
        m.d.sync += [px.last.eq(s9["last"]), px_valid.eq(s9["valid"])]
        m.d.comb += [ofifo.w_en.eq(px_valid), ofifo.w_data.eq(px.as_value())]

        m.d.sync += inflight.eq(inflight + fire - pop)
        with m.If(pop & self.o.payload.last):
            m.d.sync += self.done.eq(1)
        m.d.comb += self.idle.eq(inflight == 0)
        return m
