"""Preprocessing on the request path: how an encoded image becomes the model's input tensor.

=============== ==================================================================================
``pillow``      CPU worker processes running the Pillow pipeline (today's way)
``golden``      the same, with the numpy golden model (bit-exact with the RTL)
``rtl``         the same, with the Verilator-simulated RTL: correctness, not speed
``ideal``       tensors prepared ahead of time (:meth:`prepare`); a request costs a lookup.
                PREBA's "Ideal": the upper bound with preprocessing free
``fpga-model``  a *model* of N accelerator units at F MHz: delivers the golden tensor (prepared
                ahead) after the time the FPGA would take, from each image's RTL cycle count and
                the PCIe transfers. Every report labels it a model
``tensors``     none: the server takes preprocessed tensors only (profiling, tensor clients)
=============== ==================================================================================

Each is a plain object with ``async __call__(data, name) -> ndarray`` (raising
:class:`~pyhost.accelerator.PreprocessError` naming the image), ``start``/``close``, ``prepare``
(work done before the clock starts) and ``describe`` (what a report should say about it).
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from hdl.spec import PipelineSpec
from .accelerator import Accelerator, PreprocessError

__all__ = ["RequestPreprocessor", "PoolPreprocessor", "IdealPreprocessor", "FpgaModel",
           "TensorsOnly", "FpgaParams",
           "CycleTable", "make_preprocessor", "PREPROCESSORS", "backend_available",
           "best_tensor_backend"]

PREPROCESSORS = ("pillow", "golden", "rtl", "ideal", "fpga-model", "tensors")


def backend_available(backend: str) -> bool:
    """Whether the Accelerator backend's module is installed (golden and rtl land separately)."""
    return importlib.util.find_spec(f"pyhost.backends.{backend}") is not None


def best_tensor_backend() -> str:
    """golden (bit-exact with the hardware) when present, else pillow."""
    return "golden" if backend_available("golden") else "pillow"


class RequestPreprocessor(Protocol):
    name: str
    modeled: bool

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def prepare(self, items: Iterable[bytes]) -> None: ...

    async def __call__(self, data: bytes, name: str) -> np.ndarray: ...

    def describe(self) -> dict: ...


# One Accelerator per pool process, made by the pool's initializer: building it per image would
# redo the backend's setup (the rtl backend compiles a simulator).
_POOL_ACC: Accelerator | None = None


def _pool_init(spec: PipelineSpec, backend: str, options: dict) -> None:
    global _POOL_ACC
    _POOL_ACC = Accelerator(spec, backend, **options)


def _pool_run(data: bytes, name: str) -> tuple[np.ndarray | None, str | None, int | None]:
    r = _POOL_ACC.run(data)
    # Name the request, not "<N bytes>": the caller knows which element it was.
    return r.tensor, r.error, r.cycles


def _pool_decode(data: bytes, name: str) -> tuple[tuple[int, int] | None, str | None]:
    from .accelerator import decode_rgb
    try:
        return decode_rgb(data, name).shape[:2], None
    except PreprocessError as e:
        return None, e.message


def _pool_warm(hold_s: float) -> int:
    import os
    import time
    time.sleep(hold_s)  # hold this process so the next warm-up job starts another
    return os.getpid()


def _check_backend(backend: str) -> None:
    from .accelerator import BACKENDS
    if backend not in BACKENDS:
        raise ValueError(f"unknown preprocessing backend {backend!r}; choose one of "
                         f"{', '.join(BACKENDS)}")
    if not backend_available(backend):
        raise ValueError(f"preprocessing backend {backend!r} is not installed in this checkout "
                         f"(pyhost/backends/{backend}.py); use pillow or ideal")


