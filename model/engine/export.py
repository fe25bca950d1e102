"""Write and load model artifacts on the torch side (the format is :mod:`logdistill.model.runtime.artifact`).

``save_artifact`` writes a complete artifact into a temporary directory beside ``out_dir``
and renames it into place at the end, so a half-written artifact is never visible under
``out_dir``. ``load_torch_model`` reads a logdistill artifact (manifest verified) or a plain
``transformers`` checkpoint directory (labels from ``config.id2label``).

ONNX export uses the TorchScript exporter with eager attention: it matches the torch
logits to ~1e-8 (tests/test_export.py), while the SDPA path is traced less faithfully.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logdistill.model.runtime.artifact import (
    LABELS,
    MANIFEST,
    ONNX_MODEL,
    REPORT,
    ArtifactError,
    Manifest,
    read_labels,
    verify_artifact,
    write_labels,
    write_manifest,
    publish,
    staged,
)
from logdistill.model.runtime.data import NORMAL_LABEL

__all__ = [
    "LoadedModel",
    "save_artifact",
    "rewrite_report",
    "load_torch_model",
    "export_onnx_fp32",
    "quantize_int8",
    "parameter_count",
    "directory_size",
    "publish",
]

ONNX_OPSET = 17
DEFAULT_MAX_LENGTH = 128


@dataclass
class LoadedModel:
    """A torch model ready for inference or as a teacher."""

    model: Any
    tokenizer: Any
    labels: list[str]
    normal: str
    max_length: int
    path: Path
    manifest: Manifest | None
    input: str = "template"
    """What the model is fed for a raw line (:data:`~logdistill.model.runtime.templates.MODEL_INPUTS`)."""


def parameter_count(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def directory_size(directory: str | Path) -> int:
    return int(sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file()))


def _logits_only(model: Any) -> Any:
    """Wrap a sequence classifier so the exported graph has exactly the contract's inputs and output."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    return LogitsOnly(model).eval()


def export_onnx_fp32(model: Any, path: str | Path, *, max_length: int = 16) -> Path:
    """Export ``model`` to an fp32 ONNX file: inputs ``input_ids``, ``attention_mask`` (int64 [batch, seq]), output ``logits``."""
    import torch

    path = Path(path)
    was_training = model.training
    previous_attention = getattr(model.config, "_attn_implementation", None)
    if hasattr(model, "set_attn_implementation") and previous_attention != "eager":
        model.set_attn_implementation("eager")
    wrapper = _logits_only(model)
    seq = max(2, min(8, max_length))
    example = (torch.ones(2, seq, dtype=torch.long), torch.ones(2, seq, dtype=torch.long))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about shape-dependent Python branches in transformers' mask code;
            # the exported graph is checked against torch on other shapes in tests/test_export.py.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                example,
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    "logits": {0: "batch"},
                },
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
    finally:
        if previous_attention and previous_attention != "eager" and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(previous_attention)
        model.train(was_training)  # the exporter restores the wrapper's (training) mode onto the model
    return path


def quantize_int8(fp32_path: str | Path, int8_path: str | Path) -> Path:
    """Dynamic int8 quantisation of the weights (activations stay fp32; what the edge runs)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a generic "consider pre-processing" warning
    try:
        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return Path(int8_path)


def save_artifact(
    model: Any,
    tokenizer: Any,
    labels: list[str],
    normal: str,
    out_dir: str | Path,
    *,
    kind: str,
    spec: dict[str, Any],
    report: dict[str, Any],
    info: dict[str, Any],
) -> Manifest:
    """Write a complete, verified artifact to ``out_dir`` (atomically, via a sibling temp dir).

    ``info`` must hold ``maxLength`` and ``teacher``; ``parameters`` and ``labels`` are filled
    in when absent, ``summary`` defaults to ``{}``. Students must give ``student``.
    """
    if kind not in ("teacher", "student"):
        raise ValueError(f"kind must be 'teacher' or 'student', got {kind!r}")
    info = dict(info)
    info.setdefault("parameters", parameter_count(model))
    info.setdefault("labels", list(labels))
    info.setdefault("summary", {})
    missing = [k for k in ("maxLength", "teacher") + (("student",) if kind == "student" else ()) if k not in info]
    if missing:
        raise ValueError(f"save_artifact: info lacks {', '.join(missing)}")
    if model.config.num_labels != len(labels):
        raise ValueError(f"model has {model.config.num_labels} outputs but {len(labels)} labels were given")

    out_dir = Path(out_dir)
    with staged(out_dir, unique=True) as staging:
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {label: i for i, label in enumerate(labels)}
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if not (staging / "tokenizer.json").is_file():
            raise ArtifactError(f"{staging}: the tokenizer did not write tokenizer.json (a fast tokenizer is required)")
        write_labels(staging, list(labels), normal)
        with tempfile.TemporaryDirectory(prefix="logdistill-onnx-") as scratch:
            fp32 = export_onnx_fp32(model, Path(scratch) / "model.fp32.onnx", max_length=int(info["maxLength"]))
            quantize_int8(fp32, staging / ONNX_MODEL)
        (staging / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        write_manifest(staging, kind=kind, spec=spec, info=info)
    return verify_artifact(out_dir, required=(LABELS, ONNX_MODEL, REPORT, "tokenizer.json"))


def rewrite_report(directory: str | Path, report: dict[str, Any], info_update: dict[str, Any] | None = None) -> Manifest:
    """Replace ``report.json`` of a (not yet published) artifact and re-sign its manifest.

    Used on a staging copy: the evaluation needs the exported ONNX model before the report exists.
    """
    directory = Path(directory)
    manifest = verify_artifact(directory)
    (directory / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    info = {**manifest.info, **(info_update or {})}
    return write_manifest(directory, kind=manifest.kind, spec=manifest.spec, info=info)


def _labels_from_config(config: Any, directory: Path) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    try:
        ordered = [str(id2label[i]) for i in range(config.num_labels)]
    except KeyError:
        ordered = [str(id2label[str(i)]) for i in range(config.num_labels)]
    if len(set(ordered)) != len(ordered):
        raise ArtifactError(f"{directory / 'config.json'}: id2label holds duplicate labels {ordered}")
    return ordered


def load_torch_model(directory: str | Path) -> LoadedModel:
    """Load an artifact (manifest verified, mismatch refused) or a plain transformers checkpoint."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: no such model directory")
    manifest: Manifest | None = None
    if (directory / MANIFEST).exists():
        manifest = verify_artifact(directory, required=(LABELS, "config.json"))
    elif not (directory / "config.json").is_file():
        raise ArtifactError(f"{directory}: neither a logdistill artifact nor a transformers checkpoint (no config.json)")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(directory)
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{directory}: cannot load the transformers model or tokenizer: {err}") from None
    if manifest is not None:
        labels, normal = read_labels(directory)
        max_length = int(manifest.info.get("maxLength", DEFAULT_MAX_LENGTH))
    else:
        labels = _labels_from_config(model.config, directory)
        # A plain checkpoint has no notion of "normal": BGL's "-" when present, else the first label.
        normal = NORMAL_LABEL if NORMAL_LABEL in labels else labels[0]
        max_length = min(int(getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH) or DEFAULT_MAX_LENGTH), 512)
        max_length = min(max_length, DEFAULT_MAX_LENGTH)
    if model.config.num_labels != len(labels):
        raise ArtifactError(
            f"{directory}: the model has {model.config.num_labels} outputs but {len(labels)} labels are listed"
        )
    model.eval()
    return LoadedModel(model, tokenizer, labels, normal, max_length, directory, manifest,
                       manifest.input if manifest is not None else "template")
