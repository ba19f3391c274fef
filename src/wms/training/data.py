"""Training data: the held-out split and sequences served as tensor slices.

Three steps, each a plain function:

1. :func:`split_frames` decides, per file, which frame ranges are held out for
   validation and for test (contiguous blocks, or whole files when a file is shorter
   than a block) and which remain for training, leaving ``gap_frames`` unused frames on
   each side of every held-out block. A training sequence lies entirely inside one
   training range, so no held-out frame is ever inside a training sequence and no
   sequence crosses a file boundary or a trimmed silence. Validation chooses (early
   stopping, the LR schedule, the weights kept); test is only ever reported.
2. :func:`build_arrays` concatenates every file's model inputs and targets once
   into two contiguous arrays ``inputs[N_total, D]`` and ``targets[N_total, K]``
   (memory-mapped ``.npy`` files when large) plus int64 arrays of valid
   sequence start rows.
3. :func:`sequence_loader` serves whole batches as slices
   ``inputs[starts[:, None] + arange(T)]``: no per-item Python objects, and a
   seeded permutation per epoch so the data order is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from wms.errors import DataError

#: Arrays above this many bytes are built as memory-mapped ``.npy`` files in the run dir.
MEMMAP_BYTES = 1 << 30


@dataclass(frozen=True)
class FileSplit:
    """How one file's frames are used. Ranges are half-open ``(start, stop)`` frame indices.

    ``train`` ranges are where training sequences may lie; ``val`` ranges are held out for
    validation (early stopping, the LR schedule, the choice of weights) and ``test`` ranges
    for the reported figures only. ``excluded`` ranges (long silences, see
    ``wms.analysis.prepare``) are in none of them. Frames in no range are the gaps around
    held-out blocks.
    """

    n_frames: int
    train: tuple[tuple[int, int], ...]
    val: tuple[tuple[int, int], ...]
    test: tuple[tuple[int, int], ...] = ()
    excluded: tuple[tuple[int, int], ...] = ()


def block_frames_for(cfg_data, *, sample_rate: int, hop_size: int) -> int:
    """Frames in one held-out block: ``val_block_seconds`` at the frame rate."""
    return max(1, round(cfg_data.val_block_seconds * sample_rate / hop_size))


def subtract(ranges, cuts) -> tuple[tuple[int, int], ...]:
    """``ranges`` minus ``cuts`` (both half-open, sorted or not): the parts left, in order."""
    out = []
    cuts = sorted(cuts)
    for a, b in sorted(ranges):
        start = a
        for c, d in cuts:
            if d <= start or c >= b:
                continue
            if c > start:
                out.append((start, c))
            start = max(start, d)
        if start < b:
            out.append((start, b))
    return tuple(out)


def split_frames(
    lengths: Sequence[int],
    *,
    seq_len: int,
    val_fraction: float,
    block_frames: int,
    gap_frames: int,
    seed: int,
    test_fraction: float = 0.0,
    excluded: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> list[FileSplit]:
    """Hold out contiguous validation and test blocks; the rest (minus gaps) is for training.

    Args:
        lengths: frames per file.
        seq_len: T, the training sequence length; a held-out block holds at least T frames
            so that it yields at least one sequence.
        val_fraction, test_fraction: share of each file's frames held out for validation
            and for test (0 disables one).
        block_frames: longest held-out block. A file of at least this many frames holds
            ``ceil(fraction * n / block_frames)`` blocks of each kind, one at a seeded place
            in each of as many equal chunks of the file (which chunk holds which kind is
            seeded too). Files shorter than a block are held out whole: in a seeded order,
            first for validation, then for test, until each fraction of the short files'
            frames is reached, keeping at least one file for training.
        gap_frames: frames left unused on each side of a held-out block.
        seed: seeds the block positions, their kinds and the choice of whole files.
        excluded: per file, frame ranges used by nothing (trimmed silences); training
            sequences, held-out sequences and metrics all skip them.

    Returns:
        One :class:`FileSplit` per file, in order.

    Raises:
        DataError: when there is no training sequence at all, or a fraction is > 0 and
            nothing could be held out for it (e.g. a single file shorter than a block).
    """
    if seq_len < 1 or block_frames < 1 or gap_frames < 0:
        raise DataError(
            f"bad split settings: seq_len={seq_len}, block_frames={block_frames}, gap_frames={gap_frames}"
        )
    rng = np.random.default_rng(seed)
    lengths = [int(n) for n in lengths]
    excluded = [tuple(map(tuple, e)) for e in (excluded or [()] * len(lengths))]
    held: list[dict[str, list[tuple[int, int]]]] = [{"val": [], "test": []} for _ in lengths]
    fractions = {"val": val_fraction, "test": test_fraction}

    short = [i for i, n in enumerate(lengths) if n < block_frames]
    for i, n in enumerate(lengths):
        if n < block_frames:
            continue
        kinds, sizes = [], {}
        for kind, frac in fractions.items():
            v = round(frac * n)
            if v <= 0:
                continue
            nb = math.ceil(v / block_frames)
            kinds += [kind] * nb
            sizes[kind] = max(math.ceil(v / nb), seq_len)
        if not kinds:
            continue
        chunk = n // len(kinds)
        if max(sizes.values()) > chunk:  # only when seq_len is larger than a chunk of the file
            continue
        for c, kind in enumerate(rng.permutation(kinds)):
            blen = sizes[kind]
            start = c * chunk + int(rng.integers(0, chunk - blen + 1))
            held[i][kind].append((start, start + blen))
    # Keep at least one whole file for training when every file is short.
    budget = len(short) - (1 if len(short) == len(lengths) else 0)
    order = [int(i) for i in rng.permutation(short)] if short else []
    for kind, frac in fractions.items():
        target, got = frac * sum(lengths[i] for i in short), 0
        while order and budget > 0 and got < target:
            i = order.pop(0)
            held[i][kind].append((0, lengths[i]))
            got += lengths[i]
            budget -= 1

    splits = []
    for n, h, ex in zip(lengths, held, excluded, strict=True):
        blocks = sorted(h["val"] + h["test"])
        train, cursor = [], 0
        for a, b in blocks:
            stop = max(cursor, a - gap_frames)
            if stop > cursor:
                train.append((cursor, stop))
            cursor = max(cursor, b + gap_frames)
        if cursor < n:
            train.append((cursor, n))
        splits.append(
            FileSplit(
                n,
                subtract(train, ex),
                subtract(h["val"], ex),
                subtract(h["test"], ex),
                tuple(sorted(ex)),
            )
        )

    n_train = sum(len(sequence_starts(s.train, seq_len)) for s in splits)
    if n_train == 0:
        raise DataError(
            f"no training sequence of {seq_len} frames fits in {len(lengths)} file(s) of "
            f"{lengths} frames after holding out validation and test blocks; use more or "
            f"longer audio, a shorter data.seq_len or smaller data.val_fraction / test_fraction"
        )
    for kind, frac in fractions.items():
        if frac > 0 and not any(getattr(s, kind) for s in splits):
            raise DataError(
                f"nothing could be held out for {'validation' if kind == 'val' else 'test'} "
                f"from {len(lengths)} file(s) of {lengths} frames (block {block_frames} "
                f"frames, sequence {seq_len}); use more audio or a shorter data.val_block_seconds"
            )
    return splits


def sequence_starts(
    ranges: Sequence[tuple[int, int]], seq_len: int, *, stride: int = 1
) -> np.ndarray:
    """Start frames of every length-``seq_len`` window lying inside one of ``ranges``.

    ``stride=1`` gives every window (training); ``stride=seq_len`` gives
    non-overlapping windows (validation). Returns int64 ``[n_starts]``.
    """
    parts = [np.arange(a, b - seq_len + 1, stride, dtype=np.int64) for a, b in ranges]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def range_mask(n_frames: int, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Boolean ``[n_frames]``, True inside ``ranges``."""
    mask = np.zeros(n_frames, dtype=bool)
    for a, b in ranges:
        mask[a:b] = True
    return mask


