"""The simulated board: a Verilator model of the board top behind a pseudo-terminal.

>>> with SimBoard(spec) as board:            # builds (cached) and starts the model
...     FpgaBackend(spec, board.port).run(...)

``python -m sim.board --pipeline rgb8`` starts one and prints its port, for the CLI::

    preba preprocess --pipeline rgb8 --backend fpga --port /dev/pts/N img.jpg --out out/
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hdl.spec import PipelineSpec

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUILD_FORMAT = 1

#: Clock cycles per UART bit in the simulated board (the real one runs at f_clk / baud).
SIM_DIVISOR = 8
#: The link's mid-request timeout in the simulated board, in clock cycles; with the simulator's
#: throttle (cycles per ms while the wires are quiet) this is about 2 s of host silence.
SIM_TIMEOUT_CYCLES = 80_000
SIM_FULL_SPEED_CYCLES = 20_000
SIM_THROTTLE = 32

__all__ = ["SimBoard", "build_sim_board", "SIM_DIVISOR", "SIM_TIMEOUT_CYCLES"]


@dataclasses.dataclass(frozen=True)
class SimBuild:
    exe: Path
    top: str
    divisor: int
    timeout_cycles: int
    trace: bool


def _lock(path: Path):
    f = open(path, "a+")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def build_sim_board(spec: PipelineSpec, *, divisor: int = SIM_DIVISOR,
                    timeout_cycles: int = SIM_TIMEOUT_CYCLES, trace: bool = False,
                    build_root: Path | None = None, quiet: bool = False) -> SimBuild:
    """Verilate the board top for ``spec`` with the pty main; cached by content hash under
    ``build/sim_board/``."""
    from hdl.board.ulx3s import board_verilog
    from sim.toolchain import ensure_tools_on_path

    verilog, top = board_verilog(spec, divisor=divisor, timeout_cycles=timeout_cycles)
    h = hashlib.sha256()
    h.update(json.dumps({"format": BUILD_FORMAT, "top": top, "trace": trace,
                         "main": hashlib.sha256((HERE / "main.cpp").read_bytes()).hexdigest(),
                         "py": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()},
                        sort_keys=True).encode())
    h.update(verilog.encode())
    key = h.hexdigest()[:16]
    root = Path(build_root or os.environ.get("PREBA_SIM_BOARD_BUILD", REPO / "build" / "sim_board"))
    final = root / key
    result = SimBuild(final / "Vboard", top, divisor, timeout_cycles, trace)
    if result.exe.exists():
        return result
    root.mkdir(parents=True, exist_ok=True)
    lock = _lock(root / f".{key}.lock")
    try:
        if result.exe.exists():
            return result
        ensure_tools_on_path()
        if not quiet:
            print(f"sim board: building {top} with Verilator into {final} ...", file=sys.stderr,
                  flush=True)
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
        try:
            (tmp / f"{top}.v").write_text(verilog)
            shutil.copyfile(HERE / "main.cpp", tmp / "main.cpp")
            log = open(tmp / "build.log", "w")
            args = ["verilator", "--cc", "--exe", "--Mdir", "obj", "--top-module", top,
                    "--prefix", "Vboard", "-O3", "--x-assign", "fast", "--x-initial", "fast",
                    "-Wno-fatal", "-CFLAGS", "-std=c++17", "-o", "Vboard", "main.cpp",
                    f"{top}.v"]
            if trace:
                args.insert(1, "--trace")
            cxx = os.environ.get("CXX", "g++")
            jobs = min(4, os.cpu_count() or 1)
            for cmd in (args, ["make", "-s", "-C", "obj", "-f", "Vboard.mk", f"-j{jobs}",
                               f"CXX={cxx}", f"LINK={cxx}", "AR=ar", f"PYTHON3={sys.executable}",
                               "OPT_FAST=-O2", "OPT_SLOW=-O1", "OPT_GLOBAL=-O1"]):
                log.write("$ " + " ".join(cmd) + "\n")
                log.flush()
                r = subprocess.run(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
                if r.returncode:
                    log.close()
                    tail = (tmp / "build.log").read_text()[-3000:]
                    raise RuntimeError(f"sim board build failed ({' '.join(cmd[:2])}):\n{tail}")
            log.close()
            (tmp / "obj" / "Vboard").rename(tmp / "Vboard")
            shutil.rmtree(tmp / "obj")
            (tmp / "build.json").write_text(json.dumps({
                "top": top, "pipeline": spec.to_dict(), "divisor": divisor,
                "timeout_cycles": timeout_cycles, "trace": trace,
                "seconds": round(time.monotonic() - t0, 1)}, indent=1) + "\n")
            try:
                os.rename(tmp, final)
            except OSError:
                if not result.exe.exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not quiet:
            print(f"sim board: built in {time.monotonic() - t0:.1f} s", file=sys.stderr,
                  flush=True)
        return result
    finally:
        lock.close()


class SimBoard:
    """A running simulated board; ``port`` is its pseudo-terminal. Use as a context manager."""

    def __init__(self, spec: PipelineSpec, *, divisor: int = SIM_DIVISOR,
                 timeout_cycles: int = SIM_TIMEOUT_CYCLES, vcd: str | None = None,
                 full_speed_cycles: int = SIM_FULL_SPEED_CYCLES, throttle: int = SIM_THROTTLE):
        self.spec = spec
        self.build = build_sim_board(spec, divisor=divisor, timeout_cycles=timeout_cycles,
                                     trace=vcd is not None)
        self.vcd = vcd
        self.full_speed_cycles = full_speed_cycles
        self.throttle = throttle
        self.proc: subprocess.Popen | None = None
        self.port: str | None = None
        self.log = ""

    def start(self, ready_timeout: float = 30.0) -> str:
        cmd = [str(self.build.exe), "--divisor", str(self.build.divisor),
               "--full-speed-cycles", str(self.full_speed_cycles),
               "--throttle", str(self.throttle)]
        if self.vcd:
            cmd += ["--vcd", self.vcd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        deadline = time.monotonic() + ready_timeout
        line = ""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                line = self.proc.stdout.readline()
                break
            if self.proc.poll() is not None:
                break
        if not line.startswith("PTY "):
            self.stop()
            raise RuntimeError(f"simulated board did not start: {line!r} {self.log}")
        self.port = line.split(None, 1)[1].strip()
        return self.port

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.log = err or ""
        self.proc = None

    def __enter__(self) -> "SimBoard":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
