"""Per-channel normalize: ``value = pixel * gain[c] + bias[c]`` in NORM_VALUE (see fixedpoint).

The spec's mean, std and output quantization fold into the constants at generation time. A pixel
channel is 8 bits, so its product splits into two 16-entry tables of constants computed here, at
elaboration: ``hi[p >> 4] = (p >> 4) * 16 * gain + bias`` and ``lo[p & 15] = (p & 15) * gain``
(NORM_VALUE two's complement bit patterns). A 16-entry table is one LUT4 per bit, so the
hardware has no multiplier and no block RAM. Two register stages advancing together:

1. both table entries (one LUT level behind the input);
2. their sum, truncated to NORM_VALUE as the datapath always did (one carry chain); this
   register is ``o``.
"""
from __future__ import annotations

from amaranth import Array, Const, Module, Signal
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
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        width = NORM_VALUE.width
        mask = (1 << width) - 1
        s1_valid = Signal()
        s1_tag = Signal(Tag)
        with m.If(en):
            m.d.sync += [s1_valid.eq(self.i.valid), self.o.valid.eq(s1_valid)]
            with m.If(self.i.valid):
                m.d.sync += s1_tag.eq(self.i.payload.tag)
            with m.If(s1_valid):
                m.d.sync += self.o.payload.side.eq(s1_tag)
        for c in range(3):
            g, b = self.gains[c], self.biases[c]
            hi = Array(Const(((h << 4) * g + b) & mask, width) for h in range(16))
            lo = Array(Const((q * g) & mask, width) for q in range(16))
            p = self.i.payload.rgb[c]
            s1_hi = Signal(width, name=f"s1_hi{c}", reset_less=True)
            s1_lo = Signal(width, name=f"s1_lo{c}", reset_less=True)
            with m.If(en & self.i.valid):
                m.d.sync += [s1_hi.eq(hi[p[4:]]), s1_lo.eq(lo[p[:4]])]
            with m.If(en & s1_valid):
                m.d.sync += self.o.payload.data[c].eq((s1_hi + s1_lo)[:width])
        return m
