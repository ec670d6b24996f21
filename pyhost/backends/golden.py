"""The golden-model backend: host decode (Pillow), then the numpy model of the core."""
from __future__ import annotations

from hdl.golden.pipeline import GoldenError, run_golden
from hdl.spec import PipelineSpec
from ..accelerator import PreprocessError, Result, check_hardware_jpeg, decode_rgb


class GoldenBackend:
    def __init__(self, spec: PipelineSpec):
        self.spec = spec

    def run(self, data: bytes, name: str) -> Result:
        check_hardware_jpeg(data, name, self.spec)
        rgb = decode_rgb(data, name)
        try:
            return Result(name, run_golden(self.spec, rgb))
        except GoldenError as e:
            raise PreprocessError(name, str(e), int(e.status)) from None
