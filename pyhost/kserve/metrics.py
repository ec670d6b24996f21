"""Prometheus metrics of ``preba serve`` (``GET /metrics`` on the HTTP port).

=================================== =========================================================
``preba_requests_total``            inference requests received, by protocol (http, grpc)
``preba_images_total``              images in the inference requests that were run
``preba_request_failures_total``    requests answered with an error, by protocol and reason
                                    (bad_request, bad_image, body_too_large, unsupported,
                                    unknown_model, overloaded, shutting_down,
                                    deadline_exceeded, internal)
``preba_request_duration_seconds``  histogram: a request in the endpoint, from its first
                                    byte read to its answer, by protocol
``preba_inference_latency_seconds`` histogram per partition, per image: submitted to answered
                                    in the inference server (preprocess + queue + compute)
``preba_queue_seconds``             histogram per partition: waiting for a batch / the worker
``preba_compute_seconds``           histogram per partition: the batch's model run
``preba_preprocess_seconds``        histogram: JPEG -> tensor, per image
``preba_batch_size``                histogram per partition: batches run, by size (exact)
``preba_queue_depth``               gauge per partition: requests waiting now
``preba_pending``                   gauge: images inside the server now
``preba_partition_utilization``     gauge per partition: worker busy time / time since start
``preba_server_outcomes_total``     every image the inference server took, by outcome
``preba_ready``                     gauge: 1 when the model is loaded and serving
=================================== =========================================================

Every metric lives in the endpoint's own registry (several endpoints in one process, as in
tests, do not collide).
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST", "REASONS"]

PROTOCOLS = ("http", "grpc")
REASONS = ("bad_request", "bad_image", "body_too_large", "unsupported", "unknown_model",
           "overloaded", "shutting_down", "deadline_exceeded", "internal")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)
OUTCOMES = ("completed", "refused", "expired", "failed_preprocess", "failed_worker", "cancelled",
            "aborted", "not_run")


class Metrics:
    def __init__(self, stats: Callable[[], dict | None], ready: Callable[[], bool]):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("preba_requests", "Inference requests received", ["protocol"],
                                registry=r)
        self.images = Counter("preba_images", "Images in inference requests that were run",
                              ["protocol"], registry=r)
        self.failures = Counter("preba_request_failures",
                                "Inference requests answered with an error, by reason",
                                ["protocol", "reason"], registry=r)
        self.duration = Histogram("preba_request_duration_seconds",
                                  "Inference request in the endpoint: read to answer",
                                  ["protocol"], buckets=LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("preba_inference_latency_seconds",
                                 "Per image: submitted to answered in the inference server",
                                 ["partition"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue = Histogram("preba_queue_seconds",
                               "Per image: routing, batching wait and waiting for the worker",
                               ["partition"], buckets=LATENCY_BUCKETS, registry=r)
        self.compute = Histogram("preba_compute_seconds", "Per image: its batch's model run",
                                 ["partition"], buckets=LATENCY_BUCKETS, registry=r)
        self.preprocess = Histogram("preba_preprocess_seconds", "Per image: JPEG to tensor",
                                    buckets=LATENCY_BUCKETS, registry=r)
        ready_g = Gauge("preba_ready", "1 when the model is loaded and serving", registry=r)
        ready_g.set_function(lambda: 1.0 if ready() else 0.0)
        for p in PROTOCOLS:
            self.requests.labels(p)
            self.images.labels(p)
            for reason in REASONS:
                self.failures.labels(p, reason)
        r.register(_ServerCollector(stats))

    def observe(self, predictions) -> None:
        """Per-image timings of a request's :class:`~pyhost.server.Prediction` s."""
        for p in predictions:
            part = p.partition
            self.latency.labels(part).observe(p.latency_ms / 1e3)
            self.queue.labels(part).observe(p.queue_ms / 1e3)
            self.compute.labels(part).observe(p.compute_ms / 1e3)
            self.preprocess.observe(p.preprocess_ms / 1e3)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ServerCollector:
    """Reads ``InferenceServer.stats()`` at scrape time: queue depths, batch sizes, outcomes."""

    def __init__(self, stats: Callable[[], dict | None]):
        self._stats = stats

    def describe(self):
        return []

    def collect(self):
        st = self._stats()
        depth = GaugeMetricFamily("preba_queue_depth", "Requests waiting in a partition's queue",
                                  labels=["partition"])
        util = GaugeMetricFamily("preba_partition_utilization",
                                 "Worker busy time / time since the server started",
                                 labels=["partition"])
        batch = HistogramMetricFamily("preba_batch_size", "Batches run, by number of images",
                                      labels=["partition"])
        pending = GaugeMetricFamily("preba_pending",
                                    "Images inside the server (preprocessing, queued, running)")
        outcomes = CounterMetricFamily("preba_server_outcomes",
                                       "Images the inference server took, by outcome",
                                       labels=["outcome"])
        if st is not None:
            pending.add_metric([], st.get("pending", 0))
            for o in OUTCOMES:
                outcomes.add_metric([o], st.get(o, 0))
            for p in st.get("partitions", []):
                name = p["name"]
                depth.add_metric([name], p.get("queue", 0))
                util.add_metric([name], p.get("util", 0.0))
                hist = {int(k): v for k, v in p.get("batch_size_hist", {}).items()}
                top = max(hist, default=1)
                edges, le = [], 1
                while True:
                    edges.append(le)
                    if le >= top:
                        break
                    le *= 2
                buckets, acc = [], 0
                for e in edges:
                    acc = sum(v for k, v in hist.items() if k <= e)
                    buckets.append((str(float(e)), acc))
                buckets.append(("+Inf", sum(hist.values())))
                batch.add_metric([name], buckets, sum_value=sum(k * v for k, v in hist.items()))
        yield from (depth, util, batch, pending, outcomes)
