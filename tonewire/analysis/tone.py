"""Tone of voice for live sessions: each speech window read against the speaker's own baseline.

A heuristic about prosody (pitch, loudness, speaking rate, pitch movement, pauses), not a
measurement of feelings. Everything is relative to how this person has sounded so far in the
session, because absolute pitch and level say more about the voice and the microphone than
about the moment:

- the **baseline** is an exponential moving average, with a robust spread (mean absolute
  deviation), of four per-window values over the session's speech windows: mean pitch in
  semitones, loudness in dBFS, syllables per second and pitch spread in semitones. The first
  windows are averaged equally (weight ``1/k``); from the ``1/alpha``-th on each window weighs
  ``alpha`` (0.1: the baseline follows the speaker over about ten speech windows);
- each window gets z-scores against the baseline as it was *before* the window, and an
  **arousal** score, the weighted mean of the pitch (0.4), loudness (0.35) and rate (0.25)
  z-scores; **expressiveness** is the pitch-spread z-score;
- the **label**, **affect**, **shift** (with hysteresis), **prosody flags** and **subtext**
  follow from those by the rules in ``docs/speech.md`` (summarised on :class:`ToneReading`).

The tracker's state is a handful of floats: O(1) memory and time per window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

from tonewire.analysis.speech import SpeechFeatures

Label = Literal["calm", "neutral", "animated", "tense", "subdued"]
Affect = Literal["low", "neutral", "high"]
Direction = Literal["rising", "falling", "stable"]

LABELS: Final[dict[str, str]] = {
    "calm": "lower arousal than usual (lower, softer or slower) with ordinary pitch movement",
    "neutral": "close to the speaker's baseline",
    "animated": "higher arousal than usual (higher, louder or faster) with lively pitch movement",
    "tense": "higher arousal than usual with narrowed or flat pitch movement",
    "subdued": "lower arousal than usual with narrowed or flat pitch movement",
}
"""The label set and what each label means."""
AFFECTS: Final[dict[str, str]] = {
    "low": "arousal at least 0.5 baseline spreads below usual",
    "neutral": "arousal within 0.5 spreads of usual",
    "high": "arousal at least 0.5 spreads above usual",
}
"""Arousal level for colouring: three steps, independent of the label's finer split."""
FLAGS: Final[dict[str, str]] = {
    "raised_pitch": "mean pitch >= 1 spread and >= 1 semitone above the baseline",
    "lowered_pitch": "mean pitch >= 1 spread and >= 1 semitone below the baseline",
    "fast": "speaking rate >= 1 spread and >= 0.5 syllable/s above the baseline",
    "slow": "speaking rate >= 1 spread and >= 0.5 syllable/s below the baseline",
    "loud": "loudness >= 1 spread and >= 3 dB above the baseline",
    "quiet": "loudness >= 1 spread and >= 3 dB below the baseline",
    "monotone": "pitch spread under 1 semitone over at least 0.3 s of voice",
    "long_pause": "a pause of at least 0.5 s inside the window",
}
"""Prosody flags. The first six need a warmed-up baseline; the last two are absolute."""
ELCOR_PREFIX: Final[dict[str, str]] = {
    "calm": "[Calmly]",
    "neutral": "[Evenly]",
    "animated": "[Animatedly]",
    "tense": "[Tensely]",
    "subdued": "[Flatly]",
}

# Feature order in the baseline arrays.
_PITCH, _LOUD, _RATE, _RANGE = 0, 1, 2, 3
_AROUSAL_WEIGHTS: Final = (0.4, 0.35, 0.25, 0.0)
# Spreads start at these priors and never fall below the floors (units: semitones, dB,
# syllables/s, semitones), so a steady start does not turn small wobbles into large z-scores.
_PRIOR_SPREAD: Final = (2.0, 4.0, 1.0, 1.0)
_FLOOR_SPREAD: Final = (1.0, 2.0, 0.5, 0.5)
_MIN_DIFF: Final = (1.0, 3.0, 0.5, 0.0)
_MAD_TO_SD: Final = math.sqrt(math.pi / 2.0)
_Z_CLIP: Final = 4.0
# Confidence: sigmoid of the distance to the nearest label boundary, in units of this.
_MARGIN_SCALE: Final = 0.25
# Voiced seconds for full evidence.
_FULL_EVIDENCE_S: Final = 0.4
_AFFECT_THRESHOLD: Final = 0.5


