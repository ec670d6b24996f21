"""One image's job for the core: geometry, resample schedules, and the cfg words that carry them.

The host computes everything that needs division or floating point (output size, crop offsets,
filter weights) and sends it ahead of the pixels. The core checks what it receives against its
limits and reports a status code instead of trusting it.

cfg word stream (32-bit words, fields LSB first):

======  =========================================================================
word 0  ``in_w[15:0]``, ``in_h[31:16]``
word 1  ``out_w[15:0]``, ``out_h[31:16]``      (tensor size, after resize and crop)
word 2  ``h_steps[15:0]``, ``v_steps[31:16]``  (schedule lengths; 0 without resize)
word 3  ``h_mode[0]``, ``v_mode[1]``            (0 scatter/downscale, 1 gather/upscale),
        ``src_jpeg[2]``                          (pixels from the JPEG decoder's ``jpg`` input),
        ``jpeg_scale[4:3]``                      (decode at 1/2**jpeg_scale with scaled IDCTs;
                                                 ``in_w``/``in_h`` are then the decoded size)
word 4  ``crop_x[15:0]``, ``crop_y[31:16]``    (crop window origin, when there is no resize)
word 5  ``out_base``                           (element offset of this tensor in the output buffer)
then    ``h_steps`` steps, then ``v_steps`` steps, each STEP_WORDS words (see resample.STEP_FIELDS)
======  =========================================================================
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from .resample import STEP_WORDS, Schedule, ScheduleError, build_schedule
from .spec import Geometry, PipelineSpec

__all__ = ["Status", "Job", "build_job", "HEADER_WORDS", "JobError", "bad_dims_job"]

HEADER_WORDS = 6


class Status(IntEnum):
    """Status codes reported by the core after each job (and by the golden model)."""
    OK = 0
    BAD_DIMS = 1          # width/height zero or above the pipeline's limits
    BAD_TABLE = 2         # schedule lengths do not fit the table memories
    SHORT_FRAME = 3       # `last` arrived before width*height pixels
    LONG_FRAME = 4        # more than width*height pixels before `last`
    STALL = 5             # the datapath made no progress (tables inconsistent with the image)

    @property
    def message(self) -> str:
        return _STATUS_MESSAGES[self]


_STATUS_MESSAGES = {
    Status.OK: "ok",
    Status.BAD_DIMS: "image dimensions are zero or exceed the pipeline's limits",
    Status.BAD_TABLE: "resample tables do not fit the hardware's table memories",
    Status.SHORT_FRAME: "pixel stream ended before width*height pixels",
    Status.LONG_FRAME: "pixel stream had more than width*height pixels",
    Status.STALL: "datapath stalled: tables inconsistent with the image",
}


class JobError(ValueError):
    pass


@dataclass(frozen=True)
class Job:
    geometry: Geometry
    hsched: Schedule | None
    vsched: Schedule | None
    out_base: int = 0
    words: np.ndarray = field(repr=False, default=None)

    @property
    def pixels_out(self) -> int:
        return self.geometry.out_w * self.geometry.out_h


def _header(in_w, in_h, out_w, out_h, h_steps, v_steps, h_mode, v_mode, crop_x, crop_y,
            out_base, src_jpeg=False, denom=1) -> np.ndarray:
    for name, v in (("in_w", in_w), ("in_h", in_h), ("out_w", out_w), ("out_h", out_h),
                    ("h_steps", h_steps), ("v_steps", v_steps), ("crop_x", crop_x),
                    ("crop_y", crop_y)):
        if not 0 <= v <= 0xFFFF:
            raise JobError(f"{name} = {v} does not fit the 16-bit header field")
    return np.array([in_w | in_h << 16, out_w | out_h << 16, h_steps | v_steps << 16,
                     h_mode | v_mode << 1 | int(src_jpeg) << 2
                     | (denom.bit_length() - 1) << 3, crop_x | crop_y << 16,
                     out_base & 0xFFFFFFFF],
                    np.uint32)


def build_job(spec: PipelineSpec, width: int, height: int, out_base: int = 0,
              jpeg: bool = False) -> Job:
    """The job for an image of ``width`` x ``height`` (raises ValueError if it cannot be done).
    ``jpeg``: the image comes as JPEG bytes on the ``jpg`` input (the spec must have the
    decoder; with ``spec.dct_scaling`` it is decoded at the scale
    :meth:`~hdl.spec.PipelineSpec.jpeg_scale_denom` picks); else as pixels on ``pix``."""
    if jpeg and not spec.jpeg_decoder:
        raise JobError(f"pipeline {spec.name!r} has no JPEG decoder (jpeg_decoder = false)")
    denom = spec.jpeg_scale_denom(width, height) if jpeg else 1
    g = spec.output_geometry(width, height, denom)
    if spec.resize is not None:
        try:
            hs = build_schedule(g.in_w, g.resized_w, g.crop_x, g.out_w)
            vs = build_schedule(g.in_h, g.resized_h, g.crop_y, g.out_h)
        except ScheduleError as e:
            raise JobError(f"resize {g.in_w}x{g.in_h} -> {g.resized_w}x{g.resized_h} cannot be "
                           f"scheduled: {e}") from None
        head = _header(g.in_w, g.in_h, g.out_w, g.out_h, len(hs), len(vs), hs.mode, vs.mode,
                       0, 0, out_base, jpeg, denom)
        words = np.concatenate([head, hs.pack(), vs.pack()])
    else:
        hs = vs = None
        head = _header(g.in_w, g.in_h, g.out_w, g.out_h, 0, 0, 0, 0, g.crop_x, g.crop_y,
                       out_base, jpeg)
        words = head
    return Job(g, hs, vs, out_base, words)


def bad_dims_job(width: int, height: int) -> np.ndarray:
    """cfg words announcing an image the core must reject (for testing its error path)."""
    return _header(width & 0xFFFF, height & 0xFFFF, 1, 1, 0, 0, 0, 0, 0, 0, 0)


def pack_jpeg(data: bytes) -> np.ndarray:
    """A JPEG file → one ``jpg`` payload word per byte, ``last`` set on the final one."""
    words = np.frombuffer(bytes(data), np.uint8).astype(np.uint32)
    if len(words):
        words[-1] |= 1 << 8
    return words


def pack_pixels(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 → one ``pix`` payload word per pixel, ``last`` set on the final one."""
    flat = rgb.reshape(-1, 3).astype(np.uint32)
    words = flat[:, 0] | flat[:, 1] << 8 | flat[:, 2] << 16
    if len(words):
        words[-1] |= 1 << 24
    return words


