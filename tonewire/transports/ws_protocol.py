"""uvicorn's websockets-sansio protocol with reads paused at a high-water mark, not per message.

The stock protocol pauses reading the socket after *every* message it queues for the app and
resumes when the app takes it: with one ingest frame per 100 ms per socket, that is two
``epoll_ctl`` system calls (and their Python around them) for every frame, which profiled as
about a fifth of the event loop's time under a few hundred live streams. Here reading pauses
only once :data:`HIGH_WATER` messages wait for the app (and resumes as before, when the app
has taken them all): the app still applies backpressure to a client that floods it, through
a queue bounded by this mark plus what one read carries, and a well-behaved client (one frame
in flight) never pauses anything.
"""

from __future__ import annotations

from typing import Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

HIGH_WATER: Final = 8
"""Messages waiting for the app before reading the socket pauses."""


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def send_receive_event_to_app(self) -> None:
        paused = self.read_paused
        self.read_paused = True  # the base class pauses unless it believes it already has
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = paused
        if not self.read_paused and self.queue.qsize() >= HIGH_WATER:
            self.read_paused = True
            self.transport.pause_reading()
