"""Latency profiles: latency percentiles and throughput against batch size, per partition kind.

A profile is what every batching decision and ``mig plan`` reads. ``preba profile`` measures one
(JSON below); the server can also measure a short one while its workers warm up.

Knee method
-----------
Tail latency against batch size is flat while the partition has idle parallelism, then grows
roughly linearly once it is saturated. ``Batch_knee`` is the batch size at that corner:

1. Normalize batch size and p99 latency to [0, 1] (x = (b - b_min) / (b_max - b_min),
   y likewise) and draw the chord from the first to the last point.
2. The knee is the point with the largest distance *below* the chord (Kneedle / "max distance to
   the chord"): for L(b) = max(c, a*b) that is exactly b = c / a.
3. If no point lies more than 2% below the chord, the curve has no corner (latency is linear in b
   from the start, as on a CPU): the knee is then the first batch size whose p99 per image is
   within 10% of the best p99 per image, i.e. where batching stops paying.

``Time_knee`` is the p99 latency at ``Batch_knee``.

JSON::

    {"model": ..., "device": ..., "source": "measured" | ..., "knee_method": ...,
     "partitions": {"cpu:1t": {"padded": false, "batch_knee": 4, "time_knee_ms": 55.0,
                               "batches": [{"batch": 1, "p50_ms": .., "p95_ms": .., "p99_ms": ..,
                                            "mean_ms": .., "throughput_ips": .., "samples": 20},
                                           ...]}}}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = ["BatchStats", "PartitionProfile", "Profile", "find_knee", "KNEE_METHOD",
           "stats_from_samples", "percentile"]

KNEE_METHOD = ("max distance below the chord of normalized p99-vs-batch; if none is >2% below, "
               "the first batch whose p99 per image is within 10% of the best")

CHORD_MIN_DISTANCE = 0.02
PER_IMAGE_TOLERANCE = 0.10


class ProfileKeyError(KeyError):
    """A profile lacks a partition kind (the message says which it has)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank-interpolated percentile; NaN for no values."""
    if len(values) == 0:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@dataclass(frozen=True)
class BatchStats:
    batch: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    throughput_ips: float
    samples: int = 0

    def to_dict(self) -> dict:
        return {"batch": self.batch, "p50_ms": round(self.p50_ms, 4),
                "p95_ms": round(self.p95_ms, 4), "p99_ms": round(self.p99_ms, 4),
                "mean_ms": round(self.mean_ms, 4),
                "throughput_ips": round(self.throughput_ips, 2), "samples": self.samples}


def stats_from_samples(batch: int, samples_ms: Sequence[float]) -> BatchStats:
    mean = float(np.mean(samples_ms))
    return BatchStats(batch, percentile(samples_ms, 50), percentile(samples_ms, 95),
                      percentile(samples_ms, 99), mean, batch * 1000.0 / mean, len(samples_ms))


def find_knee(batches: Sequence[int], p99_ms: Sequence[float]) -> int:
    """Batch_knee by the method in the module doc."""
    b = np.asarray(batches, dtype=np.float64)
    y = np.asarray(p99_ms, dtype=np.float64)
    if len(b) == 0:
        raise ValueError("a profile needs at least one batch size")
    if len(b) <= 2:
        per_image = y / b
        return int(b[int(np.argmin(per_image))])
    xn = (b - b[0]) / (b[-1] - b[0])
    span = y.max() - y.min()
    yn = (y - y.min()) / span if span > 0 else np.zeros_like(y)
    chord = yn[0] + (yn[-1] - yn[0]) * xn
    below = chord - yn
    i = int(np.argmax(below))
    if below[i] > CHORD_MIN_DISTANCE:
        return int(b[i])
    per_image = y / b
    best = per_image.min()
    for bi, pi in zip(b, per_image):
        if pi <= best * (1 + PER_IMAGE_TOLERANCE):
            return int(bi)
    return int(b[-1])


@dataclass
class PartitionProfile:
    """One partition kind's curve. ``padded``: a batch costs its bucket (CUDA graphs)."""
    key: str
    batches: list[BatchStats]
    padded: bool = False
    batch_knee: int = 0
    time_knee_ms: float = 0.0

    def __post_init__(self):
        self.batches = sorted(self.batches, key=lambda s: s.batch)
        if not self.batches:
            raise ValueError(f"profile {self.key}: no batch sizes")
        self._b = np.array([s.batch for s in self.batches], dtype=np.float64)
        self._lat = {q: np.array([getattr(s, f"{q}_ms") for s in self.batches])
                     for q in ("p50", "p95", "p99", "mean")}
        if not self.batch_knee:
            self.batch_knee = find_knee([s.batch for s in self.batches],
                                        [s.p99_ms for s in self.batches])
        if not self.time_knee_ms:
            self.time_knee_ms = self.latency_ms(self.batch_knee, "p99")

    def latency_table_ms(self, max_n: int, q: str = "p99") -> list[float]:
        """``[L(0)=0, L(1), ..., L(max_n)]``, cached: policies scan it on every decision."""
        cache = self.__dict__.setdefault("_tables", {})
        t = cache.get((max_n, q))
        if t is None:
            t = cache[(max_n, q)] = [0.0] + [self.latency_ms(n, q) for n in range(1, max_n + 1)]
        return t

    @property
    def max_batch(self) -> int:
        return self.batches[-1].batch

    @property
    def sizes(self) -> list[int]:
        return [s.batch for s in self.batches]

    def latency_ms(self, n: int, q: str = "p99") -> float:
        """Latency of a batch of ``n``: interpolated between measured sizes (or the bucket's,
        when padded), extrapolated linearly past the largest."""
        b, lat = self._b, self._lat[q]
        if self.padded:
            i = int(np.searchsorted(b, n))
            if i < len(b):
                return float(lat[i])
        if n <= b[0]:
            return float(lat[0])
        if n >= b[-1]:
            if len(b) == 1:
                return float(lat[-1] * n / b[-1])
            slope = (lat[-1] - lat[-2]) / (b[-1] - b[-2])
            return float(lat[-1] + max(slope, 0.0) * (n - b[-1]))
        return float(np.interp(n, b, lat))

    def best_throughput(self, slo_ms: float | None = None, q: str = "p99") -> tuple[int, float]:
        """(batch, images/s) of the fastest measured size whose latency meets ``slo_ms``
        (gpu-let's saturated rule: 2 x L(b) <= SLO, since a request may wait a whole batch)."""
        best = (0, 0.0)
        for s in self.batches:
            lat = getattr(s, f"{q}_ms")
            if slo_ms is not None and 2 * lat > slo_ms:
                continue
            ips = s.batch * 1000.0 / lat
            if ips > best[1]:
                best = (s.batch, ips)
        return best

    def to_dict(self) -> dict:
        return {"padded": self.padded, "batch_knee": self.batch_knee,
                "time_knee_ms": round(self.time_knee_ms, 4),
                "batches": [s.to_dict() for s in self.batches]}

    @classmethod
    def from_dict(cls, key: str, d: dict) -> "PartitionProfile":
        bs = []
        for e in d["batches"]:
            mean = e.get("mean_ms", e["p50_ms"])
            bs.append(BatchStats(int(e["batch"]), float(e["p50_ms"]),
                                 float(e.get("p95_ms", e["p99_ms"])), float(e["p99_ms"]),
                                 float(mean), float(e.get("throughput_ips",
                                                          e["batch"] * 1000.0 / mean)),
                                 int(e.get("samples", 0))))
        # The knee is recomputed from the numbers unless the file pins it.
        return cls(key, bs, bool(d.get("padded", False)), int(d.get("batch_knee", 0) or 0),
                   float(d.get("time_knee_ms", 0.0) or 0.0))

    @classmethod
    def from_samples(cls, key: str, samples: dict[int, Iterable[float]],
                     padded: bool = False) -> "PartitionProfile":
        return cls(key, [stats_from_samples(int(b), list(v)) for b, v in samples.items()], padded)


