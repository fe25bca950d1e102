"""Intermediate-layer distillation (``training.intermediate``): student hidden states (and
optionally attention maps) matched to chosen teacher layers through learned linear projections.

Shapes: ``B`` batch rows, ``S`` tokens, ``Hs``/``Ht`` student/teacher hidden sizes, ``hs``/``ht``
student/teacher attention heads.

* :func:`hidden_mse` ``(student_hidden [B,S,Hs], teacher_hidden [B,S,Ht], projection: Hs->Ht,
  attention_mask [B,S]) -> scalar``: squared error per hidden unit of ``projection(student)``
  vs the teacher, mean over hidden units, then a masked mean over real tokens (padding ignored).
* :func:`attention_mse` ``(student_attn [B,hs,S,S], teacher_attn [B,ht,S,S], attention_mask [B,S])
  -> scalar``: head-averaged attention maps (head counts may differ), squared error over
  (query, key) pairs of real tokens.
* Layer mapping (1-based; ``hidden_states[0]`` is the embedding output): ``uniform`` maps student
  layer ``i`` to teacher layer ``round(i * L_t / L_s)`` (:func:`uniform_mapping`), so the last
  student layer always matches the last teacher layer.

Student and teacher read the same tokenizer (the student ships the teacher's vocabulary,
:mod:`logdistill.model.engine.student`), so token positions line up one to one.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["IntermediateError", "uniform_mapping", "layer_mapping", "hidden_mse", "attention_mse",
           "IntermediateDistiller", "from_spec"]


class IntermediateError(ValueError):
    """``training.intermediate`` cannot be applied as configured; the message names the field."""


def uniform_mapping(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer (1-based) for each student layer ``i = 1..L_s``: ``round(i * L_t / L_s)``."""
    return [max(1, round(i * teacher_layers / student_layers)) for i in range(1, student_layers + 1)]


def layer_mapping(layers: Sequence[int] | None, student_layers: int, teacher_layers: int) -> list[int]:
    """``training.intermediate.layers`` checked against both models; ``None`` = uniform."""
    if layers is None:
        return uniform_mapping(student_layers, teacher_layers)
    chosen = list(layers)
    if len(chosen) != student_layers:
        raise IntermediateError(f"training.intermediate.layers: {len(chosen)} entries for a student of"
                                f" {student_layers} layers (one teacher layer per student layer)")
    bad = [layer for layer in chosen if not 1 <= layer <= teacher_layers]
    if bad:
        raise IntermediateError(f"training.intermediate.layers: {bad} outside the teacher's layers 1..{teacher_layers}")
    return chosen


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def hidden_mse(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, projection: Any,
               attention_mask: torch.Tensor) -> torch.Tensor:
    """Masked MSE of ``projection(student_hidden)`` vs ``teacher_hidden``. Scalar (see module doc)."""
    if student_hidden.shape[:2] != teacher_hidden.shape[:2] or attention_mask.shape != student_hidden.shape[:2]:
        raise ValueError(f"student {tuple(student_hidden.shape)}, teacher {tuple(teacher_hidden.shape)},"
                         f" mask {tuple(attention_mask.shape)}: batch and sequence sizes must agree")
    projected = projection(student_hidden.float())
    per_token = (projected - teacher_hidden.float()).pow(2).mean(dim=-1)  # [B, S]
    return _masked_mean(per_token, attention_mask)


def attention_mse(student_attn: torch.Tensor, teacher_attn: torch.Tensor, attention_mask: torch.Tensor
                  ) -> torch.Tensor:
    """Masked MSE of head-averaged attention maps. Scalar (see module doc)."""
    student_map, teacher_map = student_attn.float().mean(dim=1), teacher_attn.float().mean(dim=1)  # [B, S, S]
    if student_map.shape != teacher_map.shape:
        raise ValueError(f"attention maps {tuple(student_map.shape)} vs {tuple(teacher_map.shape)}")
    real = attention_mask.float()
    pairs = real[:, :, None] * real[:, None, :]  # [B, S, S]: both query and key are real tokens
    return _masked_mean((student_map - teacher_map).pow(2), pairs)


class IntermediateDistiller(torch.nn.Module):
    """The intermediate-layer term of the training loss, with its learned projections.

    ``fit`` calls the student with :attr:`student_kwargs`, then ``distiller(batch, outputs)``;
    the teacher runs here, frozen, on the same batch. The projections are trained with the
    student (their parameters join the optimizer) and are not exported.
    """

    def __init__(self, teacher: Any, student: Any, *, mapping: Sequence[int], weight: float,
                 attention: bool) -> None:
        super().__init__()
        self.teacher = [teacher]  # a list: not a submodule, so its weights stay out of the optimizer
        self.mapping = list(mapping)
        self.weight = float(weight)
        self.attention = attention
        student_hidden, teacher_hidden = student.config.hidden_size, teacher.config.hidden_size
        self.projections = torch.nn.ModuleList(torch.nn.Linear(student_hidden, teacher_hidden) for _ in self.mapping)
        if attention:  # SDPA kernels return no attention probabilities
            for model in (teacher, student):
                model.set_attn_implementation("eager")

    @property
    def student_kwargs(self) -> dict[str, bool]:
        return {"output_hidden_states": True, "output_attentions": self.attention}

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.projections.parameters())

    def forward(self, batch: dict[str, torch.Tensor], student_outputs: Any) -> torch.Tensor:
        teacher = self.teacher[0]
        with torch.no_grad():
            was_training = teacher.training
            teacher.eval()
            target = teacher(**batch, output_hidden_states=True, output_attentions=self.attention)
            teacher.train(was_training)
        mask = batch["attention_mask"]
        loss = student_outputs.hidden_states[-1].sum() * 0.0
        for i, layer in enumerate(self.mapping):
            loss = loss + hidden_mse(student_outputs.hidden_states[i + 1], target.hidden_states[layer],
                                     self.projections[i], mask)
            if self.attention:
                loss = loss + attention_mse(student_outputs.attentions[i], target.attentions[layer - 1], mask)
        return self.weight * loss / len(self.mapping)


def from_spec(intermediate: Any, teacher_spec: Any, teacher: Any, student: Any) -> IntermediateDistiller | None:
    """The distiller for ``training.intermediate`` or None when disabled; an endpoint teacher is refused."""
    if not intermediate.enabled:
        return None
    if teacher_spec.endpoint is not None or teacher is None:
        raise IntermediateError("training.intermediate needs a local teacher checkpoint (teacher.checkpoint or"
                                " teacher.ensemble): an endpoint teacher has no hidden states")
    mapping = layer_mapping(intermediate.layers, student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    return IntermediateDistiller(teacher, student, mapping=mapping, weight=intermediate.weight,
                                 attention=intermediate.attention)
