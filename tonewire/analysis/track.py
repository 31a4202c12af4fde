"""Streaming per-segment analysis of one track: feed blocks, get segments, finish for the summary.

Work happens in two stages, both vectorised over every segment that is ready:

1. As soon as a segment's samples (plus half an FFT window) have arrived: one STFT over the
   run of new frames, then band levels, spectral shape, chroma and onset strength as matrix
   products and ``reduceat`` aggregates; RMS, peak and zero crossings from the samples;
   loudness from the K-weighted meter.
2. Once 4 s of context after a segment exists (or the track has ended): local tempo and beat
   strength (onset autocorrelation over 8 s), brainwave shares (envelope modulation over 4 s),
   local mode, emotion and region activations. Then the segment is yielded.

So a segment comes out after about five seconds of *audio* has been decoded, which for a file
is a few milliseconds. State is bounded: a block of samples, compact per-segment feature rows
and 43 onset values per second of audio.
"""

from __future__ import annotations

import itertools
import math
from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sp_fft

from tonewire.analysis import emotion as emo
from tonewire.analysis import filterbanks as fb
from tonewire.analysis import loudness as ld
from tonewire.analysis import modulation as mod
from tonewire.analysis import regions as reg
from tonewire.analysis import rhythm, spectral, tonality
from tonewire.analysis import sections as sec
from tonewire.analysis.columns import Columns, Growable
from tonewire.analysis.options import AnalysisOptions
from tonewire.analysis.results import (
    NO_EMOTION,
    Emotion,
    Section,
    Segment,
    Tempo,
    TrackSummary,
)

TEMPO_WINDOW_S: Final = 8.0
BRAINWAVE_WINDOW_S: Final = 4.0
KEY_WINDOW_S: Final = 8.0
LOOKAHEAD_S: Final = TEMPO_WINDOW_S / 2
RECURRENCE_MIN_LAG_S: Final = 8.0
RECURRENCE_HISTORY_S: Final = 600.0
SECTION_WINDOW_S: Final = 8.0
BAND_FLOOR_DB: Final = -80.0
OVERALL_EVIDENCE_S: Final = 10.0
_AES17: Final = 10.0 * math.log10(2.0)  # dB: a full-scale sine reads 0 dBFS
_EPS: Final = 1e-12


def _db(ms: np.ndarray) -> np.ndarray:
    """Mean square to dBFS (AES17: full-scale sine = 0), floored."""
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(ms) + _AES17
    floored: np.ndarray = np.maximum(out, ld.LEVEL_FLOOR_DB)
    return floored


