"""Feature stage: N-cycle normalisation, target spectra and MFCC.

Per analysis frame ``i`` (centred at sample ``i * hop_size``) and its f0 (from
:mod:`wms.analysis.pitch`), docs/DESIGN.md §1:

1. :func:`ncycle_segments` resamples the span of ``L_i = N * sr / f0_i`` samples
   around the frame centre so that exactly N cycles fill the W-sample window; after
   that, rfft bin ``N * h`` of the window is harmonic ``h`` whatever the pitch.
2. :func:`analyse` windows each segment with a **periodic** Hann window (the
   window of an FFT frame, as librosa's ``stft``; with exactly N cycles in W samples
   it leaks a harmonic into bins ``N*h ± 1`` only, at -6 dB), takes one rfft of
   length ``n_fft`` (zero-padded; harmonic ``h`` is then at bin ``N * h * n_fft / W``,
   i.e. ``N * h`` at the default ``n_fft = W``) and derives from it both
   - the target ``log1p(|X|)`` of the lowest ``n_bins`` bins, and
   - the MFCC of the same power spectrum ``|X|**2``: mel filterbank
     (``librosa.filters.mel``, Slaney, honouring ``n_mels``, ``mel_fmin``,
     ``mel_fmax``), ``10 * log10(max(mel, 1e-10))`` (librosa's ``power_to_db`` with
     ``ref=1`` and **no** ``top_db`` clipping, so a frame's MFCC does not depend on
     the rest of the file), DCT-II (ortho), first ``n_mfcc``.

The fitted MFCC -> control mapping is :mod:`wms.analysis.inputmap`.

The mel frequencies are *nominal*: the filterbank is built for ``sample_rate`` as if the
normalised window were ordinary audio (as the reference does). Because the window
holds exactly N cycles, nominal frequency ``F`` Hz is harmonic ``F * W / (N * sr)``
of the frame's f0, so the MFCC describe the spectral envelope over harmonic
numbers, independent of pitch.

Interpolation (why and how good): a window position ``p`` falls between samples,
so the signal must be read with band-limited interpolation. Each chunk of frames
oversamples its span of the signal 4x with soxr (HQ, band-limited, passband to
~0.91 x Nyquist) and reads it with 6-point 5th-order Lagrange interpolation. Measured on sines read into 2-cycle
Hann windows at 16 kHz: energy outside bins ``N, N±1`` is below -110 dB of the peak
for f0 <= 1.6 kHz and below -77 dB for components up to 7.3 kHz (4x + cubic Hermite
gave -48 dB there; a 32-tap Kaiser sinc reaches -60 dB only to ~0.77 x Nyquist and
costs 32 multiply-adds per sample instead of 6). This holds while the
window *stretches* the signal (``L_i <= W``, i.e. ``f0 >= N * sr / W``, 31.25 Hz at the
defaults). For lower f0 the window *compresses* the signal and content above its
new Nyquist would alias, so those frames are read with a Kaiser-windowed sinc
low-pass (beta 8, 64 * L_i / W taps) scaled to the compression: rare, and ~100x
slower per frame (1.4 ms); a 20 Hz sine plus a 7 kHz tone (above that frame's
5.1 kHz limit) leaves nothing above -100 dB outside bins ``N, N±1``.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import scipy.fft
import scipy.sparse
import soxr

from wms.config import Config
from wms.noise import band_edges, noise_envelope, noise_share

#: Oversampling factor of the signal read by the Lagrange interpolator.
OVERSAMPLE = 4
#: Base-rate samples of real signal kept on each side of a chunk before oversampling,
#: so that soxr's filter has settled (measured: 128 -> chunked == whole to 1e-7).
_SOXR_MARGIN = 128
#: Half-length (base samples at compression 1) of the sinc used for compressing frames.
_SINC_HALF = 32
_SINC_BETA = 8.0
#: Frames per chunk, and a cap on one chunk's temporaries (segments, spectra, 4x
#: signal): ~7 MB per chunk at the defaults, times the threads in flight.
_CHUNK_FRAMES = 512
_CHUNK_BYTES = 16 * 2**20
#: Floor of the mel power before the log (librosa's ``amin``).
_MEL_AMIN = 1e-10


# --------------------------------------------------------------------------- helpers


def n_frames_for(n_samples: int, hop_size: int) -> int:
    """Frames of a signal of ``n_samples``: ``1 + n_samples // hop_size`` (centred frames)."""
    return 1 + int(n_samples) // int(hop_size)


