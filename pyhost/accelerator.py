"""The accelerator API: JPEG or image file in, preprocessed tensor out.

Backends:

- ``pillow``: today's CPU way: Pillow decode, ``resize(BILINEAR)``, crop, float32 normalize,
  cast. What users run without an accelerator.
- ``golden``: the numpy golden model, bit-exact with the RTL.
- ``rtl``: the generated Verilog, simulated cycle-accurately on Verilator (correctness and cycle
  counts, not speed).
- ``fpga``: a board running the pipeline's bitstream, over its serial link (``port=...``); the
  same host code talks to the simulated board through a pseudo-terminal.
"""
from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from hdl.spec import PipelineSpec, load_pipeline

__all__ = ["Accelerator", "PreprocessError", "Result", "BACKENDS", "Source"]

BACKENDS = ("pillow", "golden", "rtl", "fpga")
Source = Union[bytes, bytearray, memoryview, str, os.PathLike]


class PreprocessError(Exception):
    """One image could not be preprocessed. ``source`` names it; the message says what to do."""

    def __init__(self, source: str, message: str, code: int | None = None):
        self.source = source
        self.message = message
        self.code = code
        super().__init__(f"{source}: {message}")


@dataclass
class Result:
    """One image's outcome: the tensor, or the error; cycles/sim_seconds for the rtl backend."""
    source: str
    tensor: np.ndarray | None
    error: str | None = None
    cycles: int | None = None
    sim_seconds: float | None = None
    extra: dict = field(default_factory=dict)


def source_name(src: Source) -> str:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    return os.fspath(src)


def read_source(src: Source) -> bytes:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    try:
        return Path(src).read_bytes()
    except OSError as e:
        raise PreprocessError(source_name(src), f"cannot read file: {e.strerror}") from None


def check_hardware_jpeg(data: bytes, name: str, spec: PipelineSpec) -> None:
    """Reject, with the hardware decoder's own reason, a JPEG it cannot decode (progressive,
    arithmetic, 12-bit, CMYK, unsupported sampling, too large): the golden and rtl backends model
    that decoder. Header only, so it costs microseconds."""
    if data[:2] != b"\xff\xd8":
        return
    from hdl.jpeg import JpegError, read_header
    try:
        read_header(data, max_width=spec.max_width, max_height=spec.max_height)
    except JpegError as e:
        raise PreprocessError(name, e.message, int(e.code)) from None


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """Decode any image Pillow reads into HxWx3 uint8 (the host-side decode). For the baseline
    JPEGs the hardware decoder accepts, Pillow's decode is bit-identical to hdl.jpeg's."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise PreprocessError(name, "not an image file (no JPEG, PNG, ... signature); check "
                                    "the file") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise PreprocessError(name, f"corrupt or truncated image: {e}") from None


class Accelerator:
    """Preprocess images with one pipeline spec on one backend.

    >>> acc = Accelerator("imagenet", backend="golden")
    >>> tensor = acc.preprocess("cat.jpg")        # (3, 224, 224) float16
    """

    def __init__(self, pipeline: str | Path | PipelineSpec = "imagenet", backend: str = "golden",
                 **options):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.spec = load_pipeline(pipeline)
        self.backend = backend
        self.options = options
        self._impl = _make_backend(self.spec, backend, options)

    def __repr__(self) -> str:
        return f"Accelerator(pipeline={self.spec.name!r}, backend={self.backend!r})"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.spec.output.numpy_dtype)

    def preprocess(self, src: Source) -> np.ndarray:
        """The tensor for one image; raises PreprocessError naming the image."""
        r = self.run(src)
        if r.error is not None:
            raise PreprocessError(r.source, r.error)
        return r.tensor

    def run(self, src: Source) -> Result:
        """Like preprocess, but returns failures in the Result instead of raising."""
        name = source_name(src)
        try:
            data = read_source(src)
            return self._impl.run(data, name)
        except PreprocessError as e:
            return Result(name, None, e.message)

    def run_many(self, sources: Iterable[Source], jobs: int = 1, progress: bool = False) -> list[Result]:
        """Every image's Result, in order; ``jobs`` > 1 runs images in parallel processes."""
        sources = list(sources)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(sources), unit="img", desc=f"{self.backend}")
        results: list[Result] = []
        if jobs <= 1 or len(sources) <= 1:
            for s in sources:
                results.append(self.run(s))
                if bar:
                    bar.update()
        else:
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(max_workers=jobs) as ex:
                futs = [ex.submit(_run_one, self.spec, self.backend, self.options, s)
                        for s in sources]
                for f in futs:
                    results.append(f.result())
                    if bar:
                        bar.update()
        if bar:
            bar.close()
        return results


def _run_one(spec, backend, options, src):
    return Accelerator(spec, backend, **options).run(src)


def _make_backend(spec: PipelineSpec, backend: str, options: dict):
    if backend == "pillow":
        from .backends.pillow import PillowBackend
        return PillowBackend(spec, **options)
    if backend == "golden":
        from .backends.golden import GoldenBackend
        return GoldenBackend(spec, **options)
    if backend == "fpga":
        from .backends.fpga import FpgaBackend
        return FpgaBackend(spec, **options)
    from .backends.rtl import RtlBackend
    return RtlBackend(spec, **options)