@dataclass(frozen=True, slots=True)
class ToneParams:
    alpha: float = 0.1
    """Weight of each speech window in the baseline once warmed up."""
    smoothing: float = 0.5
    """Weight of the newest window in the recent values compared with the baseline."""
    warmup_windows: int = 3
    """Speech windows before the baseline is trusted (confidence grows to full over them)."""
    label_arousal: float = 0.8
    """|arousal| from which a window is no longer neutral."""
    expressive_split: float = -0.5
    """Expressiveness at or under which high arousal reads tense and low arousal subdued."""
    enter_shift: float = 1.0
    """|arousal| that starts a rising or falling shift..."""
    exit_shift: float = 0.5
    """...and under which it ends (hysteresis: no flicker between the two)."""
    flag_z: float = 1.0
    monotone_semitones: float = 1.0
    long_pause_s: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0 or not 0.0 < self.smoothing <= 1.0:
            raise ValueError("alpha and smoothing must be within (0, 1]")
        if self.warmup_windows < 1:
            raise ValueError("warmup_windows must be >= 1")
        if not 0.0 <= self.exit_shift <= self.enter_shift:
            raise ValueError("need 0 <= exit_shift <= enter_shift")


@dataclass(frozen=True, slots=True)
class ToneReading:
    """The tone of one speech window, relative to the speaker's baseline.

    ``label``: see :data:`LABELS`; ``affect``: see :data:`AFFECTS`. ``confidence`` (0..1) is
    warm-up progress x how far the window sits from the nearest label boundary (0.5 on a
    boundary) x how much voice the window held. ``shift_magnitude`` is ``tanh(|arousal| / 2)``
    (times warm-up progress); ``shift_direction`` changes with hysteresis. ``subtext`` is a
    plain sentence, or with ``elcor`` the bracketed prefix of :data:`ELCOR_PREFIX`.
    """

    label: Label
    confidence: float
    affect: Affect
    arousal: float
    """Weighted z-score of pitch, loudness and rate against the baseline (clipped to +-4)."""
    expressiveness: float
    """z-score of the pitch spread against the baseline."""
    shift_magnitude: float
    shift_direction: Direction
    prosody_flags: tuple[str, ...]
    subtext: str
    warmed_up: bool


