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


_RETRY_CODES = frozenset({1001, 1006, 1011, 1012, 1013})  # going away, dropped, restarting
_MAX_RETRIES = 8


def _backoff(attempt: int) -> float:
    return float(min(5.0, 0.25 * 2**attempt))


async def _events(client: httpx.AsyncClient, session_id: str,
                  out: Callable[[str], None]) -> None:
    """Print the session's events until ``session-end``; on a drop (or the server's
    ``server-shutdown``), reconnect with ``Last-Event-ID`` so nothing is missed or repeated."""
    last_seq = 0
    failures = 0
    while True:
        headers = {"Last-Event-ID": str(last_seq)} if last_seq else {}
        try:
            async with client.stream("GET", f"/session/{session_id}/stream", headers=headers,
                                     timeout=httpx.Timeout(None, connect=10)) as r:
                if r.status_code == 204:  # ended, and we have seen all of it
                    return
                r.raise_for_status()
                kind = "message"
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        if isinstance(data.get("seq"), int):
                            last_seq = max(last_seq, data["seq"])
                        failures = 0
                        if kind != "server-shutdown":
                            out(format_event(kind, data))
                        if kind == "session-end":
                            return
        except (httpx.TransportError, httpx.HTTPStatusError) as exc:
            if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code < 500:
                raise
        failures += 1
        if failures > _MAX_RETRIES:
            raise OSError(f"lost the event stream of session {session_id}")
        await asyncio.sleep(_backoff(failures))


class _Ingest:
    """The audio socket, reconnected when it drops; frames resume at the server's count."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.headers = headers
        self.ws: Any = None
        self.acked = 0  # samples the server has confirmed

    async def connect(self) -> None:
        self.ws = await websockets.connect(self.url, compression=None, max_size=2**20,
                                           additional_headers=self.headers)
        await self.ws.send(json.dumps({"type": "keepalive"}))
        reply = json.loads(await self.ws.recv())
        self.acked = int(reply.get("samples", self.acked))

    async def send(self, frame: bytes, end_sample: int) -> None:
        """Send one frame ending at ``end_sample`` (counted from the session's start),
        reconnecting as needed; a frame the server already has is not sent again."""
        for attempt in range(_MAX_RETRIES + 1):
            if self.acked >= end_sample:
                return
            try:
                if self.ws is None:
                    await self.connect()
                    if self.acked >= end_sample:
                        return
                await self.ws.send(frame)
                reply = json.loads(await self.ws.recv())
                self.acked = int(reply.get("samples", end_sample))
                return
            except (websockets.ConnectionClosed, OSError) as exc:
                code = getattr(getattr(exc, "rcvd", None), "code", 1006)
                if isinstance(exc, websockets.ConnectionClosed) and code not in _RETRY_CODES:
                    raise OSError(f"the server closed the audio socket ({code})") from None
                self.ws = None
                await asyncio.sleep(_backoff(attempt))
        raise OSError("could not reconnect the audio socket")

    async def control(self, kind: str) -> None:
        if self.ws is None:
            await self.connect()
        await self.ws.send(json.dumps({"type": kind}))
        if kind != "close":
            await self.ws.recv()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def stream_file(path: Path, *, server: str, speed: float = 1.0,
                      options: dict[str, Any] | None = None, out: TextIO = sys.stdout,
                      end_session: bool = True, api_key: str | None = None) -> str:
    """Create a session, stream the file, print events; returns the session id.

    A dropped audio socket or event stream (the server restarting, say) is reconnected and
    the session continues where the server's sample count says it is."""
    def emit(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=server, timeout=30, headers=headers) as client:
        r = await client.post("/session/start", json=options or {})
        r.raise_for_status()
        session = r.json()
        sid = session["session_id"]
        rate = int(session["options"]["sample_rate"])
        emit(f"session {sid} ({rate} Hz)")
        events = asyncio.create_task(_events(client, sid, emit))
        ingest = _Ingest(server.replace("http", "ws", 1).rstrip("/") + f"/session/{sid}/audio",
                         headers)
        try:
            t0 = time.monotonic()
            sent = 0
            for i, frame in enumerate(pcm_frames(path, sample_rate=rate)):
                sent += len(frame) // 2
                await ingest.send(frame, sent)
                if speed > 0:
                    due = t0 + (i + 1) * FRAME_MS / 1000.0 / speed
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
            await ingest.control("finalize")
            await ingest.control("close")
        finally:
            await ingest.close()
        if end_session:  # the server finishes the queued windows before it ends
            await client.delete(f"/session/{sid}/end")
            await asyncio.wait_for(events, 30)
        else:
            events.cancel()
        return str(sid)
