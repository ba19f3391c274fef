"""Feature stage and basic-waves benchmark.

Prints:
- basic-waves generation time for 60 s (target: well under 1 s);
- ``analyse()`` (everything after pitch tracking: N-cycle segments + rfft + target +
  MFCC) on 60 s of basic waves with the true f0 labels, as x realtime (target >= 500x);
- peak numpy memory of ``analyse()`` (tracemalloc; bounded by chunking);
- interpolation quality: worst energy outside bins N, N+-1 of a normalised sine
  (target < -60 dB) and worst saw harmonic-ratio error.

Usage: ``python benchmarks/bench_features.py [--seconds 60] [--repeats 7] [--preset reference]``
(default: the default analysis, full band at 44.1 kHz; ``--preset reference``: 16 kHz, K 80)
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np

from wms.analysis.basic_waves import basic_waves_with_labels
from wms.analysis.features import analyse, default_threads, ncycle_segments, periodic_hann
from wms.config import load_config

TARGET_X_REALTIME = 500.0
TARGET_LEAK_DB = -60.0


def _best(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument(
        "--preset", default="default", help="analyse with this preset (reference: 16 kHz, K 80)"
    )
    args = p.parse_args()
    cfg = load_config(None, preset=args.preset)
    sr, hop = cfg.audio.sample_rate, cfg.features.hop_size
    print(
        f"machine: {os.cpu_count()} cores, shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f}); analyse uses {default_threads()} threads"
    )

    t0 = time.perf_counter()
    bw = basic_waves_with_labels(args.seconds, sample_rate=sr, seed=0)
    first = time.perf_counter() - t0
    best, med = _best(
        lambda: basic_waves_with_labels(args.seconds, sample_rate=sr, seed=0), args.repeats
    )
    print(
        f"basic_waves {args.seconds:.0f} s: first {first * 1e3:.1f} ms, best {best * 1e3:.1f} ms, "
        f"median {med * 1e3:.1f} ms  ({args.seconds / best:.0f}x realtime)"
    )

    n = bw.y.shape[0]
    n_frames = 1 + n // hop
    f0 = bw.f0[np.minimum(np.arange(n_frames) * hop, n - 1)]
    v = np.ones(n_frames)
    t0 = time.perf_counter()
    analyse(bw.y, f0, v, cfg)  # loads the cached numba kernel (or compiles it)
    first = time.perf_counter() - t0
    best1, _ = _best(lambda: analyse(bw.y, f0, v, cfg, threads=1), args.repeats)
    best, med = _best(lambda: analyse(bw.y, f0, v, cfg), args.repeats)
    x_rt = args.seconds / best
    print(
        f"analyse {args.seconds:.0f} s = {n_frames} frames (W {cfg.features.window_size}, "
        f"hop {hop}, {sr} Hz): first call {first * 1e3:.0f} ms, best {best * 1e3:.1f} ms, "
        f"median {med * 1e3:.1f} ms -> {x_rt:.0f}x realtime "
        f"(target {TARGET_X_REALTIME:.0f}x, ratio {x_rt / TARGET_X_REALTIME:.2f}, "
        f"median {args.seconds / med:.0f}x)"
    )
    best_s, _ = _best(
        lambda: ncycle_segments(
            bw.y,
            f0,
            sample_rate=sr,
            hop_size=hop,
            window_size=cfg.features.window_size,
            cycles=cfg.features.cycles_per_window,
        ),
        args.repeats,
    )
    print(f"  single thread: {best1 * 1e3:.1f} ms -> {args.seconds / best1:.0f}x realtime")
    print(f"  of which ncycle_segments alone: {best_s * 1e3:.1f} ms")
    tracemalloc.start()
    analyse(bw.y, f0, v, cfg)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"analyse peak numpy allocations: {peak / 2**20:.1f} MB (outputs included)")

    # Interpolation quality on sines (a frame holds exactly N cycles -> bins N, N+-1 only).
    w, nc = cfg.features.window_size, cfg.features.cycles_per_window
    t = np.arange(sr) / sr
    worst = -np.inf
    for f in (46.0, 97.3, 220.0, 440.0, 1000.0, 1600.0, 3000.0, 5000.0, 7000.0):
        seg = ncycle_segments(
            np.sin(2 * np.pi * f * t),
            np.full(1 + sr // hop, f),
            sample_rate=sr,
            hop_size=hop,
            window_size=w,
            cycles=nc,
        )[8:-8]
        mag = np.abs(np.fft.rfft(seg * periodic_hann(w), axis=1))
        rest = np.delete(mag, [nc - 1, nc, nc + 1], axis=1)
        db = 20 * np.log10(rest.max() / mag[:, nc].min())
        worst = max(worst, db)
        print(f"  sine {f:7.1f} Hz read as {nc} cycles: leakage {db:7.1f} dB")
    print(f"worst sine leakage {worst:.1f} dB (target < {TARGET_LEAK_DB:.0f} dB)")

    f = 150.0
    h = np.arange(1, 41)
    saw = (np.sin(2 * np.pi * f * np.outer(t, h)) / h).sum(axis=1)
    seg = ncycle_segments(
        saw, np.full(1 + sr // hop, f), sample_rate=sr, hop_size=hop, window_size=w, cycles=nc
    )[8:-8]
    mag = np.abs(np.fft.rfft(seg * periodic_hann(w), axis=1))
    err = np.abs(mag[:, nc * h] / mag[:, [nc]] * h - 1).max()
    print(f"saw 150 Hz: bin N*h / bin N vs 1/h for h = 1..40: max relative error {err:.2e}")


if __name__ == "__main__":
    main()
