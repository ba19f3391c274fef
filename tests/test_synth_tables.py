"""Wavetables from spectra: exact maths (wms.synth.tables)."""

import numpy as np
import pytest

from wms.interface import OutputLayout
from wms.synth import kernels as K
from wms.synth.tables import (
    BAND_EDGE,
    TABLE_RMS,
    band_limit,
    band_limit_gains,
    make_tables,
    normalise_amplitudes,
)
from wms.synth.testing import spectrum_from_harmonics


def test_harmonic_amplitudes_take_bins_n_times_h_with_expm1():
    rng = np.random.default_rng(0)
    spec = rng.uniform(0, 3, (4, 80)).astype(np.float32)
    amps = OutputLayout.spectrum_bins(80, 2).harmonics(spec)
    assert amps.shape == (4, 39)  # bins 2, 4, .., 78
    np.testing.assert_array_equal(amps, np.expm1(spec[:, 2:79:2]))
    # N = 3: bins 3, 6, .., 78
    assert OutputLayout.spectrum_bins(80, 3).harmonics(spec).shape == (4, 26)


def test_table_is_the_zero_phase_inverse_rfft_of_one_cycle():
    amps = np.array([1.0, 0.5, 0.0, 0.25], np.float32)
    size = 64
    table = make_tables(amps, size)
    spec = np.zeros(size // 2 + 1, complex)
    spec[1:5] = amps * size / 2  # irfft scaling of a cosine of amplitude a
    ref = np.fft.irfft(spec, size)
    np.testing.assert_allclose(table[1 : size + 1], ref, atol=1e-6)
    # guard samples wrap around the cycle (measured 7.5e-10: float32 rounding)
    np.testing.assert_allclose(table[0], ref[-1], atol=5e-9)
    np.testing.assert_allclose(table[size + 1 : size + 3], ref[:2], atol=5e-9)


def test_normalised_tables_have_the_stated_rms():
    rng = np.random.default_rng(1)
    amps = normalise_amplitudes(rng.uniform(0, 5, (3, 39)))
    tables = make_tables(amps, 2048)[:, 1:2049]
    np.testing.assert_allclose(np.sqrt(np.mean(tables**2, axis=1)), TABLE_RMS, rtol=1e-5)
    assert not normalise_amplitudes(np.zeros(39)).any()


@pytest.mark.parametrize("sr", [16000, 44100, 48000, 96000])
def test_band_limit_removes_harmonics_at_or_above_nyquist(sr):
    f0 = 3999.7
    g = band_limit_gains(f0, 39, sample_rate=sr)
    f = f0 * np.arange(1, 40)
    assert np.all(g[f >= sr / 2] == 0)
    assert np.all(g[f <= BAND_EDGE * sr / 2] == 1)
    assert np.all(np.diff(g) <= 0)  # a taper, never a boost
    # the numba kernel used by the engine is the same function
    k = np.array([K.band_gain(x, sr / 2, BAND_EDGE) for x in f])
    np.testing.assert_allclose(k, g, atol=1e-7)
    np.testing.assert_allclose(band_limit(np.ones(39), f0, sample_rate=sr), g)


def test_spectrum_helper_round_trips():
    amps = np.linspace(1, 0.1, 39)
    np.testing.assert_allclose(
        OutputLayout.spectrum_bins(80, 2).harmonics(spectrum_from_harmonics(amps)), amps, rtol=1e-6
    )


def test_schroeder_phases_keep_the_spectrum_and_cut_the_crest_factor():
    from wms.synth.tables import cosine_basis, make_tables

    h_n, s = 160, 2048
    basis = cosine_basis(h_n, s, "schroeder")
    j = np.arange(-1, s + 2)
    h = np.arange(1, h_n + 1)[:, None]
    direct = np.cos(2 * np.pi * h * j / s - np.pi * h * (h - 1) / h_n)
    assert np.max(np.abs(basis - direct)) < 1e-6  # the integer reduction is the same phase
    # zero phase is unchanged: cos(2 pi h j / S)
    np.testing.assert_array_equal(
        cosine_basis(h_n, s), np.cos(2 * np.pi * np.mod(h * j, s) / s).astype(np.float32)
    )
    flat = np.ones(h_n, np.float32)
    crest = {}
    for phases in ("zero", "schroeder"):
        table = make_tables(flat, s, phases)[1 : s + 1].astype(np.float64)
        mags = np.abs(np.fft.rfft(table)) / (s / 2)
        np.testing.assert_allclose(mags[1 : h_n + 1], 1.0, atol=2e-5)  # the same harmonics
        assert np.max(mags[h_n + 1 :]) < 2e-5 and abs(mags[0]) < 2e-5
        crest[phases] = np.max(np.abs(table)) / np.sqrt(np.mean(table**2))
    # a flat 160-harmonic spectrum: sqrt(2 * 160) = 17.9 at zero phase; Schroeder's measured 1.66
    assert crest["zero"] == pytest.approx(np.sqrt(2 * h_n), rel=1e-3)
    assert crest["schroeder"] < 1.8
    with pytest.raises(ValueError, match="phases = 'random' is not one of zero, schroeder"):
        cosine_basis(4, 16, "random")
