"""Output conversion: NORM_VALUE lanes to float16 / bfloat16 / uint8 / int8 bit patterns.

Bit-exact with :mod:`hdl.golden.convert`. Two register stages, the whole pipeline stalls as one:

* stage 1: sign, magnitude and leading-one detect; the leading-one position selects, from a
  table built by :class:`~hdl.golden.convert.FloatFormat`, the rounding shift and the exponent
  (ints: split the integer part from the fraction's guard and sticky bits);
* stage 2: shift, round half to even, add the exponent, clamp to inf (ints: add the rounding
  increment, saturate); this register is ``o``.

A sideband (``side_layout``, e.g. the output tag ``{offset, last}``) rides along unchanged.
"""
from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import ShapeLike
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..fixedpoint import NORM_VALUE
from ..golden.convert import BFLOAT16, DTYPES, FLOAT16, INT_RANGES, FloatFormat, element_bits

__all__ = ["OutputConvert"]

_FLOATS = {"float16": FLOAT16, "bfloat16": BFLOAT16}


class OutputConvert(wiring.Component):
    """``i``: ``{data: lanes x signed(49) NORM_VALUE raw, side}``;
    ``o``: ``{data: lanes x unsigned(E) bit patterns, side}`` with E = 16 for float16/bfloat16,
    8 for uint8/int8 (int8 as two's complement).

    ``i.ready = ~o.valid | o.ready``: one beat per clock, ``LATENCY`` cycles from a beat's
    transfer on ``i`` to its ``o.valid``; no combinational path from ``i`` to ``o``.
    """

    #: Clock edges from a transfer on ``i`` to the beat being presented on ``o``.
    LATENCY = 2

    def __init__(self, dtype: str, lanes: int = 3, side_layout: ShapeLike = unsigned(1)):
        if dtype not in DTYPES:
            raise ValueError(f"unknown output dtype {dtype!r}; expected one of {DTYPES}")
        self.dtype = dtype
        self.lanes = lanes
        self.element_bits = element_bits(dtype)
        self.in_layout = data.StructLayout({
            "data": data.ArrayLayout(signed(NORM_VALUE.width), lanes), "side": side_layout})
        self.out_layout = data.StructLayout({
            "data": data.ArrayLayout(unsigned(self.element_bits), lanes), "side": side_layout})
        super().__init__({"i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    def elaborate(self, platform) -> Module:
        m = Module()
        # One enable for every register: a stalled output freezes the whole pipeline, which
        # keeps i.ready a function of registered state and o.ready only.
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]

        valid1 = Signal()
        side1 = Signal(self.in_layout["side"].shape, reset_less=True)
        with m.If(en):
            m.d.sync += [valid1.eq(self.i.valid), self.o.valid.eq(valid1),
                         side1.eq(self.i.payload.side), self.o.payload.side.eq(side1)]

        for k in range(self.lanes):
            x, y = self.i.payload.data[k], self.o.payload.data[k]
            if self.dtype in _FLOATS:
                self._float_lane(m, en, k, x, y, _FLOATS[self.dtype])
            else:
                self._int_lane(m, en, k, x, y, *INT_RANGES[self.dtype])
        return m

    @staticmethod
    def _float_lane(m: Module, en: Signal, k: int, x, y, fmt: FloatFormat) -> None:
        width = NORM_VALUE.width  # |x| <= 2**48 still fits width bits unsigned
        # Pre-shift left so the shift right is always >= 1: guard bit at qg[0] for every lead.
        shifts = [fmt.shift(p) for p in range(width)]
        pre = max(0, 1 - min(shifts))
        ext = width + pre

        # Stage 1: sign, magnitude, leading one -> (shift - 1, exponent base).
        mag = Signal(width, name=f"mag_{k}")
        m.d.comb += mag.eq(Mux(x < 0, -x, x))
        sh_c = Signal(range(max(shifts) + pre), name=f"sh_c_{k}")
        exp_c = Signal(range(max(fmt.exp_base(p) for p in range(width)) + 1), name=f"exp_c_{k}")
        for p in range(width):  # later assignments win: the highest set bit decides
            with m.If(mag[p]):
                m.d.comb += [sh_c.eq(shifts[p] + pre - 1), exp_c.eq(fmt.exp_base(p))]
        # zero: no bit set, exp 0 and mag 0 encode +0

        sign1 = Signal(name=f"sign1_{k}", reset_less=True)
        mag1 = Signal(ext, name=f"mag1_{k}", reset_less=True)
        sh1 = Signal.like(sh_c, name=f"sh1_{k}", reset_less=True)
        exp1 = Signal.like(exp_c, name=f"exp1_{k}", reset_less=True)
        with m.If(en):
            m.d.sync += [sign1.eq(x < 0), mag1.eq(mag << pre), sh1.eq(sh_c), exp1.eq(exp_c)]

        # Stage 2: shift keeping one guard bit, sticky from the bits below it, round, encode.
        qg = Signal(ext, name=f"qg_{k}")
        below = Signal(ext, name=f"below_{k}")
        m.d.comb += [qg.eq(mag1 >> sh1),
                     below.eq(mag1 & ~(Const(-1, ext) << sh1)[:ext])]
        guard, lsb = qg[0], qg[1]
        up = guard & (below.any() | lsb)
        # Wide enough for the largest exponent plus a rounding carry, so the inf clamp sees it.
        top = (((1 << len(exp1)) - 1) << fmt.man_bits) + (2 << fmt.man_bits)
        mag_bits = Signal(range(max(top, fmt.inf_bits) + 1), name=f"mag_bits_{k}")
        m.d.comb += mag_bits.eq((exp1 << fmt.man_bits) + qg[1:] + up)
        finite = Mux(mag_bits >= fmt.inf_bits, fmt.inf_bits, mag_bits)
        with m.If(en):
            m.d.sync += y.eq(finite[:fmt.exp_bits + fmt.man_bits] | (sign1 << (fmt.width - 1)))

    @staticmethod
    def _int_lane(m: Module, en: Signal, k: int, x, y, lo: int, hi: int) -> None:
        frac = NORM_VALUE.frac_bits
        # Stage 1: floor(x) and the half-to-even increment from guard, sticky and lsb.
        q1 = Signal(signed(NORM_VALUE.width - frac), name=f"q1_{k}", reset_less=True)
        up1 = Signal(name=f"up1_{k}", reset_less=True)
        with m.If(en):
            m.d.sync += [q1.eq(x[frac:].as_signed()),
                         up1.eq(x[frac - 1] & (x[:frac - 1].any() | x[frac]))]
        # Stage 2: increment, saturate.
        r = Signal(signed(len(q1) + 1), name=f"r_{k}")
        m.d.comb += r.eq(q1 + up1)
        with m.If(en):
            m.d.sync += y.eq(Mux(r < lo, lo, Mux(r > hi, hi, r)))
