"""Serving commands of ``preba``: ``profile``, ``bench``, ``mig plan``, ``mig list``."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

__all__ = ["add_commands"]


def _ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return sorted(set(vals))


def _floats(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    if not vals or min(vals) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return vals


def _names(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        vals = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in vals if v not in allowed]
        if bad or not vals:
            raise argparse.ArgumentTypeError(f"{', '.join(bad) or text!r}: choose from "
                                             f"{', '.join(allowed)}")
        return vals
    return parse


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet-lite0", metavar="M",
                   help="efficientnet-lite0 (pretrained, default), null (no compute: host "
                        "overhead), package.module:function, or a TorchScript file")
    p.add_argument("--pipeline", default=None, metavar="P",
                   help="preprocessing preset or .toml (default: the one the model was trained "
                        "with)")
    p.add_argument("--partitions", default="auto", metavar="P",
                   help="auto, mig, gpu, sm:16,16,32, mps:14,14, or cpu:N (default auto)")


def _err(cmd: str, e: Exception) -> int:
    print(f"preba {cmd}: {e}", file=sys.stderr)
    return 2


# --- profile -------------------------------------------------------------------------------------
def cmd_profile(args) -> int:
    from .partitions import PartitionError
    from .server import ServerError
    try:
        return asyncio.run(_profile(args))
    except (PartitionError, ServerError, ValueError, KeyError) as e:
        return _err("profile", e)


async def _profile(args) -> int:
    from .models import resolve_model
    from .profile import PartitionProfile, Profile
    from .server import InferenceServer

    model = resolve_model(args.model, args.pipeline)
    server = InferenceServer(model, args.partitions, "none", preprocess="tensors",
                             buckets=args.batch_sizes, profile_iters=0,
                             cuda_graphs=not args.no_cuda_graphs)
    async with server:
        print(f"profiling {model.name} on {', '.join(l.partition.name for l in server.lanes)} "
              f"({server.lanes[0].info.get('device')}, {server.lanes[0].info.get('runner')}); "
              f"batch sizes {args.batch_sizes}, {args.iters} runs each", file=sys.stderr)
        samples = await server.measure(args.batch_sizes, args.iters)
        padded = server.lanes[0].info.get("runner") == "cuda-graphs"
        device = server.lanes[0].info.get("device", "")
    prof = Profile(model.name, {k: PartitionProfile.from_samples(k, v, padded)
                                for k, v in samples.items()}, device,
                   f"measured by preba profile ({args.iters} runs per batch size, all partitions "
                   "running together)",
                   {"partitions": args.partitions, "pipeline": model.pipeline.name})
    for key, pp in prof.partitions.items():
        print(f"{key}: Batch_knee {pp.batch_knee}, Time_knee {pp.time_knee_ms:.2f} ms")
        print(f"  {'batch':>5} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'img/s':>9}")
        for s in pp.batches:
            print(f"  {s.batch:5d} {s.p50_ms:9.2f} {s.p95_ms:9.2f} {s.p99_ms:9.2f} "
                  f"{s.throughput_ips:9.1f}")
    if args.json:
        prof.save(args.json)
        print(f"wrote {args.json}")
    return 0


# --- bench ---------------------------------------------------------------------------------------
def cmd_bench(args) -> int:
    from .bench import BenchConfig, list_images, run_bench, write_json, write_plot
    from .partitions import PartitionError

    try:
        images = list_images(args.images)
    except ValueError as e:
        return _err("bench", e)
    fpga = {}
    if "fpga-model" in args.preprocess:
        if not args.fpga_cycles:
            return _err("bench", ValueError("--preprocess fpga-model needs --fpga-cycles FILE "
                                            "(RTL cycle counts per image; created with the rtl "
                                            "backend when it is installed)"))
        from .preprocessing import backend_available
        fpga = {"cycles": args.fpga_cycles, "units": args.fpga_units, "mhz": args.fpga_mhz,
                "pcie_gbps": args.pcie_gbps, "input": args.fpga_input,
                "simulate_missing": backend_available("rtl")}
    cfg = BenchConfig(images=images, model=args.model, partitions=args.partitions,
                      policies=args.policies, preprocess=args.preprocess, rates=args.rate,
                      sweep=args.sweep, duration_s=args.duration, warmup_s=args.warmup,
                      slo_ms=args.slo_ms, deadline_ms=args.deadline_ms, seed=args.seed,
                      profile=args.profile, profile_iters=args.profile_iters,
                      buckets=args.buckets, pipeline=args.pipeline,
                      preprocess_workers=args.preprocess_workers,
                      triton_max_batch=args.triton_max_batch,
                      triton_delay_ms=args.triton_delay_ms, fpga=fpga,
                      progress=not args.no_progress, max_queue=args.max_queue)
    from .server import ServerError
    try:
        result = asyncio.run(run_bench(cfg, log=lambda m: print(m, file=sys.stderr)))
    except (PartitionError, ServerError, ValueError, KeyError) as e:
        return _err("bench", e)
    print(_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        write_plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _table(result: dict) -> str:
    rows = [f"{'policy':8} {'preprocess':12} {'offered':>9} {'thruput':>9} {'p50 ms':>9} "
            f"{'p99 ms':>9} {'SLO viol':>8} {'host us/req':>11}  batches"]
    for r in result["runs"]:
        lat = r["latency_ms"]
        pre = r["preprocess"] + ("*" if r.get("modeled") else "")
        rows.append(f"{r['policy']:8} {pre:12} {r['offered_rps']:9.1f} {r['throughput_rps']:9.1f} "
                    f"{_f(lat['p50']):>9} {_f(lat['p99']):>9} {r['slo_violation_pct']:7.1f}% "
                    f"{_f(r['host_cpu_us_per_request']):>11}  {r['batch_size_hist']}")
    a = result["meta"].get("agreement_top1_golden_vs_pillow") or {}
    if a.get("available"):
        rows.append(f"top-1 agreement golden vs pillow: {a['agree']}/{a['images']}")
    else:
        rows.append(f"top-1 agreement golden vs pillow: not measured ({a.get('reason')})")
    if any(r.get("modeled") for r in result["runs"]):
        rows.append("* fpga-model: a MODEL of the accelerator's timing, not a measurement")
    return "\n".join(rows)


def _f(x) -> str:
    return "-" if x is None else f"{x:.1f}"


# --- mig -----------------------------------------------------------------------------------------
def cmd_mig_plan(args) -> int:
    from .mig import builtin_profile, format_plan, plan
    from .profile import Profile

    try:
        if args.profile == "toolchain-h100":
            prof = builtin_profile(args.model)
        else:
            prof = Profile.load(args.profile)
            if args.model and prof.model != args.model:
                print(f"preba mig plan: note: the profile is of {prof.model!r}, not "
                      f"{args.model!r}", file=sys.stderr)
        p = plan(prof, args.slo_ms, args.rate, args.gpu)
    except ValueError as e:
        return _err("mig plan", e)
    print(format_plan(p))
    if args.json:
        Path(args.json).write_text(json.dumps(p.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def cmd_mig_list(args) -> int:
    from .mig import inventory_lines
    from .partitions import PartitionError
    try:
        print("\n".join(inventory_lines()))
    except PartitionError as e:
        return _err("mig list", e)
    return 0


def add_commands(sub) -> None:
    from .batching import POLICIES
    from .mig import GPU_TYPES
    from .preprocessing import PREPROCESSORS

    p = sub.add_parser("profile", help="measure latency/throughput vs batch size per partition",
                       description="Measure latency percentiles and throughput against batch "
                                   "size on every partition (all running together), find each "
                                   "kind's Batch_knee and Time_knee, write a profile JSON.")
    _model_args(p)
    p.add_argument("--batch-sizes", type=_ints, default=None, metavar="B1,B2,...",
                   help="default: 1,2,4,8,16 on the CPU, powers of two to 256 on GPUs")
    p.add_argument("--iters", type=int, default=20, metavar="N", help="runs per batch size")
    p.add_argument("--json", metavar="OUT", help="write the profile here")
    p.add_argument("--no-cuda-graphs", action="store_true", help="GPU: run eagerly")
    p.set_defaults(func=_with_default_sizes(cmd_profile))

    b = sub.add_parser("bench", help="open-loop load test (Poisson arrivals)",
                       description="Open-loop Poisson load (MLPerf server scenario) against the "
                                   "server for each preprocessing x policy x rate; warm-up "
                                   "excluded. Writes JSON and a plot.")
    _model_args(b)
    b.add_argument("--images", nargs="+", required=True, metavar="DIR|FILE",
                   help="images to send (directories: their image files)")
    g = b.add_mutually_exclusive_group(required=True)
    g.add_argument("--rate", type=_floats, metavar="R[,R2,...]", help="offered load, req/s")
    g.add_argument("--sweep", action="store_true",
                   help="offered load at 25%%..120%% of the profiled capacity")
    b.add_argument("--duration", type=float, default=10.0, metavar="S",
                   help="measured seconds per run (default 10)")
    b.add_argument("--warmup", type=float, default=2.0, metavar="S",
                   help="seconds of load before measuring (default 2)")
    b.add_argument("--policies", type=_names(POLICIES), default=list(POLICIES),
                   metavar="P1,P2", help=f"batching policies ({', '.join(POLICIES)})")
    b.add_argument("--preprocess", type=_names(PREPROCESSORS[:5]), default=["pillow", "ideal"],
                   metavar="X1,X2", help=f"request-path preprocessing "
                                         f"({', '.join(PREPROCESSORS[:5])}; default pillow,ideal)")
    b.add_argument("--slo-ms", type=float, default=100.0, metavar="S",
                   help="latency SLO (default 100 ms)")
    b.add_argument("--deadline-ms", type=float, default=None, metavar="D",
                   help="per-request deadline: still queued after D ms -> error (default none)")
    b.add_argument("--profile", metavar="FILE", help="profile JSON from `preba profile` (default: "
                                                     "measure at startup)")
    b.add_argument("--profile-iters", type=int, default=5, metavar="N",
                   help="runs per batch size of the startup profile (default 5)")
    b.add_argument("--buckets", type=_ints, default=None, metavar="B1,B2,...",
                   help="batch sizes the workers prepare (default: the profile's)")
    b.add_argument("--preprocess-workers", type=int, default=None, metavar="N")
    b.add_argument("--triton-max-batch", type=int, default=None, metavar="B")
    b.add_argument("--triton-delay-ms", type=float, default=0.0, metavar="MS")
    b.add_argument("--max-queue", type=int, default=1024, metavar="N",
                   help="requests per partition queue before refusing (default 1024)")
    b.add_argument("--fpga-cycles", metavar="FILE", help="fpga-model: RTL cycle counts JSON")
    b.add_argument("--fpga-units", type=int, default=1, metavar="N")
    b.add_argument("--fpga-mhz", type=float, default=150.0, metavar="F")
    b.add_argument("--pcie-gbps", type=float, default=7.0, metavar="G")
    b.add_argument("--fpga-input", choices=("rgb", "jpeg"), default="rgb",
                   help="fpga-model: the card takes RGB pixels (host decodes, measured; today's "
                        "core) or the JPEG (hardware decoder)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--json", metavar="OUT.json")
    b.add_argument("--plot", metavar="OUT.png")
    b.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    b.set_defaults(func=cmd_bench)

    m = sub.add_parser("mig", help="MIG layout planning and inventory (read only)",
                       description="Plan MIG layouts from profiles; list MIG instances. Never "
                                   "changes MIG mode or creates instances.")
    msub = m.add_subparsers(dest="mig_command", required=True, metavar="SUBCOMMAND")
    mp = msub.add_parser("plan", help="recommend a MIG layout for a model, SLO and rate")
    mp.add_argument("--model", default=None, metavar="M")
    mp.add_argument("--slo-ms", type=float, required=True, metavar="S")
    mp.add_argument("--rate", type=float, required=True, metavar="R", help="requests/s")
    mp.add_argument("--profile", required=True, metavar="FILE|toolchain-h100",
                    help="profile JSON with mig:<profile> entries; toolchain-h100 uses the H100 "
                         "numbers recorded in TOOLCHAIN.md (resnet50, mobilenet_v3_small; "
                         "labelled as such)")
    mp.add_argument("--gpu", default="h100-80gb", choices=sorted(GPU_TYPES))
    mp.add_argument("--json", metavar="OUT")
    mp.set_defaults(func=cmd_mig_plan)
    ml = msub.add_parser("list", help="GPUs and MIG instances NVML sees")
    ml.set_defaults(func=cmd_mig_list)


def _with_default_sizes(fn):
    def run(args):
        if args.batch_sizes is None:
            from .partitions import PartitionError, resolve_partitions
            from .worker import default_buckets
            try:
                parts = resolve_partitions(args.partitions)
            except PartitionError as e:
                return _err("profile", e)
            args.batch_sizes = list(default_buckets(parts[0].device, 16 if not parts[0].is_cuda
                                                    else None))
        return fn(args)
    return run
