"""Schemathesis explores the OpenAPI schema of a live server and finds no 5xx.

It runs as its own process (the ``schemathesis`` command, through this interpreter) against
``/openapi.json``, with the ``not_a_server_error`` check: generated, edge-case and stateful
requests to every operation, each answered with anything but a server error. The example
budget and seed are fixed so a run is bounded and repeatable.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from server import RunningServer, start_server

_RUN = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # No URL jobs: generated URLs would send DNS lookups and fetches off this machine.
    with start_server(tmp_path_factory.mktemp("schemathesis"), workers=1,
                      max_upload_bytes=200_000, url_jobs="false") as s:
        yield s


def test_no_operation_answers_with_a_server_error(server: RunningServer,
                                                  tmp_path: Path) -> None:
    pytest.importorskip("schemathesis")
    cmd = [sys.executable, "-c", _RUN, "run", f"{server.url}/openapi.json",
           "--checks", "not_a_server_error", "--max-examples", "25", "--seed", "7",
           "--request-timeout", "30", "--workers", "1", "--no-color"]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=280,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                              "SCHEMATHESIS_HOOKS": ""})
    report = run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert " passed" in run.stdout and "failed" not in run.stdout.split("SUMMARY")[-1], report
    assert server.alive()
    assert " 500 " not in server.output() and "Traceback" not in server.output()
