"""Build the small BERT-style student and initialise it (``student.init``).

* ``scratch``: random init (``BertConfig`` defaults).
* ``teacher``: reuse what the teacher has learnt, as far as shapes allow:
  - **layers fit** (no more layers, heads, width or feed-forward neurons than the teacher, and
    the same head size): copy the embeddings, then a *uniform subset* of the teacher's layers
    (:func:`layer_subset`), the pooler and the classifier head (DistilBERT's recipe). What is
    narrower keeps the teacher's most important parts, all data-free: the residual channels
    with the largest embedding activations (:func:`hidden_channels`), the attention heads and
    feed-forward neurons that read and write the most (:func:`attention_heads`,
    :func:`ffn_neurons`); every matrix is sliced to them (width pruning, as in Minitron).
  - **same width, other head size**: embeddings copied, layers fresh.
  - **smaller width, other head size**: layers cannot be copied, so the embeddings are *projected*:
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

__all__ = [
    "StudentBuild", "attention_heads", "build_student", "ffn_neurons", "hidden_channels", "layer_subset",
    "student_config",
]


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


def attention_heads(layer: Any, keep: int, head_size: int) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` most important attention heads of a BERT layer.

    Importance of head ``h``: ``||W_v[h]|| * ||W_o[:, h]||`` (the same read-and-write criterion
    as :func:`ffn_neurons`, over the head's value and output-projection slices).
    """
    w_v = layer.attention.self.value.weight.float()  # [heads * head_size, H]
    w_o = layer.attention.output.dense.weight.float()  # [H, heads * head_size]
    heads = w_v.shape[0] // head_size
    if not 1 <= keep <= heads:
        raise ValueError(f"cannot keep {keep} of {heads} attention heads")
    importance = w_v.reshape(heads, -1).norm(dim=1) * w_o.reshape(w_o.shape[0], heads, head_size).norm(dim=(0, 2))
    return importance.topk(keep).indices.sort().values


