"""The KServe v2 HTTP/REST front (aiohttp), with Triton's binary tensor data extension and
Prometheus ``/metrics``.

======================================================== ======================================
``GET  /v2/health/live``, ``/v2/health/ready``            200, or 503 while loading / stopping
``GET  /v2``                                              server metadata
``GET  /v2/models/{m}[/versions/{v}]``                    model metadata
``GET  /v2/models/{m}[/versions/{v}]/ready``              200 when ready
``GET  /v2/models/{m}[/versions/{v}]/config``             model configuration (Triton JSON)
``GET  /v2/models[/{m}[/versions/{v}]]/stats``            statistics extension
``POST /v2/models/{m}[/versions/{v}]/infer``              inference
``POST /v2/repository/index``                             the one model and its state
``GET  /metrics``                                         Prometheus text format
======================================================== ======================================

Errors are ``{"error": "<message>"}`` with 400 (bad request or image, body over
``--max-body-bytes``), 404 (unknown model or endpoint), 503 (overloaded, loading, stopping), 504
(deadline) or 500.
"""
from __future__ import annotations

import json
import logging

from aiohttp import web

from .codec import (BodyTooLarge, InvalidRequest, ServeError, Unsupported, encode_http_response,
                    parse_http_request)
from .metrics import CONTENT_TYPE_LATEST

__all__ = ["HttpFront", "make_app"]

log = logging.getLogger("preba.serve.http")

_SERVICE = web.AppKey("service", object)
_COMPRESS_MIN = 1024  # bytes: smaller responses go uncompressed whatever Accept-Encoding says
_LIMIT = web.AppKey("max_body_bytes", int)


def _json(doc, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(doc, separators=(",", ":")).encode(), status=status,
                        content_type="application/json")


def _error(message: str, status: int) -> web.Response:
    return _json({"error": message}, status)


@web.middleware
async def _errors(request: web.Request, handler):
    try:
        return await handler(request)
    except ServeError as e:
        return _error(e.message, e.http_status)
    except web.HTTPNotFound:
        return _error(f"no such endpoint: {request.method} {request.path} (KServe v2: /v2, "
                      "/v2/health/{live,ready}, /v2/models/<model>[/versions/<v>]"
                      "[/ready|/config|/stats|/infer], /metrics)", 404)
    except web.HTTPMethodNotAllowed as e:
        return _error(f"{request.method} is not allowed on {request.path}; use "
                      f"{', '.join(sorted(e.allowed_methods))}", 405)
    except web.HTTPException:
        raise
    except Exception as e:
        log.exception("internal error on %s %s", request.method, request.path)
        return _error(f"internal error: {type(e).__name__}: {e}", 500)


def _svc(request: web.Request):
    return request.app[_SERVICE]


def _model(request: web.Request) -> tuple[str, str]:
    name = request.match_info["model"]
    version = request.match_info.get("version", "")
    _svc(request).check_model(name, version)
    return name, version


async def live(request):
    return web.Response(status=200)


async def ready(request):
    svc = _svc(request)
    if svc.ready:
        return web.Response(status=200)
    return _error(f"not ready: {svc.state}", 503)


async def server_metadata(request):
    return _json(_svc(request).server_metadata())


async def model_metadata(request):
    _model(request)
    return _json(_svc(request).schema.metadata())


async def model_ready(request):
    _model(request)
    svc = _svc(request)
    if svc.ready:
        return web.Response(status=200)
    return _error(f"model not ready: {svc.state}", 503)


async def model_config(request):
    _model(request)
    return _json(_svc(request).model_config())


async def model_stats(request):
    if "model" in request.match_info:
        _model(request)
    return _json(_svc(request).statistics())


async def repository_index(request):
    return _json(_svc(request).repository_index())


async def model_control(request):
    raise Unsupported("model control is not supported: this server serves one model, chosen "
                      "with `preba serve --model`")


async def metrics(request):
    body = _svc(request).metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def infer(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    limit = request.app[_LIMIT]
    name = request.match_info["model"]
    version = request.match_info.get("version", "")
    body = b""
    header_length = None

    async def read():
        nonlocal body, header_length
        n = request.content_length
        if n is not None and n > limit:
            raise BodyTooLarge(f"request body of {n} bytes is over this server's limit of "
                               f"{limit} bytes (--max-body-bytes); send fewer or smaller images "
                               "per request")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(f"request body is over this server's limit of {limit} bytes "
                               "(--max-body-bytes, counted after decompression); send fewer or "
                               "smaller images per request") from None
        h = request.headers.get("Inference-Header-Content-Length")
        if h is not None:
            try:
                header_length = int(h)
            except ValueError:
                raise InvalidRequest(f"Inference-Header-Content-Length must be an integer, not "
                                     f"{h!r}") from None

    # The body is read inside the service's accounting, so a refused body is counted too.
    await read_guard(svc, read)
    req, resp = await svc.infer("http", (name, version),
                                lambda: parse_http_request(body, header_length, name, version))
    out, json_len = encode_http_response(resp, req.binary_default)
    headers = {}
    if json_len is not None:
        headers["Inference-Header-Content-Length"] = str(json_len)
        ctype = "application/octet-stream"
    else:
        ctype = "application/json"
    r = web.Response(body=out, headers=headers, content_type=ctype)
    accept = request.headers.get("Accept-Encoding", "")
    if len(out) >= _COMPRESS_MIN and ("gzip" in accept or "deflate" in accept):
        r.enable_compression()  # as the client asked; tiny answers are not worth it
    return r


async def read_guard(svc, read) -> None:
    """Read the body; a failure is counted as a failed HTTP request, like any other."""
    try:
        await read()
    except ServeError as e:
        svc.metrics.requests.labels("http").inc()
        svc.metrics.failures.labels("http", e.reason).inc()
        raise


def make_app(service, max_body_bytes: int) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=max_body_bytes)
    app[_SERVICE] = service
    app[_LIMIT] = max_body_bytes
    r = app.router
    r.add_get("/v2/health/live", live)
    r.add_get("/v2/health/ready", ready)
    r.add_get("/v2", server_metadata)
    r.add_post("/v2/repository/index", repository_index)
    r.add_post("/v2/repository/models/{model}/load", model_control)
    r.add_post("/v2/repository/models/{model}/unload", model_control)
    r.add_get("/v2/models/stats", model_stats)
    for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        r.add_get(base, model_metadata)
        r.add_get(base + "/ready", model_ready)
        r.add_get(base + "/config", model_config)
        r.add_get(base + "/stats", model_stats)
        r.add_post(base + "/infer", infer)
    r.add_get("/metrics", metrics)
    return app


class HttpFront:
    def __init__(self, service, cfg):
        self.service, self.cfg = service, cfg
        self.runner: web.AppRunner | None = None

    async def start(self, sock) -> None:
        app = make_app(self.service, self.cfg.max_body_bytes)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=self.cfg.drain_timeout_s)
        await self.runner.setup()
        await web.SockSite(self.runner, sock).start()

    async def stop(self) -> None:
        """Stop listening, let the requests in flight finish (up to --drain-timeout), close."""
        if self.runner is None:
            return
        runner, self.runner = self.runner, None
        await runner.cleanup()  # waits up to the runner's shutdown_timeout (--drain-timeout)
