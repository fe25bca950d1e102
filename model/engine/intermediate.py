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
           "TeacherTargets", "IntermediateDistiller", "from_spec"]


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


class TeacherTargets:
    """The frozen teacher's hidden states and head-averaged attention maps at the mapped layers, computed once
    per distinct input row and kept: the teacher runs in eval mode, so a row's targets never change, and every
    epoch after the first reads them instead of running the teacher again (its forward pass is most of a step's
    cost: 6 full layers against the student's one narrow one). A row is keyed by its real tokens (padding is
    left out of key and value), so it may sit in batches of any padding. Memory: about ``tokens x (Ht + tokens)``
    floats per distinct row, e.g. 2,500 transfer rows of 20 tokens at Ht = 384: ~80 MB."""

    def __init__(self, teacher: Any, mapping: Sequence[int], attention: bool) -> None:
        self.teacher, self.mapping, self.attention = teacher, list(mapping), attention
        self.rows: dict[tuple[int, ...], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per mapped layer: hidden states ``[B, S, Ht]`` and (with attention) head-averaged maps ``[B, S, S]``;
        zeros at padded positions, which the losses mask out."""
        real = batch["attention_mask"].bool()
        keys = [tuple(ids[keep].tolist()) for ids, keep in zip(batch["input_ids"], real)]
        missing = [i for i, key in enumerate(keys) if key not in self.rows]
        if missing:
            self._compute({name: value[missing] for name, value in batch.items()}, [keys[i] for i in missing])
        batch_size, length = real.shape
        device = batch["input_ids"].device
        hidden = [torch.zeros(batch_size, length, self.teacher.config.hidden_size, device=device) for _ in self.mapping]
        maps = [torch.zeros(batch_size, length, length, device=device) for _ in self.mapping] if self.attention else []
        for row, (key, keep) in enumerate(zip(keys, real)):
            row_hidden, row_maps = self.rows[key]
            for layer, values in enumerate(row_hidden):
                hidden[layer][row, keep] = values
            for layer, values in enumerate(row_maps):
                maps[layer][row][keep[:, None] & keep[None, :]] = values.flatten()
        return hidden, maps

    def _compute(self, batch: dict[str, torch.Tensor], keys: list[tuple[int, ...]]) -> None:
        with torch.no_grad():
            was_training = self.teacher.training
            self.teacher.eval()
            target = self.teacher(**batch, output_hidden_states=True, output_attentions=self.attention)
            self.teacher.train(was_training)
        for row, (key, keep) in enumerate(zip(keys, batch["attention_mask"].bool())):
            pairs = keep[:, None] & keep[None, :]
            self.rows[key] = (
                [target.hidden_states[layer][row, keep].float() for layer in self.mapping],
                [target.attentions[layer - 1][row].float().mean(dim=0)[pairs].reshape(int(keep.sum()), -1)
                 for layer in self.mapping] if self.attention else [],
            )


class IntermediateDistiller(torch.nn.Module):
    """The intermediate-layer term of the training loss, with its learned projections.

    ``fit`` calls the student with :attr:`student_kwargs`, then ``distiller(batch, outputs)``;
    the teacher's side comes from :class:`TeacherTargets` (frozen, each distinct row run once). The
    projections are trained with the student (their parameters join the optimizer) and are not exported.
    """

    def __init__(self, teacher: Any, student: Any, *, mapping: Sequence[int], weight: float,
                 attention: bool) -> None:
        super().__init__()
        self.mapping = list(mapping)
        self.weight = float(weight)
        self.attention = attention
        # A plain object, not a submodule: the teacher's weights stay out of the optimizer.
        self.targets = TeacherTargets(teacher, self.mapping, attention)
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
        hidden, maps = self.targets(batch)
        mask = batch["attention_mask"]
        loss = student_outputs.hidden_states[-1].sum() * 0.0
        for i in range(len(self.mapping)):
            loss = loss + hidden_mse(student_outputs.hidden_states[i + 1], hidden[i], self.projections[i], mask)
            if self.attention:  # maps are head-averaged already: one "head" on the teacher's side
                loss = loss + attention_mse(student_outputs.attentions[i], maps[i][:, None], mask)
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
