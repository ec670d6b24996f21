"""The inference worker: one process per partition (or per GPU, for green contexts).

The routing process writes each batch straight into a *slot* of a shared-memory buffer that the
worker allocated nothing for: the worker wraps the same pages as a torch tensor (and on CUDA
registers them as pinned memory with ``cudaHostRegister``), so a batch goes from the request's
tensor to the device with one host copy (into the slot) and one DMA. Control messages are small
tuples on a pipe per lane::

    server -> worker   ("run", batch_id, slot, n)   ("profile", [batch sizes], iters)
                       ("stats",)   ("stop",)
    worker -> server   ("ready", info)   ("done", batch_id, classes, scores, t_start, t_end)
                       ("error", batch_id, message)   ("profiled", {b: [ms, ...]})
                       ("stats", {...})   ("fatal", message)

One *lane* is one partition: its own pipe, slots, runner and (in a multi-lane process) thread.
Runners share one interface, ``run(slot, n) -> (classes, scores)``:

- :class:`EagerRunner`: CPU (float32, channels_last) and the CUDA fallback. Runs exactly ``n``
  rows.
- :class:`CudaGraphRunner`: half precision, channels_last, one captured CUDA graph per batch
  bucket; a batch is padded up to its bucket (rows past ``n`` hold stale data and are never read
  back). Softmax and top-k are captured too, so only ``n x k`` numbers come back.

Both put the same function, :func:`forward_topk`, on the request path, so the CPU tests exercise
the code the GPU runs, minus capture.

This module imports torch only inside the worker process: the routing process imports it to name
``worker_main`` as a process target without loading torch.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass

import numpy as np

from .partitions import Partition

__all__ = ["LaneSpec", "WorkerSpec", "worker_main", "bucket_for", "default_buckets", "mp_context",
           "TORCH_DTYPES"]

#: The pipeline's output dtype -> the torch dtype of the tensor in shared memory (bfloat16 is
#: carried by numpy as raw uint16 and reinterpreted).
TORCH_DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "uint8": "uint8", "int8": "int8",
                "float32": "float32"}


def mp_context():
    """The ``forkserver`` context every preba process comes from, torch preloaded.

    A fork of a process that never touched CUDA or OpenMP is safe (forking the routing process,
    or a test that ran torch, is not), and starting a worker then costs a fork plus building the
    model, not a fresh interpreter importing torch. The preload list is the forkserver's one
    global setting; it must be set before anything starts the forkserver.
    """
    import multiprocessing as mp
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["pyhost.worker", "pyhost.models", "pyhost.accelerator", "torch",
                                "efficientnet_lite_pytorch"])
    return ctx


def default_buckets(device: str, max_batch: int | None = None) -> tuple[int, ...]:
    """Powers of two up to 32 on the CPU (larger batches only add latency there), 256 on GPUs."""
    top = max_batch or (32 if device == "cpu" else 256)
    out, b = [], 1
    while b < top:
        out.append(b)
        b *= 2
    out.append(top)
    return tuple(sorted(set(out)))


def bucket_for(n: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket that holds ``n`` rows."""
    for b in buckets:
        if b >= n:
            return b
    raise ValueError(f"batch of {n} exceeds the largest bucket {buckets[-1]}")


