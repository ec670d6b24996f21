"""The inference server: preprocessing, per-partition dynamic batching, routing, workers.

>>> from pyhost import Accelerator, InferenceServer
>>> async with InferenceServer("efficientnet-lite0", partitions="cpu:2", batching="preba") as s:
...     p = await s.infer(jpeg_bytes)          # Prediction: classes, scores, labels, timings
...     ps = await s.infer_many([a, b, c])     # all or nothing: PreprocessError names the element
...     async for p in s.infer_stream(many):   # bounded window, input order
...         ...

A request's path: preprocess (a :mod:`~pyhost.preprocessing` object) -> route to the partition
with the earliest expected finish (:func:`~pyhost.batching.pick_lane`) -> that partition's queue
-> the batching rule dispatches a batch: the tensors are copied into a free slot of the
partition's shared-memory batch buffer and the worker is told ``run(slot, n)`` -> the worker's
answer resolves every request of the batch.

Everything here runs on one asyncio loop in one process, which never imports torch; the workers
are processes (:mod:`~pyhost.worker`). Nothing is ever dropped silently: a request that cannot be
served is answered with one of :class:`Overloaded` (refused, a queue is full),
:class:`DeadlineExceeded` (its deadline passed while queued), :class:`WorkerFailed`,
:class:`ServerClosed`, or :class:`~pyhost.accelerator.PreprocessError`, and every outcome is
counted in :meth:`InferenceServer.stats`.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import multiprocessing as mp
import os
import time
import warnings
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any, AsyncIterable, AsyncIterator, Iterable, Sequence

import numpy as np

from hdl.spec import PipelineSpec
from .accelerator import Accelerator, PreprocessError, read_source, source_name
from .batching import (BatchingPolicy, BatchLimits, PartitionContext, RateMeter, decide,
                       make_policy, pick_lane)
from .models import DEFAULT_MODEL, ModelInfo, resolve_model, with_pipeline
from .partitions import Partition, cpu_cores, resolve_partitions
from .preprocessing import RequestPreprocessor, make_preprocessor
from .profile import PartitionProfile, Profile
from .worker import LaneSpec, WorkerSpec, default_buckets, mp_context, worker_main

__all__ = ["InferenceServer", "Prediction", "ServerError", "Overloaded", "DeadlineExceeded",
           "WorkerFailed", "ServerClosed", "WorkerPool", "PreprocessError"]

now = time.perf_counter  # CLOCK_MONOTONIC on Linux: the same clock in every process


class ServerError(RuntimeError):
    """A request the server could not serve (never a silent drop)."""


class Overloaded(ServerError):
    """Refused: the partitions' queues are full (or the server's pending limit is reached)."""


class DeadlineExceeded(ServerError):
    """The request's deadline passed before a partition could start it."""


class WorkerFailed(ServerError):
    """The worker process running the request's batch failed."""


class ServerClosed(ServerError):
    """The server stopped before the request was served."""


@dataclass(frozen=True)
class Prediction:
    """Top-k classes (ImageNet indices) with softmax scores, best first.

    ``labels`` are class names where an installed package ships them, else None. Timings in ms:
    ``latency_ms`` from the call to the answer = ``preprocess_ms`` + ``queue_ms`` (routing,
    batching wait, waiting for the partition) + the batch's run (``compute_ms``, in the worker)
    + delivery.
    """
    classes: tuple[int, ...]
    scores: tuple[float, ...]
    labels: tuple[str, ...] | None
    source: str
    partition: str
    batch_size: int
    latency_ms: float
    preprocess_ms: float
    queue_ms: float
    compute_ms: float

    @property
    def top1(self) -> int:
        return self.classes[0]

    @property
    def label(self) -> str | None:
        return self.labels[0] if self.labels else None


class _Request:
    __slots__ = ("fut", "tensor", "name", "t_submit", "t_ready", "deadline", "t_dispatch",
                 "expired")

    def __init__(self, fut, tensor, name, t_submit, t_ready, deadline):
        self.fut, self.tensor, self.name = fut, tensor, name
        self.t_submit, self.t_ready, self.deadline = t_submit, t_ready, deadline
        self.t_dispatch = 0.0
        self.expired = False


@dataclass
class LaneStats:
    batches: int = 0
    completed: int = 0
    busy_s: float = 0.0
    batch_sizes: Counter = field(default_factory=Counter)


