"""The JPEG decoder top: file bytes in, RGB pixels in raster order out, one status beat per image.

::

    i (bytes) -> MarkerParser -> EntropyDecoder -> BlockIdct -> Raster -> o (pixels)
                  |  tables: q RAM, Huffman lim/base + symbol RAM
                  '- status: header errors, trailer result

Ports: ``i`` = ``{byte, last}``, ``last`` on the file's final byte; ``o`` = ``hdl.rtl.layouts
.PixelIn`` (``rgb``, ``last`` on the final pixel); ``status`` = ``{code, width, height}``, one
beat per image (after the last pixel, or on an error); ``width``/``height``/``header_valid`` once
the SOF is parsed.

Scaled decoding (DCT-domain downscaling, as libjpeg-turbo / Pillow's ``draft``): ``scale`` is
log2 of the denominator d (0 = full size, 1 = 1/2, 2 = 1/4, 3 = 1/8). It is sampled together
with each file's first byte (the first ``i`` beat after reset or after a beat with ``last``, at
its handshake) and held for that image, so a driver may set it any time before it offers the
file's first byte and change it as soon as that byte is taken. The pixels on ``o`` are then the
image at ``ceil(W / d) x ceil(H / d)`` (raster order, ``last`` on the final one), bit-identical
to :func:`hdl.jpeg.decode_status` with ``scale=1/d``; ``status.width``/``height`` and the
``width``/``height`` ports give that output size. Header checks (BAD_DIMENSIONS against
``max_width``/``max_height``) apply to the file's own size. The plan per component is
:func:`hdl.jpeg.decoder.plan_components`'s: luma blocks through the 8/d-point IDCT; chroma at the
same size and upsampled as at full size, except 4:2:0 at 1/2 .. 1/8, whose chroma goes through
the 16/d-point IDCT and needs no upsampling; fancy upsampling off at 1/8.

Status codes and their priority are the golden model's (:func:`hdl.jpeg.decode_status`): a
header error ends the image at once; otherwise an entropy-decoding error wins over a trailer
result (MISSING_EOI, errors between the scan and EOI, OK at EOI). On an error the pixel stream
stops where it is (no more pixels, no ``last``), the pipeline empties, the status beat goes out,
the input is drained to ``last`` and the whole datapath is reset for the next image.

Images overlap: the front end (parser, entropy decoder, IDCT) runs up to one image ahead of the
raster stage. Once image n is entirely in the line buffers and its file has been read to
``last``, the parser starts on file n + 1 and its first MCU row goes into the ring slot after
image n's last one while that row is still being read out, so header parsing and the first MCU
row are hidden and a stream of images keeps ``o`` busy (about one clock per pixel from the
second image on, a handful of clocks per image). Statuses still come in file order, each
after its image's last pixel; an error in the image ahead waits until the one before is out.

Glue registers (between the sub-blocks, for 100+ MHz): the input and output skid buffers;
``failed`` (the image's verdict is an error) is a register beside ``final``/``code``; the
"IDCT wrote the last MCU row" compare (``rows_complete``) and the entropy decoder's line-buffer
limit (``row_limit``) are registered, each a clock late (conservative: see their comments);
``go`` (the parser's next file, the entropy decoder's and IDCT's reset) is registered, a clock
late (no verdict is taken in that clock); the IDCT sizes, the image's MCU rows and the ring's
lines per MCU row are registered from the configuration; the scan's ``start`` is registered (a
clock late).

Memory (``max_width`` = W, rounded up to a power of two): line buffers 32 lines of luma and
2 x 16 lines of chroma, W bytes each (64 W bytes: 256 KiB at the default 4096); Huffman symbol
RAM 3 KiB (12 tables, read asynchronously: distributed RAM); quantization RAM 256 B;
coefficient buffers and IDCT workspace in small RAMs (2 x 64 x 20 + 64 x 28 bits).
"""
from __future__ import annotations

from amaranth import (Cat, ClockDomain, ClockSignal, DomainRenamer, Module, Mux,
                      ResetInserter, ResetSignal, Signal, unsigned)
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...rtl.layouts import PixelIn
from .entropy import EntropyDecoder
from .idct import BlockIdct
from .parser import InByte, MarkerParser
from .raster import CHROMA_LINES, LUMA_LINES, Raster, line_stride, scaled_size

