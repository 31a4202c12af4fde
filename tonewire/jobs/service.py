"""The job service: create, run, cancel, delete and resume analysis jobs.

A job's life is written to its stream as it happens: ``progress`` (status, 0-100, never going
back), one ``chunk`` per segment in order, then ``complete`` with the whole analysis, or
``error``. A job interrupted by a crash is resumed on start: the analysis is deterministic,
so it is simply run again and the segments already in the stream are not appended twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tonewire.analysis.options import AnalysisOptions
from tonewire.audio.fetch import FetchSettings, part_path
from tonewire.audio.urls import SourceUrl, parse_source_url
from tonewire.errors import TonewireError
from tonewire.jobs.model import RUNNING, TERMINAL, JobStatus, new_job_id
from tonewire.jobs.pool import WorkerLost, WorkerPool
from tonewire.jobs.queue import JobQueue, LocalQueue
from tonewire.logs import job_id_var
from tonewire.metrics import Metrics
from tonewire.report.json import SCHEMA_VERSION
from tonewire.store.database import Store
from tonewire.streams.event import job_stream
from tonewire.streams.log import StreamConflict, StreamLog

log = logging.getLogger(__name__)

DECODING_PROGRESS = 2
ANALYSIS_SPAN = (5, 99)
# URL jobs download first: reported as status "decoding" with a "downloading" message (the
# original state names stay the only ones), then analysis takes the rest of the bar.
DOWNLOAD_SPAN = (2, 30)
URL_ANALYSIS_SPAN = (30, 99)


class JobNotFound(TonewireError):
    code = "JOB_NOT_FOUND"


class JobNotComplete(TonewireError):
    code = "JOB_NOT_COMPLETE"


class JobLimitReached(TonewireError):
    code = "JOB_LIMIT"


@dataclass(frozen=True, slots=True)
class JobLimits:
    max_duration_s: float
    max_active: int = 100
    """jobs waiting or running at once; more are refused with ``JOB_LIMIT``"""


def cache_key(content_sha256: str, options: AnalysisOptions, limits: JobLimits) -> str:
    """Same content + same settings = same analysis: the key of the result cache."""
    return _key({"sha256": content_sha256}, options, limits)


def url_cache_key(canonical_url: str, options: AnalysisOptions, limits: JobLimits) -> str:
    """Same canonical URL + same settings: a URL job's cache key (see ``audio.urls``)."""
    return _key({"url": canonical_url}, options, limits)


