"""``RegisteredProduct`` (hdl/rtl/dsp.py): the MULT18X18D form that the ECP5 builds use and the
fabric form that every simulation uses behave the same on every clock, under random clock
enables, for the operand shapes the pipeline multiplies (cocotb on Verilator, with the
primitive modelled in sim/models/MULT18X18D.v)."""
from __future__ import annotations

from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Shape, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.rtl.dsp import RegisteredProduct, is_ecp5
from sim.cocotb.runner import run_cocotb

MODEL = Path(__file__).resolve().parents[1] / "sim" / "models" / "MULT18X18D.v"


class Pair(wiring.Component):
    def __init__(self, a, b, p):
        self.shapes = a, b, p
        super().__init__({"a": In(a), "b": In(b), "a_en": In(1), "b_en": In(1), "p_en": In(1),
                          "p_dsp": Out(p), "p_fab": Out(p)})

    def elaborate(self, platform):
        m = Module()
        for name, prim in (("dsp", True), ("fab", False)):
            u = m.submodules[name] = RegisteredProduct(*self.shapes, primitive=prim)
            m.d.comb += [u.a.eq(self.a), u.b.eq(self.b), u.a_en.eq(self.a_en),
                         u.b_en.eq(self.b_en), u.p_en.eq(self.p_en),
                         getattr(self, f"p_{name}").eq(u.p)]
        return m


def _code(s: Shape) -> str:
    return f"{s.width},{'s' if s.signed else 'u'}"


@pytest.mark.parametrize("a,b,p", [
    (unsigned(17), signed(17), signed(30)),      # IDCT low half x constant
    (signed(11), signed(17), unsigned(21)),      # IDCT high half, truncated
    (unsigned(18), unsigned(8), unsigned(26)),   # resample weight low bits x sample
    (signed(17), unsigned(8), signed(25)),       # resample weight high bits x sample
    (signed(12), unsigned(8), signed(20)),       # dequantize
    (unsigned(17), signed(17), signed(42)),      # IDCT pass 1: the product sign-extended
])
def test_mult18x18d_form_matches_fabric_form(a, b, p):
    top = Pair(a, b, p)
    text = verilog.convert(top, name="dsp_pair") + "\n" + MODEL.read_text()
    assert "MULT18X18D #" in text
    run_cocotb(text, "dsp_pair", "sim.cocotb.tb_dsp", f"dsp-{a.width}-{b.width}-{p.width}",
               extra_env={"DSP_A": _code(a), "DSP_B": _code(b), "DSP_P": _code(p),
                          "PREBA_SEED": "20261123"})


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_form_follows_the_platform_and_limits_are_explained():
    class Ecp5:
        device = "LFE5U-85F"

    class Ice40:
        device = "iCE40UP5K"
    assert is_ecp5(Ecp5()) and not is_ecp5(Ice40()) and not is_ecp5(None)
    with pytest.raises(ValueError, match="at most 18: split the product"):
        RegisteredProduct(unsigned(19), unsigned(8), unsigned(27))
