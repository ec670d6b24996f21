"""Crop a pixel stream to a window; used when the spec crops without resizing (with a resize,
the crop is folded into the resample schedules, which then never compute the cut pixels)."""
from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import Pixel


class Crop(wiring.Component):
    """Passes the pixels of rows ``y0 .. y0+out_h-1``, columns ``x0 .. x0+out_w-1`` of an
    ``in_w``-wide raster stream. Pure streaming: no buffering, one pixel per clock."""

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(Pixel)),
            "o": Out(stream.Signature(Pixel)),
            "in_w": In(16), "x0": In(16), "y0": In(16), "out_w": In(16), "out_h": In(16),
        })

    def elaborate(self, platform):
        m = Module()
        x = Signal(16)
        y = Signal(16)
        # The window's ends and in_w - 1 registered from the (per-job constant) geometry,
        # stable from the job's CHECK on, cycles before the first pixel: no add in front of
        # the compares.
        x_end = Signal(17, reset_less=True)
        y_end = Signal(17, reset_less=True)
        w_m1 = Signal(17, reset_less=True)
        m.d.sync += [x_end.eq(self.x0 + self.out_w), y_end.eq(self.y0 + self.out_h),
                     w_m1.eq(self.in_w - 1)]
        inside = (x >= self.x0) & (x < x_end) & (y >= self.y0) & (y < y_end)
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        with m.If(en):
            m.d.sync += self.o.valid.eq(self.i.valid & inside)
            with m.If(self.i.valid):
                m.d.sync += self.o.payload.eq(self.i.payload)
                with m.If(x == w_m1):
                    m.d.sync += [x.eq(0), y.eq(y + 1)]
                with m.Else():
                    m.d.sync += x.eq(x + 1)
        return m