class _Lane:
    """One partition as the server sees it: queue, batch slots, in-flight batches, the worker's
    pipe. Implements :class:`~pyhost.batching.LaneLoad` for the router."""

    def __init__(self, server: "InferenceServer", index: int, partition: Partition, conn,
                 shm: shared_memory.SharedMemory, n_slots: int, buckets: tuple[int, ...],
                 input_shape, dtype):
        self.server, self.index, self.partition, self.conn = server, index, partition, conn
        self.shm = shm
        self.host = np.ndarray((n_slots, buckets[-1], *input_shape), dtype=dtype, buffer=shm.buf)
        self.buckets = buckets
        self.free_slots = list(range(n_slots))
        self.depth = n_slots - 1  # batches in flight at once (one slot is always being filled)
        self.queue: deque[_Request] = deque()
        self.inflight: dict[int, tuple[list[_Request], int, float]] = {}
        self.busy_until = 0.0
        self.alive = True
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.info: dict = {}
        self.profile: PartitionProfile | None = None
        self._lat_table: list[float] | None = None
        self.rate = RateMeter(1.0)
        self.stats = LaneStats()
        self._limits: BatchLimits | None = None
        self._limits_t = -1.0
        self._check_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        # Deadlines: a heap, so the next one to pass is found in O(log n); an expired request
        # is answered at once and left in the queue (dead) until the batcher reaches it.
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at = math.inf
        self._deadlines: list[tuple[float, int, _Request]] = []
        self._seq = itertools.count()
        self._dead = 0
        self._replies: deque[asyncio.Future] = deque()  # profile/stats requests, in order

    # --- LaneLoad -------------------------------------------------------------------------
    @property
    def queue_len(self) -> int:
        return len(self.queue) - self._dead

    @property
    def oldest_ready(self) -> float | None:
        return self.queue[0].t_ready if self.queue else None

    @property
    def full(self) -> bool:
        return len(self.queue) - self._dead >= self.server.max_queue

    def current_limits(self, t: float) -> BatchLimits:
        # Policies that read the arrival rate change their answer slowly; recomputing every
        # 50 ms keeps routing cheap at thousands of requests per second.
        if self._limits is None or t - self._limits_t > 0.05:
            ctx = PartitionContext(self.profile, self.server._n_alive(), self.rate.rate(t),
                                   self.buckets[-1])
            self._limits = self.server.batching.limits(ctx)
            self._limits_t = t
        return self._limits

    def expected_latency_s(self, n: int) -> float:
        # A list lookup: the router asks this for every lane on every request.
        table = self._lat_table
        if table is None:
            table = self._lat_table = [v / 1000.0 for v in
                                       self.profile.latency_table_ms(self.buckets[-1], "p50")]
        return table[n] if n < len(table) else self.profile.latency_ms(n, "p50") / 1000.0

    def invalidate_limits(self) -> None:
        self._limits = None

    # --- queueing and dispatch --------------------------------------------------------------
    def enqueue(self, req: _Request) -> None:
        self.queue.append(req)
        self.rate.add(req.t_ready)
        self.kick()
        if req.deadline is not None:
            heapq.heappush(self._deadlines, (req.deadline, next(self._seq), req))
            if req.deadline < self._expiry_at:
                self._arm_expiry()

    def kick(self) -> None:
        """Look at the queue once this loop iteration ends, so requests arriving together
        (``infer_many``) are seen together."""
        if not self._check_scheduled:
            self._check_scheduled = True
            asyncio.get_running_loop().call_soon(self._check)

    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry, self._expiry_at = None, math.inf
        h = self._deadlines
        while h and (h[0][2].t_dispatch or h[0][2].fut.done()):  # started or answered
            heapq.heappop(h)
        if h:
            self._expiry_at = h[0][0]
            self._expiry = asyncio.get_running_loop().call_later(max(0.0, h[0][0] - now()),
                                                                 self._expire)

    def _expire(self) -> None:
        self._expiry, self._expiry_at = None, math.inf
        t = now()
        h = self._deadlines
        while h and h[0][0] <= t:
            r = heapq.heappop(h)[2]
            if not r.t_dispatch and not r.fut.done():
                self._expire_one(r, t)
        self._trim_front()
        self._arm_expiry()

    def _expire_one(self, r: _Request, t: float) -> None:
        r.expired = True
        self._dead += 1
        self.server._fail(r, DeadlineExceeded(
            f"{r.name}: deadline passed after {1000 * (t - r.t_submit):.1f} ms, still queued on "
            f"{self.partition.name}"), "expired")

    def _pop_dead(self, r: _Request) -> None:
        if r.expired:
            self._dead -= 1
        else:  # the caller gave up (cancelled): nothing to answer
            self.server._count("cancelled")

    def _trim_front(self) -> None:
        q = self.queue
        while q and q[0].fut.done():
            self._pop_dead(q.popleft())

    def has_work(self) -> bool:
        self._trim_front()
        return bool(self.queue or self.inflight)

    def _check(self) -> None:
        self._check_scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.alive:
            return
        t = now()
        self._trim_front()
        while self.queue and len(self.inflight) < self.depth:
            n, due = decide(t, self.queue_len, self.queue[0].t_ready, True,
                            self.current_limits(t))
            if n == 0:
                if due is not None:
                    self._timer = asyncio.get_running_loop().call_later(due - t, self._check)
                return
            self._dispatch(n, t)
            self._trim_front()

    def _dispatch(self, n: int, t: float) -> None:
        reqs = []
        while self.queue and len(reqs) < n:
            r = self.queue.popleft()
            if r.fut.done():
                self._pop_dead(r)
                continue
            if r.deadline is not None and r.deadline <= t:  # its timer has not fired yet
                self._expire_one(r, t)
                self._dead -= 1
                continue
            reqs.append(r)
        if not reqs:
            return
        slot = self.free_slots.pop()
        buf = self.host[slot]
        for i, r in enumerate(reqs):
            buf[i] = r.tensor  # the one host copy: request tensor -> (pinned) batch slot
            r.t_dispatch = t
        bid = next(self.server._batch_ids)
        self.inflight[bid] = (reqs, slot, t)
        self.busy_until = max(self.busy_until, t) + self.expected_latency_s(len(reqs))
        try:
            self.conn.send(("run", bid, slot, len(reqs)))
        except (OSError, BrokenPipeError) as e:
            self._die(f"cannot reach worker {self.partition.name}: {e}")

    # --- the worker's replies ---------------------------------------------------------------
    def on_readable(self) -> None:
        try:
            while self.conn.poll():
                self._handle(self.conn.recv())
        except (EOFError, OSError) as e:
            self._die(f"worker for {self.partition.name} exited ({type(e).__name__})")

    def _handle(self, msg) -> None:
        op = msg[0]
        if op == "done":
            _, bid, classes, scores, t0, t1 = msg
            reqs, slot, t_disp = self.inflight.pop(bid)
            self.free_slots.append(slot)
            self.stats.batches += 1
            self.stats.batch_sizes[len(reqs)] += 1
            self.stats.busy_s += t1 - t0
            self.stats.completed += len(reqs)
            if not self.inflight:
                self.busy_until = now()
            self.server._complete(self, reqs, classes, scores, (t1 - t0) * 1000.0)
            self.kick()
        elif op == "error":
            _, bid, message = msg
            reqs, slot, _ = self.inflight.pop(bid)
            self.free_slots.append(slot)
            if not self.inflight:
                self.busy_until = now()
            for r in reqs:
                self.server._fail(r, WorkerFailed(f"{r.name}: {self.partition.name}: {message}"),
                                  "failed_worker")
            self.kick()
        elif op == "ready":
            self.info = msg[1]
            if not self.ready.done():
                self.ready.set_result(msg[1])
        elif op in ("profiled", "stats"):
            fut = self._replies.popleft()
            if not fut.done():
                fut.set_result(msg[1])
        elif op == "fatal":
            self._die(f"worker for {self.partition.name} failed: {msg[1]}")

    async def request(self, msg: tuple) -> Any:
        fut = asyncio.get_running_loop().create_future()
        self._replies.append(fut)
        self.conn.send(msg)
        return await fut

    def _die(self, why: str) -> None:
        if not self.alive:
            return
        self.alive = False
        loop = asyncio.get_running_loop()
        try:
            loop.remove_reader(self.conn.fileno())
        except (OSError, ValueError):
            pass
        if not self.ready.done():
            self.ready.set_exception(WorkerFailed(why))
        for reqs, _, _ in self.inflight.values():
            for r in reqs:
                self.server._fail(r, WorkerFailed(f"{r.name}: {why}"), "failed_worker")
        self.inflight.clear()
        while self.queue:
            r = self.queue.popleft()
            self.server._fail(r, WorkerFailed(f"{r.name}: {why}"), "failed_worker")
        self._dead = 0
        for h in (self._timer, self._expiry):
            if h is not None:
                h.cancel()
        for f in self._replies:
            if not f.done():
                f.set_exception(WorkerFailed(why))
        self.server._lane_died(self, why)


