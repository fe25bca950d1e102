"""Prometheus collectors of the edge classifier, on a registry the caller owns.

Names follow ``logdistill_classifier_<name>_<unit>``; every label has a bounded set of
values (model labels, the closed set of malformed reasons, source kinds/globs, reload
results, teacher answer rejections and downgrades), never a file path or a message. A label
the teacher sends becomes a label value only after it was checked against the served model's
label set (:mod:`logdistill.edge.teacher_policy`). Every counter label value known in advance is
exported at 0 from the start (the closed sets here, the --paths globs at
:meth:`ClassifierMetrics.set_sources`, the model's labels at :meth:`ClassifierMetrics.set_model`),
so ``rate()`` and ``increase()`` see the first event instead of a series appearing at 1.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from logdistill.edge.lines import MALFORMED_REASONS
from logdistill.edge.sources import SOURCE_ERROR_REASONS
from logdistill.edge.teacher_policy import DOWNGRADE_ACTIONS, REJECTION_REASONS
from logdistill.model.runtime.artifact import REPORT, ArtifactError, Manifest, read_labels

__all__ = ["ClassifierMetrics", "RELOAD_RESULTS", "ESCALATION_RESULTS", "HTTP_SOURCE"]

RELOAD_RESULTS = ("success", "failed", "unchanged")
ESCALATION_RESULTS = ("sent", "answered", "dropped_queue_full", "dropped_error")
HTTP_SOURCE = "http"  # the lines_read source of POST /v1/classify

# Model time per line ranges from ~20 µs (a tiny student, batched) to ~50 ms (a teacher);
# a batch or an HTTP call up to a few seconds.
# A cache hit costs microseconds; a cache miss tens of microseconds to milliseconds.
_ANY_LINE_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2, 0.25)
_LINE_BUCKETS = (2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25)
_BATCH_BUCKETS = (1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ClassifierMetrics:
    """All collectors of one classifier process. Pass a fresh ``CollectorRegistry`` in tests."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        p = "logdistill_classifier"
        self.lines_classified = Counter(
            f"{p}_lines_classified", "Lines classified, by predicted label.", ["label"], registry=registry
        )
        self.line_seconds = Histogram(
            f"{p}_inference_line_seconds",
            "Model inference time per cache-missed line (batch time / batch size).",
            buckets=_LINE_BUCKETS,
            registry=registry,
        )
        # Every line, cache hits included: a healthy node whose templates are all cached has no cache misses,
        # so only this histogram shows its latency.
        self.classify_line_seconds = Histogram(
            f"{p}_classify_line_seconds",
            "Classification time per line, template cache included (classify call time / lines in the call).",
            buckets=_ANY_LINE_BUCKETS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            f"{p}_inference_batch_seconds",
            "Model inference time per micro-batch of cache misses (tokenise + ONNX Runtime).",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.classify_seconds = Histogram(
            f"{p}_classify_seconds",
            "Time of one classify call (masking, cache and model) for a group of lines.",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.cache_hits = Counter(f"{p}_cache_hits", "Lines answered from the template cache.", registry=registry)
        self.cache_misses = Counter(
            f"{p}_cache_misses", "Templates not in the cache, sent to the model.", registry=registry
        )
        self.cache_entries = Gauge(f"{p}_cache_entries", "Templates held in the cache.", registry=registry)
        self.new_templates = Counter(
            f"{p}_new_templates",
            "Templates never seen before by this process (the drift signal).",
            registry=registry,
        )
        self.malformed = Counter(
            f"{p}_malformed_lines", "Malformed input lines, by reason.", ["reason"], registry=registry
        )
        self.lines_read = Counter(
            f"{p}_lines_read",
            "Lines read, by source (the --paths glob that matched, or 'http').",
            ["source"],
            registry=registry,
        )
        self.source_errors = Counter(
            f"{p}_source_errors",
            "Log sources (a --paths glob's directory, or a matched file) that could not be read, by reason;"
            " counted once per path until it is readable again.",
            ["reason"],
            registry=registry,
        )
        self.open_files = Gauge(f"{p}_open_files", "Log files being tailed now.", registry=registry)
        self.model_info = Info(f"{p}_model", "The model being served.", registry=registry)
        self.model_parameters = Gauge(
            f"{p}_model_parameters", "Parameter count of the model being served.", registry=registry
        )
        self.model_accuracy = Gauge(
            f"{p}_model_accuracy_ratio",
            "Accuracy from the served artifact's evaluation report (model = student or teacher).",
            ["model"],
            registry=registry,
        )
        self.model_macro_f1 = Gauge(
            f"{p}_model_macro_f1_ratio",
            "Macro-F1 from the served artifact's evaluation report (model = student or teacher).",
            ["model"],
            registry=registry,
        )
        self.reloads = Counter(f"{p}_reloads", "Model reload attempts, by result.", ["result"], registry=registry)
        self.last_reload = Gauge(
            f"{p}_model_loaded_timestamp_seconds", "Unix time the serving model was loaded.", registry=registry
        )
        # The cascade (--teacher-url): see logdistill.edge.escalation.
        self.escalations = Counter(
            f"{p}_escalations",
            "Lines for the teacher (new/low-confidence templates and agreement samples), by result.",
            ["result"],
            registry=registry,
        )
        self.corrections = Counter(
            f"{p}_corrections", "Lines the teacher turned from normal into an alert, by label.", ["label"],
            registry=registry,
        )
        self.teacher_rejected = Counter(
            f"{p}_teacher_answers_rejected",
            "Teacher answers (one per escalated line and attempt) refused before use, by reason; a reason about"
            " the whole response (too_large, not_json, timeout, bad_shape) counts every line of its batch.",
            ["reason"], registry=registry,
        )
        self.teacher_downgrades = Counter(
            f"{p}_teacher_downgrades",
            "Teacher answers of normal for a line served as an alert, by action (--teacher-downgrade):"
            " refused (the alert stands) or applied (written as a correction).",
            ["action"], registry=registry,
        )
        self.teacher_latency = Histogram(
            f"{p}_teacher_latency_seconds", "Time of one request to the teacher service.",
            buckets=_BATCH_BUCKETS + (10.0, 30.0), registry=registry,
        )
        # Registered on its first value: an unlabelled gauge would read 0 ("total disagreement")
        # on every classifier without a teacher, and trip the accuracy alert.
        self.agreement = Gauge(
            f"{p}_teacher_agreement_ratio",
            "Share of sampled lines where the student's label equals the teacher's (sliding window).",
            registry=None,
        )
        self._agreement_published = False
        self.agreement_samples = Counter(
            f"{p}_teacher_agreement_samples", "Sampled lines judged by the teacher.", registry=registry
        )
        self.label_agreement = Gauge(
            f"{p}_teacher_label_agreement_ratio",
            "Agreement on the sampled lines the teacher gives this label (sliding window).",
            ["label"],
            registry=registry,
        )
        self.label_agreement_samples = Gauge(
            f"{p}_teacher_label_agreement_samples",
            "Sampled lines in the agreement window the teacher gives this label.",
            ["label"],
            registry=registry,
        )

        for reason in MALFORMED_REASONS:
            self.malformed.labels(reason=reason)
        for reason in SOURCE_ERROR_REASONS:
            self.source_errors.labels(reason=reason)
        for result in RELOAD_RESULTS:
            self.reloads.labels(result=result)
        for result in ESCALATION_RESULTS:
            self.escalations.labels(result=result)
        for reason in REJECTION_REASONS:
            self.teacher_rejected.labels(reason=reason)
        for action in DOWNGRADE_ACTIONS:
            self.teacher_downgrades.labels(action=action)
        self.lines_read.labels(source=HTTP_SOURCE)

    def set_sources(self, patterns) -> None:
        """Export ``lines_read`` at 0 for each --paths glob before its first line."""
        for pattern in patterns:
            self.lines_read.labels(source=pattern)

    def set_agreement(self, window, added: int) -> None:
        """Publish an :class:`~logdistill.edge.agreement.AgreementWindow` after ``added`` new samples."""
        self.agreement_samples.inc(added)
        ratio = window.ratio()
        if ratio is not None:
            self.agreement.set(ratio)
            if not self._agreement_published:
                self.registry.register(self.agreement)
                self._agreement_published = True
        for label, (label_ratio, samples) in window.by_label().items():
            self.label_agreement.labels(label=label).set(label_ratio)
            self.label_agreement_samples.labels(label=label).set(samples)

    def set_model(self, manifest: Manifest) -> None:
        """Publish the served model's identity and scores (called at start and on each swap)."""
        info = manifest.info
        student = info.get("student") or {}
        size = "x".join(str(student.get(k, "?")) for k in ("layers", "hidden")) if isinstance(student, dict) else ""
        self.model_info.info(
            {
                "version": manifest.version,
                "kind": manifest.kind,
                "teacher": str(info.get("teacher", "")),
                "student": size if manifest.kind == "student" else "",
                "parameters": str(info.get("parameters", "")),
            }
        )
        parameters = info.get("parameters")
        if isinstance(parameters, (int, float)):
            self.model_parameters.set(parameters)
        try:
            labels, normal = read_labels(manifest.path)
        except ArtifactError:  # a loaded model has a label map; this only pre-creates series
            labels, normal = [], None
        for label in labels:
            self.lines_classified.labels(label=label)
            if label != normal:  # corrections turn normal into an alert label
                self.corrections.labels(label=label)
        for model, scores in model_scores(manifest).items():
            if "accuracy" in scores:
                self.model_accuracy.labels(model=model).set(scores["accuracy"])
            if "macroF1" in scores:
                self.model_macro_f1.labels(model=model).set(scores["macroF1"])


def model_scores(manifest: Manifest) -> dict[str, dict[str, float]]:
    """``{"student"|"teacher": {"accuracy", "macroF1"}}`` from ``info.summary``, else ``report.json``."""
    summary = manifest.info.get("summary")
    found: dict[str, dict[str, float]] = {}
    if isinstance(summary, dict):
        for model in ("student", "teacher"):
            scores = _numbers(summary.get(model))
            if scores:
                found[model] = scores
    if not found:
        try:
            report = json.loads((manifest.path / REPORT).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return found
        scores = _numbers(report)
        if scores:
            found[manifest.kind] = scores
    return found


def _numbers(scores: Any) -> dict[str, float]:
    if not isinstance(scores, dict):
        return {}
    out = {}
    for key, name in (("accuracy", "accuracy"), ("macroF1", "macroF1"), ("macro_f1", "macroF1")):
        value = scores.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out
