"""`logdistill evaluate` and `logdistill predict` on a real tiny teacher artifact, and `bench` dispatch."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from helpers.tiny_models import build_tiny_teacher, tiny_log_lines  # noqa: E402

from logdistill.cli import main as cli  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    lines = tiny_log_lines(seed=1)
    teacher = build_tiny_teacher(root, [line.split(" ", 1)[0] for line in lines],
                                 [line.split(" ", 1)[1] for line in lines])
    data = root / "eval.log"
    data.write_text("\r\n".join(lines[:40]) + "\r\n\r\n")  # CRLF and a blank line, as Loghub files
    return root, teacher, data, lines[:40]


def test_evaluate_json_shape(setup, capsys):
    _, teacher, data, lines = setup
    assert cli(["evaluate", "--model", str(teacher), "--data", str(data), "--json", "--latency-samples", "20"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    report = json.loads(out[0])
    for key in ("n", "accuracy", "macro_f1", "per_class", "latency_ms_p50", "latency_ms_p99",
                "throughput_lines_per_s", "confusion", "alert", "version"):
        assert key in report, key
    assert report["n"] == len(lines) and report["kind"] == "teacher"
    assert set(report["per_class"]) <= {"-", "APPERR", "KERNFAIL"}
    assert report["accuracy"] > 0.7  # trained on these lines (tiny, int8: 0.75 with the fixed vocabulary)
    assert 0 < report["latency_ms_p50"] <= report["latency_ms_p99"]


def test_predict_prints_one_object_per_line_in_order(setup, capsys):
    _, teacher, data, lines = setup
    assert cli(["predict", "--model", str(teacher), "--data", str(data)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == len(lines)
    assert [r["line"] for r in rows] == list(range(1, len(lines) + 1))
    assert {r["label"] for r in rows} <= {"-", "APPERR", "KERNFAIL"}  # labels exactly as in the data
    assert all(0.0 < r["score"] <= 1.0 for r in rows)
    truth = [line.split(" ", 1)[0] for line in lines]
    assert sum(r["label"] == t for r, t in zip(rows, truth)) >= 0.7 * len(lines)


def test_predict_jsonl_unlabelled(setup, capsys):
    root, teacher, _, lines = setup
    data = root / "x.jsonl"
    data.write_text("\n".join(json.dumps({"text": line.split(" ", 1)[1]}) for line in lines[:5]) + "\n")
    assert cli(["predict", "--model", str(teacher), "--data", str(data), "--format", "jsonl"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 5


def test_errors_name_the_problem(setup, tmp_path, capsys):
    _, teacher, data, _ = setup
    assert cli(["evaluate", "--model", str(tmp_path), "--data", str(data), "--json"]) == 2
    assert "manifest.json" in capsys.readouterr().err
    assert cli(["predict", "--model", str(teacher), "--data", str(tmp_path / "none.log")]) == 2
    assert "none.log" in capsys.readouterr().err


def test_bench_dispatch_rejects_an_unknown_benchmark(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["bench", "nope"])
    assert exit_info.value.code == 2
