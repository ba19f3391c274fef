"""``wms prepare``: analyse audio files into cached training pairs.

For each audio file (a file, or every audio file under a folder):
read (mono, resampled) -> checks -> pitch tracking -> N-cycle features, stored
in the :class:`~wms.analysis.cache.FeatureCache`. Files already in the cache (same bytes,
same analysis settings) are not analysed again. Files that cannot be used
(unreadable, silent, too short, no voiced frame) are reported by name with the
reason and skipped; only a run with nothing usable fails (:class:`DataError`).

Misses are analysed in parallel in ``spawn``-started worker processes (torch
and ``fork`` do not mix), one thread each. Workers write their result into the
cache and send back only a small status dict, so the parent's memory does not
grow with the corpus: it holds memory-mapped arrays.

Heavy modules (pitch, features, torch) are imported only when a file has to be
analysed, so a re-run on a warm cache starts fast.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from wms.analysis.audio import find_audio_files, read_audio
from wms.analysis.cache import FeatureCache, analysis_settings, settings_hash
from wms.errors import AudioError, ConfigError, DataError, OutputError

if TYPE_CHECKING:
    import argparse

    from wms.analysis.features import Analysis
    from wms.config import Config

#: Thread-count variables of the numeric libraries, pinned to 1 in workers so
#: ``jobs`` processes use ``jobs`` cores, not ``jobs * cores``.
_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


@dataclass(frozen=True)
class PreparedFile:
    """One usable file: its path, cache key, analysis (memory-mapped arrays), meta.json,
    the frame ranges of its long silences (``excluded``: used by nothing downstream) and the
    sample rate it was recorded at (``file_rate``; 0 when unknown: taken as the analysis
    rate)."""

    path: Path
    key: str
    analysis: Analysis
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    excluded: tuple[tuple[int, int], ...] = ()
    file_rate: int = 0


@dataclass(frozen=True)
class Corpus:
    """The result of :func:`prepare`.

    ``files`` in path order; ``skipped`` as ``(path, reason)``; ``summary`` a dict
    of plain numbers and strings (see :func:`format_summary`).
    """

    files: list[PreparedFile]
    skipped: list[tuple[Path, str]]
    summary: dict[str, Any]


class _NoVoicedFrames(AudioError):
    """A file the tracker found no voiced frame in (cached as a rejection)."""


# -- one file -------------------------------------------------------------------------


def read_checked(path: str | Path, cfg: Config) -> tuple[np.ndarray, float]:
    """Read ``path`` at the analysis rate and check it is long and loud enough.

    Returns ``(y[n] float32 mono at cfg.audio.sample_rate, peak in dBFS)``.
    Raises :class:`AudioError` naming the file when it is unreadable, silent (peak
    below ``audio.silence_db``), shorter than one window (``features.window_size``
    samples) or than one training sequence (``data.seq_len`` frames).
    """
    sr = cfg.audio.sample_rate
    y = read_audio(path, sr)
    peak = float(np.max(np.abs(y)))
    peak_db = 20.0 * math.log10(peak) if peak > 0 else -math.inf
    if peak_db < cfg.audio.silence_db:
        raise AudioError(
            path,
            f"silent: peak {peak_db:.1f} dBFS is below audio.silence_db = {cfg.audio.silence_db}",
        )
    check_length(path, len(y), cfg)
    return y, peak_db


def check_length(path: str | Path, n_samples: int, cfg: Config) -> None:
    """Raise :class:`AudioError` if ``n_samples`` (at the analysis rate) is too short to use.

    A file needs one full window (``features.window_size`` samples) and enough
    frames for one training sequence (``data.seq_len`` frames), since training
    cuts sequences within a file.
    """
    sr, hop = cfg.audio.sample_rate, cfg.features.hop_size
    w, seq = cfg.features.window_size, cfg.data.seq_len
    n_frames = 1 + n_samples // hop
    if n_samples < w:
        raise AudioError(
            path,
            f"too short: {n_samples / sr:.3f} s is less than one window "
            f"(features.window_size = {w} samples = {w / sr:.3f} s)",
        )
    if n_frames < seq:
        raise AudioError(
            path,
            f"too short: {n_samples / sr:.2f} s gives {n_frames} frames; one training sequence "
            f"needs data.seq_len = {seq} frames ({(seq - 1) * hop / sr:.2f} s)",
        )


def analyse_signal(
    path: str | Path, y: np.ndarray, cfg: Config, *, pitch_range: dict | None = None
) -> Analysis:
    """Pitch-track and analyse a signal already read by :func:`read_checked`.

    ``y``: mono float32 at ``cfg.audio.sample_rate``. Returns an
    :class:`~wms.analysis.features.Analysis` with ``1 + len(y) // hop_size`` frames.
    ``pitch_range``, when given, receives the :func:`wms.analysis.pitch.check_range`
    figures and a ``"warning"`` (empty when the range fits the audio).
    Raises :class:`AudioError` naming ``path`` when no frame is voiced.
    """
    from wms.analysis import features, pitch  # lazy: heavy, and only needed on a cache miss

    p = cfg.pitch
    rc = pitch.check_range(
        y,
        sample_rate=cfg.audio.sample_rate,
        hop_size=cfg.features.hop_size,
        fmin=p.fmin,
        fmax=p.fmax,
        threshold=p.voicing_threshold,
    ).to_dict()
    rc["warning"] = pitch.range_advice(
        rc, fmin=p.fmin, fmax=p.fmax, sample_rate=cfg.audio.sample_rate
    )
    if pitch_range is not None:
        pitch_range.update(rc)
    f0, voicedness = pitch.estimate_pitch(
        y,
        sample_rate=cfg.audio.sample_rate,
        hop_size=cfg.features.hop_size,
        method=p.method,
        fmin=p.fmin,
        fmax=p.fmax,
        crepe_model=p.crepe_model,
        batch_size=p.crepe_batch_size,
    )
    if not np.any(np.asarray(voicedness) >= p.voicing_threshold):
        raise _NoVoicedFrames(
            path,
            f"no voiced frames: the {p.method!r} tracker found no frame with voicedness "
            f">= pitch.voicing_threshold = {p.voicing_threshold} in {p.fmin:g}-{p.fmax:g} Hz"
            + (f"; {rc['warning']}" if rc["warning"] else " (noise, or no pitch?)"),
        )
    return features.analyse(y, f0, voicedness, cfg)


def analyse_file(path: str | Path, cfg: Config) -> Analysis:
    """Read, check, pitch-track and analyse one file (no cache).

    Returns an :class:`~wms.analysis.features.Analysis` (``[n_frames]`` f0 in Hz and
    voicedness, ``[n_frames, n_mfcc]`` MFCC, ``[n_frames, n_bins]`` log1p target).
    Raises :class:`AudioError` naming the file when it is unreadable, silent,
    too short or has no voiced frame.
    """
    y, _ = read_checked(path, cfg)
    return analyse_signal(path, y, cfg)


def _analyse_into_cache(path: str, key: str, cache_root: str, cfg: Config) -> dict[str, Any]:
    """Analyse one file and write its entry; returns a small picklable status dict.

    Runs in a worker process (or in-process when jobs = 1). ``AudioError`` is
    turned into a status, never raised: its custom ``__init__`` does not pickle.
    """
    t0 = time.perf_counter()
    status: dict[str, Any] = {"path": path, "key": key}
    try:
        y, peak_db = read_checked(path, cfg)
    except AudioError as e:
        return {**status, "status": "skipped", "reason": e.reason}
    sr = cfg.audio.sample_rate
    meta = {
        "source": str(Path(path).resolve()),
        "duration": len(y) / sr,
        "samples": len(y),
        "sample_rate": sr,
        "peak_db": peak_db,
        "file_sample_rate": _file_rate(path),
        "settings": analysis_settings(cfg),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    cache = FeatureCache(cache_root)
    try:
        try:
            pitch_range: dict = {}
            with _one_thread(cfg):
                analysis = analyse_signal(path, y, cfg, pitch_range=pitch_range)
        except _NoVoicedFrames as e:
            cache.store_rejection(key, e.reason, meta)
            return {**status, "status": "rejected", "reason": e.reason, "seconds": len(y) / sr}
        del y  # the signal is no longer needed while arrays are written
        voiced = int(
            np.count_nonzero(np.asarray(analysis.voicedness) >= cfg.pitch.voicing_threshold)
        )
        meta.update(
            voiced_frames=voiced,
            pitch_range=pitch_range,
            analysis_seconds=time.perf_counter() - t0,
        )
        cache.store(key, analysis, meta)
    except OSError as e:
        raise OutputError(
            cache_root, f"cannot write the feature cache ({e}); choose another with --cache-dir"
        ) from None
    return {**status, "status": "ok", "seconds": meta["duration"]}


def _init_worker(parent: int) -> None:
    """Worker start-up: one thread for libraries imported later (torch, numba read these),
    and an exit as soon as the parent process ``parent`` is gone."""
    for var in _THREAD_ENV:
        os.environ[var] = "1"
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """End this process when ``parent`` dies, however it dies (SIGKILL included).

    Linux delivers SIGTERM at once through ``prctl(PR_SET_PDEATHSIG)``; everywhere a daemon
    thread also polls ``getppid()`` (a re-parented process has another parent) twice a second.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog below does it
    if os.getppid() != parent:
        os._exit(1)  # the parent died before the line above ran

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="wms-parent-watch", daemon=True).start()