def _check_signal(y: Any, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{where}: y must be a mono signal of shape [n], got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"{where}: y is empty")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not np.all(np.isfinite(y)):
        bad = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"{where}: y holds NaN or infinite samples (first at sample {bad})")
    return y


def _check_frames(a: Any, name: str, n_frames: int, where: str, hint: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1 or a.shape[0] != n_frames:
        raise ValueError(
            f"{where}: {name} has shape {a.shape} but {hint} has {n_frames} frames "
            f"(expected shape ({n_frames},))"
        )
    return a


def _positive_int(v: Any, name: str, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
        raise ValueError(f"{where}: {name} = {v!r} must be a positive integer")
    return int(v)


@functools.lru_cache(maxsize=8)
def periodic_hann(window_size: int) -> np.ndarray:
    """The periodic Hann window ``0.5 - 0.5 cos(2 pi j / W)``, ``[W]`` float32 (read-only).

    Periodic (not symmetric) so that a window holding exactly N cycles leaks each
    harmonic into its two neighbouring bins only.
    """
    j = np.arange(window_size, dtype=np.float64)
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * j / window_size)).astype(np.float32)
    w.setflags(write=False)
    return w


# --------------------------------------------------------------------------- kernels


@functools.lru_cache(maxsize=1)
def _kaiser_half() -> np.ndarray:
    # Right half of a Kaiser window, 4097 points over |u| in [0, 1] (linear reads
    # are exact to ~1e-7, far below the sinc's own stopband).
    u = np.linspace(0.0, 1.0, 4097)
    return (np.i0(_SINC_BETA * np.sqrt(1.0 - u * u)) / np.i0(_SINC_BETA)).astype(np.float64)


