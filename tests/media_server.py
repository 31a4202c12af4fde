"""A local HTTP server on 127.0.0.1 that plays "the internet" for URL-ingestion tests.

Routes are added per test: a body with headers, a redirect, a 404, a body trickled slowly, or
one sent without ``Content-Length``. Every request is recorded (path, and whether its body was
sent completely), so a test can prove what the tonewire server fetched and what it never did.
:class:`Listener` is a bare listening socket (say on 127.0.0.2) that records whether anything
ever connected to it. Tests never contact any non-loopback host.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    send_length: bool = True
    trickle: tuple[int, float] | None = None
    """Send the body as ``(bytes, seconds)`` steps: this many bytes, then a pause."""


@dataclass
class Hit:
    path: str
    method: str
    finished: bool = False
    """The whole body was written (False: the client hung up, or still sending)."""


class MediaServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # a body without a length ends when the socket closes

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server._serve(self, "GET")

            def do_HEAD(self) -> None:
                server._serve(self, "HEAD")

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.host = host
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="media-server")

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def add(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.url(path)

    def requested(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path.split("?", 1)[0]
        hit = Hit(path=path, method=method)
        with self._lock:
            self.hits.append(hit)
        route = self.routes.get(path)
        if route is None:
            route = Route(status=404, body=b"not found", content_type="text/plain")
        try:
            handler.send_response(route.status)
            handler.send_header("Content-Type", route.content_type)
            if route.send_length:
                handler.send_header("Content-Length", str(len(route.body)))
            for name, value in route.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if method == "HEAD":
                hit.finished = True
                return
            if route.trickle is None:
                handler.wfile.write(route.body)
            else:
                step, pause = route.trickle
                for start in range(0, len(route.body), step):
                    if self._stop.is_set():
                        return
                    handler.wfile.write(route.body[start:start + step])
                    handler.wfile.flush()
                    time.sleep(pause)
            handler.wfile.flush()
            hit.finished = True
        except (BrokenPipeError, ConnectionResetError):
            return

    def __enter__(self) -> MediaServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class Listener:
    """A listening TCP socket that never answers; :meth:`connections` counts who knocked."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self._accepted: list[socket.socket] = []

    def connections(self) -> int:
        with contextlib.suppress(BlockingIOError):
            while True:
                conn, _ = self.sock.accept()
                self._accepted.append(conn)
        return len(self._accepted)

    def close(self) -> None:
        for conn in self._accepted:
            conn.close()
        self.sock.close()


@contextlib.contextmanager
def listener(host: str) -> Iterator[Listener]:
    lis = Listener(host)
    try:
        yield lis
    finally:
        lis.close()


def json_ld_page(*, title: str, duration_s: float, content_url: str,
                 thumbnail: str | None = None) -> bytes:
    """An HTML page describing one audio file the way sites do (schema.org JSON-LD), which
    yt-dlp's generic extractor reads: title, ISO 8601 duration, thumbnail, media URL."""
    import json

    data = {"@context": "https://schema.org", "@type": "AudioObject", "name": title,
            "duration": f"PT{int(duration_s)}S", "contentUrl": content_url}
    if thumbnail:
        data["thumbnailUrl"] = thumbnail
    return (f"<!doctype html><html><head><title>{title}</title>"
            f'<script type="application/ld+json">{json.dumps(data)}</script>'
            f"</head><body><p>{title}</p></body></html>").encode()
