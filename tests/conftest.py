"""Shared fixtures: audio files generated once per test session (about 1.5 s in all).

Every file holds :func:`signals.music_like` (or it beside a quieter 440 Hz tone on the right
channel for the stereo ones) at 44.1 kHz; Opus files are stored at 48 kHz, as Opus requires.
Use the file fixtures directly, or ``audio_files`` / ``audio_file`` to run one test per format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from signals import music_like, sine, write_audio

MUSIC_SECONDS = 20.0
MUSIC_BPM = 120.0
FILE_RATE = 44100


@dataclass(frozen=True)
class AudioFile:
    """A generated file and what it is known to contain."""

    path: Path
    seconds: float
    channels: int
    """Channels in the file (1 or 2)."""
    source_rate: int
    """Rate stored in the file (48000 for Opus)."""

    @property
    def suffix(self) -> str:
        return self.path.suffix


# suffix -> (file stem, channels)
_FORMATS: dict[str, tuple[str, int]] = {
    ".wav": ("music", 1),
    ".mp3": ("music", 1),
    ".flac": ("stereo", 2),
    ".m4a": ("music", 1),
    ".opus": ("music", 1),
    ".ogg": ("stereo", 2),
    ".webm": ("stereo", 2),
}
FORMATS = tuple(_FORMATS)


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="session")
def music_signal() -> np.ndarray:
    """The music-like signal in every file: float32 mono, MUSIC_SECONDS at FILE_RATE."""
    return music_like(MUSIC_SECONDS, bpm=MUSIC_BPM, sr=FILE_RATE, seed=0)


@pytest.fixture(scope="session")
def stereo_signal(music_signal: np.ndarray) -> np.ndarray:
    """``(2, n)``: music on the left, a 440 Hz tone at 0.3 on the right."""
    tone = sine(440.0, MUSIC_SECONDS, FILE_RATE, amp=0.3)
    return np.stack([music_signal, tone])


@pytest.fixture(scope="session")
def audio_files(
    audio_dir: Path, music_signal: np.ndarray, stereo_signal: np.ndarray
) -> dict[str, AudioFile]:
    """One generated file per supported suffix, keyed by suffix (``".mp3"``...)."""
    files: dict[str, AudioFile] = {}
    for suffix, (stem, channels) in _FORMATS.items():
        samples = music_signal if channels == 1 else stereo_signal
        path = write_audio(audio_dir / f"{stem}{suffix}", samples, FILE_RATE)
        rate = 48000 if suffix in (".opus", ".ogg", ".webm") else FILE_RATE
        files[suffix] = AudioFile(path, MUSIC_SECONDS, channels, rate)
    return files


@pytest.fixture(params=FORMATS)
def audio_file(request: pytest.FixtureRequest, audio_files: dict[str, AudioFile]) -> AudioFile:
    """Parametrised over every format in ``audio_files``."""
    return audio_files[request.param]


@pytest.fixture(scope="session")
def music_mp3(audio_files: dict[str, AudioFile]) -> Path:
    """20 s mono music-like mp3 (44.1 kHz, LAME/Xing header)."""
    return audio_files[".mp3"].path


@pytest.fixture(scope="session")
def music_wav(audio_files: dict[str, AudioFile]) -> Path:
    """20 s mono music-like 16-bit WAV at 44.1 kHz."""
    return audio_files[".wav"].path


@pytest.fixture(scope="session")
def stereo_flac(audio_files: dict[str, AudioFile]) -> Path:
    """20 s stereo FLAC: music left, 440 Hz tone right."""
    return audio_files[".flac"].path


@pytest.fixture(scope="session")
def music_opus(audio_files: dict[str, AudioFile]) -> Path:
    """20 s mono Opus in Ogg (.opus, 48 kHz)."""
    return audio_files[".opus"].path


@pytest.fixture(scope="session")
def music_m4a(audio_files: dict[str, AudioFile]) -> Path:
    """20 s mono AAC in MP4 (.m4a) at 44.1 kHz."""
    return audio_files[".m4a"].path


@pytest.fixture(scope="session")
def stereo_webm(audio_files: dict[str, AudioFile]) -> Path:
    """20 s stereo Opus in WebM (48 kHz)."""
    return audio_files[".webm"].path