class PoolPreprocessor:
    """Runs an Accelerator backend in worker processes (``workers`` = 0: threads in this
    process, for tests and tiny loads)."""
    modeled = False

    def __init__(self, spec: PipelineSpec, backend: str = "pillow", workers: int = 1,
                 options: dict | None = None):
        _check_backend(backend)
        self.spec, self.backend, self.workers = spec, backend, workers
        self.options = dict(options or {})
        self.name = backend
        self._ex: Executor | None = None

    async def start(self) -> None:
        if self._ex is not None:
            return
        if self.workers <= 0:
            _pool_init(self.spec, self.backend, self.options)  # this process's own copy
            self._ex = ThreadPoolExecutor(2, thread_name_prefix=f"preba-{self.backend}")
        else:
            from .worker import mp_context
            self._ex = ProcessPoolExecutor(self.workers, mp_context(),
                                           initializer=_pool_init,
                                           initargs=(self.spec, self.backend, self.options))
            # Start every pool process now, not on the first requests (whose latency would
            # then include a process start).
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(self._ex, _pool_warm, 0.05)
                                   for _ in range(self.workers)))

    async def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True, cancel_futures=True)
            self._ex = None

    async def prepare(self, items: Iterable[bytes]) -> None:
        return None

    async def run_result(self, data: bytes, name: str):
        loop = asyncio.get_running_loop()
        if self._ex is None:
            await self.start()
        return await loop.run_in_executor(self._ex, _pool_run, data, name)

    async def decode(self, data: bytes, name: str) -> tuple[int, int]:
        """Decode only (what the host does before an RGB-input accelerator); (height, width)."""
        loop = asyncio.get_running_loop()
        if self._ex is None:
            await self.start()
        shape, error = await loop.run_in_executor(self._ex, _pool_decode, data, name)
        if error is not None:
            raise PreprocessError(name, error)
        return shape

    async def __call__(self, data: bytes, name: str) -> np.ndarray:
        tensor, error, _ = await self.run_result(data, name)
        if error is not None:
            raise PreprocessError(name, error)
        return tensor

    def describe(self) -> dict:
        return {"preprocess": self.name, "modeled": False, "workers": self.workers}


class IdealPreprocessor:
    """Tensors prepared ahead (by ``tensor_backend``), looked up by the image's bytes.

    An image that was not prepared is still answered correctly (preprocessed on the spot) and
    counted in ``misses``, so a report can show that "ideal" was not ideal for it.
    """
    name = "ideal"
    modeled = False

    def __init__(self, spec: PipelineSpec, tensor_backend: str | None = None, workers: int = 1):
        self.tensor_backend = tensor_backend or best_tensor_backend()
        self._pool = PoolPreprocessor(spec, self.tensor_backend, workers)
        self._tensors: dict[bytes, np.ndarray] = {}
        self.misses = 0

    async def start(self) -> None:
        await self._pool.start()

    async def close(self) -> None:
        await self._pool.close()

    async def prepare(self, items: Iterable[bytes]) -> None:
        todo = [bytes(d) for d in items if bytes(d) not in self._tensors]
        results = await asyncio.gather(*(self._pool.run_result(d, f"<{len(d)} bytes>")
                                         for d in todo))
        for d, (t, err, _) in zip(todo, results):
            if err is None:
                t.setflags(write=False)
                self._tensors[d] = t
            # Bad images are not cached: each request for one fails with its own error.

    async def __call__(self, data: bytes, name: str) -> np.ndarray:
        t = self._tensors.get(data)
        if t is not None:
            return t
        self.misses += 1
        return await self._pool(data, name)

    def describe(self) -> dict:
        return {"preprocess": self.name, "modeled": False, "tensor_backend": self.tensor_backend,
                "prepared": len(self._tensors), "misses": self.misses}


class TensorsOnly:
    """No preprocessing: encoded images are refused (clients send tensors)."""
    name = "tensors"
    modeled = False

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def prepare(self, items: Iterable[bytes]) -> None:
        return None

    async def __call__(self, data: bytes, name: str) -> np.ndarray:
        raise PreprocessError(name, "this server takes preprocessed tensors only "
                                    "(preprocess='tensors')")

    def describe(self) -> dict:
        return {"preprocess": self.name, "modeled": False}


