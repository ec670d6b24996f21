"""Board commands: ``preba bitstream`` (build + report) and ``preba sim-board``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORT_SIZES = ((640, 480), (1920, 1080))


def _spec(args):
    """The pipeline, with the board variant's overrides (named after them, so the board's spec
    id differs from the unmodified pipeline's)."""
    from hdl.spec import load_pipeline, with_limits
    spec = load_pipeline(args.pipeline)
    if getattr(args, "no_jpeg_decoder", False) and spec.jpeg_decoder:
        spec = with_limits(spec, name=f"{spec.name}-nojpeg", jpeg_decoder=False)
    if getattr(args, "max_size", None):
        n = args.max_size
        spec = with_limits(spec, name=f"{spec.name}-max{n}", max_width=n, max_height=n)
    return spec


def spec_toml(spec) -> str:
    """The spec as a pipeline .toml (for --pipeline FILE on the host side of a variant)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)
    lines = [f"# pipeline of the {spec.name} board build (preba bitstream)"]
    for section, fields in spec.to_dict().items():
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {val(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def _photo(w, h, rng):
    import numpy as np
    y, x = np.mgrid[0:h, 0:w]
    return np.clip(np.stack([x * 255 // w, y * 255 // h, (x + y) % 256], -1)
                   + rng.integers(-30, 31, (h, w, 3)), 0, 255).astype(np.uint8)


def measure_jpeg_cycles(spec, sizes=REPORT_SIZES) -> dict:
    """Cycles per JPEG (quality 90, 4:2:0) through the core's decoder, on the Verilator model
    (the rtl backend); sizes above the spec's limits are left out."""
    import io
    import numpy as np
    from PIL import Image
    from pyhost.backends.rtl import RtlBackend
    rng = np.random.default_rng(20261123)
    backend = RtlBackend(spec)
    out = {}
    for w, h in sizes:
        if w > spec.max_width or h > spec.max_height:
            continue
        buf = io.BytesIO()
        Image.fromarray(_photo(w, h, rng)).save(buf, "JPEG", quality=90)
        r = backend.run(buf.getvalue(), f"{w}x{h}.jpg")
        out[f"{w}x{h}"] = {"width": w, "height": h, "cycles": int(r.cycles),
                           "cfg_words": int(r.extra["cfg_words"]),
                           "jpeg_bytes": len(buf.getvalue()),
                           "cycles_per_pixel": round(r.cycles / (w * h), 5)}
    return out


def measure_cycles(spec, sizes=REPORT_SIZES) -> dict:
    """Cycles the core takes per image of each size (cfg words + pixels, no backpressure), from
    the cycle-accurate Verilator model (sim.harness), on photo-like synthetic images."""
    import numpy as np
    from hdl.gen import manifest, top_name, verilog_text
    from hdl.job import build_job
    from sim.harness.core import CoreHarness

    h = CoreHarness(verilog_text(spec), manifest(spec, f"{top_name(spec)}.v", ""))
    h.build()
    rng = np.random.default_rng(20261123)
    out = {}
    for w, hh in sizes:
        if w > spec.max_width or hh > spec.max_height:
            continue
        img = _photo(w, hh, rng)
        job = build_job(spec, w, hh)
        r = h.run_jobs([(job.words, img)])
        j = r.jobs[0]
        if j.code != 0:
            raise RuntimeError(f"core reported status {j.code} on a {w}x{hh} image")
        out[f"{w}x{hh}"] = {"width": w, "height": hh, "cycles": int(j.cycles),
                            "cfg_words": int(len(job.words)),
                            "cycles_per_pixel": round(j.cycles / (w * hh), 5)}
    return out


def _rebuild_cmd(args) -> str:
    cmd = f"preba bitstream --board {args.board} --pipeline {args.pipeline}"
    if args.max_size:
        cmd += f" --max-size {args.max_size}"
    if args.no_jpeg_decoder:
        cmd += " --no-jpeg-decoder"
    if args.freq != 100.0:
        cmd += f" --freq {args.freq:g}"
    if args.baud != 3_000_000:
        cmd += f" --baud {args.baud}"
    if (args.board, args.pipeline, args.max_size, args.no_jpeg_decoder) == \
            ("ulx3s-85f", "imagenet", None, False):
        cmd = "make bitstream            # = " + cmd
    return cmd


