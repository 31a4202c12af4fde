"""Emotion as a point on the valence-arousal plane, named by the nearest of eleven categories.

A heuristic in the tradition of Russell's circumplex and music-emotion research (loud, fast,
bright music reads as high arousal; major mode and brightness as positive valence). It is not
a measurement of what anyone feels. Inputs are standardised against fixed anchors (not
against the track), so a quiet track reads calmer than a loud one:

    arousal = tanh(0.5 z_loudness + 0.25 z_tempo + 0.25 z_onsets + 0.15 z_brightness)
    valence = tanh(0.6 z_mode + 0.2 z_brightness + 0.15 z_tempo - 0.2 z_noisiness)

The label is the category whose centre is nearest. Its confidence is a softmax over negative
squared distances (temperature 0.05), times closeness to that centre (a Gaussian of width
0.3, so a neutral point between categories is not confidently anything), times a reliability
factor that falls for faint audio and for audio without pitched content. Labels below the
confidence floor are withheld, and silence gets no label at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

# Category centres (valence, arousal), each in [-1, 1].
CATEGORIES: Final[dict[str, tuple[float, float]]] = {
    "happy": (0.65, 0.35),
    "uplifting": (0.8, 0.6),
    "excited": (0.45, 0.85),
    "energetic": (0.05, 0.9),
    "angry": (-0.6, 0.8),
    "tense": (-0.35, 0.45),
    "fearful": (-0.75, 0.45),
    "sad": (-0.7, -0.45),
    "melancholic": (-0.35, -0.25),
    "calm": (0.3, -0.5),
    "peaceful": (0.65, -0.75),
}
_NAMES: Final = tuple(CATEGORIES)
_CENTRES: Final = np.array([CATEGORIES[k] for k in _NAMES])
_TEMPERATURE: Final = 0.05
_CLOSENESS_WIDTH: Final = 0.3


@dataclass(frozen=True, slots=True)
class EmotionInputs:
    """Per-segment inputs, arrays of equal shape ``(n,)``. ``tempo_bpm`` may hold NaN."""

    lufs: np.ndarray
    tempo_bpm: np.ndarray
    periodicity: np.ndarray
    onset_density: np.ndarray
    """Mean onset flux relative to the segment's RMS: about 0.15 for steady music."""
    centroid_hz: np.ndarray
    flatness: np.ndarray
    mode_score: np.ndarray
    """Best major minus best minor key correlation."""
    tonal_clarity: np.ndarray
    """0..1: how strongly the chroma fits any key."""


def valence_arousal(x: EmotionInputs) -> tuple[np.ndarray, np.ndarray]:
    z_loud = (x.lufs + 20.0) / 10.0
    z_tempo = np.where(np.isfinite(x.tempo_bpm), (np.nan_to_num(x.tempo_bpm) - 100.0) / 40.0,
                       0.0) * np.clip(x.periodicity * 3.0, 0.0, 1.0)
    z_onsets = (x.onset_density - 0.15) / 0.1
    z_bright = (x.centroid_hz - 1500.0) / 1000.0
    # Only noisiness beyond ordinary music (flatness 0.005-0.05) counts, as harshness.
    z_noise = np.clip((x.flatness - 0.05) / 0.05, 0.0, 3.0)
    z_mode = np.clip(x.mode_score * 4.0, -2.0, 2.0) * x.tonal_clarity
    arousal = np.tanh(0.5 * z_loud + 0.25 * z_tempo + 0.25 * z_onsets + 0.15 * z_bright)
    valence = np.tanh(0.6 * z_mode + 0.2 * z_bright + 0.15 * z_tempo - 0.2 * z_noise)
    return valence, arousal


def reliability(*, lufs: np.ndarray, tonal_clarity: np.ndarray) -> np.ndarray:
    """0..1: faint audio (under -50 LUFS) and atonal audio carry less evidence."""
    level = np.clip((lufs + 50.0) / 20.0, 0.0, 1.0)
    out: np.ndarray = level * (0.6 + 0.4 * np.clip(tonal_clarity, 0.0, 1.0))
    return out


def classify(valence: np.ndarray, arousal: np.ndarray, *, reliability: np.ndarray,
             min_confidence: float) -> tuple[list[str | None], np.ndarray]:
    """Nearest category and its confidence per point; labels under the floor become ``None``."""
    va = np.stack([np.atleast_1d(valence), np.atleast_1d(arousal)], axis=1)
    d2 = ((va[:, None, :] - _CENTRES[None, :, :]) ** 2).sum(axis=2)
    logits = -d2 / _TEMPERATURE
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    best = np.argmax(p, axis=1)
    rows = np.arange(best.size)
    closeness = np.exp(-0.5 * d2[rows, best] / _CLOSENESS_WIDTH**2)
    conf = p[rows, best] * closeness * np.clip(np.atleast_1d(reliability), 0.0, 1.0)
    labels = [(_NAMES[b] if c >= min_confidence else None) for b, c in zip(best, conf,
                                                                            strict=True)]
    return labels, conf
