"""Real, tiny classifier artifacts built without torch, for the edge tests.

The model is a bag-of-words ONNX graph: each token id looks up a one-hot row of
``embedding`` (scaled by 10) for the label its word votes for, the rows are summed over
the attention mask, and a bias favours the normal label. So a line's label is the label
whose keywords it contains most, and the normal label when it contains none: tests can
assert labels exactly. The tokenizer is a real ``tokenizers`` WordLevel tokenizer
(lower-cased, split on words and punctuation), saved as ``tokenizer.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from logdistill.model.runtime.artifact import ONNX_MODEL, REPORT, Manifest, write_labels, write_manifest

DEFAULT_RULES = {"error": "ERROR", "failed": "ERROR", "panic": "FATAL", "kernel": "FATAL"}
FILLER_WORDS = ("the", "a", "of", "to", "on", "in", "node", "job", "ok", "started", "request", "user", "<", ">", "num")


def build_onnx_artifact(
    directory: str | Path,
    labels: list[str],
    keyword_rules: dict[str, str] | None = None,
    normal: str = "-",
    max_length: int = 32,
    *,
    accuracy: float = 0.93,
    macro_f1: float = 0.81,
    teacher: str = "test-teacher",
    extra_words: tuple[str, ...] = (),
    model_input: str | None = None,
    alert_below: float | None = None,
) -> Manifest:
    """Write a complete, verified artifact to ``directory`` and return its manifest.

    ``keyword_rules`` maps a (lower-case) word to the label it votes for. Changing
    ``extra_words`` changes the vocabulary (and so the version) without changing labels.
    ``model_input``: the manifest's ``info.input`` (unset: not recorded, as in artifacts made before it).
    ``alert_below``: the manifest's ``info.alertBelow`` (unset: not recorded; the top label decides).
    A line without a keyword scores the normal label 1 and every other 0 (logits): with three
    labels, P(normal) = e / (e + 2) = 0.58.
    """
    rules = DEFAULT_RULES if keyword_rules is None else keyword_rules
    if normal not in labels:
        raise ValueError(f"normal label {normal!r} not in {labels}")
    unknown = sorted(set(rules.values()) - set(labels))
    if unknown:
        raise ValueError(f"keyword rules name labels not in {labels}: {unknown}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    words = ["[PAD]", "[UNK]", *dict.fromkeys([*rules, *FILLER_WORDS, *extra_words])]
    vocab = {word: index for index, word in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))

    embedding = np.zeros((len(words), len(labels)), dtype=np.float32)
    for word, label in rules.items():
        embedding[vocab[word], labels.index(label)] = 10.0
    bias = np.zeros(len(labels), dtype=np.float32)
    bias[labels.index(normal)] = 1.0
    _write_graph(directory / ONNX_MODEL, embedding, np.eye(len(labels), dtype=np.float32), bias)

    write_labels(directory, labels, normal)
    report = {"accuracy": accuracy, "macroF1": macro_f1, "labels": labels}
    (directory / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    info = {
        "maxLength": max_length,
        "teacher": teacher,
        "student": {"layers": 0, "hidden": len(labels), "heads": 0, "intermediate": 0},
        "parameters": int(embedding.size + len(labels) ** 2 + bias.size),
        "labels": labels,
        "summary": {
            "student": {"accuracy": accuracy, "macroF1": macro_f1},
            "teacher": {"accuracy": 0.97, "macroF1": 0.9},
        },
    }
    if model_input is not None:
        info["input"] = model_input
    if alert_below is not None:
        info["alertBelow"] = alert_below
    return write_manifest(directory, kind="student", info=info)


def _write_graph(path: Path, embedding: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> None:
    """logits = sum_over_tokens(embedding[input_ids] * attention_mask) @ weight + bias."""
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["embedded"], axis=0),  # [B,S,D]
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),  # [B,S]
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask_3d"]),  # [B,S,1]
        helper.make_node("Mul", ["embedded", "mask_3d"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["pooled"], keepdims=0),  # [B,D]
        helper.make_node("MatMul", ["pooled", "weight"], ["projected"]),
        helper.make_node("Add", ["projected", "bias"], ["logits"]),
    ]
    initializers = [
        numpy_helper.from_array(embedding, "embedding"),
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    graph = helper.make_graph(
        nodes,
        "bag_of_words",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weight.shape[1]])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def expected_label(line: str, labels: list[str], keyword_rules: dict[str, str] | None = None, normal: str = "-") -> str:
    """The label the bag-of-words model gives ``line`` (ties go to the lower label index)."""
    rules = DEFAULT_RULES if keyword_rules is None else keyword_rules
    import re

    votes = np.zeros(len(labels))
    votes[labels.index(normal)] = 1.0
    for token in re.findall(r"\w+|[^\w\s]+", line.lower()):
        if token in rules:
            votes[labels.index(rules[token])] += 10.0
    return labels[int(votes.argmax())]
