import json

import pytest

from wms.config import Config, dumps_toml, from_dict, load_config, parse_overrides
from wms.errors import ConfigError


def test_defaults_are_the_reference_values():
    c = Config()
    assert (c.audio.sample_rate, c.features.hop_size, c.features.window_size) == (16000, 256, 1024)
    assert (c.features.n_fft, c.features.n_bins, c.features.cycles_per_window) == (1024, 80, 2)
    assert (c.pitch.fmin, c.pitch.fmax) == (46.0, 1600.0)
    assert (c.features.n_mfcc, c.features.n_mels) == (8, 40)
    assert (c.data.seq_len, c.data.batch_size, c.model.hidden_size) == (50, 512, 256)


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
        ("features.hop_size=0", r"features\.hop_size = 0 must be a positive number"),
        ("pitch.method=swipe", r"pitch\.method = 'swipe' is not one of"),
        ("features.n_bins=9999", r"features\.n_bins = 9999 exceeds"),
        ("pitch.fmin=2000", r"pitch\.fmin = 2000\.0 must be below pitch\.fmax"),
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

    path.write_text(json.dumps({"no_such_key": 1}))
    with pytest.raises(ConfigError, match="unknown reference key 'no_such_key'"):
        load_config(path)


def test_to_dict_is_plain_and_complete():
    d = Config().to_dict()
    assert set(d) == {"audio", "pitch", "features", "data", "model", "train", "synth"}
    assert from_dict(d) == Config()
    assert "[features]" in dumps_toml(d)
    assert parse_overrides(["a.b=[1, 2]"]) == {"a": {"b": [1, 2]}}
