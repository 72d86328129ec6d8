"""The quick soundness check of a whole PNG file held in memory, which lets a scan skip Pillow.

:func:`sound_png_size` answers "would Pillow's ``Image.open`` + ``verify()`` accept these
bytes, and with which size?" for the common, plain layout only: the signature, an
``IHDR`` chunk first (13 bytes, a bit depth / colour type pair of the PNG
specification, filter method 0), optionally a ``PLTE`` chunk, then ``IDAT`` and any
later chunks with well-formed names, each with a matching CRC, up to ``IEND``. Anything
else (ancillary chunks before the pixels, animation chunks, a short file, a bad CRC, a
size over the limit) gives None and the caller runs the full Pillow check, which finds
the reason. The function is therefore a sufficient condition: it never accepts what
Pillow would refuse, and the size it returns is the one Pillow reads (both are tested
against Pillow on valid and damaged files). Like Pillow's ``verify``, it does not
decompress the pixel data.
"""

from __future__ import annotations

import re
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The (bit depth, colour type) pairs the PNG specification allows (Pillow reads each of them).
_MODES = frozenset({(1, 0), (2, 0), (4, 0), (8, 0), (16, 0), (8, 2), (16, 2), (1, 3), (2, 3), (4, 3), (8, 3),
                    (8, 4), (16, 4), (8, 6), (16, 6)})
_CHUNK_NAME = re.compile(rb"\w\w\w\w").match  # the chunk names Pillow's reader accepts
_HEAD = struct.Struct(">I4s")  # chunk length, chunk name
_IHDR = struct.Struct(">IIBBBBB")  # width, height, bit depth, colour type, compression, filter, interlace
_CRC = struct.Struct(">I")


def sound_png_size(data: bytes, max_pixels: int) -> tuple[int, int] | None:
    """``(width, height)`` of a plainly laid out, intact PNG file, else None (check it fully).

    Args:
        data: The whole file.
        max_pixels: Largest ``width * height`` accepted here (larger: None).

    Returns:
        The size from ``IHDR`` when every chunk up to ``IEND`` is whole with a matching
        CRC and the layout is the plain one described in the module docstring; else None.
    """
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE):
        return None
    length, name = _HEAD.unpack_from(data, 8)
    if name != b"IHDR" or length != 13:
        return None
    width, height, depth, color, _compression, filter_method, _interlace = _IHDR.unpack_from(data, 16)
    if filter_method or (depth, color) not in _MODES or width < 1 or height < 1 or width * height > max_pixels:
        return None
    view = memoryview(data)
    if zlib.crc32(view[12:29]) != _CRC.unpack_from(data, 29)[0]:
        return None
    end = len(data)
    pos = 33
    pixels = False
    while pos + 8 <= end:
        length, name = _HEAD.unpack_from(data, pos)
        if name == b"IEND":
            return (width, height) if pixels else None
        if name == b"IDAT":
            pixels = True
        elif not pixels and name != b"PLTE":
            return None  # before the pixels, Pillow interprets each chunk: let it decide
        elif not _CHUNK_NAME(name):
            return None
        stop = pos + 8 + length
        if stop + 4 > end or zlib.crc32(view[pos + 4:stop]) != _CRC.unpack_from(data, stop)[0]:
            return None
        pos = stop + 4
    return None
