"""``tonewire worker`` processes for scale-out tests, beside :func:`server.start_server`.

:func:`start_worker` runs the real CLI in a subprocess with the given settings, waits for its
"ready" log line, and stops it on exit (SIGTERM, then SIGKILL), like the servers.
:meth:`RunningWorker.kill` is ``kill -9``; :meth:`RunningWorker.jobs_started` reads the job ids
it picked up from its log (arq logs ``→ <job id>:tonewire_run_job`` for each).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server import POLL_S, STARTUP_TIMEOUT_S, _env_name, _stop, children_of

_STARTED = re.compile(r"→ ([A-Za-z0-9_-]+):tonewire_run_job")


@dataclass
class RunningWorker:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    children_seen: set[int] = field(default_factory=set)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def jobs_started(self) -> list[str]:
        return _STARTED.findall(self.output())

    def kill(self) -> None:
        """``kill -9`` the worker; its analysis processes follow it (they watch their parent)."""
        self.children_seen |= children_of(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@contextlib.contextmanager
def start_worker(tmp_path: Path, name: str, **env: Any) -> Iterator[RunningWorker]:
    data_dir = tmp_path / f"worker-{name}"
    data_dir.mkdir(parents=True, exist_ok=True)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("TONEWIRE_")}
    child_env.update({_env_name(k): str(v) for k, v in env.items()})
    child_env["TONEWIRE_DATA_DIR"] = str(data_dir)
    child_env["PYTHONUNBUFFERED"] = "1"
    log_path = tmp_path / f"worker-{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tonewire.cli", "worker"], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env, cwd=tmp_path)
    worker = RunningWorker(name, proc, log_path)
    failed = False
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while "tonewire worker ready" not in worker.output():
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start: {worker.output()[-3000:]}")
            time.sleep(POLL_S)
        worker.children_seen |= children_of(proc.pid)
        yield worker
    except BaseException:
        failed = True
        raise
    finally:
        _stop(proc, children_of(proc.pid) | worker.children_seen)
        if failed:
            sys.stderr.write(f"\n----- worker {name} -----\n{worker.output()[-20000:]}\n")