class TrackAnalyzer:
    """Feed float32 blocks ``[shape=(channels, n)]`` in order; collect segments; then finish."""

    def __init__(self, options: AnalysisOptions | None = None, *, channels: int = 1) -> None:
        self.opt = opt = options or AnalysisOptions()
        self.sr = opt.sample_rate
        self.seg = opt.segment_samples
        self.seg_s = self.seg / self.sr
        self.hop = opt.hop_length
        self.n_fft = opt.n_fft
        self.half = self.n_fft // 2
        self.frame_rate = self.sr / self.hop
        self.channels = channels
        self._window = np.hanning(self.n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
        # |X|^2 times this is the mean square each bin contributes (Parseval, window-corrected).
        self._ms_scale = 2.0 / (self.n_fft**2 * float(np.mean(self._window.astype(np.float64)
                                                                 ** 2)))
        self._freqs = fb.fft_frequencies(sr=self.sr, n_fft=self.n_fft)
        self._summaries = np.hstack((fb.band_matrix(sr=self.sr, n_fft=self.n_fft),
                                     fb.mel_matrix(sr=self.sr, n_fft=self.n_fft)))
        # Samples: buf[0] is absolute sample _buf_start; it starts with half a window of zeros.
        self._buf = np.zeros(self.half, dtype=np.float32)
        self._buf_start = -self.half
        self._n_in = 0
        self._done1 = 0  # segments through stage 1
        self._done2 = 0  # segments yielded
        self._prev_mel: np.ndarray | None = None
        self._onsets = Growable(dtype=np.float32)
        self._meter = ld.LoudnessMeter(sr=self.sr, channels=channels)
        self._env_dec = mod.envelope_decimation(self.sr)
        self._env_rate = self.sr / self._env_dec
        self._env_carry = np.zeros(0, dtype=np.float32)
        self._env = np.zeros(0, dtype=np.float64)
        self._env_start = 0  # envelope index of self._env[0]
        self.rows = Columns()  # stage-1 feature rows, one per segment
        self._valence: list[np.ndarray] = []
        self._arousal: list[np.ndarray] = []
        self._reliability: list[np.ndarray] = []
        self._tempo_local: list[np.ndarray] = []
        self._acf_sum = np.zeros(math.ceil(60.0 * self.frame_rate / rhythm.MIN_BPM) + 3)
        self._acf_n = 0
        self._finished = False

    # -- public API --------------------------------------------------------------------------
    @property
    def samples_in(self) -> int:
        return self._n_in

    def feed(self, block: np.ndarray) -> list[Segment]:
        """Add the next block of audio; returns the segments it completed (maybe none)."""
        if self._finished:
            raise RuntimeError("analyzer already finished")
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[None, :]
        if block.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {block.shape[0]}")
        if block.shape[1] == 0:
            return []
        if not np.isfinite(block).all():  # NaN or inf would poison every aggregate: silence
            block = np.where(np.isfinite(block), block, np.float32(0.0))
        self._meter.feed(block)
        if self.channels == 1:
            mono = block[0]
        elif self.channels == 2:  # elementwise: a mean over axis 0 is a strided reduction
            mono = (block[0] + block[1]) * np.float32(0.5)
        else:
            mono = block.mean(axis=0, dtype=np.float32)
        self._buf = np.concatenate((self._buf, mono))
        self._n_in += mono.size
        self._feed_envelope(mono)
        ready = (self._n_in - self.half) // self.seg
        if ready > self._done1:
            self._stage1(ready, final=False)
        return self._stage2(final=False)

    def finish(self) -> tuple[list[Segment], TrackSummary]:
        """Flush the last (possibly partial) segment; return it with the track summary."""
        if self._finished:
            raise RuntimeError("analyzer already finished")
        self._finished = True
        self._meter.finish()
        total = math.ceil(self._n_in / self.seg)
        self._buf = np.concatenate((self._buf, np.zeros(self.n_fft, dtype=np.float32)))
        if total > self._done1:
            self._stage1(total, final=True)
        segments = self._stage2(final=True)
        return segments, self._summary()

    # -- stage 1: spectral and level features ------------------------------------------------
    def _feed_envelope(self, mono: np.ndarray) -> None:
        x = np.concatenate((self._env_carry, mono)) if self._env_carry.size else mono
        n = (x.size // self._env_dec) * self._env_dec
        if n:
            self._env = np.concatenate((self._env, mod.rms_envelope(x[:n],
                                                                    decimation=self._env_dec)))
        self._env_carry = x[n:].copy()
        # Keep only what the brainwave windows of unfinished segments can still need.
        keep_from = int((self._done2 * self.seg_s - BRAINWAVE_WINDOW_S) * self._env_rate) - 1
        drop = keep_from - self._env_start
        if drop > 4096:
            self._env = self._env[drop:]
            self._env_start += drop

    def _stage1(self, i1: int, *, final: bool) -> None:
        i0, seg, hop = self._done1, self.seg, self.hop
        end = min(i1 * seg, self._n_in)
        bounds = np.minimum(np.arange(i0, i1 + 1) * seg, end)  # sample boundaries, absolute
        k0 = -(-bounds[0] // hop)
        k1 = -(-end // hop)
        centres = np.arange(k0, k1) * hop
        # Frame k covers [k*hop - half, k*hop + half); buf starts at i0*seg - half.
        offsets = centres - self.half - self._buf_start
        frames = sliding_window_view(self._buf, self.n_fft)[offsets]
        spec = sp_fft.rfft(frames * self._window, axis=1)
        power = np.square(spec.real)
        power += np.square(spec.imag)
        power *= np.float32(self._ms_scale)

        # Per-segment frame ranges; a tail shorter than one hop borrows its nearest frame.
        first = np.searchsorted(centres, bounds[:-1], side="left")
        first = np.minimum(first, max(len(centres) - 1, 0))
        counts = np.diff(np.append(first, len(centres))).clip(min=1)

        def seg_mean(x: np.ndarray) -> np.ndarray:
            out: np.ndarray = np.add.reduceat(x, first, axis=0) / counts.reshape(
                (-1,) + (1,) * (x.ndim - 1))
            return out

        # Frame-level work is limited to what needs frames (band and mel sums, one matrix
        # product); spectral shape and chroma come from each segment's mean power spectrum.
        sums = power @ self._summaries
        band_ms = seg_mean(sums[:, :5])
        mel = sums[:, 5:]
        mean_pow = seg_mean(power).astype(np.float64)
        shape = spectral.shape_features(mean_pow, freqs=self._freqs)
        chroma = fb.peak_chroma(mean_pow, sr=self.sr, n_fft=self.n_fft)
        flux = rhythm.onset_strength(mel, previous=self._prev_mel)
        if mel.shape[0]:
            self._prev_mel = mel[-1]
        self._onsets.extend(flux)
        onset_mean = seg_mean(flux)

        # Time-domain measures over each segment's own samples.
        core = self._buf[self.half : self.half + (end - bounds[0])]
        rel = bounds[:-1] - bounds[0]
        lengths = np.diff(bounds).clip(min=1)
        ms = np.add.reduceat(np.square(core, dtype=np.float64), rel) / lengths
        peak = np.maximum.reduceat(np.abs(core), rel)
        crossings = np.zeros(core.size, dtype=np.float64)
        if core.size > 1:
            crossings[1:] = np.signbit(core[1:]) != np.signbit(core[:-1])
        zcr = np.add.reduceat(crossings, rel) / lengths

        starts_s = bounds[:-1] / self.sr
        ends_s = bounds[1:] / self.sr
        lufs_st = self._meter.window_lufs(ends_s, window_seconds=3.0)
        lufs_seg = self._meter.window_lufs(ends_s, window_seconds=self.seg_s)
        self.rows.append(
            start=starts_s, end=ends_s, ms=ms, peak=peak.astype(np.float64), zcr=zcr,
            band_ms=band_ms.astype(np.float64), centroid=shape.centroid_hz,
            rolloff=shape.rolloff_hz, flatness=shape.flatness, chroma=chroma,
            lufs_st=lufs_st, lufs=lufs_seg, onset_mean=onset_mean.astype(np.float64),
        )
        self._done1 = i1
        # Drop samples no later frame needs: keep from the next segment start minus half.
        keep_from = min(i1 * seg, self._n_in) - self.half if not final else 0
        if not final:
            drop = keep_from - self._buf_start
            self._buf = self._buf[drop:]
            self._buf_start = keep_from

    # -- stage 2: context features, interpretation, output ----------------------------------
    def _onset(self) -> np.ndarray:
        return self._onsets.view()

    def _stage2(self, *, final: bool) -> list[Segment]:
        e0 = self._done2
        if final:
            e1 = self._done1
        else:
            ahead = math.ceil(LOOKAHEAD_S / self.seg_s)
            e1 = max(e0, self._done1 - ahead)
        if e1 <= e0:
            return []
        rows = self.rows
        idx = np.arange(e0, e1)
        start, end = rows.get("start")[idx], rows.get("end")[idx]
        centre = 0.5 * (start + end)
        ms = rows.get("ms")[idx]
        rms_db = _db(ms)
        silent = rms_db < self.opt.silence_dbfs
        lufs = rows.get("lufs")[idx]
        lufs_st = rows.get("lufs_st")[idx]

        # Local tempo and pulse over 8 s of onset envelope around each segment.
        onset = self._onset()
        tempo_bpm, periodicity = self._local_tempo(onset, centre)
        # Brainwaves over 4 s of amplitude envelope.
        waves = self._brainwaves(centre)
        # Local key context: chroma summed over 8 s around each segment.
        chroma_all = rows.get("chroma")
        half_k = max(1, round(KEY_WINDOW_S / 2 / self.seg_s))
        # Cumulative sums over the rows these windows (and the recurrence history) can reach:
        # `base` keeps the work bounded however long the track has run.
        hist = math.ceil(RECURRENCE_HISTORY_S / self.seg_s)
        base = max(0, e0 - hist - half_k)
        csum = np.concatenate((np.zeros((1, 12)), np.cumsum(chroma_all[base:], axis=0)))
        lo = np.clip(idx - half_k, 0, None)
        hi = np.clip(idx + half_k + 1, None, chroma_all.shape[0])
        local_chroma = csum[hi - base] - csum[lo - base]
        corr = tonality.key_correlations(local_chroma)
        mode_score = corr[:, :12].max(axis=1) - corr[:, 12:].max(axis=1)
        clarity = np.clip(corr.max(axis=1), 0.0, 1.0) * (local_chroma.sum(axis=1) > 0)

        flatness = rows.get("flatness")[idx]
        inputs = emo.EmotionInputs(
            lufs=lufs_st, tempo_bpm=tempo_bpm, periodicity=periodicity,
            onset_density=rows.get("onset_mean")[idx] / np.maximum(np.sqrt(ms), 1e-9),
            centroid_hz=rows.get("centroid")[idx],
            flatness=flatness, mode_score=mode_score, tonal_clarity=clarity,
        )
        valence, arousal = emo.valence_arousal(inputs)
        rel = emo.reliability(lufs=lufs_st, tonal_clarity=clarity) * ~silent
        labels, conf = emo.classify(valence, arousal, reliability=rel,
                                    min_confidence=self.opt.min_confidence)
        self._valence.append(np.where(silent, np.nan, valence))
        self._arousal.append(np.where(silent, np.nan, arousal))
        self._reliability.append(rel)
        self._tempo_local.append(tempo_bpm)

        # Region inputs: recent loudness jump, recurrence, harmonic entropy.
        back = max(1, round(4.0 / self.seg_s))
        lbase = max(0, e0 - back)
        lcs = np.concatenate(([0.0], np.cumsum(rows.get("lufs")[lbase:e1])))
        plo = np.clip(idx - back, 0, None)
        prev_mean = np.where(idx > 0, (lcs[idx - lbase] - lcs[plo - lbase])
                             / np.maximum(idx - plo, 1), lufs)
        jump = np.clip(lufs - prev_mean, 0.0, None)
        recurrence = self._recurrence(local_chroma, idx, chroma_all, csum, base, half_k)
        p = local_chroma / np.maximum(local_chroma.sum(axis=1, keepdims=True), _EPS)
        entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1) / math.log(12.0)
        regions = reg.activations(reg.RegionInputs(
            lufs=lufs_st, loudness_jump_lu=jump, valence=valence, arousal=arousal,
            recurrence=recurrence, periodicity=periodicity, tempo_bpm=tempo_bpm,
            chroma_entropy=entropy, flatness=flatness, silent=silent,
        ))

        band_db = _db(rows.get("band_ms")[idx])
        band_scaled = np.clip((band_db - BAND_FLOOR_DB) / -BAND_FLOOR_DB, 0.0, 1.0)
        chroma = chroma_all[idx]
        chroma_norm = chroma / np.maximum(chroma.max(axis=1, keepdims=True), _EPS)
        peak_db = np.maximum(20.0 * np.log10(np.maximum(rows.get("peak")[idx], 1e-12)),
                             ld.LEVEL_FLOOR_DB)
        out = []
        for j, i in enumerate(idx):
            quiet = bool(silent[j])
            emotion = NO_EMOTION if quiet else Emotion(
                primary=labels[j], confidence=_r(conf[j]), valence=_r(valence[j]),
                arousal=_r(arousal[j]))
            bpm = tempo_bpm[j]
            out.append(Segment(
                index=int(i), start=_r(start[j], 6), end=_r(end[j], 6), silent=quiet,
                bands=_tuple5(band_scaled[j]), bands_db=_tuple5(band_db[j], 2),
                rms=_r(math.sqrt(ms[j]), 6), rms_dbfs=_r(rms_db[j], 2),
                peak_dbfs=_r(peak_db[j], 2), lufs=_r(lufs[j], 2),
                lufs_short_term=_r(lufs_st[j], 2),
                centroid_hz=_r(0.0 if quiet else rows.get("centroid")[i], 1),
                rolloff_hz=_r(0.0 if quiet else rows.get("rolloff")[i], 1),
                flatness=_r(0.0 if quiet else flatness[j]),
                zero_crossing_rate=_r(rows.get("zcr")[i], 5),
                tempo_bpm=None if (quiet or not np.isfinite(bpm)) else _r(bpm, 2),
                beat_strength=_r(0.0 if quiet else periodicity[j]),
                onset_strength=_r(rows.get("onset_mean")[i]),
                chroma=tuple(_r(v) for v in (np.zeros(12) if quiet else chroma_norm[j])),
                brainwaves=_tuple5(np.zeros(5) if quiet else waves[j]),
                brain_regions=tuple(_r(v) for v in regions[j]),  # type: ignore[arg-type]
                emotion=emotion,
            ))
        self._done2 = e1
        return out

    def _windows(self, series_len: int, centres: np.ndarray, width: int) -> np.ndarray:
        """Start index of a ``width`` window centred on each position, kept inside the series."""
        starts = np.round(centres).astype(np.int64) - width // 2
        return np.clip(starts, 0, max(series_len - width, 0))

    def _local_tempo(self, onset: np.ndarray, centre_s: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        width = min(round(TEMPO_WINDOW_S * self.frame_rate), onset.size)
        max_lag = math.ceil(60.0 * self.frame_rate / rhythm.MIN_BPM) + 2
        if width < 2 * max_lag // 1.5 or width < 8:
            nan = np.full(centre_s.size, np.nan)
            return nan, np.zeros(centre_s.size)
        starts = self._windows(onset.size, centre_s * self.frame_rate, width)
        wins = sliding_window_view(onset, width)[starts].astype(np.float64)
        acf = rhythm.autocorrelation(wins, max_lag=min(max_lag, width - 3))
        est = rhythm.tempo_from_acf(acf, frame_rate=self.frame_rate)
        if acf.shape[1] == max_lag + 1:
            # The track's tempo comes from the mean of these normalised autocorrelations (a
            # tempogram average): memory O(lags), not a whole-track FFT at the end.
            live = acf[:, 0] > rhythm.MIN_ONSET_VARIANCE
            if live.any():
                self._acf_sum += (acf[live] / acf[live, :1]).sum(axis=0)
                self._acf_n += int(live.sum())
        return est.bpm, est.periodicity

    def _brainwaves(self, centre_s: np.ndarray) -> np.ndarray:
        width = min(round(BRAINWAVE_WINDOW_S * self._env_rate), self._env.size)
        if width < 16:
            return np.zeros((centre_s.size, 5))
        starts = self._windows(self._env.size, centre_s * self._env_rate - self._env_start,
                               width)
        wins = sliding_window_view(self._env, width)[starts]
        return mod.brainwave_shares(wins, env_rate=self._env_rate)

    def _recurrence(self, local_chroma: np.ndarray, idx: np.ndarray, chroma_all: np.ndarray,
                    csum: np.ndarray, base: int, half_k: int) -> np.ndarray:
        """Best cosine similarity of each local chroma with any window >= 8 s earlier."""
        lag = math.ceil(RECURRENCE_MIN_LAG_S / self.seg_s)
        hist = math.ceil(RECURRENCE_HISTORY_S / self.seg_s)
        out = np.zeros(idx.size)
        lo_all = int(max(0, idx[0] - hist))
        hi_all = int(idx[-1] - lag + 1)
        if hi_all <= lo_all:
            return out
        past_idx = np.arange(lo_all, hi_all)
        plo = np.clip(past_idx - half_k, 0, None)
        phi = np.clip(past_idx + half_k + 1, None, chroma_all.shape[0])
        past = csum[phi - base] - csum[plo - base]
        past /= np.maximum(np.linalg.norm(past, axis=1, keepdims=True), _EPS)
        cur = local_chroma / np.maximum(np.linalg.norm(local_chroma, axis=1, keepdims=True),
                                        _EPS)
        sim = cur @ past.T  # (n, history)
        allowed = (past_idx[None, :] <= idx[:, None] - lag) & (
            past_idx[None, :] >= idx[:, None] - hist)
        sim = np.where(allowed, sim, 0.0)
        out = sim.max(axis=1) if sim.size else out
        return np.clip(out, 0.0, 1.0)

    # -- track level ---------------------------------------------------------------------------
    def _summary(self) -> TrackSummary:
        rows = self.rows
        n = self._done1
        duration = self._n_in / self.sr
        edges = fb.effective_band_edges(sr=self.sr)
        ms = rows.get("ms") if n else np.zeros(0)
        silent_mask = _db(ms) < self.opt.silence_dbfs
        subs = self._meter.sub_powers()
        integrated = ld.gated_integrated_lufs(subs)
        lra = ld.loudness_range_lu(subs)
        peak = float(rows.get("peak").max()) if n else 0.0
        peak_db = max(20.0 * math.log10(peak), ld.LEVEL_FLOOR_DB) if peak > 0 else (
            ld.LEVEL_FLOOR_DB)
        all_silent = bool(n == 0 or silent_mask.all())

        onset = self._onset()
        tempo, beats = self._global_tempo(onset, all_silent)
        chroma = rows.get("chroma") if n else np.zeros((0, 12))
        key = tonality.NO_KEY if all_silent else tonality.estimate_key(
            _votes(chroma[~silent_mask]))
        overall = self._overall_emotion(slice(0, n))
        sections = () if all_silent else self._sections(beats, subs, silent_mask)
        return TrackSummary(
            duration=_r(duration, 6), sample_rate=self.sr, segment_seconds=self.seg_s,
            n_segments=n, tempo=tempo, beats=tuple(_r(b, 4) for b in beats), key=key,
            integrated_lufs=None if integrated is None else _r(integrated, 2),
            loudness_range_lu=None if lra is None else _r(lra, 2), peak_dbfs=_r(peak_db, 2),
            overall_emotion=overall, sections=sections, band_edges_hz=edges, silent=all_silent,
        )

    def _global_tempo(self, onset: np.ndarray, silent: bool) -> tuple[Tempo, np.ndarray]:
        none = (Tempo(bpm=None, confidence=0.0), np.zeros(0))
        max_lag = math.ceil(60.0 * self.frame_rate / rhythm.MIN_BPM) + 2
        if silent or onset.size < 3 * max_lag:
            return none
        if self._acf_n:
            acf = (self._acf_sum / self._acf_n)[None, :]
        else:  # shorter than one tempo window: the whole (short) envelope at once
            acf = rhythm.autocorrelation(onset[None, :].astype(np.float64), max_lag=max_lag)
        est = rhythm.tempo_from_acf(acf, frame_rate=self.frame_rate)
        bpm0 = float(est.bpm[0])
        if not np.isfinite(bpm0):
            return none
        period = 60.0 * self.frame_rate / bpm0
        beat_frames = rhythm.track_beats(onset, period=period)
        beat_times = beat_frames / self.frame_rate
        refined = rhythm.bpm_from_beats(beat_times, expected_period_s=60.0 / bpm0)
        bpm = refined if refined is not None else bpm0
        if beat_times.size > 2:
            ioi = np.diff(beat_times)
            consistent = float(np.mean(np.abs(ioi - 60.0 / bpm) <= 0.15 * 60.0 / bpm))
        else:
            consistent = 0.0
        confidence = float(np.clip(est.periodicity[0] * 2.0, 0.0, 1.0)) * consistent
        return Tempo(bpm=_r(bpm, 2), confidence=_r(confidence)), beat_times

    def _overall_emotion(self, span: slice) -> Emotion:
        if not self._valence:
            return NO_EMOTION
        v = np.concatenate(self._valence)[span]
        a = np.concatenate(self._arousal)[span]
        r = np.concatenate(self._reliability)[span]
        ok = np.isfinite(v)
        if not ok.any():
            return NO_EMOTION
        w = np.maximum(r[ok], 1e-6)
        mv, ma = float(np.average(v[ok], weights=w)), float(np.average(a[ok], weights=w))
        # Evidence grows with sounding time: a fraction of a second is not a track's mood.
        sounding_s = float(ok.sum()) * self.seg_s
        rel = float(np.mean(r[ok])) * min(1.0, sounding_s / OVERALL_EVIDENCE_S)
        labels, conf = emo.classify(np.array([mv]), np.array([ma]), reliability=np.array([rel]),
                                    min_confidence=self.opt.min_confidence)
        return Emotion(primary=labels[0], confidence=_r(conf[0]), valence=_r(mv),
                       arousal=_r(ma))

    def _sections(self, beats: np.ndarray, subs: np.ndarray, silent_mask: np.ndarray
                  ) -> tuple[Section, ...]:
        rows, n = self.rows, self._done1
        tempo_local = np.concatenate(self._tempo_local)[:n]
        log_tempo = np.log2(np.where(np.isfinite(tempo_local), tempo_local, np.nan))
        fill = np.nanmedian(log_tempo) if np.isfinite(log_tempo).any() else 0.0
        log_tempo = np.where(np.isfinite(log_tempo), log_tempo, fill)
        chroma = rows.get("chroma")
        chroma_n = chroma / np.maximum(chroma.sum(axis=1, keepdims=True), _EPS)
        feats = np.column_stack([
            rows.get("lufs") / 3.0,
            _db(rows.get("band_ms")) / 6.0,
            chroma_n * 4.0,
            log_tempo * 2.0,
        ])
        window = max(2, round(SECTION_WINDOW_S / self.seg_s))
        cuts = sec.boundaries(feats, window=window, min_gap=window)
        edges = [0, *cuts, n]
        out = []
        starts, ends = rows.get("start"), rows.get("end")
        for a, b in itertools.pairwise(edges):
            t0, t1 = float(starts[a]), float(ends[b - 1])
            in_sec = beats[(beats >= t0) & (beats < t1)]
            local = tempo_local[a:b]
            local = local[np.isfinite(local)]
            bpm = rhythm.bpm_from_beats(in_sec, expected_period_s=60.0 / float(np.median(local))
                                        ) if local.size else None
            if bpm is None and local.size:
                bpm = float(np.median(local))
            sub_lo = round(t0 / self._meter.sub_seconds)
            sub_hi = max(sub_lo + 1, round(t1 / self._meter.sub_seconds))
            lufs = ld.gated_integrated_lufs(subs[sub_lo:sub_hi])
            out.append(Section(
                start=_r(t0, 3), end=_r(t1, 3), tempo_bpm=None if bpm is None else _r(bpm, 2),
                key=tonality.estimate_key(_votes(chroma[a:b][~silent_mask[a:b]])),
                lufs=None if lufs is None else _r(lufs, 2),
                emotion=self._overall_emotion(slice(a, b)),
            ))
        return tuple(out)


def _votes(chroma: np.ndarray) -> np.ndarray:
    """Sum of chroma rows each scaled to unit total: every sounding segment votes equally."""
    totals = chroma.sum(axis=1, keepdims=True)
    out: np.ndarray = (chroma / np.where(totals > 0, totals, 1.0)).sum(axis=0)
    return out


def _r(x: float | np.floating, nd: int = 4) -> float:
    v = float(x)
    return round(v, nd) if math.isfinite(v) else 0.0


def _tuple5(x: np.ndarray, nd: int = 4) -> tuple[float, float, float, float, float]:
    a, b, c, d, e = (_r(v, nd) for v in x)
    return (a, b, c, d, e)
