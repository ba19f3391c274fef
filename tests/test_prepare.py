"""prepare.py: the `wms prepare` pipeline over the feature cache."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

import wms.analysis.pitch
from conftest import FULLBAND_SET, REFERENCE_SET, reference_config
from wms.analysis.prepare import analyse_file, prepare
from wms.cli import main
from wms.errors import AudioError, ConfigError, DataError, OutputError

SR = 16000
CFG = reference_config()  # the mechanics below are written for the 16 kHz layout


def _tone(f0: float, seconds: float, sr: int = SR) -> np.ndarray:
    saw = 1.0 / np.arange(1, 11)
    return wms.analysis.pitch.harmonic_tone(f0, saw, sample_rate=sr, n_samples=round(seconds * sr))


def _write(path, y, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr, subtype="FLOAT")
    return path


@pytest.fixture
def mixed(tmp_path):
    """good + stereo 44.1 kHz (usable); corrupt, silent, 0.3 s (not); and a text file."""
    d = tmp_path / "audio"
    _write(d / "good.wav", _tone(220.0, 1.2))
    stereo = np.stack([_tone(330.0, 1.2, 44100), 0.5 * _tone(330.0, 1.2, 44100)], axis=1)
    _write(d / "sub" / "stereo44k.wav", stereo, 44100)
    (d / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage" * 50)
    _write(d / "silent.wav", np.zeros(SR, np.float32))
    _write(d / "short.wav", _tone(220.0, 0.3))
    (d / "readme.txt").write_text("not audio")
    return d


@pytest.fixture
def count_tracking(monkeypatch):
    """Counts pitch-tracker calls (= analyses) in this process (jobs=1)."""
    calls = []
    real = wms.analysis.pitch.estimate_pitch

    def counted(y, **kw):
        calls.append(len(y))
        return real(y, **kw)

    monkeypatch.setattr(wms.analysis.pitch, "estimate_pitch", counted)
    return calls


def _run(path, cache, cfg=CFG, jobs=1):
    return prepare(path, cfg, cache_dir=cache, jobs=jobs, progress=False)


def test_mixed_folder_uses_good_files_and_reports_the_rest(mixed, tmp_path):
    corpus = _run(mixed, tmp_path / "cache")
    assert [f.path.name for f in corpus.files] == ["good.wav", "stereo44k.wav"]
    reasons = {p.name: why for p, why in corpus.skipped}
    assert set(reasons) == {"corrupt.wav", "silent.wav", "short.wav"}
    assert "unreadable or corrupt" in reasons["corrupt.wav"]
    assert reasons["silent.wav"].startswith("silent: peak -inf dBFS")
    assert reasons["short.wav"].startswith("too short: 0.30 s gives 19 frames")
    for f in corpus.files:
        n = 1 + round(1.2 * SR) // CFG.features.hop_size  # stereo file resampled to 16 kHz
        a = f.analysis
        assert a.f0.shape == a.voicedness.shape == (n,)
        assert a.mfcc.shape == (n, CFG.features.n_mfcc) and a.target.shape == (
            n,
            CFG.features.n_bins,
        )
        assert all(isinstance(x, np.memmap) for x in (a.f0, a.voicedness, a.mfcc, a.target))
    good, stereo = corpus.files
    # measured 220.0021 (rel 9.5e-6) and, resampled from 44.1 kHz, 330.034 (rel 1.0e-4)
    assert np.median(good.analysis.f0) == pytest.approx(220.0, rel=5e-5)
    assert np.median(stereo.analysis.f0) == pytest.approx(330.0, rel=5e-4)
    s = corpus.summary
    assert (s["files_used"], s["files_skipped"], s["cache_hits"], s["files_analysed"]) == (
        2,
        3,
        0,
        2,
    )
    assert s["frames"] == 2 * n and s["voiced_share"] == 1.0  # two clean tones
    assert s["audio_seconds"] == pytest.approx(2.4)


def test_rerun_does_no_analysis_and_added_file_is_the_only_one_analysed(
    mixed, tmp_path, count_tracking
):
    cache = tmp_path / "cache"
    first = _run(mixed, cache)
    assert len(count_tracking) == 2
    again = _run(mixed, cache)
    assert len(count_tracking) == 2  # nothing tracked again
    assert again.summary["cache_hits"] == 2 and again.summary["files_analysed"] == 0
    assert again.skipped == first.skipped
    for a, b in zip(first.files, again.files, strict=True):
        np.testing.assert_array_equal(a.analysis.target, b.analysis.target)
    _write(mixed / "new.wav", _tone(150.0, 1.0))
    third = _run(mixed, cache)
    assert count_tracking[2:] == [SR]  # only the new 1 s file
    assert third.summary["files_used"] == 3 and third.summary["cache_hits"] == 2


def test_changing_an_analysis_setting_reanalyses(mixed, tmp_path, count_tracking):
    cache = tmp_path / "cache"
    _run(mixed, cache)
    _run(mixed, cache, cfg=CFG.replace(features={"n_mfcc": 5}))
    assert len(count_tracking) == 4
    # Train-time settings do not invalidate the cache.
    _run(mixed, cache, cfg=CFG.replace(features={"reduction": "pca"}, data={"seq_len": 20}))
    assert len(count_tracking) == 4


def test_usability_settings_apply_to_cached_entries_without_analysis(
    mixed, tmp_path, count_tracking
):
    cache = tmp_path / "cache"
    _run(mixed, cache)
    longer = CFG.replace(data={"seq_len": 200})  # 200 frames = 3.2 s > every file
    with pytest.raises(DataError, match=r"good\.wav: too short: 1\.20 s gives 76 frames"):
        _run(mixed, cache, cfg=longer)
    with pytest.raises(DataError, match=r"good\.wav: silent: peak -6\.0 dBFS"):
        _run(mixed, cache, cfg=CFG.replace(audio={"silence_db": -3.0}))
    assert len(count_tracking) == 2


def test_no_voiced_frames_is_reported_and_remembered(tmp_path, count_tracking):
    d = tmp_path / "audio"
    _write(d / "good.wav", _tone(200.0, 1.0))
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, SR).astype(np.float32)
    _write(d / "noise.wav", noise)
    corpus = _run(d, tmp_path / "cache")
    assert [(p.name, why[:16]) for p, why in corpus.skipped] == [("noise.wav", "no voiced frames")]
    _run(d, tmp_path / "cache")
    assert len(count_tracking) == 2  # the rejection is cached too


def test_nothing_usable_raises_with_the_reasons(mixed, tmp_path):
    for name in ("good.wav", "sub/stereo44k.wav"):
        (mixed / name).unlink()
    with pytest.raises(DataError, match=r"nothing usable") as e:
        _run(mixed, tmp_path / "cache")
    msg = str(e.value)
    assert "3 file(s) skipped" in msg
    for name, why in [
        ("corrupt.wav", "unreadable"),
        ("silent.wav", "silent"),
        ("short.wav", "too short"),
    ]:
        assert f"{name}: {why}" in msg


def test_no_audio_files_and_missing_path(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match=r"no audio files found"):
        _run(tmp_path, tmp_path / "cache")
    with pytest.raises(AudioError, match=r"missing: no such file or folder"):
        _run(tmp_path / "missing", tmp_path / "cache")


def test_bad_jobs(mixed, tmp_path):
    with pytest.raises(ConfigError, match=r"--jobs = 0 must be"):
        _run(mixed, tmp_path / "cache", jobs=0)


def test_leftover_temp_and_corrupt_entry_are_not_trusted(mixed, tmp_path, count_tracking):
    cache = tmp_path / "cache"
    corpus = _run(mixed / "good.wav", cache)
    key = corpus.files[0].key
    # Copy before damaging the file: a memory map over a truncated file faults (SIGBUS).
    expected = np.array(corpus.files[0].analysis.target)
    del corpus
    entry = cache / "entries" / key
    # A crashed writer's temp copy with garbage, and the real entry damaged.
    leftover = cache / "tmp" / f"{key}.999.deadbeef"
    leftover.mkdir()
    np.save(leftover / "target.npy", np.full((3, 80), 7, np.float32))
    (entry / "target.npy").write_bytes(b"\x93NUMPY garbage")
    again = _run(mixed / "good.wav", cache)
    assert len(count_tracking) == 2  # re-analysed
    assert again.summary["files_analysed"] == 1
    assert any("corrupt" in n and "good.wav" in n for n in again.summary["notes"])
    np.testing.assert_array_equal(again.files[0].analysis.target, expected)


def test_duplicate_content_is_analysed_once(tmp_path, count_tracking):
    d = tmp_path / "audio"
    y = _tone(250.0, 1.0)
    _write(d / "a.wav", y)
    _write(d / "copy" / "a.wav", y)
    corpus = _run(d, tmp_path / "cache")
    assert len(count_tracking) == 1
    assert [f.key for f in corpus.files][0] == corpus.files[1].key


def test_analyse_file_reports_bad_files(mixed):
    with pytest.raises(AudioError, match=r"silent\.wav: silent"):
        analyse_file(mixed / "silent.wav", CFG)
    with pytest.raises(AudioError, match=r"short\.wav: too short"):
        analyse_file(
            mixed / "short.wav", CFG.replace(features={"window_size": 8192, "n_fft": 8192})
        )
    a = analyse_file(mixed / "good.wav", CFG)
    assert a.target.shape == (1 + round(1.2 * SR) // 256, 80)


@pytest.mark.slow
def test_parallel_jobs_give_identical_arrays(mixed, tmp_path):
    serial = _run(mixed, tmp_path / "c1", jobs=1)
    parallel = _run(mixed, tmp_path / "c2", jobs=2)
    assert parallel.summary["files_analysed"] == 2
    assert parallel.skipped == serial.skipped
    for a, b in zip(serial.files, parallel.files, strict=True):
        assert a.key == b.key
        for name in ("f0", "voicedness", "mfcc", "target"):
            np.testing.assert_array_equal(getattr(a.analysis, name), getattr(b.analysis, name))


def test_cli_prepare_prints_the_summary(mixed, tmp_path, capsys):
    cache = tmp_path / "cache"
    argv = ["prepare", str(mixed), "--cache-dir", str(cache), "--jobs", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "files: 2 used, 3 skipped" in out
    assert "silent.wav: silent" in out and "short.wav: too short" in out
    assert "corrupt.wav: unreadable or corrupt audio" in out
    assert re.search(r"analysed [\d.]+ s of audio in [\d.]+ s \(\d+x realtime, 1 process", out)
    assert "; 0 file(s) from the cache" in out
    assert main(argv) == 0
    assert "all 2 file(s) from the cache: nothing analysed" in capsys.readouterr().out


def test_cli_prepare_errors(mixed, tmp_path, capsys):
    cache = ["--cache-dir", str(tmp_path / "cache"), "--jobs", "1"]
    assert main(["prepare", str(mixed / "silent.wav"), *cache]) == 2
    assert "nothing usable" in capsys.readouterr().err
    assert main(["prepare", str(mixed), "--set", "features.hop=1", *cache]) == 2
    assert "unknown key features.hop" in capsys.readouterr().err


def test_cli_prepare_reads_reference_params(mixed, tmp_path, capsys):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"audio_files_path": str(mixed), "hop_size": 128}))
    argv = ["prepare", str(mixed / "good.wav"), "--config", str(params)]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache"), "--jobs", "1"]) == 0
    # what params.json leaves out is the reference's: 16 kHz, so 1 + 19200 // 128 frames
    assert "audio: 1.2 s in 151 frames" in capsys.readouterr().out


def test_unexpected_failure_stops_the_run_naming_the_file(mixed, tmp_path, monkeypatch):
    import wms.analysis.features

    def broken(*args, **kwargs):
        raise RuntimeError("bug in analyse")

    monkeypatch.setattr(wms.analysis.features, "analyse", broken)
    with pytest.raises(RuntimeError, match="bug in analyse") as e:
        _run(mixed / "good.wav", tmp_path / "cache")
    assert any("good.wav" in n for n in getattr(e.value, "__notes__", []))
    assert not (tmp_path / "cache" / "entries").exists() or not any(
        (tmp_path / "cache" / "entries").iterdir()
    )


def test_unwritable_cache_dir_is_a_clear_error(mixed, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"cache: cannot write the feature cache .*--cache-dir"):
        _run(mixed / "good.wav", blocker / "cache")


def test_prepare_warns_about_notes_outside_the_pitch_range(tmp_path, capsys):
    """At the reference's 46-1600 Hz (16 kHz): a 2.5 kHz note and a bass's low E."""
    from wms.analysis.pitch import TIMBRES, harmonic_tone

    d = tmp_path / "audio"
    d.mkdir()
    y = np.concatenate(
        [harmonic_tone(f, TIMBRES["saw"], sample_rate=SR, n_samples=SR) for f in (440.0, 2500.0)]
    )
    sf.write(d / "high.wav", y, SR)
    sf.write(d / "low.wav", harmonic_tone(41.2, TIMBRES["saw"], sample_rate=SR, n_samples=SR), SR)
    ref = [x for s in REFERENCE_SET for x in ("--set", s)]
    argv = ["prepare", str(d), "--cache-dir", str(tmp_path / "cache"), "--jobs", "1", *ref]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # half of high.wav is a 2.5 kHz note, tracked an octave low inside 46-1600 Hz
    assert "WARNING: high.wav: 50 % of the frames are pitched above pitch.fmax = 1600 Hz" in out
    assert "train with --set pitch.fmax=3200" in out
    # low.wav's 41 Hz note reads as unvoiced: skipped, saying why and what to set
    assert "skipped " in out and "low.wav: no voiced frames" in out
    assert "pitched below pitch.fmin = 46 Hz (down to 41 Hz" in out
    assert "--set pitch.fmin=37" in out


def test_the_fullband_range_holds_both_notes_the_reference_could_not(tmp_path, capsys):
    """The same 2.5 kHz and 41 Hz notes at the fullband preset's 30-4200 Hz (44.1 kHz): no
    warning, both voiced."""
    from wms.analysis.pitch import TIMBRES, harmonic_tone

    sr = 44100
    d = tmp_path / "audio"
    d.mkdir()
    for name, f in (("high", 2500.0), ("low", 41.2)):
        sf.write(
            d / f"{name}.wav", harmonic_tone(f, TIMBRES["saw"], sample_rate=sr, n_samples=sr), sr
        )
    argv = ["prepare", str(d), "--cache-dir", str(tmp_path / "cache"), "--jobs", "1"]
    assert main([*argv, *(x for s in FULLBAND_SET for x in ("--set", s))]) == 0
    out = capsys.readouterr().out
    assert "files: 2 used, 0 skipped" in out and "100.0 % voiced" in out
    assert "WARNING" not in out


def test_cli_prepare_takes_the_preset_train_will_use(mixed, tmp_path, capsys):
    argv = ["prepare", str(mixed / "good.wav"), "--cache-dir", str(tmp_path / "cache")]
    assert main([*argv, "--jobs", "1", "--preset", "reference"]) == 0
    out = capsys.readouterr().out
    # the reference analyses at 16 kHz, hop 256: 1.2 s is 1 + 19200 // 256 frames
    assert "audio: 1.2 s in 76 frames" in out and "; 0 file(s) from the cache" in out
    assert main([*argv, "--jobs", "1", "--preset", "reference"]) == 0
    assert "all 1 file(s) from the cache: nothing analysed" in capsys.readouterr().out
    assert main([*argv, "--jobs", "1"]) == 0  # the default's settings: analysed again
    out = capsys.readouterr().out
    # full band analyses at 44.1 kHz, hop 706: 1.2 s is 1 + 52920 // 706 frames
    assert "audio: 1.2 s in 75 frames" in out and "; 0 file(s) from the cache" in out
