"""Security headers on every HTTP response, and a strict Content-Security-Policy.

The page is same-origin ES modules with no inline script or style, so ``default-src 'self'``
holds everywhere except the interactive API docs, which load Swagger UI from its CDN.
"""

from __future__ import annotations

from typing import Any, Final

PAGE_CSP: Final = ("default-src 'self'; base-uri 'none'; object-src 'none'; "
                   "frame-ancestors 'none'; form-action 'self'; img-src 'self' data: blob:; "
                   "media-src 'self' blob:; connect-src 'self'")
DOCS_CSP: Final = ("default-src 'self'; base-uri 'none'; object-src 'none'; "
                   "frame-ancestors 'none'; img-src 'self' data: https://fastapi.tiangolo.com; "
                   "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
                   "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net")
_COMMON: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"microphone=(self), camera=(), geolocation=()"),
)
_DOCS_PATHS: Final = ("/docs", "/redoc", "/docs/oauth2-redirect")


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers to ``http.response.start`` (not to streaming
    bodies, which pass through untouched)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (DOCS_CSP if scope["path"] in _DOCS_PATHS else PAGE_CSP).encode()

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _COMMON if k not in present]
                if b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", csp))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