@dataclass
class Profile:
    model: str
    partitions: dict[str, PartitionProfile]
    device: str = ""
    source: str = "measured"
    meta: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> PartitionProfile:
        try:
            return self.partitions[key]
        except KeyError:
            raise ProfileKeyError(f"the profile of {self.model} has no partition kind {key!r} (it has "
                           f"{', '.join(self.partitions) or 'none'}); run `preba profile` on it"
                           ) from None

    def to_dict(self) -> dict:
        return {"model": self.model, "device": self.device, "source": self.source,
                "knee_method": KNEE_METHOD, **self.meta,
                "partitions": {k: p.to_dict() for k, p in self.partitions.items()}}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        if "partitions" not in d or not isinstance(d["partitions"], dict):
            raise ValueError("not a preba profile: no 'partitions' object")
        meta = {k: v for k, v in d.items()
                if k not in ("model", "device", "source", "partitions", "knee_method")}
        return cls(str(d.get("model", "?")),
                   {k: PartitionProfile.from_dict(k, v) for k, v in d["partitions"].items()},
                   str(d.get("device", "")), str(d.get("source", "measured")), meta)

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read profile {path}: {e}") from None


def synthetic_profile(key: str, fixed_ms: float, per_image_ms: float,
                      sizes: Sequence[int] = (1, 2, 4, 8, 16, 32),
                      padded: bool = False) -> PartitionProfile:
    """L(b) = fixed + per_image * b at every percentile: for tests and what-if planning."""
    bs = [BatchStats(b, fixed_ms + per_image_ms * b, fixed_ms + per_image_ms * b,
                     fixed_ms + per_image_ms * b, fixed_ms + per_image_ms * b,
                     b * 1000.0 / (fixed_ms + per_image_ms * b)) for b in sizes]
    return PartitionProfile(key, bs, padded)
