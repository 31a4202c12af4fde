"""How fast is tonewire's analysis next to decoding alone and next to a typical librosa script?

One run, one 5-minute mp3 (``bench/fixtures.py`` makes it), three measurements side by side:

(a) ``decode``   PyAV alone: open, decode every frame, resample to float32 mono 22050 Hz, flush
                 the resampler, ``to_ndarray`` each chunk (kept: nothing). The honest floor.
(b) ``tonewire`` ``tonewire.pipeline.analyze_file`` consumed to the end (kept: nothing).
    ``reader``   tonewire's ``AudioReader`` alone (the decoding inside (b)), for the split.
(c) ``librosa``  the baseline most people would write: ``librosa.load`` + one global
                 ``beat_track``, then per 1-second chunk an STFT for five band energies plus
                 onset strength, RMS, centroid, rolloff, flatness and zero-crossing rate.

Each measurement runs in a fresh ``python`` subprocess (``--one MODE``), which prints JSON at the
end: wall time, time to first segment, RSS right after its imports and peak RSS
(``ru_maxrss``). One warm-up child per mode is discarded (page cache, numba's on-disk cache),
then ``--repeat`` children per mode are timed, round-robin, and the median is printed. ``--long``
repeats (a), the reader and (b) on a 60-minute mp3 to show whether peak memory grows with
duration. Targets are printed next to the numbers, never asserted.

    python bench/analysis_speed.py [--repeat 3] [--long] [--file some.mp3] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SR = 22050
MODES = ("decode", "reader", "tonewire", "librosa")
LABELS = {
    "decode": "(a) PyAV decode only",
    "reader": "    tonewire AudioReader",
    "tonewire": "(b) tonewire analyze_file",
    "librosa": "(c) librosa baseline",
}
# Targets: printed next to the numbers, never asserted.
MAX_ANALYSIS_OVER_DECODE = 2.0
MIN_SPEEDUP_OVER_LIBROSA = 5.0
MAX_FIRST_SEGMENT_S = 0.100
MAX_PEAK_MIB = 150.0
FLAT_GROWTH_MIB = 10.0  # 5 min -> 60 min peak RSS growth still called "flat"


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _vmhwm_mib() -> float | None:
    """Peak RSS of this process image from /proc (not inherited over exec), for a cross-check."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# -- the three workloads (run inside a child; each imports only what it needs) ----------------
