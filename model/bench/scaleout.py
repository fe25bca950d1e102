"""``logdistill bench scaleout``: sharded teacher labelling and torchrun training, 1 vs 2 workers.

Runs the real commands as subprocesses, the way the operator's pods run them, on the bundled BGL
sample with the demo teacher (``artifacts/demo/teacher`` after ``logdistill demo``, or
``--teacher-dir``; trained first into ``<out>/teacher`` when there is none):

* labelling: ``logdistill label --shards 1`` (one process) vs ``--shards 2`` (two processes at once),
  1 torch thread each: wall time from launch to the last shard written, transfer templates per second;
* training: ``logdistill distill --soft-targets`` with the demo student, one process (1 thread and
  2 threads) vs ``torchrun --nproc-per-node=2`` (gloo, 1 thread each), same seed and global batch:
  training seconds (the fit loop, from the artifact's report), wall seconds and dev macro-F1.

Also prints what bounds DDP on N nodes: the student's parameters x 4 bytes all-reduced per step.
Writes ``<out>/bench-scaleout.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "main"]

DEFAULT_OUT = "artifacts/bench-scaleout"
DEFAULT_TEACHER = "artifacts/demo/teacher"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"work directory (default {DEFAULT_OUT})")
    parser.add_argument("--teacher-dir", default=DEFAULT_TEACHER,
                        help=f"teacher artifact (default {DEFAULT_TEACHER}); trained into <out>/teacher if missing")
    parser.add_argument("--epochs", type=int, default=3, help="student epochs per training run (default 3)")


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONSAFEPATH="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return env


def _run_all(commands: list[list[str]], logs: list[Path], cwd: Path) -> float:
    """Start all commands at once; wall seconds until the last one ends (each must exit 0)."""
    started = time.monotonic()
    procs = []
    for command, log in zip(commands, logs):
        procs.append((subprocess.Popen(command, cwd=cwd, env=_env(), stdout=open(log, "w"),
                                       stderr=subprocess.STDOUT), log))
    for proc, log in procs:
        if proc.wait() != 0:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(proc.args)} exited with {proc.returncode}:\n{tail}")
    return time.monotonic() - started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _teacher(args: argparse.Namespace, out: Path) -> Path:
    from logdistill.model.runtime.artifact import ArtifactError, verify_artifact

    try:
        verify_artifact(args.teacher_dir)
        return Path(args.teacher_dir)
    except (ArtifactError, OSError):
        pass
    from logdistill.model.engine.teacher import TeacherOptions, default_base, ensure_teacher
    from logdistill.model.engine.train import Progress
    from logdistill.spec import DataSpec

    print(f"[bench scaleout] no teacher at {args.teacher_dir}: training one into {out / 'teacher'}", file=sys.stderr)
    teacher, _ = ensure_teacher(out / "teacher", DataSpec(), default_base(), TeacherOptions(epochs=3, threads=0),
                                Progress())
    return Path(teacher)


def _config(out: Path, teacher: Path, threads: int, epochs: int) -> Path:
    import yaml

    from logdistill.model.cli.demo import demo_spec

    body = demo_spec(teacher)
    body["training"].update(threads=threads, epochs=epochs, patience=epochs)
    path = out / f"spec-{threads}thread.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def _label(config: Path, shards: int, out: Path) -> dict[str, Any]:
    folder = out / f"labels-{shards}"
    shutil.rmtree(folder, ignore_errors=True)
    commands = [[_bin("logdistill"), "label", "--config", str(config), "--shard-index", str(i), "--shards",
                 str(shards), "--out", str(folder)] for i in range(shards)]
    wall = _run_all(commands, [out / f"label-{shards}-{i}.log" for i in range(shards)], out)
    shard_summaries = [json.loads(next(line for line in reversed(log.read_text().splitlines())
                                       if line.startswith("{")))
                       for log in (out / f"label-{shards}-{i}.log" for i in range(shards))]
    templates = sum(s["templates"] for s in shard_summaries)
    return {"workers": shards, "templates": templates, "wallSeconds": round(wall, 2),
            "linesPerSecond": round(templates / wall, 1),
            "perShard": [{"templates": s["templates"], "seconds": s["seconds"]} for s in shard_summaries],
            "folder": str(folder)}


def _train(config: Path, soft: str, workers: int, threads: int, out: Path) -> dict[str, Any]:
    artifact = out / f"student-{workers}w{threads}t"
    shutil.rmtree(artifact, ignore_errors=True)
    distill = ["distill", "--config", str(config), "--out", str(artifact), "--soft-targets", soft]
    if workers == 1:
        command = [_bin("logdistill"), *distill]
    else:
        command = [_bin("torchrun"), "--nnodes=1", f"--nproc-per-node={workers}", "--rdzv-backend=static",
                   "--master-addr=127.0.0.1", f"--master-port={_free_port()}", "--max-restarts=0", "--no-python",
                   _bin("logdistill"), *distill]
    wall = _run_all([command], [out / f"train-{workers}w{threads}t.log"], out)
    report = json.loads((artifact / "report.json").read_text())
    training = report["training"]
    return {"workers": workers, "threadsPerWorker": threads, "trainSeconds": training["seconds"],
            "wallSeconds": round(wall, 2), "epochs": training["epochsRun"],
            "bestDevMacroF1": training["bestDevMacroF1"], "testMacroF1": report["student"]["onnxInt8"]["macro_f1"],
            "parameters": report["student"]["parameters"]}


def main(args: argparse.Namespace) -> int:
    from logdistill.model.bench.distill import machine

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    teacher = _teacher(args, out).resolve()
    one_thread = _config(out, teacher, 1, args.epochs)
    two_threads = _config(out, teacher, 2, args.epochs)
    print(f"[bench scaleout] teacher {teacher}; out {out}", file=sys.stderr)
    labelling = [_label(one_thread, shards, out) for shards in (1, 2)]
    soft = labelling[0]["folder"]
    training = [_train(one_thread, soft, 1, 1, out), _train(two_threads, soft, 1, 2, out),
                _train(one_thread, labelling[1]["folder"], 2, 1, out)]
    parameters = training[0]["parameters"]
    # Other work on the machine skews a 2-worker run most: record the load seen at the end.
    result = {"machine": {**machine(), "loadAverage1m": round(os.getloadavg()[0], 2)}, "teacher": str(teacher), "labelling": labelling, "training": training,
              "ddp": {"studentParameters": parameters, "allReduceBytesPerStep": parameters * 4}}
    (out / "bench-scaleout.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"machine: {result['machine']}")
    print(f"{'labelling':12}{'workers':>8}{'templates':>10}{'wall s':>9}{'lines/s':>9}")
    for row in labelling:
        print(f"{'':12}{row['workers']:>8}{row['templates']:>10}{row['wallSeconds']:>9.1f}{row['linesPerSecond']:>9.1f}")
    print(f"{'training':12}{'workers':>8}{'threads':>10}{'train s':>9}{'wall s':>9}{'dev F1':>9}{'test F1':>9}")
    for row in training:
        print(f"{'':12}{row['workers']:>8}{row['threadsPerWorker']:>10}{row['trainSeconds']:>9.1f}"
              f"{row['wallSeconds']:>9.1f}{row['bestDevMacroF1']:>9.4f}{row['testMacroF1']:>9.4f}")
    print(f"DDP all-reduce per step: {parameters:,} parameters x 4 B = {parameters * 4 / 1e6:.1f} MB")
    print(f"wrote {out / 'bench-scaleout.json'}")
    return 0
