"""losses.py: every loss against a value computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from wms.config import RULES
from wms.training.losses import (
    LOSSES,
    WMSLoss,
    log_magnitude_l1,
    log_spectral_loss,
    lowfreq_weights,
    mse,
    smoothness_penalty,
    spectral_convergence,
    spectral_loss,
    weighted_mse,
)


def log1p(*rows):
    return torch.log1p(torch.tensor(rows, dtype=torch.float64))


# Two items of magnitudes: target [3, 4] both; predictions [0, 0] and [3, 0].
TARGET = log1p([3.0, 4.0], [3.0, 4.0])
PRED = log1p([0.0, 0.0], [3.0, 0.0])


def test_spectral_convergence_by_hand():
    # ||[3,4] - [0,0]|| / ||[3,4]|| = 1;  ||[0,4]|| / 5 = 0.8
    sc = spectral_convergence(PRED, TARGET, reduction="none")
    torch.testing.assert_close(sc, torch.tensor([1.0, 0.8], dtype=torch.float64))
    assert spectral_convergence(PRED, TARGET).item() == pytest.approx(0.9)
    assert spectral_convergence(PRED, TARGET, reduction="sum").item() == pytest.approx(1.8)


def test_spectral_convergence_is_per_item_over_time_and_frequency():
    # One item [T=2, K=1]: magnitudes target [3, 4], prediction [0, 4] -> ||[3, 0]|| / 5 = 0.6
    t = log1p([[3.0], [4.0]])[None]
    p = log1p([[0.0], [4.0]])[None]
    assert spectral_convergence(p, t).item() == pytest.approx(0.6)


def test_log_magnitude_l1_by_hand():
    # |log1p - log1p| elementwise: item 1: [log 4, log 5]; item 2: [0, log 5]
    expected = (math.log(4) + math.log(5) + 0 + math.log(5)) / 4
    assert log_magnitude_l1(PRED, TARGET).item() == pytest.approx(expected)


def test_spectral_loss_is_convergence_plus_l1_per_item():
    per_item = spectral_loss(PRED, TARGET, reduction="none")
    expected = torch.tensor(
        [1.0 + (math.log(4) + math.log(5)) / 2, 0.8 + math.log(5) / 2], dtype=torch.float64
    )
    torch.testing.assert_close(per_item, expected)
    assert spectral_loss(PRED, TARGET).item() == pytest.approx(expected.mean().item())


def test_log_spectral_loss_by_hand():
    # item 1: |log(0 + e) - log(3 + e)|, |log(0 + e) - log(4 + e)|; item 2: 0, |log(e) - log(4 + e)|
    e = 0.01
    l1 = [
        (math.log(3 + e) - math.log(e) + math.log(4 + e) - math.log(e)) / 2,
        (math.log(4 + e) - math.log(e)) / 2,
    ]
    expected = torch.tensor([1.0 + l1[0], 0.8 + l1[1]], dtype=torch.float64)
    torch.testing.assert_close(log_spectral_loss(PRED, TARGET, eps=e, reduction="none"), expected)
    # WMSLoss pools the convergence over the batch: ||T - P|| = sqrt(9 + 16 + 0 + 16), ||T|| =
    # sqrt(50); the L1 term is the mean over frames
    loss = WMSLoss("log_spectral", n_bins=2, cycles=2)
    assert loss(PRED, TARGET).item() == pytest.approx(math.sqrt(41 / 50) + sum(l1) / 2)


def test_log_spectral_loss_keeps_a_gradient_in_the_valleys():
    # A near-silent bin predicted 20 dB too loud: the log1p L1 barely sees it, the log loss does.
    target = torch.log1p(torch.tensor([[100.0, 0.001]], dtype=torch.float64))
    pred = torch.log1p(torch.tensor([[100.0, 0.01]], dtype=torch.float64)).requires_grad_()
    (g_log1p,) = torch.autograd.grad(spectral_loss(pred, target), pred)
    (g_log,) = torch.autograd.grad(log_spectral_loss(pred, target), pred)
    assert g_log[0, 1] > 10 * g_log1p[0, 1] > 0
    assert g_log1p[0, 1].item() == pytest.approx(0.5101)  # measured 0.5100999999985
    assert g_log[0, 1].item() == pytest.approx(25.2601)  # measured 25.2600999999985


def test_every_configurable_loss_exists():
    assert set(LOSSES) == set(RULES[("train", "loss")].choices)


def test_mse_by_hand():
    p, t = torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2)
    assert mse(p, t).item() == pytest.approx(2.5)
    assert mse(p, t, reduction="sum").item() == pytest.approx(5.0)


def test_lowfreq_weights_by_hand():
    # 1 / (1 + k / N) for N = 2: [1, 2/3, 1/2, 2/5]; mean 77/120
    w = lowfreq_weights(4, cycles=2)
    expected = torch.tensor([1, 2 / 3, 1 / 2, 2 / 5]) * 120 / 77
    torch.testing.assert_close(w, expected)
    assert w.mean().item() == pytest.approx(1.0)


def test_weighted_mse_by_hand():
    p, t = torch.ones(1, 2), torch.zeros(1, 2)
    w = torch.tensor([1.0, 2.0])
    assert weighted_mse(p, t, w).item() == pytest.approx(1.5)
    torch.testing.assert_close(weighted_mse(p, t, w, reduction="none"), torch.tensor([[1.0, 2.0]]))


def test_smoothness_penalty_by_hand():
    # diffs [1, 2] -> squares [1, 4]
    assert smoothness_penalty(torch.tensor([[0.0, 1.0, 3.0]])).item() == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # squared errors [0, 1, 4]; smoothness of [0, 1, 3] is 2.5 (weight 0.5)
        ("mse", 5 / 3 + 0.5 * 2.5),
        # weights for K = 3, N = 2: [1, 2/3, 1/2] / (13/18) = [18, 12, 9] / 13
        ("weighted_mse", (0 * 18 + 1 * 12 + 4 * 9) / 13 / 3 + 0.5 * 2.5),
    ],
)
def test_wmsloss_combines_loss_and_smoothness(name, expected):
    pred, target = torch.tensor([[0.0, 1.0, 3.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    loss = WMSLoss(name, n_bins=3, cycles=2, smoothness_weight=0.5)
    assert loss(pred, target).item() == pytest.approx(expected)


def test_wmsloss_spectral_pools_the_convergence():
    loss = WMSLoss("spectral", n_bins=2, cycles=2)
    l1 = log_magnitude_l1(PRED, TARGET).item()  # mean over every frame and bin
    assert loss(PRED, TARGET).item() == pytest.approx(math.sqrt(41 / 50) + l1)


@pytest.mark.parametrize("name", LOSSES)
def test_silent_sequences_cannot_blow_up_the_loss(name):
    """A batch of one sounding and one (near-)silent sequence: the per-sequence convergence of
    the reference explodes (1e-9 / 1e-8 floors), WMSLoss leaves the quiet frames out."""
    torch.manual_seed(0)
    sound = torch.log1p(torch.rand(1, 6, 8, dtype=torch.float64) * 100)
    quiet = torch.log1p(torch.full((1, 6, 8), 1e-7, dtype=torch.float64))
    pred = torch.log1p(torch.rand(2, 6, 8, dtype=torch.float64))
    target = torch.cat([sound, quiet])
    assert spectral_loss(pred, target).item() > 1e5  # the reference: dominated by silence
    loss = WMSLoss(name, n_bins=8, cycles=2, energy_floor=1e-6)
    both, alone = loss(pred, target), loss(pred[:1], target[:1])
    assert torch.isfinite(both) and both.item() == pytest.approx(alone.item(), rel=1e-12)
    silent = loss(pred[1:], target[1:])  # nothing kept: no signal, no gradient, no blow-up
    assert silent.item() == 0.0


def test_bad_reduction_and_name_raise():
    with pytest.raises(ValueError, match="reduction = 'avg'"):
        mse(PRED, TARGET, reduction="avg")
    with pytest.raises(ValueError, match="train.loss = 'l2'"):
        WMSLoss("l2", n_bins=2, cycles=2)
