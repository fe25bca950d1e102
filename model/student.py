"""Build the small BERT-style student and initialise it (``student.init``).

* ``scratch``: random init (``BertConfig`` defaults).
* ``teacher``: reuse what the teacher has learnt, as far as shapes allow:
  - **same hidden size**: copy the embeddings, then a *uniform subset* of the teacher's
    layers (:func:`layer_subset`), the pooler and the classifier head (DistilBERT's recipe).
    A layer is copied when the head count matches; a smaller ``student.intermediate`` keeps
    the teacher's most important feed-forward neurons (:func:`ffn_neurons`), so a narrow
    feed-forward block still starts from the teacher's weights.
  - **smaller hidden size**: layers cannot be copied, so the embeddings are *projected*:
    ``E_s = (E_t - mean) @ V[:, :h]`` where ``V`` are the top-``h`` right singular vectors
    of the centred teacher word-embedding matrix (PCA). Position and token-type embeddings
    go through the same projection, so the student starts with the teacher's geometry of
    the vocabulary instead of noise. The projected rows are rescaled to the default init
    scale so the (fresh) layers see inputs of the usual magnitude. (Measured on BGL: such a
    student's fresh layers hardly fit 150 templates; copied layers fit them in a few epochs.)
* ``pretrained``: the same copy rules, from a smaller shipped encoder (``student.pretrained``,
  e.g. all-MiniLM-L6-v2 under an all-mpnet-base-v2 teacher). The classifier head is fresh and the
  student keeps **that encoder's tokenizer**: soft targets are computed on text, so the teacher's
  tokenizer may differ.

With ``scratch`` and ``teacher`` the vocabulary is the teacher's, so the student ships that tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["StudentBuild", "build_student", "ffn_neurons", "layer_subset", "student_config"]


@dataclass
class StudentBuild:
    """The student model and a line saying how it was initialised (goes into the report)."""

    model: Any
    init: str
    detail: str
    tokenizer: Any = None
    """The student's own tokenizer (``init: pretrained``); None = the teacher's."""


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

    ``teacher`` is a ``BertForSequenceClassification``-like model (its weights are read for
    ``init: teacher``; its ``config.vocab_size`` sets the vocabulary unless ``init: pretrained``,
    where the pretrained encoder's vocabulary and tokenizer are used).
    """
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    source, tokenizer, origin = teacher, None, "the teacher"
    if spec_student.init == "pretrained":
        source, tokenizer = load_pretrained(spec_student.pretrained)
        origin = spec_student.pretrained
    config = student_config(
        spec_student,
        vocab_size=source.config.vocab_size,
        labels=labels,
        pad_token_id=getattr(source.config, "pad_token_id", 0) or 0,
    )
    model = BertForSequenceClassification(config)
    if spec_student.init == "scratch":
        return StudentBuild(model, "scratch", "random init")
    detail = init_from_encoder(model, source, copy_head=spec_student.init == "teacher")
    return StudentBuild(model, spec_student.init, f"from {origin}: {detail}", tokenizer)


def load_pretrained(path: str) -> tuple[Any, Any]:
    """``(encoder, tokenizer)`` of a local checkpoint; a ValueError names ``student.pretrained``."""
    from transformers import AutoModel, AutoTokenizer

    try:
        return AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"student.pretrained {path}: cannot load an encoder and its tokenizer: {err}") from None


def _encoder(model: Any) -> Any:
    """The ``BertModel`` inside a ``*ForSequenceClassification`` (or the model itself)."""
    return getattr(model, getattr(model, "base_model_prefix", "bert"), model)


