"""The KServe v2 gRPC front (grpcio aio), implementing ``inference.GRPCInferenceService`` from
tritonclient's generated modules.

Implemented: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelConfig,
ModelInfer, ModelStreamInfer (responses as they complete; an error is a response with
``error_message``, the stream goes on), ModelStatistics, RepositoryIndex. Model control, shared
memory, trace and log settings answer UNIMPLEMENTED.

Errors: INVALID_ARGUMENT (bad request or image, message over ``--max-body-bytes``), NOT_FOUND
(unknown model), UNAVAILABLE (overloaded, loading, stopping), DEADLINE_EXCEEDED, INTERNAL. The
transport itself takes messages up to twice ``--max-body-bytes`` so that one over the limit is
answered with a message naming the limit; beyond that gRPC refuses it (RESOURCE_EXHAUSTED).
"""
from __future__ import annotations

import asyncio
import logging

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2 as pb, service_pb2_grpc

from .codec import (BodyTooLarge, InferRequest, InferResponse, InvalidRequest, RequestedOutput,
                    ServeError, TensorIn, Unsupported, _NP, deserialize_bytes, to_raw)

__all__ = ["GrpcFront", "parse_grpc_request", "encode_grpc_response"]

log = logging.getLogger("preba.serve.grpc")


def _param(p: pb.InferParameter):
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


def parse_grpc_request(msg: pb.ModelInferRequest, max_body_bytes: int) -> InferRequest:
    size = msg.ByteSize()
    if size > max_body_bytes:
        raise BodyTooLarge(f"request message of {size} bytes is over this server's limit of "
                           f"{max_body_bytes} bytes (--max-body-bytes); send fewer or smaller "
                           "images per request")
    req = InferRequest(msg.model_name, msg.model_version, msg.id)
    timeout = msg.parameters.get("timeout")
    if timeout is not None:
        v = _param(timeout)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise InvalidRequest("request parameter 'timeout' must be a non-negative integer "
                                 "(microseconds)")
        req.timeout_us = v or None
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidRequest(f"raw_input_contents has {len(raw)} entries for {len(msg.inputs)} "
                             "input(s); give one per input, in order")
    for i, t in enumerate(msg.inputs):
        if any(k.startswith("shared_memory") for k in t.parameters):
            raise Unsupported(f"input {t.name!r}: shared memory is not supported by this server; "
                              "send the data in the request")
        tin = TensorIn(t.name, t.datatype, list(t.shape))
        if raw:
            if t.datatype == "BYTES":
                tin.elements = deserialize_bytes(raw[i], f"input {t.name!r}")
                tin.count = len(tin.elements)
            else:
                item = 2 if t.datatype == "BF16" else np.dtype(_NP.get(t.datatype, "u1")).itemsize
                tin.count = len(raw[i]) // item
        elif t.HasField("contents"):
            if t.datatype == "BYTES":
                tin.elements = list(t.contents.bytes_contents)
                tin.count = len(tin.elements)
        req.inputs.append(tin)
    for o in msg.outputs:
        c = o.parameters.get("classification")
        k = _param(c) if c is not None else 0
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise InvalidRequest(f"output {o.name!r}: classification must be a positive integer")
        req.outputs.append(RequestedOutput(o.name, None, k))
    return req


def encode_grpc_response(resp: InferResponse) -> pb.ModelInferResponse:
    r = pb.ModelInferResponse(model_name=resp.model_name, model_version=resp.model_version,
                              id=resp.id)
    for t in resp.outputs:
        o = r.outputs.add()
        o.name, o.datatype = t.name, t.datatype
        o.shape.extend(t.shape)
        r.raw_output_contents.append(to_raw(t))
    return r


