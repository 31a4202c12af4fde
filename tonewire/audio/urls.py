"""What a URL a client sends means: a YouTube video or another http(s) resource, canonically.

Pure: no network, no DNS. Every YouTube form (``watch?v=``, ``youtu.be/``, ``shorts/``,
``embed/``, ``live/``, ``music.``, ``m.``, ``youtube-nocookie.com``, extra parameters) becomes
``https://www.youtube.com/watch?v=ID``, so the same video is the same job (and the same cache
entry) whichever link was pasted. Other http(s) URLs are normalised (scheme and host
lowercased, default port and fragment dropped) and keep their path and query as they are.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

from tonewire.errors import InvalidUrl

MAX_URL_LENGTH: Final = 2048
_SCHEMELESS = re.compile(r"^[\w.-]+(:\d+)?(/|$)")
_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_YOUTUBE_HOSTS: Final = frozenset({
    "youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com",
    "youtube-nocookie.com", "www.youtube-nocookie.com"})
_SHORT_HOSTS: Final = frozenset({"youtu.be", "www.youtu.be"})
# /shorts/ID, /embed/ID, /live/ID, /v/ID, /e/ID: the id is the second path segment.
_PATH_FORMS: Final = frozenset({"shorts", "embed", "live", "v", "e"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class SourceUrl:
    kind: Literal["youtube", "http"]
    canonical: str
    """The URL fetched and the cache's key: one spelling per resource."""
    video_id: str
    """The YouTube video id, or for other URLs a stable id derived from ``canonical``."""
    host: str
    """Host name or address literal (no brackets), for the address guard."""
    port: int


def youtube_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"


def parse_source_url(raw: str) -> SourceUrl:
    """Validate and normalise a URL to fetch. Raises :class:`InvalidUrl` (``INVALID_URL``)."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        raise InvalidUrl("the URL is empty")
    if len(text) > MAX_URL_LENGTH:
        raise InvalidUrl(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise InvalidUrl("the URL contains spaces or control characters")
    if _SCHEMELESS.match(text):
        text = f"https://{text}"  # "youtu.be/ID" as people paste it
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidUrl("only http and https URLs can be fetched")
    if parts.username is not None or parts.password is not None:
        raise InvalidUrl("URLs with credentials (user:password@) are not accepted")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidUrl("the URL has no host")
    try:
        host = host.encode("idna").decode("ascii") if not _is_ip_literal(host) else host
    except UnicodeError:
        raise InvalidUrl(f"{host!r} is not a valid host name") from None
    host = host.lower()
    if host in _YOUTUBE_HOSTS or host in _SHORT_HOSTS:
        video_id = _youtube_id(host, parts.path, parts.query)
        return SourceUrl(kind="youtube", canonical=youtube_url(video_id), video_id=video_id,
                         host="www.youtube.com", port=443)
    effective_port = port or _DEFAULT_PORTS[scheme]
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    canonical = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return SourceUrl(kind="http", canonical=canonical, video_id=digest, host=host,
                     port=effective_port)


def _youtube_id(host: str, path: str, query: str) -> str:
    segments = [s for s in path.split("/") if s]
    candidate: str | None = None
    if host in _SHORT_HOSTS:
        candidate = segments[0] if segments else None
    elif segments[:1] == ["watch"]:
        values = parse_qs(query).get("v")
        candidate = values[0] if values else None
    elif len(segments) >= 2 and segments[0] in _PATH_FORMS:
        candidate = segments[1]
    elif segments[:1] == ["playlist"]:
        raise InvalidUrl("playlists are not supported: link one video")
    if candidate is None:
        raise InvalidUrl("not a YouTube video link (watch?v=, youtu.be/, shorts/, embed/)")
    if not _VIDEO_ID.match(candidate):
        raise InvalidUrl(f"{candidate!r} is not a YouTube video id")
    return candidate


def _is_ip_literal(host: str) -> bool:
    return ":" in host or bool(re.fullmatch(r"[0-9.]+", host))
