"""Measurements of rendered audio used by the synth tests and benchmarks (docs/DESIGN.md §5).

Pure functions on mono float arrays with an explicit ``sample_rate`` (Hz).
"""

from __future__ import annotations

import numpy as np
from scipy.signal.windows import blackmanharris

from wms.analysis.pitch import cents_error as cents  # noqa: F401  (re-exported for the synth tests)

#: Half-width, in FFT bins of the unpadded window, of the 4-term Blackman-Harris main lobe.
_LOBE = 4.0


def _spectrum(y: np.ndarray, pad: int) -> tuple[np.ndarray, int]:
    y = np.asarray(y, dtype=np.float64)
    w = blackmanharris(y.size, sym=False)
    nfft = y.size * pad
    mag = np.abs(np.fft.rfft((y - y.mean()) * w, nfft))
    return mag, nfft


def peak_frequency(
    y: np.ndarray, *, sample_rate: float, near: float, width: float = 0.03, pad: int = 8
) -> float:
    """Frequency (Hz) of the largest spectral peak within ``near * (1 +- width)``, refined by
    a parabola through the log magnitudes of the peak bin and its neighbours."""
    mag, nfft = _spectrum(y, pad)
    hz = sample_rate / nfft
    lo = max(1, int(near * (1 - width) / hz))
    hi = min(mag.size - 2, int(near * (1 + width) / hz) + 1)
    k = lo + int(np.argmax(mag[lo:hi]))
    a, b, c = np.log(mag[k - 1 : k + 2] + 1e-300)
    d = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    return (k + d) * hz


def measure_f0(
    y: np.ndarray, *, sample_rate: float, f0: float, harmonic: int | None = None
) -> float:
    """f0 (Hz) of a steady periodic signal near ``f0``, measured on harmonic ``harmonic``
    (default: the strongest of the first 10 below 0.45 * sample_rate) divided by its number."""
    if harmonic is None:
        mag, nfft = _spectrum(y, 1)
        hz = sample_rate / nfft
        hs = [h for h in range(1, 11) if h * f0 < 0.45 * sample_rate]
        harmonic = max(hs, key=lambda h: mag[int(round(h * f0 / hz))])
    return peak_frequency(y, sample_rate=sample_rate, near=harmonic * f0) / harmonic


def inharmonic_level_db(y: np.ndarray, *, sample_rate: float, f0: float, pad: int = 2) -> float:
    """Level (dB) of the strongest spectral component *not* at a multiple of ``f0`` (outside
    the window's main lobe around each ``k * f0``, k >= 0) relative to the strongest one at
    a multiple. 4-term Blackman-Harris window (side lobes -92 dB)."""
    mag, nfft = _spectrum(y, pad)
    hz = sample_rate / nfft
    f = np.arange(mag.size) * hz
    k = np.round(f / f0)
    near = np.abs(f - k * f0) <= _LOBE * sample_rate / y.size
    return float(20 * np.log10(mag[~near].max() / mag[near].max()))


def sweep_inharmonic_db(
    y: np.ndarray, f0_track: np.ndarray, *, sample_rate: float, frame: int = 4096, hop: int = 2048
) -> float:
    """Worst (highest) per-frame inharmonic level (dB) of a pitch sweep.

    ``f0_track[n]`` is the played f0 per sample; in each frame, components within the main
    lobe of ``h * [min f0, max f0]`` of the frame are harmonic; the rest is compared with
    the frame's strongest component."""
    worst = -np.inf
    w = blackmanharris(frame, sym=False)
    f = np.fft.rfftfreq(frame, 1.0 / sample_rate)
    lobe = _LOBE * sample_rate / frame
    for s in range(0, y.size - frame, hop):
        mag = np.abs(np.fft.rfft(y[s : s + frame] * w))
        lo, hi = float(f0_track[s : s + frame].min()), float(f0_track[s : s + frame].max())
        h_hi = np.floor((f + lobe) / lo)
        h_lo = np.maximum(np.ceil((f - lobe) / hi), 0)
        # harmonic if some h in [h_lo, h_hi] has h*[lo, hi] within a lobe of f
        near = h_hi >= h_lo
        near |= f <= lobe
        if mag.max() <= 0 or near.all():
            continue
        worst = max(worst, float(20 * np.log10(mag[~near].max() / mag.max() + 1e-300)))
    return worst


def rms_envelope_db(
    y: np.ndarray, *, sample_rate: float, f0: float, seconds: float = 0.010
) -> np.ndarray:
    """RMS (dB) over consecutive windows of ``seconds`` rounded to whole periods of ``f0``
    (so a perfect steady tone gives a flat envelope whatever its waveform)."""
    period = sample_rate / f0
    n = max(1, round(seconds / (period / sample_rate))) * period
    starts = np.arange(0, y.size - n, n)
    out = []
    c = np.concatenate([[0.0], np.cumsum(np.asarray(y, dtype=np.float64) ** 2)])
    for s in starts:
        a, b = s, s + n
        # fractional window ends by linear interpolation of the cumulative energy
        ea = np.interp(a, np.arange(c.size), c)
        eb = np.interp(b, np.arange(c.size), c)
        out.append(10 * np.log10((eb - ea) / n + 1e-30))
    return np.asarray(out)


def max_second_difference(y: np.ndarray) -> float:
    """Largest ``|y[n+1] - 2 y[n] + y[n-1]|`` — large at clicks and corners."""
    y = np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(y[2:] - 2 * y[1:-1] + y[:-2])))
