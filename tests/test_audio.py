"""audio.py: reading (mono, resampled), finding and writing audio files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from wms.analysis.audio import find_audio_files, read_audio, resample, write_audio
from wms.errors import AudioError, OutputError


def _sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_stereo_is_averaged_to_mono(tmp_path):
    left = _sine(220.0, 0.2, 16000)
    right = np.full_like(left, 0.1)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    y = read_audio(path, 16000)
    assert y.dtype == np.float32 and y.ndim == 1
    np.testing.assert_array_equal(y, (left + right) / 2)  # measured: identical


def test_resampling_keeps_a_sine_at_its_frequency(tmp_path):
    path = tmp_path / "sine44k.wav"
    sf.write(path, _sine(1000.0, 1.0, 44100), 44100, subtype="FLOAT")
    y = read_audio(path, 16000)
    assert len(y) == 16000  # 1 s at the new rate
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    assert freqs[np.argmax(spec)] == 1000.0  # on its bin (bins are 1 Hz apart)
    # Band-limited: nothing but the tone (and the window's skirt) above -80 dB.
    far = np.abs(freqs - 1000.0) > 50
    level = 20 * np.log10(spec[far].max() / spec.max())
    assert level < -80  # spec
    assert level < -140  # regression: measured -152.4 dB
    assert np.max(np.abs(y)) == pytest.approx(0.5, rel=0.01)


def test_resample_same_rate_is_identity():
    y = _sine(440.0, 0.1, 16000)
    np.testing.assert_array_equal(resample(y, 16000, 16000), y)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: no such file"):
        read_audio(tmp_path / "nope.wav", 16000)


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    with pytest.raises(AudioError, match=r"corrupt\.wav: unreadable or corrupt audio"):
        read_audio(path, 16000)


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav: the file holds no samples"):
        read_audio(path, 16000)


def test_find_audio_files_is_recursive_and_ignores_other_files(tmp_path):
    y = _sine(220.0, 0.05, 16000)
    for rel in ["a.wav", "sub/b.flac", "sub/deeper/C.WAV"]:
        write_audio(tmp_path / rel, y, 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "sub" / "model.wms").write_bytes(b"\x00")
    found = find_audio_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found.files] == [
        "a.wav",
        "sub/b.flac",
        "sub/deeper/C.WAV",
    ]
    assert found.skipped == []
    assert find_audio_files(tmp_path / "a.wav").files == [tmp_path / "a.wav"]
    flac = find_audio_files(tmp_path, extensions=(".flac",)).files
    assert flac == [tmp_path / "sub" / "b.flac"]


def test_find_audio_files_missing_path(tmp_path):
    with pytest.raises(AudioError, match=r"missing: no such file or folder"):
        find_audio_files(tmp_path / "missing")


@pytest.mark.parametrize(
    ("subtype", "tol"), [("FLOAT", 0.0), ("PCM_24", 2**-23), ("PCM_16", 2**-15)]
)
def test_write_audio_round_trip(tmp_path, subtype, tol):
    y = _sine(330.0, 0.1, 16000, amp=0.9)
    path = write_audio(tmp_path / "out" / "x.wav", y, 16000, subtype=subtype)
    assert sf.info(path).samplerate == 16000
    np.testing.assert_allclose(read_audio(path, 16000), y, atol=tol)


def test_write_audio_reports_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"x.wav: cannot write"):
        write_audio(blocker / "x.wav", np.zeros(10), 16000)