class ToneTracker:
    """Per-session tone: feed it each window's :class:`SpeechFeatures`, in order.

    ``update`` returns ``None`` for windows without speech (the baseline does not move) and
    for readings under ``min_confidence`` (the baseline and the shift state still move).
    """

    def __init__(self, *, min_confidence: float = 0.3, elcor: bool = False,
                 params: ToneParams | None = None) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError("min_confidence must be within 0..1")
        self.min_confidence = min_confidence
        self.elcor = elcor
        self.params = params or ToneParams()
        self.reset()

    def reset(self) -> None:
        # Four floats each, in feature order (_PITCH, _LOUD, _RATE, _RANGE). Plain floats, not
        # numpy: a window's arithmetic is a few dozen scalar steps, and numpy's per-call cost
        # on four-element arrays made this a tenth of a live worker's time per window.
        self._mean = [0.0] * 4
        self._recent = [math.nan] * 4
        self._mad = [s / _MAD_TO_SD for s in _PRIOR_SPREAD]
        self._count = [0] * 4
        self._windows = 0
        self._direction: Direction = "stable"

    @property
    def speech_windows(self) -> int:
        """Speech windows seen so far."""
        return self._windows

    @property
    def direction(self) -> Direction:
        """The current shift state."""
        return self._direction

    def update(self, features: SpeechFeatures) -> ToneReading | None:
        """Read one window and fold it into the baseline; ``None`` when there is nothing to say."""
        reading = self.assess(features)
        if reading is None or reading.confidence < self.min_confidence:
            return None
        return reading

    def assess(self, features: SpeechFeatures) -> ToneReading | None:
        """Like :meth:`update` but ignoring ``min_confidence`` (the state advances the same)."""
        if not features.speech:
            return None
        p = self.params
        values = (
            math.nan if features.f0_mean_hz is None else 12.0 * math.log2(
                features.f0_mean_hz / 100.0),
            features.loudness_dbfs,
            math.nan if features.speaking_rate is None else features.speaking_rate,
            math.nan if features.f0_std_semitones is None else features.f0_std_semitones,
        )
        z = [0.0] * 4
        diff = [0.0] * 4
        w_sum = weighted = 0.0
        for i in range(4):
            v, prev = values[i], self._recent[i]
            if not (math.isfinite(v) and self._count[i] > 0):
                continue
            # The window's value, smoothed with the previous windows' (one 1 s window of
            # speech is a noisy sample of prosody), against the baseline.
            recent = (p.smoothing * v + (1.0 - p.smoothing) * prev if math.isfinite(prev)
                      else v)
            spread = max(self._mad[i] * _MAD_TO_SD, _FLOOR_SPREAD[i])
            diff[i] = recent - self._mean[i]
            z[i] = min(max(diff[i] / spread, -_Z_CLIP), _Z_CLIP)
            w_sum += _AROUSAL_WEIGHTS[i]
            weighted += _AROUSAL_WEIGHTS[i] * z[i]
        arousal = weighted / w_sum if w_sum > 0 else 0.0
        expressive = z[_RANGE]
        warm = min(1.0, self._windows / p.warmup_windows)
        warmed_up = warm >= 1.0

        voiced_s = features.voiced_ratio * features.duration_s
        monotone = (features.f0_std_semitones is not None and voiced_s >= 0.3
                    and features.f0_std_semitones < p.monotone_semitones)
        flags = self._flags(z, diff, warmed_up=warmed_up, monotone=monotone,
                            long_pause=features.longest_pause_s >= p.long_pause_s)
        label, margin = self._label(arousal, expressive, monotone=monotone)
        evidence = min(1.0, max(0.25, voiced_s / _FULL_EVIDENCE_S))
        confidence = warm * margin * evidence
        direction = self._shift(arousal) if warmed_up else "stable"
        self._direction = direction
        self._fold(values)

        if self.elcor:
            subtext = ELCOR_PREFIX[label]
        else:
            subtext = _subtext(label, flags, z, warmed_up=warmed_up)
        affect: Affect = ("high" if arousal >= _AFFECT_THRESHOLD else
                          "low" if arousal <= -_AFFECT_THRESHOLD else "neutral")
        return ToneReading(
            label=label, confidence=round(confidence, 4), affect=affect,
            arousal=round(arousal, 4), expressiveness=round(expressive, 4),
            shift_magnitude=round(warm * math.tanh(abs(arousal) / 2.0), 4),
            shift_direction=direction, prosody_flags=flags, subtext=subtext,
            warmed_up=warmed_up)

    # -- rules -----------------------------------------------------------------------------

    def _label(self, arousal: float, expressive: float, *, monotone: bool,
               ) -> tuple[Label, float]:
        """The label and the margin factor (0.5 on a boundary, towards 1 deep inside)."""
        p = self.params
        if abs(arousal) < p.label_arousal:
            return "neutral", _sigmoid(p.label_arousal - abs(arousal))
        margin = _sigmoid(abs(arousal) - p.label_arousal)
        flat = monotone or expressive <= p.expressive_split
        if not monotone:  # a flat voice is flat however the spread compares
            margin *= _sigmoid(abs(expressive - p.expressive_split))
        if arousal > 0:
            return ("tense" if flat else "animated"), margin
        return ("subdued" if flat else "calm"), margin

    def _shift(self, arousal: float) -> Direction:
        p = self.params
        current = self._direction
        if current == "rising" and arousal >= p.exit_shift:
            return "rising"
        if current == "falling" and arousal <= -p.exit_shift:
            return "falling"
        if arousal >= p.enter_shift:
            return "rising"
        if arousal <= -p.enter_shift:
            return "falling"
        return "stable"

    def _flags(self, z: list[float], diff: list[float], *, warmed_up: bool, monotone: bool,
               long_pause: bool) -> tuple[str, ...]:
        out: list[str] = []
        if warmed_up:
            t = self.params.flag_z
            for i, (up, down) in ((_PITCH, ("raised_pitch", "lowered_pitch")),
                                  (_RATE, ("fast", "slow")), (_LOUD, ("loud", "quiet"))):
                if abs(diff[i]) < _MIN_DIFF[i]:
                    continue
                if z[i] >= t:
                    out.append(up)
                elif z[i] <= -t:
                    out.append(down)
        if monotone:
            out.append("monotone")
        if long_pause:
            out.append("long_pause")
        return tuple(out)

    def _fold(self, values: tuple[float, ...]) -> None:
        """Move the baseline towards this window (robust: deviations clipped to 3 spreads)."""
        p = self.params
        for i, v in enumerate(values):
            if not math.isfinite(v):
                continue
            prev = self._recent[i]
            self._recent[i] = (p.smoothing * v + (1.0 - p.smoothing) * prev
                               if math.isfinite(prev) else v)
            self._count[i] += 1
            count = self._count[i]
            weight = max(p.alpha, 1.0 / count)
            spread = max(self._mad[i] * _MAD_TO_SD, _FLOOR_SPREAD[i])
            dev = min(max(v - self._mean[i], -3.0 * spread), 3.0 * spread)
            if count == 1:
                self._mean[i] = v  # the spread learns from the second window on
            else:
                self._mean[i] += weight * dev
                self._mad[i] += weight * (abs(dev) - self._mad[i])
        self._windows += 1


