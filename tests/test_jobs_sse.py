"""Server-Sent Events of a job against a live ``tonewire serve``: ``id``/``event``/``data``
frames, replay from ``Last-Event-ID`` or ``?since=``, heartbeats when idle, and the stream
closing after ``complete`` or ``error``."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server import (
    RunningServer,
    SseFrame,
    SseResult,
    cancel_unfinished,
    check_stream,
    collect_sse,
    complete_job,
    create_job,
    sse_frames,
    start_server,
    variant,
    wait_for_status,
    wait_uploads_empty,
    watched_client,
    write_long_wav,
    write_music,
)

pytestmark = pytest.mark.asyncio

HEARTBEAT_S = 0.2
_seeds = itertools.count(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # One worker: a long job occupying it keeps the next job waiting (and its stream idle).
    with start_server(tmp_path_factory.mktemp("sse"), workers=1,
                      sse_heartbeat_s=HEARTBEAT_S) as s:
        yield s


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sse-audio")


@pytest.fixture(scope="module")
def long_wav(audio_dir: Path) -> Path:
    return write_long_wav(audio_dir / "long.wav", 20)


@pytest.fixture
def fresh_music(audio_dir: Path) -> Iterator[Any]:
    def make(seconds: float = 10.0) -> Path:
        seed = next(_seeds)
        return write_music(audio_dir / f"music-{seed}.wav", seconds, seed=seed)
    yield make


@pytest.fixture
def fresh_long(audio_dir: Path, long_wav: Path) -> Iterator[Any]:
    def make() -> Path:
        n = next(_seeds)
        return variant(long_wav, audio_dir / f"long-{n}.wav", n)
    yield make


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with watched_client(server) as client:
        yield client


@pytest.fixture(scope="module")
def finished_job(server: RunningServer, audio_dir: Path) -> str:
    """A short job, complete (made once for the module)."""
    path = write_music(audio_dir / "finished.wav", 5.0, seed=3)
    return complete_job(server, path, accepted=(202,))


@pytest.fixture
async def finished(http: httpx.AsyncClient, finished_job: str) -> tuple[str, list[Any]]:
    """The complete job and its whole SSE stream."""
    result = await collect_sse(http, finished_job)
    assert result.status == 200
    events = result.events()
    check_stream(events, finished_job)
    return finished_job, events


def is_heartbeat(frame: SseFrame) -> bool:
    return frame.is_comment and "heartbeat" in frame.comments


async def test_live_stream_frames_and_close_after_complete(
        server: RunningServer, http: httpx.AsyncClient, fresh_music: Any) -> None:
    job_id = await create_job(http, fresh_music(10.0))
    result = await collect_sse(http, job_id)  # returns only once the server closed it
    assert result.status == 200
    assert result.headers["content-type"].startswith("text/event-stream")
    assert result.headers["cache-control"] == "no-cache"
    assert result.frames[0].retry is not None and result.frames[0].retry > 0
    for frame in result.frames:
        if frame.event is not None:
            assert frame.id is not None and frame.id.isdigit()
            assert frame.data is not None
    events = result.events()
    for name, data in events:
        assert data["type"] == name
    analysis = check_stream(events, job_id)
    assert len(analysis["segments"]) == 10
    # Nothing after the terminal event: the stream closed.
    assert result.frames[-1].event == "complete"
    await wait_uploads_empty(server)


@pytest.mark.parametrize("via", ["header", "query"])
async def test_replay_after_a_given_id(http: httpx.AsyncClient, via: str,
                                       finished: tuple[str, list[Any]]) -> None:
    job_id, full = finished
    n = len(full)
    for k in sorted({0, 1, 2, n // 2, n - 1}):
        if via == "header":
            result = await collect_sse(http, job_id, headers={"Last-Event-ID": str(k)})
        else:
            result = await collect_sse(http, job_id, params={"since": str(k)})
        assert result.status == 200
        assert result.events() == full[k:], k


async def test_empty_last_event_id_means_from_the_start(
        http: httpx.AsyncClient, finished: tuple[str, list[Any]]) -> None:
    job_id, full = finished
    result = await collect_sse(http, job_id, headers={"Last-Event-ID": ""})
    assert result.status == 200
    assert result.events() == full


@pytest.mark.parametrize("past", [0, 5])
async def test_resuming_a_finished_stream_at_its_end_does_not_hang(
        http: httpx.AsyncClient, finished: tuple[str, list[Any]], past: int) -> None:
    job_id, full = finished
    last = full[-1][1]["seq"]
    result = await collect_sse(http, job_id, headers={"Last-Event-ID": str(last + past)},
                               stop=is_heartbeat)
    if result.status == 204:
        return
    assert result.status == 200
    assert result.events() == []
    # A heartbeat means the server is keeping an ended stream open.
    assert not any(is_heartbeat(f) for f in result.frames), "stream left open on a finished job"


async def test_heartbeats_while_idle(server: RunningServer, http: httpx.AsyncClient,
                                     fresh_long: Any, fresh_music: Any) -> None:
    # The long job holds the only worker, so the second job waits and its stream is idle.
    busy = await create_job(http, fresh_long())
    await wait_for_status(http, busy, {"analyzing"})
    waiting = await create_job(http, fresh_music(5.0))
    heartbeats = 0

    def enough(frame: SseFrame) -> bool:
        nonlocal heartbeats
        heartbeats += is_heartbeat(frame)
        return heartbeats >= 3

    result = await collect_sse(http, waiting, stop=enough, timeout=20)
    assert result.status == 200
    assert heartbeats >= 3
    # Only the waiting job's first event came before and between heartbeats.
    events = result.events()
    assert [(n, d["status"], d["seq"]) for n, d in events] == [("progress", "pending", 1)]
    await cancel_unfinished(server)  # (not the point here: see the cancel tests)
    await wait_uploads_empty(server)


async def test_stream_closes_after_error(server: RunningServer, http: httpx.AsyncClient,
                                         tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(50_000))
    job_id = await create_job(http, junk)
    result = await collect_sse(http, job_id)
    events = result.events()
    assert events[-1][0] == "error"
    assert events[-1][1]["code"] == "UNSUPPORTED_FORMAT"
    assert result.frames[-1].event == "error"
    assert [d["seq"] for _, d in events] == list(range(1, len(events) + 1))
    assert "chunk" not in [n for n, _ in events]
    await wait_uploads_empty(server)


async def test_cancel_ends_the_stream_with_job_cancelled(
        server: RunningServer, http: httpx.AsyncClient, fresh_long: Any) -> None:
    job_id = await create_job(http, fresh_long())
    frames: list[SseFrame] = []
    async with http.stream("GET", f"/api/jobs/{job_id}/events") as r:
        assert r.status_code == 200
        async for frame in sse_frames(r):
            frames.append(frame)
            if frame.event == "chunk" and sum(f.event == "chunk" for f in frames) == 1:
                d = await http.delete(f"/api/jobs/{job_id}")
                assert d.status_code == 200, d.text
    # The loop ended: the server closed the stream after the error event.
    assert frames[-1].event == "error"
    events = SseResult(200, r.headers, frames).events()
    assert events[-1][1]["code"] == "JOB_CANCELLED"
    assert [d["seq"] for _, d in events] == list(range(1, len(events) + 1))
    assert (await http.get(f"/api/jobs/{job_id}/events")).status_code == 404
    await wait_uploads_empty(server)


BAD_IDS: list[tuple[str, str | bytes]] = [
    ("letters", "abc"),
    ("negative", "-1"),
    ("exponent", "1e9"),
    ("fraction", "1.5"),
    ("huge", "9" * 40),
    ("past-2**53", str(2**53 + 1)),
    ("trailing-junk", "12a"),
    ("plus", "+5"),
    ("latin1-superscript", b"\xb2"),  # '²': str.isdigit() is True, int() fails
]


@pytest.mark.parametrize("value", [v for _, v in BAD_IDS], ids=[i for i, _ in BAD_IDS])
async def test_bogus_last_event_id_is_400(http: httpx.AsyncClient,
                                          finished: tuple[str, list[Any]],
                                          value: str | bytes) -> None:
    job_id, _ = finished
    result = await collect_sse(http, job_id, headers={"Last-Event-ID": value})
    assert result.status == 400, result.frames
    assert result.json()["code"] == "INVALID_LAST_EVENT_ID"


@pytest.mark.parametrize("value", ["abc", "-1", "1e9", "9" * 40, "²", "١٢", "１"],
                         ids=["letters", "negative", "exponent", "huge", "superscript",
                              "arabic-indic", "fullwidth"])
async def test_bogus_since_is_400(http: httpx.AsyncClient, finished: tuple[str, list[Any]],
                                  value: str) -> None:
    job_id, _ = finished
    result = await collect_sse(http, job_id, params={"since": value})
    assert result.status == 400
    assert result.json()["code"] == "INVALID_LAST_EVENT_ID"


async def test_unknown_job_is_404(http: httpx.AsyncClient) -> None:
    result = await collect_sse(http, "no-such-job")
    assert result.status == 404
    assert result.json()["code"] == "JOB_NOT_FOUND"
