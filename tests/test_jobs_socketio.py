"""Socket.IO job streaming against a live ``tonewire serve``: the original protocol
(``connected``, ``subscribe`` -> ``subscribed``, ``progress``/``chunk``/``complete``/``error``),
delivered in order to every subscriber, replayable from any ``seq``, and robust to bad input."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server import (
    RunningServer,
    SioRecorder,
    cancel_unfinished,
    check_stream,
    complete_job,
    create_job,
    seqs,
    sio_client,
    start_server,
    summarize,
    variant,
    wait_for_status,
    wait_uploads_empty,
    watched_client,
    write_long_wav,
    write_music,
)

pytestmark = pytest.mark.asyncio

WS = ["websocket"]
SHORT_S = 20.0
_seeds = itertools.count(100)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("sio"), workers=2) as s:
        yield s


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sio-audio")


@pytest.fixture(scope="module")
def long_wav(audio_dir: Path) -> Path:
    """20 minutes: several seconds of analysis, so a job is surely still running."""
    return write_long_wav(audio_dir / "long.wav", 20)


@pytest.fixture(scope="module")
def medium_wav(audio_dir: Path) -> Path:
    """3 minutes: about 180 chunks in about a second."""
    return write_long_wav(audio_dir / "medium.wav", 3)


@pytest.fixture
def fresh_music(audio_dir: Path) -> Iterator[Any]:
    """A factory of short music files with new content (so never a cache hit)."""
    def make(seconds: float = SHORT_S) -> Path:
        seed = next(_seeds)
        return write_music(audio_dir / f"music-{seed}.wav", seconds, seed=seed)
    yield make


@pytest.fixture
def fresh_variant(audio_dir: Path) -> Iterator[Any]:
    def make(src: Path) -> Path:
        n = next(_seeds)
        return variant(src, audio_dir / f"{src.stem}-{n}.wav", n)
    yield make


@pytest.fixture(scope="module")
def finished_job(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A short job, complete: a valid target after each bad payload."""
    path = write_music(tmp_path_factory.mktemp("finished") / "five.wav", 5.0, seed=5)
    return complete_job(server, path)


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with watched_client(server) as client:
        yield client


# -- tests -----------------------------------------------------------------------------------


async def test_connected_on_connect(server: RunningServer, http: httpx.AsyncClient) -> None:
    async with sio_client(server.url, transports=WS) as sio:
        _, data = await sio.next_event("connected")
        assert data["type"] == "connected"


async def test_two_clients_get_the_same_whole_stream(
        server: RunningServer, http: httpx.AsyncClient, fresh_music: Any) -> None:
    job_id = await create_job(http, fresh_music())
    async with sio_client(server.url, transports=WS) as a, \
            sio_client(server.url, transports=WS) as b:
        await a.subscribe(job_id)
        await b.subscribe(job_id)
        events_a = await a.until_terminal(job_id)
        events_b = await b.until_terminal(job_id)
    assert events_a == events_b
    analysis = check_stream(events_a, job_id)
    assert len(analysis["segments"]) == round(SHORT_S)
    assert analysis["video"]["duration"] == pytest.approx(SHORT_S, abs=0.1)
    r = await http.get(f"/api/jobs/{job_id}/analysis")
    assert r.status_code == 200
    assert r.json() == analysis
    await wait_uploads_empty(server)


async def test_default_transport_polling_then_upgrade(
        server: RunningServer, http: httpx.AsyncClient, fresh_music: Any) -> None:
    job_id = await create_job(http, fresh_music(10.0))
    async with sio_client(server.url) as sio:  # default: long-polling first, then upgrade
        await sio.next_event("connected")
        assert sio.client.transport() == "websocket"  # upgraded
        await sio.subscribe(job_id)
        events = await sio.until_terminal(job_id)
    check_stream(events, job_id)


