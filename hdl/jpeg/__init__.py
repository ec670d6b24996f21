"""Baseline JPEG decoder: the golden model of the hardware decoder, bit-identical to Pillow.

Stages (each a function that can be checked alone)::

    markers.parse_header        SOI .. SOS: frame, tables, restart interval
    markers.split_entropy_data  entropy-coded segments, byte stuffing removed, split at RSTn
    huffman.entropy_decode      quantized coefficient blocks, MCU by MCU (zigzag order)
    huffman.blocks_by_component blocks per component, natural order
    idct.dequantize / idct.idct_islow, idct_4x4, idct_2x2, idct_1x1
    upsample.upsample           fancy (triangle) or box chroma upsampling
    color.ycc_to_rgb            integer YCbCr -> RGB
    markers.parse_trailer       markers after the scan up to EOI

Supported: SOF0/SOF1 8-bit Huffman, one interleaved scan with all components, 1 (gray) or 3
(YCbCr) components, luma sampling 1 or 2 in each direction with chroma 1x1, restart intervals,
any size, decode scales 1, 1/2, 1/4, 1/8. Everything else raises :class:`JpegError` with a
:class:`JpegStatus` code shared with the hardware. Corrupt streams are rejected, never repaired
(libjpeg's lenient recovery is not reproduced).
"""
from .decoder import decode, decode_status, output_size, read_header
from .status import STATUS_MESSAGES, JpegError, JpegStatus

__all__ = ["decode", "decode_status", "read_header", "output_size", "JpegError", "JpegStatus",
           "STATUS_MESSAGES"]
