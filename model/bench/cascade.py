"""``logdistill bench cascade``: what escalating new templates to the teacher buys on categories
the models never saw.

For each left-out alert category L (default KERNSTOR, the second largest in BGL_20k):

1. The bundled BGL data without any line of L is written to ``<out>/data-no-L.log``; a teacher
   (all-MiniLM-L6-v2, ``--teacher-epochs``) and a student (the demo recipe, ``--epochs``) are
   trained on it: neither ever sees L. Both are cached in ``<out>`` and reused when they match.
2. The test stream is the template-disjoint test part of that data (normal lines and the other
   categories' unseen templates) plus every line of L, in file order.
3. The real edge path (:class:`~logdistill.edge.classifier.TemplateClassifier` + the escalation
   client) runs it against the real teacher service (a ``logdistill serve-teacher`` process on a
   free port, one torch thread). Pass 1 is the student alone (the cascade's answers are not back
   yet); once the escalation queue is drained, pass 2 shows what the cascade serves.

The teacher service answers its most likely alert category when its probability of "normal" is
below ``--teacher-alert-below`` (default 0.5; 0 = its top label): a category it never saw spreads
its probability over the known alerts.

Reported: alert recall on L without and with the cascade (and the teacher's own), false alarms
on normal lines, the share of lines escalated, edge throughput with escalation on and off
(cold cache, one thread) and the teacher's load.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "main"]

DEFAULT_OUT = "artifacts/bench-cascade"
DEFAULT_LABELS = ("KERNSTOR",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", action="append", default=None,
                        help=f"alert category to leave out (repeatable; default {' '.join(DEFAULT_LABELS)})")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"work directory (default {DEFAULT_OUT})")
    parser.add_argument("--teacher-epochs", type=int, default=12,
                        help="teacher fine-tuning epochs over the distinct templates (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="student distillation epochs (default: the demo recipe's)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all cores")
    parser.add_argument("--teacher-alert-below", type=float, default=0.5, metavar="P",
                        help="serve-teacher --alert-below: the teacher answers its top alert category when P(normal)"
                             " < P (default %(default)s; 0 = its top label)")
    parser.add_argument("--escalate-below", type=float, default=0.9)
    parser.add_argument("--sample-rate", type=float, default=0.01)
    parser.add_argument("--escalation-rps", type=float, default=20.0)
    parser.add_argument("--escalation-batch", type=int, default=32)


def _flagged(results: list, normal: str) -> list[bool]:
    return [r.label != normal for r in results]


def _classify_stream(classifier: Any, texts: list[str], chunk: int = 256) -> tuple[list, float]:
    started = time.perf_counter()
    results = []
    for start in range(0, len(texts), chunk):
        results.extend(classifier.classify(texts[start:start + chunk]))
    return results, time.perf_counter() - started


def _rate(flags: list[bool], mask: list[bool]) -> float:
    chosen = [f for f, m in zip(flags, mask) if m]
    return sum(chosen) / len(chosen) if chosen else 0.0


def _prepare(label: str, args: argparse.Namespace, out: Path, progress: Any) -> tuple[Path, Path, Any]:
    """Train (or reuse) a teacher and a student on the bundled BGL data without ``label``."""
    from logdistill.model.runtime.artifact import ArtifactError, verify_artifact
    from logdistill.model.runtime.data import bundled_sample
    from logdistill.model.cli.demo import demo_spec
    from logdistill.model.cli.distill import run_distill
    from logdistill.model.engine.teacher import TeacherOptions, default_base, ensure_teacher
    from logdistill.spec import DataSpec, parse_spec

    out.mkdir(parents=True, exist_ok=True)
    data_path = out / f"data-no-{label}.log"
    source = bundled_sample()
    kept = [line for line in source.read_text(encoding="utf-8", errors="replace").splitlines()
            if line.strip() and line.split(" ", 1)[0] != label]
    text = "\n".join(kept) + "\n"
    if not data_path.exists() or data_path.read_text(encoding="utf-8") != text:
        data_path.write_text(text, encoding="utf-8")
    data_spec = parse_spec({"path": str(data_path)}, DataSpec, source="bench cascade data")
    options = TeacherOptions(epochs=args.teacher_epochs, threads=args.threads)
    teacher_dir, reused = ensure_teacher(out / f"teacher-no-{label}", data_spec, default_base(), options, progress)
    student_dir = out / f"student-no-{label}"
    body = demo_spec(teacher_dir, data={"path": str(data_path)})
    if args.epochs:
        body["training"].update(epochs=args.epochs, patience=min(args.epochs, body["training"]["patience"]))
    body["training"]["threads"] = args.threads
    spec = parse_spec(body, source="bench cascade spec")
    marker = out / f"student-no-{label}.bench-spec.json"  # beside the artifact: it must verify
    wanted = json.dumps({"spec": body, "teacher": verify_artifact(teacher_dir).version}, sort_keys=True)
    try:
        verify_artifact(student_dir)
        fresh = marker.read_text(encoding="utf-8") == wanted
    except (ArtifactError, OSError):
        fresh = False
    if fresh:
        progress.say(f"reusing the student at {student_dir}")
    else:
        run_distill(spec, student_dir, progress=progress)
        marker.write_text(wanted, encoding="utf-8")
    return teacher_dir, student_dir, data_spec


def _run_label(label: str, args: argparse.Namespace, out: Path, progress: Any) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from logdistill.edge.classifier import TemplateClassifier
    from logdistill.edge.escalation import EscalationClient, TeacherAnswers
    from logdistill.edge.metrics import ClassifierMetrics
    from logdistill.edge.reload import ModelHolder
    from logdistill.model.runtime.data import load_records, read_logs, bundled_sample
    from logdistill.model.runtime.inference import OnnxClassifier
    from logdistill.edge.escalation import post_json
    from logdistill.model.runtime.artifact import read_labels
    from logdistill.model.runtime.splits import make_split

    teacher_dir, student_dir, data_spec = _prepare(label, args, out, progress)
    seed = 13  # the demo recipe's seed: the split the student was trained on
    split = make_split(load_records(data_spec).records, data_spec, seed)
    held = [r for r in read_logs(bundled_sample(), "loghub").records if r.label == label]
    stream = [r for r in split.test if r.label is not None] + held
    texts = [r.text for r in stream]
    is_left_out = [r.label == label for r in stream]
    is_normal = [r.label == "-" for r in stream]
    progress.say(f"{label}: stream of {len(stream)} lines ({len(held)} of {label}, {sum(is_normal)} normal)")

    # The real teacher service in its own process (as the Deployment runs it), one torch thread.
    teacher = _TeacherProcess(teacher_dir, args.teacher_alert_below)
    try:
        base = teacher.url()
        teacher_normal = read_labels(teacher_dir)[1]
        direct = post_json(base + "/v1/classify", {"lines": texts}, 600)["results"]
        teacher_flags = [r["label"] != teacher_normal for r in direct]
        before = _teacher_load(base)

        student = OnnxClassifier(student_dir, threads=1)
        normal = student.normal_label
        # Throughput without escalation (cold cache).
        plain = TemplateClassifier(student, cache_size=20_000)
        plain_results, plain_s = _classify_stream(plain, texts)

        metrics = ClassifierMetrics(CollectorRegistry())
        holder = ModelHolder()
        edge = TemplateClassifier(student, cache_size=20_000, metrics=metrics)
        holder.swap(edge)
        answers = TeacherAnswers(holder, metrics)
        client = EscalationClient(base, labels=answers.labels, queue_size=10_000,
                                  batch_size=args.escalation_batch, rps=args.escalation_rps, metrics=metrics,
                                  on_answer=answers)
        edge.attach_escalation(client, escalate_below=args.escalate_below, sample_rate=args.sample_rate, seed=seed)
        client.start()
        first, first_s = _classify_stream(edge, texts)
        began = time.monotonic()
        done = threading.Event()
        while not done.is_set():
            counts = dict(client.counts)
            finished = counts["answered"] + counts["dropped_error"]
            if len(client) == 0 and finished == counts["sent"]:
                done.set()
            else:
                done.wait(0.05)
        drain_s = time.monotonic() - began
        second, _ = _classify_stream(edge, texts)
        client.stop()
        after = _teacher_load(base)
        throughput = _full_file_throughput(student, base, args)
    finally:
        teacher.stop()

    counts = client.counts
    offered = counts["sent"] + counts["dropped_queue_full"]
    requests = after["requests"] - before["requests"]
    result = {
        "label": label,
        "teacherAlertBelow": args.teacher_alert_below or None,
        "streamLines": len(stream),
        "leftOutLines": len(held),
        "normalLines": sum(is_normal),
        "teacherRecall": _rate(teacher_flags, is_left_out),
        "studentRecall": _rate(_flagged(first, normal), is_left_out),
        "cascadeRecall": _rate(_flagged(second, normal), is_left_out),
        "teacherFalseAlarms": _rate(teacher_flags, is_normal),
        "studentFalseAlarms": _rate(_flagged(first, normal), is_normal),
        "cascadeFalseAlarms": _rate(_flagged(second, normal), is_normal),
        "escalatedShare": offered / len(stream),
        "escalations": counts,
        "edgeLinesPerS": {"escalationOff": len(texts) / plain_s, "escalationOn": len(texts) / first_s},
        "fullFile": throughput,
        "teacher": {
            "requests": requests,
            "lines": after["lines"] - before["lines"],
            "drainSeconds": round(drain_s, 2),
            "requestsPerS": requests / drain_s if drain_s else None,
        },
        "plainMatchesFirstPass": [r.label for r in plain_results] == [r.label for r in first],
    }
    result["recallRatioToTeacher"] = (result["cascadeRecall"] / result["teacherRecall"]
                                      if result["teacherRecall"] else None)
    return result


def _full_file_throughput(student: Any, base: str, args: argparse.Namespace) -> dict[str, Any]:
    """Edge lines/s over the whole bundled file (cold cache, 1 thread), escalation off and on."""
    from logdistill.edge.classifier import TemplateClassifier
    from logdistill.edge.escalation import EscalationClient
    from logdistill.model.runtime.data import bundled_sample, read_logs

    texts = [r.text for r in read_logs(bundled_sample(), "loghub").records]
    out: dict[str, Any] = {"lines": len(texts)}
    for name in ("escalationOff", "escalationOn"):
        classifier = TemplateClassifier(student, cache_size=20_000)
        client = None
        if name == "escalationOn":
            client = EscalationClient(base, labels=lambda: classifier.labels, queue_size=1000,
                                      batch_size=args.escalation_batch, rps=args.escalation_rps)
            classifier.attach_escalation(client, escalate_below=args.escalate_below, sample_rate=args.sample_rate)
            client.start()
        _, seconds = _classify_stream(classifier, texts)
        out[name] = len(texts) / seconds
        if client is not None:
            offered = client.counts["sent"] + client.counts["dropped_queue_full"] + len(client)
            out["escalatedShare"] = offered / len(texts)
            client.stop()
    return out


class _TeacherProcess:
    """``logdistill serve-teacher`` on a free port; its URL once ``/readyz`` answers."""

    def __init__(self, model: Path, alert_below: float = 0.0) -> None:
        import subprocess
        import tempfile

        self._log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-P", "-m", "logdistill", "serve-teacher", "--model", str(model),
                                      "--host", "127.0.0.1", "--port", "0", "--threads", "1", "--max-concurrency", "1",
                                      *(["--alert-below", str(alert_below)] if alert_below > 0 else [])],
                                     stdout=subprocess.DEVNULL, stderr=self._log)

    def url(self, timeout: float = 300.0) -> str:
        import re
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            self._log.seek(0)
            match = re.search(r"listening on (http://\S+)", self._log.read())
            if match:
                try:
                    with urllib.request.urlopen(match.group(1) + "/readyz", timeout=5):
                        return match.group(1)
                except OSError:
                    pass
            time.sleep(0.2)
        self._log.seek(0)
        raise RuntimeError(f"serve-teacher did not become ready:\n{self._log.read()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except Exception:  # noqa: BLE001
            self.proc.kill()
        self._log.close()


def _teacher_load(base: str) -> dict[str, float]:
    """Requests and lines the teacher served so far, from its ``/metrics``."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    load = {"requests": 0.0, "lines": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "logdistill_teacher_requests_total":
                load["requests"] += sample.value
            elif sample.name == "logdistill_teacher_lines_total":
                load["lines"] += sample.value
    return load


