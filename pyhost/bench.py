"""Open-loop load tests of the server (MLPerf "server" scenario).

Requests arrive as a Poisson process at the offered rate whether or not earlier ones finished
(open loop: a slow server meets more load, as in production, instead of slowing its own clients).
The first ``warmup_s`` seconds of arrivals are excluded. Latency is measured from each request's
*scheduled* arrival, so any lag of the load generator counts against the server, never for it.

One run's record (the JSON ``runs`` entries)::

    {"policy", "preprocess", "partitions", "offered_rps", "target_rps", "throughput_rps",
     "latency_ms": {"p50", "p95", "p99"}, "slo_ms", "slo_violation_pct", "batch_size_hist",
     "partition_util", "counts": {...}, "host_cpu_us_per_request",
     "worker_cpu_us_per_request", "modeled": bool}

``slo_violation_pct`` counts every measured request (issued inside the window) not answered
successfully within the SLO: late ones, and refused, expired and failed ones.
``throughput_rps`` counts successful answers that completed inside the window, whenever they
were issued (the server's completion rate while the window lasted).
"""
from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .profile import Profile, percentile

__all__ = ["BenchConfig", "run_load", "run_bench", "write_plot", "list_images",
           "SWEEP_FRACTIONS"]

#: Offered load of a sweep, as fractions of the partitions' profiled capacity.
SWEEP_FRACTIONS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.2)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class BenchConfig:
    images: list[Path]
    model: str = "efficientnet-lite0"
    partitions: str = "auto"
    policies: list[str] = field(default_factory=lambda: ["preba", "triton", "slo", "none"])
    preprocess: list[str] = field(default_factory=lambda: ["pillow", "ideal"])
    rates: list[float] | None = None
    sweep: bool = False
    duration_s: float = 10.0
    warmup_s: float = 2.0
    slo_ms: float = 100.0
    deadline_ms: float | None = None
    seed: int = 0
    profile: str | None = None
    profile_iters: int = 5
    buckets: list[int] | None = None
    pipeline: str | None = None
    preprocess_workers: int | None = None
    triton_max_batch: int | None = None
    triton_delay_ms: float = 0.0
    fpga: dict = field(default_factory=dict)
    progress: bool = True
    max_queue: int = 1024


