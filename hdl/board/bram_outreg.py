"""Move the flip-flop behind each block RAM read port into the DP16KD's own output register.

An ECP5 DP16KD without its output register (``REGMODE=NOREG``, all Yosys 0.70's
``synth_ecp5`` ever maps) drives its data 5.5 ns after the clock edge (speed grade 6); with it
(``REGMODE=OUTREG``) 0.9 ns. The gateware registers every block RAM read's data straight
into flip-flops (``_LineRam.read``, ``_Fifo``, the step tables), and at 100 MHz the 5.5 ns
plus the route to wherever the placer put those flip-flops was the last thing failing. The
output register is the same flip-flop inside the EBR: one more clock of read latency, which the
RTL already has. Yosys's ECP5 block RAM library does not offer it, so this pass does it on the
synthesized JSON netlist, before nextpnr.

A read port qualifies when every data output it uses drives exactly one sink, the ``DI`` of a
``TRELLIS_FF`` clocked (not inverted) by the port's clock, with no set/reset (``LSR`` tied
to 0) and either no enable or one enable net shared by all of them, which becomes the port's
``OCE`` (output clock enable). The flip-flops are removed and their ``Q`` nets driven by the
EBR. The EBR's ``RST`` must be tied to 0, as the flip-flops had no reset. Anything else is left
as it was: the pass only ever removes a flip-flop whose behaviour the EBR takes over exactly.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

__all__ = ["absorb_output_registers", "absorb_file"]

_DO_BITS = 18


def _port_ffs(cells: dict, sinks: dict, ebr: dict, port: str):
    """The flip-flops to absorb for one port, as [(do pin, ff name)], and the OCE net, or
    None when the port does not qualify."""
    conn = ebr["connections"]
    params = {k: str(v).strip() for k, v in ebr["parameters"].items()}
    if conn.get(f"RST{port}") != ["0"] or params.get(f"REGMODE_{port}") != "NOREG":
        return None
    clk = conn.get(f"CLK{port}")
    if params.get(f"CLK{port}MUX", f"CLK{port}") != f"CLK{port}":
        return None
    found = []
    enables = set()
    for i in range(_DO_BITS):
        pin = f"DO{port}{i}"
        bits = conn.get(pin)
        if not bits or not isinstance(bits[0], int) or not sinks.get(bits[0]):
            continue
        users = sinks[bits[0]]
        if len(users) != 1:
            return None
        name, sink_pin = users[0]
        ff = cells[name]
        if ff["type"] != "TRELLIS_FF" or sink_pin != "DI":
            return None
        # (Yosys writes a string parameter that looks like a bit vector with a trailing space)
        p = {k: str(v).strip() for k, v in ff["parameters"].items()}
        c = ff["connections"]
        if (c.get("CLK") != clk or p.get("CLKMUX", "CLK") != "CLK"
                or c.get("LSR", ["0"]) != ["0"] or p.get("LSRMUX", "LSR") != "LSR"):
            return None
        if c.get("M", ["x"])[0] not in ("x", "0"):
            return None
        cemux = p.get("CEMUX", "1")
        if cemux == "1" or c.get("CE") == ["1"]:
            enables.add("1")
        elif cemux == "CE":
            enables.add(json.dumps(c["CE"]))
        else:                                   # an inverted enable: leave it
            return None
        found.append((pin, name))
    if not found or len(enables) != 1:
        return None
    (oce,) = enables
    return found, (["1"] if oce == "1" else json.loads(oce))


def absorb_output_registers(netlist: dict) -> dict:
    """Rewrite ``netlist`` (Yosys JSON, after ``synth_ecp5``) in place; returns counts."""
    stats = {"ports": 0, "flip_flops": 0, "ports_left": 0}
    for module in netlist["modules"].values():
        cells = module.get("cells", {})
        sinks = defaultdict(list)
        for name, cell in cells.items():
            dirs = cell.get("port_directions", {})
            for pin, bits in cell["connections"].items():
                if dirs.get(pin) == "input":
                    for b in bits:
                        if isinstance(b, int):
                            sinks[b].append((name, pin))
        for name in [n for n, c in cells.items() if c["type"] == "DP16KD"]:
            ebr = cells[name]
            for port in "AB":
                used = any(isinstance((ebr["connections"].get(f"DO{port}{i}") or ["x"])[0], int)
                           and sinks.get(ebr["connections"][f"DO{port}{i}"][0])
                           for i in range(_DO_BITS))
                if not used:
                    continue
                got = _port_ffs(cells, sinks, ebr, port)
                if got is None:
                    stats["ports_left"] += 1
                    continue
                found, oce = got
                for pin, ff_name in found:
                    q = cells[ff_name]["connections"]["Q"]
                    del cells[ff_name]
                    ebr["connections"][pin] = q
                ebr["parameters"][f"REGMODE_{port}"] = "OUTREG"
                ebr["connections"][f"OCE{port}"] = oce
                stats["ports"] += 1
                stats["flip_flops"] += len(found)
    return stats


def absorb_file(path: Path) -> dict:
    path = Path(path)
    netlist = json.loads(path.read_text())
    stats = absorb_output_registers(netlist)
    path.write_text(json.dumps(netlist))
    return stats


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(arg, absorb_file(Path(arg)))
