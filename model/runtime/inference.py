"""Inference on an artifact's int8 ONNX model with ONNX Runtime and ``tokenizers`` (no torch).

The edge classifier, ``evaluate``/``predict`` and the benchmarks all score through this
class, so what is measured is what runs on the nodes. Inputs are what the artifact's
``info.input`` names (:data:`logdistill.model.runtime.templates.MODEL_INPUTS`): the masked template
or the lightly masked line, exactly what the model was trained on; :attr:`OnnxClassifier.model_input`
maps a raw line to it.

ONNX contract (written by ``logdistill.model.engine.export``): inputs ``input_ids`` and
``attention_mask`` (int64, [batch, seq], both axes dynamic), output ``logits``
([batch, num_labels], column i = ``labels[i]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from logdistill.model.runtime.artifact import ONNX_MODEL, ArtifactError, Manifest, read_labels, verify_artifact
from logdistill.model.runtime.templates import model_input

__all__ = ["OnnxClassifier", "decide", "softmax"]

TOKENIZER_FILE = "tokenizer.json"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``[batch, classes]`` logits, numerically stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def decide(probs: np.ndarray, normal_index: int, alert_below: float | None = None) -> np.ndarray:
    """Class index per row of ``[batch, classes]`` probabilities.

    ``alert_below`` unset: the argmax. Set: the most likely *alert* class whenever the normal
    class's probability is below it, else normal. A line of an alert category the model never
    saw tends to spread its probability over the known alerts, leaving "normal" the argmax with
    little mass (measured on BGL: 0.35 for every line of a left-out category; see
    docs/benchmarks.md, cascade), so a bar on the normal probability flags what the argmax misses.
    """
    best = probs.argmax(axis=1)
    if alert_below is None or probs.shape[1] < 2:
        return best
    alerts = probs.copy()
    alerts[:, normal_index] = -1.0
    return np.where(probs[:, normal_index] < alert_below, alerts.argmax(axis=1), normal_index)


class OnnxClassifier:
    """A verified artifact loaded for inference.

    ``threads`` bounds ONNX Runtime's intra-op pool (edge nodes have ~2 cores; one
    thread per process is usually fastest for small batches).
    """

    def __init__(self, directory: str | Path, *, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.manifest: Manifest = verify_artifact(directory, required=(ONNX_MODEL, TOKENIZER_FILE, "labels.json"))
        self.directory = Path(directory)
        self.labels, self.normal_label = read_labels(self.directory)
        self.max_length = int(self.manifest.info.get("maxLength", 64))
        self.input = self.manifest.input
        self.alert_below = self.manifest.alert_below
        """The artifact's alert bar (:func:`decide`): what :meth:`predict`, the evaluation and the edge answer."""
        self._normal_index = self.labels.index(self.normal_label)
        self.model_input = model_input(self.input)
        """Raw line -> this model's input (:func:`~logdistill.model.runtime.templates.mask` for ``template``)."""
        try:
            tokenizer = Tokenizer.from_file(str(self.directory / TOKENIZER_FILE))
        except Exception as err:  # tokenizers raises a bare Exception on bad JSON
            raise ArtifactError(f"{self.directory / TOKENIZER_FILE}: cannot load tokenizer: {err}") from None
        tokenizer.enable_truncation(self.max_length)
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        self.tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(self.directory / ONNX_MODEL), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ArtifactError(f"{self.directory / ONNX_MODEL}: cannot load ONNX model: {err}") from None
        outputs = self.session.get_outputs()
        width = outputs[0].shape[-1] if outputs else None
        if isinstance(width, int) and width != len(self.labels):
            raise ArtifactError(
                f"{self.directory}: ONNX model has {width} outputs but labels.json lists {len(self.labels)} labels"
            )
        self._input_names = {i.name for i in self.session.get_inputs()}
        self._with_token_types = "token_type_ids" in self._input_names
        self._output_names = ["logits"]

    @property
    def version(self) -> str:
        return self.manifest.version

    def predict_proba(self, templates: Sequence[str]) -> np.ndarray:
        """Class probabilities, ``[len(templates), len(labels)]``, for model inputs (:attr:`model_input` of lines)."""
        if not templates:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if len(templates) == 1:
            return self._predict_one(templates[0])
        # encode_batch_fast skips character offsets, which we never read (~25% faster).
        encodings = self.tokenizer.encode_batch_fast(list(templates))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        return self._run(ids, np.array([e.attention_mask for e in encodings], dtype=np.int64))

    def _predict_one(self, template: str) -> np.ndarray:
        """The per-line path (the edge scores one cache miss at a time): a single sequence needs no
        padding, so the mask is all ones and the batch API's per-call bookkeeping is skipped.
        For a 2-layer student this Python around the model is a large share of the line's cost."""
        # encode_batch_fast of one line beats encode (no character offsets), ~0.04 vs 0.05 ms.
        ids = np.array(self.tokenizer.encode_batch_fast([template])[0].ids, dtype=np.int64).reshape(1, -1)
        return self._run(ids, np.ones_like(ids))

    def _run(self, ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": attention_mask}
        if self._with_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (logits,) = self.session.run(self._output_names, feeds)
        return softmax(logits.astype(np.float32, copy=False))

    def choose(self, probs: np.ndarray) -> np.ndarray:
        """Class index per row of :meth:`predict_proba`'s output: :func:`decide` with the artifact's alert bar."""
        return decide(probs, self._normal_index, self.alert_below)

    def predict(self, templates: Sequence[str]) -> list[tuple[str, float]]:
        """``(label, score)`` per template, in order: the label :func:`decide` picks with the artifact's
        alert bar, and its probability."""
        probs = self.predict_proba(templates)
        best = self.choose(probs)
        return [(self.labels[i], float(probs[row, i])) for row, i in enumerate(best)]
