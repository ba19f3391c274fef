import json

import pytest

from wms.config import Config, dumps_toml, from_dict, load_config, parse_overrides
from wms.errors import ConfigError


def test_defaults_are_full_band_and_the_reference_is_one_flag_away():
    c = Config()
    # full band: a 110 Hz note reaches 16 kHz, notes from 30 to 4200 Hz are tracked
    assert (c.audio.sample_rate, c.features.hop_size, c.features.window_size) == (44100, 706, 4096)
    assert (c.features.n_fft, c.features.n_bins, c.features.cycles_per_window) == (4096, 321, 2)
    assert (c.pitch.fmin, c.pitch.fmax) == (30.0, 4200.0)
    assert (c.features.n_mfcc, c.features.n_mels, c.features.noise_bands) == (8, 40, 32)
    assert (c.features.harmonic_noise, c.synth.phases) == ("removed", "schroeder")
    harmonics = (c.features.n_bins - 1) // c.features.cycles_per_window
    assert harmonics * 110.0 >= 16000.0
    # the MFCC see the K bins: 321 * 44100 / 4096 = 3456.1 Hz
    top = c.features.n_bins * c.audio.sample_rate / c.features.n_fft
    assert c.features.mel_fmax == pytest.approx(top, abs=0.2)
    assert c.features.hop_size / c.audio.sample_rate == pytest.approx(0.016, abs=1e-5)
    # WMS's training defaults (docs/DESIGN.md §2.3) ...
    assert (c.data.seq_len, c.data.batch_size, c.model.hidden_size) == (32, 64, 128)
    assert (c.train.scheduler, c.train.weights, c.train.early_stopping_patience) == (
        "cosine",
        "final",
        0,
    )
    # ... the preset of wms 0.2 that made full band is the default now ...
    assert load_config(None, preset="fullband") == c == load_config(None, preset="default")
    # ... and the reference's analysis, tables and training, one flag away
    r = load_config(None, preset="reference")
    assert (r.audio.sample_rate, r.features.hop_size, r.features.window_size) == (16000, 256, 1024)
    assert (r.features.n_fft, r.features.n_bins, r.features.cycles_per_window) == (1024, 80, 2)
    assert (r.pitch.fmin, r.pitch.fmax) == (46.0, 1600.0)
    assert (r.features.n_mfcc, r.features.n_mels, r.features.mel_fmax) == (8, 40, 0.0)
    assert (r.features.noise_bands, r.synth.phases) == (0, "zero")
    assert (r.data.seq_len, r.data.batch_size, r.model.hidden_size, r.model.encoder_size) == (
        50,
        512,
        256,
        256,
    )
    assert (r.train.lr, r.train.weight_decay, r.model.dropout, r.train.loss) == (
        1e-4,
        1e-5,
        0.0,
        "spectral",
    )
    assert (r.train.scheduler, r.train.weights, r.train.early_stopping_patience) == (
        "plateau",
        "best",
        20,
    )
    # a config file and --set still win over the preset
    assert load_config(None, ["model.hidden_size=64"], preset="reference").model.hidden_size == 64
    with pytest.raises(ConfigError, match=r"--preset 'big' is not one of default, fullband, refer"):
        load_config(None, preset="big")


def test_overrides_are_typed_and_applied():
    c = load_config(None, ["features.hop_size=128", "pitch.method=yin", "train.lr=3e-3"])
    assert c.features.hop_size == 128
    assert c.pitch.method == "yin"
    assert c.train.lr == pytest.approx(3e-3)
    # An int given for a float key is accepted and stored as float.
    assert isinstance(load_config(None, ["pitch.fmin=50"]).pitch.fmin, float)


def test_toml_file_round_trip(tmp_path):
    c = load_config(None, ["features.hop_size=128", 'synth.midi_cc={1 = "mfcc0"}'])
    path = tmp_path / "c.toml"
    path.write_text(c.to_toml())
    assert load_config(path) == c
    # --set wins over the file.
    assert load_config(path, ["features.hop_size=64"]).features.hop_size == 64