def list_images(paths: Sequence[str | Path]) -> list[Path]:
    """Image files from files and directories (directories: their image files, sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"--images {p}: no such file or directory")
    if not out:
        raise ValueError(f"--images {', '.join(map(str, paths))}: no image files "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    return out


async def run_load(server, payloads: Sequence[bytes], rate_rps: float, duration_s: float,
                   warmup_s: float, slo_ms: float, seed: int = 0, progress: bool = False,
                   label: str = "", drain_timeout_s: float = 60.0) -> dict:
    """One open-loop run at ``rate_rps``; returns its record (see module doc)."""
    from .accelerator import PreprocessError
    from .server import DeadlineExceeded, Overloaded, ServerError, WorkerFailed

    if rate_rps <= 0:
        raise ValueError(f"rate must be > 0, got {rate_rps}")
    rng = np.random.default_rng(seed)
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter() + 0.05
    t_measure = t0 + warmup_s
    t_end = t_measure + duration_s
    # Per measured request: scheduled time, latency (s) or NaN, outcome.
    sched, lat, outcome = [], [], []
    tasks: set[asyncio.Task] = set()
    completed_in_window = [0]  # successful answers inside the window, whenever issued
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=int(rate_rps * (warmup_s + duration_s)), unit="req", leave=False,
                   desc=label or f"{rate_rps:.0f} req/s", file=sys.stderr, mininterval=0.5)

    async def one(i_measured: int, t_sched: float, data: bytes):
        try:
            await server.infer(data)
            kind = "ok"
        except Overloaded:
            kind = "refused"
        except DeadlineExceeded:
            kind = "expired"
        except PreprocessError:
            kind = "failed_preprocess"
        except (WorkerFailed, ServerError):
            kind = "failed"
        t = time.perf_counter()
        if kind == "ok" and t_measure <= t <= t_end:
            completed_in_window[0] += 1
        if i_measured >= 0:
            lat[i_measured] = t - t_sched if kind == "ok" else math.nan
            outcome[i_measured] = kind
        if bar is not None:
            bar.update()

    await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
    t_next = t0
    k = 0
    reset_done = False
    cpu0 = wcpu0 = None
    while t_next < t_end:
        t = time.perf_counter()
        if not reset_done and t >= t_measure:
            # Warm-up over: counters, histograms and CPU clocks start here.
            server.reset_stats()
            # Not awaited here: a worker answers after its current batch, and the generator
            # must not pause.
            cpu0, wcpu0 = time.process_time(), loop.create_task(server.worker_cpu_seconds())
            reset_done = True
        while t_next <= t and t_next < t_end:
            idx = -1
            if t_next >= t_measure:
                idx = len(sched)
                sched.append(t_next)
                lat.append(math.nan)
                outcome.append("pending")
            task = loop.create_task(one(idx, t_next, payloads[k % len(payloads)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1
            t_next += rng.exponential(1.0 / rate_rps)
        await asyncio.sleep(max(0.0, min(t_next, t_measure if not reset_done else t_end)
                                - time.perf_counter()))
    if not reset_done:
        server.reset_stats()
        cpu0, wcpu0 = time.process_time(), loop.create_task(server.worker_cpu_seconds())
    await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
    st = server.stats()  # utilization and batch sizes over the window, before the drain
    cpu1, wcpu1 = time.process_time(), await server.worker_cpu_seconds()
    wcpu0 = await wcpu0
    if tasks:
        await asyncio.wait(set(tasks), timeout=drain_timeout_s)
    for task in list(tasks):  # still running after the drain timeout: answered as failures
        task.cancel()
    if bar is not None:
        bar.close()
    n = len(sched)
    lat_a = np.asarray(lat, dtype=np.float64)
    ok = ~np.isnan(lat_a)
    slo_s = slo_ms / 1000.0
    violations = int(np.sum(~ok | (lat_a > slo_s)))
    lat_ms = lat_a[ok] * 1000.0
    counts = {k2: outcome.count(k2) for k2 in ("ok", "refused", "expired", "failed_preprocess",
                                                "failed", "pending")}
    return {
        "target_rps": rate_rps,
        "offered_rps": round(n / duration_s, 2),
        "throughput_rps": round(completed_in_window[0] / duration_s, 2),
        "latency_ms": {"p50": _r(percentile(lat_ms, 50)), "p95": _r(percentile(lat_ms, 95)),
                       "p99": _r(percentile(lat_ms, 99))},
        "slo_ms": slo_ms,
        "slo_violation_pct": round(100.0 * violations / n, 3) if n else 0.0,
        "requests": n,
        "counts": counts,
        "batch_size_hist": _merge_hist(p["batch_size_hist"] for p in st["partitions"]),
        "partition_util": {p["name"]: p["util"] for p in st["partitions"]},
        "partition_limits": {p["name"]: p["limits"] for p in st["partitions"]},
        "server_counts": {k2: st[k2] for k2 in ("submitted", "completed", "refused", "expired",
                                               "failed_preprocess", "failed_worker")},
        "host_cpu_us_per_request": _r(1e6 * (cpu1 - cpu0) / n) if n else None,
        "worker_cpu_us_per_request": _r(1e6 * (wcpu1 - wcpu0) / n) if n else None,
    }


def _r(x: float | None, nd: int = 3):
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def _merge_hist(hists) -> dict[str, int]:
    out: dict[int, int] = {}
    for h in hists:
        for k, v in h.items():
            out[int(k)] = out.get(int(k), 0) + v
    return {str(k): out[k] for k in sorted(out)}


def capacity_rps(profile: Profile, partitions) -> float:
    """Images/s the partitions sustain at their best batch size (no SLO): the sweep's 100%."""
    return sum(profile[p.profile_key].best_throughput()[1] for p in partitions)


async def agreement(server, images: Sequence[bytes], names: Sequence[str]) -> dict:
    """Top-1 of golden-preprocessed vs Pillow-preprocessed tensors through the same server."""
    from .accelerator import Accelerator
    from .preprocessing import backend_available

    if not backend_available("golden"):
        return {"available": False,
                "reason": "golden backend not installed (pyhost/backends/golden.py)"}
    spec = server.model.pipeline
    pil, gold = Accelerator(spec, "pillow"), Accelerator(spec, "golden")
    agree, used, per = 0, 0, []
    for data, name in zip(images, names):
        a, b = pil.run(data), gold.run(data)
        if a.error or b.error:
            continue
        pa, pb = await server.infer(a.tensor), await server.infer(b.tensor)
        used += 1
        agree += pa.top1 == pb.top1
        per.append({"image": name, "pillow_top1": pa.top1, "golden_top1": pb.top1})
    return {"available": True, "images": used, "agree": agree,
            "rate": round(agree / used, 4) if used else None, "per_image": per}


