"""Every failing endpoint of a routed design, grouped by block: static timing from nextpnr's SDF.

nextpnr reports one critical path per clock. When thousands of endpoints fail, that one path
says little about where the work is: is it one block, or routing across the whole chip? This
module reads the SDF that nextpnr writes (``--sdf``: every cell delay and every routed net
delay, the same numbers its own timing analysis uses), recomputes the worst arrival time at
every register input and groups the failing endpoints by the Amaranth module of the register
that launches the path and of the one that captures it.

The model is nextpnr's single-clock one: every clock pin sits at time 0 (global clock network,
no skew in the SDF), arrivals use the max delays, and an endpoint fails when its arrival plus
its setup time exceeds the period. Paths from and to I/O pins are not timed (the board's pins
are asynchronous). ``tests/test_sdf_sta.py`` checks the worst path against nextpnr's own.

Run::

    python -m hdl.board.sdf_sta build/.../top.sdf --period-ns 10
"""
from __future__ import annotations

import argparse
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

_CELL = re.compile(r"\(CELL\s*\(CELLTYPE\s+\"([^\"]*)\"\)\s*\(INSTANCE\s*([^)]*?)\s*\)")
_IOPATH = re.compile(r"\(IOPATH\s+(\S+)\s+(\S+)\s+\(([-\d.]*):([-\d.]*):([-\d.]*)\)")
_SETUP = re.compile(r"\(SETUPHOLD\s+\((?:posedge|negedge)\s+(\S+)\)\s+\((?:posedge|negedge)\s+"
                    r"(\S+)\)\s+\(([-\d.]*):([-\d.]*):([-\d.]*)\)")
_INTERCONNECT = re.compile(r"\(INTERCONNECT\s+(\S+)\s+(\S+)\s+\(([-\d.]*):([-\d.]*):([-\d.]*)\)")
_CLOCK_PINS = {"CLK", "CLKA", "CLKB", "CLK0", "CLK1", "CLK2", "CLK3", "WCK", "CLKI"}


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", r"\1", name)


def _split_pin(ref: str) -> tuple[str, str]:
    """``inst/pin`` (an escaped ``\\/`` belongs to the name) -> (instance, pin)."""
    i = len(ref) - 1
    while i >= 0:
        if ref[i] == "/" and (i == 0 or ref[i - 1] != "\\"):
            return _unescape(ref[:i]), ref[i + 1:]
        i -= 1
    return _unescape(ref), ""


def module_of(instance: str) -> str:
    """The Amaranth module path of a placed cell: its name up to the last hierarchy dot.

    Yosys names a mapped cell after the signal it drives (``idct.p2_ph5_TRELLIS_FF_Q_9``), and
    nextpnr keeps those names, so the module is everything before the last ``.``."""
    head, _, _ = instance.rpartition(".")
    return head or "(top)"


@dataclass
class Endpoint:
    instance: str
    pin: str
    arrival_ps: float
    setup_ps: float
    start: str            # the launching instance of the worst path
    slack_ps: float = 0.0


@dataclass
class Timing:
    period_ps: float
    endpoints: list[Endpoint] = field(default_factory=list)
    module_of: object = field(default_factory=lambda: module_of)   # not a method

    @property
    def worst(self) -> Endpoint | None:
        return min(self.endpoints, key=lambda e: e.slack_ps, default=None)

    @property
    def failing(self) -> list[Endpoint]:
        return [e for e in self.endpoints if e.slack_ps < 0]

    def fmax_mhz(self) -> float:
        w = self.worst
        if w is None:
            return float("inf")
        return 1e6 / (w.arrival_ps + w.setup_ps)

    def by_module(self, depth: int | None = None, key: str = "end") -> list[dict]:
        """Failing endpoints grouped by the capturing (``end``) or launching (``start``) module,
        module paths cut to ``depth`` components; worst first."""
        groups: dict[str, list[Endpoint]] = defaultdict(list)
        for e in self.failing:
            mod = self.module_of(e.instance if key == "end" else e.start)
            if depth is not None:
                mod = ".".join(mod.split(".")[:depth])
            groups[mod].append(e)
        rows = [{"module": mod, "failing": len(es), "worst_ns": min(e.slack_ps for e in es) / 1e3,
                 "total_ns": sum(e.slack_ps for e in es) / 1e3} for mod, es in groups.items()]
        return sorted(rows, key=lambda r: r["worst_ns"])

    def by_route(self, depth: int | None = None) -> list[dict]:
        """Failing endpoints grouped by (launching module -> capturing module); worst first."""
        groups: dict[tuple[str, str], list[Endpoint]] = defaultdict(list)
        for e in self.failing:
            a, b = self.module_of(e.start), self.module_of(e.instance)
            if depth is not None:
                a, b = ".".join(a.split(".")[:depth]), ".".join(b.split(".")[:depth])
            groups[(a, b)].append(e)
        rows = [{"from": a, "to": b, "failing": len(es),
                 "worst_ns": min(e.slack_ps for e in es) / 1e3} for (a, b), es in groups.items()]
        return sorted(rows, key=lambda r: r["worst_ns"])