async def test_one_client_follows_two_jobs(
        server: RunningServer, http: httpx.AsyncClient, fresh_music: Any) -> None:
    first = await create_job(http, fresh_music(15.0))
    second = await create_job(http, fresh_music(10.0))
    async with sio_client(server.url, transports=WS) as sio:
        await sio.subscribe(first)
        await sio.subscribe(second)
        events_1 = await sio.until_terminal(first)
        events_2 = await sio.until_terminal(second)
        everything = [(n, d) for n, d in sio.events if n in {"progress", "chunk", "complete"}]
    a1 = check_stream(events_1, first)
    a2 = check_stream(events_2, second)
    assert len(a1["segments"]) == 15 and len(a2["segments"]) == 10
    # Every job event carries its job_id, and there is nothing else.
    assert len(everything) == len(events_1) + len(events_2)
    assert {d["job_id"] for _, d in everything} == {first, second}


async def test_late_subscriber_gets_the_full_replay(
        server: RunningServer, http: httpx.AsyncClient, fresh_music: Any) -> None:
    job_id = await create_job(http, fresh_music())
    async with sio_client(server.url, transports=WS) as live:
        await live.subscribe(job_id)
        live_events = await live.until_terminal(job_id)
    await wait_for_status(http, job_id, "complete")
    async with sio_client(server.url) as late:  # default transports: polling, then upgrade
        await late.subscribe(job_id)
        late_events = await late.until_terminal(job_id)
    check_stream(late_events, job_id)
    assert late_events == live_events


@pytest.mark.parametrize("k_of", [lambda n: 0, lambda n: 1, lambda n: n // 2,
                                  lambda n: n - 1, lambda n: n + 5],
                         ids=["0", "1", "half", "last-1", "beyond"])
async def test_subscribe_since_on_a_finished_job(
        server: RunningServer, http: httpx.AsyncClient, finished_job: str, k_of: Any) -> None:
    job_id = finished_job
    async with sio_client(server.url, transports=WS) as sio:
        await sio.subscribe(job_id)
        full = await sio.until_terminal(job_id)
    n = len(full)
    k = k_of(n)
    async with sio_client(server.url, transports=WS) as again:
        await again.subscribe(job_id, since=k)
        if k < n:
            got = await again.until_terminal(job_id)
            assert got == full[k:]
        else:
            # Nothing to replay, and nothing will come. Resubscribing on the same connection
            # from n-1 must then give exactly the last event: the first sent nothing.
            await again.subscribe(job_id, since=n - 1)
            got = await again.until_terminal(job_id)
            assert got == full[n - 1:]


async def test_reconnect_with_since_resumes_without_gap_or_duplicate(
        server: RunningServer, http: httpx.AsyncClient, medium_wav: Path,
        fresh_variant: Any) -> None:
    job_id = await create_job(http, fresh_variant(medium_wav))
    async with sio_client(server.url, transports=WS) as reference:
        await reference.subscribe(job_id)
        first = SioRecorder(server.url, transports=WS)
        await first.connect()
        try:
            await first.subscribe(job_id)
            await first.wait_for(lambda evs: len(first.job_events(job_id)) >= 10,
                                 what="10 events")
        finally:
            await first.disconnect()
        before = first.job_events(job_id)
        k = before[-1][1]["seq"]
        assert seqs(before) == list(range(1, k + 1))
        async with sio_client(server.url, transports=WS) as second:
            await second.subscribe(job_id, since=k)
            after = await second.until_terminal(job_id)
        full = await reference.until_terminal(job_id)
    assert after, "nothing after the reconnect"
    assert after[0][1]["seq"] == k + 1
    assert before + after == full
    check_stream(full, job_id)


async def test_resubscribe_on_the_same_connection_starts_over(
        server: RunningServer, http: httpx.AsyncClient, fresh_music: Any) -> None:
    job_id = await create_job(http, fresh_music(5.0))
    async with sio_client(server.url, transports=WS) as sio:
        await sio.subscribe(job_id)
        full = await sio.until_terminal(job_id)
        mark = len(sio.events)
        await sio.subscribe(job_id, since=len(full) - 3)
        await sio.wait_for(lambda evs: any(n == "complete" for n, _ in evs[mark:]),
                           what="second complete")
        again = [(n, d) for n, d in sio.events[mark:] if n in {"progress", "chunk", "complete"}]
    assert again == full[-3:]


