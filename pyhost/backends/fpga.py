"""The ``fpga`` backend: a board running the pipeline's bitstream, over its USB-serial link.

A JPEG goes to the board as it is (request 'J': the job's cfg words, then the file's bytes, for
the on-chip decoder) when the pipeline has the decoder; anything else (PNG, ..., or a pipeline
without the decoder) is decoded on the host and sent as RGB pixels (request 'R'). The tensor
streams back as the core produces it (protocol: :mod:`hdl.board.protocol`). The same code talks to a real ULX3S (``/dev/ttyUSB0``)
or to the simulated board's pseudo-terminal (``python -m sim.board``).
"""
from __future__ import annotations

import fcntl
import struct
import time

import numpy as np

from hdl.board.protocol import (CREDIT_UNIT, INFO_BYTES, PROTOCOL_VERSION, RESP_SYNC, Info,
                                LinkStatus, ReqType, RespType, encode_request, spec_id,
                                status_message)
from hdl.job import Status, build_job
from hdl.spec import PipelineSpec
from ..accelerator import PreprocessError, Result, check_hardware_jpeg, decode_rgb

__all__ = ["FpgaBackend", "BoardLink", "BoardError", "BoardReply"]

DEFAULT_BAUD = 3_000_000


class BoardError(RuntimeError):
    """The board cannot be used: no answer, wrong bitstream, protocol violation."""


class BoardReply:
    """What the board sent back for one request: status code, tensor bytes, beat count."""

    def __init__(self, code: int, data: bytes, beats: int, seconds: float, sent: int):
        self.code = code
        self.data = data
        self.beats = beats
        self.seconds = seconds
        self.bytes_sent = sent

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def message(self) -> str:
        return status_message(self.code)


class _Reader:
    """Incremental parser of the board's response frames."""

    def __init__(self, beat_bytes: int):
        self.buf = bytearray()
        self.beat_bytes = beat_bytes

    def feed(self, data: bytes) -> None:
        self.buf += data

    def frames(self):
        """Yield (type, payload) for each complete frame; stray bytes before a sync are
        dropped (and counted)."""
        buf = self.buf
        while True:
            i = buf.find(RESP_SYNC)
            if i < 0:
                buf.clear()
                return
            if i:
                del buf[:i]
            if len(buf) < 2:
                return
            t = buf[1]
            if t == RespType.CREDIT:
                need = 3
            elif t == RespType.STATUS:
                need = 7
            elif t in (RespType.DATA, RespType.INFO):
                if len(buf) < 3:
                    return
                need = 3 + buf[2] * (self.beat_bytes if t == RespType.DATA else 1)
            else:
                del buf[:1]         # not a frame start: resynchronize on the next 0x5A
                continue
            if len(buf) < need:
                return
            payload = bytes(buf[2:need])
            del buf[:need]
            yield t, payload


