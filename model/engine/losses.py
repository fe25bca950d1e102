"""Distillation losses: pure tensor functions, no state.

Shapes: ``B`` = batch rows, ``C`` = classes (the teacher's label set, same column order
for teacher and student).

* ``student_logits``: float ``[B, C]``
* ``teacher_probs``:  float ``[B, C]``, rows sum to 1, already softened at temperature T
  (see :func:`soft_targets`; an ensemble averages several teachers' softened
  distributions by weight *before* the loss, see :func:`ensemble_soft_targets`)
* ``labels``: int64 ``[B]``, class index, or :data:`UNLABELLED` (-100) for a line without
  a label (teacher-labelled transfer lines): those rows get the soft term only.

The combined loss is ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels)``
(Hinton et al., 2015): the T^2 factor keeps the soft term's gradient magnitude comparable
to the hard term's as T changes.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["UNLABELLED", "balanced_class_weights", "soft_targets", "ensemble_soft_targets", "kd_loss", "hard_loss", "distillation_loss"]

UNLABELLED = -100
"""Label index of a row without a hard label (matches ``F.cross_entropy``'s ignore_index default)."""


def soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[B, C]`` logits -> ``[B, C]`` probabilities ``softmax(logits / T)``."""
    return F.softmax(teacher_logits.float() / temperature, dim=-1)


def ensemble_soft_targets(
    teacher_logits: Sequence[torch.Tensor], weights: Sequence[float], temperature: float
) -> torch.Tensor:
    """Weighted mixture of several teachers' softened distributions: ``sum_i w_i softmax(z_i / T) / sum_i w_i``."""
    if len(teacher_logits) != len(weights) or not teacher_logits:
        raise ValueError("one weight per teacher is required")
    total = float(sum(weights))
    mixed = sum(w * soft_targets(z, temperature) for z, w in zip(teacher_logits, weights))
    return mixed / total  # type: ignore[operator]


def balanced_class_weights(labels: Sequence[int], num_classes: int, power: float = 0.5) -> torch.Tensor:
    """``[C]`` weights ``(max_count / count_c) ** power`` over labelled rows (``UNLABELLED`` skipped).

    Logs are very unbalanced (BGL: ~130 normal templates, 1-3 per alert category); ``power=0.5``
    lifts rare classes without letting a single template dominate. Unseen classes get weight 1.
    """
    counts = torch.zeros(num_classes)
    for label in labels:
        if label != UNLABELLED:
            counts[label] += 1
    weights = torch.ones(num_classes)
    seen = counts > 0
    if bool(seen.any()):
        weights[seen] = (counts.max() / counts[seen]) ** power
    return weights


def kd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(teacher_probs || softmax(student / T))``, averaged over rows. Scalar."""
    if student_logits.shape != teacher_probs.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} vs teacher probs {tuple(teacher_probs.shape)}")
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    # kl_div(input=log q, target=p) = sum p * (log p - log q); xlogy makes 0 * log 0 = 0.
    per_row = (torch.xlogy(teacher_probs, teacher_probs) - teacher_probs * log_student).sum(dim=-1)
    return (temperature**2) * per_row.mean()


def hard_loss(student_logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Cross-entropy over labelled rows only (``labels != UNLABELLED``); 0 when no row is labelled. Scalar.

    ``class_weights`` (``[C]``, optional) weights each row by its class (weighted mean).
    """
    labelled = labels != UNLABELLED
    if not bool(labelled.any()):
        return student_logits.sum() * 0.0  # keeps the graph (and dtype/device) intact
    return F.cross_entropy(student_logits[labelled].float(), labels[labelled], weight=class_weights)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``alpha * kd_loss + (1 - alpha) * hard_loss``. Scalar.

    ``alpha = 0`` is pure cross-entropy (``teacher_probs`` may then be ``None``);
    ``alpha = 1`` is pure distillation. Unlabelled rows contribute to the KD term only.
    ``class_weights`` (``[C]``) weights the hard term per class (see :func:`balanced_class_weights`).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    loss = student_logits.sum() * 0.0
    if alpha > 0.0:
        if teacher_probs is None:
            raise ValueError("teacher_probs is required when alpha > 0")
        loss = loss + alpha * kd_loss(student_logits, teacher_probs, temperature)
    if alpha < 1.0:
        loss = loss + (1.0 - alpha) * hard_loss(student_logits, labels, class_weights)
    return loss
