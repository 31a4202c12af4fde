"""Read the duration a WAV header declares.

FFmpeg silently clips a WAV ``data`` size to the bytes actually present, so a tiny file whose
header claims hours decodes as if nothing were wrong. We read the claim ourselves, to refuse it
as too long or report the file as truncated, like any container that declares a duration.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

# Writers that stream WAV (ffmpeg to a pipe, sox) put 0 or 0xFFFFFFFF here: "length unknown".
_UNKNOWN_SIZES = {0, 0xFFFFFFFF}


def declared_wav_seconds(f: BinaryIO, *, max_chunks: int = 64) -> float | None:
    """Seconds the RIFF/WAVE header declares, or ``None`` when not a WAV or length unknown."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    byte_rate: int | None = None
    for _ in range(max_chunks):
        hdr = f.read(8)
        if len(hdr) < 8:
            return None
        cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
        if cid == b"fmt ":
            fmt = f.read(min(size, 16))
            if len(fmt) < 12:
                return None
            byte_rate = struct.unpack("<I", fmt[8:12])[0]
            f.seek(size - len(fmt) + (size & 1), 1)
        elif cid == b"data":
            if byte_rate is None or byte_rate == 0 or size in _UNKNOWN_SIZES:
                return None
            return float(size) / float(byte_rate)
        else:
            f.seek(size + (size & 1), 1)
    return None
