"""Corrupt or crafted bundles are refused with "corrupt bundle" / "malformed bundle", exit 2."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from wms.bundle import load_bundle
from wms.cli import main
from wms.errors import BundleError
from wms.synth.testing import random_bundle


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return random_bundle(tmp_path_factory.mktemp("b") / "model.wms", hidden_size=16)


def _damage_weights(src: Path, dst: Path) -> Path:
    """Overwrite 64 bytes inside the largest tensor's data, as a bad copy would."""
    with zipfile.ZipFile(src) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(src.read_bytes())
    # local file header: 30 bytes + name + extra field, then the (stored) data
    name_len = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    raw[start : start + 64] = bytes(b ^ 0x5A for b in raw[start : start + 64])  # flip bits
    dst.write_bytes(bytes(raw))
    return dst


@pytest.mark.parametrize(
    "command",
    [
        ["info"],
        ["render", "--out", "{tmp}/o.wav", "--seconds", "0.2"],
        ["export", "--format", "onnx", "--out", "{tmp}/x"],
        ["evaluate", "--out", "{tmp}/r"],
        ["play", "--no-browser"],
    ],
)
def test_damaged_weights_are_a_corrupt_bundle_for_every_command(good, tmp_path, capsys, command):
    bad = _damage_weights(good, tmp_path / "bad.wms")
    argv = [command[0], str(bad), *(a.format(tmp=tmp_path) for a in command[1:])]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bad.wms: corrupt bundle:" in err and "fails its checksum" in err
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / "r").exists()


def _crafted(good: Path, dst: Path, change) -> Path:
    obj = torch.load(good, weights_only=True)
    change(obj)
    torch.save(obj, dst)
    return dst


def _set(path: list, value):
    def change(obj):
        d = obj
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda o: o["model"]["state_dict"]["gru.weight_hh_l0"].fill_(float("nan")),
            r"corrupt bundle: the weights gru\.weight_hh_l0 hold NaN",
        ),
        (
            _set(["metrics"], {"lsd_db": "5 dB"}),
            r"malformed bundle: metrics is not a held-out report",
        ),
        (_set(["metrics"], [1, 2]), r"malformed bundle: metrics is not a table"),
        (_set(["history"], [{"epoch": 0}]), r"malformed bundle: history is not a list of"),
        (_set(["history"], "long"), r"malformed bundle: history is not a list of"),
        (
            _set(["interface", "control_names"], [1, 2, 3, 4, 5, 6, 7, 8]),
            r"\[interface\]: control_names is not a list of names",
        ),
        (_set(["interface", "control_names"], ["a"]), r"inconsistent model interface"),
        (
            _set(["config", "synth", "table_size"], 2**31),
            r"synth\.table_size = 2147483648 must be in",
        ),
        (_set(["training_map", "f0"], torch.zeros(3)), r"training_map\['f0'\] .*(rows|shape)|f0"),
        (_set(["data"], {"files": [{"path": 3}]}), r"malformed bundle: data is not"),
    ],
)
def test_crafted_bundles_fail_one_schema_check(good, tmp_path, capsys, change, message):
    p = _crafted(good, tmp_path / "crafted.wms", change)
    with pytest.raises(BundleError, match=message):
        load_bundle(p)
    assert main(["info", str(p)]) == 2
    err = capsys.readouterr().err
    assert "crafted.wms" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda o: o["data"]["files"][0].pop("n_frames"), r"malformed bundle: data is not"),
        (lambda o: o["data"]["files"][0].update(val="0-10"), r"malformed bundle: data is not"),
        (lambda o: o["data"]["files"][0].update(val=[[5, 10**9]]), r"malformed bundle: data is"),
        (lambda o: o["history"][-1].update(seconds="1 min"), r"malformed bundle: history is"),
    ],
)
def test_crafted_data_and_history_of_a_trained_bundle(tiny_run, tmp_path, capsys, change, message):
    p = _crafted(tiny_run.bundle, tmp_path / "crafted.wms", change)
    with pytest.raises(BundleError, match=message):
        load_bundle(p)
    assert main(["info", str(p)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_history_without_times_still_describes(tiny_run, tmp_path, capsys):
    """``seconds`` is optional in a history entry (wms info shows 0.0 min)."""
    p = _crafted(
        tiny_run.bundle, tmp_path / "c.wms", lambda o: [h.pop("seconds") for h in o["history"]]
    )
    assert main(["info", str(p)]) == 0
    assert " 0.0 min; final train loss" in capsys.readouterr().out


@pytest.mark.parametrize("how", ["damaged", "truncated"])
def test_a_damaged_checkpoint_is_refused_before_any_work(tiny_run, tmp_path, capsys, how):
    ckpt = tiny_run.run / "checkpoints" / "last.ckpt"
    bad = tmp_path / "last.ckpt"
    if how == "damaged":
        _damage_weights(ckpt, bad)
        message = "corrupt checkpoint: "
    else:
        bad.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
        message = "truncated or corrupt checkpoint ("
    argv = ["train", str(tiny_run.wav), "--out", str(tmp_path / "run"), "--resume", str(bad)]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert message in err and "resume from another checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists()  # refused before any analysis


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    from conftest import reference_config

    cfg = reference_config(
        features={"noise_bands": 8}, model={"hidden_size": 16, "encoder_size": 16}
    )
    return random_bundle(tmp_path_factory.mktemp("n") / "noisy.wms", config=cfg)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda o: o["interface"]["noise_edges"].pop(),
            r"8 noise outputs need 9 increasing band edges from 0 to at most 8000 Hz, got 8",
        ),
        (
            lambda o: o["interface"]["noise_edges"].__setitem__(3, 1e9),
            r"8 noise outputs need 9 increasing band edges",
        ),
        (
            lambda o: o["interface"]["noise_edges"].__setitem__(0, "low"),
            r"\[interface\]: missing or malformed field \(ValueError",
        ),
        (  # the interface says harmonics only, the network has the noise outputs
            lambda o: (
                o["interface"]["outputs"].update(n_noise=0, n_outputs=80),
                o["interface"].update(noise_edges=[]),
            ),
            r"the network maps 10 -> 88 values, the interface 10 -> 80",
        ),
    ],
)
def test_crafted_noise_parts_fail_one_check(noisy, tmp_path, capsys, change, message):
    assert load_bundle(noisy).interface.n_noise == 8
    p = _crafted(noisy, tmp_path / "crafted.wms", change)
    with pytest.raises(BundleError, match=message):
        load_bundle(p)
    assert main(["info", str(p)]) == 2
    err = capsys.readouterr().err
    assert "crafted.wms" in err and "Traceback" not in err