__all__ = ["JpegDecoder", "JpegStatusBeat", "manifest", "DEFAULT_MAX_WIDTH",
           "DEFAULT_MAX_HEIGHT"]

DEFAULT_MAX_WIDTH = 4096
DEFAULT_MAX_HEIGHT = 4096

JpegStatusBeat = data.StructLayout({"code": unsigned(8), "width": unsigned(16),
                                    "height": unsigned(16)})


class JpegDecoder(wiring.Component):
    def __init__(self, max_width: int = DEFAULT_MAX_WIDTH, max_height: int = DEFAULT_MAX_HEIGHT):
        if not (1 <= max_width <= 65535 and 1 <= max_height <= 65535):
            raise ValueError("max_width / max_height must be 1..65535")
        self.max_width = max_width
        self.max_height = max_height
        super().__init__({
            "i": In(stream.Signature(InByte)),
            "o": Out(stream.Signature(PixelIn)),
            "status": Out(stream.Signature(JpegStatusBeat)),
            "width": Out(16), "height": Out(16), "header_valid": Out(1),
            "scale": In(2),
        })

    def memory_bytes(self) -> dict:
        stride = line_stride(self.max_width)
        return {"line_buffers": (LUMA_LINES + 2 * CHROMA_LINES) * stride * 8,
                "huffman_symbols": 12 * 256,
                "quant": 256}

    def elaborate(self, platform):
        # The datapath runs in a local domain on the same clock whose reset is the domain
        # reset registered once (``rst_q``, high from time zero): its next-state logic then
        # depends on state only, not on the ``rst`` input, which keeps a cycle-based simulator
        # (Verilator) from re-evaluating all of it whenever an input is driven. While ``rst_q``
        # is high (one cycle longer than ``rst``) the input is held off.
        top = Module()
        rst_q = Signal(init=1, reset_less=True)
        top.d.sync += rst_q.eq(ResetSignal())
        top.domains.dec = ClockDomain("dec", local=True)
        top.d.comb += [ClockSignal("dec").eq(ClockSignal()), ResetSignal("dec").eq(rst_q)]
        top.submodules.core = DomainRenamer("dec")(self._datapath(rst_q))
        return top

    def _datapath(self, hold):
        m = Module()
        front_rst = Signal()        # entropy decoder and IDCT: between images, and on errors
        back_rst = Signal()         # raster stage: after its image's status beat
        m.submodules.parser = parser = MarkerParser(self.max_width, self.max_height)
        m.submodules.entropy = ent = ResetInserter(front_rst)(EntropyDecoder())
        m.submodules.idct = idct = ResetInserter(front_rst)(BlockIdct())
        m.submodules.raster = ras = ResetInserter(back_rst)(Raster(self.max_width))

        # Input skid buffer (two entries): nothing past it depends combinationally on the
        # ``i`` port, so a simulator need not re-evaluate the parser and entropy decoder's
        # next-state logic whenever the input is driven. Full rate, one clock of latency.
        # Each entry also holds ``scale`` as it was at the byte's handshake.
        ib = [Signal(InByte.size + 2, name=f"ib{n}") for n in range(2)]
        icnt = Signal(2)
        push = Signal()
        pop = Signal()
        m.d.comb += [self.i.ready.eq((icnt != 2) & ~hold),
                     push.eq(self.i.valid & self.i.ready),
                     parser.i.valid.eq(icnt != 0), parser.i.payload.eq(ib[0][:InByte.size]),
                     pop.eq(parser.i.valid & parser.i.ready)]
        with m.If(pop):
            m.d.sync += ib[0].eq(ib[1])
        i_entry = Cat(self.i.payload, self.scale)
        with m.If(push & ((icnt == 0) | ((icnt == 1) & pop))):
            m.d.sync += ib[0].eq(i_entry)
        with m.Elif(push):
            m.d.sync += ib[1].eq(i_entry)
        m.d.sync += icnt.eq(icnt + push - pop)
        # the image's scale: that of its file's first byte, taken when the parser takes it
        # (the parser takes no byte of the next file before the top's ``go``)
        first = Signal(init=1)
        scale = Signal(2)
        with m.If(pop):
            m.d.sync += first.eq(ib[0][InByte.size - 1])
            with m.If(first):
                m.d.sync += scale.eq(ib[0][InByte.size:])
        wiring.connect(m, parser.bo, ent.bi)
        wiring.connect(m, parser.bnd, ent.bnd)
        # Output skid buffer (two entries), for the same reason as the input's: the raster
        # stage's pipeline enable then depends on state only, not on the ``o.ready`` input.
        ob = [Signal(PixelIn.size, name=f"ob{n}") for n in range(2)]
        ocnt = Signal(2)
        opush = Signal()
        opop = Signal()
        m.d.comb += [ras.o.ready.eq(ocnt != 2), opush.eq(ras.o.valid & ras.o.ready),
                     self.o.valid.eq(ocnt != 0), self.o.payload.eq(ob[0]),
                     opop.eq(self.o.valid & self.o.ready)]
        with m.If(opop):
            m.d.sync += ob[0].eq(ob[1])
        with m.If(opush & ((ocnt == 0) | ((ocnt == 1) & opop))):
            m.d.sync += ob[0].eq(ras.o.payload)
        with m.Elif(opush):
            m.d.sync += ob[1].eq(ras.o.payload)
        m.d.sync += ocnt.eq(ocnt + opush - opop)
        o_empty = ocnt == 0
        m.d.comb += [
            ent.zfill.eq(parser.zfill),
            ent.s_we.eq(parser.s_we), ent.s_addr.eq(parser.s_addr), ent.s_data.eq(parser.s_data),
            ent.l_we.eq(parser.l_we), ent.l_tbl.eq(parser.l_tbl), ent.l_len.eq(parser.l_len),
            ent.l_lim.eq(parser.l_lim), ent.l_base.eq(parser.l_base),
            idct.q_we.eq(parser.q_we), idct.q_addr.eq(parser.q_addr),
            idct.q_data.eq(parser.q_data),
        ]
        for name in ("width", "height", "three", "h2", "v2"):
            m.d.comb += [getattr(ent, name).eq(getattr(parser, name)),
                         getattr(ras, name).eq(getattr(parser, name))]
        woff_y = Signal(5)
        woff_c = Signal(4)
        back_free = Signal()
        # IDCT sizes (log2): luma 8/d; chroma the same, or 16/d for 4:2:0 at 1/2 .. 1/8.
        # Registered (``scale`` is set at the file's first byte, the rest at its SOF, long
        # before the scan), so the parser's frame registers do not reach into the IDCT.
        c420s = parser.three & parser.h2 & parser.v2 & (scale != 0)
        idct_ls = Signal(2, init=3)
        idct_cs = Signal(2, init=3)
        m.d.sync += [idct_ls.eq(3 - scale), idct_cs.eq(3 - scale + c420s)]
        out_w = Signal(16)
        out_h = Signal(16)
        m.d.comb += [ras.scale.eq(scale), idct.ls.eq(idct_ls), idct.cs.eq(idct_cs),
                     out_w.eq(scaled_size(parser.width, scale)),
                     out_h.eq(scaled_size(parser.height, scale))]
        # The scan's start (SOS accepted) leaves the parser through a register, ``start``: it
        # resets the entropy decoder's MCU state and starts the raster stage, from the
        # parser's segment verdict logic otherwise. (The scan configuration is set with it.)
        start = Signal()
        m.d.sync += start.eq(parser.start)
        m.d.comb += [
            ent.start.eq(start),
            ent.ns.eq(parser.ns), ent.s_fidx.eq(parser.s_fidx), ent.s_dc.eq(parser.s_dc),
            ent.s_ac.eq(parser.s_ac), ent.tq.eq(parser.tq), ent.ri.eq(parser.ri),
            ent.can_claim.eq(idct.can_claim), idct.claim.eq(ent.claim),
            idct.cw_valid.eq(ent.cw_valid), idct.cw_k.eq(ent.cw_k), idct.cw_val.eq(ent.cw_val),
            idct.cw_tq.eq(ent.cw_tq),
            idct.be_valid.eq(ent.be_valid), idct.be_comp.eq(ent.be_comp),
            idct.be_bcol.eq(ent.be_bcol), idct.be_brow.eq(ent.be_brow),
            idct.be_row_end.eq(ent.be_row_end),
            ras.lw_en.eq(idct.lw_en), ras.lw_comp.eq(idct.lw_comp), ras.lw_line.eq(idct.lw_line),
            ras.lw_col.eq(idct.lw_col), ras.lw_size.eq(idct.lw_size),
            ras.lw_data.eq(idct.lw_data),
            ras.rows_done.eq(idct.rows_done),
            self.width.eq(out_w), self.height.eq(out_h),
            ras.woff_y.eq(woff_y), ras.woff_c.eq(woff_c),
            self.header_valid.eq(parser.header_valid),
        ]

        # ---- image sequencing and status ------------------------------------------------------
        # The front end (parser, entropy decoder, IDCT) may run one image ahead of the raster
        # stage: once image n is entirely written to the line buffers, the parser starts on file
        # n + 1 and the entropy decoder fills the ring slot after image n's last MCU row while
        # that row is still being read out. So header parsing and the first MCU row of the next
        # image hide behind the last MCU row of this one, and a stream of images keeps the
        # pixel output busy. ``ahead``: the front end is on the image after the raster's.
        final = Signal()            # the front end's verdict on its image is in ``code``
        code = Signal(8)
        ahead = Signal()
        all_rows = Signal()         # the raster's image is entirely in the line buffers
        start_pending = Signal()    # the front end's image reached its scan; raster not free
        last_row = Signal(16)       # the raster's image's last MCU row, while ``ahead``
        front_next = Signal()       # the front end moves on to the next file
        # ``go`` (the parser moves on to the next file; the entropy decoder and the IDCT are
        # reset) leaves through a register, ``go_q``: the parser's and the sequencing's state
        # do not reach the parser's registers or the front end's resets (a synchronous reset
        # across the die) in one clock. In the clock of ``go_q`` the front end still shows
        # the last image's results: no verdict is taken from them then.
        go = Signal()
        go_q = Signal()
        m.d.sync += go_q.eq(go)
        m.d.comb += [parser.go.eq(go_q), front_rst.eq(go_q)]
        # ``failed`` (= final & code != 0) is a register of its own, as it fans out to the
        # parser, the raster and the sequencing. ``failed`` and ``ahead`` are written through
        # their next values (``failed_d``, ``ahead_d``) so that the raster's ``halt`` (failed
        # & ~ahead) is a register too: its AND in front of the raster's pixel enable was the
        # last clock's logic too many there.
        failed = Signal()
        failed_d = Signal()
        ahead_d = Signal()
        halt = Signal()
        m.d.comb += [failed_d.eq(failed), ahead_d.eq(ahead)]
        m.d.sync += [failed.eq(failed_d), ahead.eq(ahead_d), halt.eq(failed_d & ~ahead_d)]
        with m.If(front_next):
            m.d.sync += [final.eq(0), code.eq(0)]
            m.d.comb += failed_d.eq(0)
        with m.Elif(~final & ~go_q):
            with m.If(parser.res_valid & ~parser.started):
                m.d.sync += [final.eq(1), code.eq(parser.res_code)]
                m.d.comb += failed_d.eq(parser.res_code != 0)
            with m.Elif(ent.err != 0):
                m.d.sync += [final.eq(1), code.eq(ent.err)]
                m.d.comb += failed_d.eq(1)
            with m.Elif(ent.done & parser.res_valid):
                m.d.sync += [final.eq(1), code.eq(parser.res_code)]
                m.d.comb += failed_d.eq(parser.res_code != 0)
        m.d.comb += [parser.abort.eq(failed), ras.halt.eq(halt),
                     ras.rows_done.eq(Mux(all_rows, 0xFFFF, idct.rows_done))]

        # Line-buffer room for the front end: normally two MCU rows past what the raster still
        # reads; while it is ahead, row 0 only once the raster reads nothing but its image's
        # last MCU row, and nothing more until the raster has finished that image. Registered
        # (the raster's row count crosses into the entropy decoder's row gate): it is one
        # clock late, which only holds the front end back a clock longer, except where it
        # drops (the front end's reset at ``front_next``/RESTART), when the entropy decoder
        # has just been reset and starts no row before the parser's next SOS.
        row_limit = Signal.like(ent.row_limit)
        m.d.sync += row_limit.eq(Mux(ahead, Mux(ras.out_rows >= last_row, 1, 0),
                                     ras.out_rows + 2))
        m.d.comb += ent.row_limit.eq(row_limit)

        # Ring offsets: the front end's image starts right after the previous image's rows.
        # The image's MCU rows and lines per MCU row are registered (from the configuration,
        # set long before they are used).
        v2e = parser.three & parser.v2
        mcu_rows = Signal(16)
        m.d.sync += mcu_rows.eq((parser.height + Mux(v2e, 15, 7)) >> Mux(v2e, 4, 3))
        luma_lines = Signal(3)      # log2 of the lines one MCU row takes in each ring
        chroma_lines = Signal(3)
        m.d.sync += [luma_lines.eq(3 - scale + v2e), chroma_lines.eq(3 - scale + c420s)]
        # the IDCT has written the image's last MCU row (the compare registered: a clock late;
        # it is stale only right after a reset or an SOF, while ``final`` is still clear)
        rows_complete = Signal()
        m.d.sync += rows_complete.eq(idct.rows_done == mcu_rows)
        front_complete = final & ~failed & rows_complete
        m.d.comb += front_next.eq(front_complete & ~ahead & parser.at_end)
        with m.If(front_next):
            m.d.comb += go.eq(1)
            m.d.comb += ahead_d.eq(1)
            m.d.sync += [all_rows.eq(1), last_row.eq(idct.rows_done - 1),
                         woff_y.eq(woff_y + (idct.rows_done << luma_lines)),
                         woff_c.eq(woff_c + (idct.rows_done << chroma_lines))]

        with m.If(start & (ahead | ~back_free)):
            m.d.sync += start_pending.eq(1)
        m.d.comb += self.status.payload.code.eq(Mux(ahead, 0, code))
        m.d.comb += [self.status.payload.width.eq(ras.out_w),
                     self.status.payload.height.eq(ras.out_h)]
        with m.FSM(name="back"):
            with m.State("WAIT_SCAN"):
                m.d.comb += back_free.eq(1)
                with m.If(halt):
                    m.next = "DRAIN"
                with m.Elif(start_pending | (start & ~ahead)):
                    m.d.comb += ras.start.eq(1)
                    m.d.sync += start_pending.eq(0)
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(halt):
                    m.next = "DRAIN"
                with m.Elif(ras.done & o_empty & (ahead | (final & ~failed))):
                    m.next = "STATUS"
            with m.State("DRAIN"):
                with m.If(ras.idle & o_empty):
                    m.next = "STATUS"
            with m.State("STATUS"):
                m.d.comb += self.status.valid.eq(1)
                with m.If(self.status.ready):
                    with m.If(halt):
                        m.next = "RESTART"
                    with m.Else():
                        m.next = "HANDOFF"
            with m.State("HANDOFF"):
                # the front end moves on first (it may still be parsing this image's trailer)
                with m.If(ahead):
                    m.d.comb += back_rst.eq(1)
                    m.d.comb += ahead_d.eq(0)
                    m.d.sync += all_rows.eq(0)
                    m.next = "WAIT_SCAN"
            with m.State("RESTART"):
                # after an error: everything starts afresh with the next file
                with m.If(parser.at_end):
                    # (the raster's reset is not delayed: ``halt`` drops with ``failed``)
                    m.d.comb += [go.eq(1), back_rst.eq(1)]
                    m.d.comb += failed_d.eq(0)
                    m.d.sync += [final.eq(0), code.eq(0), all_rows.eq(0),
                                 start_pending.eq(0),
                                 woff_y.eq(0), woff_c.eq(0)]
                    m.next = "WAIT_SCAN"
        return m


def manifest(top: str = "jpeg_decoder", verilog_file: str | None = None) -> dict:
    """Port manifest of the converted top for :class:`sim.harness.Harness`. ``scale`` is a plain
    input driven beside the ``i`` stream's beats (``inputs={"i": bytes, "scale": per byte}``)."""
    return {
        "top": top,
        "verilog": verilog_file or f"{top}.v",
        "clock": "clk",
        "reset": "rst",
        "ports": {
            "i": {"dir": "in", "width": 9, "fields": {"byte": [0, 8], "last": [8, 1]}},
            "scale": {"dir": "in", "width": 2, "follows": "i"},
            "o": {"dir": "out", "width": 25,
                  "fields": {"r": [0, 8], "g": [8, 8], "b": [16, 8], "last": [24, 1]}},
            "status": {"dir": "out", "width": 40,
                       "fields": {"code": [0, 8], "width": [8, 16], "height": [24, 16]}},
        },
    }