def hidden_channels(encoder: Any, keep: int) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` residual-stream channels to keep when narrowing an encoder.

    Importance of channel ``c``: its mean magnitude in the embedding LayerNorm's output over the
    whole vocabulary (position 0, token type 0), which is what the first copied layer reads. Data-free,
    like Minitron's width pruning but with the vocabulary standing in for calibration text; it keeps
    the few large-magnitude "outlier" channels that BERT-like encoders rely on.
    """
    embeddings = encoder.embeddings
    words = embeddings.word_embeddings.weight.float()
    if not 1 <= keep <= words.shape[1]:
        raise ValueError(f"cannot keep {keep} of {words.shape[1]} hidden channels")
    rows = words + embeddings.position_embeddings.weight[0].float()
    if hasattr(embeddings, "token_type_embeddings"):
        rows = rows + embeddings.token_type_embeddings.weight[0].float()
    importance = embeddings.LayerNorm(rows).abs().mean(dim=0)
    return importance.topk(keep).indices.sort().values


def _copy_linear(target: Any, source: Any, rows: torch.Tensor | None, columns: torch.Tensor | None) -> None:
    weight, bias = source.weight, source.bias
    if rows is not None:
        weight, bias = weight[rows], bias[rows]
    if columns is not None:
        weight = weight[:, columns]
    target.weight.copy_(weight)
    target.bias.copy_(bias)


def _copy_norm(target: Any, source: Any, channels: torch.Tensor | None) -> None:
    target.weight.copy_(source.weight if channels is None else source.weight[channels])
    target.bias.copy_(source.bias if channels is None else source.bias[channels])


@torch.no_grad()
def _copy_layer(target: Any, source: Any, channels: torch.Tensor | None = None) -> str:
    """Copy a BERT layer into a narrower one; return what was pruned ("" for an exact copy).

    ``channels``: the residual-stream channels kept (None = all). Fewer heads keep the top
    :func:`attention_heads` (the head size must match), a narrower feed-forward block the top
    :func:`ffn_neurons`.
    """
    t_self, s_self = target.attention.self, source.attention.self
    head_size = s_self.attention_head_size  # the student's too (see _layers_fit)
    heads_total = s_self.query.out_features // head_size
    heads_kept = t_self.query.out_features // head_size
    width = target.intermediate.dense.out_features
    pruned = []
    dims = None
    if heads_kept < heads_total:
        heads = attention_heads(source, heads_kept, head_size)
        dims = (heads[:, None] * head_size + torch.arange(head_size)).reshape(-1)
        pruned.append(f"top {heads_kept} of {heads_total} heads")
    neurons = None
    if width < source.intermediate.dense.out_features:
        neurons = ffn_neurons(source, width)
        pruned.append(f"top {width} of {source.intermediate.dense.out_features} feed-forward neurons")
    for name in ("query", "key", "value"):
        _copy_linear(getattr(t_self, name), getattr(s_self, name), dims, channels)
    _copy_linear(target.attention.output.dense, source.attention.output.dense, channels, dims)
    _copy_norm(target.attention.output.LayerNorm, source.attention.output.LayerNorm, channels)
    _copy_linear(target.intermediate.dense, source.intermediate.dense, neurons, channels)
    _copy_linear(target.output.dense, source.output.dense, channels, neurons)
    _copy_norm(target.output.LayerNorm, source.output.LayerNorm, channels)
    return ", ".join(pruned)


def _layers_fit(s_cfg: Any, t_cfg: Any, t_enc: Any) -> bool:
    """Whether the student's layers can start from a subset of the source's BERT layers: no more
    layers, heads, width or feed-forward neurons than the source, and the same head size."""
    layers = getattr(getattr(t_enc, "encoder", None), "layer", None) or []
    # MPNet, DistilBERT and others name their layers' parts differently: nothing to slice.
    bert_layers = bool(layers) and hasattr(getattr(layers[0], "attention", None), "self")
    return (
        bert_layers
        and s_cfg.num_hidden_layers <= t_cfg.num_hidden_layers
        and s_cfg.hidden_size <= t_cfg.hidden_size
        and s_cfg.num_attention_heads <= t_cfg.num_attention_heads
        and s_cfg.intermediate_size <= t_cfg.intermediate_size
        and s_cfg.hidden_size // s_cfg.num_attention_heads == t_cfg.hidden_size // t_cfg.num_attention_heads
    )


@torch.no_grad()
def init_from_encoder(student: Any, teacher: Any, *, copy_head: bool = True) -> str:
    """Copy, prune or project ``teacher``'s weights (any BERT-like encoder) into ``student`` in
    place; return what was done. ``copy_head``: also the classifier, when its shape matches."""
    s_cfg, t_cfg = student.config, teacher.config
    s_enc, t_enc = _encoder(student), _encoder(teacher)
    s_emb, t_emb = s_enc.embeddings, t_enc.embeddings
    fits = _layers_fit(s_cfg, t_cfg, t_enc)
    if s_cfg.hidden_size == t_cfg.hidden_size or fits:
        narrower = s_cfg.hidden_size < t_cfg.hidden_size
        channels = hidden_channels(t_enc, s_cfg.hidden_size) if narrower else None
        positions = s_emb.position_embeddings.weight.shape[0]
        columns = slice(None) if channels is None else channels
        s_emb.word_embeddings.weight.copy_(t_emb.word_embeddings.weight[:, columns])
        s_emb.position_embeddings.weight.copy_(t_emb.position_embeddings.weight[:positions][:, columns])
        if hasattr(t_emb, "token_type_embeddings"):
            types = t_emb.token_type_embeddings.weight[: s_cfg.type_vocab_size]
            s_emb.token_type_embeddings.weight.copy_(types[:, columns])
        _copy_norm(s_emb.LayerNorm, t_emb.LayerNorm, channels)
        if not fits:
            return "embeddings copied; layers fresh (heads, layers or intermediate size do not fit the source's)"
        picks = layer_subset(t_cfg.num_hidden_layers, s_cfg.num_hidden_layers)
        pruned = ""
        for s_layer, t_index in zip(s_enc.encoder.layer, picks):
            pruned = _copy_layer(s_layer, t_enc.encoder.layer[t_index], channels)
        if narrower:
            pruned = ", ".join(filter(None, [f"top {s_cfg.hidden_size} of {t_cfg.hidden_size} hidden channels", pruned]))
        copied = [f"layers {picks}" + (f" ({pruned})" if pruned else "")]
        if getattr(s_enc, "pooler", None) is not None and getattr(t_enc, "pooler", None) is not None:
            _copy_linear(s_enc.pooler.dense, t_enc.pooler.dense, channels, channels)
            copied.append("pooler")
        t_head, s_head = getattr(teacher, "classifier", None), getattr(student, "classifier", None)
        if copy_head and t_head is not None and s_head is not None and t_head.weight.shape[0] == s_head.weight.shape[0]:
            _copy_linear(s_head, t_head, None, channels)
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
