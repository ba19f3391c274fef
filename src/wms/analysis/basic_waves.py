"""The synthetic "basic waves" training set (the reference's demo data).

A sequence of segments of random length (uniform in 0.1–1.0 s), each a band-limited
sine, triangle, square or saw at a random pitch, log-uniform in 55–1568 Hz (A1 to
G6: inside the reference's tracker range 46–1600 Hz with a margin, so trackers are not
tested at their edges). Shapes come from successive random permutations of the
four (no shape repeats across a boundary), so every shape appears in any run of
four segments. Each segment's pitch is new; the phase runs on continuously
across boundaries, and the previous shape fades out under a 10 ms raised-cosine
crossfade (same phase, same pitch) so shape changes do not click. Peak amplitude is
0.5 (every single-cycle table is normalised to peak 1 before the 0.5 gain, so
crossfades cannot exceed it).

Band limiting: per segment, each shape's single cycle is built by an inverse rfft of
its Fourier series truncated to harmonics ``h * f0 < sample_rate / 2`` and read by
phase with linear interpolation from a 4096-point table. Linear reads of such a
table put images of harmonic ``h`` at harmonic ``4096 - h`` about ``(h / 4096)**2``
below it (< -80 dB of the fundamental for every shape and pitch here): everything
audible lies on the harmonics of f0 below Nyquist.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from wms.errors import ConfigError

#: Shape names; ``BasicWaves.shape`` holds indices into this tuple.
SHAPES = ("sine", "triangle", "square", "saw")
#: Default pitch range in Hz (A1 .. G6).
F0_RANGE = (55.0, 1568.0)
#: Segment length range in seconds.
SEGMENT_SECONDS = (0.1, 1.0)
CROSSFADE_SECONDS = 0.01
AMPLITUDE = 0.5
TABLE_SIZE = 4096
#: Segments rendered at once (bounds memory for long sets).
_BLOCK_SEGMENTS = 64


@dataclass(frozen=True)
class BasicWaves:
    """A basic-waves signal with its per-sample labels.

    Attributes:
        y: ``[n]`` float32 signal, peak <= 0.5.
        f0: ``[n]`` float64 Hz, the true pitch of each sample (float64 so that a running
            sum of it reproduces the oscillator phase exactly).
        shape: ``[n]`` int8 index into :data:`SHAPES` (the incoming shape during a crossfade).
        segment_starts: ``[n_segments]`` int64 first sample of each segment.
        sample_rate: Hz.
    """

    y: np.ndarray
    f0: np.ndarray
    shape: np.ndarray
    segment_starts: np.ndarray
    sample_rate: int


def harmonic_series(shape: str, n_harmonics: int) -> np.ndarray:
    """Sine-series amplitudes ``b[h]`` (h = 0..n_harmonics, ``b[0] = 0``) of a unit shape.

    ``x(phi) = sum_h b[h] sin(2 pi h phi)``: sine ``b1 = 1``; square ``4 / (pi h)`` odd h;
    saw ``(-1)**(h+1) 2 / (pi h)``; triangle ``(-1)**((h-1)/2) 8 / (pi h)**2`` odd h.

    Raises:
        ConfigError: unknown shape.
    """
    h = np.arange(n_harmonics + 1, dtype=np.float64)
    b = np.zeros(n_harmonics + 1)
    odd = h % 2 == 1
    if shape == "sine":
        if n_harmonics >= 1:
            b[1] = 1.0
    elif shape == "square":
        b[odd] = 4.0 / (np.pi * h[odd])
    elif shape == "saw":
        b[1:] = 2.0 / (np.pi * h[1:]) * np.where(h[1:] % 2 == 1, 1.0, -1.0)
    elif shape == "triangle":
        b[odd] = 8.0 / (np.pi * h[odd]) ** 2 * np.where((h[odd] - 1) % 4 == 0, 1.0, -1.0)
    else:
        raise ConfigError(f"unknown basic-wave shape {shape!r}; shapes are {', '.join(SHAPES)}")
    return b


def _tables(shapes: np.ndarray, f0: np.ndarray, sample_rate: int) -> np.ndarray:
    """Peak-normalised single cycles ``[len(shapes), TABLE_SIZE]`` band-limited at each f0."""
    spec = np.zeros((len(shapes), TABLE_SIZE // 2 + 1), dtype=np.complex128)
    for r, (s, f) in enumerate(zip(shapes, f0, strict=True)):
        n_h = min(math.ceil(sample_rate / 2 / f) - 1, TABLE_SIZE // 2 - 1)  # h * f0 < sr/2
        # irfft of -1j * b * T/2 at bin h is b * sin(2 pi h t / T).
        spec[r, : n_h + 1] = -0.5j * TABLE_SIZE * harmonic_series(SHAPES[s], n_h)
    tables = np.fft.irfft(spec, n=TABLE_SIZE, axis=1)
    return tables / np.abs(tables).max(axis=1, keepdims=True)


def _read(tables: np.ndarray, row: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Linear-interpolated reads of ``tables[row]`` at ``phase`` in cycles [0, 1)."""
    x = phase * TABLE_SIZE
    i0 = np.floor(x).astype(np.int64)
    frac = x - i0
    i0 %= TABLE_SIZE
    i1 = (i0 + 1) % TABLE_SIZE
    flat = tables.reshape(-1)
    base = row * TABLE_SIZE
    a = flat[base + i0]
    return a + frac * (flat[base + i1] - a)