def _key(source: dict[str, str], options: AnalysisOptions, limits: JobLimits) -> str:
    blob = json.dumps({**source, "options": options.to_dict(),
                       "max_duration_s": limits.max_duration_s, "schema": SCHEMA_VERSION},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class JobService:
    def __init__(self, *, store: Store, log: StreamLog, pool: WorkerPool,
                 options: AnalysisOptions, limits: JobLimits,
                 metrics: Metrics | None = None,
                 fetch: FetchSettings | None = None, download_dir: Path | None = None,
                 queue: JobQueue | None = None, max_attempts: int = 3) -> None:
        self.store = store
        self.metrics = metrics
        self.log = log
        self.pool = pool
        self.options = options
        self.limits = limits
        self.fetch = fetch or FetchSettings(max_bytes=512 * 1024 * 1024, timeout_s=600.0,
                                            socket_timeout_s=20.0,
                                            max_duration_s=limits.max_duration_s)
        self.download_dir = download_dir or Path("downloads")
        self.queue: JobQueue = queue or LocalQueue()
        """Where jobs wait and who runs them: this process, or workers behind Redis."""
        self.max_attempts = max_attempts

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the queue and resume every job a previous process left unfinished (on a
        shared queue, queueing a job that is queued or running already is a no-op)."""
        await self.queue.start(self._run)
        for row in await self.store.jobs_with_status([s.value for s in RUNNING]):
            if row["source_kind"] == "url":  # fetched again from the start by its runner
                log.info("resuming URL job %s", row["id"])
                self._spawn(row["id"])
            elif row["input_path"] and Path(row["input_path"]).is_file():
                log.info("resuming job %s", row["id"])
                self._spawn(row["id"])
            else:
                await self._fail(row["id"], "INTERNAL_ERROR",
                                 "the job's input was lost when the server stopped")

    async def close(self) -> None:
        await self.queue.close()

    # -- commands --------------------------------------------------------------------------
    async def create_from_file(self, *, path: Path, source_name: str, content_sha256: str,
                               source_kind: str = "upload") -> tuple[dict[str, Any], bool]:
        """Create a job for a file it now owns. Returns ``(job row, created)``.

        A complete job for the same content and settings is returned as it is (``created``
        is False) and the file is removed.
        """
        key = cache_key(content_sha256, self.options, self.limits)
        cached = await self.store.find_job_by_cache_key(key, status=JobStatus.COMPLETE)
        if cached is not None:
            path.unlink(missing_ok=True)
            return cached, False
        await self._admit(path)
        job_id = new_job_id()
        final = path.with_name(f"{job_id}{path.suffix}")
        os.replace(path, final)
        now = time.time()
        row = {
            "id": job_id, "status": JobStatus.PENDING.value, "progress": 0,
            "message": "waiting for a worker", "source_kind": source_kind,
            "source_name": source_name, "input_path": str(final),
            "content_sha256": content_sha256, "cache_key": key,
            "options": json.dumps({"options": self.options.to_dict(),
                                   "max_duration_s": self.limits.max_duration_s}),
            "title": Path(source_name).stem or None, "duration": None,
            "created_at": now, "updated_at": now, "finished_at": None,
        }
        await self.store.insert_job(row)
        await self._progress(job_id, JobStatus.PENDING, 0, "waiting for a worker")
        self._spawn(job_id)
        return row, True

    async def _admit(self, path: Path | None = None) -> None:
        counts = await self.store.count_jobs_by_status()
        active = sum(counts.get(s.value, 0) for s in RUNNING)
        if active >= self.limits.max_active:
            if path is not None:
                path.unlink(missing_ok=True)
            raise JobLimitReached(f"{active} jobs are already waiting or running; "
                                  "try again when one finishes")

    async def create_from_url(self, source: SourceUrl) -> tuple[dict[str, Any], bool]:
        """Create a job that fetches ``source`` in a worker. Returns ``(job row, created)``;
        a complete job for the same canonical URL and settings is returned as it is."""
        key = url_cache_key(source.canonical, self.options, self.limits)
        cached = await self.store.find_job_by_cache_key(key, status=JobStatus.COMPLETE)
        if cached is not None:
            return cached, False
        await self._admit()
        job_id = new_job_id()
        self.download_dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        row = {
            "id": job_id, "status": JobStatus.PENDING.value, "progress": 0,
            "message": "waiting for a worker", "source_kind": "url",
            "source_name": source.canonical,
            # Where the worker downloads to; it does not exist until the download completes.
            "input_path": str(self.download_dir / f"{job_id}.download"),
            "content_sha256": None, "cache_key": key,
            "options": json.dumps({"options": self.options.to_dict(),
                                   "max_duration_s": self.limits.max_duration_s}),
            "title": None, "duration": None,
            "created_at": now, "updated_at": now, "finished_at": None,
        }
        await self.store.insert_job(row)
        await self._progress(job_id, JobStatus.PENDING, 0, "waiting for a worker")
        self._spawn(job_id)
        return row, True

    async def get(self, job_id: str) -> dict[str, Any]:
        row = await self.store.get_job(job_id)
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return row

    async def analysis_json(self, job_id: str) -> str:
        row = await self.get(job_id)
        if row["status"] != JobStatus.COMPLETE:
            raise JobNotComplete(f"job {job_id} is {row['status']}, not complete")
        text = await self.store.get_analysis_json(job_id)
        if text is None:
            raise JobNotComplete(f"job {job_id} has no stored analysis")
        return text

    async def delete(self, job_id: str) -> None:
        """Cancel the job if it runs, tell its subscribers, and delete it with its stream."""
        row = await self.get(job_id)
        stopped = await self.queue.cancel(job_id)  # wherever it runs
        if row["status"] not in TERMINAL or stopped:
            for attempt in range(3):
                # Its runner has stopped: the stream is ours now. A write the runner had
                # in flight may still land first (in another process): then take again.
                await self.log.take(job_stream(job_id))
                try:
                    await self._finish_error(job_id, JobStatus.CANCELLED, "JOB_CANCELLED",
                                             "the job was cancelled")
                    break
                except StreamConflict:
                    if attempt == 2:
                        raise
        _remove(row["input_path"])
        await self.store.delete_job(job_id, job_stream(job_id))
        self.log.forget(job_stream(job_id))

    # -- running ---------------------------------------------------------------------------
    def _spawn(self, job_id: str) -> None:
        """Hand the job to the queue, and its stream to whoever will run it."""
        self.log.forget(job_stream(job_id))
        self.queue.submit(job_id)

    async def _run(self, job_id: str, attempt: int = 1) -> None:
        """One attempt at a job, called by the queue wherever the job is picked up."""
        job_id_var.set(job_id)  # this task's context: every log line names the job
        row = await self.store.get_job(job_id)
        if row is None or row["status"] in TERMINAL:
            return  # deleted or finished meanwhile: a late or repeated delivery
        await self.log.take(job_stream(job_id))  # continue the stream from the store
        if attempt > self.max_attempts:
            await self._finish_error(job_id, JobStatus.ERROR, "WORKER_LOST",
                                     f"the job's worker stopped {attempt - 1} times")
            _remove(row["input_path"])
            return
        if attempt > 1:
            log.info("job %s: attempt %d", job_id, attempt)
        if row["source_kind"] == "url":  # a download is always made afresh, by this attempt
            _remove(row["input_path"])
        try:
            await self._execute(job_id)
        except asyncio.CancelledError:
            self.pool.cancel(job_id)  # stop the analysis process too
            raise
        except StreamConflict:
            log.warning("job %s is being run by another worker; leaving it", job_id)
            return
        except Exception:
            log.exception("job %s failed", job_id)
            await self._finish_error(job_id, JobStatus.ERROR, "INTERNAL_ERROR",
                                     "the analysis failed unexpectedly")
        row = await self.store.get_job(job_id)
        if row is not None and row["status"] in TERMINAL:
            _remove(row["input_path"])

    async def _execute(self, job_id: str) -> None:
        row = await self.get(job_id)
        stream = job_stream(job_id)
        done_chunks = len(await self.store.read_events(stream, types=["chunk"]))
        progress = int(row["progress"])
        task = {"path": row["input_path"], "options": self.options.to_dict(),
                "max_duration_s": self.limits.max_duration_s, "name": row["source_name"]}
        is_url = row["source_kind"] == "url"
        if is_url:  # the worker fetches it first (and is killed if the job is cancelled)
            task.update(url=row["source_name"], fetch=self.fetch.to_dict())
        source: dict[str, Any] | None = None
        summary: dict[str, Any] | None = None
        failure: tuple[str, str] | None = None
        started_at = 0.0
        chunks: list[tuple[str, dict[str, Any]]] = []  # segments not yet in the log

        async def store_chunks() -> None:
            if chunks:  # a burst of segments: one write, one commit
                await self.log.append_many(stream, chunks)
                chunks.clear()

        try:
            async for batch in self.pool.run(job_id, task):
                for msg in batch:
                    kind = msg[0]
                    if kind == "segment":
                        index, segment = msg[1], msg[2]
                        if index >= done_chunks:  # else in the stream from before a restart
                            chunks.append(("chunk", {
                                "type": "chunk", "job_id": job_id,
                                "timestamp": segment["startTime"], "segment": segment}))
                            done_chunks = index + 1
                        continue
                    await store_chunks()  # what came before this message is logged first
                    if kind == "started":  # a worker has the job: it is decoding now
                        info = msg[1]
                        started_at = time.monotonic() if done_chunks == 0 else 0.0
                        log.info("analysing %s (%s)", row["source_name"], info.get("codec"))
                        if info.get("title") and source is None:  # a site's title comes first
                            await self.store.update_job(job_id, title=info["title"])
                        if done_chunks == 0 and progress < DECODING_PROGRESS:
                            progress = DECODING_PROGRESS
                            await self._progress(job_id, JobStatus.DECODING, progress,
                                                 "decoding audio")
                    elif kind == "fetching" and progress < 1:
                        progress = 1
                        await self._progress(job_id, JobStatus.DECODING, 1, "resolving the URL")
                    elif kind == "source":  # URL metadata, within limits; downloading next
                        source = msg[1]
                        await self.store.update_job(job_id, title=source.get("title"))
                    elif kind == "download":
                        pct, text = _download_progress(msg[1], msg[2])
                        if pct > progress or (msg[2] is None and pct == progress):
                            progress = pct
                            await self._progress(job_id, JobStatus.DECODING, pct, text)
                    elif kind == "progress" and msg[1] is not None:
                        lo, hi = URL_ANALYSIS_SPAN if is_url else ANALYSIS_SPAN
                        pct = lo + int(msg[1] * (hi - lo))
                        if pct > progress:
                            progress = pct
                            await self._progress(job_id, JobStatus.ANALYZING, pct,
                                                 f"analysed {msg[2]:.0f} s of audio")
                    elif kind == "finished":
                        summary = msg[1]
                    elif kind == "error":  # read on to ("done",): the worker stays reusable
                        failure = (msg[1], msg[2])
                await store_chunks()
        except WorkerLost:
            await self._finish_error(job_id, JobStatus.ERROR, "WORKER_LOST",
                                     "the analysis worker stopped unexpectedly")
            return
        if failure is not None:
            await self._finish_error(job_id, JobStatus.ERROR, *failure)
            return
        if summary is None:
            raise RuntimeError("worker finished without a summary")
        wall = time.monotonic() - started_at
        log.info("complete: %.1f s of audio in %.2f s", summary["duration"], wall)
        if self.metrics is not None and started_at:  # not for a resumed run: it skipped work
            self.metrics.realtime_factor.observe(summary["duration"] / max(wall, 1e-6))
        await self._complete(job_id, summary, source)

    async def _complete(self, job_id: str, summary: dict[str, Any],
                        source: dict[str, Any] | None = None) -> None:
        row = await self.get(job_id)
        stream = job_stream(job_id)
        chunks = await self.store.read_events(stream, types=["chunk"])
        video: dict[str, Any] = {
            "id": row["content_sha256"][:32] if row["content_sha256"] else job_id,
            "title": row["title"] or row["source_name"],
            "duration": summary["duration"], "thumbnailUrl": None}
        if row["source_kind"] == "url":
            video["id"] = parse_source_url(row["source_name"]).video_id
            video["thumbnailUrl"] = (source or {}).get("thumbnail")
            video["url"] = row["source_name"]
        analysis: dict[str, Any] = {"id": job_id, "video": video}
        analysis["overallEmotion"] = summary.pop("overallEmotion")
        analysis["segments"] = [c.data["segment"] for c in chunks]
        analysis["analyzedAt"] = datetime.now(UTC).isoformat(timespec="seconds")
        analysis.update(summary)
        text = json.dumps(analysis, separators=(",", ":"), allow_nan=False)
        await self.log.append_many(stream, [
            ("progress", {"type": "progress", "job_id": job_id,
                          "status": JobStatus.COMPLETE.value, "progress": 100,
                          "message": "complete"}),
            ("complete", {"type": "complete", "job_id": job_id, "analysis": analysis}),
        ], job_update=(job_id, {"status": JobStatus.COMPLETE.value, "progress": 100,
                                "message": "complete", "duration": summary["duration"],
                                "finished_at": time.time()}),
            analysis=(job_id, text))
        self.log.forget(stream)

    async def _progress(self, job_id: str, status: JobStatus, pct: int, message: str) -> None:
        await self.log.append(job_stream(job_id), "progress", {
            "type": "progress", "job_id": job_id, "status": status.value, "progress": pct,
            "message": message},
            job_update=(job_id, {"status": status.value, "progress": pct, "message": message}))

    async def _finish_error(self, job_id: str, status: JobStatus, code: str,
                            message: str) -> None:
        await self.log.append(job_stream(job_id), "error", {
            "type": "error", "job_id": job_id, "code": code, "message": message},
            job_update=(job_id, {"status": status.value, "error_code": code,
                                 "error_message": message, "message": message,
                                 "finished_at": time.time()}))
        self.log.forget(job_stream(job_id))

    async def _fail(self, job_id: str, code: str, message: str) -> None:
        await self._finish_error(job_id, JobStatus.ERROR, code, message)


def _remove(path: str | None) -> None:
    """Remove a job's input, and the part file of a download a killed worker left."""
    if path:
        Path(path).unlink(missing_ok=True)
        part_path(Path(path)).unlink(missing_ok=True)


def _download_progress(done: int, total: int | None) -> tuple[int, str]:
    """``(percent, message)`` of a download ``done`` bytes into ``total`` (if known)."""
    lo, hi = DOWNLOAD_SPAN
    if not total:
        return lo, f"downloading: {done / 1e6:.1f} MB"
    pct = lo + int(min(done / total, 1.0) * (hi - lo))
    return pct, f"downloading: {done / 1e6:.1f} of {total / 1e6:.1f} MB"
