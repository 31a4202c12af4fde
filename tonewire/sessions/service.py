"""The live session service: start, ingest, analyse, fan out, end, reap.

Each active session in this process is a :class:`LiveSession`: its sample buffer, a bounded
queue of due windows and one consumer task that analyses them in order (the DSP itself runs
batched across sessions in worker processes) and appends the resulting events to the
session's stream. Ending a session, by request or by the reaper, closes everything attached
to it: the ingest socket, the consumer, and every subscriber's stream (``session-end``).

Across nodes, a session's stream is appended by the node holding its ingest socket. That
node holds a lease on the session in the store, renewed with its sample count every third of
``lease_s``; an ingest socket connecting to another node claims the session once the lease is
free (released when the socket left, or run out because the node died) and carries on from the
sample count in the store and the stream's last seq. A node that finds it has lost a session
(ended elsewhere, or claimed by another node) lets its copy go.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np

from tonewire.errors import TonewireError
from tonewire.logs import session_id_var
from tonewire.metrics import Metrics
from tonewire.sessions.buffer import DueWindow, SampleBuffer
from tonewire.sessions.classifier import Classifier, ClassifierFactory, WindowEvents
from tonewire.sessions.model import (
    CLOSE_ALREADY_STREAMING,
    CLOSE_SESSION_ENDED,
    SessionOptions,
    SessionState,
    new_session_id,
    session_stream,
    session_view,
)
from tonewire.store.database import Store
from tonewire.streams.log import StreamConflict, StreamLog

log = logging.getLogger(__name__)

SESSION_TERMINAL: Final = frozenset({"session-end"})
SESSION_EVENT_TYPES: Final = ("tone-event", "vad-event", "service-event", "transcript-event",
                              "speaker-event", "session-end")
_WINDOW_QUEUE: Final = 8
_WARN_EVERY_S: Final = 10.0
_DRAIN_S: Final = 5.0
_BACKPRESSURE_S: Final = 2.0
_PROBE_WAIT_S: Final = 0.5
_RELEASE_POLL_S: Final = 0.05
_RENEW_CHUNK: Final = 50
MIN_WINDOW_S: Final = 0.25
"""The speech analysis needs at least this much audio; a shorter finalised tail is padded."""


class SessionNotFound(TonewireError):
    code = "SESSION_NOT_FOUND"


class SessionEnded(TonewireError):
    code = "SESSION_ENDED"


class SessionLimit(TonewireError):
    code = "SESSION_LIMIT"


class IngestBusy(TonewireError):
    code = "INGEST_BUSY"


class IngestHandle(Protocol):
    """What the service needs of an ingest socket: a way to close it."""

    async def close_ingest(self, code: int, reason: str) -> None: ...


@dataclass
class LiveSession:
    id: str
    options: SessionOptions
    buffer: SampleBuffer
    classifier: Classifier
    queue: asyncio.Queue[DueWindow] = field(
        default_factory=lambda: asyncio.Queue(_WINDOW_QUEUE))
    consumer: asyncio.Task[None] | None = None
    ingest: IngestHandle | None = None
    sse_subscribers: int = 0
    idle_since: float | None = None
    dropped_windows: int = 0
    last_warning: float = float("-inf")

    @property
    def stream(self) -> str:
        return session_stream(self.id)


class SessionService:
    def __init__(self, *, store: Store, log: StreamLog, classifiers: ClassifierFactory,
                 idle_ttl_s: float, max_sessions: int,
                 member_count: Callable[[str], int] = lambda _stream: 0,
                 clock: Callable[[], float] = time.monotonic,
                 metrics: Metrics | None = None,
                 node: str | None = None, lease_s: float = 10.0) -> None:
        self.store = store
        self.log = log
        self.classifiers = classifiers
        self.idle_ttl_s = idle_ttl_s
        self.max_sessions = max_sessions
        self.member_count = member_count
        self.clock = clock
        self.metrics = metrics
        self.node = node or secrets.token_hex(8)
        self.lease_s = lease_s
        self.live: dict[str, LiveSession] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._leases: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._ending: dict[str, asyncio.Task[dict[str, Any]]] = {}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, *, reaper: bool = True) -> None:
        """Start the reaper and the lease keeper. Sessions a previous process left active
        come back when their ingest reconnects (their sample clocks intact), on any node;
        the reaper ends them if nobody returns."""
        if reaper:
            self._reaper = asyncio.create_task(self._reap_forever(), name="session-reaper")
        self._leases = asyncio.create_task(self._keep_leases(), name="session-leases")

    async def close(self) -> None:
        for task in (self._reaper, self._leases):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for s in list(self.live.values()):
            await self._stop_live(s, persist=True)
        self.live.clear()

    # -- commands --------------------------------------------------------------------------
    async def create(self, options: SessionOptions) -> dict[str, Any]:
        if len(self.live) >= self.max_sessions:
            raise SessionLimit(f"the server is at its limit of {self.max_sessions} sessions")
        now = time.time()
        session_id = new_session_id()
        row = {"id": session_id, "state": SessionState.ACTIVE.value,
               "options": options.model_dump_json(), "samples": 0, "created_at": now,
               "updated_at": now, "ended_at": None, "end_reason": None,
               # No ingest yet: the first socket may connect through any node.
               "owner": self.node, "lease_expires": 0.0}
        await self.store.insert_session(row)
        live = self._make_live(session_id, options, start_sample=0)
        # The probe (a sidecar's /health) may not hold up the start for long: past a short
        # wait it reports in the background.
        probe = asyncio.create_task(self._report_readiness(live))
        self._background.add(probe)
        probe.add_done_callback(self._background.discard)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(probe), _PROBE_WAIT_S)
        return self.view(row)

    async def _report_readiness(self, live: LiveSession) -> None:
        status = await live.classifier.readiness()
        with contextlib.suppress(StreamConflict):  # the session moved to another node first
            await self.log.append(live.stream, "service-event",
                                  {"session_id": live.id, **status, "timestamp": 0.0})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def get_row(self, session_id: str) -> dict[str, Any]:
        row = await self.store.get_session(session_id)
        if row is None:
            raise SessionNotFound(f"no session {session_id}")
        return row

    def view(self, row: dict[str, Any]) -> dict[str, Any]:
        live = self._current(row)
        extra: dict[str, Any] = {"ingest_connected": False, "subscribers": 0}
        if live is not None:
            extra = {"ingest_connected": live.ingest is not None,
                     "subscribers": self.subscribers(live),
                     "samples": live.buffer.total,
                     "seconds": live.buffer.total / live.options.sample_rate,
                     "dropped_windows": live.dropped_windows}
        return session_view(row, live=extra)

    async def end(self, session_id: str, *, reason: str = "ended") -> dict[str, Any]:
        """End a session once: concurrent calls (a double click, the reaper at the same
        moment) wait for the first and get its result."""
        running = self._ending.get(session_id)
        if running is None:
            running = asyncio.create_task(self._end(session_id, reason))
            self._ending[session_id] = running
            running.add_done_callback(lambda _t: self._ending.pop(session_id, None))
        return await asyncio.shield(running)

    async def _end(self, session_id: str, reason: str) -> dict[str, Any]:
        row = await self.get_row(session_id)
        if row["state"] == SessionState.ENDED:
            return self.view(row)
        if row.get("owner") not in (None, self.node):
            stale = self.live.pop(session_id, None)  # another node has held it since
            if stale is not None:
                await self._stop_live(stale, persist=False)
            row = await self._wait_released(row)
            if row["state"] == SessionState.ENDED:
                return self.view(row)
        live = self.live.get(session_id)
        if live is not None and reason == "ended":
            # Asked to end: finish the windows already received (bounded), so the tail of
            # what was said is not lost. The reaper ends idle sessions without waiting.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.queue.join(), _DRAIN_S)
        live = self.live.pop(session_id, None)
        samples = live.buffer.total if live is not None else int(row["samples"])
        dropped = (live.dropped_windows if live is not None else 0) + int(
            row.get("dropped_windows") or 0)
        if live is not None:
            await self._stop_live(live, persist=False)
        opts = SessionOptions.model_validate_json(row["options"])
        now = time.time()
        await self.log.take(session_stream(session_id))  # another node may have appended
        await self.log.append(session_stream(session_id), "session-end", {
            "session_id": session_id, "reason": reason,
            "timestamp": samples / opts.sample_rate},
            session_update=(session_id, {"state": SessionState.ENDED.value,
                                         "ended_at": now, "end_reason": reason,
                                         "samples": samples, "dropped_windows": dropped}))
        self.log.forget(session_stream(session_id))
        if live is not None and live.ingest is not None:
            with contextlib.suppress(Exception):  # the socket may already be gone
                await live.ingest.close_ingest(CLOSE_SESSION_ENDED, "session ended")
        return self.view(await self.get_row(session_id))

    async def _wait_released(self, row: dict[str, Any]) -> dict[str, Any]:
        """Ending a session another node holds: let that node finish what its socket sent and
        free the lease (bounded), then take it, so the end comes after the last event and
        carries the exact sample count. Past the wait, end anyway: the holder notices on its
        next renewal and closes its socket."""
        deadline = time.monotonic() + _DRAIN_S + self.lease_s / 3
        while time.monotonic() < deadline:
            lease = row.get("lease_expires")
            if lease is None or lease < time.time():
                claimed, _ = await self.store.claim_session(row["id"], self.node,
                                                            now=time.time(),
                                                            lease_s=self.lease_s)
                if claimed is not None:
                    return claimed
            await asyncio.sleep(_RELEASE_POLL_S)
            row = await self.get_row(row["id"])
            if row["state"] == SessionState.ENDED:
                break
        return row

    def _current(self, row: dict[str, Any]) -> LiveSession | None:
        """This node's copy of a session, unless another node has held it since (then the
        copy's counts are stale and the row is the truth)."""
        return self.live.get(row["id"]) if row.get("owner") in (None, self.node) else None

    # -- ingest ----------------------------------------------------------------------------
    async def attach_ingest(self, session_id: str, handle: IngestHandle) -> LiveSession:
        """Connect an ingest socket: claim the session for this node (its lease must be free:
        no socket on another node) and continue from its sample count."""
        live = self.live.get(session_id)
        if live is not None and live.ingest is not None:
            raise IngestBusy("another ingest socket is connected to this session")
        row, previous = await self.store.claim_session(session_id, self.node, now=time.time(),
                                                       lease_s=self.lease_s)
        if row is None:
            if (await self.get_row(session_id))["state"] != SessionState.ACTIVE:
                raise SessionNotFound(f"no active session {session_id}")
            raise IngestBusy("an ingest socket is connected to this session on another node")
        live = self.live.get(session_id)
        if live is not None and live.ingest is not None:  # lost a race on this node
            raise IngestBusy("another ingest socket is connected to this session")
        if live is not None and previous not in (None, self.node):
            # Another node has had it since: our copy's clock and analysis state are stale.
            self.live.pop(session_id, None)
            await self._stop_live(live, persist=False)
            live = None
        await self.log.take(session_stream(session_id))
        if live is None:
            if len(self.live) >= self.max_sessions:
                raise SessionLimit(f"the server is at its limit of {self.max_sessions} sessions")
            opts = SessionOptions.model_validate_json(row["options"])
            live = self._make_live(session_id, opts, start_sample=int(row["samples"]))
        live.ingest = handle
        live.idle_since = None
        return live

    async def detach_ingest(self, live: LiveSession, handle: IngestHandle) -> None:
        if live.ingest is handle:
            live.ingest = None
            self._touch(live)
            if live.id in self.live:
                # Finish what was received, then free the lease with the exact sample count,
                # so the next socket may connect through any node (unless one already came
                # back here: the lease is its own then).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(live.queue.join(), _DRAIN_S)
                freed = {"lease_expires": 0.0} if live.ingest is None else {}
                await self.store.update_session(live.id, samples=live.buffer.total, **freed)

    async def push(self, live: LiveSession, pcm: bytes) -> None:
        """Queue the windows this frame completes. When analysis is behind, wait (up to
        ``_BACKPRESSURE_S``, so the frame's ack, and a client that waits for acks, slows
        down); past that the oldest waiting window is dropped and subscribers are warned."""
        for win in live.buffer.push(pcm):
            if live.queue.full():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(live.queue.put(win), _BACKPRESSURE_S)
                    continue
            self._enqueue(live, win)

    def try_push(self, live: LiveSession, pcm: bytes | bytearray | memoryview) -> bool:
        """:meth:`push` without waiting: if the window queue has room for every window this
        frame completes, push it (exactly as :meth:`push` would) and return True; otherwise
        change nothing and return False, and the caller awaits :meth:`push` instead."""
        buf = live.buffer
        ahead = buf.total + len(pcm) // 2 - buf.next_end  # >= 0: completes a window
        queue = live.queue
        if ahead >= 0 and ahead // buf.hop + 1 > queue.maxsize - queue.qsize():
            return False
        for win in buf.push(pcm):
            self._enqueue(live, win)
        return True

    def finalize(self, live: LiveSession) -> bool:
        win = live.buffer.flush()
        if win is None:
            return False
        shortest = round(MIN_WINDOW_S * live.options.sample_rate)
        if win.samples.size < shortest:  # the analysis needs 250 ms: pad the tail with silence
            win = DueWindow(start_sample=win.start_sample, end_sample=win.end_sample,
                            samples=np.pad(win.samples, (0, shortest - win.samples.size)),
                            closed_at=win.closed_at)
        self._enqueue(live, win)
        return True

    def _enqueue(self, live: LiveSession, win: DueWindow) -> None:
        if live.queue.full():
            live.queue.get_nowait()
            live.queue.task_done()
            live.dropped_windows += 1
            if self.metrics is not None:
                self.metrics.windows_dropped.inc()
            now = self.clock()
            if now - live.last_warning >= _WARN_EVERY_S:
                live.last_warning = now
                self._spawn(self._warn(live, "analysis is behind; windows dropped"))
        live.queue.put_nowait(win)

    async def _warn(self, live: LiveSession, message: str) -> None:
        with contextlib.suppress(Exception):
            await self.log.append(live.stream, "service-event", {
                "session_id": live.id, "status": "warning", "service": live.options.classifier,
                "message": message, "timestamp": live.buffer.total / live.options.sample_rate})

    # -- subscribers and the reaper ----------------------------------------------------------
    def subscriber_enter(self, session_id: str) -> None:
        live = self.live.get(session_id)
        if live is not None:
            live.sse_subscribers += 1
            live.idle_since = None

    def subscriber_leave(self, session_id: str) -> None:
        live = self.live.get(session_id)
        if live is not None:
            live.sse_subscribers = max(0, live.sse_subscribers - 1)
            self._touch(live)

    def subscribers(self, live: LiveSession) -> int:
        return live.sse_subscribers + self.member_count(live.stream)

    def _touch(self, live: LiveSession) -> None:
        if live.ingest is None and self.subscribers(live) == 0 and live.idle_since is None:
            live.idle_since = self.clock()

    async def reap_once(self, now: float | None = None) -> list[str]:
        """End every session with no subscriber and no ingest socket for longer than the
        idle TTL. One pass, with an injectable clock, for deterministic tests."""
        now = self.clock() if now is None else now
        ended = []
        for live in list(self.live.values()):
            if live.ingest is not None or self.subscribers(live) > 0:
                live.idle_since = None
                continue
            if live.idle_since is None:
                live.idle_since = now  # a session that never had anyone starts its clock now
                continue
            if now - live.idle_since > self.idle_ttl_s:
                log.info("reaping idle session %s", live.id)
                await self.end(live.id, reason="idle")
                ended.append(live.id)
        # Sessions no node has held for two TTLs (their node died, or a previous process left
        # them): claimed here, so exactly one node ends each.
        wall = time.time()
        for row in await self.store.lapsed_sessions(before=wall - 2 * self.idle_ttl_s):
            if row["id"] in self.live or row["updated_at"] > wall - 2 * self.idle_ttl_s:
                continue
            claimed, _ = await self.store.claim_session(row["id"], self.node, now=wall,
                                                        lease_s=self.lease_s)
            if claimed is not None:
                log.info("reaping orphaned session %s", row["id"])
                await self.end(row["id"], reason="idle")
                ended.append(row["id"])
        return ended

    async def keep_leases_once(self) -> None:
        """Renew this node's leases (with sample counts) and let go of sessions that ended
        on another node or were claimed by one."""
        attached = [(sid, live.buffer.total) for sid, live in self.live.items()
                    if live.ingest is not None]
        # In small writes, one after another: the store has one writer, and the windows'
        # events queued behind one renewal of 500 leases (60 ms on SQLite) all came late.
        for i in range(0, len(attached), _RENEW_CHUNK):
            await self.store.renew_sessions(self.node, dict(attached[i : i + _RENEW_CHUNK]),
                                            until=time.time() + self.lease_s)
        # Followed here without an ingest socket: in use, though nobody holds the lease
        # (another node's reaper must not take it for an orphan).
        watched = [sid for sid, live in self.live.items()
                   if live.ingest is None and self.subscribers(live) > 0]
        if watched:
            await self.store.touch_sessions(watched)
        if not self.live:
            return
        for sid, (state, owner) in (await self.store.session_states(list(self.live))).items():
            live = self.live.get(sid)
            if live is None:
                continue
            ended = state == SessionState.ENDED
            if ended or owner not in (None, self.node):
                log.info("session %s %s elsewhere", sid, "ended" if ended else "moved")
                self.live.pop(sid, None)
                await self._stop_live(live, persist=False)
                self.log.forget(live.stream)
                if live.ingest is not None:
                    with contextlib.suppress(Exception):
                        await live.ingest.close_ingest(
                            CLOSE_SESSION_ENDED if ended else CLOSE_ALREADY_STREAMING,
                            "session ended" if ended else "session moved to another node")

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.keep_leases_once()
            except Exception:
                log.exception("renewing session leases failed")

    async def _reap_forever(self) -> None:
        interval = max(self.idle_ttl_s / 2.0, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap_once()
            except Exception:
                log.exception("reaper pass failed")

    # -- history -----------------------------------------------------------------------------
    async def history(self, session_id: str, *, min_confidence: float = 0.0,
                      limit: int = 1000) -> list[dict[str, Any]]:
        await self.get_row(session_id)
        events = await self.store.read_events(session_stream(session_id), types=["tone-event"])
        tones = [{**e.data, "seq": e.seq} for e in events
                 if float(e.data.get("confidence", 0.0)) >= min_confidence]
        return tones[-limit:] if limit else tones

    async def export(self, session_id: str, fmt: str) -> tuple[str, str]:
        """The session's tone history as ``(body, media type)``: JSON or CSV."""
        tones = await self.history(session_id, limit=0)
        if fmt == "json":
            import json

            row = await self.get_row(session_id)
            return json.dumps({"session": self.view(row), "tone_events": tones}), (
                "application/json")
        out = io.StringIO()
        cols = ["seq", "timestamp", "label", "confidence", "affect", "shift_direction",
                "shift_magnitude", "prosody_flags", "subtext", "speaker_id"]
        w = csv.writer(out)
        w.writerow(cols)
        for t in tones:
            w.writerow([";".join(t.get(c) or []) if c == "prosody_flags" else t.get(c, "")
                        for c in cols])
        return out.getvalue(), "text/csv"

    # -- internals ---------------------------------------------------------------------------
    def _make_live(self, session_id: str, options: SessionOptions, *,
                   start_sample: int) -> LiveSession:
        live = LiveSession(
            id=session_id, options=options,
            buffer=SampleBuffer(window=options.window_samples, hop=options.hop_samples,
                                start_sample=start_sample),
            classifier=self.classifiers(session_id, options))
        live.consumer = asyncio.create_task(self._consume(live), name=f"session-{session_id}")
        self.live[session_id] = live
        return live

    async def _consume(self, live: LiveSession) -> None:
        """Analyse this session's windows in order and append what they yield."""
        session_id_var.set(live.id)
        while True:
            win = await live.queue.get()
            try:
                await self._handle(live, win)
            finally:
                live.queue.task_done()

    async def _handle(self, live: LiveSession, win: DueWindow) -> None:
        try:
            result: WindowEvents = await live.classifier.classify(win)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("classifying a window of %s failed", live.id)
            result = WindowEvents(warnings=[f"analysis failed: {type(exc).__name__}"])
        if self.metrics is not None and win.closed_at:
            self.metrics.window_analysis.observe(time.monotonic() - win.closed_at)
        for warning in result.warnings:
            now = self.clock()
            if now - live.last_warning >= _WARN_EVERY_S:
                live.last_warning = now
                await self._warn(live, warning)
        if result.events:
            try:
                await self.log.append_many(live.stream, [
                    (etype, {"session_id": live.id, **data}) for etype, data in result.events])
            except StreamConflict:  # another node holds the session now; it lets ours go
                log.warning("session %s: another node appends to its stream", live.id)
        if self.metrics is not None and win.closed_at:
            self.metrics.window_latency.observe(time.monotonic() - win.closed_at)

    async def _stop_live(self, live: LiveSession, *, persist: bool) -> None:
        consumer = live.consumer
        if consumer is not None:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            # Let go of the finished task: it holds its CancelledError, whose traceback holds
            # the consumer's frame and so ``live``, a cycle that frozen long-lived objects keep
            # from the collector for minutes (gc_policy.py); without it the session is freed
            # at once.
            live.consumer = None
        await live.classifier.close()
        if persist:  # and free the lease: the session may continue on another node
            await self.store.update_session(live.id, samples=live.buffer.total,
                                            lease_expires=0.0)