class BoardLink:
    """The protocol over one serial port: ping, and one request at a time with credit flow
    control. Not thread-safe; a file lock on the port serializes processes."""

    def __init__(self, port: str, *, baudrate: int = DEFAULT_BAUD, timeout: float = 10.0,
                 element_bits: int = 16, resync_interval: float = 3.0):
        import serial
        self.port = port
        self.timeout = timeout
        self.resync_interval = resync_interval
        self.beat_bytes = 3 * element_bits // 8
        try:
            self.ser = serial.serial_for_url(port, baudrate=baudrate, timeout=0.02,
                                             write_timeout=timeout)
        except (serial.SerialException, OSError) as e:
            raise BoardError(f"cannot open serial port {port}: {e}") from None
        self.info: Info | None = None
        self.credit = 0
        self.reader = _Reader(self.beat_bytes)

    def close(self) -> None:
        if getattr(self, "ser", None) is not None:
            self.ser.close()
            self.ser = None

    def _lock(self):
        fd = getattr(self.ser, "fd", None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(self):
        fd = getattr(self.ser, "fd", None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _read(self) -> bytes:
        n = self.ser.in_waiting
        return self.ser.read(n if n else 1)

    def sync(self) -> Info:
        """Ping until the board answers with INFO and nothing else is in flight."""
        ping = encode_request(ReqType.PING)
        deadline = time.monotonic() + max(self.timeout, self.resync_interval * 2)
        while time.monotonic() < deadline:
            self.ser.reset_input_buffer()
            self.reader = _Reader(self.beat_bytes)
            self.ser.write(ping)
            self.ser.flush()
            info = None
            wait_until = time.monotonic() + self.resync_interval
            while time.monotonic() < wait_until and info is None:
                self.reader.feed(self._read())
                for t, payload in self.reader.frames():
                    if t == RespType.INFO and len(payload) >= 1 + INFO_BYTES:
                        info = Info.unpack(payload[1:])
            if info is None:
                continue
            time.sleep(0.05)               # anything after the answer: an older ping's; redo
            if self.ser.in_waiting:
                continue
            if info.version != PROTOCOL_VERSION:
                raise BoardError(f"board at {self.port} speaks link protocol v{info.version}; "
                                 f"this host speaks v{PROTOCOL_VERSION}")
            self.info = info
            self.credit = info.window
            self.reader = _Reader(self.beat_bytes)
            return info
        raise BoardError(f"no answer from a preba board at {self.port} within "
                         f"{max(self.timeout, self.resync_interval * 2):.0f} s (is the "
                         "bitstream loaded and the baud rate right?)")

    def request(self, rtype: int, cfg_words=(), data: bytes = b"") -> BoardReply:
        """Send one request and collect its answer (tensor beats and the status frame)."""
        return self.exchange(encode_request(rtype, cfg_words, data))

    def exchange(self, frame: bytes) -> BoardReply:
        """Send one request frame (any bytes: tests send broken ones) and collect the answer.
        After an answer that means the board lost sync, the next call pings first."""
        if self.info is None or self._stray():
            self.sync()
        t0 = time.monotonic()
        sent = 0
        out = bytearray()
        last_heard = time.monotonic()
        try:
            while True:
                sent = self._send_within_credit(frame, sent)
                got = self._read()
                if got:
                    last_heard = time.monotonic()
                    self.reader.feed(got)
                for t, payload in self.reader.frames():
                    if t == RespType.CREDIT:
                        self.credit += payload[0] * CREDIT_UNIT
                    elif t == RespType.DATA:
                        out += payload[1:]
                    elif t == RespType.STATUS:
                        code = payload[0]
                        beats = struct.unpack("<I", payload[1:5])[0]
                        hunting = code in (LinkStatus.BAD_HEADER, LinkStatus.TIMEOUT,
                                           LinkStatus.RX_ERROR)
                        if hunting:
                            self.info = None      # the board is hunting for a frame start
                        elif sent < len(frame):
                            # Answered early: the board skips (or the core drains) the rest
                            # of the frame as it arrives, so send it within the credit.
                            self._finish_frame(frame, sent)
                        return BoardReply(code, bytes(out), beats, time.monotonic() - t0,
                                          len(frame))
                if time.monotonic() - last_heard > self.timeout:
                    raise BoardError(f"board at {self.port} stopped answering mid-request "
                                     f"({sent} of {len(frame)} bytes sent)")
        except BaseException:
            self.info = None              # state unknown: resynchronize before the next one
            raise

    def _stray(self) -> bool:
        """Take what arrived between requests: credits count; anything else means the board
        and the host disagree about a request, so the caller resynchronizes."""
        stray = False
        while self.ser.in_waiting:
            self.reader.feed(self._read())
        for t, payload in self.reader.frames():
            if t == RespType.CREDIT:
                self.credit += payload[0] * CREDIT_UNIT
            else:
                stray = True
        return stray

    def _send_within_credit(self, frame: bytes, sent: int) -> int:
        """Send as much of the rest of ``frame`` as the board's credit allows; returns the new
        count of bytes sent."""
        if sent < len(frame) and self.credit > 0:
            n = min(self.credit, len(frame) - sent)
            self.ser.write(frame[sent:sent + n])
            sent += n
            self.credit -= n
        return sent

    def _finish_frame(self, frame: bytes, sent: int) -> None:
        last_heard = time.monotonic()
        while sent < len(frame):
            sent = self._send_within_credit(frame, sent)
            got = self._read()
            if got:
                last_heard = time.monotonic()
                self.reader.feed(got)
            for t, payload in self.reader.frames():
                if t == RespType.CREDIT:
                    self.credit += payload[0] * CREDIT_UNIT
            if time.monotonic() - last_heard > self.timeout:
                raise BoardError(f"board at {self.port} stopped returning credit")


class FpgaBackend:
    """Accelerator backend for a board (or the simulated board) on a serial port."""

    def __init__(self, spec: PipelineSpec, port: str, baudrate: int = DEFAULT_BAUD,
                 timeout: float = 10.0):
        self.spec = spec
        self.port = port
        self.baudrate = baudrate
        self.timeout = timeout
        self._link: BoardLink | None = None
        self._failure: str | None = None

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def link(self) -> BoardLink:
        """The open, synchronized link (raises BoardError naming what is wrong)."""
        if self._failure is not None:
            raise BoardError(self._failure)
        if self._link is None:
            try:
                link = BoardLink(self.port, baudrate=self.baudrate, timeout=self.timeout,
                                 element_bits=self.spec.output.element_bits)
                link._lock()
                try:
                    info = link.sync()
                finally:
                    link._unlock()
                want = spec_id(self.spec)
                if info.spec_id != want or info.element_bits != self.spec.output.element_bits:
                    link.close()
                    raise BoardError(
                        f"the board at {self.port} runs another pipeline (spec id "
                        f"{info.spec_id:08x}, {info.max_width}x{info.max_height} max, "
                        f"{info.element_bits}-bit output) than '{self.spec.name}' (spec id "
                        f"{want:08x}): load the bitstream built for this pipeline")
            except BoardError as e:
                self._failure = str(e)
                raise
            self._link = link
        return self._link

    def request(self, rtype: int, cfg_words=(), data: bytes = b"") -> BoardReply:
        link = self.link()
        link._lock()
        try:
            return link.request(rtype, cfg_words, data)
        finally:
            link._unlock()

    def run(self, data: bytes, name: str) -> Result:
        # Same checks as the golden and rtl backends: a JPEG the hardware decoder cannot decode
        # is refused with the decoder's reason.
        check_hardware_jpeg(data, name, self.spec)
        hw_jpeg = self.spec.jpeg_decoder and data[:2] == b"\xff\xd8"
        try:
            if hw_jpeg:
                from hdl.jpeg import read_header
                w, h = read_header(data, max_width=self.spec.max_width,
                                   max_height=self.spec.max_height)[:2]
                job = build_job(self.spec, w, h, jpeg=True)
                rtype, payload = ReqType.JPEG, bytes(data)
            else:
                rgb = decode_rgb(data, name)
                h, w = rgb.shape[:2]
                job = build_job(self.spec, w, h)
                rtype, payload = ReqType.RGB, np.ascontiguousarray(rgb).tobytes()
        except ValueError as e:
            raise PreprocessError(name, str(e), int(Status.BAD_DIMS)) from None
        try:
            reply = self.request(rtype, job.words, payload)
        except BoardError as e:
            raise PreprocessError(name, str(e)) from None
        if not reply.ok:
            raise PreprocessError(name, f"board reported {reply.message}", reply.code)
        g = job.geometry
        n = g.out_w * g.out_h
        if reply.beats != n or len(reply.data) != n * link_beat_bytes(self.spec):
            raise PreprocessError(name, f"board sent {reply.beats} tensor beats "
                                        f"({len(reply.data)} bytes) for a {g.out_w}x{g.out_h} "
                                        "output", int(LinkStatus.ORDER))
        tensor = beats_to_tensor(self.spec, reply.data, g.out_w, g.out_h)
        return Result(name, tensor, extra={"board_port": self.port,
                                           "hw_input": "jpeg" if hw_jpeg else "pixels",
                                           "link_seconds": round(reply.seconds, 4),
                                           "link_bytes_sent": reply.bytes_sent,
                                           "link_bytes_received": len(reply.data)})


def link_beat_bytes(spec: PipelineSpec) -> int:
    return 3 * spec.output.element_bits // 8


def beats_to_tensor(spec: PipelineSpec, data: bytes, out_w: int, out_h: int) -> np.ndarray:
    """Raster-order beats (3 little-endian elements each) -> the tensor in the spec's layout."""
    raw_dtype = np.dtype("<u2") if spec.output.element_bits == 16 else np.dtype("u1")
    beats = np.frombuffer(data, raw_dtype).reshape(out_h, out_w, 3)
    beats = beats.view(np.dtype(spec.output.numpy_dtype).newbyteorder("<"))
    t = beats.transpose(2, 0, 1) if spec.output.layout == "CHW" else beats
    return np.ascontiguousarray(t).astype(spec.output.numpy_dtype, copy=False)
