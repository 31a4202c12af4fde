"""Command line: ``tonewire serve`` runs the server; ``tonewire worker`` runs jobs from a shared
queue; ``tonewire analyze`` analyses a file."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tonewire import __version__
from tonewire.errors import TonewireError

EXIT_BAD_INPUT = 2


def file_digest(path: Path) -> str:
    """SHA-256 of the file's content, hex: the identity of an analysed file."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _cmd_analyze(args: argparse.Namespace) -> int:
    from tonewire.analysis.results import Segment, TrackSummary
    from tonewire.config import Settings
    from tonewire.pipeline import Finished, Progress, Started, analyze_file
    from tonewire.report.json import analysis_json, segment_json
    from tonewire.report.progress import ProgressBar
    from tonewire.report.summary import summary_text

    settings = Settings()
    options = settings.analysis_options()
    if args.segment_seconds is not None:
        from dataclasses import replace

        try:
            options = replace(options, segment_seconds=args.segment_seconds)
        except ValueError as exc:
            raise TonewireError(str(exc), code="INVALID_OPTION") from None
    path = Path(args.path)
    bar = ProgressBar(label=path.name[:40])
    segments: list[Segment] = []
    summary: TrackSummary | None = None
    title = path.stem
    try:
        for event in analyze_file(path, options, max_duration_s=settings.max_duration_s):
            if isinstance(event, Segment):
                segments.append(event)
            elif isinstance(event, Progress):
                bar.update(event.fraction, event.decoded_seconds)
            elif isinstance(event, Started):
                title = event.info.title or path.stem
            elif isinstance(event, Finished):
                summary = event.summary
    finally:
        bar.close()
    if summary is None:  # the generator always finishes unless it raised
        raise TonewireError("analysis ended without a result")
    print(summary_text(summary, title=title))
    if args.json:
        digest = file_digest(path)
        doc = analysis_json(
            analysis_id=digest[:32],
            video={"id": digest[:32], "title": title, "duration": summary.duration,
                   "thumbnailUrl": None},
            segments=(segment_json(s) for s in segments),
            summary=summary,
            analyzed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        _write_json(Path(args.json), doc)
        print(f"wrote {args.json}")
    if args.plot:
        from tonewire.report.plot import plot_analysis

        plot_analysis(segments, summary, title=title, out=Path(args.plot))
        print(f"wrote {args.plot}")
    return 0


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"), allow_nan=False)
    tmp.replace(path)


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    from types import FrameType

    import uvicorn

    from tonewire.app import create_app
    from tonewire.config import Settings
    from tonewire.logs import configure
    from tonewire.transports.ws_protocol import WebSocketProtocol

    settings = Settings()
    if args.no_worker:
        settings.run_jobs = False
    log_config = configure(settings.log_format)
    app = create_app(settings)
    stopping: asyncio.Event = app.state.services.stopping

    class Server(uvicorn.Server):
        """Tells the app at the signal, not after uvicorn has waited for open streams to
        end: SSE and Socket.IO followers are told to reconnect, so the wait is short."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            with contextlib.suppress(RuntimeError):  # no loop yet: nothing to tell
                asyncio.get_running_loop().call_soon_threadsafe(stopping.set)
            super().handle_exit(sig, frame)

    # PCM and JSON events barely compress; per-message deflate costs more CPU than it saves.
    # websockets-sansio, pausing reads at a high-water mark instead of after every frame.
    config = uvicorn.Config(app, host=args.host, port=args.port, ws=WebSocketProtocol,
                            ws_per_message_deflate=False, ws_max_size=settings.max_frame_bytes,
                            log_level="info", log_config=log_config, lifespan="on",
                            timeout_graceful_shutdown=5)
    Server(config).run()
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    import asyncio

    from tonewire.config import Settings
    from tonewire.jobs.node import run_worker
    from tonewire.logs import configure

    settings = Settings()
    configure(settings.log_format)
    asyncio.run(run_worker(settings))
    return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    import asyncio

    from tonewire.streamer import stream_file

    if not Path(args.path).is_file():
        raise TonewireError(f"cannot read {args.path}", code="NOT_FOUND")
    options: dict[str, Any] = {}
    if args.elcor:
        options["elcor"] = True
    try:
        asyncio.run(stream_file(Path(args.path), server=args.server, speed=args.speed,
                                options=options, api_key=args.api_key))
    except OSError as exc:
        raise TonewireError(f"cannot reach {args.server}: {exc}", code="UNREACHABLE") from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tonewire", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tonewire {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    an = sub.add_parser("analyze", help="analyse an audio file and print a summary")
    an.add_argument("path", help="any audio file FFmpeg reads (mp3, wav, flac, ogg, m4a, webm)")
    an.add_argument("--json", metavar="OUT", help="write the full analysis as JSON")
    an.add_argument("--segment-seconds", type=float, metavar="S",
                    help="segment length in seconds (default 1, env TONEWIRE_SEGMENT_SECONDS)")
    an.add_argument("--plot", metavar="OUT.png", help="draw the analysis (needs matplotlib)")
    an.set_defaults(func=_cmd_analyze)
    sv = sub.add_parser("serve", help="run the server (HTTP, SSE, Socket.IO)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--no-worker", action="store_true",
                    help="only serve: jobs run in `tonewire worker` processes (needs "
                         "TONEWIRE_QUEUE_URL=redis://...)")
    sv.set_defaults(func=_cmd_serve)
    wk = sub.add_parser("worker", help="run jobs from the shared queue (TONEWIRE_QUEUE_URL)")
    wk.set_defaults(func=_cmd_worker)
    st = sub.add_parser("stream", help="stream a file into a live session, print events")
    st.add_argument("path", help="any audio file; sent as 100 ms PCM16 frames")
    st.add_argument("--server", default="http://127.0.0.1:8000")
    st.add_argument("--speed", type=float, default=1.0,
                    help="1 = real time, 2 = twice as fast, 0 = as fast as acknowledged")
    st.add_argument("--elcor", action="store_true", help="subtext as a tone prefix")
    # A client's own option (not a server setting), so it is read here, like an argument.
    st.add_argument("--api-key", default=os.environ.get("TONEWIRE_API_KEY"),
                    help="the server's API key (default: env TONEWIRE_API_KEY)")
    st.set_defaults(func=_cmd_stream)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except TonewireError as exc:
        print(f"tonewire: error: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"tonewire: error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
