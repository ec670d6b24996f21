"""Where inference runs: the partitions of a GPU (or of the CPU) the server puts one worker on.

``--partitions`` takes:

=============== ==========================================================================
``auto``        MIG instances if any GPU has MIG on, else each whole GPU, else CPU workers
``mig``         every MIG instance NVML reports; one worker process per instance, pinned with
                ``CUDA_VISIBLE_DEVICES=MIG-<uuid>``
``gpu``         each whole GPU, one worker process each
``sm:16,16,32`` SM partitions of GPU 0: CUDA green contexts of 16, 16 and 32 SMs, all in one
                worker process (green contexts are per process); if this torch has no green
                contexts, MPS processes with ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` = the same
                share of the GPU's SMs (the MPS daemon must be running)
``mps:14,14,14`` MPS percentages: one process each with ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``
``cpu:N``       N CPU worker processes, the cores split between them (``torch.set_num_threads``)
=============== ==========================================================================

Discovery only reads: it never changes MIG mode or creates instances (that is an admin's job;
``preba mig plan`` prints the commands). NVML is read through ``pynvml`` (``nvidia-ml-py``) and
the SM count, when needed, from a short-lived subprocess, so the routing process never
initializes CUDA (a CUDA context there would take memory on every device and break ``fork``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

__all__ = ["Partition", "PartitionError", "resolve_partitions", "nvml_inventory", "GpuInfo",
           "MigInstance", "cpu_cores"]


class PartitionError(RuntimeError):
    """The partitions asked for are not there (the message says what is and what to use)."""


@dataclass(frozen=True)
class Partition:
    """One place a worker runs.

    ``profile_key`` names the partition's *kind and size* (``cpu:2t``, ``mig:1g.10gb``,
    ``sm:16``, ``mps:14``, ``gpu:NVIDIA H100 80GB HBM3``): profiles are measured per key and every
    partition with the same key shares them. ``process`` groups partitions into worker processes
    (green contexts of one GPU share a process; everything else has its own). ``env`` is applied
    in the worker before CUDA initializes.
    """
    kind: str
    index: int
    name: str
    profile_key: str
    device: str = "cpu"
    threads: int = 1
    process: int = 0
    env: tuple[tuple[str, str], ...] = ()
    sms: int | None = None
    uuid: str | None = None

    @property
    def is_cuda(self) -> bool:
        return self.device == "cuda"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "index": self.index, "name": self.name,
                "profile_key": self.profile_key, "device": self.device, "threads": self.threads,
                "process": self.process, "env": dict(self.env), "sms": self.sms,
                "uuid": self.uuid}


@dataclass(frozen=True)
class MigInstance:
    gpu_index: int
    uuid: str
    profile: str  # e.g. "1g.10gb"
    slices: int
    sm_count: int | None
    memory_mb: int | None


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    mig_enabled: bool
    mig: tuple[MigInstance, ...] = field(default_factory=tuple)


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def nvml_inventory() -> list[GpuInfo]:
    """Every GPU NVML sees, with its MIG instances. Raises PartitionError when there is none."""
    try:
        import pynvml
    except ImportError:
        raise PartitionError("no NVIDIA GPU visible (nvidia-ml-py is not installed); "
                             "use --partitions cpu:N") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise PartitionError(f"no NVIDIA GPU visible (NVML: {e}); use --partitions cpu:N") from None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name, uuid = _s(pynvml.nvmlDeviceGetName(h)), _s(pynvml.nvmlDeviceGetUUID(h))
            try:
                current, _pending = pynvml.nvmlDeviceGetMigMode(h)
                mig_on = current == pynvml.NVML_DEVICE_MIG_ENABLE
            except pynvml.NVMLError:  # NotSupported: a GPU without MIG
                mig_on = False
            instances = []
            if mig_on:
                for j in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(h)):
                    try:
                        mh = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
                    except pynvml.NVMLError:  # an empty slot
                        continue
                    instances.append(_mig_instance(pynvml, i, mh))
            gpus.append(GpuInfo(i, name, uuid, mig_on, tuple(instances)))
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
    if not gpus:
        raise PartitionError("no NVIDIA GPU visible (NVML found 0 devices); "
                             "use --partitions cpu:N")
    return gpus


def _mig_instance(pynvml, gpu_index: int, mh) -> MigInstance:
    uuid = _s(pynvml.nvmlDeviceGetUUID(mh))
    name = _s(pynvml.nvmlDeviceGetName(mh))  # e.g. "NVIDIA H100 80GB HBM3 MIG 1g.10gb"
    slices = sm = mem = None
    try:
        a = pynvml.nvmlDeviceGetAttributes(mh)
        slices, sm, mem = a.gpuInstanceSliceCount, a.multiprocessorCount, a.memorySizeMB
    except pynvml.NVMLError:
        pass
    profile = name.rsplit("MIG ", 1)[-1].strip() if "MIG " in name else None
    if not profile:
        profile = f"{slices or '?'}g.{round((mem or 0) / 1024)}gb"
    if slices is None:
        slices = int(profile.split("g", 1)[0]) if profile[0].isdigit() else 1
    return MigInstance(gpu_index, uuid if uuid.startswith("MIG-") else f"MIG-{uuid}", profile,
                       slices, sm, mem)


def probe_cuda() -> dict:
    """SM count and green-context support of GPU 0, asked of a subprocess (see module doc)."""
    code = ("import json, torch\n"
            "p = torch.cuda.get_device_properties(0)\n"
            "from torch.cuda import green_contexts as g\n"
            "print(json.dumps({'sm_count': p.multi_processor_count, 'name': p.name,\n"
            "  'green': bool(getattr(g, 'SUPPORTED', False)), 'torch': torch.__version__}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise PartitionError(f"cannot query GPU 0 through torch ({tail}); "
                             "use --partitions gpu or cpu:N")
    return json.loads(r.stdout.strip().splitlines()[-1])


def mps_daemon_running() -> bool:
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
    return os.path.exists(os.path.join(pipe, "control"))


def _int_list(text: str, what: str, lo: int, hi: int) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or any(not lo <= v <= hi for v in vals):
        raise PartitionError(f"--partitions: {what} must be a comma list of integers in "
                             f"[{lo}, {hi}], got {text!r}")
    return vals


def cpu_partitions(n: int, cores: int | None = None) -> list[Partition]:
    """N CPU workers sharing the cores evenly (at least one thread each)."""
    cores = cores or cpu_cores()
    threads = max(1, cores // n)
    return [Partition("cpu", i, f"cpu{i}", f"cpu:{threads}t", "cpu", threads, process=i)
            for i in range(n)]


def resolve_partitions(text: str, inventory: list[GpuInfo] | None = None,
                       host_threads: int = 1) -> list[Partition]:
    """Parse ``--partitions`` and check it against what is there.

    ``inventory`` replaces NVML discovery (tests, and ``mig plan`` on a machine without a GPU).
    ``host_threads`` is the CPU thread count each GPU worker gets for its host-side work (one:
    the GPU computes; more torch threads would only spin on the host's cores).
    """
    text = text.strip()
    kind, _, arg = text.partition(":")
    if kind == "cpu":
        if not arg:
            return cpu_partitions(1)
        return cpu_partitions(_int_list(arg, "cpu:N", 1, 1024)[0])
    if kind not in ("auto", "mig", "gpu", "sm", "mps"):
        raise PartitionError(f"--partitions {text!r}: choose auto, mig, gpu, sm:S1,S2,..., "
                             "mps:P1,P2,... or cpu:N")
    if kind == "auto":
        try:
            gpus = inventory if inventory is not None else nvml_inventory()
        except PartitionError:
            return cpu_partitions(max(1, cpu_cores() // 4))
        # Per GPU: its MIG instances when MIG is on, else the whole GPU.
        parts: list[Partition] = []
        if any(g.mig_enabled and g.mig for g in gpus):
            parts += resolve_partitions("mig", gpus, host_threads)
        if any(not g.mig_enabled for g in gpus):
            parts += resolve_partitions("gpu", gpus, host_threads)
        if not parts:
            raise PartitionError("--partitions auto: every GPU has MIG on but no instances; "
                                 "an admin creates them (see `preba mig plan`)")
        from dataclasses import replace
        return [replace(p, index=i, process=i) for i, p in enumerate(parts)]
    gpus = inventory if inventory is not None else nvml_inventory()
    if kind == "mig":
        parts = []
        for g in gpus:
            for m in g.mig:
                i = len(parts)
                parts.append(Partition("mig", i, f"mig{i}:{m.profile}", f"mig:{m.profile}",
                                       "cuda", host_threads, process=i,
                                       env=(("CUDA_VISIBLE_DEVICES", m.uuid),), uuid=m.uuid,
                                       sms=m.sm_count))
        if not parts:
            on = [g.index for g in gpus if g.mig_enabled]
            why = (f"MIG is on for GPU {on} but no instances exist" if on
                   else "MIG mode is off on every GPU")
            raise PartitionError(f"--partitions mig: no MIG instances ({why}); an admin creates "
                                 "them (see `preba mig plan`), or use --partitions gpu")
        return parts
    if kind == "gpu":
        whole = [g for g in gpus if not g.mig_enabled]
        if not whole:
            raise PartitionError("--partitions gpu: every GPU has MIG on, so no whole GPU can be "
                                 "used; use --partitions mig")
        return [Partition("gpu", i, f"gpu{g.index}", f"gpu:{g.name}", "cuda", host_threads,
                          process=i, env=(("CUDA_VISIBLE_DEVICES", g.uuid),), uuid=g.uuid)
                for i, g in enumerate(whole)]
    g0 = gpus[0]
    if g0.mig_enabled:
        raise PartitionError(f"--partitions {kind}: GPU 0 has MIG on; SM partitions need a whole "
                             "GPU (use --partitions mig)")
    env_gpu = ("CUDA_VISIBLE_DEVICES", g0.uuid)
    if kind == "mps":
        pcts = _int_list(arg, "mps:P1,P2,...", 1, 100)
        return [_mps_partition(i, p, env_gpu, host_threads) for i, p in enumerate(pcts)]
    sms = _int_list(arg, "sm:S1,S2,...", 1, 4096)
    info = probe_cuda()
    if sum(sms) > info["sm_count"]:
        raise PartitionError(f"--partitions {text}: asks for {sum(sms)} SMs but {info['name']} "
                             f"has {info['sm_count']}")
    if info["green"]:
        return [Partition("sm", i, f"sm{i}:{s}", f"sm:{s}", "cuda", host_threads, process=0,
                          env=(env_gpu,), sms=s) for i, s in enumerate(sms)]
    if not mps_daemon_running():
        raise PartitionError(f"--partitions {text}: torch {info['torch']} has no CUDA green "
                             "contexts and no MPS daemon is running (start one with "
                             "`nvidia-cuda-mps-control -d`), or use --partitions gpu")
    return [_mps_partition(i, max(1, round(100 * s / info["sm_count"])), env_gpu, host_threads)
            for i, s in enumerate(sms)]


def _mps_partition(i: int, pct: int, env_gpu, host_threads: int) -> Partition:
    return Partition("mps", i, f"mps{i}:{pct}%", f"mps:{pct}", "cuda", host_threads, process=i,
                     env=(env_gpu, ("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", str(pct))))
