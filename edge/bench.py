"""``logdistill bench classify``: throughput, latency and memory of the edge classify path.

Runs real Loghub logs (the 16 ``*_2k.log`` samples plus ``BGL_20k.log``; BGL's leading
label token is removed, as a node never sees it) through the same code the DaemonSet
runs (:func:`logdistill.edge.main.load_classifier` -> :class:`TemplateClassifier`), for the
student and, in the same run, the teacher:

* masking alone, lines/s (the floor of the cached path);
* with the cache: a cold pass (every distinct template goes to the model once) and a warm
  pass, in chunks of ``--chunk`` lines as the tail loop hands them over;
* with the cache off (``cache_size=0``): every line through tokenizer + ONNX Runtime;
* single-line latency on a cache miss: one ``classify([line])`` call per distinct template;
* the masking-vs-model split of the cold pass;
* the tail pipeline end to end (CRI file -> tailer -> classify -> JSON alerts to /dev/null);
* process RSS in a fresh interpreter that imports only the edge path and loads the model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "main", "load_loghub_lines", "machine"]

DEFAULT_DATA = "../shared/data/loghub"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=Path("artifacts/demo/student"), help="student artifact")
    parser.add_argument("--teacher", default="artifacts/demo/teacher",
                        help="teacher artifact, run through the same path for the speed ratio ('' to skip)")
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="Loghub folder (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="micro-batch size for misses (default %(default)s)")
    parser.add_argument("--chunk", type=int, default=512, help="lines per classify call (default %(default)s)")
    parser.add_argument("--nocache-lines", type=int, default=10_000,
                        help="lines for the cache-off run (the teacher gets a fifth)")
    parser.add_argument("--latency-samples", type=int, default=1000,
                        help="distinct templates timed one by one (the teacher gets a fifth)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the results table (Markdown) here")


def machine() -> dict[str, Any]:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpuModel": model, "python": platform.python_version()}


def load_loghub_lines(data: Path) -> list[str]:
    """Raw lines of the 16 ``*_2k.log`` samples and ``BGL_20k.log``; CRLF and BGL's label token removed."""
    files = sorted(data.glob("*/*_2k.log")) + sorted(data.glob("BGL/BGL_20k.log"))
    if not files:
        raise FileNotFoundError(f"{data}: no Loghub *_2k.log files (pass --data)")
    lines: list[str] = []
    for path in files:
        bgl = path.parent.name == "BGL"
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                line = line.rstrip("\r\n")
                if bgl:
                    line = line.split(" ", 1)[1] if " " in line else ""
                if line.strip():
                    lines.append(line)
    return lines


def _log(message: str) -> None:
    print(f"[bench classify] {message}", file=sys.stderr, flush=True)


def _chunks(lines: list[str], size: int):
    for start in range(0, len(lines), size):
        yield lines[start : start + size]


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


class _Clock:
    """Wall and CPU seconds of a block. CPU time (all threads of this process) is what the
    work costs whatever else the machine runs; wall time is what a caller waited."""

    def __enter__(self) -> _Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50": round(statistics.median(ordered) * 1000, 3),
        "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 3),
        "max": round(ordered[-1] * 1000, 3),
    }


