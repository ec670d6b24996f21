"""The ``preba`` command line.

Each command group lives in its own module and registers itself through ``add_commands``:
hardware (gen, preprocess) here, serving (profile, bench, mig, serve) in
:mod:`pyhost.serving_cli`, boards in :mod:`pyhost.board_cli`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import replace
from pathlib import Path

from hdl.spec import PRESETS, SpecError, load_pipeline

#: Modules that add subcommands (each exports ``add_commands(subparsers)``).
COMMAND_MODULES = ("pyhost.serving_cli", "pyhost.serve_cli", "pyhost.board_cli")


def pipeline_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", default="imagenet", metavar="P",
                   help=f"a preset ({', '.join(PRESETS)}) or a pipeline .toml file "
                        "(default: imagenet)")


def cmd_gen(args) -> int:
    from hdl.gen import generate
    spec = load_pipeline(args.pipeline)
    out = generate(spec, Path(args.out))
    print(f"wrote {out['verilog']} and {out['manifest']}")
    return 0


def cmd_preprocess(args) -> int:
    import numpy as np
    from .accelerator import Accelerator

    options = {}
    if args.backend == "rtl":
        if args.trace:
            options["trace"] = args.trace
            if len(args.images) != 1:
                print("preba preprocess: --trace takes exactly one image", file=sys.stderr)
                return 2
        if args.trace_window:
            options["trace_window"] = args.trace_window
        if args.backpressure:
            options["backpressure"] = args.backpressure
    elif args.backend == "fpga":
        if not args.port:
            print("preba preprocess: --backend fpga needs --port DEVICE (e.g. /dev/ttyUSB0)",
                  file=sys.stderr)
            return 2
        options["port"] = args.port
    if args.backend != "rtl" and (args.trace or args.trace_window):
        print("preba preprocess: --trace needs --backend rtl", file=sys.stderr)
        return 2
    spec = load_pipeline(args.pipeline)
    if args.dct_scaling:
        try:
            spec = replace(spec, dct_scaling=True)
        except SpecError as e:
            print(f"preba preprocess: --dct-scaling: {e}", file=sys.stderr)
            return 2
    acc = Accelerator(spec, backend=args.backend, **options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = acc.run_many(args.images, jobs=args.jobs, progress=sys.stderr.isatty())
    report = {"pipeline": acc.spec.name, "backend": args.backend, "images": []}
    failed = 0
    used_names: set[str] = set()
    for src, r in zip(args.images, results):
        stem = Path(src).stem
        name = stem
        i = 1
        while name in used_names:  # two inputs with the same stem must not overwrite each other
            name = f"{stem}_{i}"
            i += 1
        used_names.add(name)
        entry = {"input": str(src), "output": None, "shape": None, "dtype": None,
                 "cycles": r.cycles, "sim_seconds": r.sim_seconds, "error": r.error}
        entry.update(r.extra)
        if r.error is None:
            path = out / f"{name}.npy"
            np.save(path, r.tensor)
            entry.update(output=str(path), shape=list(r.tensor.shape),
                         dtype=acc.spec.output.dtype)
        else:
            failed += 1
            print(f"preba preprocess: {src}: {r.error}", file=sys.stderr)
        report["images"].append(entry)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    ok = len(results) - failed
    print(f"{ok}/{len(results)} images preprocessed with {args.backend}; report: "
          f"{out / 'report.json'}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="preba",
        description="FPGA image preprocessing (JPEG decode, resize, crop, normalize, layout) "
                    "feeding partitioned GPU inference.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("gen", help="write the pipeline's Verilog and manifest.json",
                       description="Generate Verilog for a pipeline spec, with manifest.json "
                                   "(top name, ports, parameters, fixed-point formats).")
    pipeline_arg(g)
    g.add_argument("--out", required=True, metavar="DIR", help="output directory")
    g.set_defaults(func=cmd_gen)

    pp = sub.add_parser("preprocess", help="preprocess images to .npy tensors",
                        description="Preprocess images into DIR/<stem>.npy and DIR/report.json. "
                                    "Exit status 1 if any image failed (the others are still "
                                    "written).")
    pipeline_arg(pp)
    pp.add_argument("--backend", choices=("rtl", "golden", "pillow", "fpga"), default="golden",
                    help="rtl: simulated RTL (Verilator); golden: numpy model bit-exact with "
                         "the RTL; pillow: the CPU software pipeline; fpga: a board (or the "
                         "simulated board) over a serial port (default: golden)")
    pp.add_argument("--dct-scaling", action="store_true",
                    help="decode JPEGs at 1/2, 1/4 or 1/8 scale (scaled IDCTs) when the resize "
                         "still gets at least the pixels it needs (rtl, golden and fpga "
                         "backends; the pillow backend always decodes at full size)")
    pp.add_argument("--port", metavar="DEVICE", help="fpga backend: the board's serial port")
    pp.add_argument("--out", required=True, metavar="DIR")
    pp.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                    help="images in parallel processes (default 1)")
    pp.add_argument("--trace", metavar="FILE.vcd|FILE.fst",
                    help="rtl backend: write a waveform of one image")
    pp.add_argument("--trace-window", metavar="START:END",
                    help="rtl backend: only trace cycles START..END")
    pp.add_argument("--backpressure", type=float, metavar="P", default=0.0,
                    help="rtl backend: stall input and output with probability P per cycle "
                         "(seeded), to exercise stall behaviour")
    pp.add_argument("images", nargs="+", metavar="IMAGE")
    pp.set_defaults(func=cmd_preprocess)

    for mod in COMMAND_MODULES:
        importlib.import_module(mod).add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from sim.toolchain import ensure_tools_on_path
    ensure_tools_on_path()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except SpecError as e:
        print(f"preba {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