def global_rows(
    offsets: np.ndarray, ranges_per_file: Sequence[Sequence[tuple[int, int]]]
) -> np.ndarray:
    """Rows of the concatenated arrays inside each file's ranges: int64, in order.

    ``offsets``: ``[n_files + 1]`` first row of each file; ``ranges_per_file``: one
    list of half-open frame ranges per file (e.g. ``[s.train for s in splits]``).
    """
    parts = [offsets[i] + np.arange(a, b) for i, rs in enumerate(ranges_per_file) for a, b in rs]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class SequenceData:
    """Every file's frames concatenated, and where sequences may start.

    Attributes:
        inputs: ``[N_total, D]`` float32 model inputs (array or memmap).
        targets: ``[N_total, K]`` float32 log1p magnitudes.
        offsets: int64 ``[n_files + 1]``; file ``i`` owns rows ``offsets[i]:offsets[i+1]``.
        train_starts: int64 rows where a training sequence of ``seq_len`` starts.
        val_starts: int64 rows where a (non-overlapping) validation sequence starts.
        test_starts: the same for the test ranges (used only for the final figures).
        seq_len: T.
    """

    inputs: np.ndarray
    targets: np.ndarray
    offsets: np.ndarray
    train_starts: np.ndarray
    val_starts: np.ndarray
    seq_len: int
    test_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    #: the memory-mapped ``.npy`` files written under ``out_dir`` (empty when in memory)
    files: tuple[Path, ...] = ()
    #: ``[N_total]`` int32, how many of each row's bins the loss and metrics use (the rest lie
    #: above its file's own Nyquist: docs/DESIGN.md §6.3); ``None`` when every row uses all K
    bands: np.ndarray | None = None
    #: ``[N_total]`` int32, the same for the noise part's bands (set only with ``bands``)
    noise_bands: np.ndarray | None = None


