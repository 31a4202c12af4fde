"""URL jobs against a live ``tonewire serve``: ``POST /api/jobs {url}`` and the original
``POST /api/analyze``, fetched from a local media server on 127.0.0.1 (the only allow-listed
address). Refusals at POST time and as ``error`` events, limits, cancellation mid-download,
temporary files, the cache. Nothing here contacts a non-loopback host: YouTube links are only
ever refused for their form (see test_url_units.py for their normalisation).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import signals as S
from media_server import MediaServer, Route, json_ld_page, listener
from server import (
    RunningServer,
    cancel_unfinished,
    check_stream,
    sio_client,
    start_server,
    wait_for_status,
    wait_until,
    wait_uploads_empty,
)
from test_jobs_persistence import Server

pytestmark = pytest.mark.asyncio

MAX_DOWNLOAD = 600_000
MAX_DURATION = 120
_seeds = itertools.count(900)


def wav_bytes(tmp: Path, seconds: float) -> bytes:
    """``seconds`` of distinct music as 16-bit mono WAV at 22.05 kHz (new content each call)."""
    path = tmp / f"m{next(_seeds)}.wav"
    S.write_audio(path, S.music_like(seconds, seed=next(_seeds)), S.SR)
    return path.read_bytes()


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    with MediaServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("urls"), workers=2,
                      url_allowlist="127.0.0.1", max_download_bytes=MAX_DOWNLOAD,
                      max_duration_s=MAX_DURATION, download_timeout_s=60) as s:
        yield s


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        yield c
    await cancel_unfinished(server)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("url-media")


async def post_url(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.post("/api/jobs", json={"url": url})


async def run_to_end(server: RunningServer, client: httpx.AsyncClient, url: str
                     ) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """POST ``url``, follow the job over Socket.IO from seq 0, return its whole stream."""
    r = await post_url(client, url)
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    async with sio_client(server.url) as sio:
        await sio.subscribe(job_id, since=0)
        events = await sio.until_terminal(job_id, timeout=60)
    return job_id, events


def error_of(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    name, data = events[-1]
    assert name == "error", events[-3:]
    return data


# -- success -----------------------------------------------------------------------------------

async def test_direct_media_url_runs_to_complete(server: RunningServer, client: httpx.AsyncClient,
                                                 media: MediaServer, fixtures: Path) -> None:
    body = wav_bytes(fixtures, 6.0)
    url = media.add("/direct/track-one.wav", Route(body=body, content_type="audio/wav"))
    job_id, events = await run_to_end(server, client, url)
    analysis = check_stream(events, job_id)
    video = analysis["video"]
    assert video["title"] == "track-one"  # the generic extractor names it after the file
    assert video["duration"] == pytest.approx(6.0, abs=0.1)
    assert video["url"] == url
    messages = [d["message"] for n, d in events if n == "progress"]
    assert "resolving the URL" in messages
    assert any(m.startswith("downloading: ") for m in messages), messages
    downloading = [d for n, d in events if n == "progress"
                   and d["message"].startswith("downloading")]
    assert {d["status"] for d in downloading} == {"decoding"}
    job = (await client.get(f"/api/jobs/{job_id}")).json()
    assert job["source"] == {"kind": "url", "name": url}
    assert job["title"] == "track-one"
    assert job["duration"] == pytest.approx(6.0, abs=0.1)
    await wait_uploads_empty(server)


async def test_page_metadata_fills_the_video_field(server: RunningServer,
                                                   client: httpx.AsyncClient,
                                                   media: MediaServer, fixtures: Path) -> None:
    """A page describing its audio (JSON-LD, as yt-dlp's generic extractor reads it): title,
    duration and thumbnail come from the page, the audio from the file it points to."""
    media.add("/pages/song.wav", Route(body=wav_bytes(fixtures, 5.0), content_type="audio/wav"))
    thumb = media.url("/pages/song.jpg")
    page = json_ld_page(title="A Song About Tone", duration_s=5,
                        content_url=media.url("/pages/song.wav"), thumbnail=thumb)
    url = media.add("/pages/song.html", Route(body=page, content_type="text/html"))
    job_id, events = await run_to_end(server, client, url)
    video = check_stream(events, job_id)["video"]
    assert video["title"] == "A Song About Tone"
    assert video["thumbnailUrl"] == thumb
    assert video["duration"] == pytest.approx(5.0, abs=0.1)
    assert media.requested("/pages/song.jpg") == []  # metadata only: never fetched


async def test_original_analyze_route(server: RunningServer, client: httpx.AsyncClient,
                                      media: MediaServer, fixtures: Path) -> None:
    url = media.add("/analyze/clip.wav", Route(body=wav_bytes(fixtures, 4.0),
                                               content_type="audio/wav"))
    r = await client.post("/api/analyze", json={"youtube_url": url})
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) >= {"job_id", "video_id", "status", "websocket_url"}
    assert body["status"] == "pending"
    assert body["websocket_url"] == f"ws://127.0.0.1:{server.port}/socket.io/"
    job = await wait_for_status(client, body["job_id"], timeout=60)
    assert job["status"] == "complete", job
    analysis = (await client.get(f"/api/job/{body['job_id']}/analysis")).json()
    assert analysis["video"]["id"] == body["video_id"]
    # The same URL again is the cached job, in the original shape too.
    again = await client.post("/api/analyze", json={"youtube_url": url,
                                                    "video_id": "ignored-for-non-youtube"})
    assert again.status_code == 200, again.text
    assert again.json()["job_id"] == body["job_id"] and again.json()["cached"] is True


async def test_cache_hit_for_the_same_canonical_url(server: RunningServer,
                                                    client: httpx.AsyncClient,
                                                    media: MediaServer, fixtures: Path) -> None:
    url = media.add("/cache/a.wav", Route(body=wav_bytes(fixtures, 3.0),
                                          content_type="audio/wav"))
    first = await post_url(client, url)
    assert first.status_code == 202, first.text
    job_id = first.json()["job_id"]
    assert (await wait_for_status(client, job_id, timeout=60))["status"] == "complete"
    fetched = len(media.requested("/cache/a.wav"))
    spelling = url.replace("http://127.0.0.1", "HTTP://127.0.0.1") + "#again"
    for again_url in (url, spelling):
        r = await post_url(client, again_url)
        assert r.status_code == 200, r.text
        assert r.json()["job_id"] == job_id and r.json()["cached"] is True
        assert r.json()["video_id"] == first.json()["video_id"]
    assert len(media.requested("/cache/a.wav")) == fetched  # nothing fetched again


# -- refused at POST time ------------------------------------------------------------------------

async def test_invalid_urls_are_refused_at_post(client: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"url": "ftp://127.0.0.1/a.mp3"}, 422, "INVALID_URL"),
        ({"url": "https://www.youtube.com/watch?v=short"}, 422, "INVALID_URL"),
        ({"url": "https://www.youtube.com/playlist?list=PL1"}, 422, "INVALID_URL"),
        ({"url": "http://user:pw@127.0.0.1/a.mp3"}, 422, "INVALID_URL"),
        ({"url": ""}, 422, "INVALID_URL"),
        ({"url": 5}, 422, "INVALID_REQUEST"),
        ({"link": "http://127.0.0.1/"}, 422, "INVALID_REQUEST"),
    ]
    for body, status, code in cases:
        r = await client.post("/api/jobs", json=body)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
    r = await client.post("/api/jobs", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_JSON")
    r = await client.post("/api/jobs", content=b'{"url": "' + b"a" * 20000 + b'"}',
                          headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (413, "REQUEST_TOO_LARGE")
    r = await client.post("/api/analyze", json={"youtube_url": "https://youtu.be/x"})
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_URL")
    r = await client.post("/api/analyze", json={
        "youtube_url": "https://youtu.be/dQw4w9WgXcQ", "video_id": "aaaaaaaaaaa"})
    assert (r.status_code, r.json()["code"]) == (422, "INVALID_URL")
    jobs = (await client.get("/api/jobs")).json()["jobs"]
    assert not any(j["source"]["kind"] == "url" and "youtube" in j["source"]["name"]
                   for j in jobs)


async def test_addresses_outside_the_allowlist_are_refused_at_post(
        server: RunningServer, client: httpx.AsyncClient) -> None:
    with listener("127.0.0.2") as other:
        refused = [
            f"http://127.0.0.2:{other.port}/a.wav",  # loopback, not the allow-listed address
            "http://[::1]/a.wav",
            "http://[::ffff:127.0.0.2]/a.wav",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/a.wav",
            "http://0.0.0.0/a.wav",
            "http://2130706434/a.wav",  # 127.0.0.2 written as one number
        ]
        before = (await client.get("/api/jobs")).json()["total"]
        for url in refused:
            for route, body in (("/api/jobs", {"url": url}),
                                ("/api/analyze", {"youtube_url": url})):
                r = await client.post(route, json=body)
                assert r.status_code == 403, (url, r.text)
                assert r.json()["code"] == "URL_NOT_ALLOWED"
        assert (await client.get("/api/jobs")).json()["total"] == before
        assert other.connections() == 0


# -- refused or failed while running -------------------------------------------------------------

async def test_redirect_to_a_refused_address_fails_without_connecting(
        server: RunningServer, client: httpx.AsyncClient, media: MediaServer) -> None:
    with listener("127.0.0.2") as other:
        url = media.add("/redirect.wav", Route(status=302, headers={
            "Location": f"http://127.0.0.2:{other.port}/stolen.wav"}))
        job_id, events = await run_to_end(server, client, url)
        error = error_of(events)
        assert error["code"] == "URL_NOT_ALLOWED", error
        assert "127.0.0.2" in error["message"]
        assert other.connections() == 0
    job = (await client.get(f"/api/jobs/{job_id}")).json()
    assert job["status"] == "error" and job["error"]["code"] == "URL_NOT_ALLOWED"


async def test_too_long_by_metadata_never_downloads(server: RunningServer,
                                                    client: httpx.AsyncClient,
                                                    media: MediaServer, fixtures: Path) -> None:
    media.add("/long/body.wav", Route(body=wav_bytes(fixtures, 2.0), content_type="audio/wav"))
    page = json_ld_page(title="Hours", duration_s=MAX_DURATION * 30,
                        content_url=media.url("/long/body.wav"))
    url = media.add("/long/page.html", Route(body=page, content_type="text/html"))
    _job_id, events = await run_to_end(server, client, url)
    assert error_of(events)["code"] == "TOO_LONG"
    assert len(media.requested("/long/page.html")) == 1
    assert media.requested("/long/body.wav") == []  # not even its headers
    await wait_uploads_empty(server)


@pytest.mark.parametrize("send_length", [True, False], ids=["declared", "undeclared"])
async def test_oversize_download_fails_and_leaves_nothing(
        server: RunningServer, client: httpx.AsyncClient, media: MediaServer,
        send_length: bool) -> None:
    path = f"/big/{'sized' if send_length else 'unsized'}.wav"
    url = media.add(path, Route(body=b"RIFF" + b"\0" * (MAX_DOWNLOAD * 2),
                                content_type="audio/wav", send_length=send_length))
    _job_id, events = await run_to_end(server, client, url)
    error = error_of(events)
    assert error["code"] == "DOWNLOAD_TOO_LARGE", error
    assert str(MAX_DOWNLOAD) in error["message"]
    await wait_uploads_empty(server)


async def test_unavailable_and_unextractable(server: RunningServer, client: httpx.AsyncClient,
                                             media: MediaServer) -> None:
    media.add("/no-media.html", Route(body=b"<html><body><p>words only</p></body></html>",
                                      content_type="text/html"))
    media.add("/gone.wav", Route(status=410, body=b"gone", content_type="text/plain"))
    with listener("127.0.0.1") as closed:
        port = closed.port
    cases = [
        (media.url("/missing.wav"), "VIDEO_UNAVAILABLE"),
        (media.url("/gone.wav"), "VIDEO_UNAVAILABLE"),
        (f"http://127.0.0.1:{port}/nobody-listens.wav", "VIDEO_UNAVAILABLE"),
        (media.url("/no-media.html"), "EXTRACTION_ERROR"),
    ]
    for url, code in cases:
        _job_id, events = await run_to_end(server, client, url)
        error = error_of(events)
        assert error["code"] == code, (url, error)
        assert error["message"]
    await wait_uploads_empty(server)
    assert server.alive()


async def test_not_audio_is_a_decode_error(server: RunningServer, client: httpx.AsyncClient,
                                           media: MediaServer) -> None:
    url = media.add("/fake.mp3", Route(body=bytes(range(256)) * 64, content_type="audio/mpeg"))
    _job_id, events = await run_to_end(server, client, url)
    assert error_of(events)["code"] in {"UNSUPPORTED_FORMAT", "DECODE_ERROR"}
    await wait_uploads_empty(server)


async def test_cancel_during_a_slow_download(server: RunningServer, client: httpx.AsyncClient,
                                             media: MediaServer) -> None:
    path = "/slow/trickle.wav"
    url = media.add(path, Route(body=b"RIFF" + b"\0" * 400_000, content_type="audio/wav",
                                trickle=(4096, 0.05)))
    r = await post_url(client, url)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    async with sio_client(server.url) as sio:
        await sio.subscribe(job_id, since=0)

        def partly_downloaded() -> bool:
            parts = [p for p in server.upload_dir.glob("*.part") if job_id in p.name]
            return bool(parts) and parts[0].stat().st_size > 0

        await wait_until(partly_downloaded, timeout=30, what="a partial download")
        r = await client.delete(f"/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        events = await sio.until_terminal(job_id)
    assert error_of(events)["code"] == "JOB_CANCELLED"
    assert (await client.get(f"/api/jobs/{job_id}")).status_code == 404
    await wait_uploads_empty(server)
    # The download really stopped: the server hung up before the body was sent.
    await wait_until(lambda: media.requested(path) and not any(
        h.finished for h in media.requested(path)), timeout=10, what="unfinished bodies")
    assert (await client.get("/health")).status_code == 200


async def test_download_timeout(tmp_path: Path, media: MediaServer) -> None:
    url = media.add("/stall/forever.wav", Route(body=b"RIFF" + b"\0" * 200_000,
                                                content_type="audio/wav", trickle=(512, 0.5)))
    with start_server(tmp_path, workers=1, url_allowlist="127.0.0.1", download_timeout_s=2,
                      download_socket_timeout_s=1) as s:
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
            _job_id, events = await run_to_end(s, c, url)
            error = error_of(events)
            assert error["code"] == "DOWNLOAD_TIMEOUT", error
            await wait_uploads_empty(s)


async def test_default_allowlist_refuses_loopback(tmp_path: Path, media: MediaServer) -> None:
    """With no allow-list (the default), the test server's own address is refused."""
    url = media.add("/default/a.wav", Route(body=b"RIFF", content_type="audio/wav"))
    with start_server(tmp_path, workers=1) as s:
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
            r = await post_url(c, url)
            assert (r.status_code, r.json()["code"]) == (403, "URL_NOT_ALLOWED")
    assert media.requested("/default/a.wav") == []


async def test_url_jobs_can_be_switched_off(tmp_path: Path, media: MediaServer) -> None:
    url = media.add("/off/a.wav", Route(body=b"RIFF", content_type="audio/wav"))
    with start_server(tmp_path, workers=1, url_jobs="false", url_allowlist="127.0.0.1") as s:
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
            for route, body in (("/api/jobs", {"url": url}),
                                ("/api/analyze", {"youtube_url": url})):
                r = await c.post(route, json=body)
                assert (r.status_code, r.json()["code"]) == (403, "URL_JOBS_DISABLED")
    assert media.requested("/off/a.wav") == []


async def test_openapi_documents_both_bodies(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    content = spec["paths"]["/api/jobs"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert "/api/analyze" in spec["paths"]


class UrlServer(Server):
    """The persistence tests' restartable server (same data dir), allowed to fetch locally."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "TONEWIRE_URL_ALLOWLIST": "127.0.0.1"}


async def test_a_url_job_killed_mid_download_is_fetched_again_after_restart(
        tmp_path: Path, media: MediaServer, fixtures: Path) -> None:
    path = "/resume/slow.wav"
    url = media.add(path, Route(body=wav_bytes(fixtures, 5.0), content_type="audio/wav",
                                trickle=(8192, 0.05)))
    first = UrlServer(data_dir=tmp_path / "data", log_path=tmp_path / "first.log")
    await asyncio.to_thread(first.start)
    second = UrlServer(data_dir=tmp_path / "data", log_path=tmp_path / "second.log")
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as c:
            r = await post_url(c, url)
            assert r.status_code == 202, r.text
            job_id = r.json()["job_id"]

        def partly_downloaded() -> bool:
            parts = list(first.uploads.glob(f"{job_id}*.part"))
            return bool(parts) and parts[0].stat().st_size > 0

        await wait_until(partly_downloaded, timeout=30, what="a partial download")
        await asyncio.to_thread(first.kill9)
        await asyncio.to_thread(second.start)
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as c:
            job = await wait_for_status(c, job_id, timeout=60)
            assert job["status"] == "complete", job
            async with sio_client(second.url) as sio:
                await sio.subscribe(job_id, since=0)
                events = await sio.until_terminal(job_id)
        analysis = check_stream(events, job_id)  # one gap-free stream across both runs
        assert analysis["video"]["duration"] == pytest.approx(5.0, abs=0.1)
        assert [h.finished for h in media.requested(path)][-1] is True
        assert list(second.uploads.iterdir()) == []
    finally:
        for srv in (first, second):
            if srv.running():
                await asyncio.to_thread(srv.kill9)