@contextlib.contextmanager
def _one_thread(cfg: Config) -> Iterator[None]:
    """Run the analysis of one file on one thread, in workers and in-process alike.

    Why always one: a cache entry does not record how it was made, so its arrays
    must not depend on ``jobs``. Multi-threaded BLAS/torch reductions sum in a
    thread-count-dependent order (MFCC differed in the last float32 bit).
    Parallelism comes from analysing files in parallel.
    """
    from threadpoolctl import threadpool_limits

    torch = None
    if cfg.pitch.method == "crepe" or "torch" in sys.modules:
        import torch  # imported here so its thread count is set before first use

        before = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


# -- many files -----------------------------------------------------------------------


def default_jobs() -> int:
    """Cores this process may run on (honours taskset/cgroup affinity where available)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def prepare(
    audio_path: str | Path,
    cfg: Config,
    *,
    cache_dir: str | Path | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> Corpus:
    """Analyse every audio file under ``audio_path`` into the cache and load the results.

    Args:
        audio_path: one audio file, or a folder searched recursively for
            ``cfg.audio.extensions`` (other files are ignored).
        cfg: the resolved config.
        cache_dir: cache root; ``None`` means ``$WMS_CACHE_DIR`` or ``~/.cache/wms``.
        jobs: parallel worker processes for cache misses (default: usable cores);
            1 analyses in this process.
        progress: show a tqdm bar on stderr while analysing.

    Returns:
        :class:`Corpus` whose files hold memory-mapped arrays, bad files in
        ``skipped`` with their reasons, and a ``summary`` dict.

    Raises:
        AudioError: ``audio_path`` does not exist.
        ConfigError: ``jobs`` < 1.
        DataError: no usable file (the message lists each skipped file and why),
            or the cache cannot be written.
    """
    t0 = time.perf_counter()
    if jobs is None:
        jobs = default_jobs()
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs = {jobs!r} must be a whole number >= 1")
    audio_path = Path(audio_path)
    scan = find_audio_files(audio_path, cfg.audio.extensions)
    paths = scan.files
    if not paths:
        why = "".join(f"\n  {p}: {r}" for p, r in scan.skipped)
        raise DataError(
            f"{audio_path}: no audio files found (looked for "
            f"{', '.join(cfg.audio.extensions)}){why}"
        )
    cache = FeatureCache(cache_dir)
    cache.clean_temp()
    skey = settings_hash(cfg)
    shapes = {
        "n_mfcc": cfg.features.n_mfcc,
        "n_bins": cfg.features.n_bins,
        "n_noise": cfg.features.noise_bands,
    }

    skipped: dict[Path, str] = {}
    keys: dict[Path, str] = {}
    entries: dict[str, Any] = {}
    misses: dict[str, Path] = {}  # key -> first path with that content
    for p in paths:
        try:
            k = cache.key(p, cfg, settings=skey)
        except OSError as e:
            skipped[p] = f"cannot read the file ({e.strerror or e})"
            continue
        keys[p] = k
        if k in entries or k in misses:
            continue
        entry = cache.load(k, **shapes)
        if entry is None:
            misses[k] = p
        else:
            entries[k] = entry
    n_hits = len(entries)
    try:
        cache.save_index()
    except OutputError as e:
        raise OutputError(
            cache.root, f"cannot write the feature cache ({e}); choose another with --cache-dir"
        ) from None

    t_analysis = time.perf_counter()
    results, n_workers = _run_misses(misses, cache, cfg, jobs=jobs, progress=progress)
    analysis_wall = time.perf_counter() - t_analysis
    analysed_seconds = sum(r.get("seconds", 0.0) for r in results.values())
    failed: dict[str, str] = {}  # key -> reason, for files not stored (unreadable, silent, short)
    for k, r in results.items():
        if r["status"] == "skipped":
            failed[k] = r["reason"]
            continue
        entry = cache.load(k, **shapes)
        if entry is None:
            raise DataError(
                f"{misses[k]}: the cache entry just written to {cache.root} is unreadable"
            )
        entries[k] = entry

    files: list[PreparedFile] = []
    for p in paths:
        if p in skipped:
            continue
        k = keys[p]
        if k in failed:
            skipped[p] = failed[k]
            continue
        entry = entries[k]
        reason = entry.rejected or _usable(entry.meta, cfg)
        if reason:
            skipped[p] = reason
        else:
            cut = silent_ranges(
                np.asarray(entry.analysis.target),
                frame_seconds=cfg.features.hop_size / cfg.audio.sample_rate,
                floor_db=cfg.data.silence_db,
                min_seconds=cfg.data.trim_silence_seconds,
            )
            rate = int(entry.meta.get("file_sample_rate") or _file_rate(p))
            files.append(PreparedFile(p, k, entry.analysis, entry.meta, cut, rate))

    skipped_list = sorted([*scan.skipped, *((p, skipped[p]) for p in paths if p in skipped)])
    wall = time.perf_counter() - t0
    summary = _summary(files, skipped_list, cache, n_hits, len(misses), wall, cache.notes)
    summary.update(
        files_analysed=sum(r["status"] != "skipped" for r in results.values()),
        analysed_seconds=analysed_seconds,
        analysis_wall_seconds=analysis_wall,
        analysis_x_realtime=analysed_seconds / analysis_wall if analysis_wall > 0 else 0.0,
        jobs=n_workers,
        analysis_rate=cfg.audio.sample_rate,
    )
    if not files:
        lines = "\n".join(f"  {p}: {why}" for p, why in skipped_list)
        raise DataError(
            f"{audio_path}: nothing usable to train on; {len(skipped_list)} file(s) skipped:\n{lines}"
        )
    return Corpus(files, skipped_list, summary)


def _file_rate(path: str | Path) -> int:
    """The sample rate ``path`` was recorded at (its header), 0 when it cannot be read."""
    try:
        return int(sf.info(str(path)).samplerate)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return 0


def _usable(meta: dict[str, Any], cfg: Config) -> str | None:
    """Why a cached entry is unusable under ``cfg``'s non-analysis checks, else ``None``.

    ``audio.silence_db`` and ``data.seq_len`` are not part of the cache key, so a
    change to them is applied here from meta.json, without re-analysis.
    """
    peak_db = meta.get("peak_db", 0.0)
    if peak_db < cfg.audio.silence_db:
        return f"silent: peak {peak_db:.1f} dBFS is below audio.silence_db = {cfg.audio.silence_db}"
    try:
        check_length(meta.get("source", "file"), int(meta["samples"]), cfg)
    except AudioError as e:
        return e.reason
    except (KeyError, TypeError, ValueError):
        return None  # an older entry without "samples": its frames were checked when written
    return None


def _run_misses(
    misses: dict[str, Path], cache: FeatureCache, cfg: Config, *, jobs: int, progress: bool
) -> tuple[dict[str, dict[str, Any]], int]:
    """Analyse each miss into the cache; returns (key -> status dict, workers used)."""
    from wms.progress import progress_bar

    results: dict[str, dict[str, Any]] = {}
    if not misses:
        return results, 0
    seconds = {k: _duration(p) for k, p in misses.items()}
    # Longest first: the slowest file starts early instead of finishing last alone.
    order = sorted(misses.items(), key=lambda kv: -seconds[kv[0]])
    n_workers = min(jobs, len(order))
    bar = progress_bar(
        total=sum(seconds.values()),
        unit="s",
        desc=f"analysing {len(order)} file(s)",
        enabled=progress,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}{postfix}]",
    )

    def done(k: str, r: dict[str, Any]) -> None:
        results[k] = r
        bar.set_postfix_str(f"{len(results)}/{len(order)} files", refresh=False)
        bar.update(seconds[k])

    def failed(k: str, e: BaseException) -> None:
        # A bug or a run-wide failure (e.g. missing CREPE weights): stop, naming the file.
        if hasattr(e, "add_note"):
            e.add_note(f"while analysing {misses[k]}")

    try:
        if n_workers == 1:
            for k, p in order:
                try:
                    done(k, _analyse_into_cache(str(p), k, str(cache.root), cfg))
                except Exception as e:
                    failed(k, e)
                    raise
            return results, n_workers
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(
            n_workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),)
        ) as ex:
            futures = {
                ex.submit(_analyse_into_cache, str(p), k, str(cache.root), cfg): k for k, p in order
            }
            try:
                for fut in cf.as_completed(futures):
                    k = futures[fut]
                    try:
                        done(k, fut.result())
                    except cf.process.BrokenProcessPool:
                        raise DataError(
                            f"a worker process died while analysing {misses[k]} (out of memory?); "
                            f"try fewer --jobs"
                        ) from None
                    except Exception as e:
                        failed(k, e)
                        raise
            except BaseException:
                # Ctrl-C or a failure: stop now rather than finish the files in flight.
                # A killed worker leaves at most a temp folder, never a half entry.
                _terminate_workers(ex)  # first: shutdown() forgets the processes
                ex.shutdown(wait=False, cancel_futures=True)
                raise
        return results, n_workers
    finally:
        bar.close()


def _terminate_workers(ex: cf.ProcessPoolExecutor) -> None:
    """Kill the pool's worker processes (``terminate_workers`` is public from Python 3.14)."""
    if hasattr(ex, "terminate_workers"):
        ex.terminate_workers()
        return
    for proc in list((getattr(ex, "_processes", None) or {}).values()):
        proc.terminate()


