"""MIG layout planning from latency profiles (gpu-let / PARIS style), and MIG inventory.

``preba mig plan --model M --slo-ms S --rate R --profile FILE`` answers: which MIG slice sizes,
and how many, serve R requests/s of model M within the SLO on the fewest GPUs. It reads only a
profile (``preba profile`` on MIG instances writes one with ``mig:<profile>`` keys), so it runs
on any machine. It prints the ``nvidia-smi`` commands an admin would run; it never runs them and
never changes MIG mode.

Method:

1. Per slice size p with profile data: the best batch under the SLO by gpu-let's saturated rule
   (the largest-throughput b with 2 L_p(b) <= SLO) and its throughput cap_p = b / L_p(b).
2. Every valid layout of one GPU (placement rules below) scores the sum of its instances' cap_p.
3. GPUs = ceil(R / best layout's capacity); all but the last get the best layout; the last
   gets the layout with the fewest compute slices that still covers the remaining rate (PARIS:
   size partitions to the load, leaving slices free).

Placement rules (``nvidia-smi mig -lgipp``): a GPU has 8 memory slices; each profile occupies
``size`` slices starting at one of its allowed positions, and instances may not overlap.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

from .profile import BatchStats, PartitionProfile, Profile

__all__ = ["MigProfile", "GPU_TYPES", "valid_layouts", "plan", "Plan", "format_plan",
           "TOOLCHAIN_H100_PROFILES", "builtin_profile"]


@dataclass(frozen=True)
class MigProfile:
    name: str
    id: int
    compute: int
    mem_slots: int
    placements: tuple[int, ...]
    sms: int | None = None


#: GPU instance profiles (name, ``-cgi`` ID, compute slices, memory slices, placements, SMs).
#: H100 80GB IDs and SM counts as ``nvidia-smi mig -lgip`` lists them.
GPU_TYPES: dict[str, tuple[MigProfile, ...]] = {
    "h100-80gb": (
        MigProfile("1g.10gb", 19, 1, 1, (0, 1, 2, 3, 4, 5, 6), 16),
        MigProfile("1g.20gb", 15, 1, 2, (0, 2, 4, 6), 26),
        MigProfile("2g.20gb", 14, 2, 2, (0, 2, 4), 32),
        MigProfile("3g.40gb", 9, 3, 4, (0, 4), 60),
        MigProfile("4g.40gb", 5, 4, 4, (0,), 64),
        MigProfile("7g.80gb", 0, 7, 8, (0,), 132),
    ),
    "a100-40gb": (
        MigProfile("1g.5gb", 19, 1, 1, (0, 1, 2, 3, 4, 5, 6), 14),
        MigProfile("1g.10gb", 15, 1, 2, (0, 2, 4, 6), 14),
        MigProfile("2g.10gb", 14, 2, 2, (0, 2, 4), 28),
        MigProfile("3g.20gb", 9, 3, 4, (0, 4), 42),
        MigProfile("4g.20gb", 5, 4, 4, (0,), 56),
        MigProfile("7g.40gb", 0, 7, 8, (0,), 98),
    ),
}
GPU_TYPES["a100-80gb"] = tuple(
    MigProfile(n, p.id, p.compute, p.mem_slots, p.placements, p.sms)
    for n, p in zip(("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
                    GPU_TYPES["a100-40gb"]))


def valid_layouts(gpu: Sequence[MigProfile]) -> list[tuple[tuple[MigProfile, int], ...]]:
    """Every set of instances one GPU can hold, as ((profile, start slice), ...), one placement
    per distinct multiset (largest instances first)."""
    order = sorted(gpu, key=lambda p: (-p.mem_slots, -p.compute, p.name))
    seen: dict[tuple[str, ...], tuple] = {}

    def rec(i: int, min_start: int, used: int, compute: int, chosen: list):
        if chosen:
            key = tuple(sorted(p.name for p, _ in chosen))
            seen.setdefault(key, tuple(chosen))
        for j in range(i, len(order)):
            p = order[j]
            if compute + p.compute > 7:
                continue
            for s in p.placements:
                # Instances of one profile in increasing start order: each set once.
                if j == i and s < min_start:
                    continue
                mask = ((1 << p.mem_slots) - 1) << s
                if s + p.mem_slots <= 8 and not used & mask:
                    chosen.append((p, s))
                    rec(j, s + 1, used | mask, compute + p.compute, chosen)
                    chosen.pop()

    rec(0, 0, 0, 0, [])
    return list(seen.values())


@dataclass
class SliceCapacity:
    profile: MigProfile
    batch: int
    latency_ms: float
    ips: float


@dataclass
class GpuPlan:
    instances: tuple[tuple[MigProfile, int], ...]
    capacity_ips: float

    @property
    def compute(self) -> int:
        return sum(p.compute for p, _ in self.instances)

    def names(self) -> list[str]:
        return [p.name for p, _ in self.instances]


@dataclass
class Plan:
    model: str
    slo_ms: float
    rate_rps: float
    gpu_type: str
    slices: dict[str, SliceCapacity]
    gpus: list[GpuPlan]
    whole_gpu_ips: float | None
    source: str

    @property
    def capacity_ips(self) -> float:
        return sum(g.capacity_ips for g in self.gpus)

    def commands(self) -> list[str]:
        out = []
        for i, g in enumerate(self.gpus):
            if len(g.instances) == 1 and g.instances[0][0].compute == 7:
                out.append(f"# GPU {i}: whole GPU, leave MIG off (served as a whole GPU)")
                continue
            ids = ",".join(str(p.id) for p, _ in creation_order(g.instances))
            out.append(f"nvidia-smi -i {i} -mig 1")
            out.append(f"nvidia-smi mig -i {i} -cgi {ids} -C")
        return out

    def to_dict(self) -> dict:
        return {
            "model": self.model, "slo_ms": self.slo_ms, "rate_rps": self.rate_rps,
            "gpu_type": self.gpu_type, "profile_source": self.source,
            "slices": {k: {"batch": v.batch, "latency_ms": round(v.latency_ms, 3),
                           "ips": round(v.ips, 1)} for k, v in self.slices.items()},
            "gpus": [{"layout": g.names(),
                      "placements": [{"profile": p.name, "start": s, "size": p.mem_slots}
                                     for p, s in g.instances],
                      "capacity_ips": round(g.capacity_ips, 1)} for g in self.gpus],
            "capacity_ips": round(self.capacity_ips, 1),
            "whole_gpu_ips": None if self.whole_gpu_ips is None else round(self.whole_gpu_ips, 1),
            "commands": self.commands()}


def creation_order(instances) -> list[tuple[MigProfile, int]]:
    """An order in which creating the instances one by one, each at its lowest free allowed
    start, reproduces a valid packing (the driver places each new instance itself)."""
    for perm in itertools.permutations(sorted(instances, key=lambda x: -x[0].mem_slots)):
        used, ok = 0, True
        for p, _ in perm:
            for s in p.placements:
                mask = ((1 << p.mem_slots) - 1) << s
                if not used & mask:
                    used |= mask
                    break
            else:
                ok = False
                break
        if ok:
            return list(perm)
    return sorted(instances, key=lambda x: x[1])


def slice_capacity(prof: PartitionProfile, mp: MigProfile, slo_ms: float) -> SliceCapacity | None:
    b, ips = prof.best_throughput(slo_ms)
    if b == 0:
        return None
    return SliceCapacity(mp, b, prof.latency_ms(b), ips)


def plan(profile: Profile, slo_ms: float, rate_rps: float, gpu_type: str = "h100-80gb",
         max_gpus: int = 64) -> Plan:
    if gpu_type not in GPU_TYPES:
        raise ValueError(f"--gpu {gpu_type!r}: choose one of {', '.join(GPU_TYPES)}")
    if slo_ms <= 0 or rate_rps <= 0:
        raise ValueError("--slo-ms and --rate must be > 0")
    gpu = GPU_TYPES[gpu_type]
    caps: dict[str, SliceCapacity] = {}
    for mp in gpu:
        key = f"mig:{mp.name}"
        if key in profile.partitions:
            c = slice_capacity(profile.partitions[key], mp, slo_ms)
            if c is not None:
                caps[mp.name] = c
    have = [k for k in profile.partitions if k.startswith("mig:")]
    if not have:
        raise ValueError(f"the profile has no MIG measurements (keys mig:<profile>; it has "
                         f"{', '.join(profile.partitions) or 'none'}); run `preba profile "
                         "--partitions mig` on MIG instances of each size")
    if not caps:
        raise ValueError(f"no measured slice size ({', '.join(have)}) meets a {slo_ms:g} ms SLO "
                         "even at batch 1 (gpu-let rule: 2 x L(b) <= SLO)")
    layouts = []
    for lay in valid_layouts(gpu):
        if all(p.name in caps for p, _ in lay):
            layouts.append(GpuPlan(lay, sum(caps[p.name].ips for p, _ in lay)))
    best = max(layouts, key=lambda g: (g.capacity_ips, -len(g.instances)))
    n = math.ceil(rate_rps / best.capacity_ips)
    if n > max_gpus:
        raise ValueError(f"{rate_rps:g} req/s needs {n} GPUs at {best.capacity_ips:.0f} img/s "
                         f"each (more than {max_gpus})")
    gpus = [best] * (n - 1)
    rest = rate_rps - best.capacity_ips * (n - 1)
    fits = [g for g in layouts if g.capacity_ips >= rest]
    gpus.append(min(fits, key=lambda g: (g.compute, -g.capacity_ips)))
    whole = caps.get(gpu[-1].name)
    return Plan(profile.model, slo_ms, rate_rps, gpu_type, caps, gpus,
                whole.ips if whole else None, profile.source)


def format_plan(p: Plan) -> str:
    lines = [f"MIG plan for {p.model}: SLO {p.slo_ms:g} ms, {p.rate_rps:g} req/s, {p.gpu_type}",
             f"profile: {p.source}",
             "per-instance capacity under the SLO (largest throughput with 2 x L(b) <= SLO):"]
    for name, c in p.slices.items():
        lines.append(f"  {name:9s} batch {c.batch:4d}  L={c.latency_ms:8.2f} ms  "
                     f"{c.ips:10.0f} img/s")
    lines.append(f"plan: {len(p.gpus)} GPU(s), {p.capacity_ips:.0f} img/s "
                 f"({100 * p.capacity_ips / p.rate_rps:.0f}% of the rate)")
    for i, g in enumerate(p.gpus):
        counts = {}
        for n in g.names():
            counts[n] = counts.get(n, 0) + 1
        desc = " + ".join(f"{c} x {n}" for n, c in counts.items())
        lines.append(f"  GPU {i}: {desc}  ({g.compute}/7 compute slices, "
                     f"{g.capacity_ips:.0f} img/s)")
    if p.whole_gpu_ips is not None:
        lines.append(f"for comparison, one whole GPU (7g) serves {p.whole_gpu_ips:.0f} img/s "
                     "under this SLO")
    lines.append("commands for an admin (as root, GPUs idle; enabling MIG resets the GPU; "
                 "preba never runs these):")
    lines += [f"  {c}" for c in p.commands()]
    lines.append("then serve with --partitions auto (MIG instances and whole GPUs)")
    return "\n".join(lines)


#: Numbers measured on the project's H100 80GB (torch 2.11, CUDA graphs, fp16) and recorded in
#: shared/TOOLCHAIN.md. There were no MIG instances on that machine: "mig:1g.10gb" is MPS
#: at 14% of the SMs with 7 processes replaying together (a stand-in for seven 1g slices), and
#: its latency is the *effective* time per batch, 7 x batch / the 7 processes' total img/s
#: (the per-batch GPU time recorded there was shorter, but that throughput was not reached).
#: "mig:7g.80gb" is one process on the whole GPU. Only means were recorded, so every
#: percentile is that mean.
TOOLCHAIN_H100_PROFILES = {
    "mobilenet_v3_small": {"mig:1g.10gb": [(8, 7 * 8 / 36.4), (32, 7 * 32 / 72.7)],
                           "mig:7g.80gb": [(8, 0.62), (56, 1.0), (224, 224 / 89.0)]},
    "resnet50": {"mig:1g.10gb": [(8, 7 * 8 / 11.1), (32, 7 * 32 / 13.8)],
                 "mig:7g.80gb": [(32, 2.5), (224, 224 / 14.0)]},
}
TOOLCHAIN_SOURCE = ("TOOLCHAIN.md, measured on an H100 80GB: 1g.10gb = MPS 14% x 7 processes "
                    "(not MIG; effective time per batch), 7g.80gb = whole GPU; means only")


def builtin_profile(model: str) -> Profile:
    """The TOOLCHAIN.md H100 numbers as a Profile (see the labels above)."""
    if model not in TOOLCHAIN_H100_PROFILES:
        raise ValueError(f"--profile toolchain-h100 has numbers for "
                         f"{', '.join(TOOLCHAIN_H100_PROFILES)} only, not {model!r}; give "
                         "--profile FILE from `preba profile`")
    parts = {}
    for key, pts in TOOLCHAIN_H100_PROFILES[model].items():
        parts[key] = PartitionProfile(key, [BatchStats(b, ms, ms, ms, ms, b * 1000.0 / ms)
                                            for b, ms in pts], padded=True)
    return Profile(model, parts, "NVIDIA H100 80GB HBM3", TOOLCHAIN_SOURCE)


def inventory_lines() -> list[str]:
    """What NVML sees: GPUs, MIG mode, instances (read only)."""
    from .partitions import nvml_inventory
    out = []
    for g in nvml_inventory():
        out.append(f"GPU {g.index}: {g.name} ({g.uuid}), MIG {'on' if g.mig_enabled else 'off'}")
        for m in g.mig:
            out.append(f"  {m.profile:9s} {m.uuid}  SMs={m.sm_count}  mem={m.memory_mb} MB")
    return out
