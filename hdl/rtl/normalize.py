"""Per-channel normalize: ``value = pixel * gain[c] + bias[c]`` in NORM_VALUE (see fixedpoint).

The spec's mean, std and output quantization fold into the constants at generation time, so the
hardware is one multiply-add per channel in two register stages.
"""
from __future__ import annotations

from amaranth import Const, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..fixedpoint import NORM_BIAS, NORM_GAIN, NORM_VALUE
from .layouts import NormPixel, Pixel, Tag

TaggedPixel = data.StructLayout({"rgb": Pixel, "tag": Tag})
TaggedNorm = data.StructLayout({"data": NormPixel, "side": Tag})


class Normalize(wiring.Component):
    def __init__(self, gains: tuple[int, int, int], biases: tuple[int, int, int]):
        for g, b in zip(gains, biases):
            assert NORM_GAIN.fits(g) and NORM_BIAS.fits(b)
        self.gains = gains
        self.biases = biases
        super().__init__({"i": In(stream.Signature(TaggedPixel)),
                          "o": Out(stream.Signature(TaggedNorm))})

    def elaborate(self, platform):
        m = Module()
        # Two stages advancing together: products (S1), then the bias add into the output
        # register, so no multiplier feeds an adder in the same clock.
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        s1_valid = Signal()
        s1_tag = Signal(Tag)
        s1_prod = [Signal(signed(NORM_GAIN.width + 9), name=f"s1_prod{c}") for c in range(3)]
        with m.If(en):
            m.d.sync += [s1_valid.eq(self.i.valid), self.o.valid.eq(s1_valid)]
            with m.If(self.i.valid):
                m.d.sync += s1_tag.eq(self.i.payload.tag)
                for c in range(3):
                    g = Const(self.gains[c], signed(NORM_GAIN.width))
                    m.d.sync += s1_prod[c].eq(self.i.payload.rgb[c].as_unsigned() * g)
            with m.If(s1_valid):
                m.d.sync += self.o.payload.side.eq(s1_tag)
                for c in range(3):
                    b = Const(self.biases[c], signed(NORM_BIAS.width))
                    v = s1_prod[c] + b
                    m.d.sync += self.o.payload.data[c].eq(v[:NORM_VALUE.width])
        return m
