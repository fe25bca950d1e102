"""Build the small BERT-style student and initialise it (``student.init``).

* ``scratch``: random init (``BertConfig`` defaults).
* ``teacher``: reuse what the teacher has learnt, as far as shapes allow:
  - **same hidden size**: copy the embeddings, then a *uniform subset* of the teacher's
    layers (:func:`layer_subset`; a layer is copied only when heads and intermediate size
    match too), the pooler and the classifier head. This is DistilBERT's recipe.
  - **smaller hidden size**: layers cannot be copied, so the embeddings are *projected*:
    ``E_s = (E_t - mean) @ V[:, :h]`` where ``V`` are the top-``h`` right singular vectors
    of the centred teacher word-embedding matrix (PCA). Position and token-type embeddings
    go through the same projection, so the student starts with the teacher's geometry of
    the vocabulary instead of noise. The projected rows are rescaled to the default init
    scale so the (fresh) layers see inputs of the usual magnitude.
* ``pretrained``: a smaller encoder checkpoint (``student.pretrained``) loaded with a fresh
  classifier; its own size wins over ``student.layers/hidden/...``, and its vocabulary must
  be the teacher's (the student reads the teacher's tokenizer).

The vocabulary is always the teacher's tokenizer's, so the student ships that tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["StudentBuild", "build_student", "layer_subset", "student_config"]


@dataclass
class StudentBuild:
    """The student model and a line saying how it was initialised (goes into the report)."""

    model: Any
    init: str
    detail: str


def layer_subset(teacher_layers: int, student_layers: int) -> list[int]:
    """Uniformly spaced teacher layer indices, always ending with the last layer.

    6 -> 2: [2, 5]; 6 -> 3: [1, 3, 5]; 12 -> 4: [2, 5, 8, 11]; n -> n: all.
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(f"cannot pick {student_layers} of {teacher_layers} teacher layers")
    step = teacher_layers / student_layers
    return [round(step * (i + 1)) - 1 for i in range(student_layers)]


def student_config(spec_student: Any, *, vocab_size: int, labels: list[str], pad_token_id: int = 0) -> Any:
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=spec_student.hidden,
        num_hidden_layers=spec_student.layers,
        num_attention_heads=spec_student.heads,
        intermediate_size=spec_student.intermediate,
        max_position_embeddings=max(spec_student.max_length, 64),
        pad_token_id=pad_token_id,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    config._attn_implementation = "eager"  # exports to ONNX exactly (see export.py)
    return config


def build_student(spec_student: Any, teacher: Any, *, labels: list[str], seed: int) -> StudentBuild:
    """Return a fresh student for ``spec_student`` (a :class:`logdistill.spec.StudentSpec`).

    ``teacher`` is a ``BertForSequenceClassification``-like model (only read for
    ``init: teacher``; its ``config.vocab_size`` sets the student's vocabulary).
    """
    from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

    torch.manual_seed(seed)
    if spec_student.init == "pretrained":
        model = AutoModelForSequenceClassification.from_pretrained(
            spec_student.pretrained,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            ignore_mismatched_sizes=True,
        )
        if model.config.vocab_size != teacher.config.vocab_size:
            raise ValueError(
                f"student.pretrained {spec_student.pretrained}: vocabulary size {model.config.vocab_size}"
                f" differs from the teacher's {teacher.config.vocab_size}; the student must share the teacher's tokenizer"
            )
        return StudentBuild(model, "pretrained", f"from {spec_student.pretrained}")

    config = student_config(
        spec_student,
        vocab_size=teacher.config.vocab_size,
        labels=labels,
        pad_token_id=getattr(teacher.config, "pad_token_id", 0) or 0,
    )
    model = BertForSequenceClassification(config)
    if spec_student.init == "scratch":
        return StudentBuild(model, "scratch", "random init")
    detail = init_from_teacher(model, teacher)
    return StudentBuild(model, "teacher", detail)


def _encoder(model: Any) -> Any:
    """The ``BertModel`` inside a ``*ForSequenceClassification`` (or the model itself)."""
    return getattr(model, getattr(model, "base_model_prefix", "bert"), model)


@torch.no_grad()
def init_from_teacher(student: Any, teacher: Any) -> str:
    """Copy or project the teacher's weights into ``student`` in place; return what was done."""
    s_cfg, t_cfg = student.config, teacher.config
    s_enc, t_enc = _encoder(student), _encoder(teacher)
    s_emb, t_emb = s_enc.embeddings, t_enc.embeddings
    if s_cfg.hidden_size == t_cfg.hidden_size:
        positions = s_emb.position_embeddings.weight.shape[0]
        s_emb.word_embeddings.weight.copy_(t_emb.word_embeddings.weight)
        s_emb.position_embeddings.weight.copy_(t_emb.position_embeddings.weight[:positions])
        s_emb.token_type_embeddings.weight.copy_(t_emb.token_type_embeddings.weight[: s_cfg.type_vocab_size])
        s_emb.LayerNorm.load_state_dict(t_emb.LayerNorm.state_dict())
        same_block = (
            s_cfg.num_attention_heads == t_cfg.num_attention_heads
            and s_cfg.intermediate_size == t_cfg.intermediate_size
        )
        if not same_block:
            return "embeddings copied; layers fresh (heads or intermediate size differ from the teacher's)"
        picks = layer_subset(t_cfg.num_hidden_layers, s_cfg.num_hidden_layers)
        for s_layer, t_index in zip(s_enc.encoder.layer, picks):
            s_layer.load_state_dict(t_enc.encoder.layer[t_index].state_dict())
        copied = [f"teacher layers {picks}"]
        if getattr(s_enc, "pooler", None) is not None and getattr(t_enc, "pooler", None) is not None:
            s_enc.pooler.load_state_dict(t_enc.pooler.state_dict())
            copied.append("pooler")
        t_head, s_head = getattr(teacher, "classifier", None), getattr(student, "classifier", None)
        if t_head is not None and s_head is not None and t_head.weight.shape == s_head.weight.shape:
            s_head.load_state_dict(t_head.state_dict())
            copied.append("classifier")
        return "embeddings, " + ", ".join(copied) + " copied"

    hidden = s_cfg.hidden_size
    words = t_emb.word_embeddings.weight.float()
    mean = words.mean(dim=0, keepdim=True)
    # PCA of the vocabulary: top-`hidden` right singular vectors of the centred matrix.
    _, _, v_t = torch.linalg.svd(words - mean, full_matrices=False)
    basis = v_t[:hidden].T  # [teacher_hidden, hidden]
    projected_words = (words - mean) @ basis
    scale = s_cfg.initializer_range / projected_words.std().clamp_min(1e-8)
    s_emb.word_embeddings.weight.copy_(projected_words * scale)
    positions = s_emb.position_embeddings.weight.shape[0]
    t_pos = t_emb.position_embeddings.weight[:positions].float()
    s_emb.position_embeddings.weight.copy_((t_pos - t_pos.mean(dim=0, keepdim=True)) @ basis * scale)
    t_types = t_emb.token_type_embeddings.weight[: s_cfg.type_vocab_size].float()
    s_emb.token_type_embeddings.weight.copy_((t_types - t_types.mean(dim=0, keepdim=True)) @ basis * scale)
    return f"embeddings projected {t_cfg.hidden_size}->{hidden} by PCA of the teacher vocabulary; layers fresh"
