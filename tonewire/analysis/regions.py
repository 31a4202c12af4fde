"""Seven brain-region "activations": a heuristic mapping of audio features, not a measurement.

Each value is 0..1 and combines features that the music-neuroscience literature associates
with the region's role in listening. They are illustrations for a diagram, chosen so that
they move with the music and read zero for silence:

- auditory cortex: how loud the sound is (short-term LUFS mapped -60 -> 0, -10 -> 1).
- amygdala: negative valence and high arousal, plus sudden loudness jumps (salience, threat).
- hippocampus: recurrence, the best chroma similarity with anything heard 8 s or more before
  (familiarity, memory).
- nucleus accumbens: positive valence with a clear pulse (reward, "chills" when music builds).
- motor cortex: pulse strength times how well the tempo suits movement (100-130 BPM best).
- prefrontal cortex: complexity, harmonic entropy of the chroma and spectral noisiness.
- basal ganglia: beat regularity, the periodicity of the onset envelope (beat-based timing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

REGION_NAMES: Final = ("auditory_cortex", "amygdala", "hippocampus", "nucleus_accumbens",
                       "motor_cortex", "prefrontal_cortex", "basal_ganglia")


@dataclass(frozen=True, slots=True)
class RegionInputs:
    """Per-segment arrays ``(n,)``."""

    lufs: np.ndarray
    loudness_jump_lu: np.ndarray
    """Rise of this segment's loudness over the previous few seconds, LU (>= 0)."""
    valence: np.ndarray
    arousal: np.ndarray
    recurrence: np.ndarray
    periodicity: np.ndarray
    tempo_bpm: np.ndarray
    chroma_entropy: np.ndarray
    """0..1, 1 = all twelve pitch classes equally present."""
    flatness: np.ndarray
    silent: np.ndarray


def activations(x: RegionInputs) -> np.ndarray:
    """``[shape=(n, 7)]`` in :data:`REGION_NAMES` order."""
    level = np.clip((x.lufs + 60.0) / 50.0, 0.0, 1.0)
    present = np.clip((x.lufs + 60.0) / 20.0, 0.0, 1.0)  # fades everything in near silence
    pulse = np.clip(x.periodicity * 2.0, 0.0, 1.0)
    tempo = np.nan_to_num(x.tempo_bpm, nan=0.0)
    movement = np.exp(-0.5 * ((tempo - 115.0) / 35.0) ** 2) * (tempo > 0)
    jump = np.clip(x.loudness_jump_lu / 12.0, 0.0, 1.0)
    out = np.stack([
        level,
        0.45 * np.clip(-x.valence, 0, 1) + 0.3 * np.clip(x.arousal, 0, 1) + 0.25 * jump,
        np.clip(x.recurrence, 0.0, 1.0),
        0.55 * np.clip(x.valence, 0, 1) + 0.25 * pulse + 0.2 * np.clip(x.arousal, 0, 1),
        pulse * movement,
        0.6 * np.clip(x.chroma_entropy, 0, 1) + 0.4 * np.clip(x.flatness * 3.0, 0, 1),
        pulse,
    ], axis=1) * present[:, None]
    result: np.ndarray = np.where(x.silent[:, None], 0.0, np.clip(out, 0.0, 1.0))
    return result
