"""The noise part of the model contract: its bands, its analysis and its filters
(docs/DESIGN.md §1.7, docs/SYNTH.md "Noise", docs/EXPORT.md "The noise part").

A model trained with ``features.noise_bands = B > 0`` predicts, beside the harmonic
spectrum, the level of the sound the harmonics do not explain in ``B`` frequency bands;
the synth adds white noise shaped by them. This module is the one definition every stage
uses: the analysis (:func:`noise_envelope`), the engines (:func:`band_filters`, the
generator constants) and the exports (which state the same constants).

**Bands.** ``B`` bands equally spaced on the (Slaney) mel scale from 0 Hz to the analysis
Nyquist frequency (:func:`band_edges`); absolute frequencies, not pitch-relative, since
breath, bow and consonant noise stay put when the pitch moves.

**Level.** A band's value ``v`` is the noise's power in the band expressed in the harmonic
outputs' units: a band of level ``v`` has the power of a harmonic of amplitude ``v``
(both ``log1p`` in the output vector). The harmonic outputs are magnitudes of a Hann
window of ``W`` samples, ``W / 4`` times a sinusoid's amplitude, so ``v = sqrt(2 P) * W / 4``
for a band of power (variance) ``P`` in the signal.

**Analysis** (:func:`noise_envelope`): Blackman STFT of :func:`noise_fft` samples (~92 ms;
its sidelobes are 58 dB down, where a Hann window's leave a clean tone's residual at -31 dB)
centred on the analysis frames; in a voiced frame the bins within :data:`LOBE_BINS` bins (the
main lobe) of a multiple of f0 are the harmonics' and are left out, the rest are the residual
(as the evaluation's noise share splits them, :func:`wms.evaluation.metrics.energy_parts`);
unvoiced frames are all residual. A band's power is its mean residual bin power times its
width in bins; a band with no residual bin (notes below about 65 Hz at 44.1 kHz, whose
harmonics are closer than two main lobes) takes the mean bin power of the nearest band that
has one.

**Synthesis** (:func:`band_filters`): per voice one uniform generator (the :data:`LCG_A`,
:data:`LCG_C` generator below, identical in every engine), one draw per band per sample, so
the bands are independent and their powers add; band ``b``'s draws go through ``S``
identical second-order band-pass stages (``synth.noise_stages``: 3 by default, 2 in bundles
made before wms 0.3.0; RBJ's constant-0-dB-peak band-pass at the band's geometric centre,
stage ``Q = centre / width * stage_q(S)``, so the cascade's -3 dB points are the band edges;
each stage falls 6 dB per octave outside the band), and its output is multiplied by
``g_b = scale * v_b * coef_b`` with ``coef_b = fade_b / sqrt(2 G_b / 3)`` (``G_b`` the
cascade's white-noise power gain, :func:`cascade_power_gain`; 1/3 is the source's
variance), so the band has the power of a harmonic of amplitude
``scale * v_b``, the scale the engine gives the harmonics. Gains move linearly over a control
step, like the harmonic tables. (A single source through second-order bands cancelled in the
skirts of neighbouring bands: a flat envelope came out 4 dB low.)
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import scipy.fft

#: Bins on each side of a harmonic that belong to it (the Blackman window's main lobe).
LOBE_BINS = 3.0
#: Length of the noise analysis window in seconds (rounded to a power of two of samples).
NOISE_WINDOW_SECONDS = 0.092
#: The noise generator, a 32-bit linear congruential generator:
#: ``state = (LCG_A * state + LCG_C) mod 2**32``, sample ``state / 2**31 - 1`` in [-1, 1)
#: (variance 1/3). Voice ``v`` of an engine starts from state :func:`noise_seed` ``(v)``.
LCG_A, LCG_C = 1664525, 1013904223
#: Variance of the generator's samples (uniform on [-1, 1)).
SOURCE_VARIANCE = 1.0 / 3.0
#: Stages of a band's filter (``synth.noise_stages``) this module and the engines accept.
MAX_STAGES = 8


def stage_q(stages: int) -> float:
    """Each stage's Q as a factor of the band's, so that ``stages`` identical stages in cascade
    have their -3 dB points at the band edges: ``sqrt(2 ** (1 / stages) - 1)`` (two stages:
    ``sqrt(sqrt(2) - 1)``, the same float)."""
    return math.sqrt(2.0 ** (1.0 / stages) - 1.0)


#: Samples of impulse response summed for a filter's power gain.
GAIN_SAMPLES = 16384
#: Frames analysed per chunk (bounds the temporaries: ~20 MB at 44.1 kHz).
_CHUNK_FRAMES = 1024
#: Equivalent noise bandwidth of the harmonic analysis's periodic Hann window, in bins: a
#: white noise leaves 1.5 bins' worth of its spectrum in each bin (:func:`noise_share`).
HANN_ENBW_BINS = 1.5


def noise_seed(voice: int) -> int:
    """The generator's start state for engine voice ``voice`` (0-based)."""
    return (2654435761 * (voice + 1)) % 2**32