async def test_unsubscribe_stops_delivery(
        server: RunningServer, http: httpx.AsyncClient, medium_wav: Path,
        fresh_variant: Any) -> None:
    job_id = await create_job(http, fresh_variant(medium_wav))
    async with sio_client(server.url, transports=WS) as stays, \
            sio_client(server.url, transports=WS) as leaves:
        await stays.subscribe(job_id)
        await leaves.subscribe(job_id)
        await leaves.wait_for(lambda evs: len(leaves.job_events(job_id)) >= 5,
                              what="5 events")
        # With an ack: returns once the server has handled it.
        await leaves.call("unsubscribe", {"job_id": job_id})
        at_unsubscribe = len(leaves.job_events(job_id))
        full = await stays.until_terminal(job_id)
        # A round trip after the other client saw the end: a room event for `leaves` would
        # have been queued before this ack.
        await leaves.call("unsubscribe", {"job_id": "no-such-job"})
        got = leaves.job_events(job_id)
    check_stream(full, job_id)
    # At most the one event the room was being sent while the unsubscribe was handled.
    assert len(got) - at_unsubscribe <= 1, (at_unsubscribe, len(got), len(full))
    assert got == full[:len(got)]
    assert len(got) < len(full) - 1


async def test_disconnect_mid_stream_does_not_disturb_others(
        server: RunningServer, http: httpx.AsyncClient, medium_wav: Path,
        fresh_variant: Any) -> None:
    job_id = await create_job(http, fresh_variant(medium_wav))
    async with sio_client(server.url, transports=WS) as a, \
            sio_client(server.url, transports=WS) as b:
        quitter = SioRecorder(server.url, transports=WS)
        await quitter.connect()
        try:
            for c in (a, quitter, b):
                await c.subscribe(job_id)
            await quitter.wait_for(lambda evs: len(quitter.job_events(job_id)) >= 3,
                                   what="3 events")
        finally:
            await quitter.disconnect()
        events_a = await a.until_terminal(job_id)
        events_b = await b.until_terminal(job_id)
    check_stream(events_a, job_id)
    assert events_a == events_b


