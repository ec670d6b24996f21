"""``preba serve``: the protocol-independent service and the process that runs both fronts.

:class:`Service` owns the :class:`~pyhost.server.InferenceServer` and answers an
:class:`~pyhost.kserve.codec.InferRequest` whichever front it came from: it checks the model name,
the input and the requested outputs, checks that every element is a JPEG the hardware decoder
takes, runs the images with ``infer_many`` (all or nothing, as Triton runs a batched request),
counts everything in :mod:`~pyhost.kserve.metrics`, and turns server exceptions into
:class:`~pyhost.kserve.codec.ServeError` s that the fronts map to HTTP status / gRPC codes.

:func:`serve` is the process: bind the HTTP port (live at once, ready once the model is loaded),
start the inference server, start gRPC, print one ``ready`` line, serve until SIGTERM/SIGINT, then
stop accepting (new requests: 503 / UNAVAILABLE), let what is in flight finish, stop the workers
and return 0.
"""
from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .codec import (CLASSES, LABELS, SCORES, BadImage, DeadlineError, InferRequest, InferResponse,
                    InternalError, ModelSchema, NotFound, OutputTensor, ServeError, Unavailable,
                    check_jpeg, classification_strings, validate_request)
from .metrics import Metrics

__all__ = ["ServeConfig", "Service", "serve", "StartupError", "READY_PREFIX"]

log = logging.getLogger("preba.serve")

#: The line ``serve`` prints on stdout once both ports serve the loaded model (tools parse it).
READY_PREFIX = "preba serve: ready"
VERSION = "1"


class StartupError(Exception):
    """The server could not start (a port, the model, the partitions); the message says why and
    what to do."""


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = 8001          # None: no gRPC front
    model: str = "efficientnet-lite0"
    model_name: str | None = None         # the name clients use (default: the model's)
    pipeline: str | None = None
    partitions: str = "auto"
    batching: str = "preba"
    preprocess: str = "pillow"
    preprocess_workers: int | None = None
    slo_ms: float | None = None
    deadline_ms: float | None = None
    max_queue: int = 256
    max_pending: int | None = None        # None: derived from max_queue and the partitions
    max_body_bytes: int = 64 << 20
    topk: int = 5
    profile: str | None = None
    profile_iters: int = 5
    buckets: tuple[int, ...] | None = None
    drain_timeout_s: float = 30.0
    server_options: dict = field(default_factory=dict)  # more InferenceServer keyword arguments