class WorkerPool:
    """Worker processes, their shared-memory batch buffers and pipes (no routing).

    Processes come from a ``forkserver`` (:func:`~pyhost.worker.mp_context`).
    """

    def __init__(self, model: ModelInfo, partitions: Sequence[Partition],
                 buckets: tuple[int, ...], topk: int = 5, depth: int = 1,
                 profile_iters: int = 0, warmup_iters: int = 1, cuda_graphs: bool = True):
        self.model, self.partitions = model, list(partitions)
        self.buckets, self.topk, self.depth = buckets, topk, depth
        self.profile_iters, self.warmup_iters, self.cuda_graphs = (profile_iters, warmup_iters,
                                                                   cuda_graphs)
        self.processes: list[mp.Process] = []
        self.shms: list[shared_memory.SharedMemory] = []

    def start(self, server: "InferenceServer") -> list[_Lane]:
        ctx = mp_context()
        dtype = np.dtype(self.model.pipeline.output.numpy_dtype)
        row_bytes = int(np.prod(self.model.input_shape)) * dtype.itemsize
        n_slots = self.depth + 1
        groups: dict[int, list[Partition]] = {}
        for p in self.partitions:
            groups.setdefault(p.process, []).append(p)
        lanes: list[_Lane] = []
        loop = asyncio.get_running_loop()
        for parts in groups.values():
            lane_specs, parent_conns, child_conns = [], [], []
            for p in parts:
                shm = shared_memory.SharedMemory(create=True,
                                                 size=n_slots * self.buckets[-1] * row_bytes)
                self.shms.append(shm)
                a, b = ctx.Pipe(duplex=True)
                parent_conns.append(a)
                child_conns.append(b)
                lane_specs.append(LaneSpec(p, shm.name, n_slots))
            spec = WorkerSpec(self.model.ref, self.model.input_shape,
                              self.model.pipeline.output.dtype, self.buckets, self.topk,
                              tuple(lane_specs), self.warmup_iters, self.profile_iters,
                              self.cuda_graphs, self.model.num_classes)
            proc = ctx.Process(target=worker_main, args=(spec, child_conns), daemon=True,
                               name=f"preba-worker-{parts[0].name}")
            proc.start()
            self.processes.append(proc)
            for c in child_conns:
                c.close()  # the child has its ends; an exit then reads as EOF here
            for p, conn, ls in zip(parts, parent_conns, lane_specs):
                shm = self.shms[len(lanes)]
                lane = _Lane(server, len(lanes), p, conn, shm, n_slots, self.buckets,
                             self.model.input_shape, dtype)
                loop.add_reader(conn.fileno(), lane.on_readable)
                lanes.append(lane)
        return lanes

    def stop(self, lanes: Sequence[_Lane], timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        for lane in lanes:
            try:
                loop.remove_reader(lane.conn.fileno())
            except (OSError, ValueError):
                pass
            try:
                lane.conn.send(("stop",))
            except (OSError, BrokenPipeError):
                pass
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(2)
        for lane in lanes:
            lane.host = None  # drop the numpy view before closing the mapping
            lane.conn.close()
        for shm in self.shms:
            try:
                shm.close()
                shm.unlink()
            except (FileNotFoundError, BufferError):
                pass
        self.processes, self.shms = [], []


class InferenceServer:
    """Serve a model on partitions with a batching policy (see the module doc).

    Parameters
    ----------
    model: a model reference (:mod:`pyhost.models`) or a :class:`ModelInfo`.
    partitions: ``auto``, ``mig``, ``gpu``, ``sm:16,16,32``, ``mps:P,...``, ``cpu:N``, or a
        list of :class:`Partition`.
    batching: ``preba``, ``triton``, ``slo``, ``none`` or a policy object.
    accelerator: an :class:`Accelerator`; its pipeline and backend preprocess requests
        (unless ``preprocess`` says otherwise).
    preprocess: ``pillow``, ``golden``, ``rtl``, ``ideal``, ``fpga-model`` or a preprocessor
        object (:mod:`pyhost.preprocessing`).
    profile: a :class:`Profile` (or its JSON path) for the policies and the router. Without one,
        the workers measure each bucket ``profile_iters`` times while warming up.
    slo_ms: the latency target (the ``slo`` policy needs it; ``deadline_ms`` defaults to none).
    deadline_ms: per-request deadline; a request still queued past it is answered with
        :class:`DeadlineExceeded`. ``infer`` can override it per call.
    max_queue: requests a partition's queue holds; beyond it a request is refused
        (:class:`Overloaded`). ``max_pending``: requests in the server at once, preprocessing
        included.
    buckets: batch sizes the workers prepare (CUDA graphs; padding). Default: the profile's
        sizes, else powers of two to 16 on the CPU and 256 on GPUs.
    """

    def __init__(self, model: str | ModelInfo = DEFAULT_MODEL, partitions: str | Sequence[Partition]
                 = "auto", batching: str | BatchingPolicy = "preba", *,
                 accelerator: Accelerator | None = None,
                 preprocess: str | RequestPreprocessor | None = None,
                 preprocess_workers: int | None = None, preprocess_options: dict | None = None,
                 pipeline: str | PipelineSpec | None = None,
                 profile: Profile | str | Path | None = None, profile_iters: int = 5,
                 slo_ms: float | None = None, deadline_ms: float | None = None,
                 max_queue: int = 1024, max_pending: int = 100_000, topk: int = 5,
                 buckets: Sequence[int] | None = None, pipeline_depth: int = 1,
                 triton_max_batch: int | None = None, triton_delay_ms: float = 0.0,
                 cuda_graphs: bool = True, startup_timeout_s: float = 300.0):
        if isinstance(model, ModelInfo):
            self.model = with_pipeline(model, pipeline) if pipeline is not None else model
        else:
            self.model = resolve_model(model, pipeline)
        self._dtype = np.dtype(self.model.pipeline.output.numpy_dtype)
        self.partitions = (resolve_partitions(partitions) if isinstance(partitions, str)
                           else list(partitions))
        if not self.partitions:
            raise ValueError("no partitions to serve on")
        self.slo_ms = slo_ms
        self._policy_args = dict(slo_ms=slo_ms, triton_max_batch=triton_max_batch,
                                 triton_delay_ms=triton_delay_ms)
        self.batching = make_policy(batching, **self._policy_args)
        self.deadline_ms = deadline_ms
        self.max_queue, self.max_pending, self.topk = max_queue, max_pending, topk
        self._profile_arg = profile
        self.profile: Profile | None = None
        self.profile_iters = profile_iters
        self._buckets_arg = tuple(sorted(set(buckets))) if buckets else None
        self.pipeline_depth = pipeline_depth
        self.cuda_graphs = cuda_graphs
        self.startup_timeout_s = startup_timeout_s
        self.preprocessor = self._make_preprocessor(accelerator, preprocess, preprocess_workers,
                                                    preprocess_options)
        self.lanes: list[_Lane] = []
        self._pool: WorkerPool | None = None
        self._running = False
        self._closing = False
        self._pending = 0
        self._batch_ids = itertools.count()
        self.counts: Counter = Counter()
        self._t_start = 0.0
        self._died: list[str] = []

    # --- construction helpers ---------------------------------------------------------------
    def _make_preprocessor(self, acc, preprocess, workers, options) -> RequestPreprocessor:
        spec = self.model.pipeline
        if acc is not None:
            if acc.spec != spec:
                warnings.warn(f"the accelerator's pipeline {acc.spec.name!r} is not the one "
                              f"{self.model.name} was trained with ({spec.name!r}); predictions "
                              "will suffer. Pass pipeline= to override the model's.",
                              stacklevel=3)
            spec = acc.spec
            if preprocess is None:
                preprocess = acc.backend
                options = dict(acc.options, **(options or {}))
        if preprocess is None:
            preprocess = "pillow"
        if not isinstance(preprocess, str):
            return preprocess
        if workers is None:
            # The workers get the cores on the CPU; preprocessing then shares them.
            workers = max(1, cpu_cores() - (len(self.partitions) if not self.partitions[0].is_cuda
                                            else 0))
        return make_preprocessor(preprocess, spec, workers=workers, options=options)

    def _resolve_profile(self) -> Profile | None:
        p = self._profile_arg
        if p is None:
            return None
        prof = p if isinstance(p, Profile) else Profile.load(p)
        for part in self.partitions:
            prof[part.profile_key]  # raises KeyError naming the missing kind
        return prof

    def _buckets(self, prof: Profile | None) -> tuple[int, ...]:
        if self._buckets_arg:
            return self._buckets_arg
        if prof is not None:
            sizes = set()
            for part in self.partitions:
                sizes.update(prof[part.profile_key].sizes)
            return tuple(sorted(sizes))
        return default_buckets(self.partitions[0].device, 16 if not self.partitions[0].is_cuda
                               else None)

    # --- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> "InferenceServer":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._running:
            return
        prof = self._resolve_profile()
        buckets = self._buckets(prof)
        self.buckets = buckets
        self._pool = WorkerPool(self.model, self.partitions, buckets, self.topk,
                                self.pipeline_depth, 0 if prof is not None else self.profile_iters,
                                1, self.cuda_graphs)
        await self.preprocessor.start()
        self.lanes = self._pool.start(self)
        try:
            infos = await asyncio.wait_for(asyncio.gather(*(l.ready for l in self.lanes)),
                                           self.startup_timeout_s)
        except BaseException:
            self._pool.stop(self.lanes, timeout=2)
            await self.preprocessor.close()
            raise
        if prof is None:
            prof = self._profile_from_workers(infos)
        self.profile = prof
        for lane in self.lanes:
            lane.profile = prof[lane.partition.profile_key]
        self._running = True
        self._closing = False
        self._t_start = now()

    def _profile_from_workers(self, infos: list[dict]) -> Profile:
        """A startup profile: per partition kind, the first worker's measurements."""
        parts: dict[str, PartitionProfile] = {}
        for lane, info in zip(self.lanes, infos):
            key = lane.partition.profile_key
            if key in parts:
                continue
            samples = info.get("profile_ms") or {b: [1.0] for b in self.buckets}
            parts[key] = PartitionProfile.from_samples(key, samples,
                                                       info.get("runner") == "cuda-graphs")
        return Profile(self.model.name, parts, infos[0].get("device", ""),
                       f"measured at startup ({self.profile_iters} runs per batch size)")

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Stop taking requests, let queued and in-flight ones finish (up to the timeout), answer
        what is left with :class:`ServerClosed`, stop the workers."""
        if not self._running:
            return
        self._closing = True
        t_end = now() + drain_timeout_s
        while now() < t_end and (self._pending or any(l.has_work() for l in self.lanes
                                                      if l.alive)):
            await asyncio.sleep(0.01)
        for lane in self.lanes:
            for reqs, _, _ in lane.inflight.values():
                for r in reqs:
                    self._fail(r, ServerClosed(f"{r.name}: server stopped"), "aborted")
            lane.inflight.clear()
            while lane.queue:
                r = lane.queue.popleft()
                self._fail(r, ServerClosed(f"{r.name}: server stopped"), "aborted")
            for h in (lane._timer, lane._expiry):
                if h is not None:
                    h.cancel()
        self._pool.stop(self.lanes)
        await self.preprocessor.close()
        self._running = False

    def set_batching(self, batching: str | BatchingPolicy, **kw) -> None:
        """Switch the policy (between benchmark runs; the workers stay up)."""
        args = dict(self._policy_args, **kw)
        self.batching = make_policy(batching, **args)
        for lane in self.lanes:
            lane.invalidate_limits()

    # --- requests -----------------------------------------------------------------------------
    async def infer(self, item: bytes | str | os.PathLike | np.ndarray, *, name: str | None = None,
                    deadline_ms: float | None = None) -> Prediction:
        """Classify one image: encoded bytes, a file path, or an already preprocessed tensor
        (which skips preprocessing). Raises PreprocessError naming the image, or a ServerError.
        """
        t0 = now()
        self._admit()
        try:
            name = name or _name_of(item)
            tensor = await self._preprocess(item, name)
            return await self._enqueue(tensor, name, t0, now(), deadline_ms)
        finally:
            self._pending -= 1

    async def infer_many(self, items: Sequence[bytes | str | os.PathLike | np.ndarray], *,
                         deadline_ms: float | None = None) -> list[Prediction]:
        """Classify a batch of images, all or nothing: every element is preprocessed first; if any
        fails, :class:`PreprocessError` names the first bad element (``element 3 (...)``) and
        nothing runs. Otherwise all go to the partitions together."""
        t0 = now()
        items = list(items)
        names = [f"element {i} ({_name_of(x)})" for i, x in enumerate(items)]
        self._admit(len(items))
        try:
            tensors = await asyncio.gather(*(self._preprocess(x, n)
                                             for x, n in zip(items, names)),
                                           return_exceptions=True)
            bad = [(n, t) for n, t in zip(names, tensors) if isinstance(t, BaseException)]
            if bad:
                # The good elements are not run: counted so every submitted request has an
                # outcome in stats().
                self.counts["not_run"] += len(items) - len(bad)
                n, t = bad[0]
                if isinstance(t, PreprocessError):
                    raise PreprocessError(n, t.message, t.code) from None
                raise t
            t_ready = now()
            futs = [self._enqueue(t, n, t0, t_ready, deadline_ms)
                    for t, n in zip(tensors, names)]
            results = await asyncio.gather(*futs, return_exceptions=True)
        finally:
            self._pending -= len(items)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results

    async def infer_stream(self, items: Iterable | AsyncIterable, *, window: int = 64,
                           ordered: bool = True, return_exceptions: bool = True,
                           deadline_ms: float | None = None) -> AsyncIterator:
        """Classify a (possibly endless) stream with at most ``window`` requests in flight.

        Yields in input order (``ordered``) or as they finish. A failed element yields its
        exception (``return_exceptions``) or raises it.
        """
        pending: deque[asyncio.Task] = deque()
        running: set[asyncio.Task] = set()

        async def take(task: asyncio.Task):
            try:
                return await task
            except (PreprocessError, ServerError) as e:
                if return_exceptions:
                    return e
                raise

        try:
            async for item in _aiter(items):
                task = asyncio.ensure_future(self.infer(item, deadline_ms=deadline_ms))
                pending.append(task)
                running.add(task)
                task.add_done_callback(running.discard)
                while len(running if not ordered else pending) >= window:
                    if ordered:
                        yield await take(pending.popleft())
                    else:
                        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                        for d in done:
                            pending.remove(d)
                            yield await take(d)
                if ordered:
                    while pending and pending[0].done():
                        yield await take(pending.popleft())
            while pending:
                if ordered:
                    yield await take(pending.popleft())
                else:
                    done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for d in done:
                        pending.remove(d)
                        yield await take(d)
        finally:
            for t in pending:
                t.cancel()

    # --- internals ----------------------------------------------------------------------------
    def _admit(self, n: int = 1) -> None:
        """Take ``n`` requests in, or refuse them all (counted either way)."""
        self.counts["submitted"] += n
        if not self._running or self._closing:
            self.counts["refused"] += n
            raise ServerClosed("the server is not running (use `async with InferenceServer(...)`)"
                               if not self._running else "the server is stopping")
        if self._pending + n > self.max_pending:
            self.counts["refused"] += n
            raise Overloaded(f"{self._pending} requests pending (max_pending={self.max_pending})")
        self._pending += n

    async def _preprocess(self, item, name: str) -> np.ndarray:
        t = None
        try:
            if isinstance(item, np.ndarray):
                t = item
            else:
                data = item if isinstance(item, (bytes, bytearray, memoryview)) else None
                if data is None:
                    data = await asyncio.get_running_loop().run_in_executor(None, read_source,
                                                                            item)
                t = await self.preprocessor(bytes(data) if not isinstance(data, bytes) else data,
                                            name)
            shape, dtype = self.model.input_shape, self._dtype
            if t.shape != shape:
                raise PreprocessError(name, f"tensor shape {t.shape} does not match the model's "
                                            f"input {shape} (pipeline {self.model.pipeline.name})")
            if t.dtype != dtype:
                t = t.astype(dtype)
            return t
        except PreprocessError as e:
            self.counts["failed_preprocess"] += 1
            raise PreprocessError(name, e.message, e.code) from None

    def _enqueue(self, tensor, name, t0, t_ready, deadline_ms) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        dl_ms = deadline_ms if deadline_ms is not None else self.deadline_ms
        req = _Request(fut, tensor, name, t0, t_ready, None if dl_ms is None else t0 + dl_ms / 1e3)
        if req.deadline is not None and t_ready >= req.deadline:
            self._fail(req, DeadlineExceeded(f"{name}: deadline passed during preprocessing "
                                             f"({1000 * (t_ready - t0):.1f} ms)"), "expired")
            return fut
        i = pick_lane(t_ready, [l if not l.full else _FULL for l in self.lanes])
        if i < 0:
            if any(l.alive for l in self.lanes):
                self._fail(req, Overloaded(f"{name}: every partition's queue is full "
                                           f"(max_queue={self.max_queue})"), "refused")
            else:
                self._fail(req, WorkerFailed(f"{name}: no worker is alive ({'; '.join(self._died)})"
                                             ), "failed_worker")
            return fut
        self.lanes[i].enqueue(req)
        return fut

    def _complete(self, lane: _Lane, reqs: list[_Request], classes: np.ndarray,
                  scores: np.ndarray, compute_ms: float) -> None:
        t = now()
        labels = self.model.labels
        n = len(reqs)
        for i, r in enumerate(reqs):
            if r.fut.done():
                self.counts["cancelled"] += 1
                continue
            cl = tuple(int(c) for c in classes[i])
            r.fut.set_result(Prediction(
                cl, tuple(float(s) for s in scores[i]),
                tuple(labels[c] for c in cl) if labels else None, r.name, lane.partition.name,
                n, (t - r.t_submit) * 1e3, (r.t_ready - r.t_submit) * 1e3,
                (r.t_dispatch - r.t_ready) * 1e3, compute_ms))
            self.counts["completed"] += 1

    def _fail(self, r: _Request, exc: BaseException, what: str) -> None:
        if r.fut.done():  # already answered (expired) or cancelled: counted then
            return
        self.counts[what] += 1
        r.fut.set_exception(exc)

    def _count(self, what: str) -> None:
        self.counts[what] += 1

    def _n_alive(self) -> int:
        return sum(1 for l in self.lanes if l.alive) or 1

    def _lane_died(self, lane: _Lane, why: str) -> None:
        self._died.append(why)
        for l in self.lanes:
            l.invalidate_limits()  # the preba timeout depends on the number of partitions

    # --- observability ------------------------------------------------------------------------
    def stats(self) -> dict:
        """Counts of every outcome, and per partition: batches, batch-size histogram,
        utilization (worker busy time / time since start).

        Every submitted request ends in exactly one of: completed, refused (queues full or
        server not running), expired (deadline), failed_preprocess, failed_worker, cancelled
        (the caller gave up), aborted (server stopped), not_run (another element of its
        ``infer_many`` failed preprocessing)."""
        wall = max(1e-9, now() - self._t_start)
        c = self.counts
        return {
            "submitted": c["submitted"], "completed": c["completed"], "refused": c["refused"],
            "expired": c["expired"], "failed_preprocess": c["failed_preprocess"],
            "failed_worker": c["failed_worker"], "cancelled": c["cancelled"],
            "aborted": c["aborted"], "not_run": c["not_run"], "pending": self._pending,
            "policy": self.batching.describe(),
            "preprocess": self.preprocessor.describe(),
            "partitions": [{
                "name": l.partition.name, "kind": l.partition.kind, "alive": l.alive,
                "runner": l.info.get("runner"), "batches": l.stats.batches,
                "completed": l.stats.completed,
                "batch_size_hist": {int(k): v for k, v in sorted(l.stats.batch_sizes.items())},
                "util": round(l.stats.busy_s / wall, 4), "queue": l.queue_len,
                "limits": (lambda m: {"max_batch": m.max_batch,
                                      "timeout_ms": round(m.timeout_s * 1e3, 3)})(
                    l.current_limits(now())) if l.profile is not None else None,
            } for l in self.lanes],
        }

    def reset_stats(self) -> None:
        """Zero the counters and partition histograms (a benchmark's warm-up ends here)."""
        self.counts = Counter()
        self._t_start = now()
        for l in self.lanes:
            l.stats = LaneStats()

    async def worker_cpu_seconds(self) -> float:
        """CPU time the worker processes have used (for host-overhead measurements)."""
        seen, total = set(), 0.0
        for l in self.lanes:
            if not l.alive:
                continue
            st = await l.request(("stats",))
            if st["pid"] not in seen:
                seen.add(st["pid"])
                total += st["cpu_s"]
        return total

    async def measure(self, sizes: Sequence[int], iters: int) -> dict[str, dict[int, list[float]]]:
        """Time each batch size ``iters`` times on every partition at once (partitions that
        share a GPU or the CPU slow each other down, as they will when serving); the samples of
        partitions of one kind are merged. Call it on an idle server."""
        live = [l for l in self.lanes if l.alive]
        res = await asyncio.gather(*(l.request(("profile", list(sizes), iters)) for l in live))
        out: dict[str, dict[int, list[float]]] = {}
        for l, r in zip(live, res):
            d = out.setdefault(l.partition.profile_key, {})
            for b, v in r.items():
                d.setdefault(int(b), []).extend(v)
        return out


class _Full:
    """A stand-in the router skips: a partition whose queue is full."""
    alive = False


_FULL = _Full()


def _name_of(item) -> str:
    if isinstance(item, np.ndarray):
        return f"<tensor {tuple(item.shape)}>"
    return source_name(item)


async def _aiter(items):
    if hasattr(items, "__aiter__"):
        async for x in items:
            yield x
    else:
        for x in items:
            yield x
