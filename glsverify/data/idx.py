"""The IDX format of the MNIST files, parsed with numpy (no pickle, no torchvision).

An IDX file is big-endian: two zero bytes, a type byte (0x08 = unsigned byte), the number of
dimensions, one uint32 size per dimension, then the data. Files may be gzipped or not.
Every problem is reported as a :class:`DatasetError` that names the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from glsverify.errors import DatasetError

UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"


def read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, decompressed when it starts with the gzip magic bytes."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read ({error.strerror or error})") from error
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path}: corrupt or truncated gzip data ({error})") from error


def parse_idx(data: bytes, ndim: int, where: str) -> np.ndarray:
    """A read-only uint8 array of ``ndim`` dimensions from IDX bytes; ``where`` names the file."""
    expected_magic = (UBYTE << 8) | ndim
    if len(data) < 4:
        raise DatasetError(f"{where}: only {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DatasetError(
            f"{where}: bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(IDX unsigned bytes with {ndim} dimension{'s' if ndim != 1 else ''})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{where}: truncated header ({len(data)} of {header} bytes)")
    shape = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    present = len(data) - header
    if present < expected:
        raise DatasetError(
            f"{where}: truncated, the header promises {expected} data bytes for shape {shape} "
            f"but only {present} follow"
        )
    if present > expected:
        raise DatasetError(
            f"{where}: {present - expected} unexpected bytes after the {expected} data bytes "
            f"for shape {shape}"
        )
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(shape)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read and parse one IDX file (gzipped or not)."""
    return parse_idx(read_maybe_gzip(path), ndim, str(path))
