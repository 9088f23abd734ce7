"""What an image file's first bytes say: its format and its size, read without decoding it.

A decoder allocates width x height pixels before it reads them, so a file whose header
claims 30000 x 30000 pixels costs gigabytes before it fails (a decompression bomb); a
file that is empty, text or cut short fails only when decoded, deep inside a DataLoader
worker. Reading the header first turns each of these into one line naming the file.
Formats are recognised by their magic bytes, not their extension.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["DECODABLE", "MAX_PIXELS", "ImageHeader", "pixel_problem", "read_header"]

# What torchvision.io.decode_image decodes; other image formats are recognised and refused.
DECODABLE = ("JPEG", "PNG", "GIF", "WEBP")
# PIL's Image.MAX_IMAGE_PIXELS: a quarter of a gigabyte of RGB pixels per image.
MAX_PIXELS = 89_478_485

_OTHER_FORMATS = (
    (b"BM", "BMP"),
    (b"II*\0", "TIFF"),
    (b"MM\0*", "TIFF"),
    (b"P5", "PGM"),
    (b"P6", "PPM"),
)
# JPEG start-of-frame markers (they carry the size); C4, C8 and CC are other segments.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class ImageHeader:
    """An image file's format (``JPEG``, ``PNG``, ...) and its size in pixels."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(stream: BinaryIO | bytes) -> ImageHeader:
    """The format and size from the file's header; ``ValueError`` saying why not an image.

    Reads a few dozen bytes (a JPEG: its segment headers up to the frame header, seeking
    past the rest), so it is cheap enough to run on every file of a dataset.
    """
    if isinstance(stream, bytes | bytearray | memoryview):
        stream = io.BytesIO(stream)
    head = stream.read(32)
    if not head:
        raise ValueError("empty file (0 bytes)")
    if head.startswith(b"\xff\xd8\xff"):
        return _jpeg(stream)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise ValueError("truncated PNG header")
        width, height = struct.unpack(">II", head[16:24])
        return ImageHeader("PNG", width, height)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        if len(head) < 10:
            raise ValueError("truncated GIF header")
        width, height = struct.unpack("<HH", head[6:10])
        return ImageHeader("GIF", width, height)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp(head)
    for magic, name in _OTHER_FORMATS:
        if head.startswith(magic):
            raise ValueError(
                f"a {name} image, which torchvision.io cannot decode (it decodes "
                f"{', '.join(DECODABLE)}); convert it"
            )
    raise ValueError(f"not an image (starts with {head[:8]!r})")


def pixel_problem(header: ImageHeader, max_pixels: int) -> str | None:
    """Why the image may not be decoded (too many pixels), or None."""
    if header.pixels > max_pixels:
        return (
            f"{header.width}x{header.height} {header.format} is {header.pixels:,} pixels, over "
            f"the limit of {max_pixels:,} (max_pixels) that guards against decompression bombs"
        )
    if header.pixels == 0:
        return f"the {header.format} header says {header.width}x{header.height} pixels"
    return None


def _jpeg(stream: BinaryIO) -> ImageHeader:
    """Walk the JPEG's segments from the start to its frame header (SOFn)."""
    stream.seek(2)
    while True:
        marker = stream.read(2)
        while len(marker) == 2 and marker[0] == 0xFF and marker[1] == 0xFF:  # fill bytes
            marker = marker[1:] + stream.read(1)
        if len(marker) < 2:
            raise ValueError("truncated JPEG: the file ends before its frame header")
        if marker[0] != 0xFF:
            raise ValueError("corrupt JPEG: no segment marker where one belongs")
        kind = marker[1]
        if kind == 0x01 or 0xD0 <= kind <= 0xD8:  # markers without a length
            continue
        if kind in (0xD9, 0xDA):
            raise ValueError("corrupt JPEG: image data before any frame header")
        length = stream.read(2)
        if len(length) < 2:
            raise ValueError("truncated JPEG: the file ends inside a segment header")
        size = struct.unpack(">H", length)[0]
        if kind in _SOF:
            frame = stream.read(5)
            if len(frame) < 5:
                raise ValueError("truncated JPEG: the file ends inside its frame header")
            height, width = struct.unpack(">HH", frame[1:5])
            return ImageHeader("JPEG", width, height)
        if size < 2:
            raise ValueError("corrupt JPEG: a segment of negative length")
        stream.seek(size - 2, io.SEEK_CUR)


def _webp(head: bytes) -> ImageHeader:
    chunk = head[12:16]
    if len(head) < 30:
        raise ValueError("truncated WebP header")
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
    elif chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8 ":
        width = int.from_bytes(head[26:28], "little") & 0x3FFF
        height = int.from_bytes(head[28:30], "little") & 0x3FFF
    else:
        raise ValueError(f"unknown WebP chunk {chunk!r}")
    return ImageHeader("WEBP", width, height)