STEP_WORDS = STEP_WORDS


def tensor_shape(spec: PipelineSpec, job: Job) -> tuple[int, int, int]:
    return spec.output_shape(job.geometry.out_w, job.geometry.out_h)


def channel_stride(spec: PipelineSpec, job: Job) -> int:
    return job.geometry.out_w * job.geometry.out_h if spec.output.layout == "CHW" else 1


def assemble_tensor(spec: PipelineSpec, job: Job, offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Place the core's ``out`` beats (element offsets, (n, 3) element bit patterns) into the
    tensor, exactly as a DMA engine would; every element must be written exactly once."""
    shape = tensor_shape(spec, job)
    n = shape[0] * shape[1] * shape[2]
    stride = channel_stride(spec, job)
    bits = 16 if spec.output.element_bits == 16 else 8
    flat = np.zeros(n, np.uint16 if bits == 16 else np.uint8)
    hits = np.zeros(n, np.int32)
    offsets = np.asarray(offsets, np.int64) - job.out_base
    data = np.asarray(data)
    for c in range(3):
        idx = offsets + c * stride
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise JobError(f"output offset {int(idx.max())} outside the {shape} tensor")
        flat[idx] = data[:, c]
        np.add.at(hits, idx, 1)
    if not (hits == 1).all():
        raise JobError(f"{int((hits == 0).sum())} tensor elements missing and "
                       f"{int((hits > 1).sum())} written more than once")
    return flat.view(np.dtype(spec.output.numpy_dtype)).reshape(shape)
