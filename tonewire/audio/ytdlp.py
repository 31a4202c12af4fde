"""yt-dlp as a metadata extractor whose every request goes through the address guard.

yt-dlp sends all its HTTP through a ``RequestDirector`` of request handlers. The
:class:`GuardedYoutubeDL` here builds that director with one handler only,
:class:`GuardedRH`, which sends through :class:`~tonewire.audio.guarded_http.GuardedHttp`: no
other handler (urllib, requests, curl_cffi, websockets) and no proxy can be chosen, so a
request yt-dlp makes while extracting is refused before connecting exactly as ours are. The
media itself is downloaded by :mod:`tonewire.audio.fetch` with the same client.

Only the YouTube and generic extractors are loaded; formats are limited to plain http(s)
(no HLS/DASH fragments), best audio first; nothing is post-processed (PyAV decodes).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from tonewire.audio.guarded_http import BoundedBody, GuardedHttp
from tonewire.audio.urls import SourceUrl
from tonewire.errors import (
    DownloadTimeout,
    ExtractionError,
    TonewireError,
    TooLong,
    UrlError,
    VideoUnavailable,
)

log = logging.getLogger(__name__)

FORMAT: Final = "ba[protocol=https]/ba[protocol=http]/b[protocol=https]/b[protocol=http]"
_UNAVAILABLE: Final = re.compile(
    r"unavailable|not available|private video|removed|does not exist|no longer|"
    r"members[- ]only|sign in|confirm your age|copyright|terminated|HTTP Error [45]\d\d",
    re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What the site says about the media, and the one http(s) URL to download."""

    title: str | None
    duration: float | None
    thumbnail: str | None
    media_url: str
    headers: dict[str, str]
    ext: str | None
    filesize: int | None
    """Declared size in bytes, when the site gives one."""


def extract(source: SourceUrl, http: GuardedHttp, *, max_duration_s: float,
            max_bytes: int) -> MediaInfo:
    """Ask yt-dlp what ``source`` is (no download). Raises :class:`UrlError` subclasses, and
    :class:`TooLong` as soon as the page declares a duration over ``max_duration_s``; no
    response yt-dlp reads may exceed ``max_bytes``.

    Two steps, so that limits are checked on what the page says before yt-dlp resolves the
    media itself (which, for a page pointing at a file, means requesting that file).
    """
    from yt_dlp.utils import YoutubeDLError

    ydl = _new_ydl(http, max_bytes)
    try:
        page = ydl.extract_info(source.canonical, download=False, process=False,
                                ie_key="Youtube" if source.kind == "youtube" else "Generic")
        _check_declared(page, max_duration_s)
        info = ydl.process_ie_result(page, download=False)
    except YoutubeDLError as exc:
        raise translate(exc) from None
    finally:
        ydl.close()
        http.close_all()
    if not isinstance(info, dict):
        raise ExtractionError("yt-dlp returned no information")
    if info.get("_type") == "playlist":
        entries = [e for e in info.get("entries") or [] if isinstance(e, dict)]
        if not entries:
            raise ExtractionError("the page holds a playlist with no playable entry")
        info = entries[0]
    _check_declared(info, max_duration_s)
    chosen = (info.get("requested_formats") or [info])[0]
    url = chosen.get("url") or info.get("url")
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ExtractionError("no audio format downloadable over plain http(s) was found")
    size = chosen.get("filesize") or chosen.get("filesize_approx")
    return MediaInfo(
        title=_text(info.get("title")),
        duration=_duration(info),
        thumbnail=_text(info.get("thumbnail")),
        media_url=url.split("#", 1)[0],  # yt-dlp may smuggle data in the fragment
        headers={str(k): str(v) for k, v in (chosen.get("http_headers") or {}).items()},
        ext=_text(chosen.get("ext")),
        filesize=int(size) if isinstance(size, int | float) and size > 0 else None,
    )


def _duration(info: Any) -> float | None:
    value = info.get("duration") if isinstance(info, dict) else None
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _check_declared(info: Any, max_duration_s: float) -> None:
    """Refuse live streams and media declared longer than the limit, before downloading."""
    if not isinstance(info, dict):
        return
    if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
        raise ExtractionError("live streams cannot be analysed: they never end")
    duration = _duration(info)
    if duration is not None and duration > max_duration_s:
        raise TooLong(f"the media lasts {duration:.0f} s; the limit is {max_duration_s:.0f} s")