def analyze(sdf_text: str, period_ns: float, module_of=module_of) -> Timing:
    """Worst arrival and slack at every register/RAM/DSP input of a routed design.

    ``module_of`` maps a cell name to the module it is grouped under (default: the name up to
    its last dot; the board report passes one that knows Amaranth's struct-field names)."""
    period = period_ns * 1e3
    edges: dict[tuple[str, str], list[tuple[tuple[str, str], float]]] = defaultdict(list)
    launches: dict[tuple[str, str], float] = {}
    setups: dict[tuple[str, str], float] = {}
    # Cells: split the text at each (CELL so that IOPATHs/SETUPHOLDs belong to their instance.
    starts = [m for m in _CELL.finditer(sdf_text)]
    for i, m in enumerate(starts):
        ctype, inst = m.group(1), _unescape(m.group(2).strip())
        body = sdf_text[m.end(): starts[i + 1].start() if i + 1 < len(starts) else len(sdf_text)]
        for a, b, *_ , mx in _IOPATH.findall(body):
            if ctype == "DCCA" or a.startswith("CLKI"):
                continue
            d = float(mx or 0)
            if a in _CLOCK_PINS:
                key = (inst, b)
                launches[key] = max(launches.get(key, 0.0), d)
            else:
                edges[(inst, a)].append(((inst, b), d))
        for data, clk, _, _, setup in _SETUP.findall(body):
            if data in _CLOCK_PINS:
                continue
            key = (inst, data)
            setups[key] = max(setups.get(key, 0.0), float(setup or 0))
    for src, dst, *_, mx in _INTERCONNECT.findall(sdf_text):
        a, b = _split_pin(src), _split_pin(dst)
        if b[1] in _CLOCK_PINS:
            continue
        edges[a].append((b, float(mx or 0)))

    # Longest arrival by relaxation in topological order (Kahn) over the launched subgraph.
    indeg: dict[tuple[str, str], int] = defaultdict(int)
    reach = list(launches)
    seen = set(reach)
    while reach:
        n = reach.pop()
        for nxt, _ in edges.get(n, ()):
            indeg[nxt] += 1
            if nxt not in seen:
                seen.add(nxt)
                reach.append(nxt)
    arrival = {n: d for n, d in launches.items()}
    origin = {n: n[0] for n in launches}
    ready = [n for n in launches if indeg[n] == 0]
    while ready:
        n = ready.pop()
        t = arrival[n]
        for nxt, d in edges.get(n, ()):
            if t + d > arrival.get(nxt, -1.0):
                arrival[nxt] = t + d
                origin[nxt] = origin[n]
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                ready.append(nxt)
    timing = Timing(period, module_of=module_of)
    for key, setup in setups.items():
        if key not in arrival:
            continue            # driven by a constant or an I/O pin only
        e = Endpoint(key[0], key[1], arrival[key], setup, origin[key])
        e.slack_ps = period - setup - e.arrival_ps
        timing.endpoints.append(e)
    return timing


def format_table(rows: list[dict], cols: list[str]) -> str:
    widths = [max(len(c), *(len(_fmt(r[c])) for r in rows)) if rows else len(c) for c in cols]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    for r in rows:
        out.append("  ".join(_fmt(r[c]).ljust(w) for c, w in zip(cols, widths)))
    return "\n".join(out)


def _fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hdl.board.sdf_sta",
                                 description="Group a routed design's failing endpoints by "
                                             "module, from nextpnr's SDF (--sdf).")
    ap.add_argument("sdf", type=Path, help="SDF written by nextpnr --sdf")
    ap.add_argument("--period-ns", type=float, default=10.0, help="clock period (default 10)")
    ap.add_argument("--depth", type=int, default=None,
                    help="cut module paths to this many components (default: full path)")
    ap.add_argument("--top", type=int, default=25, help="rows to print (default 25)")
    args = ap.parse_args(argv)
    if not args.sdf.is_file():
        raise SystemExit(f"{args.sdf}: no such SDF file (write one with nextpnr --sdf FILE)")
    t = analyze(args.sdf.read_text(), args.period_ns)
    w = t.worst
    print(f"{len(t.endpoints)} timed endpoints, {len(t.failing)} failing at "
          f"{args.period_ns} ns; Fmax {t.fmax_mhz():.2f} MHz")
    if w is not None:
        print(f"worst: {w.start} -> {w.instance}/{w.pin}  slack {w.slack_ps / 1e3:.2f} ns")
    print("\nfailing endpoints by capturing module:")
    print(format_table(t.by_module(args.depth)[:args.top],
                       ["module", "failing", "worst_ns", "total_ns"]))
    print("\nby launching -> capturing module:")
    print(format_table(t.by_route(args.depth)[:args.top], ["from", "to", "failing", "worst_ns"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
