"""The web page: static ES modules, CSS and the AudioWorklet processor, served as they are.

No build step and nothing fetched from elsewhere: the files under ``static/`` ship inside the
package and are served by the same process as the API, so the page works offline and under a
strict ``Content-Security-Policy: default-src 'self'`` (no inline scripts or styles, no eval).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"


def mount_web(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/static/``.

    Mounted after the API routers, so no API route is shadowed."""

    async def index() -> FileResponse:
        # no-cache: revalidate each load, so an upgraded server never serves an old page.
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


__all__ = ["STATIC_DIR", "mount_web"]