def translate(exc: BaseException) -> UrlError | TonewireError:
    """A yt-dlp failure as our error: a guard refusal or timeout found anywhere in its chain
    is reported as itself; HTTP errors and network failures are ``VIDEO_UNAVAILABLE``."""
    from yt_dlp.networking.exceptions import HTTPError, TransportError

    for inner in _chain(exc):
        if isinstance(inner, TonewireError):
            return inner
    for inner in _chain(exc):
        if isinstance(inner, TimeoutError):
            return DownloadTimeout("the site did not answer in time")
        if isinstance(inner, HTTPError):
            return VideoUnavailable(f"the site answered HTTP {inner.status}")
        if isinstance(inner, TransportError | OSError):
            return VideoUnavailable(f"the site could not be reached: {_clean(str(inner))}")
    message = _clean(str(exc))
    if _UNAVAILABLE.search(message):
        return VideoUnavailable(message)
    return ExtractionError(message or "yt-dlp could not extract audio from the page")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: ``__cause__``, ``__context__``, yt-dlp's ``cause``
    and ``exc_info``."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested: list[object] = [current.__cause__, current.__context__,
                                getattr(current, "cause", None)]
        info = getattr(current, "exc_info", None)
        if isinstance(info, tuple) and len(info) > 1:
            nested.append(info[1])
        todo.extend(n for n in nested if isinstance(n, BaseException))


def _clean(message: str) -> str:
    message = re.sub(r"\x1b\[[0-9;]*m", "", message)  # yt-dlp colours its messages
    message = re.sub(r"^ERROR:\s*", "", message)
    return message.strip()[:500]


def _text(value: object) -> str | None:
    return str(value) if isinstance(value, str) and value else None


class _Logger:
    """yt-dlp's messages go to our log, never to stdout."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        log.info("yt-dlp: %s", _clean(msg))

    def error(self, msg: str) -> None:
        log.info("yt-dlp: %s", _clean(msg))


def _new_ydl(http: GuardedHttp, max_bytes: int) -> Any:
    from yt_dlp import YoutubeDL
    from yt_dlp.networking.common import RequestHandler, Response
    from yt_dlp.networking.exceptions import HTTPError, RequestError, TransportError

    class GuardedRH(RequestHandler):  # type: ignore[misc]
        """yt-dlp's only request handler: sends through the guarded client."""

        _SUPPORTED_URL_SCHEMES = ("http", "https")
        _SUPPORTED_PROXY_SCHEMES = ()  # any proxy makes the request unsupported: fail closed
        _SUPPORTED_FEATURES = ()

        def __init__(self, *, client: GuardedHttp, max_bytes: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.client = client
            self.max_bytes = max_bytes

        def _check_extensions(self, extensions: dict[str, Any]) -> None:
            super()._check_extensions(extensions)
            for handled in ("timeout", "cookiejar", "legacy_ssl", "keep_header_casing"):
                extensions.pop(handled, None)
            if not extensions.get("impersonate"):  # asking to impersonate stays unsupported
                extensions.pop("impersonate", None)

        def _send(self, request: Any) -> Any:
            try:
                opened = self.client.open(
                    request.url, headers=self._get_headers(request), method=request.method,
                    body=request.data if isinstance(request.data, bytes) else None,
                    timeout_s=self._calculate_timeout(request),
                    cookies=self._get_cookiejar(request))
            except TonewireError as exc:
                raise RequestError(exc.message, cause=exc) from exc
            except OSError as exc:
                raise TransportError(cause=exc) from exc
            response = Response(fp=BoundedBody(opened, self.client, self.max_bytes),
                                url=opened.url,
                                headers=dict(opened.response.getheaders()),
                                status=opened.response.status,
                                reason=opened.response.reason)
            if not 200 <= response.status < 300:
                raise HTTPError(response)
            return response

    class GuardedYoutubeDL(YoutubeDL):  # type: ignore[misc]
        def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
            # Whatever handlers yt-dlp registered, ours is the only one used.
            return super().build_request_director(
                [functools.partial(GuardedRH, client=http, max_bytes=max_bytes)],
                preferences)

    params: dict[str, Any] = {
        "format": FORMAT,
        "noplaylist": True,
        "playlist_items": "1",
        "allowed_extractors": ["youtube", "generic"],
        "socket_timeout": http.timeout_s,
        "proxy": "",  # no proxy from the environment either: the guard must see the peer
        "cachedir": False,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "simulate": True,
        "extractor_retries": 0,
        "logger": _Logger(),
    }
    return GuardedYoutubeDL(params)
