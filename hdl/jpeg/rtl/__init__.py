"""Baseline JPEG decoder in Amaranth, bit-identical to the golden model :mod:`hdl.jpeg`.

One concept per file::

    consts.py    tables shared by the blocks (zigzag, T.81 Annex K Huffman tables, status codes)
    parser.py    MarkerParser: SOI..SOS, tables into RAM, byte unstuffing / RSTn split, trailer
    entropy.py   EntropyDecoder: bit buffer, restart boundaries, canonical Huffman decode, MCU order
    idct.py      BlockIdct: dequantize, coefficient ping-pong buffer, 2-pass islow IDCT
    raster.py    Raster: MCU-row line buffers, fancy upsampling, YCbCr->RGB, raster output
    decoder.py   JpegDecoder: the top (ports i / o / status / width / height / header_valid)
"""
from .decoder import DEFAULT_MAX_HEIGHT, DEFAULT_MAX_WIDTH, JpegDecoder, manifest

__all__ = ["JpegDecoder", "manifest", "DEFAULT_MAX_WIDTH", "DEFAULT_MAX_HEIGHT"]