class Service:
    """The model behind both fronts (see the module doc)."""

    def __init__(self, cfg: ServeConfig):
        from ..models import resolve_model
        from ..partitions import resolve_partitions
        from ..server import InferenceServer

        self.cfg = cfg
        self.model = resolve_model(cfg.model, cfg.pipeline)
        kw = dict(cfg.server_options)
        if cfg.preprocess_workers is not None:
            kw["preprocess_workers"] = cfg.preprocess_workers
        if cfg.profile is not None:
            kw["profile"] = cfg.profile
        if cfg.buckets:
            kw["buckets"] = cfg.buckets
        parts = resolve_partitions(cfg.partitions)
        # Images inside the server at once (preprocessing included): beyond it, Overloaded at
        # once, before any preprocessing is spent on the request.
        self.max_pending = cfg.max_pending or (2 * cfg.max_queue * len(parts) + 64)
        self.server = InferenceServer(model=self.model, partitions=parts,
                                      batching=cfg.batching, preprocess=cfg.preprocess,
                                      slo_ms=cfg.slo_ms, deadline_ms=cfg.deadline_ms,
                                      max_queue=cfg.max_queue, max_pending=self.max_pending,
                                      topk=cfg.topk, profile_iters=cfg.profile_iters, **kw)
        spec = self.model.pipeline
        self.schema = ModelSchema(cfg.model_name or self.model.name, VERSION, cfg.topk,
                                  self.model.labels is not None, spec.max_width, spec.max_height,
                                  self.max_pending)
        self.state = "loading"   # loading -> ready -> stopping -> stopped
        self.metrics = Metrics(self._stats_or_none, lambda: self.ready)
        self._inflight = 0
        self._st = {"success": [0, 0], "fail": [0, 0], "queue": [0, 0], "compute_input": [0, 0],
                    "compute_infer": [0, 0], "compute_output": [0, 0]}
        self._inference_count = 0
        self._last_inference_ms = 0

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.server.start()
        self.state = "ready"

    def begin_stop(self) -> None:
        if self.state in ("loading", "ready"):
            self.state = "stopping"

    async def stop(self) -> None:
        self.begin_stop()
        await self.server.stop(self.cfg.drain_timeout_s)
        self.state = "stopped"

    @property
    def ready(self) -> bool:
        """Serving, with at least one partition's worker alive."""
        if self.state != "ready":
            return False
        st = self._stats_or_none()
        return st is None or any(p.get("alive", True) for p in st.get("partitions", [])) \
            or not st.get("partitions")

    @property
    def inflight(self) -> int:
        return self._inflight

    def _stats_or_none(self) -> dict | None:
        try:
            return self.server.stats()
        except Exception:  # before start / after a failed start: nothing to report
            return None

    def partition_names(self) -> list[str]:
        st = self._stats_or_none() or {}
        return [p["name"] for p in st.get("partitions", [])]

    # --- metadata -----------------------------------------------------------------------------
    def server_metadata(self) -> dict:
        from importlib.metadata import PackageNotFoundError, version
        try:
            v = version("preba")
        except PackageNotFoundError:
            v = "0+unknown"
        return {"name": "preba", "version": v,
                "extensions": ["binary_tensor_data", "classification", "model_configuration",
                               "statistics"]}

    def check_model(self, name: str, version: str = "") -> None:
        if name != self.schema.name:
            raise NotFound(f"unknown model {name!r}; this server serves {self.schema.name!r}")
        if version not in ("", self.schema.version):
            raise NotFound(f"model {name!r} has no version {version!r}; it has version "
                           f"{self.schema.version!r}")

    def model_config(self) -> dict:
        st = self._stats_or_none() or {}
        params = {"preba_partitions": ",".join(self.partition_names()) or self.cfg.partitions,
                  "preba_batching": self.cfg.batching, "preba_preprocess": self.cfg.preprocess,
                  "preba_pipeline": self.model.pipeline.name,
                  "preba_max_queue": self.cfg.max_queue, "preba_max_pending": self.max_pending}
        if st.get("policy"):
            params["preba_policy"] = json.dumps(st["policy"], sort_keys=True, default=str)
        return self.schema.config(params)

    def repository_index(self) -> list[dict]:
        state = {"ready": "READY", "loading": "LOADING"}.get(self.state, "UNAVAILABLE")
        return [{"name": self.schema.name, "version": self.schema.version, "state": state}]

    def statistics(self) -> dict:
        st = self._stats_or_none() or {}
        batches = sum(p.get("batches", 0) for p in st.get("partitions", []))
        hist: dict[int, int] = {}
        for p in st.get("partitions", []):
            for b, c in p.get("batch_size_hist", {}).items():
                hist[int(b)] = hist.get(int(b), 0) + c

        def dur(key):
            c, ns = self._st[key]
            return {"count": c, "ns": ns}

        return {"model_stats": [{
            "name": self.schema.name, "version": self.schema.version,
            "last_inference": self._last_inference_ms, "inference_count": self._inference_count,
            "execution_count": batches,
            "inference_stats": {k: dur(k) for k in self._st} | {
                "cache_hit": {"count": 0, "ns": 0}, "cache_miss": {"count": 0, "ns": 0}},
            "batch_stats": [{"batch_size": b, "compute_input": {"count": c, "ns": 0},
                             "compute_infer": {"count": c, "ns": 0},
                             "compute_output": {"count": c, "ns": 0}}
                            for b, c in sorted(hist.items())],
        }]}

    # --- inference ----------------------------------------------------------------------------
    async def infer(self, protocol: str, model: tuple[str, str],
                    parse: Callable[[], InferRequest],
                    deadline_s: float | None = None) -> tuple[InferRequest, InferResponse]:
        """Check the model (``(name, version)``), parse (inside the metrics and error
        accounting), check the request, run it, build the response. Raises
        :class:`ServeError`."""
        m = self.metrics
        m.requests.labels(protocol).inc()
        t0 = time.perf_counter()
        self._inflight += 1
        ok = False
        try:
            self.check_model(*model)
            req = parse()
            if self.state != "ready":
                if self.state == "loading":
                    raise Unavailable("the model is still loading; retry when "
                                      "/v2/health/ready answers 200", "shutting_down")
                raise Unavailable("the server is shutting down; retry on another replica",
                                  "shutting_down")
            images, outputs = validate_request(req, self.schema)
            for i, data in enumerate(images):
                check_jpeg(data, i, self.schema)
            preds = await self._run(images, req, deadline_s)
            m.images.labels(protocol).inc(len(images))
            m.observe(preds)
            self._account(preds)
            resp = self._response(req, outputs, preds)
            ok = True
            return req, resp
        except ServeError as e:
            m.failures.labels(protocol, e.reason).inc()
            raise
        except Exception as e:
            log.exception("internal error serving a %s request", protocol)
            m.failures.labels(protocol, "internal").inc()
            raise InternalError(f"internal error: {type(e).__name__}: {e}") from e
        finally:
            self._inflight -= 1
            dt = time.perf_counter() - t0
            m.duration.labels(protocol).observe(dt)
            key = "success" if ok else "fail"
            self._st[key][0] += 1
            self._st[key][1] += int(dt * 1e9)

    async def _run(self, images: list[bytes], req: InferRequest, deadline_s: float | None):
        from ..accelerator import PreprocessError
        from ..server import DeadlineExceeded, Overloaded, ServerClosed, ServerError

        limits = [x for x in (self.cfg.deadline_ms,
                              req.timeout_us / 1e3 if req.timeout_us else None,
                              deadline_s * 1e3 if deadline_s is not None else None)
                  if x is not None]
        try:
            return await self.server.infer_many(images, deadline_ms=min(limits) if limits
                                                else None)
        except PreprocessError as e:
            raise BadImage(str(e)) from None
        except Overloaded as e:
            raise Unavailable(f"server overloaded, request refused: {e}; retry later or lower "
                              "the request rate") from None
        except ServerClosed as e:
            raise Unavailable(f"the server is shutting down: {e}", "shutting_down") from None
        except DeadlineExceeded as e:
            raise DeadlineError(f"deadline exceeded: {e}") from None
        except ServerError as e:
            raise InternalError(f"inference failed: {e}") from None

    def _account(self, preds) -> None:
        n = len(preds)
        self._inference_count += n
        self._last_inference_ms = int(time.time() * 1000)
        for key, attr in (("queue", "queue_ms"), ("compute_input", "preprocess_ms"),
                          ("compute_infer", "compute_ms")):
            self._st[key][0] += n
            self._st[key][1] += int(sum(getattr(p, attr) for p in preds) * 1e6)
        self._st["compute_output"][0] += n

    def _response(self, req: InferRequest, outputs, preds) -> InferResponse:
        n = len(preds)
        k = len(preds[0].classes)
        classes = np.array([p.classes for p in preds], dtype=np.int64).reshape(n, k)
        scores = np.array([p.scores for p in preds], dtype=np.float32).reshape(n, k)
        outs = []
        for o in outputs:
            binary = o.binary if o.binary is not None else req.binary_default
            if o.classification:
                kk = min(o.classification, k)
                data = classification_strings(classes, scores, self.model.labels, kk)
                outs.append(OutputTensor(o.name, "BYTES", [n, kk], data, binary))
            elif o.name == CLASSES:
                outs.append(OutputTensor(o.name, "INT64", [n, k], classes, binary))
            elif o.name == SCORES:
                outs.append(OutputTensor(o.name, "FP32", [n, k], scores, binary))
            elif o.name == LABELS:
                data = [lab.encode() for p in preds for lab in (p.labels or ())]
                outs.append(OutputTensor(o.name, "BYTES", [n, k], data, binary))
        return InferResponse(req.model_name, self.schema.version, req.id, outs)


