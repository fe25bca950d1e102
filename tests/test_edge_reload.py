"""Hot reload: a new version swaps in under load without dropping a request; a corrupt one is refused."""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest
from helpers.onnx_artifacts import DEFAULT_RULES, build_onnx_artifact
from prometheus_client import CollectorRegistry

from logdistill.edge.main import load_classifier
from logdistill.edge.metrics import ClassifierMetrics
from logdistill.edge.reload import ModelHolder, Reloader
from logdistill.edge.server import ClassifierServer

LABELS = ["-", "ERROR", "FATAL"]
V2_RULES = {**DEFAULT_RULES, "timeout": "ERROR"}  # v2 also flags timeouts


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def point(link: Path, target: Path) -> None:
    """Swap a symlink atomically, as a ConfigMap/volume update or a deploy script would."""
    tmp = link.with_name(link.name + ".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)


@pytest.fixture()
def setup(tmp_path):
    metrics = ClassifierMetrics(CollectorRegistry())
    holder = ModelHolder()

    def load(directory):
        return load_classifier(directory, threads=1, cache_size=1000, batch_size=8, max_line_chars=4096,
                               metrics=metrics)

    v1 = build_onnx_artifact(tmp_path / "v1", LABELS)
    v2 = build_onnx_artifact(tmp_path / "v2", LABELS, keyword_rules=V2_RULES)
    link = tmp_path / "current"
    os.symlink(tmp_path / "v1", link)
    holder.swap(load(link))
    reloader = Reloader(link, holder, load, interval=0.02, metrics=metrics)
    return tmp_path, link, holder, metrics, reloader, load, v1, v2


def reloads(metrics, result: str) -> float:
    return metrics.registry.get_sample_value("logdistill_classifier_reloads_total", {"result": result}) or 0.0


def test_swap_under_load_answers_every_request(setup):
    tmp_path, link, holder, metrics, reloader, _load, v1, v2 = setup
    server = ClassifierServer(holder, metrics, host="127.0.0.1", port=0)
    server.start()
    lines = ["request timeout on node 4", "job 7 started", "disk error 3"] * 20
    stop = threading.Event()
    seen: list[list[str]] = [[] for _ in range(3)]
    errors: list[str] = []

    def client(log: list[str]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        body = json.dumps({"lines": lines})
        while not stop.is_set():
            try:
                connection.request("POST", "/v1/classify", body)
                response = connection.getresponse()
                payload = json.loads(response.read())
            except Exception as err:  # noqa: BLE001 (any failure is a test failure)
                errors.append(repr(err))
                return
            if response.status != 200 or len(payload["results"]) != len(lines):
                errors.append(f"{response.status}: {payload}")
                return
            timeout_label = payload["results"][0]["label"]
            if timeout_label != {v1.version: "-", v2.version: "ERROR"}[payload["model"]]:
                errors.append(f"version {payload['model']} answered {timeout_label} (a mixed batch)")
            log.append(payload["model"])

    threads = [threading.Thread(target=client, args=(log,)) for log in seen]
    for thread in threads:
        thread.start()
    reloader.start()
    try:
        wait_for(lambda: all(log for log in seen), what="requests served by v1")
        point(link, tmp_path / "v2")
        wait_for(lambda: holder.current.version == v2.version, what="the swap to v2")
        count_at_swap = [len(log) for log in seen]
        wait_for(lambda: all(len(log) > n + 2 for log, n in zip(seen, count_at_swap)), what="requests after swap")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
        reloader.stop()
        server.stop()
    assert errors == []
    for log in seen:
        assert log[0] == v1.version and log[-1] == v2.version
        switch = log.index(v2.version)
        assert set(log[switch:]) == {v2.version}  # never back to the old version
    assert reloads(metrics, "success") == 1
    assert len(holder.current) > 0  # the new version's cache filled from empty


def test_corrupt_new_version_is_refused_and_the_old_keeps_serving(setup, caplog):
    tmp_path, link, holder, metrics, reloader, _load, v1, _v2 = setup
    bad = tmp_path / "v3"
    build_onnx_artifact(bad, LABELS, extra_words=("v3",))
    (bad / "tokenizer.json").write_text((bad / "tokenizer.json").read_text().replace('"error"', '"errorx"'))
    point(link, bad)
    with caplog.at_level(logging.ERROR, logger="logdistill.edge.reload"):
        assert reloader.check() == "failed"
    assert holder.current.version == v1.version
    assert "tokenizer.json" in caplog.text and "sha256 mismatch" in caplog.text
    assert reloads(metrics, "failed") == 1
    assert holder.current.classify(["disk error"])[0].label == "ERROR"
    assert reloader.check() == "unchanged"  # not retried until its files change
    # The same directory, fixed in place (rewritten with a valid manifest): loads.
    fixed = build_onnx_artifact(bad, LABELS, extra_words=("v3",))
    assert reloader.check() == "success"
    assert holder.current.version == fixed.version
    info = metrics.registry.get_sample_value("logdistill_classifier_model_info",
                                             {"version": fixed.version, "kind": "student", "teacher": "test-teacher",
                                              "student": "0x3", "parameters": str(fixed.info["parameters"])})
    assert info == 1


def test_a_model_whose_outputs_disagree_with_its_labels_is_refused(setup):
    tmp_path, link, holder, metrics, reloader, _load, v1, _v2 = setup
    broken = tmp_path / "broken"
    build_onnx_artifact(broken, LABELS)
    # Valid ONNX, valid manifest, but its logits width disagrees with labels.json.
    (broken / "labels.json").write_text(json.dumps({"labels": ["-", "ERROR"], "normal": "-"}))
    from logdistill.model.runtime.artifact import write_manifest

    (broken / "manifest.json").unlink()
    write_manifest(broken, kind="student", info={"maxLength": 32})
    point(link, broken)
    assert reloader.check() == "failed"
    assert holder.current.version == v1.version


def test_same_version_rewritten_is_not_reloaded(setup):
    tmp_path, link, holder, metrics, reloader, _load, v1, _v2 = setup
    os.utime(tmp_path / "v1" / "labels.json")
    (tmp_path / "v1" / "manifest.json").write_text((tmp_path / "v1" / "manifest.json").read_text())
    before = holder.current
    assert reloader.check() == "unchanged"
    assert holder.current is before
