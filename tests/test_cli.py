"""`tonewire analyze` end to end, as a subprocess: output, JSON shape, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import signals as S


def tonewire(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tonewire.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_analyze_prints_a_summary_and_writes_camelcase_json(music_mp3: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    res = tonewire("analyze", str(music_mp3), "--json", str(out))
    assert res.returncode == 0, res.stderr
    assert "tempo" in res.stdout and "key" in res.stdout and "LUFS" in res.stdout
    doc = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert {"id", "video", "overallEmotion", "segments", "analyzedAt"} <= doc.keys()
    assert set(doc["video"]) == {"id", "title", "duration", "thumbnailUrl"}
    seg = doc["segments"][3]
    assert set(seg["frequencies"]) == {"bass", "lowMid", "mid", "highMid", "high"}
    assert set(seg["brainRegions"]) == {"auditoryCortex", "amygdala", "hippocampus",
                                        "nucleusAccumbens", "motorCortex", "prefrontalCortex",
                                        "basalGanglia"}
    assert set(seg["brainwaves"]) == {"delta", "theta", "alpha", "beta", "gamma"}
    assert {"primary", "confidence"} <= seg["emotion"].keys()
    assert seg["startTime"] == 3.0 and seg["endTime"] == 4.0
    assert doc["tempo"]["bpm"] == pytest.approx(120, abs=1)
    assert len(doc["segments"]) == 20


def test_segment_seconds_option(music_wav: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    assert tonewire("analyze", str(music_wav), "--segment-seconds", "2",
                    "--json", str(out)).returncode == 0
    segs = json.loads(out.read_text())["segments"]
    assert [s["endTime"] - s["startTime"] for s in segs] == [2.0] * 10


@pytest.mark.parametrize(("content", "code"), [
    (np.random.default_rng(0).bytes(5000), "UNSUPPORTED_FORMAT"),
    (b"", "EMPTY_AUDIO"),
])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "bad.mp3"
    path.write_bytes(content)
    res = tonewire("analyze", str(path))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tonewire: error: {code}:")
    assert "Traceback" not in res.stderr


def test_missing_file_and_bad_option(tmp_path: Path, music_wav: Path) -> None:
    res = tonewire("analyze", str(tmp_path / "nope.mp3"))
    assert res.returncode == 2 and "NOT_FOUND" in res.stderr
    res = tonewire("analyze", str(music_wav), "--segment-seconds", "0")
    assert res.returncode == 2 and "INVALID_OPTION" in res.stderr


def test_truncated_mp3_is_a_decode_error(tmp_path: Path) -> None:
    full = S.write_audio(tmp_path / "full.mp3", S.music_like(10.0), S.SR)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    res = tonewire("analyze", str(cut))
    assert res.returncode == 2 and "DECODE_ERROR" in res.stderr