def noise_fft(sample_rate: int) -> int:
    """Samples of the noise analysis window: the power of two nearest 92 ms (2048 at 16 kHz,
    4096 at 44.1 and 48 kHz)."""
    return 2 ** round(math.log2(NOISE_WINDOW_SECONDS * sample_rate))


def band_edges(sample_rate: int, n_bands: int) -> np.ndarray:
    """``[n_bands + 1]`` Hz: edges equally spaced in Slaney mel from 0 to ``sample_rate / 2``.

    Raises:
        ValueError: ``n_bands < 1``.
    """
    import librosa

    if n_bands < 1:
        raise ValueError(f"n_bands = {n_bands}: a noise part needs at least one band")
    edges = librosa.mel_frequencies(n_bands + 1, fmin=0.0, fmax=sample_rate / 2.0, htk=False)
    edges[0], edges[-1] = 0.0, sample_rate / 2.0
    return edges.astype(np.float64)


def band_centres(edges: np.ndarray) -> np.ndarray:
    """``[B]`` Hz: the geometric centre of each band (half the top edge for a band from 0)."""
    e = np.asarray(edges, dtype=np.float64)
    lo, hi = e[:-1], e[1:]
    return np.where(lo > 0, np.sqrt(lo * np.maximum(hi, 0.0)), 0.5 * hi)


@functools.lru_cache(maxsize=8)
def _analysis_layout(sample_rate: int, n_bands: int) -> tuple:
    """``(n, window, sum_w2, band_of, widths)`` of :func:`noise_envelope` at this rate: the
    window length and its Blackman window, the band of every bin (bins 1 .. n/2 - 1; band
    b: ``edges[b] <= f < edges[b + 1]``; DC and Nyquist belong to none, -1) and each band's
    width in bins."""
    from scipy.signal import get_window  # here: the synth imports this module, not scipy.signal

    n = noise_fft(sample_rate)
    df = sample_rate / n
    window = get_window("blackman", n, fftbins=True).astype(np.float32)
    sum_w2 = float(np.sum(window.astype(np.float64) ** 2))
    edges = band_edges(sample_rate, n_bands)
    freqs = np.arange(n // 2 + 1) * df
    band_of = np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, n_bands - 1)
    band_of[0] = band_of[-1] = -1
    return n, window, sum_w2, band_of, np.diff(edges) / df


