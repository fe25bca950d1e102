"""``logdistill bench techniques``: what each distillation technique of issue 4 buys, one run, one split.

Every row distils the same student (:data:`logdistill.model.cli.demo.DEMO_STUDENT`) from the same
teacher on the same template-disjoint split with the same seed and epochs; only the technique
changes:

* ``kd``: plain KD on the distinct train templates (no augmented lines);
* ``kd+aug``: + the engine's teacher-labelled augmented transfer lines (the default recipe);
* ``kd+aug+hidden``: + intermediate-layer loss (``training.intermediate``, uniform mapping);
* ``kd+aug+hidden+attn``: + attention maps (opt-in with ``--rows``: the teacher runs eager);
* ``kd+aug+ensemble``: the teacher plus ``--second-teacher-dir`` (e.g. the all-mpnet-base-v2 teacher of
  ``bench distill --teacher-base mpnet``, another tokenizer) as ``teacher.ensemble`` with equal weights;
  each member and the mix are scored on the test split;
* ``llm-fake``: ``teacher.endpoint`` against a local fake OpenAI-compatible server that answers
  each line's data label (an oracle, so its "teacher" F1 means nothing): measures the endpoint
  pipeline's wall time and request count only. The student starts from the shipped
  all-MiniLM-L6-v2 (``student.init: pretrained``; there is no local teacher to copy).

Each row: student macro-F1 (int8 ONNX, test split), ratio to the teacher's macro-F1, wall time of
the distillation. Writes ``<out>/bench-techniques.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["ROWS", "add_arguments", "main"]

DEFAULT_OUT = "artifacts/bench-techniques"
ROWS = ("kd", "kd+aug", "kd+aug+hidden", "kd+aug+hidden+attn", "kd+aug+ensemble", "llm-fake")
DEFAULT_ROWS = "kd,kd+aug,kd+aug+hidden,llm-fake"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="BGL-style labelled log (default: bundled BGL_20k.log)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"work directory (default {DEFAULT_OUT})")
    parser.add_argument("--teacher-dir", default="artifacts/demo/teacher",
                        help="teacher artifact to reuse if it verifies and matches the data, else trained there")
    parser.add_argument("--second-teacher-dir", default="artifacts/bench-mpnet/teacher-mpnet",
                        help="second teacher of the kd+aug+ensemble row (any tokenizer, same labels)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="student epochs, every row (default: the demo recipe's)")
    parser.add_argument("--rows", default=DEFAULT_ROWS, help=f"comma-separated rows of {', '.join(ROWS)}")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all cores")


class _OracleLlm:
    """A local OpenAI-compatible server answering each line's label from the data, with logprobs."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.requests = 0
        oracle = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                oracle.requests += 1
                user = body["messages"][-1]["content"]
                codes = {label: code for code, label in re.findall(r"^([A-Z]{1,2}): (.+)$", user, re.M)}
                line = user.split("Log message:\n", 1)[-1].split("\n", 1)[0]
                code = codes.get(answers.get(line, "-"), next(iter(codes.values())))
                top = [{"token": code, "logprob": -0.05}] + [
                    {"token": c, "logprob": -4.0} for c in list(codes.values())[:4] if c != code]
                payload = json.dumps({"choices": [{"message": {"content": code}, "logprobs": {
                    "content": [{"token": code, "logprob": -0.05, "top_logprobs": top}]}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _body(row: str, teacher_dir: Path, data: dict[str, Any], epochs: int, threads: int, fake_url: str | None,
          cache: Path, second_teacher: str | None = None) -> tuple[dict[str, Any], int]:
    from logdistill.model.cli.demo import demo_spec, start_from_encoder
    from logdistill.model.engine.augment import AUGMENT_PER_TEMPLATE

    body = demo_spec(teacher_dir, data=data)
    body["training"].update(epochs=epochs, patience=epochs, threads=threads)
    augment = 0 if row == "kd" else AUGMENT_PER_TEMPLATE
    if row.startswith("kd+aug+hidden"):
        body["training"]["intermediate"] = {"enabled": True, "weight": 1.0, "attention": row.endswith("attn")}
    if row == "kd+aug+ensemble":
        body["teacher"] = {"ensemble": [{"checkpoint": str(teacher_dir), "weight": 1.0},
                                        {"checkpoint": str(second_teacher), "weight": 1.0}]}
    if row == "llm-fake":
        body["teacher"] = {"endpoint": {"url": fake_url, "model": "oracle-fake", "requestsPerSecond": 500,
                                        "concurrency": 8, "cacheDir": str(cache)}}
        # No local teacher to copy: fresh layers of this size do not learn from ~150 templates.
        from logdistill.model.engine.bases import minilm_path

        start_from_encoder(body, minilm_path())
    return body, augment


def main(args: argparse.Namespace) -> int:
    from logdistill.model.bench.distill import machine
    from logdistill.model.runtime.data import load_records
    from logdistill.model.cli.distill import run_distill
    from logdistill.model.runtime.metrics import supported_macro_f1
    from logdistill.model.engine.teacher import TeacherOptions, default_base, ensure_teacher
    from logdistill.model.runtime.templates import mask
    from logdistill.model.engine.train import Progress
    from logdistill.spec import DataSpec, parse_spec

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        print(f"logdistill bench techniques: --rows: unknown {unknown}; choose from {', '.join(ROWS)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    out = Path(args.out)
    progress = Progress()
    data = {"path": args.data} if args.data else {}
    data_spec = parse_spec(data, DataSpec, source="--data")
    teacher_dir, reused = ensure_teacher(Path(args.teacher_dir), data_spec, default_base(),
                                         TeacherOptions(threads=args.threads), progress)
    fake = None
    if "llm-fake" in rows:
        records = load_records(data_spec).records
        fake = _OracleLlm({mask(r.text): r.label for r in records if r.label is not None})
    if not args.epochs:
        from logdistill.model.cli.demo import DEMO_TRAINING

        args.epochs = DEMO_TRAINING["epochs"]
    results: dict[str, Any] = {}
    teacher_f1 = None
    try:
        for row in rows:
            body, augment = _body(row, teacher_dir, data, args.epochs, args.threads, fake.url if fake else None,
                                  out / "llm-cache", args.second_teacher_dir)
            progress.say(f"bench techniques: row {row}")
            t0 = time.monotonic()
            requests_before = fake.requests if fake else 0
            summary, report = run_distill(parse_spec(body, source=f"bench techniques {row}"), out / row,
                                          progress=progress, augment_per_template=augment)
            wall = time.monotonic() - t0
            if row not in ("llm-fake", "kd+aug+ensemble"):
                teacher_f1 = summary["teacher"]["macroF1"]
            results[row] = {
                "studentMacroF1": summary["student"]["macroF1"],
                "studentMacroF1Supported": round(supported_macro_f1(report["student"]["onnxInt8"]), 4),
                "studentAlertF1": round(report["student"]["onnxInt8"]["alert"]["f1"], 4),
                "teacherMacroF1": summary["teacher"]["macroF1"],
                "teacherMembers": report["teacher"].get("members"),
                "distillWallSeconds": round(wall, 1),
                "fitSeconds": report["training"]["seconds"],
                "bestEpoch": report["training"]["bestEpoch"],
                "transferSet": report["training"]["transferSet"],
                "init": report["training"]["initDetail"],
                **({"requests": fake.requests - requests_before, "endpointStats": report["teacher"]["requests"]}
                   if row == "llm-fake" and fake else {}),
            }
            out.mkdir(parents=True, exist_ok=True)  # partial results survive an interrupted run
            (out / "bench-techniques.partial.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    finally:
        if fake:
            fake.close()
    for row, r in results.items():  # each row against its own teacher (the ensemble row: the mix)
        reference = r["teacherMacroF1"] if row != "llm-fake" else None
        r["ratioToTeacher"] = round(r["studentMacroF1"] / reference, 4) if reference else None
    result = {"machine": machine(), "data": str(args.data or "bundled BGL_20k.log"), "epochs": args.epochs,
              "teacher": {"dir": str(teacher_dir), "reused": reused, "macroF1": teacher_f1},
              "rows": results, "wallSeconds": round(time.monotonic() - started, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-techniques.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    m = result["machine"]
    print(f"\nlogdistill bench techniques on {m['cpu']} ({m['cores']} cores), {args.epochs} epochs per row;"
          f" teacher macro-F1 {teacher_f1}")
    print(f"{'row':22}{'teacher macro-F1':>18}{'student macro-F1':>18}{'alert F1':>10}{'ratio':>8}"
          f"{'distill wall s':>16}")
    for row, r in results.items():
        ratio = f"{r['ratioToTeacher']:.3f}" if r["ratioToTeacher"] is not None else "n/a"
        print(f"{row:22}{r['teacherMacroF1']:>18.4f}{r['studentMacroF1']:>18.4f}{r['studentAlertF1']:>10.4f}{ratio:>8}"
              f"{r['distillWallSeconds']:>16.1f}")
        for member in r["teacherMembers"] or []:
            print(f"{'':4}member {member['source']} (weight {member['weight']}): macro-F1 {member['macro_f1']:.4f},"
                  f" alert F1 {member['alert_f1']:.4f}")
    print(f"results: {out / 'bench-techniques.json'}", file=sys.stderr)
    return 0
