"""Killed mid-way (SIGKILL or SIGTERM), `wms prepare` and `wms train` leave no process behind,
and the re-run trusts nothing half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_TRAIN
from wms.analysis.audio import write_audio
from wms.analysis.basic_waves import basic_waves
from wms.analysis.cache import FeatureCache
from wms.bundle import load_bundle
from wms.cli import main

pytestmark = pytest.mark.slow


def _marked(mark: str) -> list[int]:
    """Processes whose environment carries ``WMS_TEST_MARK=mark`` (this test's children)."""
    needle = f"WMS_TEST_MARK={mark}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                pids.append(int(d.name))
        except OSError:
            continue  # gone, or not ours to read
    return pids


def _start(argv: list[str], mark: str, log: Path) -> subprocess.Popen:
    """``wms ARGV`` in a child process whose output goes to ``log`` (a pipe nobody reads
    while it runs would fill up and block the child)."""
    env = {**os.environ, "WMS_TEST_MARK": mark, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "wms.cli", *argv], env=env, stdout=fh, stderr=subprocess.STDOUT
        )


def _wait_for(cond, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("audio")
    for i in range(6):
        write_audio(d / f"f{i}.wav", basic_waves(40.0, sample_rate=16000, seed=i), 16000)
    return d


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_prepare_leaves_no_worker_and_the_rerun_trusts_only_whole_entries(
    folder, tmp_path, sig
):
    cache, mark = tmp_path / "cache", uuid.uuid4().hex
    log = tmp_path / "prepare.log"
    proc = _start(["prepare", str(folder), "--cache-dir", str(cache), "--jobs", "2"], mark, log)
    # the parent and its two spawn workers are running, analysing
    _wait_for(lambda: len(_marked(mark)) >= 3, 60, "the worker processes")
    time.sleep(1.0)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    out = log.read_text()
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "wms prepare: terminated" in out, out
    _wait_for(lambda: not _marked(mark), 10, "every worker to end with its parent")
    # whatever was written is whole: every entry loads; temp folders are never read
    c = FeatureCache(cache)
    for entry in (cache / "entries").glob("*") if (cache / "entries").is_dir() else []:
        assert c.load(entry.name, n_mfcc=8, n_bins=80) is not None, entry
    assert not c.notes
    assert main(["prepare", str(folder), "--cache-dir", str(cache), "--jobs", "2"]) == 0
    assert len(list((cache / "entries").iterdir())) == 6


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_train_leaves_nothing_running_and_no_half_bundle(tmp_path, sig):
    wav = write_audio(tmp_path / "w.wav", basic_waves(8.0, sample_rate=16000, seed=0), 16000)
    run, cache, mark = tmp_path / "run", tmp_path / "cache", uuid.uuid4().hex
    args = ["train", str(wav), "--out", str(run), "--cache-dir", str(cache), "--jobs", "1"]
    for s in [*TINY_TRAIN, "train.max_epochs=100000", "runtime.checkpoint_minutes=0.002"]:
        args += ["--set", s]
    proc = _start(args, mark, tmp_path / "train.log")
    _wait_for(lambda: (run / "checkpoints" / "last.ckpt").exists(), 120, "a checkpoint")
    time.sleep(0.5)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    _wait_for(lambda: not _marked(mark), 10, "the training process to end")
    assert not (run / "model.wms").exists()  # no bundle from an interrupted run
    assert not list(run.glob(".model.wms*"))  # and no half-written one left beside it
    # a used folder needs --resume or --force; --force starts over and finishes
    assert main([*args[:8], *_tiny(), "--force"]) == 0
    b = load_bundle(run / "model.wms")
    assert np.all(np.isfinite(b.model.input_encoder[0].weight.detach().numpy()))


def _tiny() -> list[str]:
    out = []
    for s in TINY_TRAIN:
        out += ["--set", s]
    return out