# fastmath without "nnan"/"ninf": NaN steps mark raw frames and must stay testable.
@numba.njit(cache=True, nogil=True, fastmath={"contract", "reassoc", "arcp", "nsz"})
def _segments_kernel(y, y4, y4_start, over, centres, steps, kaiser, out):  # pragma: no cover
    """Fill ``out[i, j]`` with the signal at ``centres[i] + (j - W/2) * steps[i]``.

    ``steps[i]`` NaN: plain window (integer positions, read ``y``); ``<= 1``: 6-point
    Lagrange on the oversampled chunk ``y4`` whose sample 0 is base sample
    ``y4_start``; ``> 1``: Kaiser-windowed sinc low-pass at ``1 / step`` on ``y``
    (``kaiser[m]`` is the window at ``|u| = m / (len - 1)``, read linearly).
    Positions outside the signal read zeros.
    """
    n = y.shape[0]
    n4 = y4.shape[0]
    n_out, width = out.shape
    half = width // 2
    nk = kaiser.shape[0] - 1
    for i in range(n_out):
        c = centres[i]
        st = steps[i]
        if np.isnan(st):
            for j in range(width):
                k = c - half + j
                out[i, j] = y[k] if 0 <= k < n else 0.0
        elif st <= 1.0:
            p0 = (c - y4_start - half * st) * over
            dp = st * over
            for j in range(width):
                p = p0 + j * dp
                fk = math.floor(p)
                k = int(fk)
                t = p - fk
                # 6-point Lagrange weights for nodes -2..3, sharing partial products.
                tp2 = t + 2.0
                tp1 = t + 1.0
                tm1 = t - 1.0
                tm2 = t - 2.0
                tm3 = t - 3.0
                a = tp2 * tp1
                b = tm2 * tm3
                ab = t * tm1
                w0 = -tp1 * ab * b * (1.0 / 120.0)
                w1 = tp2 * ab * b * (1.0 / 24.0)
                w2 = -a * tm1 * b * (1.0 / 12.0)
                w3 = a * t * b * (1.0 / 12.0)
                w4 = -a * ab * tm3 * (1.0 / 24.0)
                w5 = a * ab * tm2 * (1.0 / 120.0)
                if k >= 2 and k + 3 < n4:
                    acc = (
                        w0 * y4[k - 2]
                        + w1 * y4[k - 1]
                        + w2 * y4[k]
                        + w3 * y4[k + 1]
                        + w4 * y4[k + 2]
                        + w5 * y4[k + 3]
                    )
                else:
                    acc = 0.0
                    ws = (w0, w1, w2, w3, w4, w5)
                    for m in range(6):
                        q = k - 2 + m
                        if 0 <= q < n4:
                            acc += ws[m] * y4[q]
                out[i, j] = acc
        else:
            # Compressing: low-pass at the window's Nyquist (1 / st of ours) so that
            # nothing aliases; the kernel widens with the compression.
            fc = 1.0 / st
            hw = math.ceil(_SINC_HALF * st)
            for j in range(width):
                p = c + (j - half) * st
                k0 = int(math.floor(p))
                acc = 0.0
                for q in range(k0 - hw + 1, k0 + hw + 1):
                    if 0 <= q < n:
                        x = q - p
                        u = abs(x) / hw * nk
                        if u < nk:
                            m = int(u)
                            win = kaiser[m] + (u - m) * (kaiser[m + 1] - kaiser[m])
                            a = math.pi * fc * x
                            s = fc if abs(a) < 1e-12 else fc * math.sin(a) / a
                            acc += y[q] * s * win
                out[i, j] = acc


# --------------------------------------------------------------------------- segments


def default_threads() -> int:
    """Threads :func:`analyse` uses by default: the CPUs this process may use (at most 8),
    or ``$OMP_NUM_THREADS`` when that is set lower (worker processes pin it to 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        n = min(n, int(env))
    return max(1, min(8, n))


def _chunks(n_frames: int, per_frame_bytes: int) -> list[tuple[int, int]]:
    """Frame ranges ``[a, b)`` of at most ``_CHUNK_FRAMES`` frames and ``_CHUNK_BYTES``.

    Independent of the thread count on purpose: chunk edges change the soxr spans
    in the last float32 bit, and results must not depend on how many threads ran.
    """
    size = max(1, min(_CHUNK_FRAMES, _CHUNK_BYTES // per_frame_bytes))
    return [(a, min(n_frames, a + size)) for a in range(0, n_frames, size)]


def _per_frame_bytes(window_size: int, n_fft: int, hop_size: int) -> int:
    # Segment (W) + windowed copy + complex spectrum + power (n_fft/2+1 each) + 4x signal.
    return 4 * (2 * window_size + 3 * (n_fft // 2 + 1) + OVERSAMPLE * hop_size)


def _steps(f0: np.ndarray, *, sample_rate: int, window_size: int, cycles: int) -> np.ndarray:
    """Read step ``L_i / W`` in input samples per window sample (NaN stays NaN: raw)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return cycles * sample_rate / (f0 * window_size)


def _segments_range(y, steps, a, b, *, sample_rate, hop_size, window_size):
    """Segments ``[b - a, W]`` of frames ``a..b-1`` (checked inputs)."""
    n = y.shape[0]
    half = window_size // 2
    centres = np.arange(a, b, dtype=np.int64) * hop_size
    steps = steps[a:b]
    # The Lagrange path reads at most W/2 * step <= W/2 samples from a centre (+3 taps);
    # only that span (plus soxr's settling margin) is oversampled.
    lo = max(0, int(centres[0]) - half - 4 - _SOXR_MARGIN)
    hi = min(n, int(centres[-1]) + half + 4 + _SOXR_MARGIN)
    if np.any(steps <= 1.0) and hi > lo:
        y4 = soxr.resample(y[lo:hi], sample_rate, OVERSAMPLE * sample_rate, quality="HQ")
    else:
        y4 = np.zeros(1, dtype=np.float32)
    out = np.empty((b - a, window_size), dtype=np.float32)
    _segments_kernel(y, y4, lo, OVERSAMPLE, centres, steps, _kaiser_half(), out)
    return out