def noise_envelope(
    y: np.ndarray,
    f0: np.ndarray,
    voicedness: np.ndarray,
    *,
    sample_rate: int,
    hop_size: int,
    window_size: int,
    n_bands: int,
    voicing_threshold: float,
    frames: tuple[int, int] | None = None,
) -> np.ndarray:
    """The noise part's targets ``[n_frames, n_bands]`` float32: ``log1p(v)`` per band.

    Args:
        y: ``[n]`` the signal at ``sample_rate``. f0, voicedness: ``[n_frames]`` per analysis
            frame (frame ``i`` centred at sample ``i * hop_size``).
        window_size: W of the harmonic analysis (sets the units, see the module docstring).
        voicing_threshold: frames at or above it have harmonics to leave out.
        frames: ``(a, b)``: only frames ``a .. b - 1`` (``[b - a, n_bands]``; the analysis
            runs its chunks in threads this way), else all.
    """
    y = np.asarray(y, dtype=np.float32)
    f0 = np.asarray(f0, dtype=np.float64)
    a0, b0 = frames if frames is not None else (0, f0.shape[0])
    n, window, sum_w2, band_of, widths = _analysis_layout(int(sample_rate), int(n_bands))
    voiced = np.asarray(voicedness[a0:b0]) >= voicing_threshold
    fv = np.where(voiced & np.isfinite(f0[a0:b0]) & (f0[a0:b0] > 0), f0[a0:b0], 0.0)
    padded = np.pad(y, (n // 2, n // 2 + hop_size))
    view = np.lib.stride_tricks.sliding_window_view(padded, n)[::hop_size]
    out = np.zeros((b0 - a0, n_bands), dtype=np.float32)
    # power -> v: P_b = 2 * width_b * mean_b / (n * sum w^2) (width in bins), v = sqrt(2 P_b) W / 4
    unit = 4.0 / (n * sum_w2) * (window_size / 4.0) ** 2
    mean = np.empty((min(_CHUNK_FRAMES, b0 - a0), n_bands))
    for a in range(a0, b0, _CHUNK_FRAMES):
        b = min(a + _CHUNK_FRAMES, b0)
        x = scipy.fft.rfft(view[a:b] * window, axis=1)
        m = mean[: b - a]
        _residual_means(x, fv[a - a0 : b - a0], sample_rate / n, LOBE_BINS, band_of, m)
        out[a - a0 : b - a0] = np.log1p(np.sqrt(unit * widths * m))
    return out


@numba.njit(cache=True, nogil=True)
def _residual_means(x, f0, df, lobe, band_of, out):  # pragma: no cover - numba
    """Per frame ``r`` (spectrum ``x[r]``, f0 ``f0[r]``, 0 = unvoiced): ``out[r, b]`` the mean
    power of band b's bins farther than ``lobe`` bins from every multiple of f0; a band with
    no such bin takes the nearest band's (the lower one on a tie), all 0 if none has one."""
    n_bands = out.shape[1]
    tot = np.empty(n_bands)
    cnt = np.empty(n_bands, np.int64)
    for r in range(x.shape[0]):
        f = f0[r]
        tot[:] = 0.0
        cnt[:] = 0
        for k in range(x.shape[1]):
            band = band_of[k]
            if band < 0:
                continue
            if f > 0.0:
                fk = k * df
                h = math.floor(fk / f + 0.5)
                if h >= 1.0 and abs(fk - h * f) <= lobe * df:
                    continue
            v = x[r, k]
            tot[band] += v.real * v.real + v.imag * v.imag
            cnt[band] += 1
        for band in range(n_bands):
            best, dist = -1, n_bands + 1
            for o in range(n_bands):
                if cnt[o] > 0 and abs(o - band) < dist:
                    best, dist = o, abs(o - band)
            out[r, band] = tot[best] / cnt[best] if best >= 0 else 0.0


def noise_share(
    levels: np.ndarray,
    window_rate: np.ndarray,
    *,
    n_bins: int,
    edges: np.ndarray,
    window_size: int,
    n_fft: int,
) -> np.ndarray:
    """``[n, n_bins]`` float32: the expected power ``E|X_k|^2`` the noise part's levels leave
    in each bin of the harmonic analysis, which ``features.harmonic_noise = "removed"`` takes
    from the bins' power, never below 0 (docs/DESIGN.md §1.7).

    Bin ``k`` of the harmonic analysis (a periodic Hann window of ``W`` samples at
    ``r = window_rate`` Hz of the recording, zero-padded to ``n_fft``) stands for
    ``k r / n_fft`` Hz. A noise of level ``v`` in band ``b`` (``Wb`` Hz wide: power
    ``P = 8 v^2 / W^2``, a spectrum of ``P / Wb`` per Hz) leaves it an expected power of
    ``E|X_k|^2 = 1.5 v^2 r / (W Wb)`` (the window's ``sum w^2 = 3 W / 8``), none above the
    last edge (the recording's Nyquist frequency: the bins of a slow window reach past it,
    and hold nothing there). Without taking it out, a noise is played twice: by the noise
    part, and as harmonics whose amplitudes hold that share.

    Args:
        levels: ``[n, B]`` the noise part, ``log1p v``.
        window_rate: ``[n]`` Hz, each frame's window rate (``sample_rate / step``).
        edges: ``[B + 1]`` the bands' edges in Hz.
    """
    rate = np.asarray(window_rate, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    v = np.expm1(np.asarray(levels, dtype=np.float64))
    per_band = (HANN_ENBW_BINS / window_size) * v * v * rate[:, None] / np.diff(e)[None, :]
    out = np.empty((len(rate), n_bins), dtype=np.float32)
    _spread_bands(rate, np.ascontiguousarray(per_band), e, float(n_fft), out)
    return out


@numba.njit(cache=True, nogil=True)
def _spread_bands(rate, per_band, edges, n_fft, out):  # pragma: no cover - numba
    """``out[r, k]``: the value of the band holding bin k's frequency ``rate[r] k / n_fft``
    (found by walking the edges, as it rises with k), 0 from the last edge up."""
    n_bands = per_band.shape[1]
    for r in range(out.shape[0]):
        band = 0
        for k in range(out.shape[1]):
            hz = rate[r] * k / n_fft
            while band < n_bands and hz >= edges[band + 1]:
                band += 1
            out[r, k] = per_band[r, band] if band < n_bands else 0.0


def band_filters(
    edges: np.ndarray, sample_rate: float, *, stages: int, band_edge: float = 0.9
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The synth's filter bank at output rate ``sample_rate``: ``(b0, a1, a2, coef)``, ``[B]``
    float64 each.

    Band ``b`` filters ``y[n] = b0 (x[n] - x[n-2]) - a1 y[n-1] - a2 y[n-2]`` ``stages`` times
    in cascade (RBJ band-pass, constant 0 dB peak, at :func:`band_centres` with
    ``Q = centre / width * stage_q(stages)``, normalised by ``1 + alpha``). ``coef`` turns a
    band level into the gain of that filter's output (module docstring), faded out like the
    harmonics between ``band_edge`` x Nyquist and Nyquist (0 above; such a band's filter is
    left at zero).
    """
    from wms.synth.tables import band_limit_gain_hz

    e = np.asarray(edges, dtype=np.float64)
    fc = band_centres(e)
    width = e[1:] - e[:-1]
    nyquist = 0.5 * float(sample_rate)
    fade = band_limit_gain_hz(fc, nyquist, band_edge)
    b0 = np.zeros_like(fc)
    a1 = np.zeros_like(fc)
    a2 = np.zeros_like(fc)
    coef = np.zeros_like(fc)
    on = fade > 0
    w0 = 2.0 * np.pi * fc[on] / sample_rate
    alpha = np.sin(w0) / (2.0 * stage_q(stages) * (fc[on] / width[on]))
    b0[on] = alpha / (1.0 + alpha)
    a1[on] = -2.0 * np.cos(w0) / (1.0 + alpha)
    a2[on] = (1.0 - alpha) / (1.0 + alpha)
    coef[on] = fade[on] / np.sqrt(
        2.0 * SOURCE_VARIANCE * cascade_power_gain(b0[on], a1[on], a2[on], stages)
    )
    return b0, a1, a2, coef


def cascade_power_gain(b0: np.ndarray, a1: np.ndarray, a2: np.ndarray, stages: int) -> np.ndarray:
    """White-noise power gain ``sum_n h[n]^2`` of each band's ``stages``-stage filter
    (float64), from its impulse response over :data:`GAIN_SAMPLES` samples (the hosts compute
    the same sum the same way; the responses have decayed by far more than 300 dB by then)."""
    from scipy.signal import sosfilt

    impulse = np.zeros(GAIN_SAMPLES)
    impulse[0] = 1.0
    out = np.empty(len(b0))
    for i, (c0, c1, c2) in enumerate(zip(b0, a1, a2, strict=True)):
        stage = [c0, 0.0, -c0, 1.0, c1, c2]
        out[i] = np.sum(sosfilt([stage] * stages, impulse) ** 2)
    return out