# --- the process --------------------------------------------------------------------------------
def _addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_socket(host: str, port: int, what: str, flag: str) -> socket.socket:
    """A listening TCP socket, or StartupError saying what to do."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise StartupError(f"cannot resolve --host {host!r}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
        s.listen(1024)
    except OSError as e:
        s.close()
        hint = (f"choose another {flag} (0 picks a free one)" if e.errno == errno.EADDRINUSE
                else "check --host")
        raise StartupError(f"cannot listen on {_addr(host, port)} ({what}): {e.strerror}; "
                           f"{hint}") from None
    s.setblocking(False)
    return s


def _say(msg: str, stream=None) -> None:
    print(msg, file=stream or sys.stderr, flush=True)


async def serve(cfg: ServeConfig, *, stop: asyncio.Event | None = None) -> int:
    """Run the endpoint until ``stop`` is set or SIGTERM/SIGINT arrives; 0 after a clean stop.
    Raises :class:`StartupError` (or ValueError from the model/partition options)."""
    from .http import HttpFront

    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    signals_seen = []

    def on_signal(sig):
        signals_seen.append(sig)
        if len(signals_seen) == 1:
            _say(f"preba serve: {signal.Signals(sig).name}: stopping (new requests are refused; "
                 "finishing those in flight)")
            stop.set()
        else:
            _say(f"preba serve: {signal.Signals(sig).name} again: exiting without draining")
            os._exit(1)

    def on_exception(loop, context):
        # Cancelling a start in progress (SIGTERM while loading) leaves cancelled gathers
        # behind; a CancelledError nobody retrieved is not an error worth a traceback.
        if isinstance(context.get("exception"), asyncio.CancelledError):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(on_exception)
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass

    service = Service(cfg)
    http_sock = bind_socket(cfg.host, cfg.port, "HTTP", "--port")
    if cfg.grpc_port:  # fail fast, before loading the model, when the port is taken
        try:
            bind_socket(cfg.host, cfg.grpc_port, "gRPC", "--grpc-port").close()
        except StartupError:
            http_sock.close()
            raise
    http_port = http_sock.getsockname()[1]
    http = HttpFront(service, cfg)
    grpc_front = None
    try:
        await http.start(http_sock)
        _say(f"preba serve: HTTP on http://{_addr(cfg.host, http_port)} (live); loading "
             f"{service.schema.name} on {cfg.partitions}...")
        start = asyncio.ensure_future(service.start())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({start, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
            await http.stop()
            _say("preba serve: stopped before the model was ready")
            return 0
        stopper.cancel()
        exc = start.exception()
        if exc is not None:
            raise StartupError(f"the inference server did not start: {exc}") from exc
        grpc_port = None
        if cfg.grpc_port is not None:
            from .grpc import GrpcFront
            grpc_front = GrpcFront(service, cfg)
            grpc_port = await grpc_front.start(cfg.host, cfg.grpc_port)
        parts = ", ".join(service.partition_names())
        _say(f"{READY_PREFIX}: model {service.schema.name} (version {VERSION}) on {parts}; "
             f"batching {cfg.batching}, preprocess {cfg.preprocess}; "
             f"http=http://{_addr(cfg.host, http_port)} "
             f"grpc={_addr(cfg.host, grpc_port) if grpc_port else 'off'} "
             f"metrics=http://{_addr(cfg.host, http_port)}/metrics", sys.stdout)
        await stop.wait()
        service.begin_stop()
        n = service.inflight
        t0 = time.perf_counter()

        async def drain():
            await asyncio.gather(http.stop(), grpc_front.stop(cfg.drain_timeout_s)
                                 if grpc_front else _nothing())
            await service.stop()

        try:
            # The fronts and the server each wait up to --drain-timeout; never hang past both.
            await asyncio.wait_for(drain(), 2 * cfg.drain_timeout_s + 15)
        except asyncio.TimeoutError:
            _say(f"preba serve: could not drain within {2 * cfg.drain_timeout_s + 15:.0f} s; "
                 "exiting with what was left unanswered")
            return 1
        _say(f"preba serve: stopped ({n} request(s) were in flight; drained in "
             f"{time.perf_counter() - t0:.1f} s)")
        return 0
    finally:
        if service.state not in ("stopped", "stopping"):
            if grpc_front is not None:
                await grpc_front.stop(0)
            await http.stop()
            try:
                await service.stop()
            except Exception:
                pass
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _nothing() -> None:
    return None