def image_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CycleTable:
    """RTL cycle counts per image (by SHA-256 of its bytes), cached in a JSON file::

        {"pipeline": "efficientnet_lite", "images": {"<sha256>": {"name": "a.jpg",
                                                                  "cycles": 123456}}}
    """

    def __init__(self, pipeline: str, entries: dict[str, dict] | None = None,
                 path: Path | None = None):
        self.pipeline = pipeline
        self.entries = dict(entries or {})
        self.path = path

    @classmethod
    def load(cls, path: str | Path, pipeline: str) -> "CycleTable":
        path = Path(path)
        if not path.exists():
            return cls(pipeline, {}, path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read cycle table {path}: {e}") from None
        if d.get("pipeline") not in (None, pipeline):
            raise ValueError(f"cycle table {path} is for pipeline {d.get('pipeline')!r}, not "
                             f"{pipeline!r}; cycle counts depend on the pipeline")
        return cls(pipeline, d.get("images", {}), path)

    def save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps({"pipeline": self.pipeline, "images": self.entries},
                                            indent=1) + "\n")

    def get(self, data: bytes) -> int | None:
        e = self.entries.get(image_key(data))
        return None if e is None else int(e["cycles"])

    def put(self, data: bytes, name: str, cycles: int) -> None:
        self.entries[image_key(data)] = {"name": name, "cycles": int(cycles)}


@dataclass
class FpgaParams:
    units: int = 1
    mhz: float = 150.0
    pcie_gbps: float = 7.0     # GB/s each way (PCIe Gen3 x8 after protocol overhead)
    pcie_latency_us: float = 2.0
    #: What crosses PCIe to the card: "rgb" (today's core takes pixels: the host decodes the
    #: JPEG with Pillow, for real, on the request path) or "jpeg" (a core with the JPEG decoder
    #: in hardware; then the cycle counts must come from that core).
    input: str = "rgb"