def build_arrays(
    per_file_inputs: Sequence[np.ndarray],
    per_file_targets: Sequence[np.ndarray],
    splits: Sequence[FileSplit],
    *,
    seq_len: int,
    out_dir: str | Path | None = None,
    per_file_bands: Sequence[np.ndarray | None] | None = None,
    per_file_noise_bands: Sequence[int | None] | None = None,
    n_noise: int = 0,
) -> SequenceData:
    """Concatenate per-file ``inputs[n_i, D]`` and ``targets[n_i, K]`` once.

    ``per_file_bands``: per file ``None`` (all bins count) or ``[n_i]`` bins that count per
    frame (:func:`wms.analysis.features.bins_below`); gathered into ``SequenceData.bands``.
    ``per_file_noise_bands``: per file ``None`` (all ``n_noise`` noise bands count) or how many
    do (:func:`wms.analysis.features.recorded_noise_bands`); into ``SequenceData.noise_bands``.

    Arrays larger than :data:`MEMMAP_BYTES` together are written as ``.npy`` files
    under ``out_dir`` and memory-mapped (they must then not be deleted while
    training). Raises :class:`DataError` when a file's arrays disagree in length.
    """
    lengths = [len(x) for x in per_file_inputs]
    for i, (x, y, s) in enumerate(zip(per_file_inputs, per_file_targets, splits, strict=True)):
        if not len(x) == len(y) == s.n_frames:
            raise DataError(
                f"file {i}: inputs ({len(x)}), targets ({len(y)}) and split ({s.n_frames}) "
                f"disagree in frame count"
            )
    n_total = sum(lengths)
    d, k = per_file_inputs[0].shape[1], per_file_targets[0].shape[1]
    shapes = {"inputs": (n_total, d), "targets": (n_total, k)}
    files: tuple[Path, ...] = ()
    if out_dir is not None and n_total * (d + k) * 4 > MEMMAP_BYTES:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        files = tuple(Path(out_dir) / f"{name}.npy" for name in shapes)
        arrays = {
            name: np.lib.format.open_memmap(
                Path(out_dir) / f"{name}.npy", mode="w+", dtype=np.float32, shape=shape
            )
            for name, shape in shapes.items()
        }
    else:
        arrays = {name: np.empty(shape, dtype=np.float32) for name, shape in shapes.items()}
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    bands = noise_bands = None
    if per_file_noise_bands is not None and any(b is not None for b in per_file_noise_bands):
        noise_bands = np.full(n_total, n_noise, dtype=np.int32)
        for i, b in enumerate(per_file_noise_bands):
            if b is not None:
                noise_bands[offsets[i] : offsets[i + 1]] = b
    if noise_bands is not None or (
        per_file_bands is not None and any(b is not None for b in per_file_bands)
    ):
        bands = np.full(n_total, k - n_noise, dtype=np.int32)
        for i, b in enumerate(per_file_bands or ()):
            if b is not None:
                bands[offsets[i] : offsets[i + 1]] = b
    train, val, test = [], [], []
    for i, s in enumerate(splits):
        a, b = offsets[i], offsets[i + 1]
        arrays["inputs"][a:b] = per_file_inputs[i]
        arrays["targets"][a:b] = per_file_targets[i]
        train.append(a + sequence_starts(s.train, seq_len))
        val.append(a + sequence_starts(s.val, seq_len, stride=seq_len))
        test.append(a + sequence_starts(s.test, seq_len, stride=seq_len))
    return SequenceData(
        inputs=arrays["inputs"],
        targets=arrays["targets"],
        offsets=offsets,
        train_starts=np.concatenate(train),
        val_starts=np.concatenate(val),
        seq_len=seq_len,
        test_starts=np.concatenate(test),
        files=files,
        bands=bands,
        noise_bands=noise_bands,
    )