def _setup_decode() -> Callable[[str], dict[str, Any]]:
    import av
    import numpy as np  # noqa: F401  (to_ndarray would import it lazily, inside the timing)

    def run(path: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        first = None
        samples = 0
        with av.open(path) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    samples += out.to_ndarray().shape[1]
                    if first is None:
                        first = time.perf_counter() - t0
            for out in resampler.resample(None):
                samples += out.to_ndarray().shape[1]
        return {"seconds": time.perf_counter() - t0, "first_s": first, "audio_s": samples / SR}

    return run


def _setup_reader() -> Callable[[str], dict[str, Any]]:
    from tonewire.audio.decode import AudioReader

    def run(path: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        first = None
        with AudioReader(path, sample_rate=SR) as reader:
            for _block in reader:
                if first is None:
                    first = time.perf_counter() - t0
            audio_s = reader.decoded_seconds
        return {"seconds": time.perf_counter() - t0, "first_s": first, "audio_s": audio_s}

    return run


def _setup_tonewire() -> Callable[[str], dict[str, Any]]:
    from tonewire.heap_policy import DEFAULT_RETAIN_MB, retain_freed_memory
    from tonewire.pipeline import Finished, Segment, analyze_file

    # As in a job worker (TONEWIRE_HEAP_RETAIN_MB): freed temporaries are reused, not faulted
    # in afresh for every block (on a 5-minute file: 3.4k page faults instead of 61-68k, and
    # 1.05 s instead of 1.25-1.54 s on the development VM).
    # (Not through Settings: importing pydantic would add 15 MiB to the memory measured.)
    retain_freed_memory(int(os.environ.get("TONEWIRE_HEAP_RETAIN_MB", DEFAULT_RETAIN_MB)) << 20)

    def run(path: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        first = None
        segments = 0
        audio_s = 0.0
        for event in analyze_file(path):
            if isinstance(event, Segment):
                segments += 1
                if first is None:
                    first = time.perf_counter() - t0
            elif isinstance(event, Finished):
                audio_s = event.summary.duration
        return {
            "seconds": time.perf_counter() - t0,
            "first_s": first,
            "audio_s": audio_s,
            "segments": segments,
        }

    return run


def _setup_librosa() -> Callable[[str], dict[str, Any]]:
    import warnings

    import librosa
    import numpy as np

    # librosa loads its submodules lazily: touch them here so imports stay out of the timing.
    for fn in (
        librosa.load,
        librosa.stft,
        librosa.beat.beat_track,
        librosa.onset.onset_strength,
        librosa.feature.rms,
        librosa.feature.spectral_centroid,
    ):
        assert callable(fn)

    bands = {
        "bass": (20, 250),
        "low_mid": (250, 500),
        "mid": (500, 2000),
        "high_mid": (2000, 4000),
        "high": (4000, 11025),
    }

    def run(path: str) -> dict[str, Any]:
        warnings.simplefilter("ignore")  # the short last chunk makes librosa warn about n_fft
        t0 = time.perf_counter()
        first = None
        y, sr = librosa.load(path, sr=SR, mono=True)
        load_s = time.perf_counter() - t0
        tempo, beats = librosa.beat.beat_track(y=y, sr=sr)
        beat_s = time.perf_counter() - t0 - load_s
        freqs = librosa.fft_frequencies(sr=sr, n_fft=2048)
        masks = {name: (freqs >= lo) & (freqs <= hi) for name, (lo, hi) in bands.items()}
        rows = []
        for start in range(0, len(y), sr):
            chunk = y[start : start + sr]
            S = np.abs(librosa.stft(chunk))
            row = {name: float(np.mean(S[m] ** 2)) for name, m in masks.items()}
            row["onset"] = float(np.mean(librosa.onset.onset_strength(y=chunk, sr=sr)))
            row["rms"] = float(np.mean(librosa.feature.rms(y=chunk)))
            row["centroid"] = float(np.mean(librosa.feature.spectral_centroid(y=chunk, sr=sr)))
            row["rolloff"] = float(np.mean(librosa.feature.spectral_rolloff(y=chunk, sr=sr)))
            row["flatness"] = float(np.mean(librosa.feature.spectral_flatness(y=chunk)))
            row["zcr"] = float(np.mean(librosa.feature.zero_crossing_rate(chunk)))
            rows.append(row)
            if first is None:
                first = time.perf_counter() - t0
        return {
            "seconds": time.perf_counter() - t0,
            "first_s": first,
            "audio_s": len(y) / sr,
            "segments": len(rows),
            "tempo": float(np.atleast_1d(tempo)[0]),
            "beats": len(beats),
            "load_s": load_s,
            "beat_track_s": beat_s,
        }

    return run


SETUPS = {
    "decode": _setup_decode,
    "reader": _setup_reader,
    "tonewire": _setup_tonewire,
    "librosa": _setup_librosa,
}


def child(mode: str, path: str) -> None:
    t0 = time.perf_counter()
    run = SETUPS[mode]()
    import_s = time.perf_counter() - t0
    baseline = _maxrss_mib()  # peak so far == RSS after imports
    cpu0 = _cpu_s()
    result = run(path)
    result.update(
        mode=mode,
        import_s=import_s,
        cpu_s=_cpu_s() - cpu0,
        baseline_mib=baseline,
        peak_mib=_maxrss_mib(),
        vmhwm_mib=_vmhwm_mib(),
    )
    print(json.dumps(result), flush=True)


# -- the parent: run children, take medians, print --------------------------------------------
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
CHILD_ENV: dict[str, str] | None = None  # None: the children inherit this environment
REVISION = "?"  # the tonewire commit measured, read when the run starts


def run_child(mode: str, path: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", mode, "--file", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=CHILD_ENV)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"child {mode} failed with exit code {proc.returncode}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def measure(modes: list[str], path: Path, repeat: int, *, warmup: bool) -> dict[str, Any]:
    """Run every mode ``repeat`` times, round-robin (so a burst of load hits all modes alike)."""
    print(f"measuring {path.name}:", file=sys.stderr)
    if warmup:
        for mode in modes:
            run_child(mode, path)
        print("  warm-up runs done", file=sys.stderr)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for i in range(repeat):
        for mode in modes:
            runs[mode].append(run_child(mode, path))
        done = ", ".join(f"{m} {runs[m][-1]['seconds']:.2f} s" for m in modes)
        print(f"  run {i + 1}/{repeat}: {done}", file=sys.stderr)
    out: dict[str, Any] = {}
    for mode, rs in runs.items():
        for r in rs:
            hwm = r.get("vmhwm_mib")
            if hwm is not None and r["peak_mib"] > hwm * 1.05 + 1:
                print(
                    f"  warning: {mode}: ru_maxrss {r['peak_mib']:.0f} MiB > VmHWM {hwm:.0f} "
                    "MiB: the peak was inherited from the parent process",
                    file=sys.stderr,
                )
        med = {
            k: statistics.median(r[k] for r in rs)
            for k in ("seconds", "cpu_s", "first_s", "baseline_mib", "peak_mib", "import_s")
        }
        out[mode] = dict(med, mode=mode, file=path.name, audio_s=rs[0]["audio_s"], runs=rs)
    return out


def _env() -> str:
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for dist in ("numpy", "scipy", "av", "librosa"):
        with contextlib.suppress(PackageNotFoundError):
            versions.append(f"{dist} {version(dist)}")
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, " + ", ".join(
        versions
    )


def _revision() -> str:
    """The tonewire commit measured, and whether tonewire/ had uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "tonewire"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" (+ uncommitted changes in tonewire/)" if dirty else "")


def fixture(which: str) -> tuple[Path, str]:
    """Build (or find cached) a fixture in a subprocess; returns its path and render engine.

    Not imported here: the parent must stay small, because Linux carries a process's peak RSS
    over fork and exec into ``ru_maxrss`` of its children.
    """
    script = Path(__file__).resolve().parent / "fixtures.py"
    cmd = [sys.executable, str(script), "--json"] + (["--long"] if which == "60min" else [])
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return Path(info[which]), str(info["engine"])


def _spread(r: dict[str, Any]) -> str:
    walls = [x["seconds"] for x in r["runs"]]
    return f"({min(walls):.2f}-{max(walls):.2f})"


def _ok(flag: bool | None) -> str:
    return "n/a" if flag is None else ("met" if flag else "MISSED")


def print_table(
    res: dict[str, dict[str, Any]],
    path: Path,
    source: str,
    repeat: int,
    warmup: bool,
    load: tuple[float, float, float],
) -> None:
    audio_s = res[next(iter(res))]["audio_s"]
    print()
    print(f"tonewire analysis speed, {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"file:    {path.name} ({audio_s:.1f} s of audio, {path.stat().st_size / 2**20:.1f} MiB;"
        f" {source})"
    )
    print(f"code:    {REVISION}")
    print(f"machine: {_env()}")
    env = CHILD_ENV if CHILD_ENV is not None else os.environ
    blas = ", ".join(f"{v}={env[v]}" for v in BLAS_VARS if v in env) or "library defaults"
    print(f"threads: {blas}")
    print(
        f"timing:  median of {repeat} fresh processes per mode, run round-robin"
        f"{' (after 1 discarded warm-up each)' if warmup else ''}; load average at start "
        f"{load[0]:.2f}, at end {os.getloadavg()[0]:.2f}"
    )
    n_cpu, end = os.cpu_count() or 1, os.getloadavg()[0]
    if load[0] >= 0.5 * n_cpu or end >= n_cpu + 0.5:  # at the end, the benchmark itself adds ~1
        print(
            f"note:    the machine was busy (load average {load[0]:.2f} at start, {end:.2f} at "
            f"end, on {n_cpu} CPUs): timings are inflated and noisy; rerun when it is idle"
        )
    print()
    head = (
        f"{'':28}{'wall':>9}{'(min-max)':>14}{'cpu':>9}{'x realtime':>12}{'first seg':>11}"
        f"{'RSS@import':>12}{'peak RSS':>10}{'peak-import':>13}"
    )
    print(head)
    print("-" * len(head))
    for mode, r in res.items():
        first = f"{r['first_s'] * 1000:.0f} ms" if r["first_s"] is not None else "-"
        print(
            f"{LABELS[mode]:28}{r['seconds']:>7.2f} s{_spread(r):>14}{r['cpu_s']:>7.2f} s"
            f"{audio_s / r['seconds']:>11.0f}x"
            f"{first:>11}{r['baseline_mib']:>8.0f} MiB{r['peak_mib']:>6.0f} MiB"
            f"{r['peak_mib'] - r['baseline_mib']:>9.0f} MiB"
        )
    print()
    a, b, c = res.get("decode"), res.get("tonewire"), res.get("librosa")
    rd = res.get("reader")
    if a and rd:
        print(
            f"AudioReader/(a) decode path:      {rd['seconds'] / a['seconds']:6.2f}x   "
            "(tonewire's own decoding, part of (b): stereo resample, blocks)"
        )
    if a and b:
        x = b["seconds"] / a["seconds"]
        print(
            f"(b)/(a) analysis vs decode-only:  {x:6.2f}x   target <= "
            f"{MAX_ANALYSIS_OVER_DECODE:.0f}x     {_ok(x <= MAX_ANALYSIS_OVER_DECODE)}"
            f"   (cpu time: {b['cpu_s'] / a['cpu_s']:.2f}x)"
        )
    if b and c:
        x = c["seconds"] / b["seconds"]
        print(
            f"(c)/(b) speed-up over librosa:    {x:6.2f}x   target >= "
            f"{MIN_SPEEDUP_OVER_LIBROSA:.0f}x     {_ok(x >= MIN_SPEEDUP_OVER_LIBROSA)}"
            f"   (cpu time: {c['cpu_s'] / b['cpu_s']:.2f}x)"
        )
    if c:
        lo, bt = (statistics.median(r[k] for r in c["runs"]) for k in ("load_s", "beat_track_s"))
        print(
            f"(c) split: librosa.load {lo:.2f} s, beat_track {bt:.2f} s, per-second features "
            f"{c['seconds'] - lo - bt:.2f} s"
        )
        if a:
            need = c["seconds"] / MIN_SPEEDUP_OVER_LIBROSA
            print(
                f"    {MIN_SPEEDUP_OVER_LIBROSA:.0f}x over (c) means (b) <= {need:.2f} s, i.e. "
                f"{need / a['seconds']:.2f}x the decode-only floor (a)"
            )
    if b:
        f = b["first_s"]
        print(
            f"(b) first segment:              {f * 1000:6.0f} ms  target <= "
            f"{MAX_FIRST_SEGMENT_S * 1000:.0f} ms  {_ok(f <= MAX_FIRST_SEGMENT_S)}"
        )
        p = b["peak_mib"]
        print(
            f"(b) peak memory:                {p:6.0f} MiB target < "
            f"{MAX_PEAK_MIB:.0f} MiB {_ok(p < MAX_PEAK_MIB)}"
            "   (flat in duration: see --long)"
        )


def print_long(short: dict[str, dict[str, Any]], long: dict[str, dict[str, Any]]) -> None:
    print()
    la = long[next(iter(long))]["audio_s"]
    sa = short[next(iter(short))]["audio_s"]
    print(f"duration check: {sa / 60:.0f} min vs {la / 60:.0f} min (same song looped)")
    head = (
        f"{'':28}{'time':>9}{'x rt':>7}{'peak RSS':>10}   {'time':>9}{'x rt':>7}"
        f"{'peak RSS':>10}{'growth':>9}"
    )
    print(f"{'':28}{f'--- {sa / 60:.0f} min ---':^26}   {f'--- {la / 60:.0f} min ---':^26}")
    print(head)
    print("-" * len(head))
    for mode, r in long.items():
        s = short[mode]
        grow = r["peak_mib"] - s["peak_mib"]
        print(
            f"{LABELS[mode]:28}{s['seconds']:>7.2f} s{sa / s['seconds']:>6.0f}x"
            f"{s['peak_mib']:>6.0f} MiB   {r['seconds']:>7.2f} s{la / r['seconds']:>6.0f}x"
            f"{r['peak_mib']:>6.0f} MiB{grow:>+5.0f} MiB"
        )
    if "tonewire" in long:
        s, r = short["tonewire"], long["tonewire"]
        grow = r["peak_mib"] - s["peak_mib"]
        flat = abs(grow) <= FLAT_GROWTH_MIB
        print()
        print(
            f"(b) peak memory {s['peak_mib']:.0f} -> {r['peak_mib']:.0f} MiB "
            f"({grow:+.1f} MiB for {la / sa:.0f}x the audio); target flat (within "
            f"{FLAT_GROWTH_MIB:.0f} MiB) and < {MAX_PEAK_MIB:.0f} MiB: "
            f"{_ok(flat and max(s['peak_mib'], r['peak_mib']) < MAX_PEAK_MIB)}"
        )
        x = (r["seconds"] / la) / (s["seconds"] / sa)
        print(f"(b) time per audio second, {la / 60:.0f} min vs {sa / 60:.0f} min: {x:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per mode (median)")
    ap.add_argument(
        "--long",
        action="store_true",
        help="also run (a) and (b) on a 60-minute mp3 (memory flat in duration)",
    )
    ap.add_argument("--file", type=Path, help="benchmark this file instead of the fixture")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of modes")
    ap.add_argument("--no-warmup", action="store_true", help="skip the discarded warm-up run")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    ap.add_argument(
        "--blas-threads",
        type=int,
        help="set OPENBLAS/OMP/MKL_NUM_THREADS for every child (default: inherit)",
    )
    ap.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args()

    if args.one:
        if args.file is None:
            ap.error("--one needs --file")
        child(args.one, str(args.file))
        return

    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        ap.error(f"unknown modes: {', '.join(sorted(unknown))}")
    if args.file:
        path, source = args.file, "given file"
    else:
        path, engine = fixture("5min")
        source = f"fixture rendered with {engine}"
    warmup = not args.no_warmup
    global CHILD_ENV, REVISION
    REVISION = _revision()
    if args.blas_threads is not None:
        CHILD_ENV = dict(os.environ, **{v: str(args.blas_threads) for v in BLAS_VARS})
    load = os.getloadavg()
    res = measure(modes, path, args.repeat, warmup=warmup)
    long: dict[str, dict[str, Any]] = {}
    if args.long:
        long_path, _ = fixture("60min")
        long = measure(
            [m for m in ("decode", "reader", "tonewire") if m in modes],
            long_path,
            args.repeat,
            warmup=warmup,
        )
    print_table(res, path, source, args.repeat, warmup, load)
    if long:
        print_long({m: res[m] for m in long}, long)
    if args.json:
        args.json.write_text(json.dumps({"short": res, "long": long}, indent=2))


if __name__ == "__main__":
    main()
