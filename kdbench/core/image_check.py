"""Which image files of a dataset cannot be trained on, found before training starts.

Every file is checked, cheaply: its size (an empty file), its header (magic bytes, a
format torchvision decodes, its size against the pixel limit) and its last 4 KiB (the
end-of-image marker a JPEG, PNG or GIF ends with, the length a WebP declares). Only a
file whose end marker is missing, the mark of a truncated file (or of data appended
after a valid image), is decoded in full to tell the two apart. So the cost is two small
reads per file and a decode per suspect file; files are checked by a pool of threads
because the time goes into opening files, not into Python.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from kdbench.core.image_header import ImageHeader, pixel_problem, read_header

__all__ = ["decode_problem", "file_problem", "find_problems"]

TAIL = 4096
_ENDS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82", "GIF": b";"}


def file_problem(path: str | Path, max_pixels: int) -> str | None:
    """Why ``path`` cannot be trained on (one short clause), or None when it looks whole."""
    try:
        with open(path, "rb") as stream:
            header = read_header(stream)
            too_big = pixel_problem(header, max_pixels)
            if too_big:
                return too_big
            if _ends_whole(header, stream):
                return None
    except ValueError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    return decode_problem(Path(path).read_bytes())


def decode_problem(data: bytes | bytearray) -> str | None:
    """What torchvision's decoder says of ``data``, in one clause, or None if it decodes."""
    import warnings

    import torch
    from torchvision.io import ImageReadMode, decode_image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.RGB)
    except RuntimeError as exc:
        return f"cannot be decoded: {decoder_message(exc)}"
    return None


def decoder_message(exc: BaseException) -> str:
    """torchvision's error without its C++ source location, on one line."""
    text = " ".join(str(exc).split())
    return re.sub(r"^[^,]*, \S+:\d+, ", "", text)[:200]


def find_problems(
    root: str | Path, files: Sequence[str], max_pixels: int, *, threads: int = 16
) -> list[tuple[str, str]]:
    """``(file, problem)`` for each file under ``root`` that cannot be trained on, in order."""
    base = Path(root)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        found = pool.map(lambda name: file_problem(base / name, max_pixels), files)
        return [(name, problem) for name, problem in zip(files, found, strict=True) if problem]


def _ends_whole(header: ImageHeader, stream: BinaryIO) -> bool:
    """Whether the file ends as its format ends (a WebP: as long as its RIFF header says)."""
    size = stream.seek(0, os.SEEK_END)
    if header.format == "WEBP":
        stream.seek(4)
        return int.from_bytes(stream.read(4), "little") + 8 <= size
    stream.seek(max(0, size - TAIL))
    return _ENDS[header.format] in stream.read()