class SequenceDataset(torch.utils.data.Dataset):
    """Sequences of ``T`` frames starting at ``starts``; indexed by *arrays* of positions.

    ``dataset[idx]`` with ``idx`` an int64 array of ``B`` positions into ``starts``
    returns ``(x[B, T, D], y[B, T, K])``: the rows ``starts[idx, None] + arange(T)``
    gathered with one fancy-index per array, so a batch costs two copies and no
    per-item Python work; with ``data.bands``, ``(x, y, bands[B, T])``, and with
    ``data.noise_bands`` too, ``(x, y, bands[B, T], noise_bands[B, T])``. Use with
    :class:`SequenceSampler` and ``batch_size=None``.
    """

    def __init__(self, data: SequenceData, starts: np.ndarray):
        self.inputs, self.targets, self.bands = data.inputs, data.targets, data.bands
        self.noise_bands = data.noise_bands
        self.starts = np.asarray(starts, dtype=np.int64)
        self.window = np.arange(data.seq_len, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        rows = self.starts[idx, None] + self.window
        x, y = torch.from_numpy(self.inputs[rows]), torch.from_numpy(self.targets[rows])
        if self.bands is None:
            return x, y
        if self.noise_bands is None:
            return x, y, torch.from_numpy(self.bands[rows])
        return x, y, torch.from_numpy(self.bands[rows]), torch.from_numpy(self.noise_bands[rows])


class SequenceSampler(torch.utils.data.Sampler):
    """Yields int64 arrays of ``batch_size`` positions: one array per batch.

    With ``shuffle``, positions are permuted by a generator seeded with
    ``(seed, epoch)``; Lightning calls :meth:`set_epoch` before every epoch, so the
    data order is a function of the seed and the epoch only (and a resumed run
    sees the same order as an uninterrupted one). For data-parallel training each
    of ``world_size`` ranks takes every ``world_size``-th position of the same
    permutation, truncated so that all ranks run the same number of steps.
    """

    def __init__(
        self,
        n: int,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if n < world_size:
            raise DataError(f"{n} sequence(s) cannot be shared between {world_size} processes")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil((self.n // self.world_size) / self.batch_size)

    def __iter__(self):
        # A generator: the order is drawn at the first next(), after set_epoch.
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        mine = order[self.rank :: self.world_size][: self.n // self.world_size]
        for i in range(0, len(mine), self.batch_size):
            yield mine[i : i + self.batch_size]


def sequence_loader(
    data: SequenceData,
    starts: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> torch.utils.data.DataLoader:
    """A DataLoader of ``(x[B, T, D], y[B, T, K])`` batches over sequences at ``starts``.

    No worker processes: a batch is two array slices, far cheaper than a training step.
    """
    sampler = SequenceSampler(
        len(starts),
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    return torch.utils.data.DataLoader(
        SequenceDataset(data, starts), sampler=sampler, batch_size=None, num_workers=0
    )
