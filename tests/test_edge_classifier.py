"""The template cache and micro-batching over a real (tiny, torch-free) ONNX artifact."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers.onnx_artifacts import build_onnx_artifact, expected_label
from prometheus_client import CollectorRegistry

from logdistill.edge.classifier import TemplateClassifier, line_key
from logdistill.edge.metrics import ClassifierMetrics
from logdistill.model.runtime.inference import OnnxClassifier
from logdistill.model.runtime.templates import mask

LABELS = ["-", "ERROR", "FATAL"]
LINES = [
    "job 17 started on node 3",
    "job 18 started on node 4",
    "disk error on node 7 at 0x1f",
    "request failed for user 12",
    "kernel panic: not syncing",
    "job 19 started on node 5",
    "disk error on node 9 at 0x2e",
    "",
    "   ",
    "ok",
]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> OnnxClassifier:
    directory = tmp_path_factory.mktemp("model")
    build_onnx_artifact(directory, LABELS)
    return OnnxClassifier(directory)


def value(registry: CollectorRegistry, name: str, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_labels_follow_the_model_and_the_template_is_the_masked_line(model):
    classifier = TemplateClassifier(model, cache_size=100)
    results = classifier.classify(LINES)
    assert [r.label for r in results] == [expected_label(mask(line), LABELS) for line in LINES]
    assert [r.template for r in results] == [mask(line) for line in LINES]
    assert results[7] == ("-", 1.0, "")  # empty lines are normal without a model call


def test_cached_answer_equals_uncached_answer(model):
    cached = TemplateClassifier(model, cache_size=1000)
    uncached = TemplateClassifier(model, cache_size=0)
    first = cached.classify(LINES)
    second = cached.classify(list(reversed(LINES)))  # all hits now
    plain = uncached.classify(LINES)
    assert first == plain
    assert list(reversed(second)) == plain
    direct = model.predict([mask(line) for line in LINES if line.strip()])
    assert [(r.label, r.score) for r in plain if r.template] == direct


def test_cache_counts_hits_and_misses_and_stays_bounded(model):
    registry = CollectorRegistry()
    metrics = ClassifierMetrics(registry)
    classifier = TemplateClassifier(model, cache_size=3, metrics=metrics)
    classifier.classify(["job 1 started", "job 2 started", "disk error 3"])  # 2 distinct templates
    assert value(registry, "logdistill_classifier_cache_misses_total") == 2
    assert value(registry, "logdistill_classifier_cache_hits_total") == 1  # the repeat inside the call
    assert value(registry, "logdistill_classifier_new_templates_total") == 2
    classifier.classify(["job 9 started"])
    assert value(registry, "logdistill_classifier_cache_hits_total") == 2
    classifier.classify([f"word{i} x" for i in range(10)])  # "<ID> x" is one template
    classifier.classify(["a error", "b error", "c error", "d error"])  # 4 distinct, cache holds 3
    assert len(classifier) == 3
    assert value(registry, "logdistill_classifier_cache_entries") == 3
    assert value(registry, "logdistill_classifier_lines_classified_total", label="ERROR") == 5
    assert value(registry, "logdistill_classifier_lines_classified_total", label="-") == 13


def test_misses_are_micro_batched(model):
    registry = CollectorRegistry()
    classifier = TemplateClassifier(model, cache_size=1000, batch_size=4, metrics=ClassifierMetrics(registry))
    classifier.classify([f"event {'x' * i} happened" for i in range(10)])  # 10 distinct templates
    assert value(registry, "logdistill_classifier_inference_batch_seconds_count") == 3  # 4 + 4 + 2
    assert value(registry, "logdistill_classifier_inference_line_seconds_count") == 10


def test_overlong_line_is_truncated_and_counted(model):
    registry = CollectorRegistry()
    classifier = TemplateClassifier(model, max_line_chars=50, metrics=ClassifierMetrics(registry))
    (result,) = classifier.classify(["kernel panic " + "z" * 1_000_000])
    assert result.label == "FATAL" and len(result.template) <= 50
    assert value(registry, "logdistill_classifier_malformed_lines_total", reason="too_long") == 1


def test_concurrent_callers_get_consistent_answers(model):
    classifier = TemplateClassifier(model, cache_size=8)  # small: evictions race with hits
    reference = TemplateClassifier(model, cache_size=0).classify(LINES * 5)
    failures: list[str] = []

    def worker() -> None:
        for _ in range(30):
            if classifier.classify(LINES * 5) != reference:
                failures.append("mismatch")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []


def test_the_line_key_cache_answers_like_the_model(model):
    classifier = TemplateClassifier(model, cache_size=1000)
    lines = ["job 17 started", "job 99 started", "read 0x1f failed", "read 0x2e failed", "read 1x1f ok",
             "node R02-M1 error", "node R13-M7 error"]
    assert classifier.classify(lines) == TemplateClassifier(model, cache_size=0).classify(lines)
    assert classifier.classify(lines) == TemplateClassifier(model, cache_size=0).classify(lines)  # all key hits


_DIGIT_LINES = st.lists(
    st.sampled_from(["0", "1", "7", "9", "x", "X", "a", "f", ".", ":", "-", "/", " ", "_", "<", ">", "=", "blk",
                     "0x", "ip", "\t", ",", "(", "]", "\u0663"]),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(line=_DIGIT_LINES, digits=st.lists(st.sampled_from("0123456789"), min_size=30, max_size=30))
def test_fuzz_equal_line_keys_mean_equal_templates(line, digits):
    """The first-level cache is exact: lines with the same key always mask to the same template."""
    replaced = iter(digits)
    other = "".join(next(replaced, "5") if ch.isascii() and ch.isdigit() else ch for ch in line)
    if line_key(line) == line_key(other):
        assert mask(line) == mask(other)


BGL_CORE_LINE = ("1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.363779 R02-M1-N0-C:J12-U11 RAS"
                 " KERNEL INFO generating core.103")


def test_a_light_input_model_is_fed_the_lightly_masked_line_and_serves_its_template(tmp_path):
    """info.input "light": the model sees the words the template masks away ("core" of core.103); the
    cache still keys on the template, so the first line of a template decides for the lines after it."""
    rules = {"core": "ERROR"}
    build_onnx_artifact(tmp_path / "template", LABELS, rules)
    build_onnx_artifact(tmp_path / "light", LABELS, rules, model_input="light")
    templated, light = OnnxClassifier(tmp_path / "template"), OnnxClassifier(tmp_path / "light")
    assert (templated.input, light.input) == ("template", "light")

    assert TemplateClassifier(templated, cache_size=100).classify([BGL_CORE_LINE])[0].label == "-"
    for cache_size in (100, 0):
        (result,) = TemplateClassifier(light, cache_size=cache_size).classify([BGL_CORE_LINE])
        assert result == ("ERROR", result.score, mask(BGL_CORE_LINE))

    cached = TemplateClassifier(light, cache_size=100)
    first, second = cached.classify(["node core.7 started", "node disk.7 started"])  # one template
    assert (first.label, second.label) == ("ERROR", "ERROR")
    assert cached.classify(["node disk.8 started"])[0].label == "ERROR"  # a hit
    assert TemplateClassifier(light, cache_size=100).classify(["node disk.8 started"])[0].label == "-"
