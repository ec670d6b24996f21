"""``make demo``, last stage: ``preba serve`` with the pretrained model, the test images sent with
``tritonclient`` over HTTP and gRPC, the predictions and the Prometheus metrics printed, then
SIGTERM and a clean exit."""
from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

MODEL = "efficientnet-lite0"
_METRICS = ("preba_requests_total", "preba_images_total", "preba_request_failures_total",
            "preba_batch_size_count", "preba_batch_size_sum", "preba_queue_depth",
            "preba_inference_latency_seconds_count", "preba_inference_latency_seconds_sum",
            "preba_preprocess_seconds_sum", "preba_server_outcomes_total", "preba_ready")


def _banner(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 70 - len(text)))


def run_demo(images: list[Path]) -> bool:
    try:
        import tritonclient.grpc as tgrpc
        import tritonclient.http as thttp
        from tritonclient.utils import InferenceServerException
    except ImportError as e:
        print(f"serve demo skipped: {e} (pip install 'tritonclient[http,grpc]')")
        return True
    from .kserve.launcher import ServeFailed, ServeProcess

    _banner("3. preba serve: KServe v2 / Triton endpoint (HTTP + gRPC), tritonclient")
    t0 = time.perf_counter()
    args = ["--model", MODEL, "--partitions", "cpu:1", "--buckets", "1,2,4",
            "--profile-iters", "1"]
    print(f"$ preba serve --host 127.0.0.1 --port 0 --grpc-port 0 {' '.join(args)}")
    ok = True
    try:
        with ServeProcess(args, startup_timeout_s=120) as srv:
            print(srv.ready_line)
            print(f"(started in {time.perf_counter() - t0:.1f} s)")
            data = {p.name: p.read_bytes() for p in images}
            hc = thttp.InferenceServerClient(srv.http_url, network_timeout=60)
            gc = tgrpc.InferenceServerClient(srv.grpc_url)
            meta = hc.get_model_metadata(MODEL)
            print(f"model {meta['name']}: inputs {meta['inputs']}")
            print(f"                    outputs {meta['outputs']}")

            good, rejected = [], []
            print(f"\n{'image':<18} {'protocol':<8} answer")
            for name, d in data.items():  # one at a time: each image's own answer
                inp = thttp.InferInput("IMAGE", [1], "BYTES")
                inp.set_data_from_numpy(np.array([d], dtype=object))
                try:
                    r = hc.infer(MODEL, [inp])
                    c, s = r.as_numpy("CLASSES")[0], r.as_numpy("SCORES")[0]
                    print(f"{name:<18} {'http':<8} top-1 class {c[0]} ({s[0]:.3f}), top-5 "
                          f"{c.tolist()}")
                    good.append(name)
                except InferenceServerException as e:
                    print(f"{name:<18} {'http':<8} {e.status()}: {e.message()[:110]}")
                    rejected.append(name)
            if good:  # the good ones again, as one batched request over gRPC
                inp = tgrpc.InferInput("IMAGE", [len(good)], "BYTES")
                inp.set_data_from_numpy(np.array([data[n] for n in good], dtype=object))
                r = gc.infer(MODEL, [inp])
                for name, c, s in zip(good, r.as_numpy("CLASSES"), r.as_numpy("SCORES")):
                    print(f"{name:<18} {'grpc':<8} top-1 class {c[0]} ({s[0]:.3f}), top-5 "
                          f"{c.tolist()}  (batched request of {len(good)})")
            hc.close()
            gc.close()

            print(f"\nGET {srv.metrics_url} (selected lines):")
            text = urllib.request.urlopen(srv.metrics_url, timeout=30).read().decode()
            for line in text.splitlines():
                if line.startswith(_METRICS) and not line.rstrip().endswith(" 0.0"):
                    print(f"  {line}")
            rc = srv.terminate(60)
            print(f"\nSIGTERM -> preba serve exited with status {rc} "
                  f"({time.perf_counter() - t0:.1f} s for this stage)")
            ok = rc == 0 and bool(good)
    except ServeFailed as e:
        print(f"preba serve failed: {e}", file=sys.stderr)
        return False
    return ok
