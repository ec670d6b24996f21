"""The host link's framed protocol over the board's USB-serial UART (8N1), shared by the RTL
(:mod:`hdl.board.link`) and the host (:mod:`pyhost.backends.fpga`).

All multi-byte fields are little endian.

Host -> board: request frames, each an 11-byte header and a payload::

    0    0xA5              sync
    1    type              'R' (0x52) RGB job, 'J' (0x4A) JPEG job, 'P' (0x50) ping
    2-5  n_cfg             number of 32-bit cfg words in the payload
    6-9  n_data            number of data bytes after the cfg words
    10   check             makes the 11 header bytes sum to 0 mod 256
    payload: n_cfg cfg words (4 bytes each, see hdl.job), then n_data bytes
             ('R': R, G, B per pixel in raster order, so n_data = 3 * pixels;
              'J': the JPEG file, for the on-chip decoder: the job header's src_jpeg bit set,
              its sizes from the JPEG's SOF; bitstreams without the decoder answer BAD_TYPE)

Board -> host: response frames, each starting 0x5A, type::

    0x5A 'I' len info[len]              answer to a ping (see INFO_FIELDS)
    0x5A 'C' n                          credit: the host may send n * CREDIT_UNIT more bytes
    0x5A 'D' n beat[n]                  n (1..255) tensor beats, each 3 elements of E/8 bytes
    0x5A 'S' code beats[4]              end of a request: status code, tensor beats sent

Every request is answered by exactly one 'S' frame ('I' for a ping); a header whose check byte
is wrong is answered BAD_HEADER once, then ignored until a good header arrives. Tensor beats leave the
core in raster order (the link checks the core's offset tags and reports ORDER otherwise), so
beat i of an OK job is output pixel i: its elements go to tensor.flat[i + c*H*W] (CHW) or
tensor.flat[3*i + c] (HWC).

Flow control: the board's receive FIFO holds ``window`` bytes (given in the ping's answer). The
host keeps at most that many bytes unacknowledged; every CREDIT_UNIT bytes the board takes out
of the FIFO are returned in 'C' frames. A ping resets the count: send it with nothing else in
flight, and after its answer the whole window is free.

Errors: the core's codes (hdl.job.Status, 0..15), the JPEG decoder's (hdl.jpeg.JpegStatus,
16..) and the link's own (LinkStatus, 0x80..).
A link error aborts the request: the core is reset, the rest of the frame is skipped (after a
bad header, a timeout or a receive error: hunted through for the next 0xA5, so the host pings to
resynchronize), and the 'S' frame names the error. A request that stops arriving for the
link's timeout (0.25 s on the board) is aborted with TIMEOUT.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from ..job import Status
from ..spec import PipelineSpec

__all__ = ["REQ_SYNC", "RESP_SYNC", "ReqType", "RespType", "LinkStatus", "PROTOCOL_VERSION",
           "CREDIT_UNIT", "HEADER_BYTES", "spec_id", "encode_request", "Info", "INFO_FIELDS",
           "status_message"]

PROTOCOL_VERSION = 1
REQ_SYNC = 0xA5
RESP_SYNC = 0x5A
HEADER_BYTES = 11
CREDIT_UNIT = 256


class ReqType(IntEnum):
    RGB = ord("R")
    PING = ord("P")
    JPEG = ord("J")       # JPEG file bytes for the on-chip decoder (BAD_TYPE without one)


class RespType(IntEnum):
    INFO = ord("I")
    CREDIT = ord("C")
    DATA = ord("D")
    STATUS = ord("S")


class LinkStatus(IntEnum):
    BAD_HEADER = 0x80     # header check byte wrong (noise, wrong baud rate, lost sync)
    BAD_TYPE = 0x81       # unknown request type (or a JPEG job on a bitstream without decoder)
    BAD_LENGTH = 0x82     # cfg word count does not match the job header, or pixel bytes are
                          # zero or not a multiple of 3
    TIMEOUT = 0x83        # the frame stopped arriving (or the core stopped) mid-request
    RX_ERROR = 0x84       # UART framing error or receive-FIFO overrun during the request
    ORDER = 0x85          # tensor beats left the core out of raster order (hardware fault)
    BAD_SOURCE = 0x86     # the job header's src_jpeg bit does not match the request type

    @property
    def message(self) -> str:
        return _LINK_MESSAGES[self]


_LINK_MESSAGES = {
    LinkStatus.BAD_HEADER: "board link: request header check failed (line noise, wrong baud "
                           "rate or lost sync)",
    LinkStatus.BAD_TYPE: "board link: request type not supported by this bitstream",
    LinkStatus.BAD_LENGTH: "board link: request lengths do not match the job (cfg word count "
                           "or pixel byte count)",
    LinkStatus.TIMEOUT: "board link: request stopped arriving mid-frame (or the core hung); "
                        "the board reset its core",
    LinkStatus.RX_ERROR: "board link: UART framing error or receive overrun (baud rate or "
                         "flow control)",
    LinkStatus.ORDER: "board link: tensor beats out of order (hardware fault)",
    LinkStatus.BAD_SOURCE: "board link: the job header's input source (src_jpeg) does not "
                           "match the request type ('R' pixels, 'J' JPEG bytes)",
}


def status_message(code: int) -> str:
    """'NAME (0xNN): what it means' for any code the board can report."""
    for enum in (Status, LinkStatus):
        try:
            s = enum(code)
        except ValueError:
            continue
        return f"{s.name} (0x{code:02x}): {s.message}"
    try:
        from ..jpeg import STATUS_MESSAGES, JpegStatus
        j = JpegStatus(code)
        return f"JPEG {j.name} (0x{code:02x}): {STATUS_MESSAGES[j]}"
    except (ImportError, ValueError, KeyError):
        return f"unknown status 0x{code:02x}"


def spec_id(spec: PipelineSpec) -> int:
    """32-bit id of a pipeline spec (CRC-32 of its canonical JSON); the board reports the id of
    the spec it was built for, so a host never talks to a bitstream of another pipeline."""
    return zlib.crc32(json.dumps(spec.to_dict(), sort_keys=True).encode())


def encode_header(rtype: int, n_cfg: int, n_data: int, check_fix: int = 0) -> bytes:
    head = struct.pack("<BBII", REQ_SYNC, rtype, n_cfg, n_data)
    return head + bytes([(-sum(head) + check_fix) & 0xFF])


def encode_request(rtype: int, cfg_words=(), data: bytes = b"") -> bytes:
    """One request frame: header, cfg words, data bytes."""
    import numpy as np
    cfg = np.asarray(cfg_words, dtype="<u4").tobytes()
    return encode_header(rtype, len(cfg) // 4, len(data)) + cfg + bytes(data)


#: INFO payload, in order: (name, struct format).
INFO_FIELDS = (("version", "B"), ("element_bits", "B"), ("flags", "B"), ("rx_errors", "B"),
               ("spec_id", "I"), ("window", "H"), ("max_width", "H"), ("max_height", "H"),
               ("divisor", "H"))
INFO_FORMAT = "<" + "".join(f for _, f in INFO_FIELDS)
INFO_BYTES = struct.calcsize(INFO_FORMAT)
FLAG_HWC, FLAG_RESIZE, FLAG_CROP, FLAG_JPEG = 1, 2, 4, 8


@dataclass(frozen=True)
class Info:
    version: int
    element_bits: int
    flags: int
    rx_errors: int
    spec_id: int
    window: int
    max_width: int
    max_height: int
    divisor: int

    @classmethod
    def unpack(cls, payload: bytes) -> "Info":
        return cls(*struct.unpack(INFO_FORMAT, payload[:INFO_BYTES]))

    @staticmethod
    def expected_flags(spec: PipelineSpec) -> int:
        return ((FLAG_HWC if spec.output.layout == "HWC" else 0)
                | (FLAG_RESIZE if spec.resize is not None else 0)
                | (FLAG_CROP if spec.crop is not None else 0)
                | (FLAG_JPEG if spec.jpeg_decoder else 0))


def info_bytes(spec: PipelineSpec, window: int, divisor: int) -> bytes:
    """The INFO payload the board sends (rx_errors = 0 here; the RTL fills in its counter)."""
    return struct.pack(INFO_FORMAT, PROTOCOL_VERSION, spec.output.element_bits,
                       Info.expected_flags(spec), 0, spec_id(spec), window,
                       min(spec.max_width, 0xFFFF), min(spec.max_height, 0xFFFF),
                       min(divisor, 0xFFFF))
