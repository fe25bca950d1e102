"""The real ``logdistill classify`` process: end to end, torch-free, clean refusal of a corrupt model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

from helpers.edge_process import Process, command
from helpers.onnx_artifacts import build_onnx_artifact

LABELS = ["-", "ERROR", "FATAL"]


def test_corrupt_artifact_at_startup_exits_non_zero_naming_the_file(tmp_path):
    model = tmp_path / "model"
    build_onnx_artifact(model, LABELS)
    (model / "labels.json").write_text(json.dumps({"labels": ["-", "FATAL", "ERROR"], "normal": "-"}))
    result = subprocess.run(command("--model", str(model), "--host", "127.0.0.1", "--port", "0", "--no-tail"),
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert "refusing the model" in result.stderr and str(model / "labels.json") in result.stderr
    assert "sha256 mismatch" in result.stderr
    missing = subprocess.run(command("--model", str(tmp_path / "nope"), "--port", "0", "--no-tail"),
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert missing.returncode == 2 and "manifest.json is missing" in missing.stderr


def test_classify_process_tails_serves_and_never_imports_torch(tmp_path):
    model = tmp_path / "model"
    manifest = build_onnx_artifact(model, LABELS)
    pod_dir = tmp_path / "pods" / "shop_cart-6b9f_1234-abcd" / "api"
    pod_dir.mkdir(parents=True)
    log = pod_dir / "0.log"
    log.write_bytes(
        b"2024-05-01T10:00:00Z stdout F job 1 started ok\n"
        b"2024-05-01T10:00:01Z stderr P disk err\n"
        b"2024-05-01T10:00:01Z stderr F or on node 7\n"
        b"\xff\xfe garbage\n"
    )
    # The classifier's own pod: its alert output must never be classified again (--exclude-pod-uid).
    own = tmp_path / "pods" / "logdistill_dm-classifier-x7_self-uid" / "classifier" / "0.log"
    own.parent.mkdir(parents=True)
    own.write_bytes(b'2024-05-01T10:00:00Z stdout F {"label": "FATAL", "line": "kernel panic on cpu 1"}\n')
    state = tmp_path / "state"
    process = Process(
        command("--model", str(model), "--host", "127.0.0.1", "--port", "0",
                "--paths", str(tmp_path / "pods" / "*" / "*" / "*.log"), "--state-dir", str(state),
                "--exclude-pod-uid", "self-uid", "--exclude-pod-uid", "another-uid",
                "--poll-interval", "0.05", "--reload-interval", "0.2", importtime=True),
        cwd=tmp_path,
    )
    try:
        url = process.wait_for_stderr(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
        process.wait_for_stderr(r"serving model " + manifest.version)
        (first,) = process.stdout_records(1)
        assert first == {
            "time": "2024-05-01T10:00:01Z", "source": str(log), "id": first["id"], "node": "edge-1",
            "namespace": "shop", "pod": "cart-6b9f",
            "container": "api", "stream": "stderr", "label": "ERROR", "score": first["score"],
            "line": "disk error on node 7", "template": "disk error on node <NUM>", "model": manifest.version,
        }
        with open(log, "ab") as out:
            out.write(b"2024-05-01T10:00:02Z stdout F kernel panic on cpu 3\n")
        (second,) = process.stdout_records(1)
        assert second["label"] == "FATAL" and second["line"] == "kernel panic on cpu 3"
        # Each alert names its line: a fingerprint of the file and the offset just after the line.
        content = log.read_bytes()
        garbage_at = content.index(b"\xff")  # the disk error's record ends where the garbage line starts
        assert first["id"].endswith(f":{garbage_at}") and second["id"].endswith(f":{len(content)}")
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
            assert response.read().decode() == f"ready: model {manifest.version}\n"
        request = urllib.request.Request(f"{url}/v1/classify", data=b'{"lines": ["job failed", "ok"]}', method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert [r["label"] for r in json.loads(response.read())["results"]] == ["ERROR", "-"]
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        pattern = re.escape(str(tmp_path / "pods" / "*" / "*" / "*.log"))
        assert re.search(r'logdistill_classifier_lines_read_total\{source="' + pattern + r'"\} 4\.0', metrics)
        assert 'logdistill_classifier_malformed_lines_total{reason="invalid_utf8"} 1.0' in metrics
        assert "logdistill_classifier_open_files 1.0" in metrics  # the excluded pod's file is not open
        assert 'logdistill_classifier_source_errors_total{reason="permission_denied"} 0.0' in metrics
    finally:
        returncode = process.stop()
    assert returncode == 0
    offsets = json.loads((state / "offsets.json").read_text())["files"]
    assert offsets[0]["offset"] == log.stat().st_size
    imported = {line.rsplit("|", 1)[-1].strip() for line in process.stderr if line.startswith("import time:")}
    assert "logdistill.edge.classifier" in imported and "onnxruntime" in imported  # importtime really ran
    # Nor anything outside the edge image's base install (the operator extra, the spec's pydantic).
    heavy = sorted(name for name in imported
                   if name.split(".")[0] in ("torch", "transformers", "kopf", "kubernetes", "pydantic", "yaml"))
    assert heavy == [], f"the edge process imported {heavy[:5]}"


def test_every_edge_module_imports_without_torch():
    """Importing every module of logdistill.edge in a fresh interpreter pulls in neither torch nor transformers."""
    code = (
        "import importlib, pkgutil, sys, logdistill.edge as e\n"
        "for m in pkgutil.iter_modules(e.__path__): importlib.import_module('logdistill.edge.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('torch', 'transformers'))\n"
        "print(len(list(pkgutil.iter_modules(e.__path__))), bad)\n"
    )
    result = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    count, bad = result.stdout.strip().split(" ", 1)
    assert int(count) >= 8 and bad == "[]"


def test_token_file_and_metrics_port_flags_guard_the_api(tmp_path):
    """`logdistill classify --token-file --metrics-port`: the API port wants the token, the metrics port
    serves the probes without one; contradictory flags exit 2 naming them."""
    import urllib.error

    model = tmp_path / "model"
    build_onnx_artifact(model, LABELS)
    token = tmp_path / "token"
    token.write_text("tok-1\n")
    process = Process(command("--model", str(model), "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
                              "--token-file", str(token), "--no-tail", "--reload-interval", "0"), cwd=tmp_path)
    try:
        match = process.wait_for_stderr(r"listening on (http://127\.0\.0\.1:\d+) \(metrics on (http://127\.0\.0\.1:\d+)\)")
        api, metrics = match.group(1), match.group(2)
        assert api != metrics
        process.wait_for_stderr(r"serving model")

        def classify(headers: dict) -> int:
            request = urllib.request.Request(f"{api}/v1/classify", data=b'{"lines": ["job failed"]}', method="POST",
                                             headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as err:
                return err.code

        assert classify({}) == 401 and classify({"Authorization": "Bearer tok-2"}) == 401
        assert classify({"Authorization": "Bearer tok-1"}) == 200
        with urllib.request.urlopen(f"{metrics}/readyz", timeout=10) as response:
            assert response.status == 200
    finally:
        assert process.stop() == 0
    for flags, message in [(["--tls-cert", str(token)], "--tls-cert and --tls-key go together"),
                           (["--max-connections", "0"], "--max-connections"),
                           (["--port", "9999", "--metrics-port", "9999"], "--metrics-port and --port")]:
        done = subprocess.run(command("--model", str(model), "--no-tail", *flags), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2 and message in done.stderr, (flags, done.stderr)