def ffn_neurons(layer: Any, keep: int) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` most important feed-forward neurons of a BERT layer.

    Importance of neuron ``j``: ``||W_in[j, :]|| * ||W_out[:, j]||`` (how much it can read and
    write), a data-free criterion that needs no forward pass.
    """
    w_in, w_out = layer.intermediate.dense.weight, layer.output.dense.weight  # [I, H], [H, I]
    if not 1 <= keep <= w_in.shape[0]:
        raise ValueError(f"cannot keep {keep} of {w_in.shape[0]} feed-forward neurons")
    importance = w_in.float().norm(dim=1) * w_out.float().norm(dim=0)
    return importance.topk(keep).indices.sort().values


@torch.no_grad()
def _copy_layer(target: Any, source: Any) -> None:
    """Copy a BERT layer; a narrower feed-forward block keeps the top :func:`ffn_neurons`."""
    width = target.intermediate.dense.out_features
    if width == source.intermediate.dense.out_features:
        target.load_state_dict(source.state_dict())
        return
    keep = ffn_neurons(source, width)
    target.attention.load_state_dict(source.attention.state_dict())
    target.intermediate.dense.weight.copy_(source.intermediate.dense.weight[keep])
    target.intermediate.dense.bias.copy_(source.intermediate.dense.bias[keep])
    target.output.dense.weight.copy_(source.output.dense.weight[:, keep])
    target.output.dense.bias.copy_(source.output.dense.bias)
    target.output.LayerNorm.load_state_dict(source.output.LayerNorm.state_dict())


@torch.no_grad()
def init_from_encoder(student: Any, teacher: Any, *, copy_head: bool = True) -> str:
    """Copy or project ``teacher``'s weights (any BERT-like encoder) into ``student`` in place;
    return what was done. ``copy_head``: also the classifier, when its shape matches."""
    s_cfg, t_cfg = student.config, teacher.config
    s_enc, t_enc = _encoder(student), _encoder(teacher)
    s_emb, t_emb = s_enc.embeddings, t_enc.embeddings
    if s_cfg.hidden_size == t_cfg.hidden_size:
        positions = s_emb.position_embeddings.weight.shape[0]
        s_emb.word_embeddings.weight.copy_(t_emb.word_embeddings.weight)
        s_emb.position_embeddings.weight.copy_(t_emb.position_embeddings.weight[:positions])
        if hasattr(t_emb, "token_type_embeddings"):
            s_emb.token_type_embeddings.weight.copy_(t_emb.token_type_embeddings.weight[: s_cfg.type_vocab_size])
        s_emb.LayerNorm.load_state_dict(t_emb.LayerNorm.state_dict())
        same_block = (
            s_cfg.num_attention_heads == t_cfg.num_attention_heads
            and s_cfg.intermediate_size <= t_cfg.intermediate_size
            and s_cfg.num_hidden_layers <= t_cfg.num_hidden_layers
        )
        if not same_block:
            return "embeddings copied; layers fresh (heads, layers or intermediate size do not fit the source's)"
        picks = layer_subset(t_cfg.num_hidden_layers, s_cfg.num_hidden_layers)
        for s_layer, t_index in zip(s_enc.encoder.layer, picks):
            _copy_layer(s_layer, t_enc.encoder.layer[t_index])
        pruned = s_cfg.intermediate_size < t_cfg.intermediate_size
        copied = [f"layers {picks}" + (f" (top {s_cfg.intermediate_size} of {t_cfg.intermediate_size}"
                                        " feed-forward neurons)" if pruned else "")]
        if getattr(s_enc, "pooler", None) is not None and getattr(t_enc, "pooler", None) is not None:
            s_enc.pooler.load_state_dict(t_enc.pooler.state_dict())
            copied.append("pooler")
        t_head, s_head = getattr(teacher, "classifier", None), getattr(student, "classifier", None)
        if copy_head and t_head is not None and s_head is not None and t_head.weight.shape == s_head.weight.shape:
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
    if hasattr(t_emb, "token_type_embeddings"):  # MPNet, RoBERTa-likes may have none
        t_types = t_emb.token_type_embeddings.weight[: s_cfg.type_vocab_size].float()
        s_emb.token_type_embeddings.weight.copy_((t_types - t_types.mean(dim=0, keepdim=True)) @ basis * scale)
    return f"embeddings projected {t_cfg.hidden_size}->{hidden} by PCA of the teacher vocabulary; layers fresh"
