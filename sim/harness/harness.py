"""Python side of the fast harness: load the cached shared library and run streams through it."""
from __future__ import annotations

import ctypes
import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np

from . import fields as F
from .build import (LIB_NAME, BuildOptions, Design, Port, Variant, ensure_built, parse_manifest,
                    require_fst)

STEP_SLICE = 1 << 22          # cycles per C++ call; Ctrl-C is noticed between slices
DEFAULT_IDLE_CYCLES = 100_000
DEFAULT_STALL_CYCLES = 1_000_000
_REASONS = {1: "until", 2: "idle", 3: "stalled"}

_libs: dict[Path, ctypes.CDLL] = {}
_libs_lock = threading.Lock()


def _load(build_dir: Path, design: Design) -> ctypes.CDLL:
    so = (build_dir / LIB_NAME).resolve()
    with _libs_lock:
        lib = _libs.get(so)
        if lib is not None:
            return lib
        lib = ctypes.CDLL(str(so), mode=ctypes.RTLD_LOCAL)
        u64, vp, i32 = ctypes.c_uint64, ctypes.c_void_p, ctypes.c_int
        sig = {
            "preba_abi": (i32, []), "preba_n_in": (i32, []), "preba_n_out": (i32, []),
            "preba_n_sb": (i32, []), "preba_sb_name": (ctypes.c_char_p, [i32]),
            "preba_set_sideband": (None, [vp, i32, vp, u64]),
            "preba_in_name": (ctypes.c_char_p, [i32]), "preba_out_name": (ctypes.c_char_p, [i32]),
            "preba_in_words": (i32, [i32]), "preba_out_words": (i32, [i32]),
            "preba_trace_kind": (i32, []), "preba_coverage": (i32, []),
            "preba_new": (vp, [u64, ctypes.c_double, ctypes.c_double, ctypes.c_uint32,
                               ctypes.c_char_p, u64, u64]),
            "preba_set_input": (None, [vp, i32, vp, u64]),
            "preba_set_stop": (None, [vp, i32, u64, u64, u64]),
            "preba_step": (i32, [vp, u64]),
            "preba_cycles": (u64, [vp]), "preba_in_pos": (u64, [vp, i32]),
            "preba_in_done_cycle": (u64, [vp, i32]), "preba_out_count": (u64, [vp, i32]),
            "preba_out_copy": (None, [vp, i32, vp, vp]),
            "preba_coverage_write": (i32, [vp, ctypes.c_char_p]),
            "preba_free": (None, [vp]),
        }
        for name, (res, args) in sig.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        if lib.preba_abi() != 2:
            raise RuntimeError(f"{so}: driver ABI {lib.preba_abi()}, expected 2")
        got_in = [lib.preba_in_name(k).decode() for k in range(lib.preba_n_in())]
        got_out = [lib.preba_out_name(k).decode() for k in range(lib.preba_n_out())]
        got_sb = [lib.preba_sb_name(k).decode() for k in range(lib.preba_n_sb())]
        if (got_in != [p.name for p in design.inputs] or got_out != [p.name for p in design.outputs]
                or got_sb != [p.name for p in design.sidebands]):
            raise RuntimeError(f"{so}: ports {got_in}/{got_out}/{got_sb} do not match the "
                               "manifest")
        _libs[so] = lib
        return lib


@dataclasses.dataclass
class RunResult:
    """What one :meth:`Harness.run` produced.

    ``outputs[port]``: the collected beats, (n,) uint32 for payloads up to 32 bits, else
    (n, words) uint32 (word 0 = bits [31:0]). ``beat_cycles[port]``: the cycle (0 = first cycle
    after reset) in which each beat's handshake happened. ``consumed[port]``: input beats taken.
    ``input_done_cycle[port]``: cycle of the last input beat taken (None if not all were taken).
    ``cycles``: cycles run after reset. ``sim_seconds``: wall time of the cycle loop.
    ``stop_reason``: "until" (the awaited beats arrived), "idle" (inputs consumed, nothing moved
    for idle_cycles), "stalled" (inputs left but nothing moved on any port for stall_cycles: a
    deadlock) or "max_cycles" (timeout).
    """
    design: Design
    outputs: dict
    beat_cycles: dict
    consumed: dict
    input_done_cycle: dict
    cycles: int
    sim_seconds: float
    stop_reason: str
    until: tuple | None
    backpressure: tuple
    seed: int
    inputs_total: dict
    trace: str | None = None
    coverage_file: str | None = None

    @property
    def timed_out(self) -> bool:
        return self.stop_reason == "max_cycles"

    @property
    def all_consumed(self) -> bool:
        return all(self.consumed[p] == n for p, n in self.inputs_total.items())

    @property
    def complete(self) -> bool:
        """The awaited beats arrived (with ``until``), or all inputs were consumed and the design
        went quiet (without)."""
        if self.until is not None:
            return self.stop_reason == "until"
        return self.stop_reason == "idle"

    @property
    def cycles_per_second(self) -> float:
        return self.cycles / self.sim_seconds if self.sim_seconds > 0 else float("inf")

    def port(self, name: str) -> Port:
        return self.design.ports[name]

    def field(self, port: str, name: str) -> np.ndarray:
        """A manifest field of every beat collected on ``port``."""
        return F.field(self.port(port), self.outputs[port], name)

    def fields(self, port: str) -> dict:
        return F.fields(self.port(port), self.outputs[port])

    def elements(self, port: str, name: str = "data") -> np.ndarray:
        """The (n, elements) array field (e.g. the 3 data elements of ``out``)."""
        return F.elements(self.port(port), self.outputs[port], name)

    def job_cycles(self, port: str = "status") -> np.ndarray:
        """Cycles between consecutive beats on ``port`` (the first counted from cycle 0): with one
        status beat per job, each job's cycle count; they add up to the cycle of the last beat+1."""
        c = self.beat_cycles[port].astype(np.int64)
        return np.diff(np.concatenate([[-1], c]))

    def summary(self) -> str:
        beats = ", ".join(f"{p}={len(v)}" for p, v in self.beat_cycles.items())
        return (f"{self.stop_reason}: {self.cycles} cycles in {self.sim_seconds:.3f} s "
                f"({self.cycles_per_second / 1e6:.2f} M cycles/s); out beats {beats}; "
                f"consumed " + ", ".join(f"{p}={self.consumed[p]}/{n}"
                                         for p, n in self.inputs_total.items()))

    def raise_for_status(self) -> "RunResult":
        if not self.complete:
            want = f", waiting for {self.until[1]} beats on {self.until[0]!r}" if self.until else ""
            raise TimeoutError(f"simulation did not finish{want}: {self.summary()}")
        return self