def bench_artifact(directory: Path, lines: list[str], args: argparse.Namespace, share: float = 1.0) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from logdistill.edge.classifier import TemplateClassifier, line_key
    from logdistill.edge.main import load_classifier
    from logdistill.edge.metrics import ClassifierMetrics
    from logdistill.model.runtime.templates import mask

    registry = CollectorRegistry()  # metrics on, as in the process; also gives the model's share of the time
    with _Clock() as load:
        cached = load_classifier(directory, threads=args.threads, cache_size=1_000_000, batch_size=args.batch_size,
                                 max_line_chars=16 * 1024, metrics=ClassifierMetrics(registry))
    manifest = cached.model.manifest
    out: dict[str, Any] = {"artifact": str(directory), "version": manifest.version, "kind": manifest.kind,
                           "parameters": manifest.info.get("parameters"), "maxLength": cached.model.max_length,
                           "loadSeconds": round(load.wall, 3)}
    _log(f"{directory}: {manifest.kind} {manifest.version}, loaded in {out['loadSeconds']} s")

    with _Clock() as masking:
        templates = [mask(line) for line in lines]
    distinct = list(dict.fromkeys(templates))
    keys = len({line_key(line) for line in lines})
    # Real tokens (not padding) per template's model input, truncated at maxLength as the model sees them.
    first_line = dict(zip(reversed(templates), reversed(lines)))
    fed = [cached.model.model_input(first_line[t]) for t in distinct]
    tokens = [sum(e.attention_mask) for e in cached.model.tokenizer.encode_batch(fed)]
    out.update(lines=len(lines), distinctTemplates=len(distinct), distinctLineKeys=keys,
               lineKeyHitRate=round(1 - keys / len(lines), 3),
               meanTokensPerTemplate=round(statistics.fmean(tokens), 1) if tokens else 0.0,
               mask={"linesPerSecond": round(_rate(len(lines), masking.wall)),
                     "linesPerCpuSecond": round(_rate(len(lines), masking.cpu))})
    _log(f"masking: {out['mask']}; {len(distinct):,} distinct templates, {keys:,} line keys in {len(lines):,} lines")

    with _Clock() as cold:
        for chunk in _chunks(lines, args.chunk):
            cached.classify(chunk)
    with _Clock() as warm:
        for chunk in _chunks(lines, args.chunk):
            cached.classify(chunk)
    # The cold pass = key/mask every line + the model once per distinct template (+ cache upkeep).
    model_seconds = registry.get_sample_value("logdistill_classifier_inference_batch_seconds_sum") or 0.0
    out["cached"] = {
        "coldLinesPerSecond": round(_rate(len(lines), cold.wall)),
        "coldLinesPerCpuSecond": round(_rate(len(lines), cold.cpu)),
        "warmLinesPerSecond": round(_rate(len(lines), warm.wall)),
        "warmLinesPerCpuSecond": round(_rate(len(lines), warm.cpu)),
        "coldSeconds": round(cold.wall, 3),
        "coldModelSeconds": round(model_seconds, 3),
        "coldModelShare": round(model_seconds / cold.wall, 3) if cold.wall else None,
    }
    _log(f"cache on: {out['cached']}")

    uncached = TemplateClassifier(cached.model, cache_size=0, batch_size=args.batch_size)
    count = max(1, int(args.nocache_lines * share))
    sample = lines[:: max(1, len(lines) // count)][:count]
    with _Clock() as nocache:
        for chunk in _chunks(sample, args.chunk):
            uncached.classify(chunk)
    with _Clock() as sample_mask:
        sample_templates = sorted((cached.model.model_input(line) for line in sample), key=len)
    with _Clock() as tokenizing:  # the tokenizer alone, in the classifier's length-sorted micro-batches
        for chunk in _chunks(sample_templates, args.batch_size):
            cached.model.tokenizer.encode_batch(chunk)
    out["nocache"] = {
        "lines": len(sample),
        "linesPerSecond": round(_rate(len(sample), nocache.wall)),
        "linesPerCpuSecond": round(_rate(len(sample), nocache.cpu)),
        "maskShare": round(sample_mask.cpu / nocache.cpu, 4) if nocache.cpu else None,
        "tokenizeShare": round(tokenizing.cpu / nocache.cpu, 4) if nocache.cpu else None,
    }
    _log(f"cache off: {out['nocache']}")

    count = max(1, int(args.latency_samples * share))
    probes = list(dict(zip(templates, lines)).values())[:count]  # one line per distinct template
    wall, cpu = [], []
    for line in probes:
        with _Clock() as one:
            uncached.classify([line])
        wall.append(one.wall)
        cpu.append(one.cpu)
    out["missLatencyMs"] = {"samples": len(wall), "wall": _percentiles(wall), "cpu": _percentiles(cpu)}
    _log(f"single-line miss latency: {out['missLatencyMs']}")
    out["rss"] = measure_rss(directory, lines, args.threads)
    _log(f"process memory: {out['rss']}")
    return out


def bench_tail(directory: Path, lines: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """CRI file -> Tailer -> TailPipeline -> alerts written to /dev/null, with the CLI's defaults.

    The lines are written once and drained (a cold cache), then appended again and drained
    (a warm cache: the steady state of a node whose logs repeat)."""
    from prometheus_client import CollectorRegistry

    from logdistill.edge.main import load_classifier
    from logdistill.edge.metrics import ClassifierMetrics
    from logdistill.edge.pipeline import TailPipeline
    from logdistill.edge.reload import ModelHolder
    from logdistill.edge.sources import Tailer

    metrics = ClassifierMetrics(CollectorRegistry())
    holder = ModelHolder()
    holder.swap(load_classifier(directory, threads=args.threads, cache_size=20_000, batch_size=args.batch_size,
                                max_line_chars=16 * 1024, metrics=metrics))
    result: dict[str, Any] = {"lines": len(lines)}
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as sink:
        pod_dir = Path(tmp) / "bench_loghub_0000" / "app"
        pod_dir.mkdir(parents=True)
        tailer = Tailer([str(Path(tmp) / "*" / "*" / "*.log")], state_dir=Path(tmp) / "state")
        pipeline = TailPipeline(tailer, holder, metrics, sink)
        for phase in ("cold", "warm"):
            with open(pod_dir / "0.log", "a", encoding="utf-8") as out:
                for line in lines:
                    out.write(f"2024-05-01T10:00:00.000000000Z stdout F {line}\n")
            done = 0
            with _Clock() as clock:
                while done < len(lines) and (handled := pipeline.step()):
                    done += handled
            result[phase] = {"linesPerSecond": round(_rate(done, clock.wall)),
                             "linesPerCpuSecond": round(_rate(done, clock.cpu)), "lines": done}
        tailer.close()
    alerts = sum(v for k, v in _label_counts(metrics).items() if k != holder.current.normal_label)
    result["alerts"] = int(alerts)
    _log(f"tail pipeline (metrics on): {result}")
    return result


def _label_counts(metrics) -> dict[str, float]:
    counts = {}
    for family in metrics.registry.collect():
        if family.name == "logdistill_classifier_lines_classified":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["label"]] = sample.value
    return counts


_RSS_PROBE = """
import json, sys, time
from pathlib import Path
def status():
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields
steps = {"python": status()["VmRSS"]}
for name in ("numpy", "onnxruntime", "tokenizers", "prometheus_client", "logdistill.edge.main"):
    __import__(name)
    steps[name] = status()["VmRSS"]
base = {"VmRSS": steps["python"]}
from logdistill.edge.main import load_classifier
classifier = load_classifier(Path(sys.argv[1]), threads=int(sys.argv[2]), cache_size=20_000, batch_size=16,
                             max_line_chars=16384)
loaded = status()
lines = [line.rstrip("\\n") for line in sys.stdin]
for start in range(0, len(lines), 512):
    classifier.classify(lines[start:start + 512])
after = status()
heavy = sorted(n for n in sys.modules if n.split(".")[0] in ("torch", "transformers"))
print(json.dumps({"pythonMB": base["VmRSS"], "loadedMB": loaded["VmRSS"], "afterClassifyMB": after["VmRSS"],
                  "peakMB": after["VmHWM"], "torchImported": bool(heavy), "afterImportMB": steps}))
"""


def measure_rss(directory: Path, lines: list[str], threads: int) -> dict[str, Any]:
    """RSS of a fresh interpreter that imports only the edge path, loads the model and classifies."""
    result = subprocess.run(
        [sys.executable, "-P", "-c", _RSS_PROBE, str(directory), str(threads)],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(args: argparse.Namespace) -> int:
    from logdistill.model.runtime.artifact import ArtifactError

    try:
        lines = load_loghub_lines(args.data)
    except FileNotFoundError as err:
        print(f"logdistill bench classify: {err}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"machine": machine(), "loadAverage": os.getloadavg()[0], "threads": args.threads,
                              "batchSize": args.batch_size,
                              "chunk": args.chunk, "data": str(args.data)}
    _log(f"machine: {report['machine']}; {len(lines):,} lines")
    try:
        report["student"] = bench_artifact(args.model, lines, args)
        report["tailPipeline"] = bench_tail(args.model, lines, args)
        if args.teacher:
            report["teacher"] = bench_artifact(Path(args.teacher), lines, args, share=0.2)
    except ArtifactError as err:
        print(f"logdistill bench classify: {err}", file=sys.stderr)
        return 2
    if "teacher" in report:
        student, teacher = report["student"], report["teacher"]
        def ratio(fast: float, slow: float) -> float:
            return round(fast / slow, 1) if slow else float("inf")

        report["speedup"] = {  # student over teacher, in CPU time (steadier on a shared machine)
            "nocache": ratio(student["nocache"]["linesPerCpuSecond"], teacher["nocache"]["linesPerCpuSecond"]),
            "cachedCold": ratio(student["cached"]["coldLinesPerCpuSecond"], teacher["cached"]["coldLinesPerCpuSecond"]),
            "missP50": ratio(teacher["missLatencyMs"]["cpu"]["p50"], student["missLatencyMs"]["cpu"]["p50"]),
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    if args.markdown is not None:
        args.markdown.write_text(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    """The results as the Markdown table docs/benchmarks.md shows (wall / CPU-time figures)."""
    models = [name for name in ("student", "teacher") if name in report]

    def row(title: str, target: str, cell) -> str:
        return f"| {title} | " + " | ".join(cell(report[name]) for name in models) + f" | {target} |"

    def rate(section: str, wall: str, cpu: str):
        return lambda r: f"{r[section][wall]:,} / {r[section][cpu]:,}"

    lines = [
        "| measurement (wall / per CPU-second) | " + " | ".join(
            f"{name} `{report[name]['version']}` ({report[name]['parameters'] or 0:,} params, "
            f"maxLength {report[name]['maxLength']})" for name in models) + " | target |",
        "|---" * (len(models) + 2) + "|",
        row("masking only, lines/s", "—", rate("mask", "linesPerSecond", "linesPerCpuSecond")),
        row("cache on, warm, lines/s", "≥ 50k (aim 100k)",
            rate("cached", "warmLinesPerSecond", "warmLinesPerCpuSecond")),
        row("cache on, cold (first pass), lines/s", "—",
            rate("cached", "coldLinesPerSecond", "coldLinesPerCpuSecond")),
        row("model share of the cold pass", "—", lambda r: f"{r['cached']['coldModelShare']:.0%}"),
        row("cache off, lines/s", "≥ 2k (aim 3k)", rate("nocache", "linesPerSecond", "linesPerCpuSecond")),
        row("cache off: share of masking / tokenizer / ONNX Runtime and the rest", "—",
            lambda r: f"{r['nocache']['maskShare']:.0%} / {r['nocache'].get('tokenizeShare', 0):.0%} / "
                      f"{1 - r['nocache']['maskShare'] - r['nocache'].get('tokenizeShare', 0):.0%}"),
        row("single-line miss p50 / p99, ms (wall)", "p99 ≤ 5 ms (aim 2)",
            lambda r: f"{r['missLatencyMs']['wall']['p50']} / {r['missLatencyMs']['wall']['p99']}"),
        row("single-line miss p50 / p99, ms (CPU)", "—",
            lambda r: f"{r['missLatencyMs']['cpu']['p50']} / {r['missLatencyMs']['cpu']['p99']}"),
        row("RSS loaded / after classifying all lines, MB", "≤ 150 (aim 100)",
            lambda r: f"{r['rss'].get('loadedMB')} / {r['rss'].get('afterClassifyMB')}"),
    ]
    if "tailPipeline" in report:
        tail = report["tailPipeline"]
        lines.append(f"\nTail pipeline (CRI file → tailer → student → alerts to /dev/null, metrics on, CLI "
                     f"defaults): cold cache {tail['cold']['linesPerSecond']:,} lines/s wall "
                     f"({tail['cold']['linesPerCpuSecond']:,} per CPU-second), warm cache "
                     f"{tail['warm']['linesPerSecond']:,} lines/s ({tail['warm']['linesPerCpuSecond']:,}).")
    if "speedup" in report:
        s = report["speedup"]
        lines.append(f"\nStudent vs teacher (CPU time): {s['nocache']}× lines/s with the cache off, "
                     f"{s['cachedCold']}× on the cold cached pass, {s['missP50']}× single-line p50.")
    return "\n".join(lines) + "\n"
