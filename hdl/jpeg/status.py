"""Status codes of the JPEG decoder, shared by the golden model and the hardware.

The hardware reports one of these codes in its ``status`` word after each image; the golden model
raises :class:`JpegError` carrying the same code. Codes below 16 are reserved for the
preprocessing core's own conditions, so every decoder code is >= 16 and 0 means OK.

Corrupt data policy: the decoder is *strict*. libjpeg (and so Pillow) is lenient: it warns,
pads missing entropy data with zeros, skips garbage before markers and carries on. This decoder
stops at the first inconsistency it detects and reports a code; it never tries to reproduce
libjpeg's recovery. Bit-exactness with Pillow is promised for well-formed streams only.
"""
from __future__ import annotations

from enum import IntEnum

__all__ = ["JpegStatus", "JpegError", "STATUS_MESSAGES"]

_REENCODE = "re-encode as baseline JPEG (e.g. `convert in.jpg -interlace none out.jpg`)"


class JpegStatus(IntEnum):
    OK = 0
    NOT_JPEG = 16
    TRUNCATED = 17
    BAD_MARKER = 18
    BAD_HUFFMAN = 19
    BAD_TABLE = 20
    UNSUPPORTED_PROGRESSIVE = 21
    UNSUPPORTED_LOSSLESS = 22
    UNSUPPORTED_ARITHMETIC = 23
    UNSUPPORTED_PRECISION = 24
    UNSUPPORTED_COMPONENTS = 25
    UNSUPPORTED_SAMPLING = 26
    MULTI_SCAN = 27
    BAD_DIMENSIONS = 28
    MISSING_EOI = 29
    BAD_HEADER = 30
    BAD_RESTART = 31
    BAD_COEFFICIENT = 32
    UNSUPPORTED_SCALE = 33


#: One human message per code: what is wrong and what to do about it.
STATUS_MESSAGES: dict[JpegStatus, str] = {
    JpegStatus.OK: "decoded",
    JpegStatus.NOT_JPEG:
        "not a JPEG file (it does not start with the SOI marker FF D8); check that the file is "
        "a JPEG and was not truncated at the start or sent in another format",
    JpegStatus.TRUNCATED:
        "the JPEG data ends before the image is complete; the file was cut short (incomplete "
        "download or copy): fetch or copy it again",
    JpegStatus.BAD_MARKER:
        "corrupt JPEG: garbage or an unknown marker where a marker must be; the file is damaged: "
        "re-encode it from the original",
    JpegStatus.BAD_HUFFMAN:
        "corrupt JPEG entropy data: a Huffman code that is not in the table; the file is damaged: "
        "re-encode it from the original",
    JpegStatus.BAD_TABLE:
        "corrupt JPEG table: a DHT/DQT segment is malformed or the scan uses a table that was "
        "never defined (16-bit quantization tables count as malformed for the hardware); "
        "re-encode the file with a standard encoder",
    JpegStatus.UNSUPPORTED_PROGRESSIVE:
        "progressive (or hierarchical) JPEG: not supported by the hardware decoder; " + _REENCODE,
    JpegStatus.UNSUPPORTED_LOSSLESS:
        "lossless JPEG: not supported by the hardware decoder; " + _REENCODE,
    JpegStatus.UNSUPPORTED_ARITHMETIC:
        "arithmetic-coded JPEG: not supported by the hardware decoder (Huffman coding only); "
        "re-encode with Huffman coding (e.g. `jpegtran -optimize in.jpg > out.jpg` or "
        "`convert in.jpg out.jpg`)",
    JpegStatus.UNSUPPORTED_PRECISION:
        "JPEG with 12-bit (or other non-8-bit) samples: the hardware decodes 8-bit samples only; "
        "convert to 8 bits (e.g. `convert in.jpg -depth 8 out.jpg`)",
    JpegStatus.UNSUPPORTED_COMPONENTS:
        "JPEG with 2 or 4 components (e.g. CMYK/YCCK): the hardware decodes grayscale or YCbCr "
        "only; convert to RGB (e.g. `convert in.jpg -colorspace sRGB out.jpg`)",
    JpegStatus.UNSUPPORTED_SAMPLING:
        "JPEG chroma subsampling not supported: luma sampling factors must be 1 or 2 and chroma "
        "1x1 (4:4:4, 4:2:2, 4:4:0, 4:2:0); re-encode (e.g. `convert in.jpg -sampling-factor "
        "4:2:0 out.jpg`)",
    JpegStatus.MULTI_SCAN:
        "JPEG with more than one scan (non-interleaved sequential): the hardware decodes a single "
        "interleaved scan; " + _REENCODE,
    JpegStatus.BAD_DIMENSIONS:
        "JPEG width or height is 0 (DNL-defined height) or above the configured maximum; resize "
        "the image or raise the limit",
    JpegStatus.MISSING_EOI:
        "JPEG data decoded but the end-of-image marker (FF D9) is missing; the file was cut "
        "short or has trailing damage: fetch or copy it again",
    JpegStatus.BAD_HEADER:
        "corrupt JPEG header: a SOF/SOS/DRI segment is malformed, missing or inconsistent; "
        "re-encode the file with a standard encoder",
    JpegStatus.BAD_RESTART:
        "corrupt JPEG: a restart marker (RSTn) is missing, out of sequence or unexpected; the "
        "file is damaged: re-encode it from the original",
    JpegStatus.BAD_COEFFICIENT:
        "corrupt JPEG entropy data: a coefficient run goes past the end of its block or a DC "
        "value is out of range; the file is damaged: re-encode it from the original",
    JpegStatus.UNSUPPORTED_SCALE:
        "unsupported decode scale: use 1, 1/2, 1/4 or 1/8",
}


class JpegError(Exception):
    """A JPEG stream the decoder rejects: ``code`` (a :class:`JpegStatus`) and a message that says
    what is wrong and what to do, optionally followed by a detail (offset, table id...)."""

    def __init__(self, code: JpegStatus, message: str | None = None, detail: str | None = None):
        self.code = JpegStatus(code)
        msg = message if message is not None else STATUS_MESSAGES[self.code]
        if detail:
            msg = f"{msg} [{detail}]"
        self.message = msg
        super().__init__(self.code, msg)

    def __str__(self) -> str:
        return f"{self.code.name} ({int(self.code)}): {self.message}"