def _map_chunks(fn, chunks: list[tuple[int, int]], threads: int) -> None:
    """Run ``fn(a, b)`` over the chunks, on ``threads`` threads when there are several.

    The work (soxr, the numba kernel, scipy.fft, BLAS) releases the GIL, so threads
    give real parallelism without processes (and stay safe under ``fork``).
    """
    if threads <= 1 or len(chunks) <= 1:
        for a, b in chunks:
            fn(a, b)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(chunks))) as pool:
        for fut in [pool.submit(fn, a, b) for a, b in chunks]:
            fut.result()


def _check_f0_for_segments(f0, n_frames, where):
    f0 = _check_frames(f0, "f0", n_frames, where, "y at this hop_size")
    bad = ~np.isnan(f0) & ~(np.isfinite(f0) & (f0 > 0))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{where}: f0[{i}] = {float(f0[i])!r} Hz; f0 must be positive and finite "
            "(NaN = plain window)"
        )
    return f0


def ncycle_segments(
    y: np.ndarray,
    f0: np.ndarray,
    *,
    sample_rate: int,
    hop_size: int,
    window_size: int,
    cycles: int,
    chunk_frames: int | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """N-cycle normalised windows of a signal (docs/DESIGN.md §1.2).

    Frame ``i`` is centred at sample ``c_i = i * hop_size``; its window holds the
    signal read at positions ``c_i + (j - W/2) * L_i / W``, ``j = 0..W-1``, with
    ``L_i = cycles * sample_rate / f0[i]`` samples, i.e. exactly ``cycles`` periods
    of ``f0[i]``. Reading is band-limited (see the module docstring); positions
    outside the signal read zeros.

    Args:
        y: ``[n]`` mono signal at ``sample_rate`` Hz.
        f0: ``[n_frames]`` Hz with ``n_frames = 1 + n // hop_size``; ``NaN`` means
            "take the plain W-sample window" (``L_i = W``).
        sample_rate: Hz. hop_size, window_size (W): samples. cycles: N.
        chunk_frames: frames processed at once (default 512, fewer for huge windows;
            changes the result in the last float32 bit only). threads: chunks
            processed in parallel (default :func:`default_threads`); the result does
            not depend on it.

    Returns:
        ``[n_frames, W]`` float32.

    Raises:
        ValueError: ``y`` not 1-D, empty or not finite; ``f0`` of the wrong length,
            or holding values that are neither positive finite nor NaN.
        ValueError: non-positive sizes.
    """
    where = "ncycle_segments"
    for name, v in (
        ("sample_rate", sample_rate),
        ("hop_size", hop_size),
        ("window_size", window_size),
        ("cycles", cycles),
    ):
        _positive_int(v, name, where)
    y = _check_signal(y, where)
    n_frames = n_frames_for(y.shape[0], hop_size)
    f0 = _check_f0_for_segments(f0, n_frames, where)
    threads = default_threads() if threads is None else _positive_int(threads, "threads", where)
    if chunk_frames is None:
        chunks = _chunks(n_frames, _per_frame_bytes(window_size, window_size, hop_size))
    else:
        size = _positive_int(chunk_frames, "chunk_frames", where)
        chunks = [(a, min(n_frames, a + size)) for a in range(0, n_frames, size)]
    steps = _steps(f0, sample_rate=sample_rate, window_size=window_size, cycles=cycles)
    out = np.empty((n_frames, window_size), dtype=np.float32)

    def run(a: int, b: int) -> None:
        out[a:b] = _segments_range(
            y, steps, a, b, sample_rate=sample_rate, hop_size=hop_size, window_size=window_size
        )

    _map_chunks(run, chunks, threads)
    return out


def cutting_f0(
    f0: np.ndarray, voicedness: np.ndarray, *, policy: str, voicing_threshold: float
) -> np.ndarray:
    """The f0 each frame is cut with under the unvoiced policy, ``[n]`` float64.

    Voiced frames (``voicedness >= voicing_threshold``) keep their f0. Unvoiced ones:
    ``"hold"`` -> the last voiced frame's f0 (frames before the first voiced frame
    take the first voiced f0; with no voiced frame at all, the tracker's f0 is
    kept); ``"raw"`` -> NaN (plain window, no pitch normalisation).

    Raises:
        ValueError: unknown policy.
    """
    f0 = np.asarray(f0, dtype=np.float64)
    voiced = np.asarray(voicedness) >= voicing_threshold
    out = f0.copy()
    if policy == "raw":
        out[~voiced] = np.nan
    elif policy == "hold":
        if voiced.any():
            idx = np.where(voiced, np.arange(f0.shape[0]), -1)
            last = np.maximum.accumulate(idx)
            last[last < 0] = int(np.flatnonzero(voiced)[0])
            out = f0[last]
    else:
        raise ValueError(f"features.unvoiced = {policy!r} is not one of hold, raw")
    return out


# --------------------------------------------------------------------------- analysis


def harmonic_envelope(
    target: np.ndarray, f0: np.ndarray, voicedness: np.ndarray, cfg
) -> np.ndarray:
    """Pitch-invariant timbre features: the log1p levels of harmonics 1..H0
    (``features.envelope_harmonics``), read from the target's harmonic bins ``B*h``;
    ``[n, H0]`` float64.

    N-cycle normalisation puts harmonic ``h`` of any f0 at bin ``B*h`` with the same level
    for the same amplitude (§1.2-1.3), so the same harmonic pattern gives the same features
    at every pitch. A harmonic at or above 0.9 of the analysis Nyquist frequency is not in
    the recording at that pitch: its level continues the trend of the top octave of the
    harmonics below (a least-squares line over log harmonic number), never rising above
    the last of them nor below 0.
    """
    fc = cfg.features
    b, h0 = fc.bins_per_harmonic, fc.envelope_harmonics
    h = np.arange(1, h0 + 1)
    env = np.asarray(target, dtype=np.float64)[:, b * h]
    below = recorded_bins(f0, voicedness, cfg, file_rate=cfg.audio.sample_rate)
    present = np.clip((below - 1) // b, 1, h0)[:, None]  # harmonics 1..present lie below
    missing = h[None, :] > present
    if not missing.any():
        return env
    x = np.log(h)[None, :]
    top = ~missing & (h[None, :] >= np.ceil(present / 2))  # the top octave of the present
    n = top.sum(axis=1, keepdims=True)
    xm = (x * top).sum(axis=1, keepdims=True) / n
    lm = (env * top).sum(axis=1, keepdims=True) / n
    var = (((x - xm) ** 2) * top).sum(axis=1, keepdims=True)
    cov = ((x - xm) * (env - lm) * top).sum(axis=1, keepdims=True)
    slope = np.where(var > 0, cov / np.where(var > 0, var, 1.0), 0.0)
    last = np.take_along_axis(env, present - 1, axis=1)
    guess = np.clip(lm + slope * (x - xm), 0.0, last)
    return np.where(missing, guess, env)


def timbre_width(cfg) -> int:
    """Width of the timbre features the input map takes (``features.timbre``)."""
    fc = cfg.features
    return fc.envelope_harmonics if fc.timbre == "envelope" else fc.n_mfcc


def timbre_features(analysis, cfg) -> np.ndarray:
    """What the timbre controls are computed from (``features.timbre``): the analysis's
    MFCC, or :func:`harmonic_envelope` of its target."""
    if cfg.features.timbre == "envelope":
        a = analysis
        return harmonic_envelope(a.target, a.f0, a.voicedness, cfg)
    return np.asarray(analysis.mfcc)


#: A file recorded at rate ``r`` is trusted up to this share of ``r / 2`` (the recorder's and
#: soxr's anti-alias filters roll off above it).
LOW_RATE_PASSBAND = 0.9


def recorded_bins(f0: np.ndarray, voicedness: np.ndarray, cfg, *, file_rate: int) -> np.ndarray:
    """``[n]`` the bins a file recorded at ``file_rate`` Hz holds per frame: those below
    :data:`LOW_RATE_PASSBAND` of its own Nyquist frequency (:func:`bins_below`)."""
    return bins_below(f0, voicedness, cfg, nyquist=LOW_RATE_PASSBAND * file_rate / 2)


def recorded_noise_bands(edges, *, file_rate: int) -> int:
    """How many of the noise part's bands (``edges`` in Hz, :mod:`wms.noise`) a file recorded
    at ``file_rate`` Hz holds whole: those whose upper edge lies at or below
    :data:`LOW_RATE_PASSBAND` of its own Nyquist frequency, bands ``0 .. count-1``. The
    others, like its bins there, are masked out of the loss and the figures rather than
    learnt as silence (docs/DESIGN.md §6.3)."""
    e = np.asarray(edges, dtype=np.float64)
    return int(np.searchsorted(e[1:], LOW_RATE_PASSBAND * file_rate / 2, side="right"))


def file_noise_bands(rates, edges) -> list[int | None]:
    """Per file of a corpus recorded at ``rates`` Hz, how many of the noise bands (``edges``)
    its loss and figures use: :func:`recorded_noise_bands` for a file recorded below the
    highest of the rates, ``None`` (all of them) for the others."""
    top = max(rates, default=0)
    return [recorded_noise_bands(edges, file_rate=r) if r < top else None for r in rates]


def bins_below(f0: np.ndarray, voicedness: np.ndarray, cfg, *, nyquist: float) -> np.ndarray:
    """How many of each frame's ``K`` target bins stand for frequencies below ``nyquist`` Hz,
    ``[n]`` int32: bins ``0 .. count-1`` do (docs/DESIGN.md §6.3).

    Bin ``k`` of a frame cut with f0 ``f`` (the unvoiced policy's :func:`cutting_f0`) is the
    frequency ``k * f * W / (N * n_fft)``; a ``raw`` frame's bin ``k`` is ``k * sr / n_fft``.
    A file recorded at rate ``r`` below the analysis rate holds nothing above ``r / 2``; its
    bins there are masked out of the loss and the metrics rather than learnt as silence.
    """
    fc = cfg.features
    f0_cut = cutting_f0(
        f0, voicedness, policy=fc.unvoiced, voicing_threshold=cfg.pitch.voicing_threshold
    )
    sr = cfg.audio.sample_rate
    step = _steps(f0_cut, sample_rate=sr, window_size=fc.window_size, cycles=fc.cycles_per_window)
    bin_hz = np.where(np.isfinite(step), sr / step, sr) / fc.n_fft
    return np.clip(np.ceil(nyquist / bin_hz), 0, fc.n_bins).astype(np.int32)


@dataclass(frozen=True)
class Analysis:
    """Per-frame features of one signal; every array has ``n_frames`` rows.

    Attributes:
        f0: ``[n]`` Hz, the tracker's f0 (not the held one).
        voicedness: ``[n]`` 0..1.
        mfcc: ``[n, n_mfcc]`` MFCC of the N-cycle segment (not standardised).
        target: ``[n, n_bins]`` ``log1p`` magnitudes of the N-cycle spectrum.
        noise: ``[n, noise_bands]`` ``log1p`` levels of the noise part
            (:func:`wms.noise.noise_envelope`), ``None`` without one.
    """

    f0: np.ndarray
    voicedness: np.ndarray
    mfcc: np.ndarray
    target: np.ndarray
    noise: np.ndarray | None = None

    def model_target(self, rows: slice = slice(None)) -> np.ndarray:
        """The model's training target ``[n, n_outputs]`` of frames ``rows``: ``target``, then
        ``noise`` if any (only those rows are read from the memory-mapped arrays)."""
        t = np.asarray(self.target[rows], dtype=np.float32)
        if self.noise is None:
            return t
        return np.concatenate([t, np.asarray(self.noise[rows], dtype=np.float32)], axis=1)

    @property
    def n_frames(self) -> int:
        return int(self.f0.shape[0])


@functools.lru_cache(maxsize=16)
def mel_basis(
    *, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> scipy.sparse.csc_array:
    """``librosa.filters.mel`` (Slaney) transposed, ``[n_fft // 2 + 1, n_mels]`` float32.

    Sparse (each bin feeds at most two triangles): ``power @ basis`` then costs ~2
    multiply-adds per bin, with no BLAS thread pool to contend for on a busy machine
    (a dense float32 matmul measured 0.5-11 ms per 1875 frames here, sparse 0.6 ms).
    """
    import librosa

    m = librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float32
    )
    return scipy.sparse.csc_array(m.T)


def spectral_features(
    segments: np.ndarray,
    *,
    sample_rate: int,
    n_fft: int,
    n_bins: int,
    n_mfcc: int,
    n_mels: int,
    mel_fmin: float,
    mel_fmax: float,
    share: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Target and MFCC of N-cycle segments from one rfft.

    Args:
        segments: ``[n, W]`` normalised windows (:func:`ncycle_segments`).
        sample_rate: nominal Hz of the windows (the analysis rate); sets the mel scale.
        n_fft: FFT length (>= W; windows are zero-padded at the end).
        n_bins: K, bins kept in the target. n_mfcc, n_mels: counts.
        mel_fmin, mel_fmax: Hz (nominal); ``mel_fmax = 0`` means ``sample_rate / 2``.
        share: ``[n, K]`` power taken from the target's bins (the noise part's share,
            :func:`wms.noise.noise_share`), never below 0; the MFCC are of the whole power.

    Returns:
        ``(target[n, K], mfcc[n, n_mfcc])`` float32: ``log1p(|X|)`` and the MFCC of
        ``|X|**2`` with ``X = rfft(hann_periodic(W) * segment, n_fft)``.
    """
    w = segments.shape[1]
    x = scipy.fft.rfft(segments * periodic_hann(w), n=n_fft, axis=1)
    power = x.real * x.real + x.imag * x.imag  # float32
    bins = power[:, :n_bins]
    if share is not None:
        bins = np.maximum(bins - share, 0.0)  # float32, as noise_share returns
    target = np.log1p(np.sqrt(bins))
    basis = mel_basis(
        sample_rate=int(sample_rate),
        n_fft=int(n_fft),
        n_mels=int(n_mels),
        fmin=float(mel_fmin),
        fmax=float(mel_fmax) if mel_fmax else sample_rate / 2.0,
    )
    mel_db = 10.0 * np.log10(np.maximum(power @ basis, _MEL_AMIN))
    mfcc = scipy.fft.dct(mel_db, type=2, norm="ortho", axis=1)[:, :n_mfcc]
    return target.astype(np.float32, copy=False), mfcc.astype(np.float32, copy=False)


def analyse(
    y: np.ndarray,
    f0: np.ndarray,
    voicedness: np.ndarray,
    cfg: Config,
    *,
    threads: int | None = None,
) -> Analysis:
    """Everything after pitch tracking: segments, targets and MFCC of a signal.

    Args:
        y: ``[n]`` mono float signal at ``cfg.audio.sample_rate`` Hz.
        f0: ``[n_frames]`` Hz from the tracker (positive, finite), ``n_frames = 1 + n // hop``.
        voicedness: ``[n_frames]`` in 0..1.
        cfg: uses ``audio.sample_rate``, ``pitch.voicing_threshold`` and ``features.*``.
        threads: chunks of 512 frames analysed in parallel (default
            :func:`default_threads`: 1 in processes with ``OMP_NUM_THREADS=1``).
            Results are bit-identical for any value.

    The unvoiced policy (``features.unvoiced``, see :func:`cutting_f0`) only changes
    which f0 cuts a frame's segment; every frame keeps its row. Work is done in chunks
    of frames so temporaries stay bounded (~7 MB per thread at the defaults) for any
    length.

    Returns:
        :class:`Analysis` of float32 arrays with ``n_frames`` rows.

    Raises:
        ValueError: ``y`` not 1-D/empty/not finite; ``f0`` or ``voicedness`` of the
            wrong length; ``f0`` not positive finite; ``voicedness`` not finite.
    """
    where = "analyse"
    fc = cfg.features
    sr = cfg.audio.sample_rate
    y = _check_signal(y, where)
    n_frames = n_frames_for(y.shape[0], fc.hop_size)
    hint = f"y ({y.shape[0]} samples at hop_size {fc.hop_size})"
    f0 = _check_frames(f0, "f0", n_frames, where, hint)
    voicedness = _check_frames(voicedness, "voicedness", n_frames, where, hint)
    bad = ~(np.isfinite(f0) & (f0 > 0))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{where}: f0[{i}] = {float(f0[i])!r} Hz; the tracker's f0 must be positive and finite"
        )
    if not np.all(np.isfinite(voicedness)):
        i = int(np.flatnonzero(~np.isfinite(voicedness))[0])
        raise ValueError(f"{where}: voicedness[{i}] = {float(voicedness[i])!r} is not finite")
    f0_cut = cutting_f0(
        f0, voicedness, policy=fc.unvoiced, voicing_threshold=cfg.pitch.voicing_threshold
    )
    threads = default_threads() if threads is None else _positive_int(threads, "threads", where)
    chunks = _chunks(n_frames, _per_frame_bytes(fc.window_size, fc.n_fft, fc.hop_size))
    steps = _steps(f0_cut, sample_rate=sr, window_size=fc.window_size, cycles=fc.cycles_per_window)
    target = np.empty((n_frames, fc.n_bins), dtype=np.float32)
    mfcc = np.empty((n_frames, fc.n_mfcc), dtype=np.float32)
    noise = np.empty((n_frames, fc.noise_bands), np.float32) if fc.noise_bands else None
    edges = band_edges(sr, fc.noise_bands) if fc.noise_bands else None
    window_rate = np.where(np.isfinite(steps), sr / steps, float(sr))

    def run(a: int, b: int) -> None:
        seg = _segments_range(
            y, steps, a, b, sample_rate=sr, hop_size=fc.hop_size, window_size=fc.window_size
        )
        share = None
        if noise is not None:
            noise[a:b] = noise_envelope(
                y, f0, voicedness, sample_rate=sr, hop_size=fc.hop_size,
                window_size=fc.window_size, n_bands=fc.noise_bands,
                voicing_threshold=cfg.pitch.voicing_threshold, frames=(a, b),
            )  # fmt: skip
            if fc.harmonic_noise == "removed":
                share = noise_share(
                    noise[a:b], window_rate[a:b], n_bins=fc.n_bins, edges=edges,
                    window_size=fc.window_size, n_fft=fc.n_fft,
                )  # fmt: skip
        target[a:b], mfcc[a:b] = spectral_features(
            seg,
            sample_rate=sr,
            n_fft=fc.n_fft,
            n_bins=fc.n_bins,
            n_mfcc=fc.n_mfcc,
            n_mels=fc.n_mels,
            mel_fmin=fc.mel_fmin,
            mel_fmax=fc.mel_fmax,
            share=share,
        )

    _map_chunks(run, chunks, threads)
    return Analysis(
        f0=f0.astype(np.float32),
        voicedness=voicedness.astype(np.float32),
        mfcc=mfcc,
        target=target,
        noise=noise,
    )
