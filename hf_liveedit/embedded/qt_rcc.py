"""A minimal reader for Qt binary resource bundles (``.rcc``), as GCompris ships its data.

Layout (Qt's rcc format, versions 1-3): a ``qres`` header with the offsets of a node tree, a
data area and a name table. A directory node lists a contiguous run of child nodes; a file node
points into the data area, where each blob is ``u32 length`` + bytes, zlib-compressed behind a
``u32`` size prefix when the node's compression flag is set.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_COMPRESSED_ZLIB = 0x1
_DIRECTORY = 0x2
_COMPRESSED_ZSTD = 0x4


def read_rcc(path: str | Path) -> dict[str, bytes]:
    """Read every file of an ``.rcc`` bundle.

    Args:
        path: The bundle.

    Returns:
        Map from resource path (``/gcompris/src/...``, the part after ``qrc:``) to file bytes.
        zstd-compressed entries (not used by GCompris' zlib bundles) are skipped.
    """
    blob = Path(path).read_bytes()
    if blob[:4] != b"qres":
        raise ValueError(f"{path} is not a Qt resource bundle")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node_size = 22 if version >= 2 else 14  # v2 added a 64-bit modification time per node

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset : names + offset + 2])
        start = names + offset + 6  # skip the 32-bit name hash
        return blob[start : start + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}
    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        node = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", blob[node : node + 6])
        path_here = f"{prefix}/{name_at(name_offset)}" if index else ""
        if flags & _DIRECTORY:
            count, first = struct.unpack(">II", blob[node + 6 : node + 14])
            stack.extend((child, path_here) for child in range(first, first + count))
            continue
        if flags & _COMPRESSED_ZSTD:
            continue
        (offset,) = struct.unpack(">I", blob[node + 10 : node + 14])
        (length,) = struct.unpack(">I", blob[data + offset : data + offset + 4])
        raw = blob[data + offset + 4 : data + offset + 4 + length]
        files[path_here] = zlib.decompress(raw[4:]) if flags & _COMPRESSED_ZLIB else raw
    return files