def cmd_bitstream(args) -> int:
    from hdl.board.report import write_reports
    from hdl.board.ulx3s import build_bitstream, board_name

    spec = _spec(args)
    build_dir = Path(args.build_dir or REPO / "build" / "bitstream" / args.board / spec.name)
    report_dir = Path(args.reports or REPO / "bitstreams") / args.board / spec.name
    freq_hz = args.freq * 1e6

    if args.cycles_per_pixel is not None:
        cycles = {f"{w}x{h}": {"width": w, "height": h,
                               "cycles": round(args.cycles_per_pixel * w * h),
                               "cycles_per_pixel": args.cycles_per_pixel}
                  for w, h in REPORT_SIZES}
        cycles_source = args.cycles_source or "given on the command line (--cycles-per-pixel)"
    elif spec.jpeg_decoder:
        print("preba bitstream: measuring cycles per JPEG on the Verilator model ...",
              file=sys.stderr, flush=True)
        cycles = measure_jpeg_cycles(spec)
        cycles_source = ("measured by `preba bitstream` on the cycle-accurate Verilator model "
                         "of the core (rtl backend: JPEG bytes into the on-chip decoder, "
                         "quality 90 4:2:0 photo-like synthetic images, one image per run so "
                         "the table load is included)")
    else:
        print("preba bitstream: measuring cycles per image on the Verilator model ...",
              file=sys.stderr, flush=True)
        cycles = measure_cycles(spec)
        cycles_source = ("measured by `preba bitstream` on the cycle-accurate Verilator model "
                         "of the core (sim.harness, RGB pixels in, no backpressure, photo-like "
                         "synthetic images, cfg words included)")

    omitted = [f"{w}x{h}" for w, h in REPORT_SIZES if f"{w}x{h}" not in cycles]
    if omitted:
        cycles_source += (f"; {', '.join(omitted)} left out: above this pipeline's "
                          f"{spec.max_width}x{spec.max_height} limit")

    if args.report_only:
        name = board_name(spec)
        build = {"name": name, "build_dir": build_dir, "bit": build_dir / f"{name}.bit",
                 "seconds": None}
        meta = build_dir / "build-meta.json"
        if meta.exists():
            build.update({k: v for k, v in json.loads(meta.read_text()).items()
                          if k in ("seconds", "seed", "freq_hz", "baud", "error")})
    else:
        print(f"preba bitstream: building {args.board} / {spec.name} at {args.freq:g} MHz in "
              f"{build_dir} (several minutes) ...", file=sys.stderr, flush=True)
        build = build_bitstream(spec, args.board, build_dir, freq_hz=freq_hz, baud=args.baud,
                                seed=args.seed)
        (build_dir / "build-meta.json").write_text(json.dumps(
            {"seconds": round(build["seconds"], 1), "seed": args.seed, "freq_hz": freq_hz,
             "baud": args.baud, "error": build["error"],
             "finished": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
        if build["error"]:
            print(f"preba bitstream: build failed after {build['seconds']:.0f} s: "
                  f"{build['error']}", file=sys.stderr)
        else:
            print(f"preba bitstream: {build['bit']} built in {build['seconds']:.0f} s",
                  file=sys.stderr)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "pipeline.toml").write_text(spec_toml(spec))
    report = write_reports(spec, args.board, build_dir, build["name"], report_dir,
                           target_hz=freq_hz, baud=args.baud, cycles=cycles,
                           cycles_source=cycles_source, build_seconds=build.get("seconds"),
                           seed=args.seed, error=build.get("error"),
                           rebuild=_rebuild_cmd(args))
    t = report["timing"]
    if not report["fits"]:
        over = ", ".join(f"{u['resource']} {u['used']}/{u['available']}"
                         for u in report["utilization"] if u["used"] > u["available"])
        print(f"wrote {report_dir / 'report.md'} and report.json: does NOT fit ({over or report['error']})")
        return 4
    print(f"wrote {report_dir / 'report.md'} and report.json: "
          + ", ".join(f"{d['clock']} {d['fmax_mhz']:.1f} MHz (target {d['target_mhz']:g})"
                      for d in t["domains"])
          + f"; timing {'met' if t['met'] else 'NOT met'}")
    return 0 if t["met"] or args.allow_timing_fail else 3


def cmd_sim_board(args) -> int:
    from sim.board import SimBoard
    spec = _spec(args)
    board = SimBoard(spec, vcd=args.vcd)
    port = board.start()
    print(f"simulated {spec.name} board on {port}  (Ctrl-C to stop)\n"
          f"  preba preprocess --pipeline {args.pipeline} --backend fpga --port {port} "
          "IMAGE... --out DIR", flush=True)
    try:
        board.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
        if board.log:
            print(board.log.strip(), file=sys.stderr)
    return 0


def add_commands(sub) -> None:
    from .cli import pipeline_arg

    b = sub.add_parser(
        "bitstream", help="build a board bitstream and its utilization/timing report",
        description="Synthesize, place and route the board top (UART host link + the "
                    "pipeline's core) with Amaranth and the YoWASP tools; the .bit goes under "
                    "build/, report.json and report.md under bitstreams/<board>/<pipeline>/. "
                    "Exit status 3 if timing is not met, 4 if the design does not fit.")
    b.add_argument("--board", choices=("ulx3s-85f",), default="ulx3s-85f")
    pipeline_arg(b)
    b.add_argument("--freq", type=float, default=100.0, metavar="MHZ",
                   help="core clock (PLL output from the 25 MHz oscillator; default 100)")
    b.add_argument("--baud", type=int, default=3_000_000,
                   help="host link UART rate (default 3000000, the FT231X maximum)")
    b.add_argument("--max-size", type=int, metavar="N",
                   help="board variant with max_width = max_height = N (smaller tables and "
                        "JPEG line buffers); named <pipeline>-maxN")
    b.add_argument("--no-jpeg-decoder", action="store_true",
                   help="board variant without the on-chip JPEG decoder (the host decodes); "
                        "named <pipeline>-nojpeg")
    b.add_argument("--cycles-per-pixel", type=float, metavar="X",
                   help="core cycles per input pixel for the images/s figures (default: "
                        "measure them on the Verilator model)")
    b.add_argument("--cycles-source", metavar="TEXT",
                   help="where --cycles-per-pixel comes from, for the report")
    b.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    b.add_argument("--build-dir", metavar="DIR")
    b.add_argument("--reports", metavar="DIR", help="reports root (default: bitstreams/)")
    b.add_argument("--report-only", action="store_true",
                   help="rewrite the reports from an existing build")
    b.add_argument("--allow-timing-fail", action="store_true",
                   help="exit 0 even when timing is not met")
    b.set_defaults(func=cmd_bitstream)

    from hdl.board import block_timing
    t = sub.add_parser(
        "block-timing", help="Fmax of one pipeline block alone (minutes, not a board build)",
        description="Synthesize, place and route one block of the pipeline on its own on the "
                    "ULX3S's ECP5-85F, every port registered, and print its Fmax, utilization "
                    "and critical path: the loop for timing work on one block. Needs the fpga "
                    "extra.")
    block_timing.add_arguments(t)
    t.set_defaults(func=block_timing.run_cli)

    s = sub.add_parser("sim-board", help="run the simulated board on a pseudo-terminal",
                       description="Start the Verilator model of the board top with its UART "
                                   "on a pseudo-terminal, for --backend fpga --port.")
    pipeline_arg(s)
    s.add_argument("--max-size", type=int, metavar="N", help=argparse.SUPPRESS)
    s.add_argument("--no-jpeg-decoder", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--vcd", metavar="FILE", help="waveform of the whole session")
    s.set_defaults(func=cmd_sim_board)
