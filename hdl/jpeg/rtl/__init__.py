"""Baseline JPEG decoder in Amaranth, bit-identical to the golden model :mod:`hdl.jpeg`.

One concept per file::

    consts.py    tables shared by the blocks (zigzag, T.81 Annex K Huffman tables, status codes)
    parser.py    MarkerParser: SOI..SOS, tables into RAM, byte unstuffing / RSTn split, trailer
    entropy.py   EntropyDecoder: bit buffer, restart boundaries, canonical Huffman decode, MCU order
    idct.py      BlockIdct: dequantize, coefficient ping-pong buffer, 2-pass IDCT: islow 8x8 or
                 the reduced 4x4 / 2x2 / 1x1 of scaled decoding (1/2, 1/4, 1/8)
    raster.py    Raster: MCU-row line buffers (32 luma, 16 chroma lines), fancy upsampling,
                 YCbCr->RGB, raster output
    decoder.py   JpegDecoder: the top (ports i / scale / o / status / width / height /
                 header_valid)
"""
from .decoder import DEFAULT_MAX_HEIGHT, DEFAULT_MAX_WIDTH, JpegDecoder, manifest

__all__ = ["JpegDecoder", "manifest", "DEFAULT_MAX_WIDTH", "DEFAULT_MAX_HEIGHT"]
