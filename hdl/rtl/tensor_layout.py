"""Tensor layout: tags every output pixel with where its elements go in the tensor.

Element ``c`` of a pixel lands at ``offset + c * channel_stride`` (CHW: stride = H*W, offset =
base + y*W + x; HWC: stride = 1, offset = base + 3*(y*W + x)). The host (or a DMA engine) writes
each element where the tag says, so no one ever transposes on the CPU.
"""
from __future__ import annotations

from amaranth import Module, Signal
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
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        with m.If(en):
            m.d.sync += self.o.valid.eq(self.i.valid)
            with m.If(self.i.valid):
                m.d.sync += [self.o.payload.rgb.eq(self.i.payload),
                             self.o.payload.tag.offset.eq(self.base + index),
                             self.o.payload.tag.last.eq((x == self.out_w - 1)
                                                        & (y == self.out_h - 1)),
                             index.eq(index + step)]
                with m.If(x == self.out_w - 1):
                    m.d.sync += [x.eq(0), y.eq(y + 1)]
                with m.Else():
                    m.d.sync += x.eq(x + 1)
        return m
