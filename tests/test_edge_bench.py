"""``logdistill bench classify`` runs end to end on a small Loghub-shaped folder and a real (tiny) artifact."""

from __future__ import annotations

import argparse
import json

from helpers.onnx_artifacts import build_onnx_artifact

from logdistill.edge import bench


def test_bench_classify_reports_every_measurement(tmp_path):
    data = tmp_path / "loghub"
    (data / "Apache").mkdir(parents=True)
    (data / "BGL").mkdir()
    (data / "Apache" / "Apache_2k.log").write_text(
        "".join(f"[Sun Dec 04 04:{i % 60:02d}:05 2005] [error] mod_jk child {i} in error state\r\n" for i in range(300))
    )
    (data / "BGL" / "BGL_20k.log").write_text(
        "".join(f"{'-' if i % 5 else 'KERNDTLB'} 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 RAS KERNEL INFO "
                f"instruction cache parity error corrected {i}\n" for i in range(200))
    )
    lines = bench.load_loghub_lines(data)
    assert len(lines) == 500 and not lines[-1].startswith(("-", "KERNDTLB")) and "\r" not in lines[0]
    build_onnx_artifact(tmp_path / "student", ["-", "ERROR", "FATAL"])
    build_onnx_artifact(tmp_path / "teacher", ["-", "ERROR", "FATAL"], extra_words=("teacher",))
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    args = parser.parse_args(["--model", str(tmp_path / "student"), "--teacher", str(tmp_path / "teacher"),
                              "--data", str(data), "--nocache-lines", "100", "--latency-samples", "20",
                              "--json", str(out), "--markdown", str(table)])
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    student = report["student"]
    assert student["lines"] == 500 and student["distinctTemplates"] == 2 and student["distinctLineKeys"] >= 2
    assert set(student["rss"]["afterImportMB"]) >= {"python", "onnxruntime", "logdistill.edge.main"}
    for section, key in (("mask", "linesPerSecond"), ("cached", "coldLinesPerSecond"), ("cached", "warmLinesPerSecond"),
                         ("cached", "warmLinesPerCpuSecond"), ("nocache", "linesPerSecond")):
        assert student[section][key] > 0
    assert student["nocache"]["lines"] == 100
    assert student["missLatencyMs"]["samples"] == 2  # one probe per distinct template
    assert 0 < student["missLatencyMs"]["wall"]["p50"] <= student["missLatencyMs"]["wall"]["max"]
    assert student["rss"]["torchImported"] is False and 0 < student["rss"]["loadedMB"] < 1000
    tail = report["tailPipeline"]
    assert tail["cold"]["lines"] == tail["warm"]["lines"] == 500 and tail["alerts"] == 1000
    assert report["teacher"]["version"] != student["version"] and report["speedup"]["nocache"] > 0
    assert report["machine"]["cpus"] >= 1
    rows = table.read_text().splitlines()
    assert rows[0].startswith("| measurement") and student["version"] in rows[0] and rows[1] == "|---|---|---|---|"
    assert any(row.startswith("| cache off, lines/s |") for row in rows)
