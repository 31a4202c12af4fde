"""API keys: who may reach the server when ``TONEWIRE_API_KEYS`` is set.

A key comes as ``Authorization: Bearer KEY`` or, where a browser cannot set headers
(EventSource, WebSocket), as ``?token=KEY``; Socket.IO clients may also send it in their
connect ``auth`` payload (``{"token": KEY}``). Keys are compared as SHA-256 digests in constant
time, so neither their length nor their prefix leaks through timing.

:class:`AccessGate` is pure ASGI and wraps the whole application: HTTP gets 401 with the usual
``{"code", "message"}`` body, a WebSocket handshake gets 401 through the ASGI denial-response
extension (or is closed with 1008 where the server lacks it). Socket.IO is checked by its
connect handler instead, so a refused client gets a proper ``connect_error``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

from tonewire.transports.errors import error_body

UNAUTHORIZED: Final = "UNAUTHORIZED"
_MESSAGE: Final = "an API key is required: Authorization: Bearer KEY, or ?token=KEY"


class ApiKeys:
    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def allows(self, presented: str | None) -> bool:
        """True when keys are off, or ``presented`` is one of them."""
        if not self._digests:
            return True
        if not presented:
            return False
        digest = hashlib.sha256(presented.encode()).digest()
        found = False
        for known in self._digests:  # no early exit: the time taken says nothing
            found |= hmac.compare_digest(digest, known)
        return found


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def query_token(query_string: bytes | str) -> str | None:
    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    for name, value in parse_qsl(text, keep_blank_values=False):
        if name == "token":
            return value
    return None


def presented_key(headers: Mapping[str, str], query_string: bytes | str,
                  auth: Any = None) -> str | None:
    """The key a request carries: header first, then ``?token=``, then a Socket.IO auth dict."""
    token = bearer(headers.get("authorization")) or query_token(query_string)
    if token is None and isinstance(auth, dict) and isinstance(auth.get("token"), str):
        token = auth["token"]
    return token


def _scope_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


class AccessGate:
    """ASGI middleware refusing requests without a valid key (unless the path is public)."""

    def __init__(self, app: Any, keys: ApiKeys, *, public: Callable[[str], bool]) -> None:
        self.app = app
        self.keys = keys
        self.public = public

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (scope["type"] not in ("http", "websocket") or not self.keys.enabled
                or self.public(scope["path"])):
            await self.app(scope, receive, send)
            return
        headers = _scope_headers(scope)
        if scope.get("method") == "OPTIONS" and "access-control-request-method" in headers:
            await self.app(scope, receive, send)  # a CORS preflight never carries credentials
            return
        key = presented_key(headers, scope.get("query_string", b""))
        if self.keys.allows(key):
            await self.app(scope, receive, send)
            return
        body = json.dumps(error_body(UNAUTHORIZED, _MESSAGE)).encode()
        answer = [(b"content-type", b"application/json"),
                  (b"content-length", str(len(body)).encode()),
                  (b"www-authenticate", b'Bearer realm="tonewire"')]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 401, "headers": answer})
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 401,
                        "headers": answer})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})


def public_path(path: str) -> bool:
    """Reachable without a key: the health probe, the page's static shell (it holds no
    data; the page asks for the key), and Socket.IO (its connect handler checks the key)."""
    return (path in ("/", "/health", "/favicon.ico") or path.startswith("/static/")
            or path.startswith("/socket.io/"))