class FpgaModel:
    """A timing model of ``units`` accelerator units at ``mhz`` behind one PCIe link.

    Per image, in arrival order: with ``input="rgb"`` the host first decodes the JPEG (really,
    in the preprocessing pool: that cost is measured, not modeled); the input (RGB pixels or the
    JPEG) crosses the host-to-card direction of the link (shared by all units), waits for the
    earliest free unit (each unit buffers one job ahead, so the transfer overlaps the previous
    job), takes ``cycles / mhz`` there, and the tensor crosses the card-to-host direction. The
    request is answered with the golden tensor at that moment.
    """
    name = "fpga-model"
    modeled = True

    def __init__(self, spec: PipelineSpec, cycles: CycleTable, params: FpgaParams | None = None,
                 tensor_backend: str | None = None, workers: int = 1,
                 simulate_missing: bool = False):
        self.spec = spec
        self.params = params or FpgaParams()
        if self.params.units < 1 or self.params.mhz <= 0 or self.params.pcie_gbps <= 0 \
                or self.params.input not in ("rgb", "jpeg"):
            raise ValueError(f"fpga-model: bad parameters {self.params}")
        self.cycles = cycles
        self.simulate_missing = simulate_missing
        self._ideal = IdealPreprocessor(spec, tensor_backend, workers)
        self._unit_free = [0.0] * self.params.units
        self._h2c_free = 0.0
        self._c2h_free = 0.0
        self.out_bytes = int(np.prod(_out_shape(spec))) * np.dtype(spec.output.numpy_dtype).itemsize

    async def start(self) -> None:
        await self._ideal.start()

    async def close(self) -> None:
        await self._ideal.close()

    async def prepare(self, items: Iterable[bytes]) -> None:
        items = [bytes(d) for d in items]
        await self._ideal.prepare(items)
        missing = [d for d in items if self.cycles.get(d) is None]
        if missing and self.simulate_missing:
            _check_backend("rtl")
            acc = Accelerator(self.spec, "rtl")
            loop = asyncio.get_running_loop()
            for d in missing:
                r = await loop.run_in_executor(None, acc.run, d)
                if r.cycles is not None:
                    self.cycles.put(d, r.source, r.cycles)
            self.cycles.save()

    def schedule(self, now: float, in_bytes: int, cycles: int) -> float:
        """Reserve the link and a unit for one image arriving at ``now``; its delivery time."""
        p = self.params
        bw = p.pcie_gbps * 1e9
        lat = p.pcie_latency_us * 1e-6
        start = max(now, self._h2c_free)
        self._h2c_free = start + in_bytes / bw
        arrived = self._h2c_free + lat
        u = min(range(p.units), key=self._unit_free.__getitem__)
        done = max(arrived, self._unit_free[u]) + cycles / (p.mhz * 1e6)
        self._unit_free[u] = done
        out_start = max(done, self._c2h_free)
        self._c2h_free = out_start + self.out_bytes / bw
        return self._c2h_free + lat

    async def __call__(self, data: bytes, name: str) -> np.ndarray:
        import time
        cycles = self.cycles.get(data)
        if cycles is None:
            raise PreprocessError(name, "fpga-model has no RTL cycle count for this image; "
                                        "prepare it first (preba bench --fpga-cycles FILE, which "
                                        "runs the rtl backend when it is installed)")
        in_bytes = len(data)
        if self.params.input == "rgb":
            h, w = await self._ideal._pool.decode(data, name)  # the host's real decode
            in_bytes = w * h * 3
        now = time.perf_counter()
        deliver = self.schedule(now, in_bytes, cycles)
        tensor = await self._ideal(data, name)
        delay = deliver - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        return tensor

    def describe(self) -> dict:
        p = self.params
        return {"preprocess": self.name, "modeled": True,
                "model": f"MODEL of {p.units} accelerator unit(s) at {p.mhz:g} MHz with RTL "
                         f"cycle counts, PCIe {p.pcie_gbps:g} GB/s + {p.pcie_latency_us:g} us, "
                         f"{p.input} input" + (" (host JPEG decode measured)"
                                               if p.input == "rgb" else ""),
                "units": p.units, "mhz": p.mhz, "pcie_gbps": p.pcie_gbps, "input": p.input,
                "pcie_latency_us": p.pcie_latency_us,
                "tensor_backend": self._ideal.tensor_backend,
                "images_with_cycles": len(self.cycles.entries)}


def _out_shape(spec: PipelineSpec) -> tuple[int, ...]:
    from .models import _pipeline_shape
    return _pipeline_shape(spec)


def make_preprocessor(name: str, spec: PipelineSpec, *, workers: int = 1,
                      options: dict | None = None) -> RequestPreprocessor:
    """A request-path preprocessor by name (see module doc). ``options`` for fpga-model:
    ``cycles`` (path or CycleTable), ``units``, ``mhz``, ``pcie_gbps``, ``pcie_latency_us``,
    ``simulate_missing``; for pillow/golden/rtl: backend options."""
    from .accelerator import BACKENDS
    options = dict(options or {})
    if name == "fpga":  # a board behind one serial link: one process talks to it
        return PoolPreprocessor(spec, name, 1, options)
    if name in BACKENDS:
        return PoolPreprocessor(spec, name, workers, options)
    if name == "tensors":
        return TensorsOnly()
    if name == "ideal":
        return IdealPreprocessor(spec, options.get("tensor_backend"), workers)
    if name == "fpga-model":
        cyc = options.pop("cycles", None)
        if cyc is None:
            raise ValueError("fpga-model needs RTL cycle counts: a cycles JSON (--fpga-cycles)")
        table = cyc if isinstance(cyc, CycleTable) else CycleTable.load(cyc, spec.name)
        params = FpgaParams(**{k: options.pop(k) for k in list(options)
                               if k in FpgaParams.__dataclass_fields__})
        return FpgaModel(spec, table, params, options.get("tensor_backend"), workers,
                         bool(options.get("simulate_missing", False)))
    raise ValueError(f"unknown preprocessing {name!r}; choose one of {', '.join(PREPROCESSORS)}")