async def test_cancel_mid_job(server: RunningServer, http: httpx.AsyncClient,
                              long_wav: Path, fresh_variant: Any) -> None:
    job_id = await create_job(http, fresh_variant(long_wav))
    async with sio_client(server.url, transports=WS) as a, \
            sio_client(server.url, transports=WS) as b:
        await a.subscribe(job_id)
        await b.subscribe(job_id)
        await a.wait_for(lambda evs: any(n == "chunk" for n, _ in a.job_events(job_id)),
                         what="a first chunk")
        r = await http.delete(f"/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        assert r.json() == {"job_id": job_id, "status": "deleted"}
        events_a = await a.until_terminal(job_id)
        events_b = await b.until_terminal(job_id)
        # The job is gone: subscribing again is an error, and the connection stays up.
        mark = len(a.events)
        await a.emit("subscribe", {"job_id": job_id})
        _, err = await a.next_event("error", after=mark)
        assert err["code"] == "JOB_NOT_FOUND"
    assert events_a == events_b
    name, last = events_a[-1]
    assert name == "error"
    assert last["code"] == "JOB_CANCELLED" and last["type"] == "error"
    assert isinstance(last["message"], str) and last["message"]
    assert seqs(events_a) == list(range(1, len(events_a) + 1))
    assert "complete" not in [n for n, _ in events_a]
    assert "chunk" in [n for n, _ in events_a]
    for path in (f"/api/jobs/{job_id}", f"/api/job/{job_id}", f"/api/jobs/{job_id}/analysis"):
        r = await http.get(path)
        assert r.status_code == 404, path
        assert r.json()["code"] == "JOB_NOT_FOUND"
    await wait_uploads_empty(server)


async def test_cancel_a_pending_job_through_the_original_route(
        server: RunningServer, http: httpx.AsyncClient, long_wav: Path,
        fresh_variant: Any) -> None:
    # Two long jobs fill both workers; the third waits, and is cancelled while pending.
    for _ in range(2):
        await create_job(http, fresh_variant(long_wav))
    job_id = await create_job(http, fresh_variant(long_wav))
    async with sio_client(server.url, transports=WS) as sio:
        await sio.subscribe(job_id)
        r = await http.delete(f"/api/job/{job_id}")
        assert r.status_code == 200, r.text
        events = await sio.until_terminal(job_id)
    # Still waiting for a worker: pending, then cancelled.
    assert [n for n, _ in events] == ["progress", "error"], summarize(events)
    assert events[0][1]["status"] == "pending"
    assert events[-1][1]["code"] == "JOB_CANCELLED"
    await cancel_unfinished(server)  # the busy ones (cancelling them is not the point here)
    assert (await http.get(f"/api/job/{job_id}")).status_code == 404
    await wait_uploads_empty(server)


BAD_SUBSCRIBES: list[tuple[str, Any, str]] = [
    ("string", "not-an-object", "INVALID_PAYLOAD"),
    ("list", ["a", "list"], "INVALID_PAYLOAD"),
    ("number", 5, "INVALID_PAYLOAD"),
    ("none", None, "INVALID_PAYLOAD"),
    ("job_id-number", {"job_id": 5}, "INVALID_JOB"),
    ("empty-object", {}, "INVALID_JOB"),
    ("job_id-empty", {"job_id": ""}, "INVALID_JOB"),
    ("job_id-list", {"job_id": ["x"]}, "INVALID_JOB"),
    ("since-negative", {"job_id": "x", "since": -1}, "INVALID_SINCE"),
    ("since-string", {"job_id": "x", "since": "abc"}, "INVALID_SINCE"),
    ("since-true", {"job_id": "x", "since": True}, "INVALID_SINCE"),
    ("since-float", {"job_id": "x", "since": 1.5}, "INVALID_SINCE"),
    ("since-huge", {"job_id": "x", "since": 2**64}, "INVALID_SINCE"),
    ("unknown-job", {"job_id": "no-such-job"}, "JOB_NOT_FOUND"),
]


@pytest.mark.parametrize(("payload", "code"), [(p, c) for _, p, c in BAD_SUBSCRIBES],
                         ids=[i for i, _, _ in BAD_SUBSCRIBES])
async def test_bad_subscribe_gets_an_error_event_and_the_connection_stays(
        server: RunningServer, http: httpx.AsyncClient, finished_job: str, payload: Any,
        code: str) -> None:
    async with sio_client(server.url, transports=WS) as sio:
        await sio.next_event("connected")
        await sio.emit("subscribe", payload)
        _, err = await sio.next_event("error")
        assert err["code"] == code, err
        assert err["type"] == "error"
        assert isinstance(err["message"], str) and err["message"]
        assert "subscribed" not in [n for n, _ in sio.events]
        # Same connection, still up: a valid subscribe works.
        assert sio.client.connected
        await sio.subscribe(finished_job)
        events = await sio.until_terminal(finished_job)
        check_stream(events, finished_job)


@pytest.mark.parametrize("payload", ["job", None, 3, ["job"]], ids=["string", "none", "number",
                                                                    "list"])
async def test_bad_unsubscribe_gets_an_error_event(
        server: RunningServer, http: httpx.AsyncClient, payload: Any) -> None:
    async with sio_client(server.url, transports=WS) as sio:
        await sio.emit("unsubscribe", payload)
        _, err = await sio.next_event("error")
        assert err["code"] == "INVALID_PAYLOAD"
        mark = len(sio.events)
        await sio.emit("subscribe", {"job_id": "no-such-job"})
        _, err = await sio.next_event("error", after=mark)
        assert err["code"] == "JOB_NOT_FOUND"


async def test_unknown_event_is_ignored(server: RunningServer, http: httpx.AsyncClient,
                                        finished_job: str) -> None:
    async with sio_client(server.url, transports=WS) as sio:
        await sio.emit("no-such-event", {"job_id": finished_job})
        await sio.subscribe(finished_job)
        check_stream(await sio.until_terminal(finished_job), finished_job)
