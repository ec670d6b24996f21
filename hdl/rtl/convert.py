"""Output conversion: NORM_VALUE lanes to float16 / bfloat16 / uint8 / int8 bit patterns.

Bit-exact with :mod:`hdl.golden.convert`. ``LATENCY`` (7) register stages, one enable for all of
them (the whole pipeline stalls as one). Float lanes, stage by stage:

1. sign and magnitude ``|x|`` (the 49-bit negate is the stage's only carry chain);
2. per 8-bit chunk of the magnitude: any bit set, and the position of its highest set bit;
3. the leading one: the highest non-empty chunk picks its chunk-local position (an AND-OR of
   one-hot selects, no priority chain), plus a zero flag;
4. the leading-one position indexes the table built by :class:`~hdl.golden.convert.FloatFormat`:
   the rounding shift (minus one, so the guard bit lands at bit 0) and the exponent; the
   pre-shifted magnitude's chunks are OR-reduced for the sticky bit;
5. coarse shift right by a multiple of 8 (an 8:1 mux per bit), sticky from the whole chunks
   shifted out;
6. fine shift right by 0-7, sticky from the bits shifted out, the round-half-to-even increment;
7. significand plus increment plus the exponent (a rounding carry bumps the exponent), clamp
   to inf, attach the sign; this register is ``o``.

Int lanes (uint8/int8): 1. floor(x) and the half-to-even increment from guard, sticky and lsb;
2. the increment added; 3. saturated; then delay registers up to ``LATENCY`` so every dtype has
the same latency.

A sideband (``side_layout``, e.g. the output tag ``{offset, last}``) rides along unchanged.
"""
from __future__ import annotations

from functools import reduce

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import ShapeLike
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..fixedpoint import NORM_VALUE
from ..golden.convert import BFLOAT16, DTYPES, FLOAT16, INT_RANGES, FloatFormat, element_bits

__all__ = ["OutputConvert"]

_FLOATS = {"float16": FLOAT16, "bfloat16": BFLOAT16}
#: Chunk width of the leading-one search and of the coarse shift (a power of two).
_CHUNK = 8


def _any(bits) -> object:
    bits = list(bits)
    return reduce(lambda a, b: a | b, bits) if bits else Const(0, 1)