class _Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, service, max_body_bytes: int):
        self.svc = service
        self.max_body = max_body_bytes

    async def _abort(self, context, e: ServeError):
        await context.abort(getattr(grpc.StatusCode, e.grpc_code), e.message)

    async def _checked(self, context, name: str, version: str) -> bool:
        try:
            self.svc.check_model(name, version)
            return True
        except ServeError as e:
            await self._abort(context, e)
            return False

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.svc.ready)

    async def ModelReady(self, request, context):
        await self._checked(context, request.name, request.version)
        return pb.ModelReadyResponse(ready=self.svc.ready)

    async def ServerMetadata(self, request, context):
        return json_format.ParseDict(self.svc.server_metadata(), pb.ServerMetadataResponse())

    async def ModelMetadata(self, request, context):
        await self._checked(context, request.name, request.version)
        return json_format.ParseDict(self.svc.schema.metadata(), pb.ModelMetadataResponse())

    async def ModelConfig(self, request, context):
        await self._checked(context, request.name, request.version)
        cfg = json_format.ParseDict(self.svc.model_config(), model_config_pb2.ModelConfig())
        return pb.ModelConfigResponse(config=cfg)

    async def ModelStatistics(self, request, context):
        if request.name:
            await self._checked(context, request.name, request.version)
        return json_format.ParseDict(self.svc.statistics(), pb.ModelStatisticsResponse(),
                                     ignore_unknown_fields=True)

    async def RepositoryIndex(self, request, context):
        return json_format.ParseDict({"models": self.svc.repository_index()},
                                     pb.RepositoryIndexResponse())

    async def _infer(self, request, context) -> pb.ModelInferResponse:
        remaining = context.time_remaining()
        _, resp = await self.svc.infer("grpc", (request.model_name, request.model_version),
                                       lambda: parse_grpc_request(request, self.max_body),
                                       deadline_s=remaining)
        return encode_grpc_response(resp)

    async def ModelInfer(self, request, context):
        try:
            return await self._infer(request, context)
        except ServeError as e:
            await self._abort(context, e)

    async def ModelStreamInfer(self, request_iterator, context):
        out: asyncio.Queue = asyncio.Queue()
        tasks: set[asyncio.Task] = set()

        async def one(req):
            try:
                r = pb.ModelStreamInferResponse(infer_response=await self._infer(req, context))
            except ServeError as e:
                r = pb.ModelStreamInferResponse(error_message=e.message)
            await out.put(r)

        async def reader():
            try:
                async for req in request_iterator:
                    t = asyncio.ensure_future(one(req))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                await asyncio.gather(*list(tasks), return_exceptions=True)
            finally:
                out.put_nowait(None)

        rd = asyncio.ensure_future(reader())
        try:
            while True:
                r = await out.get()
                if r is None:
                    break
                yield r
        finally:
            rd.cancel()
            for t in list(tasks):
                t.cancel()

    async def RepositoryModelLoad(self, request, context):
        await self._abort(context, Unsupported(
            "model control is not supported: this server serves one model, chosen with "
            "`preba serve --model`"))

    RepositoryModelUnload = RepositoryModelLoad


class GrpcFront:
    def __init__(self, service, cfg):
        self.service, self.cfg = service, cfg
        self.server: grpc.aio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        from .app import StartupError, _addr
        limit = max(self.cfg.max_body_bytes * 2, self.cfg.max_body_bytes + (1 << 20))
        self.server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", min(limit, 2**31 - 1)),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ])
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            _Servicer(self.service, self.cfg.max_body_bytes), self.server)
        try:
            bound = self.server.add_insecure_port(_addr(host, port))
        except RuntimeError as e:
            raise StartupError(f"cannot listen on {_addr(host, port)} (gRPC): {e}; choose "
                               "another --grpc-port (0 picks a free one)") from None
        if not bound:
            raise StartupError(f"cannot listen on {_addr(host, port)} (gRPC); choose another "
                               "--grpc-port (0 picks a free one)")
        await self.server.start()
        return bound

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let those in flight finish (up to ``grace`` seconds), close."""
        if self.server is None:
            return
        server, self.server = self.server, None
        await server.stop(grace)
