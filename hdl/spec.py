"""The declarative pipeline spec: one description that yields the golden model and the RTL.

A spec is a frozen dataclass tree. It comes from a built-in preset (``imagenet``, ``rgb8``) or
from a TOML file with the same fields::

    [pipeline]
    name = "mynet"
    max_width = 8192
    max_height = 8192
    jpeg_decoder = true       # hardware JPEG decoder in front (a `jpg` byte input)
    dct_scaling = false       # decode JPEGs at 1/2, 1/4, 1/8 when the resize still gets enough

    [resize]
    shorter_side = 256        # or: size = [W, H]

    [crop]
    center = [224, 224]       # or: box = [x, y, w, h]   (in resized coordinates)

    [normalize]
    mean = [0.485, 0.456, 0.406]
    std = [0.229, 0.224, 0.225]

    [output]
    dtype = "float16"         # float16 | bfloat16 | uint8 | int8
    layout = "CHW"            # CHW | HWC
    scale = 0.02              # uint8/int8 with normalize: q = round(z / scale) + zero_point
    zero_point = 0

Every invalid value raises :class:`SpecError` naming the field, the value and what is allowed.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "SpecError", "ResizeSpec", "CropSpec", "NormalizeSpec", "OutputSpec", "PipelineSpec",
    "PRESETS", "load_pipeline", "IMAGENET_MEAN", "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Hard limit of the 16-bit dimension fields in the hardware's job header.
DIM_LIMIT = 65535
DTYPES = ("float16", "bfloat16", "uint8", "int8")
LAYOUTS = ("CHW", "HWC")


class SpecError(ValueError):
    """An invalid pipeline spec: the message names the field, the value and the allowed range."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"pipeline spec: {field_name} = {value!r} is invalid: {allowed}")


def _check_dim(name: str, v: Any, lo: int = 1, hi: int = DIM_LIMIT) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise SpecError(name, v, f"must be an integer in [{lo}, {hi}]")
    return v


def _check_pair(name: str, v: Any, hi: int = DIM_LIMIT) -> tuple[int, int]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise SpecError(name, v, "must be a pair [width, height]")
    return (_check_dim(f"{name}[0]", v[0], hi=hi), _check_dim(f"{name}[1]", v[1], hi=hi))


@dataclass(frozen=True)
class ResizeSpec:
    """Resize with Pillow's antialiased BILINEAR (triangle) filter.

    Exactly one of ``shorter_side`` (torchvision ``Resize(n)`` sizing: the shorter side becomes n,
    the longer one ``int(n * long / short)``) or ``size`` (exact ``(width, height)``).
    """
    shorter_side: int | None = None
    size: tuple[int, int] | None = None
    filter: str = "bilinear"

    def validate(self) -> None:
        if (self.shorter_side is None) == (self.size is None):
            raise SpecError("resize", {"shorter_side": self.shorter_side, "size": self.size},
                            "give exactly one of shorter_side or size")
        if self.shorter_side is not None:
            _check_dim("resize.shorter_side", self.shorter_side)
        if self.size is not None:
            _check_pair("resize.size", self.size)
        if self.filter != "bilinear":
            raise SpecError("resize.filter", self.filter, "only 'bilinear' (antialiased triangle, "
                            "Pillow's Image.BILINEAR) is implemented in hardware")

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The resized (width, height) for an input image, as torchvision computes it."""
        if self.size is not None:
            return self.size
        n = self.shorter_side
        if width <= height:
            return n, int(n * height / width)
        return int(n * width / height), n


@dataclass(frozen=True)
class CropSpec:
    """Center crop ``(w, h)`` with torchvision ``CenterCrop`` offsets, or a fixed box."""
    center: tuple[int, int] | None = None
    box: tuple[int, int, int, int] | None = None

    def validate(self) -> None:
        if (self.center is None) == (self.box is None):
            raise SpecError("crop", {"center": self.center, "box": self.box},
                            "give exactly one of center or box")
        if self.center is not None:
            _check_pair("crop.center", self.center)
        if self.box is not None:
            b = self.box
            if not isinstance(b, (list, tuple)) or len(b) != 4:
                raise SpecError("crop.box", b, "must be [x, y, w, h]")
            _check_dim("crop.box[0]", b[0], lo=0)
            _check_dim("crop.box[1]", b[1], lo=0)
            _check_dim("crop.box[2]", b[2])
            _check_dim("crop.box[3]", b[3])

    @property
    def out_size(self) -> tuple[int, int]:
        return self.center if self.center is not None else (self.box[2], self.box[3])

    def window(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) of the crop inside a ``width`` x ``height`` image, or None if it does not
        fit (no padding is done)."""
        if self.center is not None:
            cw, ch = self.center
            if cw > width or ch > height:
                return None
            # torchvision CenterCrop: int(round((size - crop) / 2.0)), Python's round (half even).
            return int(round((width - cw) / 2.0)), int(round((height - ch) / 2.0)), cw, ch
        x, y, w, h = self.box
        if x + w > width or y + h > height:
            return None
        return x, y, w, h