def _duration(p: Path) -> float:
    """Seconds of audio from the file header (0 when unreadable: analysis will say why)."""
    import soundfile as sf

    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError):
        return 0.0
    return info.frames / info.samplerate if info.samplerate else 0.0


def silent_ranges(
    target: np.ndarray, *, frame_seconds: float, floor_db: float, min_seconds: float
) -> tuple[tuple[int, int], ...]:
    """Frame ranges of a file's long silences, from its analysed spectra ``target[n, K]``.

    A frame is silent when its energy (``sum expm1(target)^2``) is more than ``-floor_db`` dB
    under the file's loud level, the 95th percentile of its frames' energies (digital
    silence, a noise floor, a reverb tail's end); a run of silent frames lasting at least
    ``min_seconds`` is returned (0 disables trimming). The frames keep their places: the
    ranges are simply used by nothing downstream.
    """
    if min_seconds <= 0 or len(target) == 0:
        return ()
    mag = np.expm1(np.asarray(target, dtype=np.float64))
    energy = np.sum(mag * mag, axis=1)
    loud = float(np.percentile(energy, 95))
    silent = energy <= loud * 10 ** (floor_db / 10) if loud > 0 else np.ones(len(energy), bool)
    edges = np.flatnonzero(np.diff(np.r_[0, silent.astype(np.int8), 0]))
    need = max(1, math.ceil(min_seconds / frame_seconds))
    return tuple(
        (int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= need
    )


def _summary(files, skipped, cache, hits, misses, wall, notes) -> dict[str, Any]:
    frames = sum(int(f.meta.get("frames", len(f.analysis.f0))) for f in files)
    voiced = sum(int(f.meta.get("voiced_frames", 0)) for f in files)
    seconds = sum(float(f.meta.get("duration", 0.0)) for f in files)
    trimmed = {
        str(f.path): sum(b - a for a, b in f.excluded)
        * float(f.meta["duration"])
        / len(f.analysis.f0)
        for f in files
        if f.excluded
    }
    return {
        "files_used": len(files),
        "files_skipped": len(skipped),
        "skipped": [(str(p), why) for p, why in skipped],
        "frames": frames,
        "voiced_frames": voiced,
        "voiced_share": voiced / frames if frames else 0.0,
        "audio_seconds": seconds,
        "wall_seconds": wall,
        "x_realtime": seconds / wall if wall > 0 else 0.0,
        "cache_dir": str(cache.root),
        "cache_hits": hits,
        "cache_misses": misses,
        "notes": list(notes),
        "trimmed_seconds": trimmed,
        # the rate each file was recorded at (0: unknown); wms.training.train.low_rate_bands
        "file_rates": {str(f.path): f.file_rate for f in files},
        # files with notes outside pitch.fmin..fmax (wms.analysis.pitch.check_range)
        "pitch_range_warnings": {
            str(f.path): f.meta["pitch_range"]["warning"]
            for f in files
            if (f.meta.get("pitch_range") or {}).get("warning")
        },
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The closing summary of ``wms prepare`` as printable lines."""
    s = summary
    analysed = s.get("files_analysed", 0)
    rechecked = s["cache_misses"] - analysed
    trimmed = s.get("trimmed_seconds", {})
    lines = [
        f"files: {s['files_used']} used, {s['files_skipped']} skipped",
        *(f"  skipped {p}: {why}" for p, why in s["skipped"]),
        f"audio: {s['audio_seconds']:.1f} s in {s['frames']} frames, "
        f"{100 * s['voiced_share']:.1f} % voiced",
    ]
    if trimmed:
        lines.append(
            f"silence trimmed: {sum(trimmed.values()):.1f} s ("
            + ", ".join(f"{Path(p).name} {v:.1f} s" for p, v in trimmed.items())
            + ")"
        )
    if s.get("analysed_seconds"):
        lines.append(
            f"analysed {s['analysed_seconds']:.1f} s of audio in {s['analysis_wall_seconds']:.1f} s "
            f"({s['analysis_x_realtime']:.0f}x realtime, {s['jobs']} process(es)); "
            f"{s['cache_hits']} file(s) from the cache"
        )
    else:
        lines.append(f"all {s['cache_hits']} file(s) from the cache: nothing analysed")
    lines.append(
        f"cache: {s['cache_dir']}"
        + (f" ({rechecked} unusable file(s) re-checked)" if rechecked else "")
    )
    lines += [f"note: {n}" for n in s["notes"]]
    lines += low_rate_lines(s)
    lines += [f"WARNING: {Path(p).name}: {w}" for p, w in s.get("pitch_range_warnings", {}).items()]
    return "\n".join(lines)


def low_rate_lines(summary: dict[str, Any]) -> list[str]:
    """What ``wms prepare`` says of files recorded below the analysis rate (docs/DESIGN.md
    §6.3): which are masked above their own band, and what no file holds."""
    rate = summary.get("analysis_rate", 0)
    rates = {p: min(r or rate, rate) for p, r in summary.get("file_rates", {}).items()}
    if not rates or not rate:
        return []
    top = max(rates.values())
    lines = []
    low = {p: r for p, r in rates.items() if r < top}
    if low:
        from wms.analysis.features import LOW_RATE_PASSBAND

        names = ", ".join(
            f"{Path(p).name} ({r / 1000:g} kHz: above {LOW_RATE_PASSBAND * r / 2000:.3g} kHz)"
            for p, r in low.items()
        )
        lines.append(
            f"note: {len(low)} file(s) recorded below the corpus's highest rate "
            f"({top / 1000:g} kHz): {names}; their bins (and noise bands) above "
            f"{LOW_RATE_PASSBAND:g} of their own Nyquist frequency are masked out of the loss "
            "and the metrics (learnt from the other files, not as silence)"
        )
    if top < rate:
        lines.append(
            f"note: no file is recorded at the analysis rate ({rate / 1000:g} kHz), the highest "
            f"at {top / 1000:g} kHz: nothing above {top / 2000:g} kHz is in the corpus, so the "
            f"model learns silence there (or analyse at that rate: --set audio.sample_rate={top})"
        )
    return lines


def _reference_audio_path(config_path: str | None) -> str | None:
    """``audio_files_path`` of a reference params.json, if ``config_path`` is one."""
    if not config_path or Path(config_path).suffix.lower() != ".json":
        return None
    try:
        value = json.loads(Path(config_path).read_text()).get("audio_files_path")
    except (OSError, ValueError, AttributeError):
        return None  # load_config has already reported a bad file
    return value if isinstance(value, str) and value else None


def run_prepare(args: argparse.Namespace) -> int:
    """``wms prepare AUDIO [--config F] [--set k=v ...] [--preset P] [--cache-dir D] [--jobs N]``."""
    from wms.config import load_config

    cfg = load_config(args.config, args.overrides, preset=getattr(args, "preset", None))
    audio = getattr(args, "audio", None) or _reference_audio_path(args.config)
    if not audio:
        raise ConfigError("no AUDIO given (and the config has no audio_files_path)")
    corpus = prepare(audio, cfg, cache_dir=args.cache_dir, jobs=args.jobs, progress=True)
    print(format_summary(corpus.summary))
    return 0
