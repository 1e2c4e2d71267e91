"""A reader for Qt resource bundles (``.rcc``), the format GCompris ships its images in.

Layout (all integers big-endian): a header ``b"qres"``, format version, then the offsets of the
tree, data and names sections (version 3 adds a flags word). The tree is a flat table of nodes:
name offset (u32), flags (u16: 1 = zlib, 2 = directory, 4 = zstd), then for a directory the child
count and first child index (u32, u32), for a file the locale (u16, u16) and data offset (u32);
versions >= 2 append a u64 modification time. A name is a u16 length, a u32 hash and UTF-16
characters. A data blob is a u32 length then bytes; zlib blobs start with their own u32
uncompressed size (Qt's ``qCompress``).
"""

from __future__ import annotations

import os
import struct
import zlib

_COMPRESSED = 0x01
_DIRECTORY = 0x02
_ZSTD = 0x04


class RccError(ValueError):
    """The bytes are not a readable Qt resource bundle."""


def read_rcc(data: bytes) -> dict[str, bytes]:
    """Extract every file of a Qt resource bundle.

    Args:
        data: The ``.rcc`` file's bytes.

    Returns:
        ``{path: content}`` with ``/``-separated paths relative to the bundle root.

    Raises:
        RccError: on a bad header, a zstd-compressed entry or a truncated bundle.
    """
    if len(data) < 20 or data[:4] != b"qres":
        raise RccError("not a Qt resource bundle (missing 'qres' header)")
    version, tree, blobs, names = struct.unpack_from(">IIII", data, 4)
    node_size = 22 if version >= 2 else 14

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", data, names + offset)
        start = names + offset + 6  # skip length and hash
        return data[start : start + 2 * length].decode("utf-16-be")

    def blob_at(offset: int, flags: int) -> bytes:
        (length,) = struct.unpack_from(">I", data, blobs + offset)
        start = blobs + offset + 4
        raw = data[start : start + length]
        if len(raw) != length:
            raise RccError("truncated data section")
        if flags & _ZSTD:
            raise RccError("zstd-compressed entries are not supported")
        return zlib.decompress(raw[4:]) if flags & _COMPRESSED else raw

    files: dict[str, bytes] = {}
    stack = [(0, "")]  # (node index, parent path); node 0 is the unnamed root
    while stack:
        index, parent = stack.pop()
        base = tree + index * node_size
        try:
            name_offset, flags = struct.unpack_from(">IH", data, base)
            path = f"{parent}{name_at(name_offset)}" if index else ""
            if flags & _DIRECTORY:
                count, first = struct.unpack_from(">II", data, base + 6)
                prefix = f"{path}/" if index else ""
                stack.extend((child, prefix) for child in range(first, first + count))
            else:
                (offset,) = struct.unpack_from(">I", data, base + 10)
                files[path] = blob_at(offset, flags)
        except (struct.error, zlib.error) as error:
            raise RccError(f"corrupt bundle at node {index}: {error}") from error
    return files


def read_rcc_file(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """Extract every file of a ``.rcc`` bundle on disk (see :func:`read_rcc`).

    Args:
        path: The bundle.

    Returns:
        ``{path: content}``.
    """
    with open(path, "rb") as handle:
        return read_rcc(handle.read())
