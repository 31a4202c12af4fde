"""What the HTTP layer refuses before any work starts: too many creations from one client
(429 ``RATE_LIMITED`` with ``Retry-After``) and too many followers on one stream (503
``TOO_MANY_SUBSCRIBERS``). Built once per app and reached through ``app.state.limits``."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from tonewire.config import Settings
from tonewire.transports.errors import ApiError
from tonewire.transports.ratelimit import RateLimiter, retry_after_header


class RateLimited(ApiError):
    def __init__(self, retry_after_s: float) -> None:
        wait = retry_after_header(retry_after_s)
        super().__init__(429, "RATE_LIMITED",
                         f"too many requests from this address; retry in {wait} s",
                         headers={"Retry-After": wait})


class Limits:
    def __init__(self, settings: Settings, *, followers: Callable[[str], int],
                 on_refused: Callable[[], None] = lambda: None) -> None:
        self.on_refused = on_refused
        self.job_creation = RateLimiter(settings.rate_limit_per_minute)
        self.session_start = RateLimiter(settings.rate_limit_per_minute)
        self.max_followers = settings.max_subscribers_per_stream
        self.followers = followers

    def admit_follower(self, stream: str) -> None:
        """Raise 503 when a stream already has as many followers as it may."""
        if self.followers(stream) >= self.max_followers:
            raise ApiError(503, "TOO_MANY_SUBSCRIBERS",
                           f"this stream already has {self.max_followers} subscribers")

    def follower_room(self, stream: str) -> bool:
        return self.followers(stream) < self.max_followers


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


def _check(limiter: RateLimiter, request: Request) -> None:
    wait = limiter.acquire(client_address(request))
    if wait is not None:
        _limits(request).on_refused()
        raise RateLimited(wait)


async def limit_job_creation(request: Request) -> None:
    """Dependency: one token of the client's job-creation budget."""
    _check(_limits(request).job_creation, request)


async def limit_session_start(request: Request) -> None:
    """Dependency: one token of the client's session-start budget."""
    _check(_limits(request).session_start, request)

