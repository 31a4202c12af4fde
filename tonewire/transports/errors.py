"""HTTP errors: one JSON shape ``{"code", "message"}`` and the status for each domain code."""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tonewire.errors import TonewireError

STATUS_OF_CODE: Final[dict[str, int]] = {
    "JOB_NOT_FOUND": 404,
    "SESSION_NOT_FOUND": 404,
    "SESSION_LIMIT": 429,
    "JOB_LIMIT": 503,
    "VAD_UNAVAILABLE": 422,
    "NOT_FOUND": 404,
    "JOB_NOT_COMPLETE": 409,
    "UNSUPPORTED_FORMAT": 422,
    "DECODE_ERROR": 422,
    "EMPTY_AUDIO": 422,
    "TOO_LONG": 422,
    "INVALID_URL": 422,
    "URL_NOT_ALLOWED": 403,
}


class ApiError(TonewireError):
    """An error with its HTTP status, raised by adapters."""

    def __init__(self, status: int, code: str, message: str, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.headers = headers


def error_body(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(TonewireError)
    async def _domain_error(_req: Request, exc: TonewireError) -> JSONResponse:
        status = STATUS_OF_CODE.get(exc.code, 400)
        return JSONResponse(error_body(exc.code, exc.message), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        msg = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return JSONResponse(error_body("INVALID_REQUEST", msg), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "INVALID_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
                413: "REQUEST_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"
                }.get(exc.status_code, "HTTP_ERROR")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))
