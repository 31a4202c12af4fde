"""Where does ``analyze_file`` spend its time? cProfile over one full analysis, summarised.

    python bench/profile_analysis.py [--file some.mp3] [--top 15] [--blas-threads 1]

Prints (1) tonewire functions by cumulative time and (2) all functions by self time, each with
its share of the profiled total. One unprofiled run comes first (warm-up and a wall-clock
reference). Note that cProfile charges numpy operators (``*``, ``@``, slicing) to the Python
function that uses them, so a tonewire function's self time includes its inline array work.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path


def _fixture() -> Path:
    script = Path(__file__).resolve().parent / "fixtures.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--json"], stdout=subprocess.PIPE, text=True, check=True
    )
    return Path(json.loads(proc.stdout.strip().splitlines()[-1])["5min"])


def _name(key: tuple[str, int, str], root: str) -> str:
    filename, line, func = key
    if filename == "~":
        return func  # a built-in / C function
    if filename.startswith(root):
        return f"{Path(filename).relative_to(root)}:{line}({func})"
    parts = Path(filename).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else filename
    return f"{short}:{line}({func})"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--file", type=Path, help="profile this file instead of the 5-minute fixture")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--blas-threads", type=int, help="set OPENBLAS/OMP/MKL_NUM_THREADS (re-exec)")
    ap.add_argument("--save", type=Path, help="also save the raw profile (for snakeviz etc.)")
    args = ap.parse_args()

    if args.blas_threads is not None and os.environ.get("_TW_BLAS_SET") != "1":
        env = dict(os.environ, _TW_BLAS_SET="1")
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.blas_threads)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)

    path = args.file or _fixture()
    from tonewire.pipeline import analyze_file

    def run() -> None:
        for _ in analyze_file(path):
            pass

    t0 = time.perf_counter()
    run()
    wall = time.perf_counter() - t0
    prof = cProfile.Profile()
    prof.enable()
    run()
    prof.disable()
    st = pstats.Stats(prof)
    stats = st.stats  # type: ignore[attr-defined]
    total = max(st.total_tt, 1e-9)  # type: ignore[attr-defined]
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"{path.name}: unprofiled {wall:.2f} s, profiled {total:.2f} s (BLAS threads: {blas})")

    print(f"\ntonewire functions by cumulative time (share of the profiled {total:.2f} s)")
    rows = [
        (ct, tt, nc, key)
        for key, (_cc, nc, tt, ct, _callers) in stats.items()
        if f"{os.sep}tonewire{os.sep}" in key[0]
    ]
    rows.sort(reverse=True)
    print(f"{'cum s':>7} {'cum %':>6} {'self s':>7} {'self %':>6} {'calls':>7}  function")
    for ct, tt, nc, key in rows[: args.top]:
        print(
            f"{ct:7.3f} {100 * ct / total:5.1f}% {tt:7.3f} {100 * tt / total:5.1f}% {nc:7d}  "
            f"{_name(key, root)}"
        )

    print("\nall functions by self time")
    rows = [(tt, ct, nc, key) for key, (_cc, nc, tt, ct, _callers) in stats.items()]
    rows.sort(reverse=True)
    print(f"{'self s':>7} {'self %':>6} {'calls':>7}  function")
    for tt, _ct, nc, key in rows[: args.top]:
        print(f"{tt:7.3f} {100 * tt / total:5.1f}% {nc:7d}  {_name(key, root)}")
    if args.save:
        st.dump_stats(args.save)


if __name__ == "__main__":
    main()
