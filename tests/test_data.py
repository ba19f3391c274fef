"""data.py: the held-out split (property over random file lengths) and the batch loader."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from wms.errors import DataError
from wms.training.data import (
    SequenceSampler,
    build_arrays,
    range_mask,
    sequence_loader,
    sequence_starts,
    split_frames,
)


def _random_case(rng):
    n_files = int(rng.integers(1, 6))
    block = int(rng.integers(20, 400))
    lengths = [int(x) for x in rng.integers(5, 3000, size=n_files)]
    excluded = []
    for n in lengths:  # up to three trimmed silences per file, possibly touching the ends
        cuts = sorted(int(x) for x in rng.integers(0, n, size=2 * int(rng.integers(0, 4))))
        excluded.append([(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=True) if b > a])
    return dict(
        lengths=lengths,
        seq_len=int(rng.integers(1, 60)),
        val_fraction=float(rng.choice([0.0, 0.05, 0.1, 0.3])),
        test_fraction=float(rng.choice([0.0, 0.1, 0.2])),
        block_frames=block,
        gap_frames=int(rng.integers(0, 80)),
        seed=int(rng.integers(0, 1000)),
        excluded=excluded,
    )


@pytest.mark.slow
def test_split_property_no_held_out_or_trimmed_frame_in_any_training_sequence():
    rng = np.random.default_rng(1234)
    checked, infeasible = 0, []
    for _ in range(400):
        case = _random_case(rng)
        try:
            splits = split_frames(**case)
        except DataError as e:
            # Infeasible cases must raise (never return a leaky split), for one of two reasons.
            m = re.match(
                r"nothing could be held out|no training sequence of \d+ frames fits", str(e)
            )
            assert m, str(e)
            infeasible.append(m.group(0).split(" of ")[0])
            continue
        checked += 1
        T, gap = case["seq_len"], case["gap_frames"]
        for n, s, ex in zip(case["lengths"], splits, case["excluded"], strict=True):
            assert s.n_frames == n
            val, test, cut = range_mask(n, s.val), range_mask(n, s.test), range_mask(n, ex)
            assert val.sum() == sum(b - a for a, b in s.val)  # blocks do not overlap
            assert test.sum() == sum(b - a for a, b in s.test)
            assert not (val & test).any() and not ((val | test) & cut).any()
            # Held-out frames widened by the gap: no training frame may come that close,
            # and no training sequence may contain a trimmed silence.
            held = val | test
            near = np.convolve(held, np.ones(2 * gap + 1), mode="same") > 0 if gap else held
            for start in sequence_starts(s.train, T):
                assert 0 <= start and start + T <= n  # inside its own file
                assert not near[start : start + T].any()
                assert not cut[start : start + T].any()
        for kind in ("val", "test"):
            if case[f"{kind}_fraction"] > 0:
                assert sum(len(getattr(s, kind)) for s in splits) > 0
    # Seed 1234: 363 of the 400 cases are feasible (measured); the other 37 are genuinely
    # infeasible (a single file shorter than its block, blocks and gaps that leave no room
    # for a training sequence, or trimmed silences covering what would be held out).
    assert checked == 363
    assert sorted(infeasible) == ["no training sequence"] * 20 + ["nothing could be held out"] * 17


def test_split_sequences_never_cross_file_boundaries():
    lengths = [300, 50, 700]
    splits = split_frames(
        lengths, seq_len=20, val_fraction=0.1, block_frames=100, gap_frames=5, seed=0
    )
    data = build_arrays(
        [np.zeros((n, 3), np.float32) for n in lengths],
        [np.zeros((n, 4), np.float32) for n in lengths],
        splits,
        seq_len=20,
    )
    for starts in (data.train_starts, data.val_starts):
        first = np.searchsorted(data.offsets, starts, side="right")
        last = np.searchsorted(data.offsets, starts + 19, side="right")
        np.testing.assert_array_equal(first, last)


def test_long_file_holds_out_its_fraction_in_blocks():
    splits = split_frames(
        [10_000], seq_len=50, val_fraction=0.1, block_frames=625, gap_frames=50, seed=3
    )
    (s,) = splits
    assert len(s.val) == 2  # ceil(1000 / 625) blocks of 500 frames
    assert [b - a for a, b in s.val] == [500, 500]
    # train + val + 2 gaps of 50 on each side of each block = all frames
    assert sum(b - a for a, b in s.train) == 10_000 - 1000 - 4 * 50


def test_short_files_are_held_out_whole():
    lengths = [100, 120, 90, 110, 80, 100, 95, 105, 115, 85]
    splits = split_frames(
        lengths, seq_len=10, val_fraction=0.2, block_frames=200, gap_frames=5, seed=0
    )
    held = [s for s in splits if s.val]
    assert all(s.val == ((0, s.n_frames),) and s.train == () for s in held)
    assert 0.2 * sum(lengths) <= sum(s.n_frames for s in held) < 0.2 * sum(lengths) + 120


def test_split_is_seeded():
    kw = dict(seq_len=10, val_fraction=0.1, block_frames=100, gap_frames=5)
    a = split_frames([5000, 3000], seed=1, **kw)
    assert a == split_frames([5000, 3000], seed=1, **kw)
    assert a != split_frames([5000, 3000], seed=2, **kw)


def test_split_errors_name_the_problem():
    with pytest.raises(DataError, match="nothing could be held out"):
        split_frames([300], seq_len=10, val_fraction=0.1, block_frames=625, gap_frames=5, seed=0)
    with pytest.raises(DataError, match="no training sequence of 50 frames"):
        split_frames([40], seq_len=50, val_fraction=0.0, block_frames=625, gap_frames=5, seed=0)


def _data(lengths=(200, 150), T=8):
    rng = np.random.default_rng(0)
    splits = split_frames(
        list(lengths), seq_len=T, val_fraction=0.0, block_frames=1000, gap_frames=0, seed=0
    )
    xs = [rng.normal(size=(n, 3)).astype(np.float32) for n in lengths]
    ys = [rng.normal(size=(n, 5)).astype(np.float32) for n in lengths]
    return build_arrays(xs, ys, splits, seq_len=T), xs, ys


def test_batches_are_the_right_slices():
    data, xs, ys = _data()
    loader = sequence_loader(data, data.train_starts, batch_size=16, shuffle=True, seed=0)
    x, y = next(iter(loader))
    assert x.shape == (16, 8, 3) and y.shape == (16, 8, 5) and x.dtype == torch.float32
    order = np.random.default_rng([0, 0]).permutation(len(data.train_starts))
    for b in range(16):
        s = data.train_starts[order[b]]
        np.testing.assert_array_equal(x[b].numpy(), data.inputs[s : s + 8])
        np.testing.assert_array_equal(y[b].numpy(), data.targets[s : s + 8])
    # the concatenation keeps every file's rows in place
    np.testing.assert_array_equal(data.inputs[200:], xs[1])


def test_sampler_seeded_per_epoch_and_covers_everything():
    s = SequenceSampler(100, batch_size=7, shuffle=True, seed=5)
    e0 = np.concatenate(list(s))
    assert sorted(e0) == list(range(100))
    assert np.array_equal(e0, np.concatenate(list(s)))  # same epoch, same order
    s.set_epoch(1)
    assert not np.array_equal(e0, np.concatenate(list(s)))
    assert len(s) == 15


def test_sampler_shards_ranks_disjointly_with_equal_steps():
    ranks = [
        SequenceSampler(101, batch_size=10, shuffle=True, seed=0, rank=r, world_size=2)
        for r in range(2)
    ]
    parts = [np.concatenate(list(r)) for r in ranks]
    assert len(parts[0]) == len(parts[1]) == 50
    assert not set(parts[0]) & set(parts[1])
    assert len(ranks[0]) == len(ranks[1]) == len(list(ranks[0]))
    with pytest.raises(DataError, match="cannot be shared between 4 processes"):
        SequenceSampler(3, batch_size=1, shuffle=False, world_size=4)
