"""A small blocking HTTP client that only ever connects to addresses the guard checked.

Every request — the first and each redirect hop — resolves its host through
:class:`~tonewire.audio.ssrf.AddressGuard` and connects to one of the addresses it returned
(TLS still verifies the certificate against the host name). No proxy is used, so the peer the
guard judged is the peer we talk to. It runs in worker processes, where blocking I/O is fine.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import io
import socket
import ssl
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin, urlsplit, urlunsplit

from tonewire.audio.ssrf import Address, AddressGuard
from tonewire.errors import DownloadTimeout, DownloadTooLarge, InvalidUrl, VideoUnavailable

MAX_REDIRECTS: Final = 10
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_CHUNK: Final = 64 * 1024


@dataclass
class Opened:
    """A response whose headers have arrived; read its body from ``response``."""

    url: str
    """The final URL, after redirects."""
    response: http.client.HTTPResponse
    connection: http.client.HTTPConnection
    sock: socket.socket | None

    def read(self, size: int, timeout_s: float) -> bytes:
        """Up to ``size`` bytes of the body as soon as any arrive (``b""`` at its end),
        waiting at most ``timeout_s``."""
        if self.sock is not None:
            self.sock.settimeout(timeout_s)
        return self.response.read1(size)

    def close(self) -> None:
        self.response.close()
        self.connection.close()


class BoundedBody(io.RawIOBase):
    """A response body as a file that never reads past the client's deadline nor past
    ``max_bytes`` (what yt-dlp reads pages through: a page that trickles or never ends
    cannot hold a worker or fill its memory)."""

    def __init__(self, opened: Opened, client: GuardedHttp, max_bytes: int) -> None:
        super().__init__()
        self.opened = opened
        self.client = client
        self.max_bytes = max_bytes
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        want = None if size is None or size < 0 else size
        parts: list[bytes] = []
        got = 0
        while want is None or got < want:
            try:
                chunk = self.opened.read(_CHUNK if want is None else min(_CHUNK, want - got),
                                         self.client.remaining())
            except TimeoutError:
                raise DownloadTimeout("the site stopped sending in time") from None
            if not chunk:
                break
            self.count += len(chunk)
            if self.count > self.max_bytes:
                raise DownloadTooLarge(f"a response is larger than the {self.max_bytes} "
                                       "byte limit")
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        if not self.closed:
            self.opened.close()
        super().close()


class GuardedHttp:
    """``open(url)``: a GET (or other method) following redirects, each hop guarded.

    ``deadline`` (``time.monotonic()`` value) bounds the whole exchange: connects and reads
    never wait past it, and past it :class:`DownloadTimeout` is raised.
    """

    def __init__(self, guard: AddressGuard, *, timeout_s: float, deadline: float | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.guard = guard
        self.timeout_s = timeout_s
        self.deadline = deadline
        self._opened: list[Opened] = []
        self.ssl_context = ssl_context or ssl.create_default_context()

    def close_all(self) -> None:
        """Close every response opened so far (yt-dlp leaves some unread and open)."""
        for opened in self._opened:
            opened.close()
        self._opened.clear()

    def remaining(self, timeout_s: float | None = None) -> float:
        """The time one socket operation may take now; raises once the deadline passed."""
        limit = timeout_s or self.timeout_s
        if self.deadline is None:
            return limit
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DownloadTimeout("fetching the URL took longer than the time limit")
        return min(limit, left)

    def open(self, url: str, *, headers: Mapping[str, str] | None = None, method: str = "GET",
             body: bytes | None = None, timeout_s: float | None = None,
             cookies: http.cookiejar.CookieJar | None = None) -> Opened:
        """Send the request; follow up to :data:`MAX_REDIRECTS` redirects. Any status other
        than a redirect is returned as it is (the caller decides what 404 means).

        Raises :class:`~tonewire.errors.UrlNotAllowed` for a refused hop (before connecting),
        :class:`InvalidUrl` for a non-http(s) redirect, ``OSError`` for network failures.
        """
        for _hop in range(MAX_REDIRECTS + 1):
            opened = self._send(url, headers or {}, method, body, timeout_s, cookies)
            status = opened.response.status
            location = opened.response.getheader("Location")
            if status not in _REDIRECTS or not location:
                self._opened.append(opened)
                return opened
            opened.close()
            url = urljoin(url, location)
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, body = "GET", None
        raise VideoUnavailable(f"more than {MAX_REDIRECTS} redirects")

    def _send(self, url: str, headers: Mapping[str, str], method: str, body: bytes | None,
              timeout_s: float | None, cookies: http.cookiejar.CookieJar | None) -> Opened:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise InvalidUrl(f"cannot fetch {url!r}: only http and https URLs")
        host = parts.hostname
        port = parts.port or _DEFAULT_PORTS[scheme]
        addresses = self.guard.resolve(host, port)  # refuses before any connection is made
        timeout = self.remaining(timeout_s)
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = _PinnedHTTPS(host, port, addresses, timeout=timeout, context=self.ssl_context)
        else:
            conn = _PinnedHTTP(host, port, addresses, timeout=timeout)
        target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        send_headers = {k: v for k, v in headers.items() if k.lower() != "host"}
        send_headers["Accept-Encoding"] = "identity"  # bodies are media: read them as they are
        send_headers["Connection"] = "close"  # one request per connection: nothing left open
        request = urllib.request.Request(url, headers=send_headers, method=method)
        if cookies is not None:
            cookies.add_cookie_header(request)
        try:
            conn.request(method, target, body=body, headers=dict(request.header_items()))
            response = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        if cookies is not None:
            cookies.extract_cookies(response, request)
        return Opened(url=url, response=response, connection=conn,
                      sock=getattr(conn, "pinned", None))


def _connect(addresses: list[Address], port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers (all of them checked)."""
    error: OSError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection((str(address), port), timeout=timeout)
        except OSError as exc:
            error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error or OSError("no address to connect to")


class _PinnedHTTP(http.client.HTTPConnection):
    """Plain HTTP to a pre-checked address; the ``Host`` header still names the host."""

    def __init__(self, host: str, port: int, addresses: list[Address], *,
                 timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses
        self.pinned: socket.socket | None = None

    def connect(self) -> None:
        self.sock = self.pinned = _connect(self._addresses, self.port, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to a pre-checked address, verifying the certificate against the host name."""

    def __init__(self, host: str, port: int, addresses: list[Address], *, timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._addresses = addresses
        self._tls = context
        self.pinned: socket.socket | None = None

    def connect(self) -> None:
        sock = _connect(self._addresses, self.port, self.timeout)
        self.sock = self.pinned = self._tls.wrap_socket(sock, server_hostname=self.host)
