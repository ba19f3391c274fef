"""Bad command lines end in one clear line on stderr and exit status 2, not a traceback."""

import pytest

from wms.cli import main


def _fails(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert message in err, err


def test_config_json_must_be_an_object(tmp_path, capsys):
    bad = tmp_path / "params.json"
    bad.write_text("[1, 2]")
    _fails(capsys, ["prepare", str(tmp_path), "--config", str(bad)], "expected a JSON object")


def test_train_resume_from_a_text_file(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    _fails(
        capsys,
        ["train", str(tmp_path), "--out", str(tmp_path / "run"), "--resume", str(notes)],
        "not a checkpoint (not a torch zip file)",
    )


def test_train_out_under_a_file(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    _fails(
        capsys,
        ["train", str(tmp_path), "--out", str(f / "run")],
        "run: cannot write there (Not a directory); choose another --out run folder",
    )


@pytest.mark.parametrize(
    "out, message", [("out", "must name a .wav file"), ("render.mp4", "must name a .wav file")]
)
def test_render_out_is_checked_before_rendering(tmp_path, capsys, out, message):
    _fails(capsys, ["render", str(tmp_path / "missing.wms"), "--out", str(tmp_path / out)], message)
