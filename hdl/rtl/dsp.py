"""A product with its operand and result registers, inside the ECP5's multiplier when it can be.

``RegisteredProduct`` computes ``p = a * b`` two clocks after ``a`` and ``b`` are presented:

- clock 1 loads ``a`` into an operand register when ``a_en`` (and ``b`` when ``b_en``);
- clock 2 loads the product of the two operand registers into ``p`` when ``p_en``.

Written out in fabric registers (any platform, the simulators, ``preba gen``) that is three
registers around a multiplier, and Yosys maps the multiplier alone to a MULT18X18D. On the ECP5
the registers then sit in slices, and the placer cannot put all of them next to the DSP column:
the full-chip builds' worst paths were fabric register -> 6 ns of routing -> multiplier -> 6 ns
of routing -> fabric register. On an ECP5 platform this component instead instantiates the
MULT18X18D with its own input and output registers enabled (``REG_INPUTA/B``, ``REG_OUTPUT``,
clock enables CE0/CE1/CE2), so each of those routes is a path of its own, register to register.
The clock-by-clock behaviour is the same in both forms; the registers are not reset (data in
flight is ignored after a reset), as in fabric.

Operands are at most 18 bits (signed or unsigned, each as its shape says); the product is
truncated or extended to ``p``'s shape, as an Amaranth assignment would.
"""
from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

#: Widest operand the MULT18X18D takes.
DSP_OPERAND_BITS = 18
#: Width of its product.
DSP_PRODUCT_BITS = 36


def is_ecp5(platform) -> bool:
    """True for an Amaranth Lattice platform whose device is an ECP5 (LFE5U / LFE5UM)."""
    return str(getattr(platform, "device", "")).startswith(("LFE5U", "LFE5UM"))


class RegisteredProduct(wiring.Component):
    """``primitive``: True for the MULT18X18D form, False for fabric registers, None (default)
    for the MULT18X18D exactly when elaborated for an ECP5 platform."""
    def __init__(self, a_shape, b_shape, p_shape, *, primitive: bool | None = None):
        a_shape, b_shape, p_shape = Shape.cast(a_shape), Shape.cast(b_shape), Shape.cast(p_shape)
        for what, s in (("a", a_shape), ("b", b_shape)):
            if s.width > DSP_OPERAND_BITS:
                raise ValueError(f"operand {what} is {s.width} bits wide; the MULT18X18D takes "
                                 f"at most {DSP_OPERAND_BITS}: split the product")
        self.a_shape, self.b_shape, self.p_shape = a_shape, b_shape, p_shape
        self.primitive = primitive
        super().__init__({"a": In(a_shape), "a_en": In(1), "b": In(b_shape), "b_en": In(1),
                          "p_en": In(1), "p": Out(p_shape)})

    def elaborate(self, platform):
        m = Module()
        if self.primitive or (self.primitive is None and is_ecp5(platform)):
            self._dsp(m)
        else:
            a_r = Signal(self.a_shape, reset_less=True)
            b_r = Signal(self.b_shape, reset_less=True)
            with m.If(self.a_en):
                m.d.sync += a_r.eq(self.a)
            with m.If(self.b_en):
                m.d.sync += b_r.eq(self.b)
            with m.If(self.p_en):
                m.d.sync += self.p.eq(a_r * b_r)
        return m

    def _dsp(self, m: Module) -> None:
        def extend(v, shape):
            return v.as_signed() if shape.signed else v.as_unsigned()
        a18 = Signal(DSP_OPERAND_BITS)
        b18 = Signal(DSP_OPERAND_BITS)
        m.d.comb += [a18.eq(extend(self.a, self.a_shape)), b18.eq(extend(self.b, self.b_shape))]
        prod = Signal(DSP_PRODUCT_BITS)
        ports = {}
        for i in range(DSP_OPERAND_BITS):
            ports[f"i_A{i}"] = a18[i]
            ports[f"i_B{i}"] = b18[i]
            ports[f"i_C{i}"] = Const(0, 1)
        for i in range(DSP_PRODUCT_BITS):
            ports[f"o_P{i}"] = prod[i]
        clk = ClockSignal()
        m.submodules.mult = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE1", p_REG_INPUTB_RST="RST0",
            p_REG_INPUTC_CLK="NONE",
            p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE2", p_REG_OUTPUT_RST="RST0",
            p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED", p_CLK2_DIV="ENABLED",
            p_CLK3_DIV="ENABLED", p_HIGHSPEED_CLK="NONE", p_GSR="DISABLED",
            p_CAS_MATCH_REG="FALSE", p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED",
            p_RESETMODE="SYNC",
            i_SIGNEDA=Const(int(self.a_shape.signed), 1),
            i_SIGNEDB=Const(int(self.b_shape.signed), 1),
            i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
            i_CLK0=clk, i_CLK1=Const(0, 1), i_CLK2=Const(0, 1), i_CLK3=Const(0, 1),
            i_CE0=self.a_en, i_CE1=self.b_en, i_CE2=self.p_en, i_CE3=Const(1, 1),
            i_RST0=Const(0, 1), i_RST1=Const(0, 1), i_RST2=Const(0, 1), i_RST3=Const(0, 1),
            **ports)
        # 36 bits hold every 18x18 product, so a wider result is the product extended
        signed_product = self.a_shape.signed or self.b_shape.signed
        m.d.comb += self.p.eq(prod.as_signed() if signed_product else prod)


def registered_product(m: Module, name: str, a, b, p_shape, *, a_en=1, b_en=1, p_en=1) -> Signal:
    """Add a :class:`RegisteredProduct` to ``m`` as submodule ``name``; returns ``p``
    (``a * b`` two clocks later, see the module docstring)."""
    from amaranth.hdl import Value
    a, b = Value.cast(a), Value.cast(b)
    unit = RegisteredProduct(a.shape(), b.shape(), p_shape)
    m.submodules[name] = unit
    m.d.comb += [unit.a.eq(a), unit.b.eq(b), unit.a_en.eq(a_en), unit.b_en.eq(b_en),
                 unit.p_en.eq(p_en)]
    return unit.p