def main(args: argparse.Namespace) -> int:
    from logdistill.model.bench.distill import machine
    from logdistill.model.engine.train import Progress

    started = time.monotonic()
    out = Path(args.out)
    progress = Progress()
    labels = args.label or list(DEFAULT_LABELS)
    runs = []
    for label in labels:
        runs.append(_run_label(label, args, out, progress))
        progress.say(f"{label}: done at {time.monotonic() - started:.0f} s")
    result = {"machine": machine(), "data": "bundled BGL_20k.log", "runs": runs,
              "settings": {k: getattr(args, k) for k in ("teacher_epochs", "epochs", "escalate_below", "sample_rate",
                                                          "escalation_rps", "escalation_batch")},
              "wallSeconds": round(time.monotonic() - started, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-cascade.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    m = result["machine"]
    print(f"\nlogdistill bench cascade on {m['cpu']} ({m['cores']} cores), leave-one-category-out on BGL_20k")
    print("| left out | lines (of it / normal) | teacher recall | student recall | cascade recall | cascade/teacher"
          " | false alarms student / cascade | escalated | edge lines/s off / on | teacher requests, lines, req/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        t = r["teacher"]
        print(f"| {r['label']} | {r['streamLines']} ({r['leftOutLines']} / {r['normalLines']}) | "
              f"{r['teacherRecall']:.3f} | {r['studentRecall']:.3f} | {r['cascadeRecall']:.3f} | "
              f"{(r['recallRatioToTeacher'] or 0):.3f} | {r['studentFalseAlarms']:.4f} / {r['cascadeFalseAlarms']:.4f} | "
              f"{r['escalatedShare']:.4f} | {r['edgeLinesPerS']['escalationOff']:.0f} / "
              f"{r['edgeLinesPerS']['escalationOn']:.0f} | {t['requests']:.0f}, {t['lines']:.0f}, "
              f"{(t['requestsPerS'] or 0):.1f} |")
    for r in runs:
        f = r["fullFile"]
        print(f"whole BGL_20k ({f['lines']} lines, cold cache, 1 thread): edge {f['escalationOff']:.0f} lines/s"
              f" without escalation, {f['escalationOn']:.0f} with it; {f['escalatedShare']:.4f} of lines offered"
              " to the teacher")
    print(f"wall: {result['wallSeconds']} s; results: {out / 'bench-cascade.json'}", file=sys.stderr)
    return 0
