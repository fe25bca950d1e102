"""Properties of the distillation losses (pure tensor functions)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from logdistill.model.engine.losses import (  # noqa: E402
    UNLABELLED,
    distillation_loss,
    ensemble_soft_targets,
    hard_loss,
    kd_loss,
    soft_targets,
)

pytestmark = pytest.mark.torch


def _logits(rows: int = 6, classes: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, classes, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 8.0])
def test_kd_is_zero_for_identical_logits(temperature):
    z = _logits()
    assert kd_loss(z, soft_targets(z, temperature), temperature).item() == pytest.approx(0.0, abs=1e-4)


def test_kd_is_positive_for_different_logits():
    assert kd_loss(_logits(seed=1), soft_targets(_logits(seed=2), 2.0), 2.0).item() > 0.01


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_kd_is_t_squared_times_kl(temperature):
    s, t = _logits(seed=1), _logits(seed=2)
    p = soft_targets(t, temperature)
    kl = F.kl_div(F.log_softmax(s / temperature, dim=-1), p, reduction="batchmean")
    assert kd_loss(s, p, temperature).item() == pytest.approx(temperature**2 * kl.item(), rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 10.0])
def test_kd_gradient_matches_closed_form_t_times_q_minus_p(temperature):
    # d/ds [T^2 * KL(p || softmax(s/T))] = T * (softmax(s/T) - p) / B: the T^2 factor keeps the
    # gradient from shrinking as 1/T, so alpha means the same thing at every temperature.
    s = _logits(seed=3).requires_grad_(True)
    p = soft_targets(_logits(seed=4), temperature)
    kd_loss(s, p, temperature).backward()
    expected = temperature * (F.softmax(s.detach() / temperature, dim=-1) - p) / s.shape[0]
    assert torch.allclose(s.grad, expected, atol=1e-6)


def test_alpha_zero_is_pure_cross_entropy():
    s, labels = _logits(), torch.tensor([0, 1, 2, 3, 0, 1])
    got = distillation_loss(s, None, labels, temperature=2.0, alpha=0.0)
    assert got.item() == pytest.approx(F.cross_entropy(s, labels).item(), rel=1e-6)


def test_alpha_one_is_pure_kd_and_ignores_labels():
    s, p = _logits(seed=1), soft_targets(_logits(seed=2), 3.0)
    a = distillation_loss(s, p, torch.tensor([0, 1, 2, 3, 0, 1]), temperature=3.0, alpha=1.0)
    b = distillation_loss(s, p, torch.full((6,), UNLABELLED), temperature=3.0, alpha=1.0)
    assert a.item() == pytest.approx(kd_loss(s, p, 3.0).item(), rel=1e-6)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_mixed_alpha_is_the_weighted_sum():
    s, p, y = _logits(seed=1), soft_targets(_logits(seed=2), 2.0), torch.tensor([0, 1, 2, 3, 0, 1])
    got = distillation_loss(s, p, y, temperature=2.0, alpha=0.3)
    want = 0.3 * kd_loss(s, p, 2.0) + 0.7 * F.cross_entropy(s, y)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_unlabelled_rows_are_ignored_by_the_hard_term():
    s = _logits()
    labels = torch.tensor([0, UNLABELLED, 2, UNLABELLED, 0, 1])
    changed = s.clone()
    changed[[1, 3]] += 100.0  # only unlabelled rows change
    assert hard_loss(s, labels).item() == pytest.approx(hard_loss(changed, labels).item(), rel=1e-6)
    keep = labels != UNLABELLED
    assert hard_loss(s, labels).item() == pytest.approx(F.cross_entropy(s[keep], labels[keep]).item(), rel=1e-6)


def test_unlabelled_rows_still_get_the_soft_term():
    s = _logits().requires_grad_(True)
    p = soft_targets(_logits(seed=9), 2.0)
    labels = torch.full((6,), UNLABELLED)
    loss = distillation_loss(s, p, labels, temperature=2.0, alpha=0.5)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * kd_loss(s.detach(), p, 2.0).item(), rel=1e-6)
    assert s.grad.abs().sum() > 0


def test_all_unlabelled_hard_loss_is_zero_with_a_graph():
    s = _logits().requires_grad_(True)
    loss = hard_loss(s, torch.full((6,), UNLABELLED))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(s.grad) == 0


def test_ensemble_mixes_probabilities_by_weight():
    a, b = _logits(seed=1), _logits(seed=2)
    mixed = ensemble_soft_targets([a, b], [3.0, 1.0], 2.0)
    want = 0.75 * soft_targets(a, 2.0) + 0.25 * soft_targets(b, 2.0)
    assert torch.allclose(mixed, want, atol=1e-6)
    assert torch.allclose(mixed.sum(dim=1), torch.ones(6), atol=1e-6)
    assert torch.allclose(ensemble_soft_targets([a, a], [1.0, 5.0], 2.0), soft_targets(a, 2.0), atol=1e-6)


def test_shape_and_argument_errors():
    with pytest.raises(ValueError, match="student logits"):
        kd_loss(_logits(classes=4), soft_targets(_logits(classes=3), 1.0), 1.0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(_logits(), None, torch.zeros(6, dtype=torch.long), temperature=1.0, alpha=1.5)
    with pytest.raises(ValueError, match="teacher_probs"):
        distillation_loss(_logits(), None, torch.zeros(6, dtype=torch.long), temperature=1.0, alpha=0.5)


def test_balanced_class_weights_lift_rare_classes():
    from logdistill.model.engine.losses import balanced_class_weights

    weights = balanced_class_weights([0] * 16 + [1] * 4 + [2] + [UNLABELLED] * 5, 4)
    assert torch.allclose(weights, torch.tensor([1.0, 2.0, 4.0, 1.0]))
    s, y = _logits(rows=3, classes=4), torch.tensor([0, 1, 2])
    weighted = distillation_loss(s, None, y, temperature=1.0, alpha=0.0, class_weights=weights)
    assert weighted.item() == pytest.approx(F.cross_entropy(s, y, weight=weights).item(), rel=1e-6)