async def run_bench(cfg: BenchConfig, log=print) -> dict:
    """Every (preprocess x policy x rate) run of a benchmark; one server per preprocessing."""
    from .models import resolve_model
    from .partitions import resolve_partitions
    from .server import InferenceServer

    model = resolve_model(cfg.model, cfg.pipeline)
    parts = resolve_partitions(cfg.partitions)
    # Images some configuration cannot take (a 12-bit JPEG; arithmetic coding, which the golden
    # decoder rejects) would only measure error handling, and differently per configuration:
    # every run uses the images all of them can preprocess. (rtl is not simulated here: it
    # matches golden.)
    from .accelerator import Accelerator
    from .preprocessing import best_tensor_backend
    backends = {"pillow"} | {p for p in cfg.preprocess if p in ("golden",)}
    if {"ideal", "fpga-model", "rtl"} & set(cfg.preprocess):
        backends.add(best_tensor_backend())
    checks = [Accelerator(model.pipeline, b) for b in sorted(backends)]
    paths, payloads, skipped = [], [], []
    for p in cfg.images:
        data = Path(p).read_bytes()
        errors = [f"{a.backend}: {r.error}" for a in checks if (r := a.run(data)).error]
        if not errors:
            paths.append(Path(p))
            payloads.append(data)
        else:
            skipped.append({"image": str(p), "error": "; ".join(errors)})
            log(f"[bench] skipping {p}: {'; '.join(errors)}")
    if not payloads:
        raise ValueError("none of the --images can be preprocessed")
    profile: Profile | None = Profile.load(cfg.profile) if cfg.profile else None
    runs, meta_pre, agree = [], {}, None
    for pre in cfg.preprocess:
        options = dict(cfg.fpga) if pre == "fpga-model" else None
        server = InferenceServer(model, parts, cfg.policies[0], preprocess=pre,
                                 preprocess_workers=cfg.preprocess_workers,
                                 preprocess_options=options, profile=profile,
                                 profile_iters=cfg.profile_iters, slo_ms=cfg.slo_ms,
                                 deadline_ms=cfg.deadline_ms, buckets=cfg.buckets,
                                 triton_max_batch=cfg.triton_max_batch,
                                 triton_delay_ms=cfg.triton_delay_ms, max_queue=cfg.max_queue)
        log(f"[bench] starting {len(parts)} worker(s) on {cfg.partitions} "
            f"({', '.join(p.name for p in parts)}), preprocess={pre}")
        async with server:
            if profile is None:
                profile = server.profile  # measured once; every later server uses the same
            await server.preprocessor.prepare(payloads)
            modeled = bool(getattr(server.preprocessor, "modeled", False))
            cap = capacity_rps(profile, parts)
            rates = cfg.rates or ([round(cap * f, 2) for f in SWEEP_FRACTIONS] if cfg.sweep
                                  else [round(cap * 0.75, 2)])
            for pol in cfg.policies:
                server.set_batching(pol)
                for rate in rates:
                    label = f"{pol}/{pre}{' (model)' if modeled else ''} @ {rate:g}/s"
                    rec = await run_load(server, payloads, rate, cfg.duration_s, cfg.warmup_s,
                                         cfg.slo_ms, cfg.seed, cfg.progress, label)
                    rec = {"policy": pol, "preprocess": pre, "partitions": cfg.partitions,
                           "modeled": modeled, **rec}
                    runs.append(rec)
                    log(f"[bench] {label}: {rec['throughput_rps']:.1f} req/s, p99 "
                        f"{rec['latency_ms']['p99']} ms, SLO violations "
                        f"{rec['slo_violation_pct']:.1f}%, batches {rec['batch_size_hist']}")
            meta_pre[pre] = server.preprocessor.describe()
            if agree is None:
                agree = await agreement(server, payloads, [p.name for p in paths])
    return {"runs": runs, "meta": {
        "model": model.name, "pipeline": model.pipeline.name, "partitions": cfg.partitions,
        "partition_list": [p.to_dict() for p in parts], "images": [str(p) for p in paths],
        "skipped_images": skipped,
        "duration_s": cfg.duration_s, "warmup_s": cfg.warmup_s, "slo_ms": cfg.slo_ms,
        "deadline_ms": cfg.deadline_ms, "seed": cfg.seed, "preprocessors": meta_pre,
        "profile": profile.to_dict() if profile else None,
        "agreement_top1_golden_vs_pillow": agree,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "note": "fpga-model runs are a MODEL of the accelerator, not measurements of it"
        if "fpga-model" in cfg.preprocess else None}}


def write_plot(result: dict, path: str | Path) -> None:
    """Throughput and p99 latency against offered load, one line per configuration."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list[dict]] = {}
    for r in result["runs"]:
        label = f"{r['policy']} / {r['preprocess']}{' (model)' if r.get('modeled') else ''}"
        if len({x['partitions'] for x in result["runs"]}) > 1:
            label += f" / {r['partitions']}"
        lines.setdefault(label, []).append(r)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, rs in lines.items():
        rs = sorted(rs, key=lambda r: r["offered_rps"])
        x = [r["offered_rps"] for r in rs]
        ax1.plot(x, [r["throughput_rps"] for r in rs], marker="o", label=label)
        ax2.plot(x, [r["latency_ms"]["p99"] if r["latency_ms"]["p99"] is not None else np.nan
                     for r in rs], marker="o", label=label)
    slo = result["runs"][0]["slo_ms"] if result["runs"] else None
    if slo:
        ax2.axhline(slo, color="grey", linestyle="--", linewidth=1, label=f"SLO {slo:g} ms")
    ax1.set(xlabel="offered load (req/s)", ylabel="throughput (req/s)", title="Throughput")
    ax2.set(xlabel="offered load (req/s)", ylabel="p99 latency (ms)", title="p99 latency",
            yscale="log")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    meta = result.get("meta", {})
    fig.suptitle(f"{meta.get('model', '')} on {meta.get('partitions', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
