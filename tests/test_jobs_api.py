"""The jobs REST API against a live ``tonewire serve``: uploads and their limits, the original
``/api/job/{id}`` routes, job ids, listing, the result cache, cancelling, errors as
``{"code", "message"}``, OpenAPI, health and CORS (HTTP and the Socket.IO handshake)."""

from __future__ import annotations

import itertools
import os
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server import (
    RunningServer,
    check_analysis_shape,
    create_job,
    process_alive,
    sio_client,
    start_server,
    upload,
    variant,
    wait_for_status,
    wait_until,
    wait_uploads_empty,
    watched_client,
    write_long_wav,
    write_music,
)

pytestmark = pytest.mark.asyncio

ALLOWED = "http://allowed.example"
OTHER = "http://other.example"
UPLOAD_LIMIT = 200_000
_seeds = itertools.count(500)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("api"), workers=2) as s:
        yield s


@pytest.fixture(scope="module")
def restricted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A small upload limit and one allowed cross-origin."""
    with start_server(tmp_path_factory.mktemp("api-restricted"), workers=1,
                      max_upload_bytes=UPLOAD_LIMIT, cors_origins=f"{ALLOWED}, ") as s:
        yield s


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-audio")


@pytest.fixture(scope="module")
def long_wav(audio_dir: Path) -> Path:
    return write_long_wav(audio_dir / "long.wav", 20)


@pytest.fixture(scope="module")
def medium_wav(audio_dir: Path) -> Path:
    """6 minutes: a couple of seconds of analysis."""
    return write_long_wav(audio_dir / "medium.wav", 6)


@pytest.fixture
def fresh_music(audio_dir: Path) -> Iterator[Any]:
    def make(seconds: float = 5.0) -> Path:
        seed = next(_seeds)
        return write_music(audio_dir / f"music-{seed}.wav", seconds, seed=seed)
    yield make


@pytest.fixture
def fresh_variant(audio_dir: Path) -> Iterator[Any]:
    def make(src: Path) -> Path:
        n = next(_seeds)
        return variant(src, audio_dir / f"{src.stem}-{n}.wav", n)
    yield make


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with watched_client(server) as client:
        yield client


@pytest.fixture
async def http_restricted(restricted: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with watched_client(restricted) as client:
        yield client


def random_bytes_file(path: Path, n: int = 40_000) -> Path:
    path.write_bytes(os.urandom(n))
    return path


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body: dict[str, Any] = r.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "tw-boundary"
              ) -> tuple[bytes, dict[str, str]]:
    """A hand-made multipart body: ``(name, filename or None, content)`` per part."""
    out = b""
    for name, filename, content in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += (f"--{boundary}\r\nContent-Disposition: {disp}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"content-type": f"multipart/form-data; boundary={boundary}"}


# -- health, docs ----------------------------------------------------------------------------


async def test_health(http: httpx.AsyncClient) -> None:
    r = await http.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    assert body["workers"] == 2
    assert isinstance(body["running_jobs"], int)


async def test_docs_and_openapi(http: httpx.AsyncClient) -> None:
    r = await http.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "swagger" in r.text.lower()
    r = await http.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/analysis",
            "/api/jobs/{job_id}/events", "/health"} <= set(paths)
    assert {"get", "post"} <= set(paths["/api/jobs"])
    assert {"get", "delete"} <= set(paths["/api/jobs/{job_id}"])


async def test_unknown_route_and_method_are_json_errors(http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/api/nothing-here"), 404, "NOT_FOUND")
    assert_error(await http.put("/api/jobs"), 405, "METHOD_NOT_ALLOWED")


# -- creating jobs ---------------------------------------------------------------------------


async def test_create_job_202_shape_and_original_get(
        server: RunningServer, http: httpx.AsyncClient, fresh_music: Any) -> None:
    path = fresh_music()
    r = await upload(http, path)
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"job_id", "status", "websocket_url", "events_url", "cached"}
    job_id = body["job_id"]
    assert body["status"] == "pending"
    assert body["cached"] is False
    assert body["websocket_url"] == f"ws://127.0.0.1:{server.port}/socket.io/"
    assert body["events_url"] == f"{server.url}/api/jobs/{job_id}/events"
    done = await wait_for_status(http, job_id, "complete")
    for route in (f"/api/job/{job_id}", f"/api/jobs/{job_id}"):
        r = await http.get(route)
        assert r.status_code == 200
        view = r.json()
        # The original protocol's shape, then tonewire's fields.
        assert set(view) >= {"job_id", "status", "progress", "error"}
        assert view["job_id"] == job_id
        assert view["status"] == "complete"
        assert view["progress"] == 100
        assert view["error"] is None
        assert view["duration"] == pytest.approx(5.0, abs=0.1)
    assert done["source"] == {"kind": "upload", "name": path.name}
    assert done["title"] == path.stem
    await wait_uploads_empty(server)


async def test_job_ids_are_random_and_unguessable(http: httpx.AsyncClient,
                                                  fresh_music: Any) -> None:
    ids = [await create_job(http, fresh_music(1.0), filename="same-name.wav")
           for _ in range(10)]
    assert len(set(ids)) == len(ids)
    for job_id in ids:
        # token_urlsafe(16): 22 characters of base64url = 132 bits >= 128 bits of randomness,
        # and nothing taken from the upload (the original used `job_<video_id>`).
        assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", job_id), job_id
        assert "same" not in job_id and "job_" not in job_id
    # No shared prefix or suffix: not a counter, not a timestamp.
    assert len({i[:4] for i in ids}) > 1 and len({i[-4:] for i in ids}) > 1
    for job_id in ids:
        await wait_for_status(http, job_id)


async def test_analysis_is_409_while_running_then_served(
        server: RunningServer, http: httpx.AsyncClient, medium_wav: Path,
        fresh_variant: Any) -> None:
    job_id = await create_job(http, fresh_variant(medium_wav))
    for path in (f"/api/jobs/{job_id}/analysis", f"/api/job/{job_id}/analysis"):
        assert_error(await http.get(path), 409, "JOB_NOT_COMPLETE")
    await wait_for_status(http, job_id, "complete", timeout=60)
    r1 = await http.get(f"/api/jobs/{job_id}/analysis")
    r2 = await http.get(f"/api/job/{job_id}/analysis")
    assert r1.status_code == r2.status_code == 200
    assert r1.headers["content-type"].startswith("application/json")
    analysis = r1.json()
    assert r2.json() == analysis
    check_analysis_shape(analysis, job_id)
    assert len(analysis["segments"]) == 6 * 60
    await wait_uploads_empty(server)


async def test_unknown_job_is_404_everywhere(http: httpx.AsyncClient) -> None:
    for path in ("/api/jobs/nope", "/api/job/nope", "/api/jobs/nope/analysis",
                 "/api/job/nope/analysis", "/api/jobs/nope/events"):
        assert_error(await http.get(path), 404, "JOB_NOT_FOUND")
    for path in ("/api/jobs/nope", "/api/job/nope"):
        assert_error(await http.delete(path), 404, "JOB_NOT_FOUND")


async def test_list_jobs_paging(http: httpx.AsyncClient, fresh_music: Any) -> None:
    mine = [await create_job(http, fresh_music(1.0)) for _ in range(5)]
    for job_id in mine:
        await wait_for_status(http, job_id)
    r = await http.get("/api/jobs", params={"limit": 200})
    assert r.status_code == 200
    everything = r.json()
    total = everything["total"]
    assert total == len(everything["jobs"]) >= 5
    all_ids = [j["job_id"] for j in everything["jobs"]]
    # Newest first: ours, most recent first, ahead of anything older.
    assert all_ids[:5] == mine[::-1]
    paged: list[str] = []
    for offset in range(0, total + 2, 2):
        r = await http.get("/api/jobs", params={"limit": 2, "offset": offset})
        assert r.status_code == 200
        page = r.json()
        assert page["limit"] == 2 and page["offset"] == offset and page["total"] == total
        assert len(page["jobs"]) == min(2, max(0, total - offset))
        for job in page["jobs"]:
            assert set(job) >= {"job_id", "status", "progress", "error"}
        paged += [j["job_id"] for j in page["jobs"]]
    assert paged == all_ids
    r = await http.get("/api/jobs")
    assert r.json()["limit"] == 50 and r.json()["offset"] == 0
    for params in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "abc"}):
        assert_error(await http.get("/api/jobs", params=params), 422, "INVALID_REQUEST")


async def test_same_content_is_a_cache_hit(server: RunningServer, http: httpx.AsyncClient,
                                           fresh_music: Any) -> None:
    path = fresh_music()
    job_id = await create_job(http, path)
    await wait_for_status(http, job_id, "complete")
    r = await upload(http, path, filename="another-name.mp3")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cached"] is True
    assert body["job_id"] == job_id
    assert body["status"] == "complete"
    assert set(body) == {"job_id", "status", "websocket_url", "events_url", "cached"}
    # The duplicate upload is not kept.
    await wait_uploads_empty(server)
    # And the stream is there to replay.
    async with sio_client(server.url, transports=["websocket"]) as sio:
        await sio.subscribe(job_id)
        events = await sio.until_terminal(job_id)
    assert events[-1][0] == "complete"


async def test_random_bytes_end_in_unsupported_format(
        server: RunningServer, http: httpx.AsyncClient, tmp_path: Path) -> None:
    job_id = await create_job(http, random_bytes_file(tmp_path / "noise.bin"))
    view = await wait_for_status(http, job_id)
    assert view["status"] == "error"
    assert view["error"]["code"] == "UNSUPPORTED_FORMAT"
    assert view["error"]["message"]
    assert_error(await http.get(f"/api/jobs/{job_id}/analysis"), 409, "JOB_NOT_COMPLETE")
    async with sio_client(server.url, transports=["websocket"]) as sio:
        await sio.subscribe(job_id)
        events = await sio.until_terminal(job_id)
    name, err = events[-1]
    assert name == "error"
    assert err["code"] == "UNSUPPORTED_FORMAT" and err["type"] == "error"
    assert err["job_id"] == job_id and err["seq"] == len(events)
    await wait_uploads_empty(server)
    # An ended job is deleted without fuss.
    assert (await http.delete(f"/api/jobs/{job_id}")).status_code == 200
    assert_error(await http.get(f"/api/jobs/{job_id}"), 404, "JOB_NOT_FOUND")


HAVE_PROC_CHILDREN = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists()


@pytest.mark.skipif(not HAVE_PROC_CHILDREN, reason="needs Linux /proc/<pid>/task/<tid>/children")
async def test_a_failed_job_keeps_its_worker(server: RunningServer, http: httpx.AsyncClient,
                                             tmp_path: Path, fresh_music: Any) -> None:
    """Bad input is reported and the worker reused (it used to be killed and respawned for
    every failed job: a process start and numpy/scipy/PyAV imports per garbage upload)."""
    warm = await create_job(http, fresh_music(1.0))
    await wait_for_status(http, warm, "complete")
    before = server.children()
    bad = await create_job(http, random_bytes_file(tmp_path / "bad.bin"))
    assert (await wait_for_status(http, bad))["status"] == "error"
    # A good job after it: by the time it is complete, any worker replacement has happened.
    good = await create_job(http, fresh_music(1.0))
    assert (await wait_for_status(http, good))["status"] == "complete"
    assert server.children() == before


@pytest.mark.skipif(not HAVE_PROC_CHILDREN, reason="needs Linux /proc/<pid>/task/<tid>/children")
async def test_no_child_process_outlives_a_killed_server(tmp_path: Path) -> None:
    with start_server(tmp_path, workers=1) as srv:
        children = srv.children()  # every worker is started before /health answers
        assert children
        srv.process.send_signal(signal.SIGKILL)
        srv.process.wait(10)
        try:
            await wait_until(lambda: not any(process_alive(c) for c in children), timeout=10.0,
                             what="the server's children to exit")
        except TimeoutError:
            left = {c: Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ")[:100]
                    for c in children if process_alive(c)}
            raise AssertionError(f"still running after the server died: {left}") from None
        finally:
            for c in children:  # the orphans are ours: stop them
                if process_alive(c):
                    os.kill(c, signal.SIGKILL)


# -- bad uploads -----------------------------------------------------------------------------


async def test_wrong_content_type_is_415(server: RunningServer, http: httpx.AsyncClient) -> None:
    # JSON is the URL form ({"url": ...}, issue 6): without a url it is a bad request.
    assert_error(await http.post("/api/jobs", json={"file": "song.mp3"}), 422,
                 "INVALID_REQUEST")
    assert_error(await http.post("/api/jobs"), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert_error(await http.post("/api/jobs", content=b"RIFF....",
                                 headers={"content-type": "audio/wav"}), 415,
                 "UNSUPPORTED_MEDIA_TYPE")
    assert_error(await http.post("/api/jobs", content=b"x",
                                 headers={"content-type": "multipart/form-data"}), 415,
                 "UNSUPPORTED_MEDIA_TYPE")  # no boundary
    assert server.uploads() == []


async def test_multipart_without_a_file_field_is_422(server: RunningServer,
                                                     http: httpx.AsyncClient) -> None:
    r = await http.post("/api/jobs", files={"other": ("a.wav", b"RIFF")})
    assert_error(r, 422, "MISSING_FILE")
    # A `file` field that is a plain value, not a file.
    r = await http.post("/api/jobs", data={"file": "song.mp3"}, files={"x": ("x", b"")})
    assert_error(r, 422, "MISSING_FILE")
    body, headers = multipart([("file", None, b"not a file part")])
    assert_error(await http.post("/api/jobs", content=body, headers=headers), 422,
                 "MISSING_FILE")
    await wait_uploads_empty(server)  # no temporary part left behind


async def test_malformed_multipart_is_400(server: RunningServer, http: httpx.AsyncClient) -> None:
    r = await http.post("/api/jobs", content=b"this is not multipart at all",
                        headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert_error(r, 400, "INVALID_UPLOAD")
    await wait_uploads_empty(server)


async def test_multipart_without_closing_boundary_is_400(
        http: httpx.AsyncClient, fresh_music: Any) -> None:
    """A truncated upload is refused (it used to be analysed as if complete)."""
    data = fresh_music(3.0).read_bytes()
    body, headers = multipart([("file", "cut.wav", data)])
    cut = body[: len(body) // 2]  # half the file, and no closing boundary
    r = await http.post("/api/jobs", content=cut, headers=headers)
    assert_error(r, 400, "INVALID_UPLOAD")


async def test_path_traversal_filename_is_stored_safely(
        server: RunningServer, http: httpx.AsyncClient, fresh_music: Any) -> None:
    root = server.data_dir.parent
    before = {p for p in root.rglob("*") if server.data_dir not in p.parents}
    names = ["../../etc/passwd.wav", "..\\..\\windows\\evil.wav", "/tmp/tonewire-abs.wav",
             "....//....//x.wav", "..", "a\x00b.wav"]
    ids = []
    for name in names:
        r = await upload(http, fresh_music(2.0), filename=name)
        assert r.status_code == 202, (name, r.text)
        ids.append(r.json()["job_id"])
    for job_id, name in zip(ids, names, strict=True):
        view = await wait_for_status(http, job_id)
        stored = view["source"]["name"]
        assert "/" not in stored and "\\" not in stored and not stored.startswith("."), stored
        assert "\x00" not in stored
        assert view["status"] == "complete", (name, view)
    after = {p for p in root.rglob("*") if server.data_dir not in p.parents}
    assert after == before, after - before
    assert not Path("/tmp/tonewire-abs.wav").exists()
    await wait_uploads_empty(server)


# -- cancelling ------------------------------------------------------------------------------


async def test_delete_finished_job_then_404(server: RunningServer, http: httpx.AsyncClient,
                                            fresh_music: Any) -> None:
    job_id = await create_job(http, fresh_music(2.0))
    await wait_for_status(http, job_id, "complete")
    r = await http.delete(f"/api/job/{job_id}")
    assert r.status_code == 200
    assert r.json() == {"job_id": job_id, "status": "deleted"}
    assert_error(await http.get(f"/api/job/{job_id}"), 404, "JOB_NOT_FOUND")
    assert_error(await http.get(f"/api/jobs/{job_id}/analysis"), 404, "JOB_NOT_FOUND")
    assert_error(await http.delete(f"/api/jobs/{job_id}"), 404, "JOB_NOT_FOUND")
    listed = (await http.get("/api/jobs", params={"limit": 200})).json()["jobs"]
    assert job_id not in [j["job_id"] for j in listed]


async def test_cancel_running_jobs_repeatedly(
        server: RunningServer, http: httpx.AsyncClient, medium_wav: Path,
        fresh_variant: Any) -> None:
    """Cancel jobs while they stream chunks, two at a time, twice over: every DELETE is 200,
    the jobs are gone and their inputs removed. (A cancel landing while an event append was
    committing used to reuse its seq: 500, and the job stuck in 'analyzing' for ever.)"""
    for _ in range(2):
        jobs = [await create_job(http, fresh_variant(medium_wav)) for _ in range(2)]
        for job_id in jobs:
            await wait_for_status(http, job_id, {"analyzing"})
        for job_id in jobs:
            r = await http.delete(f"/api/jobs/{job_id}")
            assert r.status_code == 200, r.text
            assert_error(await http.get(f"/api/jobs/{job_id}"), 404, "JOB_NOT_FOUND")
    await wait_uploads_empty(server)


async def test_job_waiting_for_a_worker_stays_pending(
        server: RunningServer, http: httpx.AsyncClient, long_wav: Path,
        fresh_variant: Any, fresh_music: Any) -> None:
    """A queued job says 'pending' until a worker takes it (it used to claim 'decoding')."""
    busy = [await create_job(http, fresh_variant(long_wav)) for _ in range(2)]  # 2 workers
    for job_id in busy:
        await wait_for_status(http, job_id, {"analyzing"})
    waiting = await create_job(http, fresh_music(2.0))
    async with sio_client(server.url, transports=["websocket"]) as sio:
        await sio.subscribe(waiting)
        await sio.wait_for(lambda evs: sio.job_events(waiting), what="a first event")
        view = (await http.get(f"/api/jobs/{waiting}")).json()
        running = [(await http.get(f"/api/jobs/{j}")).json()["status"] for j in busy]
        statuses = [d["status"] for _, d in sio.job_events(waiting)]
    assert running == ["analyzing", "analyzing"]  # the workers really were busy all along
    assert view["status"] == "pending" and view["progress"] == 0
    assert statuses == ["pending"]


# -- limits and CORS (restricted server) -----------------------------------------------------


async def test_upload_limit(restricted: RunningServer, http_restricted: httpx.AsyncClient,
                            fresh_music: Any) -> None:
    http = http_restricted
    big = fresh_music(20.0)  # ~880 kB: refused from its Content-Length
    assert big.stat().st_size > UPLOAD_LIMIT + 64 * 1024
    assert_error(await upload(http, big), 413, "UPLOAD_TOO_LARGE")
    # Just over the limit: refused while streaming to disk.
    just_over = big.read_bytes()[: UPLOAD_LIMIT + 1000]
    r = await http.post("/api/jobs", files={"file": ("over.wav", just_over)})
    assert_error(r, 413, "UPLOAD_TOO_LARGE")
    # No Content-Length at all (chunked): refused while streaming too.
    body, headers = multipart([("file", "chunked.wav", big.read_bytes())])

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 16384):
            yield body[i:i + 16384]

    r = await http.post("/api/jobs", content=chunks(), headers=headers)
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "UPLOAD_TOO_LARGE")
    await wait_uploads_empty(restricted)
    # Under the limit is fine.
    small = fresh_music(3.0)
    assert small.stat().st_size < UPLOAD_LIMIT
    job_id = await create_job(http, small)
    assert (await wait_for_status(http, job_id))["status"] == "complete"
    await wait_uploads_empty(restricted)


async def test_cors_http(http_restricted: httpx.AsyncClient) -> None:
    http = http_restricted
    r = await http.get("/health", headers={"Origin": ALLOWED})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    r = await http.get("/health", headers={"Origin": OTHER})
    assert "access-control-allow-origin" not in r.headers
    r = await http.options("/api/jobs", headers={"Origin": ALLOWED,
                                                 "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in r.headers["access-control-allow-methods"]
    r = await http.options("/api/jobs", headers={"Origin": OTHER,
                                                 "Access-Control-Request-Method": "POST"})
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


async def _polling_handshake(http: httpx.AsyncClient, origin: str | None) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    return await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"},
                          headers=headers)


async def test_cors_socketio_handshake(http_restricted: httpx.AsyncClient) -> None:
    http = http_restricted
    r = await _polling_handshake(http, ALLOWED)
    assert r.status_code == 200, r.text
    assert r.text.startswith("0{") and '"sid"' in r.text
    assert r.headers["access-control-allow-origin"] == ALLOWED
    r = await _polling_handshake(http, OTHER)
    assert r.status_code in (400, 403), r.text
    assert "access-control-allow-origin" not in r.headers
    r = await _polling_handshake(http, None)  # not a browser: no Origin, no CORS check
    assert r.status_code == 200


async def test_cors_default_is_same_origin_only(server: RunningServer,
                                                http: httpx.AsyncClient) -> None:
    r = await http.get("/health", headers={"Origin": OTHER})
    assert "access-control-allow-origin" not in r.headers
    r = await _polling_handshake(http, OTHER)
    assert r.status_code in (400, 403), r.text
    r = await _polling_handshake(http, server.url)  # the page served by the server itself
    assert r.status_code == 200, r.text
