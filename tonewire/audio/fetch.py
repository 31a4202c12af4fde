"""Fetch the audio behind a URL to a local file: metadata first, then a bounded download.

Runs in a worker process (blocking I/O; cancelling the job kills the process). The order is
what keeps it cheap to refuse: yt-dlp's metadata is checked (duration, live, declared size)
before a byte of media is requested; the download then stops at the size limit, at the
deadline, or at the first refused address. The download goes to ``DEST.part`` and is renamed
to ``DEST`` only when complete; the part file is removed whichever way this ends (and the job
service removes both when it kills a worker mid-download).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any, Final

from tonewire.audio.guarded_http import GuardedHttp, Opened
from tonewire.audio.ssrf import AddressGuard, Allowlist
from tonewire.audio.urls import SourceUrl
from tonewire.audio.ytdlp import MediaInfo, extract
from tonewire.errors import (
    DownloadTimeout,
    DownloadTooLarge,
    VideoUnavailable,
)

PART_SUFFIX: Final = ".part"
_CHUNK: Final = 64 * 1024
_PROGRESS_STEPS: Final = 50
_MIN_PROGRESS_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """The limits of one fetch; a plain dict on the way to a worker (:meth:`to_dict`)."""

    max_bytes: int
    timeout_s: float
    """The whole fetch, metadata and download."""
    socket_timeout_s: float
    """One connect or read."""
    max_duration_s: float
    allowlist: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "allowlist": list(self.allowlist)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FetchSettings:
        return cls(**{**data, "allowlist": tuple(data.get("allowlist") or ())})


@dataclass(frozen=True, slots=True)
class Resolved:
    """The metadata is known and within limits; the download starts."""

    info: MediaInfo


@dataclass(frozen=True, slots=True)
class Downloading:
    done: int
    total: int | None


FetchEvent = Resolved | Downloading


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + PART_SUFFIX)


def fetch(source: SourceUrl, dest: Path, settings: FetchSettings, *,
          guard: AddressGuard | None = None) -> Iterator[FetchEvent]:
    """Yield :class:`Resolved`, then :class:`Downloading` as bytes arrive; ``dest`` exists
    when the iterator is exhausted. Raises :class:`~tonewire.errors.UrlError` subclasses and
    :class:`~tonewire.errors.TooLong`."""
    guard = guard or AddressGuard(Allowlist.parse(settings.allowlist))
    http = GuardedHttp(guard, timeout_s=settings.socket_timeout_s,
                       deadline=time.monotonic() + settings.timeout_s)
    info = extract(source, http, max_duration_s=settings.max_duration_s,
                   max_bytes=settings.max_bytes)
    if info.filesize is not None and info.filesize > settings.max_bytes:
        raise DownloadTooLarge(f"the media is {info.filesize} bytes; "
                               f"the limit is {settings.max_bytes}")
    yield Resolved(info)
    part = part_path(dest)
    try:
        yield from _download(http, info, part, settings.max_bytes)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def _download(http: GuardedHttp, info: MediaInfo, part: Path,
              max_bytes: int) -> Iterator[Downloading]:
    opened = http.open(info.media_url, headers=info.headers)
    try:
        status = opened.response.status
        if not 200 <= status < 300:
            raise VideoUnavailable(f"the media URL answered HTTP {status}")
        total = _content_length(opened)
        if total is not None and total > max_bytes:
            raise DownloadTooLarge(f"the media is {total} bytes; the limit is {max_bytes}")
        # About 50 reports per download (of the limit when the size is unknown).
        step = max(_MIN_PROGRESS_BYTES, (total or max_bytes) // _PROGRESS_STEPS)
        done, reported = 0, 0
        yield Downloading(0, total)
        with part.open("wb") as out:
            while True:
                chunk = opened.read(_CHUNK, http.remaining())
                if not chunk:
                    break
                done += len(chunk)
                if done > max_bytes:
                    raise DownloadTooLarge(f"the media is larger than the {max_bytes} byte "
                                           "limit")
                out.write(chunk)
                if done - reported >= step:
                    reported = done
                    yield Downloading(done, total)
        if total is not None and done < total:
            raise VideoUnavailable(f"the download ended after {done} of {total} bytes")
        if done == 0:
            raise VideoUnavailable("the media URL returned no data")
        yield Downloading(done, total)
    except TimeoutError as exc:
        raise DownloadTimeout("the download stalled or ran past the time limit") from exc
    except (OSError, HTTPException) as exc:
        raise VideoUnavailable(f"the download failed: {exc}") from exc
    finally:
        http.close_all()


def _content_length(opened: Opened) -> int | None:
    value = opened.response.getheader("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)
