"""Receive one multipart file upload straight to disk, hashing it, with a hard size limit.

The body is parsed as it arrives (python-multipart's push parser): file bytes go to a
temporary file in the upload directory, never into memory whole, and the upload stops with
413 as soon as it passes the limit, not after the disk has filled.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from tonewire.transports.errors import ApiError

_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")
_MAX_HEADER_BYTES = 8192


@dataclass(frozen=True, slots=True)
class ReceivedFile:
    path: Path
    filename: str
    """The client's name for it, reduced to a base name (no directories)."""
    size: int
    sha256: str


def safe_filename(raw: str) -> str:
    """The last path component of a client-supplied name, without control characters."""
    name = re.split(r"[\\/]", raw)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    return name[:200] or "upload"


async def receive_upload(content_type: str | None, body: AsyncIterator[bytes], *,
                         field: str, directory: Path, max_bytes: int) -> ReceivedFile:
    """Stream the multipart part named ``field`` into ``directory``.

    Raises :class:`ApiError` with ``UNSUPPORTED_MEDIA_TYPE`` (415), ``INVALID_UPLOAD`` (400),
    ``MISSING_FILE`` (422) or ``UPLOAD_TOO_LARGE`` (413).
    """
    ctype, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       "send the file as multipart/form-data with a 'file' field")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".upload-{secrets.token_hex(8)}.part"
    state = _PartState(field=field.encode())
    digest = hashlib.sha256()
    size = 0
    out = tmp.open("wb")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal size
        if state.current_is_target:
            chunk = data[start:end]
            size += len(chunk)
            if size > max_bytes:
                raise _TooLarge
            digest.update(chunk)
            out.write(chunk)

    parser = MultipartParser(boundary, callbacks={
        "on_part_begin": state.begin, "on_header_field": state.header_field,
        "on_header_value": state.header_value, "on_header_end": state.header_end,
        "on_headers_finished": state.headers_finished, "on_part_data": on_part_data,
        "on_part_end": state.part_end,
    })
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
        if parser.state != MultipartState.END:  # truncated: no closing boundary
            raise _BadPart("the body ends before the closing boundary")
    except _TooLarge:
        out.close()
        tmp.unlink(missing_ok=True)
        raise ApiError(413, "UPLOAD_TOO_LARGE",
                       f"the upload is larger than the {max_bytes} byte limit") from None
    except (MultipartParseError, _BadPart) as exc:
        out.close()
        tmp.unlink(missing_ok=True)
        raise ApiError(400, "INVALID_UPLOAD", f"malformed multipart body: {exc}") from None
    except BaseException:
        out.close()
        tmp.unlink(missing_ok=True)
        raise
    out.close()
    if not state.found:
        tmp.unlink(missing_ok=True)
        raise ApiError(422, "MISSING_FILE", f"no file in the '{field}' field")
    suffix = Path(state.filename).suffix.lower()
    path = tmp.with_name(f"{tmp.stem}{suffix if _SAFE_SUFFIX.match(suffix) else ''}")
    os.replace(tmp, path)
    return ReceivedFile(path=path, filename=state.filename, size=size,
                        sha256=digest.hexdigest())


class _TooLarge(Exception):
    pass


class _BadPart(Exception):
    pass


class _PartState:
    """Tracks which part the parser is in and whether it is the file we want."""

    def __init__(self, *, field: bytes) -> None:
        self.field = field
        self.found = False
        self.filename = "upload"
        self.current_is_target = False
        self._headers: dict[bytes, bytes] = {}
        self._name = b""
        self._value = b""
        self._header_bytes = 0

    def begin(self) -> None:
        self._headers = {}
        self._header_bytes = 0
        self.current_is_target = False

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._grow(end - start)
        self._name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._grow(end - start)
        self._value += data[start:end]

    def _grow(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > _MAX_HEADER_BYTES:
            raise _BadPart("part headers too large")

    def header_end(self) -> None:
        self._headers[self._name.strip().lower()] = self._value.strip()
        self._name, self._value = b"", b""

    def headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if params.get(b"name") == self.field and b"filename" in params and not self.found:
            self.current_is_target = True
            self.found = True
            raw = params[b"filename"].decode("utf-8", errors="replace")
            self.filename = safe_filename(raw)

    def part_end(self) -> None:
        self.current_is_target = False
