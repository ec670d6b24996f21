"""Tensor layout: tags every output pixel with where its elements go in the tensor.

Element ``c`` of a pixel lands at ``offset + c * channel_stride`` (CHW: stride = H*W, offset =
base + y*W + x; HWC: stride = 1, offset = base + 3*(y*W + x)). The host (or a DMA engine) writes
each element where the tag says, so no one ever transposes on the CPU.

One register stage (``o``). The "last column / last row" decisions come from registered flags,
not from compares against ``out_w - 1`` in front of the output register: ``out_w - 2``,
``out_h - 2`` and ``out_w == 1``, ``out_h == 1`` are registered from the (per-job constant)
geometry, a column's flag is the compare of the previous column against ``out_w - 2`` registered
when ``x`` advances, and at ``x == 0`` (a registered flag too) it is ``out_w == 1``. The geometry
is stable from the job's CHECK on, cycles before the first pixel can reach this unit.

Only the position (x, y, the index and their flags) and ``o.valid`` are reset (the core resets
the unit between jobs): the geometry registers follow the ports every clock and the output
data register is loaded with ``o.valid``, so they are not, which keeps them off the reset net.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import Pixel
from .normalize import TaggedPixel


class TensorLayout(wiring.Component):
    def __init__(self, layout: str):
        assert layout in ("CHW", "HWC")
        self.layout = layout
        super().__init__({
            "i": In(stream.Signature(Pixel)),
            "o": Out(stream.Signature(TaggedPixel)),
            "base": In(32), "out_w": In(16), "out_h": In(16),
        })

    def elaborate(self, platform):
        m = Module()
        x = Signal(16)
        y = Signal(16)
        index = Signal(32)        # y*W + x, times 3 for HWC
        step = 1 if self.layout == "CHW" else 3

        w_m2 = Signal(16, reset_less=True)
        h_m2 = Signal(16, reset_less=True)
        w_is_1 = Signal(reset_less=True)
        h_is_1 = Signal(reset_less=True)
        m.d.sync += [w_m2.eq(self.out_w - 2), h_m2.eq(self.out_h - 2),
                     w_is_1.eq(self.out_w == 1), h_is_1.eq(self.out_h == 1)]
        x_zero = Signal(init=1)
        y_zero = Signal(init=1)
        x_last_r = Signal()       # x == out_w - 1, valid while x != 0
        y_last_r = Signal()
        x_last = Mux(x_zero, w_is_1, x_last_r)
        y_last = Mux(y_zero, h_is_1, y_last_r)

        o_data = Signal(TaggedPixel, reset_less=True)
        m.d.comb += self.o.payload.eq(o_data)
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        with m.If(en):
            m.d.sync += self.o.valid.eq(self.i.valid)
            with m.If(self.i.valid):
                m.d.sync += [o_data.rgb.eq(self.i.payload),
                             o_data.tag.offset.eq(self.base + index),
                             o_data.tag.last.eq(x_last & y_last),
                             index.eq(index + step)]
                with m.If(x_last):
                    m.d.sync += [x.eq(0), x_zero.eq(1),
                                 y.eq(y + 1), y_zero.eq(0), y_last_r.eq(y == h_m2)]
                with m.Else():
                    m.d.sync += [x.eq(x + 1), x_zero.eq(0), x_last_r.eq(x == w_m2)]
        return m