def basic_waves_with_labels(
    seconds: float,
    *,
    sample_rate: int = 44100,
    seed: int = 0,
    f0_range: tuple[float, float] = F0_RANGE,
) -> BasicWaves:
    """Generate the basic-waves set with true pitch and shape per sample.

    Args:
        seconds: duration; the signal has exactly ``round(seconds * sample_rate)`` samples.
        sample_rate: Hz.
        seed: the same seed gives the same samples.
        f0_range: ``(low, high)`` Hz of the log-uniform pitch; ``high < sample_rate / 2``.

    Returns:
        :class:`BasicWaves`.

    Raises:
        ConfigError: non-positive or non-finite duration, sample rate or pitch range,
            or a pitch range reaching Nyquist.
    """
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, (int, np.integer))
        or sample_rate <= 0
    ):
        raise ConfigError(f"basic waves: sample_rate = {sample_rate!r} must be a positive integer")
    sample_rate = int(sample_rate)
    try:
        secs = float(seconds)
    except (TypeError, ValueError):
        secs = math.nan
    if not (math.isfinite(secs) and secs > 0):
        raise ConfigError(f"basic waves: seconds = {seconds!r} must be a positive number")
    n = round(secs * sample_rate)
    if n < 1:
        raise ConfigError(
            f"basic waves: seconds = {seconds!r} is shorter than one sample at {sample_rate} Hz"
        )
    lo, hi = (float(v) for v in f0_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi < sample_rate / 2):
        raise ConfigError(
            f"basic waves: f0_range = {f0_range!r} Hz must satisfy 0 < low <= high < "
            f"sample_rate / 2 = {sample_rate / 2}"
        )
    rng = np.random.default_rng(seed)

    # Segment boundaries: draw enough lengths for the shortest case, keep those needed.
    len_lo = max(1, round(SEGMENT_SECONDS[0] * sample_rate))
    len_hi = max(len_lo, round(SEGMENT_SECONDS[1] * sample_rate))
    lengths = rng.integers(len_lo, len_hi + 1, size=n // len_lo + 1)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    n_seg = int(np.searchsorted(starts, n, side="left"))
    starts = starts[:n_seg]
    lengths = np.diff(np.append(starts, n))

    # Shapes from successive permutations, never repeating across a boundary.
    shapes = []
    while len(shapes) < n_seg:
        perm = list(rng.permutation(len(SHAPES)))
        if shapes and perm[0] == shapes[-1]:
            perm[0], perm[1] = perm[1], perm[0]
        shapes += perm
    shapes = np.asarray(shapes[:n_seg], dtype=np.int64)
    prev_shapes = np.concatenate([shapes[:1], shapes[:-1]])
    f0 = np.exp(rng.uniform(math.log(lo), math.log(hi), size=n_seg))

    # Phase at each segment start, in cycles: continues the previous segment's phase.
    advance = np.mod(f0 * lengths / sample_rate, 1.0)
    phase0 = np.mod(np.concatenate([[0.0], np.cumsum(advance[:-1])]), 1.0)

    y = np.empty(n, dtype=np.float32)
    f0_lab = np.empty(n, dtype=np.float64)
    shape_lab = np.empty(n, dtype=np.int8)
    n_fade = max(1, round(CROSSFADE_SECONDS * sample_rate))
    for b0 in range(0, n_seg, _BLOCK_SEGMENTS):
        b1 = min(n_seg, b0 + _BLOCK_SEGMENTS)
        m = b1 - b0
        tables = _tables(
            np.concatenate([shapes[b0:b1], prev_shapes[b0:b1]]),
            np.concatenate([f0[b0:b1], f0[b0:b1]]),
            sample_rate,
        )
        s0, s1 = int(starts[b0]), int(starts[b1 - 1] + lengths[b1 - 1])
        seg = np.repeat(np.arange(m), lengths[b0:b1])  # block-local segment of each sample
        k = np.arange(s0, s1) - starts[b0:b1][seg]  # sample index inside its segment
        phase = np.mod(phase0[b0:b1][seg] + f0[b0:b1][seg] * k / sample_rate, 1.0)
        out = _read(tables, seg, phase)
        fading = (k < n_fade) & (seg + b0 > 0)
        if fading.any():
            w = 0.5 - 0.5 * np.cos(np.pi * k[fading] / n_fade)
            old = _read(tables, seg[fading] + m, phase[fading])
            out[fading] = w * out[fading] + (1.0 - w) * old
        y[s0:s1] = AMPLITUDE * out
        f0_lab[s0:s1] = f0[b0:b1][seg]
        shape_lab[s0:s1] = shapes[b0:b1][seg]
    return BasicWaves(
        y=y,
        f0=f0_lab,
        shape=shape_lab,
        segment_starts=starts.astype(np.int64),
        sample_rate=sample_rate,
    )


def basic_waves(seconds: float, *, sample_rate: int = 44100, seed: int = 0) -> np.ndarray:
    """The basic-waves signal ``[round(seconds * sample_rate)]`` float32 (see the module doc).

    Raises:
        ConfigError: as :func:`basic_waves_with_labels`.
    """
    return basic_waves_with_labels(seconds, sample_rate=sample_rate, seed=seed).y


def run_basic_waves(args) -> int:
    """``wms basic-waves OUT.wav --seconds S --seed K --sample-rate SR``: write the set."""
    from wms.analysis.audio import write_audio

    t0 = time.perf_counter()
    bw = basic_waves_with_labels(args.seconds, sample_rate=args.sample_rate, seed=args.seed)
    path = write_audio(args.out, bw.y, bw.sample_rate, subtype="PCM_16")
    dt = time.perf_counter() - t0
    present = sorted({SHAPES[s] for s in np.unique(bw.shape)})
    print(
        f"wrote {path}: {bw.y.shape[0] / bw.sample_rate:.2f} s at {bw.sample_rate} Hz, "
        f"{bw.segment_starts.shape[0]} segments ({', '.join(present)}), seed {args.seed}, "
        f"in {dt:.2f} s"
    )
    return 0