def _sigmoid(distance: float) -> float:
    return 1.0 / (1.0 + math.exp(-distance / _MARGIN_SCALE))


_PHRASES: Final[dict[str, str]] = {
    "fast": "faster", "slow": "more slowly", "loud": "louder", "quiet": "more quietly",
    "raised_pitch": "higher", "lowered_pitch": "lower",
}
_LABEL_PHRASES: Final[dict[str, str]] = {
    "calm": "Speaking calmly", "neutral": "Speaking as usual",
    "animated": "Speaking with animation", "tense": "Sounding tense",
    "subdued": "Sounding subdued",
}
_FLAG_FEATURE: Final[dict[str, int]] = {
    "fast": _RATE, "slow": _RATE, "loud": _LOUD, "quiet": _LOUD,
    "raised_pitch": _PITCH, "lowered_pitch": _PITCH,
}


def _subtext(label: Label, flags: tuple[str, ...], z: list[float], *, warmed_up: bool) -> str:
    """A plain sentence: the strongest departures from usual, else the label in words."""
    relative = sorted((f for f in flags if f in _PHRASES),
                      key=lambda f: -abs(float(z[_FLAG_FEATURE[f]])))
    if relative:
        words = [_PHRASES[f] for f in relative]
        joined = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
        text = f"Speaking {joined} than usual"
    elif not warmed_up:
        text = "Still learning how this voice usually sounds"
    else:
        text = _LABEL_PHRASES[label]
    if "monotone" in flags:
        text += ", in a flat voice"
    if "long_pause" in flags:
        text += ", with a long pause"
    return text