@dataclass(frozen=True)
class LaneSpec:
    partition: Partition
    shm_name: str
    n_slots: int


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs; picklable (the model travels as its reference)."""
    model_ref: str
    input_shape: tuple[int, ...]
    input_dtype: str           # a key of TORCH_DTYPES
    buckets: tuple[int, ...]
    topk: int
    lanes: tuple[LaneSpec, ...]
    warmup_iters: int = 1
    profile_iters: int = 0     # per bucket at startup; the latencies go back in "ready"
    cuda_graphs: bool = True
    num_classes: int = 1000


def forward_topk(module, x, k: int, dtype, channels_last: bool):
    """The request path on any device: cast, lay out, run, softmax, top-k."""
    import torch

    if not getattr(module, "preba_raw_input", False):  # the null model skips even this
        x = x.to(dtype)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
    logits = module(x)
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    threads = torch.get_num_threads() if logits.device.type == "cpu" else 1
    if threads > 1:
        # A few thousand numbers: splitting them over threads costs more than it saves (1.6 ms
        # instead of 40 us for 16 rows on 2 busy cores), so the head runs on one.
        torch.set_num_threads(1)
    try:
        probs = torch.softmax(logits.float(), dim=-1)
        scores, classes = torch.topk(probs, min(k, probs.shape[-1]), dim=-1)
    finally:
        if threads > 1:
            torch.set_num_threads(threads)
    return classes.to(torch.int32), scores


class EagerRunner:
    """Runs the rows of a slot through the module as they are (no padding)."""

    def __init__(self, module, host, topk: int, device: str = "cpu"):
        import torch

        self.torch = torch
        self.host = host  # (slots, max_batch, *shape) view of the shared memory
        self.topk = topk
        self.device = torch.device(device)
        self.half = self.device.type == "cuda"
        self.dtype = torch.float16 if self.half else torch.float32
        self.module = module.to(self.device, self.dtype).to(memory_format=torch.channels_last)
        self.kind = "eager-cuda" if self.half else "eager-cpu"

    def run(self, slot: int, n: int):
        torch = self.torch
        with torch.inference_mode():
            x = self.host[slot, :n]
            if self.device.type == "cuda":
                x = x.to(self.device, non_blocking=True)
            c, s = forward_topk(self.module, x, self.topk, self.dtype, True)
            return c.cpu().numpy(), s.cpu().numpy()


class CudaGraphRunner:
    """One CUDA graph per batch bucket, captured on this lane's stream (see module doc)."""

    def __init__(self, module, host, topk: int, buckets: tuple[int, ...], stream,
                 green_context=None):
        import torch

        self.torch = torch
        self.host, self.topk, self.buckets, self.stream = host, topk, buckets, stream
        self.kind = "cuda-graphs"
        dev = torch.device("cuda")
        self.module = module  # already half, channels_last, on the device (shared by lanes)
        top = buckets[-1]
        # The device input keeps the host layout (NCHW, pipeline dtype) so the H2D copy is one
        # DMA; the cast to half and channels_last happen inside the graph.
        self.dev_in = torch.zeros((top, *host.shape[2:]), dtype=host.dtype, device=dev)
        self.host_classes = torch.empty((top, topk), dtype=torch.int32).pin_memory()
        self.host_scores = torch.empty((top, topk), dtype=torch.float32).pin_memory()
        self.graphs = {}
        pool = torch.cuda.graph_pool_handle()
        if green_context is not None:
            green_context.set_context()
        try:
            with torch.inference_mode():
                with torch.cuda.stream(stream):  # warm-up (cuBLAS/cuDNN handles) before capture
                    for _ in range(2):
                        forward_topk(self.module, self.dev_in, topk, torch.float16, True)
                stream.synchronize()
                # Largest first: the smaller graphs then fit in the memory the first reserved.
                for b in sorted(buckets, reverse=True):
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g, pool=pool, stream=stream):
                        out = forward_topk(self.module, self.dev_in[:b], topk, torch.float16, True)
                    self.graphs[b] = (g, out)
            stream.synchronize()
        finally:
            if green_context is not None:
                green_context.pop_context()

    def run(self, slot: int, n: int):
        torch = self.torch
        g, (classes, scores) = self.graphs[bucket_for(n, self.buckets)]
        with torch.cuda.stream(self.stream):
            self.dev_in[:n].copy_(self.host[slot, :n], non_blocking=True)
            g.replay()
            self.host_classes[:n].copy_(classes[:n], non_blocking=True)
            self.host_scores[:n].copy_(scores[:n], non_blocking=True)
        self.stream.synchronize()
        return self.host_classes[:n].numpy().copy(), self.host_scores[:n].numpy().copy()


def _attach_shm(name: str):
    # The worker shares the routing process's resource tracker (forkserver passes it on), so
    # attaching registers nothing new and the routing process's unlink is the only cleanup.
    from multiprocessing import shared_memory
    return shared_memory.SharedMemory(name=name)


def _host_view(torch, shm, spec: WorkerSpec, n_slots: int, cuda: bool):
    dt = getattr(torch, TORCH_DTYPES[spec.input_dtype])
    rows = n_slots * spec.buckets[-1]
    count = rows * int(np.prod(spec.input_shape))
    t = torch.frombuffer(shm.buf, dtype=dt, count=count).view(
        n_slots, spec.buckets[-1], *spec.input_shape)
    if cuda:
        # Pin the shared pages in place: copies from them are DMAs, with no staging copy.
        err = int(torch.cuda.cudart().cudaHostRegister(t.data_ptr(), t.numel() * t.element_size(),
                                                       0))
        if err != 0:
            raise RuntimeError(f"cudaHostRegister of the batch buffer failed (cudaError {err})")
    return t


def _setup_process(spec: WorkerSpec):
    """Environment and threads first: CUDA reads CUDA_VISIBLE_DEVICES and the MPS share at
    context creation, so they must be set before anything touches CUDA."""
    first = spec.lanes[0].partition
    for k, v in first.env:
        os.environ[k] = v
    import torch

    torch.set_num_threads(max(1, first.threads))
    return torch


