"""Server-to-client WebSocket frames built by hand, for the paths that write to the socket
directly (the Socket.IO room fan-out, the ingest acknowledgements).

A server's frames are not masked, so a text frame is its header and its UTF-8 payload: the
same bytes ``websockets`` writes for ``send_text`` on a connection without extensions.
"""

from __future__ import annotations

import struct


def ws_frame(text: str) -> bytes:
    """One unmasked, final WebSocket text frame carrying ``text`` (RFC 6455, section 5.2)."""
    data = text.encode()
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, n) + data
    return struct.pack("!BBQ", 0x81, 127, n) + data