class OutputConvert(wiring.Component):
    """``i``: ``{data: lanes x signed(49) NORM_VALUE raw, side}``;
    ``o``: ``{data: lanes x unsigned(E) bit patterns, side}`` with E = 16 for float16/bfloat16,
    8 for uint8/int8 (int8 as two's complement).

    ``i.ready = ~o.valid | o.ready``: one beat per clock, ``LATENCY`` cycles from a beat's
    transfer on ``i`` to its ``o.valid``; no combinational path from ``i`` to ``o``.
    """

    #: Clock edges from a transfer on ``i`` to the beat being presented on ``o`` (all dtypes).
    LATENCY = 7

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

        def reg(value, name):
            r = Signal.like(value, name=name, reset_less=True) if isinstance(value, Signal) \
                else Signal(value.shape(), name=name, reset_less=True)
            with m.If(en):
                m.d.sync += r.eq(value)
            return r

        valid = self.i.valid
        side = self.i.payload.side
        for s in range(1, self.LATENCY):
            v = Signal(name=f"valid{s}")
            with m.If(en):
                m.d.sync += v.eq(valid)
            valid = v
            side = reg(side, f"side{s}")
        with m.If(en):
            m.d.sync += [self.o.valid.eq(valid), self.o.payload.side.eq(side)]

        for k in range(self.lanes):
            x, y = self.i.payload.data[k], self.o.payload.data[k]
            if self.dtype in _FLOATS:
                result, depth = self._float_lane(m, reg, k, x, _FLOATS[self.dtype])
            else:
                result, depth = self._int_lane(m, reg, k, x, *INT_RANGES[self.dtype])
            for s in range(depth + 1, self.LATENCY):
                result = reg(result, f"pad{s}_{k}")
            with m.If(en):
                m.d.sync += y.eq(result)
        return m

    @staticmethod
    def _float_lane(m: Module, reg, k: int, x, fmt: FloatFormat):
        """Returns the output pattern (before the ``o`` register) and the registers before it."""
        width = NORM_VALUE.width  # |x| <= 2**48 still fits width bits unsigned
        # Pre-shift left so the shift right is always >= 1: guard bit at bit 0 for every lead.
        shifts = [fmt.shift(p) for p in range(width)]
        pre = max(0, 1 - min(shifts))
        ext = width + pre
        sh_tab = [s + pre - 1 for s in shifts]
        exp_tab = [fmt.exp_base(p) for p in range(width)]
        C, cbits = _CHUNK, _CHUNK.bit_length() - 1
        assert max(sh_tab) < C * C   # coarse amount fits cbits bits
        # The significand (implicit one included) fits man_bits + 1 bits after the shift
        # (shift >= lead - man_bits), so the guard bit and q need man_bits + 2 bits, and the
        # coarse shift's output 7 more for the fine shift.
        qg_bits = fmt.man_bits + 2
        t_bits = qg_bits + C - 1

        # 1
        sign1 = reg(x < 0, f"sign1_{k}")
        mag1 = reg(Mux(x < 0, -x, x)[:width], f"mag1_{k}")

        # 2
        n = -(-width // C)
        chunks = [mag1[C * j:C * j + C] for j in range(n)]
        nz2 = reg(Cat(c.any() for c in chunks), f"nz2_{k}")
        loc2 = []
        for j, c in enumerate(chunks):
            loc = Const(0, cbits)
            for b in range(len(c)):        # later wins: the highest set bit
                loc = Mux(c[b], b, loc)
            loc2.append(reg(loc.as_unsigned()[:cbits], f"loc2_{k}_{j}"))
        mag2 = reg(mag1, f"mag2_{k}")
        sign2 = reg(sign1, f"sign2_{k}")

        # 3
        lead_terms = []
        for j in range(n):
            top = nz2[j] & ~nz2[j + 1:].any() if j + 1 < n else nz2[j]
            lead_terms.append(Cat(loc2[j], Const(j, 6 - cbits)) & top.replicate(6))
        lead3 = reg(_any(lead_terms), f"lead3_{k}")
        zero3 = reg(~nz2.any(), f"zero3_{k}")
        mag3 = reg(mag2, f"mag3_{k}")
        sign3 = reg(sign2, f"sign3_{k}")

        # 4
        sh_c = Signal(range(max(sh_tab) + 1), name=f"sh_c_{k}")
        exp_c = Signal(range(max(exp_tab) + 1), name=f"exp_c_{k}")
        with m.If(~zero3):      # zero: exp 0 and magnitude 0 encode +0, any shift
            with m.Switch(lead3):
                for p in range(width):
                    with m.Case(p):
                        m.d.comb += [sh_c.eq(sh_tab[p]), exp_c.eq(exp_tab[p])]
        sh4 = reg(sh_c, f"sh4_{k}")
        exp4 = reg(exp_c, f"exp4_{k}")
        mag_ext3 = Cat(Const(0, pre), mag3) if pre else mag3
        ne = -(-ext // C)
        nzx4 = reg(Cat(mag_ext3[C * j:C * j + C].any() for j in range(ne)), f"nzx4_{k}")
        mag4 = reg(mag3, f"mag4_{k}")
        sign4 = reg(sign3, f"sign4_{k}")

        # 5
        coarse = sh4[cbits:]
        mag_ext4 = Cat(Const(0, pre), mag4) if pre else mag4
        t5 = reg((mag_ext4 >> Cat(Const(0, cbits), coarse))[:t_bits], f"t5_{k}")
        sticky5 = reg(_any(nzx4[j] & (coarse > j) for j in range(ne)), f"sticky5_{k}")
        fine5 = reg(sh4[:cbits], f"fine5_{k}")
        exp5 = reg(exp4, f"exp5_{k}")
        sign5 = reg(sign4, f"sign5_{k}")

        # 6
        qg = (t5 >> fine5)[:qg_bits]
        below = _any(t5[i] & (fine5 > i) for i in range(C - 1))
        up = qg[0] & (sticky5 | below | qg[1])
        q6 = reg(qg[1:], f"q6_{k}")
        up6 = reg(up, f"up6_{k}")
        exp6 = reg(exp5, f"exp6_{k}")
        sign6 = reg(sign5, f"sign6_{k}")

        # 7 (into o): wide enough for the largest exponent plus a rounding carry, so the clamp
        # sees it
        top = (((1 << len(exp6)) - 1) << fmt.man_bits) + (2 << fmt.man_bits)
        mag_bits = Signal(range(max(top, fmt.inf_bits) + 1), name=f"mag_bits_{k}")
        m.d.comb += mag_bits.eq((exp6 << fmt.man_bits) + q6 + up6)
        finite = Mux(mag_bits >= fmt.inf_bits, fmt.inf_bits, mag_bits)
        return finite[:fmt.exp_bits + fmt.man_bits] | (sign6 << (fmt.width - 1)), 6

    @staticmethod
    def _int_lane(m: Module, reg, k: int, x, lo: int, hi: int):
        frac = NORM_VALUE.frac_bits
        # 1: floor(x) and the half-to-even increment from guard, sticky and lsb.
        q1 = reg(x[frac:].as_signed(), f"q1_{k}")
        up1 = reg(x[frac - 1] & (x[:frac - 1].any() | x[frac]), f"up1_{k}")
        # 2: increment. 3: saturate (into the next register).
        r2 = reg((q1 + up1).as_signed(), f"r2_{k}")
        return Mux(r2 < lo, lo, Mux(r2 > hi, hi, r2)), 2