@pytest.mark.parametrize(
    "override, message",
    [
        ("features.hopsize=1", r"unknown key features\.hopsize \(did you mean hop_size\?\)"),
        ("feature.hop_size=1", r"unknown section \[feature\]"),
        ('features.hop_size="a"', r"features\.hop_size = 'a' has the wrong type: expected int"),
        ("features.hop_size=0", r"^--set: features\.hop_size = 0 must be in \[1, 65536\]"),
        ("pitch.method=swipe", r"pitch\.method = 'swipe' is not one of"),
        ("features.n_bins=9999", r"features\.n_bins = 9999 exceeds"),
        ("pitch.fmin=5000", r"pitch\.fmin = 5000\.0 must be below pitch\.fmax"),
        ("data.val_fraction=1.5", r"data\.val_fraction = 1\.5 must be in \[0, 1\)"),
        ("features.hop_size", r"expected section\.key=value"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[features\nhop = ")
    with pytest.raises(ConfigError, match="bad.toml: not a valid config file"):
        load_config(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[features]\nwindow = 3\n")
    with pytest.raises(ConfigError, match=r"unknown.toml: unknown key features\.window"):
        load_config(unknown)


def test_reference_params_json(tmp_path):
    params = {
        "audio_files_path": "../audio",
        "sample_rate": 16000,
        "hop_size": 128,
        "n_fft_preserved": 60,
        "cycles_per_window": 2,
        "pitch_detection_method": "crepe",
        "pitch_detection_method_comment": "choices: yin, pyin, crepe",
        "include_voicedness": False,
        "mfcc_dim_reduction": "PCA",
        "criterion": "WeightedMSE",
        "optimizer": "AdamW",
        "learning_rate": 3e-4,
        "training_seq_length": 12,
        "do_plotting_on_prediction": True,
    }
    path = tmp_path / "params.json"
    path.write_text(json.dumps(params))
    c = load_config(path)
    assert c.features.hop_size == 128 and c.features.n_bins == 60
    assert c.pitch.method == "crepe" and c.features.include_voicedness is False
    assert c.features.reduction == "pca" and c.train.loss == "weighted_mse"
    assert c.train.lr == pytest.approx(3e-4) and c.data.seq_len == 12
    # what the file leaves out is the reference's, not full band's
    assert (c.features.window_size, c.pitch.fmax, c.features.noise_bands) == (1024, 1600.0, 0)
    assert c.model.hidden_size == 256 and c.synth.phases == "zero"
    assert load_config(path, preset="default").features.window_size == 4096  # unless asked

    path.write_text(json.dumps({"no_such_key": 1}))
    with pytest.raises(ConfigError, match="unknown reference key 'no_such_key'"):
        load_config(path)


def test_to_dict_is_plain_and_complete():
    d = Config().to_dict()
    assert set(d) == {"audio", "pitch", "features", "data", "model", "train", "runtime", "synth"}
    assert from_dict(d) == Config()
    assert "[features]" in dumps_toml(d)
    assert parse_overrides(["a.b=[1, 2]"]) == {"a": {"b": [1, 2]}}


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.weight_decay=-5", r"train\.weight_decay = -5\.0 must be in \[0, 10\]"),
        ("train.weight_decay=nan", r"train\.weight_decay = nan must be a finite number"),
        ("train.plateau_factor=2", r"train\.plateau_factor = 2\.0 must be in \(0, 1\)"),
        ("runtime.accelerator=tpu", r"runtime\.accelerator = 'tpu' is not one of auto, cpu"),
        ("runtime.devices=abc", r"runtime\.devices = 'abc' is not Lightning's syntax"),
        ("runtime.max_minutes=inf", r"runtime\.max_minutes = inf must be a finite number"),
        (
            "synth.pitch_bend_range=1e6",
            r"synth\.pitch_bend_range = 1000000\.0 must be in \[0, 48\]",
        ),
        ("synth.table_size=2e9", r"synth\.table_size = 2000000000 must be in \[16, 65536\]"),
        ("synth.voices=1e8", r"synth\.voices = 100000000 must be in \[1, 256\]"),
        ("synth.release=1e7", r"synth\.release = 10000000\.0 must be in \[0, 600\]"),
        ("features.hop_size=5000", r"features\.hop_size = 5000 exceeds features\.window_size"),
        (
            "train.max_minutes=5",
            r"unknown key train\.max_minutes \(it moved to runtime\.max_minutes\)",
        ),
    ],
)
def test_ranges_are_checked_at_the_edge(override, message):
    with pytest.raises(ConfigError, match="^--set(, defaults)?: " + message):
        load_config(None, [override])


def test_every_key_has_a_range_rule():
    """One table holds the allowed values of every key (or the key is checked by form)."""
    from wms.config import FREE_KEYS, RULES

    keys = {(sec, k) for sec, values in Config().to_dict().items() for k in values}
    assert keys == set(RULES) | FREE_KEYS
    assert not set(RULES) & FREE_KEYS


def test_errors_name_the_layer_a_value_came_from(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text("[synth]\nvoices = 0\n[features]\nhop_size = 512\n")
    with pytest.raises(ConfigError, match=r"^.*run\.toml: synth\.voices = 0 must be in"):
        load_config(f)
    # the same value from --set is named as such, and a later layer wins
    assert load_config(f, ["synth.voices=4"]).synth.voices == 4
    with pytest.raises(ConfigError, match=r"^--set: synth\.voices = 300"):
        load_config(f, ["synth.voices=300"])
    # a cross-key rule names every layer involved
    with pytest.raises(ConfigError, match=r"--set, .*run\.toml: features\.hop_size = 512 exceeds"):
        load_config(f, ["synth.voices=4", "features.window_size=256", "features.n_fft=256"])
    with pytest.raises(ConfigError, match=r"^--max-minutes: runtime\.max_minutes = nan"):
        load_config(extra=[("--max-minutes", {"runtime": {"max_minutes": float("nan")}})])


def test_base_layer_and_only_sections():
    base = ("model.wms", Config().replace(model={"hidden_size": 16}).to_dict())
    c = load_config(None, ["synth.gain=0.25"], base=base, only=("synth",))
    assert c.model.hidden_size == 16 and c.synth.gain == 0.25
    with pytest.raises(
        ConfigError, match=r"^--set: only synth\.\* settings can change here, not \[model\]"
    ):
        load_config(None, ["model.hidden_size=32"], base=base, only=("synth",))


def test_runtime_keys_do_not_change_the_model_hash():
    a = Config()
    b = a.replace(runtime={"devices": "2", "max_minutes": 5.0}, synth={"voices": 2})
    c = a.replace(train={"lr": 1e-3})
    assert a.model_hash() == b.model_hash() != c.model_hash()
    assert "runtime" not in a.model_dict() and "train" in a.model_dict()


def test_a_wms_0_1_0_config_migrates():
    from wms.config import MOVED_KEYS, migrate_v1

    old = Config().to_dict()
    runtime = old.pop("runtime")  # 0.1.0 kept the runtime keys it had in [train]
    old["train"].update({k: runtime[k] for (_, k), (new, _) in MOVED_KEYS.items()})
    old["train"]["max_minutes"] = 3.0
    c = from_dict(migrate_v1(old))
    assert c.runtime.max_minutes == 3.0 and c == Config().replace(runtime={"max_minutes": 3.0})
    with pytest.raises(ConfigError, match=r"unknown key train\.\w+ \(it moved to runtime\."):
        from_dict(old)
