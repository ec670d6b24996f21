"""The golden-model backend: host decode, then the numpy model of the core.

JPEGs the hardware would decode at a reduced DCT scale (``spec.dct_scaling``) go through the
golden JPEG decoder at that scale; everything else is decoded by Pillow, which is bit-identical
to the golden decoder at full scale and much faster.
"""
from __future__ import annotations

from hdl.golden.pipeline import GoldenError, run_golden, run_golden_jpeg
from hdl.jpeg import JpegError
from hdl.spec import PipelineSpec
from ..accelerator import PreprocessError, Result, check_hardware_jpeg, decode_rgb


class GoldenBackend:
    def __init__(self, spec: PipelineSpec):
        self.spec = spec

    def run(self, data: bytes, name: str) -> Result:
        check_hardware_jpeg(data, name, self.spec)
        try:
            if self.spec.dct_scaling and data[:2] == b"\xff\xd8":
                return Result(name, run_golden_jpeg(self.spec, data))
            return Result(name, run_golden(self.spec, decode_rgb(data, name)))
        except GoldenError as e:
            raise PreprocessError(name, str(e), int(e.status)) from None
        except JpegError as e:
            raise PreprocessError(name, e.message, int(e.code)) from None