def _read_verilog(verilog) -> str:
    if isinstance(verilog, Path):
        return verilog.read_text()
    if isinstance(verilog, str) and ("module" in verilog and "\n" in verilog):
        return verilog
    return Path(verilog).read_text()


class Harness:
    """A generated top, Verilated with the generic C++ stream driver, driven from Python.

    ``verilog``: Verilog text or a path to it. ``manifest``: the ``preba gen`` manifest (dict or
    path to manifest.json). Builds happen lazily on first use and are cached on disk (see
    :mod:`sim.harness.build`); each :meth:`run` starts from a fresh model and reset.
    """

    def __init__(self, verilog, manifest, *, build_root=None,
                 options: BuildOptions = BuildOptions(), jobs: int | None = None,
                 quiet: bool = False):
        if not isinstance(manifest, dict):
            manifest = json.loads(Path(manifest).read_text())
        self.manifest = manifest
        self.verilog = _read_verilog(verilog)
        self.design = parse_manifest(manifest)
        self.build_root = build_root
        self.options = options
        self.jobs = jobs
        self.quiet = quiet
        self._built: dict = {}

    @classmethod
    def from_manifest(cls, path, **kw) -> "Harness":
        """From a ``manifest.json`` whose ``verilog`` entry names a file next to it."""
        path = Path(path)
        manifest = json.loads(path.read_text())
        return cls(path.parent / manifest["verilog"], manifest, **kw)

    @property
    def ports(self) -> dict:
        return self.design.ports

    def build(self, trace: str | None = None, coverage: bool = False) -> Path:
        """Build (or find in the cache) a variant; return its build directory."""
        v = Variant(trace, coverage)
        d = self._built.get(v)
        if d is None or not (d / LIB_NAME).exists():
            d = self._built[v] = ensure_built(self.verilog, self.design, v, self.options,
                                              self.build_root, self.jobs, self.quiet)
        return d

    def pack(self, port: str, n: int | None = None, **values) -> np.ndarray:
        """Payload beats for ``port`` from manifest field values (see :func:`fields.pack`)."""
        return F.pack(self.ports[port], n, **values)

    def _input_words(self, port: Port, beats) -> np.ndarray:
        w = F.as_words(beats, port.width)
        top = port.width - 32 * (port.words - 1)
        if top < 32 and w.size and (w[:, -1] >> np.uint32(top)).any():
            raise ValueError(f"input {port.name!r}: a beat has bits set above its "
                             f"{port.width}-bit payload")
        return np.ascontiguousarray(w, dtype=np.uint32)

    def run(self, inputs: dict, *, until: tuple | None = None, max_cycles: int | None = None,
            idle_cycles: int | None = DEFAULT_IDLE_CYCLES,
            stall_cycles: int | None = DEFAULT_STALL_CYCLES, backpressure=0.0, seed: int = 1,
            reset_cycles: int = 4, trace=None, trace_window: tuple | None = None,
            coverage_file=None) -> RunResult:
        """Feed every input port its beats in order, collect every output beat.

        ``inputs``: {input port: beats} ((n,) ints for payloads up to 32 bits, (n,) uint64 up to
        64, or (n, words) uint32); ports left out send nothing. A sideband input (manifest
        ``"follows"``) takes one value per beat of the stream it follows, or one int (a
        constant); left out, it stays 0.
        ``until=(port, n)``: stop once n beats arrived on that output port.
        ``max_cycles``: give up after this many cycles (``timed_out``); the default is
        10M + 1000 per input beat. ``idle_cycles``: stop once all inputs are consumed and no
        beat moved on any port for this many cycles (None: never). ``stall_cycles``: stop when
        inputs remain but no beat moved on any port for this many cycles (None: never).
        ``backpressure``: probability p (or (p_in, p_out)) that an input withholds valid / an
        output drops ready in a cycle, from a xorshift PRNG seeded by ``seed``.
        ``trace``: a .vcd (or .fst, needs liblz4-dev) path; ``trace_window=(start, end)`` limits
        it to cycles [start, end). ``coverage_file``: write Verilator coverage counts there
        (uses the coverage build).
        """
        d = self.design
        unknown = set(inputs) - {p.name for p in d.inputs + d.sidebands}
        if unknown:
            raise KeyError(f"not input ports of {d.top}: {sorted(unknown)}; inputs are "
                           f"{[p.name for p in d.inputs + d.sidebands]}")
        bufs = [self._input_words(p, inputs[p.name]) if p.name in inputs
                else np.zeros((0, p.words), np.uint32) for p in d.inputs]
        n_beats = {p.name: len(b) for p, b in zip(d.inputs, bufs)}
        sbufs = []
        for p in d.sidebands:
            v = inputs.get(p.name)
            if v is None:
                sbufs.append(np.zeros((0, p.words), np.uint32))
                continue
            v = np.atleast_1d(np.asarray(v))
            if len(v) not in (1, n_beats[p.follows]):
                raise ValueError(f"sideband {p.name!r}: {len(v)} values for the "
                                 f"{n_beats[p.follows]} beats of {p.follows!r} (give one per "
                                 "beat, or one)")
            sbufs.append(self._input_words(p, v))
        total_in = sum(len(b) for b in bufs)
        if max_cycles is None:
            max_cycles = 10_000_000 + 1000 * total_in
        if until is not None:
            up, un = until
            names = [p.name for p in d.outputs]
            if up not in names:
                raise KeyError(f"until: {up!r} is not an output port ({names})")
            until_idx, until_n = names.index(up), int(un)
        else:
            until_idx, until_n = -1, 0
        p_in, p_out = (backpressure if isinstance(backpressure, (tuple, list))
                       else (backpressure, backpressure))
        trace_kind = None
        if trace is not None:
            suffix = Path(trace).suffix.lower()
            if suffix not in (".vcd", ".fst"):
                raise ValueError(f"trace file must end in .vcd or .fst: {trace}")
            trace_kind = suffix[1:]
            if trace_kind == "fst":
                require_fst()
            Path(trace).parent.mkdir(parents=True, exist_ok=True)
        lo, hi = trace_window if trace_window is not None else (0, 2**64 - 1)
        if not 0 <= lo < hi:
            raise ValueError(f"trace_window {trace_window}: need 0 <= start < end")
        lib = _load(self.build(trace_kind, coverage_file is not None), d)

        h = lib.preba_new(int(seed) & (2**64 - 1), float(p_in), float(p_out), int(reset_cycles),
                          str(trace).encode() if trace else None, int(lo), int(hi))
        try:
            for k, b in enumerate(bufs):
                lib.preba_set_input(h, k, b.ctypes.data, len(b))
            for k, b in enumerate(sbufs):
                if len(b):
                    lib.preba_set_sideband(h, k, b.ctypes.data, len(b))
            lib.preba_set_stop(h, until_idx, until_n, int(idle_cycles or 0),
                               int(stall_cycles or 0))
            reason = "max_cycles"
            t0 = time.perf_counter()
            while True:
                left = max_cycles - lib.preba_cycles(h)
                if left <= 0:
                    break
                r = lib.preba_step(h, min(left, STEP_SLICE))
                if r:
                    reason = _REASONS[r]
                    break
            sim_seconds = time.perf_counter() - t0
            outputs, beat_cycles = {}, {}
            for k, p in enumerate(d.outputs):
                n = lib.preba_out_count(h, k)
                words = np.empty((n, p.words), np.uint32)
                cyc = np.empty(n, np.uint64)
                lib.preba_out_copy(h, k, words.ctypes.data, cyc.ctypes.data)
                outputs[p.name] = words[:, 0].copy() if p.words == 1 else words
                beat_cycles[p.name] = cyc
            consumed, done = {}, {}
            for k, p in enumerate(d.inputs):
                consumed[p.name] = int(lib.preba_in_pos(h, k))
                dc = lib.preba_in_done_cycle(h, k)
                done[p.name] = None if dc == 2**64 - 1 else int(dc)
            cycles = int(lib.preba_cycles(h))
            if coverage_file is not None:
                Path(coverage_file).parent.mkdir(parents=True, exist_ok=True)
                if lib.preba_coverage_write(h, str(coverage_file).encode()) != 0:
                    raise RuntimeError("coverage write failed")
        finally:
            lib.preba_free(h)      # also closes the trace file
        return RunResult(d, outputs, beat_cycles, consumed, done, cycles, sim_seconds, reason,
                         tuple(until) if until is not None else None, (p_in, p_out), seed,
                         {p.name: len(b) for p, b in zip(d.inputs, bufs)},
                         str(trace) if trace else None,
                         str(coverage_file) if coverage_file is not None else None)
