"""``preba serve``: a KServe v2 (Triton-compatible) HTTP and gRPC endpoint with Prometheus
metrics, in front of the inference server. See :mod:`pyhost.kserve`."""
from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys

__all__ = ["add_commands", "cmd_serve"]

_UNITS = {"": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def _bytes(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"expected a size such as 1048576, 512KiB or 64MiB, "
                                         f"got {text!r}")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n < 1024:
        raise argparse.ArgumentTypeError(f"{text!r} is too small: at least 1 KiB")
    return n


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port {v} is not in 0..65535 (0: a free port)")
    return v


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return v
    return parse


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not vals or vals[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return tuple(vals)


def cmd_serve(args) -> int:
    from .kserve.app import ServeConfig, StartupError, serve
    from .partitions import PartitionError

    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="preba serve: %(levelname)s %(name)s: %(message)s")
    cfg = ServeConfig(host=args.host, port=args.port,
                      grpc_port=None if args.no_grpc else args.grpc_port, model=args.model,
                      model_name=args.model_name, pipeline=args.pipeline,
                      partitions=args.partitions, batching=args.batching,
                      preprocess=args.preprocess, preprocess_workers=args.preprocess_workers,
                      slo_ms=args.slo_ms, deadline_ms=args.deadline_ms, max_queue=args.max_queue,
                      max_pending=args.max_pending, max_body_bytes=args.max_body_bytes,
                      topk=args.topk, profile=args.profile, profile_iters=args.profile_iters,
                      buckets=args.buckets, drain_timeout_s=args.drain_timeout)
    if cfg.batching == "slo" and cfg.slo_ms is None:
        print("preba serve: --batching slo needs --slo-ms", file=sys.stderr)
        return 2
    # Until the server installs its own handlers: SIGTERM while starting up is a clean exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        return asyncio.run(serve(cfg))
    except (StartupError, PartitionError, ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"preba serve: {msg}", file=sys.stderr)
        return 2


def add_commands(sub) -> None:
    from .batching import POLICIES

    p = sub.add_parser(
        "serve", help="serve the model over KServe v2 / Triton HTTP and gRPC, with /metrics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a model with the KServe v2 inference protocol (what Triton speaks) "
                    "over HTTP/REST and gRPC, with Prometheus metrics at /metrics on the HTTP "
                    "port.\n\n"
                    "Input IMAGE: BYTES, shape [N], each element one JPEG file (baseline, 8-bit, "
                    "gray or YCbCr: what the hardware decoder takes). Outputs: CLASSES (INT64 "
                    "[N,k]) and SCORES (FP32 [N,k]) top-k, best first; LABELS (BYTES [N,k]) when "
                    "class names are installed. tritonclient works as is:\n\n"
                    "  client = tritonclient.http.InferenceServerClient('127.0.0.1:8000')\n"
                    "  inp = tritonclient.http.InferInput('IMAGE', [1], 'BYTES')\n"
                    "  inp.set_data_from_numpy(np.array([open('cat.jpg','rb').read()], "
                    "dtype=object))\n"
                    "  client.infer('efficientnet-lite0', [inp]).as_numpy('CLASSES')\n\n"
                    "Bad input: HTTP 400 / gRPC INVALID_ARGUMENT naming the problem (and the "
                    "element). Overload: 503 / UNAVAILABLE at once. SIGTERM: stop accepting, "
                    "finish what is in flight, exit 0. The ready line goes to stdout: "
                    "'preba serve: ready: ... http=http://HOST:PORT grpc=HOST:PORT ...'.")
    net = p.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only)")
    net.add_argument("--port", type=_port, default=8000, metavar="N",
                     help="HTTP port, also /metrics (default 8000; 0: a free port)")
    net.add_argument("--grpc-port", type=_port, default=8001, metavar="N",
                     help="gRPC port (default 8001; 0: a free port)")
    net.add_argument("--no-grpc", action="store_true", help="serve HTTP only")
    net.add_argument("--max-body-bytes", type=_bytes, default=64 * 1024**2, metavar="SIZE",
                     help="largest request body / gRPC message, e.g. 8MiB (default 64MiB); "
                          "larger: 400 / INVALID_ARGUMENT")
    net.add_argument("--drain-timeout", type=_positive(float), default=30.0, metavar="S",
                     help="on SIGTERM, seconds to let requests in flight finish (default 30)")
    m = p.add_argument_group("model and hardware")
    m.add_argument("--model", default="efficientnet-lite0", metavar="M",
                   help="efficientnet-lite0 (pretrained, default), null (no compute), "
                        "package.module:function, or a TorchScript file")
    m.add_argument("--model-name", default=None, metavar="NAME",
                   help="the name clients use in /v2/models/NAME (default: the model's name)")
    m.add_argument("--pipeline", default=None, metavar="P",
                   help="preprocessing preset or .toml (default: the one the model was trained "
                        "with)")
    m.add_argument("--partitions", default="auto", metavar="P",
                   help="auto, mig, gpu, sm:16,16,32, mps:14,14, or cpu:N (default auto)")
    m.add_argument("--topk", type=_positive(int), default=5, metavar="K",
                   help="classes returned per image (default 5)")
    s = p.add_argument_group("batching and load")
    s.add_argument("--batching", choices=POLICIES, default="preba",
                   help="dynamic batching policy (default preba)")
    s.add_argument("--preprocess", choices=("pillow", "golden", "rtl"), default="pillow",
                   help="JPEG -> tensor on the request path: pillow (CPU, default), golden "
                        "(numpy model bit-exact with the hardware), rtl (simulated RTL: slow)")
    s.add_argument("--preprocess-workers", type=_positive(int), default=None, metavar="N",
                   help="preprocessing processes (default: the cores the model workers leave)")
    s.add_argument("--slo-ms", type=_positive(float), default=None, metavar="MS",
                   help="latency target (the slo policy needs it)")
    s.add_argument("--deadline-ms", type=_positive(float), default=None, metavar="MS",
                   help="a request still queued after MS -> 504 / DEADLINE_EXCEEDED (default "
                        "none; a request's own 'timeout' parameter or gRPC deadline also counts)")
    s.add_argument("--max-queue", type=_positive(int), default=256, metavar="N",
                   help="requests each partition queues; beyond: 503 / UNAVAILABLE (default 256)")
    s.add_argument("--max-pending", type=_positive(int), default=None, metavar="N",
                   help="images inside the server at once, preprocessing included; beyond: 503 "
                        "at once; also the most images per request (default 2 x max-queue x "
                        "partitions + 64)")
    s.add_argument("--profile", metavar="FILE",
                   help="profile JSON from `preba profile` (default: measure at startup)")
    s.add_argument("--profile-iters", type=int, default=5, metavar="N",
                   help="runs per batch size of the startup profile (default 5)")
    s.add_argument("--buckets", type=_ints, default=None, metavar="B1,B2,...",
                   help="batch sizes the workers prepare (default: the profile's, else "
                        "1,2,4,8,16 on the CPU)")
    p.add_argument("--log-level", default="warning",
                   choices=("debug", "info", "warning", "error"), help="(default warning)")
    p.set_defaults(func=cmd_serve)