def _build_runners(torch, spec: WorkerSpec, views):
    from .models import build_module

    module = build_module(spec.model_ref)
    parts = [ls.partition for ls in spec.lanes]
    if not parts[0].is_cuda:
        # One CPU lane per process (threads would share the GIL and the cores).
        return [EagerRunner(module, views[0], spec.topk, "cpu")], module
    torch.backends.cudnn.benchmark = parts[0].kind != "sm"  # cuDNN autotuning breaks in green
    # contexts (CUDNN_STATUS_EXECUTION_FAILED, TOOLCHAIN.md)
    dev_module = module.to("cuda").half().to(memory_format=torch.channels_last)
    runners = []
    for p, host in zip(parts, views):
        gc = None
        if p.kind == "sm":
            from torch.cuda.green_contexts import GreenContext
            gc = GreenContext.create(num_sms=p.sms, device_id=0)
            stream = gc.Stream()
        else:
            stream = torch.cuda.Stream()
        if spec.cuda_graphs:
            try:
                # Green contexts are captured one after another here, never concurrently from
                # threads (that failed on the H100 with cudaErrorStreamCaptureUnsupported).
                runners.append(CudaGraphRunner(dev_module, host, spec.topk, spec.buckets, stream,
                                               gc))
                continue
            except Exception as e:  # noqa: BLE001 - a model that cannot be captured runs eagerly
                print(f"preba worker {p.name}: CUDA graph capture failed ({e}); running eagerly",
                      flush=True)
        r = EagerRunner(dev_module, host, spec.topk, "cuda")
        runners.append(r)
    return runners, module


def _measure(runner, sizes, iters: int, synchronize=None) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for b in sizes:
        runner.run(0, b)  # warm this size
        ts = []
        for _ in range(iters):
            t = time.perf_counter()
            runner.run(0, b)
            ts.append((time.perf_counter() - t) * 1000.0)
        out[int(b)] = ts
    return out


def _serve_lane(conn, runner, spec: WorkerSpec, lane: int, info: dict):
    """One lane's loop: answer run/profile/stats until stop or the pipe closes."""
    try:
        for _ in range(spec.warmup_iters):
            for b in spec.buckets:
                runner.run(0, b)
        info = dict(info, runner=runner.kind, lane=lane)
        if spec.profile_iters:
            info["profile_ms"] = _measure(runner, spec.buckets, spec.profile_iters)
        conn.send(("ready", info))
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            op = msg[0]
            if op == "run":
                _, bid, slot, n = msg
                t0 = time.perf_counter()
                try:
                    classes, scores = runner.run(slot, n)
                except Exception as e:  # noqa: BLE001 - reported per batch, the lane lives on
                    conn.send(("error", bid, f"{type(e).__name__}: {e}"))
                    continue
                conn.send(("done", bid, classes, scores, t0, time.perf_counter()))
            elif op == "profile":
                conn.send(("profiled", _measure(runner, msg[1], msg[2])))
            elif op == "stats":
                conn.send(("stats", {"cpu_s": time.process_time(), "pid": os.getpid()}))
            elif op == "stop":
                return
    except (BrokenPipeError, EOFError):
        return


def worker_main(spec: WorkerSpec, conns) -> None:
    """Process entry: set up, build one runner per lane, serve each lane (threads if several)."""
    shms = []
    try:
        torch = _setup_process(spec)
        cuda = spec.lanes[0].partition.is_cuda
        views = []
        for ls in spec.lanes:
            shm = _attach_shm(ls.shm_name)
            shms.append(shm)
            views.append(_host_view(torch, shm, spec, ls.n_slots, cuda))
        runners, _ = _build_runners(torch, spec, views)
        info = {"pid": os.getpid(), "device": _device_name(torch, cuda),
                "torch": torch.__version__}
        if len(runners) == 1:
            _serve_lane(conns[0], runners[0], spec, 0, info)
        else:
            ts = [threading.Thread(target=_serve_lane, args=(c, r, spec, i, info), daemon=True)
                  for i, (c, r) in enumerate(zip(conns, runners))]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
    except Exception as e:  # noqa: BLE001 - the server turns this into a clear error
        msg = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}"
        for c in conns:
            try:
                c.send(("fatal", msg))
            except (OSError, BrokenPipeError):
                pass
    finally:
        for c in conns:
            c.close()
        for s in shms:
            try:
                s.close()
            except BufferError:  # a torch view still holds it; the process is exiting anyway
                pass


def _device_name(torch, cuda: bool) -> str:
    if cuda:
        return torch.cuda.get_device_name(0)
    import platform
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
