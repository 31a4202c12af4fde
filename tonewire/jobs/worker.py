"""The worker process: runs analyses and streams their results back through a pipe.

Each message is a small tuple; segments are encoded to their JSON shape here, so the server's
event loop never touches DSP or per-segment encoding. The pipe gives natural backpressure.

Messages: ``("started", info)``, ``("progress", fraction | None, seconds)``,
``("segment", index, segment_json)``, ``("finished", summary_json)``,
``("error", code, message)``, then always ``("done",)``. A task with a ``url`` is fetched to
its ``path`` first: ``("fetching",)``, ``("source", metadata)``, ``("download", bytes,
total | None)``. Fetching here, not in the server, keeps its blocking I/O off the event loop,
and cancelling the job stops it by killing the process like any analysis.
"""

from __future__ import annotations

import os

# One thread of BLAS/FFT per worker: parallelism comes from processes, not oversubscription.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import contextlib  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from typing import Any  # noqa: E402

log = logging.getLogger(__name__)

JOB_WORKER_NICENESS = 10


def run_task(conn: Connection, task: dict[str, Any]) -> None:
    from tonewire.analysis.options import AnalysisOptions
    from tonewire.analysis.results import Segment
    from tonewire.errors import TonewireError
    from tonewire.pipeline import Finished, Progress, Started, analyze_file
    from tonewire.report.json import segment_json, summary_json

    try:
        options = AnalysisOptions(**task["options"])
        if task.get("url"):
            _fetch(conn, task)
        for ev in analyze_file(task["path"], options, max_duration_s=task["max_duration_s"],
                               name=task.get("name")):
            if isinstance(ev, Segment):
                conn.send(("segment", ev.index, segment_json(ev)))
            elif isinstance(ev, Progress):
                conn.send(("progress", ev.fraction, ev.decoded_seconds))
            elif isinstance(ev, Started):
                conn.send(("started", {"title": ev.info.title,
                                       "declared_seconds": ev.info.declared_seconds,
                                       "format": ev.info.format, "codec": ev.info.codec}))
            elif isinstance(ev, Finished):
                conn.send(("finished", summary_json(ev.summary)))
    except TonewireError as exc:
        conn.send(("error", exc.code, exc.message))
    except Exception as exc:  # a bug, not bad input: report it, keep the worker alive
        log.exception("analysis failed")
        conn.send(("error", "INTERNAL_ERROR", f"analysis failed: {type(exc).__name__}"))
    conn.send(("done",))


def _fetch(conn: Connection, task: dict[str, Any]) -> None:
    """Download a URL task's media to its ``path``, reporting as it goes."""
    from pathlib import Path

    from tonewire.audio.fetch import FetchSettings, Resolved, fetch
    from tonewire.audio.urls import parse_source_url

    conn.send(("fetching",))
    settings = FetchSettings.from_dict(task["fetch"])
    for ev in fetch(parse_source_url(task["url"]), Path(task["path"]), settings):
        if isinstance(ev, Resolved):
            info = ev.info
            conn.send(("source", {"title": info.title, "duration": info.duration,
                                  "thumbnail": info.thumbnail, "ext": info.ext}))
            if info.title:
                task["name"] = info.title  # what decode errors call it
        else:
            conn.send(("download", ev.done, ev.total))


def worker_main(conn: Connection, parent: int, heap_retain_bytes: int = 0) -> None:
    """Loop: receive a task (``None`` stops), run it, stream its messages. ``parent`` is the
    server's pid, taken in the server: a slow start may begin after it has already died.
    ``heap_retain_bytes``: see :mod:`tonewire.heap_policy`."""
    from tonewire.worker_process import start_worker_process

    start_worker_process(parent, heap_retain_bytes=heap_retain_bytes)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    # Analysis is throughput; the server's event loop and live windows are latency. When
    # they compete for cores, the loop should win (a job only finishes a little later).
    with contextlib.suppress(OSError):
        os.nice(JOB_WORKER_NICENESS)
    import tonewire.pipeline  # noqa: F401  (warm up: the first task should not pay imports)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        run_task(conn, task)
