"""``tonewire stream``: play a file into a live session like a microphone would, and print
the events the server sends back. A real client for demos and tests.

The file is decoded to mono PCM16 at the session's rate and sent in 100 ms frames, paced at
real time times ``speed`` (0 = as fast as the server acknowledges). Events arrive over SSE
concurrently and are printed one per line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import httpx
import numpy as np
import websockets

from tonewire.audio.decode import AudioReader

FRAME_MS = 100


def pcm_frames(path: Path, *, sample_rate: int, frame_ms: int = FRAME_MS) -> Iterator[bytes]:
    """PCM16 little-endian mono frames of ``frame_ms`` from any audio file."""
    frame = sample_rate * frame_ms // 1000
    carry = np.zeros(0, dtype=np.float32)
    with AudioReader(path, sample_rate=sample_rate, block_seconds=1.0) as reader:
        for block in reader:
            mono = block.mean(axis=0) if block.shape[0] > 1 else block[0]
            x = np.concatenate((carry, mono))
            n = (x.size // frame) * frame
            for i in range(0, n, frame):
                yield _pcm16(x[i : i + frame])
            carry = x[n:]
    if carry.size:
        yield _pcm16(carry)


def _pcm16(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()


def format_event(kind: str, data: dict[str, Any]) -> str:
    ts = data.get("timestamp")
    at = f"{ts:7.2f}s" if isinstance(ts, int | float) else "        "
    if kind == "tone-event":
        flags = ",".join(data.get("prosody_flags") or [])
        return (f"{at}  tone   {data.get('label')!s:<9} {data.get('confidence', 0):.2f}  "
                f"{data.get('shift_direction', '')!s:<8} {flags}  {data.get('subtext', '')}")
    if kind == "vad-event":
        return f"{at}  voice  {'speech' if data.get('speech') else 'silence'}"
    if kind == "service-event":
        return f"{at}  service {data.get('status')}: {data.get('message', '')}"
    if kind == "session-end":
        return f"{at}  end    ({data.get('reason')})"
    return f"{at}  {kind}  {json.dumps(data)}"


async def _events(client: httpx.AsyncClient, session_id: str,
                  out: Callable[[str], None]) -> None:
    async with client.stream("GET", f"/session/{session_id}/stream",
                             timeout=httpx.Timeout(None, connect=10)) as r:
        r.raise_for_status()
        kind = "message"
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                out(format_event(kind, json.loads(line[6:])))
                if kind == "session-end":
                    return


async def stream_file(path: Path, *, server: str, speed: float = 1.0,
                      options: dict[str, Any] | None = None, out: TextIO = sys.stdout,
                      end_session: bool = True) -> str:
    """Create a session, stream the file, print events; returns the session id."""
    def emit(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        r = await client.post("/session/start", json=options or {})
        r.raise_for_status()
        session = r.json()
        sid = session["session_id"]
        rate = int(session["options"]["sample_rate"])
        emit(f"session {sid} ({rate} Hz)")
        events = asyncio.create_task(_events(client, sid, emit))
        ws_url = server.replace("http", "ws", 1).rstrip("/") + f"/session/{sid}/audio"
        async with websockets.connect(ws_url, compression=None, max_size=2**20) as ws:
            t0 = time.monotonic()
            for i, frame in enumerate(pcm_frames(path, sample_rate=rate)):
                await ws.send(frame)
                await ws.recv()  # the ack
                if speed > 0:
                    due = t0 + (i + 1) * FRAME_MS / 1000.0 / speed
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
            await ws.send(json.dumps({"type": "finalize"}))
            await ws.recv()
            await ws.send(json.dumps({"type": "close"}))
        if end_session:  # the server finishes the queued windows before it ends
            await client.delete(f"/session/{sid}/end")
            await asyncio.wait_for(events, 30)
        else:
            events.cancel()
        return str(sid)
