"""The package is ruff- and mypy-clean: part of the one test command, so CI enforces it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.mark.parametrize("target", ["tonewire", "tests", "bench"])
def test_ruff(target: str) -> None:
    if not (ROOT / target).exists():
        pytest.skip(f"no {target}/")
    res = _run("ruff", "check", target)
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_strict() -> None:
    res = _run("mypy")
    assert res.returncode == 0, res.stdout + res.stderr
