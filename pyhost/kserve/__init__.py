"""``preba serve``: the KServe v2 inference protocol (Triton-compatible) over HTTP and gRPC.

========== ==========================================================================
codec      the protocol's tensors and requests, shared by both fronts; errors
app        the protocol-independent :class:`~pyhost.kserve.app.Service` and :func:`serve`
http       the HTTP/REST front (aiohttp), binary tensor data extension, ``/metrics``
grpc       the gRPC front (grpcio aio, tritonclient's generated service)
metrics    Prometheus metrics
launcher   run ``preba serve`` in a subprocess on free loopback ports (tests, demo)
========== ==========================================================================
"""
