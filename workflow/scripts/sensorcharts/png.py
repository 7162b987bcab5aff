"""PNG files written directly from the canvas: RGB, text chunks, no timestamp, the same bytes for the same pixels.

Pillow's encoder tries every PNG row filter on every row and keeps the best (its adaptive strategy), which on
these charts costs three times the compression itself and gives larger files than no filter at all: long
runs of one colour (white, the grid) compress better unfiltered. So the rows go to zlib unfiltered, at a low
level (3): ~5 ms a chart instead of ~14 ms with Pillow, and ~53 KB instead of ~55 KB. The chunk layout is
the PNG specification's (https://www.w3.org/TR/png-3/): IHDR, pHYs, one tEXt (or iTXt) per metadata key,
IDAT, IEND.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COMPRESS_LEVEL = 3


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))


def _text_chunk(key: str, value: str) -> bytes:
    """tEXt when the text is Latin-1 (what PNG allows there), else iTXt (UTF-8), as Pillow's add_text does."""
    try:
        return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def encode(rgba, text: dict[str, str], dpi: float, level: int = COMPRESS_LEVEL) -> bytes:
    """An RGB PNG of ``rgba`` (height x width x 4, uint8, opaque: the alpha channel is dropped) with ``text``."""
    pixels = np.asarray(rgba)
    height, width = pixels.shape[:2]
    rows = np.empty((height, 1 + 3 * width), dtype=np.uint8)
    rows[:, 0] = 0  # filter type None, on every row
    # One channel at a time: seven times faster than copying the (width, 3) slices of the RGBA pixels.
    flat, rgb = pixels.reshape(height, 4 * width), rows[:, 1:]
    for channel in range(3):
        rgb[:, channel::3] = flat[:, channel::4]
    per_metre = int(dpi / 0.0254 + 0.5)
    return b"".join([
        SIGNATURE,
        _chunk(b"IHDR", struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0)),
        _chunk(b"pHYs", struct.pack("!IIB", per_metre, per_metre, 1)),
        *(_text_chunk(key, value) for key, value in text.items()),
        _chunk(b"IDAT", zlib.compress(rows, level)),
        _chunk(b"IEND", b""),
    ])