@dataclass(frozen=True)
class NormalizeSpec:
    """``z = (pixel / 255 - mean[c]) / std[c]`` per channel."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def validate(self) -> None:
        for name, vals in (("mean", self.mean), ("std", self.std)):
            if not isinstance(vals, (list, tuple)) or len(vals) != 3:
                raise SpecError(f"normalize.{name}", vals, "must be 3 numbers (R, G, B)")
            for i, v in enumerate(vals):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise SpecError(f"normalize.{name}[{i}]", v, "must be a finite number")
        for i, v in enumerate(self.mean):
            if not -1000.0 <= v <= 1000.0:
                raise SpecError(f"normalize.mean[{i}]", v, "must be in [-1000, 1000]")
        for i, v in enumerate(self.std):
            if not 1e-3 <= abs(v) <= 1e3:
                raise SpecError(f"normalize.std[{i}]", v, "|std| must be in [0.001, 1000]")


@dataclass(frozen=True)
class OutputSpec:
    dtype: str = "float16"
    layout: str = "CHW"
    #: Quantization of the normalized value for uint8/int8: q = round(z / scale) + zero_point.
    scale: float | None = None
    zero_point: int = 0

    def validate(self, has_normalize: bool) -> None:
        if self.dtype not in DTYPES:
            raise SpecError("output.dtype", self.dtype, f"must be one of {', '.join(DTYPES)}")
        if self.layout not in LAYOUTS:
            raise SpecError("output.layout", self.layout, f"must be one of {', '.join(LAYOUTS)}")
        integer = self.dtype in ("uint8", "int8")
        if integer and has_normalize:
            if self.scale is None or isinstance(self.scale, bool) or not isinstance(
                    self.scale, (int, float)) or not 1e-4 <= self.scale <= 1e4:
                raise SpecError("output.scale", self.scale,
                                f"{self.dtype} output of normalized values needs a scale in "
                                "[0.0001, 10000]")
            lo, hi = (0, 255) if self.dtype == "uint8" else (-128, 127)
            if isinstance(self.zero_point, bool) or not isinstance(self.zero_point, int) \
                    or not lo <= self.zero_point <= hi:
                raise SpecError("output.zero_point", self.zero_point,
                                f"must be an integer in [{lo}, {hi}] for {self.dtype}")
        elif self.dtype == "int8":
            raise SpecError("output.dtype", self.dtype,
                            "int8 output needs a [normalize] section and output.scale")
        elif self.scale is not None and not integer:
            raise SpecError("output.scale", self.scale,
                            "only uint8/int8 outputs take a scale; remove it for float outputs")
        elif self.scale is not None:
            raise SpecError("output.scale", self.scale,
                            "uint8 without [normalize] is the raw pixel; remove the scale")

    @property
    def element_bits(self) -> int:
        return 16 if self.dtype in ("float16", "bfloat16") else 8

    @property
    def numpy_dtype(self) -> str:
        # bfloat16 has no numpy dtype: it is carried as its raw uint16 bit pattern.
        return {"float16": "float16", "bfloat16": "uint16", "uint8": "uint8",
                "int8": "int8"}[self.dtype]


@dataclass(frozen=True)
class PipelineSpec:
    name: str = "custom"
    max_width: int = 8192
    max_height: int = 8192
    resize: ResizeSpec | None = None
    crop: CropSpec | None = None
    normalize: NormalizeSpec | None = None
    output: OutputSpec = field(default_factory=OutputSpec)
    #: Widest tensor row the vertical stage must hold (derived from resize/crop when they fix it).
    max_output_width: int | None = None
    #: Put the hardware JPEG decoder in front of the pipeline (a ``jpg`` byte-stream input).
    jpeg_decoder: bool = True
    #: DCT-domain downscaling: decode a JPEG at 1/2, 1/4 or 1/8 of its size with libjpeg's
    #: scaled IDCTs whenever the decoded image still has at least as many pixels as the resize
    #: produces in each direction (see :meth:`jpeg_scale_denom`). The RTL is the same either way
    #: (the scale is a per-job field); it changes what the host asks for.
    dct_scaling: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.name, str) or not self.name.replace("_", "").replace("-", "").isalnum():
            raise SpecError("pipeline.name", self.name, "must be letters, digits, '-' or '_'")
        _check_dim("pipeline.max_width", self.max_width, hi=16384)
        _check_dim("pipeline.max_height", self.max_height, hi=16384)
        if self.resize is not None:
            self.resize.validate()
        if self.crop is not None:
            self.crop.validate()
            if self.resize is not None:
                cw, ch = self.crop.out_size
                if self.resize.size is not None:
                    rw, rh = self.resize.size
                    if cw > rw or ch > rh:
                        raise SpecError("crop", self.crop.center or self.crop.box,
                                        f"the crop must fit inside resize.size {rw}x{rh}")
                elif self.crop.center is not None:
                    n = self.resize.shorter_side
                    if cw > n or ch > n:
                        raise SpecError("crop.center", self.crop.center,
                                        f"must fit inside the resized shorter side {n}")
        if self.normalize is not None:
            self.normalize.validate()
        self.output.validate(self.normalize is not None)
        if self.max_output_width is not None:
            _check_dim("pipeline.max_output_width", self.max_output_width, hi=16384)
        if not isinstance(self.jpeg_decoder, bool):
            raise SpecError("pipeline.jpeg_decoder", self.jpeg_decoder, "must be true or false")
        if not isinstance(self.dct_scaling, bool):
            raise SpecError("pipeline.dct_scaling", self.dct_scaling, "must be true or false")
        if self.dct_scaling and (self.resize is None or not self.jpeg_decoder):
            raise SpecError("pipeline.dct_scaling", self.dct_scaling,
                            "needs a [resize] section and jpeg_decoder = true (scaled decoding "
                            "only replaces part of a downscale)")
        # The fixed-point normalize stage must be able to represent this spec's constants.
        from .fixedpoint import normalize_constants
        normalize_constants(self)

    @property
    def out_width_limit(self) -> int:
        """Depth of the vertical stage's row memories: the widest output row."""
        if self.crop is not None:
            return self.crop.out_size[0]
        if self.resize is not None and self.resize.size is not None:
            return self.resize.size[0]
        return self.max_output_width or self.max_width

    def jpeg_scale_denom(self, width: int, height: int) -> int:
        """The DCT scaling denominator (1, 2, 4 or 8) for a ``width`` x ``height`` JPEG: the
        largest whose decoded size ``ceil(W/d) x ceil(H/d)`` is still at least the resized size
        in both directions, so the resize never gets fewer pixels than it needs. 1 without
        ``dct_scaling``."""
        if not self.dct_scaling or self.resize is None:
            return 1
        rw, rh = self.resize.output_size(width, height)
        for d in (8, 4, 2):
            if -(-width // d) >= rw and -(-height // d) >= rh:
                return d
        return 1

    def output_geometry(self, width: int, height: int, denom: int = 1) -> "Geometry":
        """Where an input of ``width`` x ``height`` goes: resized size, crop window, tensor size.

        ``denom``: the image reaches the resize decoded at 1/denom (DCT scaling); the resized
        size is still computed from the full ``width`` x ``height``, so the tensor is the same
        shape either way. Raises ValueError (with a message fit for a user) when the image
        cannot be processed.
        """
        if not (1 <= width <= self.max_width and 1 <= height <= self.max_height):
            raise ValueError(f"image size {width}x{height} is outside this pipeline's supported "
                             f"range 1x1 to {self.max_width}x{self.max_height}")
        if denom not in (1, 2, 4, 8) or (denom > 1 and self.resize is None):
            raise ValueError(f"decode scale 1/{denom}: must be 1, 1/2, 1/4 or 1/8, and below 1 "
                             f"only with a resize")
        rw, rh = self.resize.output_size(width, height) if self.resize else (width, height)
        if self.crop is not None:
            win = self.crop.window(rw, rh)
            if win is None:
                raise ValueError(f"crop {self.crop.center or self.crop.box} does not fit the "
                                 f"{'resized ' if self.resize else ''}image of {rw}x{rh}")
        else:
            win = (0, 0, rw, rh)
        if win[2] > self.out_width_limit:
            raise ValueError(f"output width {win[2]} exceeds this pipeline's max_output_width "
                             f"{self.out_width_limit}")
        if rw > 1 << 24 or rh > 1 << 24:
            raise ValueError(f"resized size {rw}x{rh} is too large")
        return Geometry(-(-width // denom), -(-height // denom), rw, rh, *win, denom)

    def output_shape(self, out_w: int, out_h: int) -> tuple[int, int, int]:
        return (3, out_h, out_w) if self.output.layout == "CHW" else (out_h, out_w, 3)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"pipeline": {"name": self.name, "max_width": self.max_width,
                                          "max_height": self.max_height,
                                          "jpeg_decoder": self.jpeg_decoder}}
        if self.dct_scaling:
            d["pipeline"]["dct_scaling"] = True
        if self.max_output_width is not None:
            d["pipeline"]["max_output_width"] = self.max_output_width
        if self.resize:
            d["resize"] = {k: v for k, v in (("shorter_side", self.resize.shorter_side),
                                            ("size", self.resize.size),
                                            ("filter", self.resize.filter)) if v is not None}
        if self.crop:
            d["crop"] = {k: v for k, v in (("center", self.crop.center), ("box", self.crop.box))
                         if v is not None}
        if self.normalize:
            d["normalize"] = {"mean": list(self.normalize.mean), "std": list(self.normalize.std)}
        o = {"dtype": self.output.dtype, "layout": self.output.layout}
        if self.output.scale is not None:
            o["scale"] = self.output.scale
            o["zero_point"] = self.output.zero_point
        d["output"] = o
        return d


@dataclass(frozen=True)
class Geometry:
    """Per-image geometry: input size (as it enters the resize: decoded at 1/``denom``),
    resized size, crop window (in resized coordinates)."""
    in_w: int
    in_h: int
    resized_w: int
    resized_h: int
    crop_x: int
    crop_y: int
    out_w: int
    out_h: int
    denom: int = 1


PRESETS: dict[str, PipelineSpec] = {
    "imagenet": PipelineSpec(
        name="imagenet",
        resize=ResizeSpec(shorter_side=256),
        crop=CropSpec(center=(224, 224)),
        normalize=NormalizeSpec(IMAGENET_MEAN, IMAGENET_STD),
        output=OutputSpec(dtype="float16", layout="CHW"),
    ),
    "rgb8": PipelineSpec(
        name="rgb8",
        output=OutputSpec(dtype="uint8", layout="HWC"),
    ),
    # What EfficientNet-Lite was trained with: z = (x - 127) / 128 on 0..255 pixels (the
    # TensorFlow reference's MEAN_RGB = 127, STDDEV_RGB = 128), not the ImageNet mean/std; the
    # pretrained weights give clearly higher top-1 confidence with it (see pyhost/models.py).
    "efficientnet_lite": PipelineSpec(
        name="efficientnet_lite",
        resize=ResizeSpec(shorter_side=256),
        crop=CropSpec(center=(224, 224)),
        normalize=NormalizeSpec(mean=(127 / 255,) * 3, std=(128 / 255,) * 3),
        output=OutputSpec(dtype="float16", layout="CHW"),
    ),
}

_SECTIONS = {"pipeline", "resize", "crop", "normalize", "output"}


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v


def spec_from_dict(d: dict, default_name: str = "custom") -> PipelineSpec:
    unknown = set(d) - _SECTIONS
    if unknown:
        raise SpecError(sorted(unknown)[0], d[sorted(unknown)[0]],
                        f"unknown section; allowed: {', '.join(sorted(_SECTIONS))}")

    def section(name, allowed):
        s = d.get(name)
        if s is None:
            return None
        if not isinstance(s, dict):
            raise SpecError(name, s, "must be a table")
        bad = set(s) - set(allowed)
        if bad:
            k = sorted(bad)[0]
            raise SpecError(f"{name}.{k}", s[k], f"unknown field; allowed: {', '.join(allowed)}")
        return {k: _tuple(v) for k, v in s.items()}

    p = section("pipeline", ["name", "max_width", "max_height", "max_output_width",
                             "jpeg_decoder", "dct_scaling"]) or {}
    r = section("resize", ["shorter_side", "size", "filter"])
    c = section("crop", ["center", "box"])
    n = section("normalize", ["mean", "std"])
    o = section("output", ["dtype", "layout", "scale", "zero_point"]) or {}
    return PipelineSpec(
        name=p.get("name", default_name),
        max_width=p.get("max_width", 8192),
        max_height=p.get("max_height", 8192),
        max_output_width=p.get("max_output_width"),
        jpeg_decoder=p.get("jpeg_decoder", True),
        dct_scaling=p.get("dct_scaling", False),
        resize=ResizeSpec(**r) if r is not None else None,
        crop=CropSpec(**c) if c is not None else None,
        normalize=NormalizeSpec(**n) if n is not None else None,
        output=OutputSpec(**o),
    )


def load_pipeline(name_or_path: str | Path | PipelineSpec) -> PipelineSpec:
    """A preset name (``imagenet``, ``rgb8``) or the path of a TOML file."""
    if isinstance(name_or_path, PipelineSpec):
        return name_or_path
    s = str(name_or_path)
    if s in PRESETS:
        return PRESETS[s]
    path = Path(s)
    if path.suffix != ".toml":
        raise SpecError("--pipeline", s, f"must be a preset ({', '.join(PRESETS)}) or a .toml file")
    if not path.is_file():
        raise SpecError("--pipeline", s, "file not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError("--pipeline", s, f"not valid TOML: {e}") from None
    return spec_from_dict(data, default_name=path.stem.replace(".", "_"))


def with_limits(spec: PipelineSpec, **kw) -> PipelineSpec:
    return replace(spec, **kw)
