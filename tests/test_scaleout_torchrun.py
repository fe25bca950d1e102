"""Distributed distillation under torchrun (gloo over loopback) against a one-process run.

The two workers are launched the way the operator launches them (one torchrun per "node",
``--nnodes=2 --node-rank=I --rdzv-backend=static``, through ``logdistill operator job-run``), each
with its own summary file, as each pod has its own termination log.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")

from helpers.tiny_models import tiny_distill_config, tiny_log_lines  # noqa: E402

from logdistill.cli import main as cli  # noqa: E402

pytestmark = pytest.mark.torch
BIN = Path(sys.executable).parent
STUDENT = {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32, "maxLength": 32}
# Global batch 16 over 2 workers = 8 rows per rank per step.
TRAINING = {"epochs": 6, "learningRate": 0.003, "threads": 1, "batchSize": 16, "patience": 6}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    config = tiny_distill_config(root, STUDENT, TRAINING)
    soft = root / "soft-targets"
    for index in range(2):
        assert cli(["label", "--config", str(config), "--shard-index", str(index), "--shards", "2",
                    "--out", str(soft)]) == 0
    return root, config, soft


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(PYTHONSAFEPATH="1", OMP_NUM_THREADS="1", PATH=f"{BIN}:{env.get('PATH', '')}", **extra)
    return env


def _worker(node_rank: int, port: int, config: Path, out: Path, summary: Path, soft: Path, cwd: Path,
            nnodes: int = 2, **env: str) -> subprocess.Popen:
    """The operator's distributed_command for one pod (see logdistill.operator.manifests.distill)."""
    command = [str(BIN / "torchrun"), f"--nnodes={nnodes}", "--nproc-per-node=1", f"--node-rank={node_rank}",
               "--rdzv-backend=static", f"--rdzv-endpoint=127.0.0.1:{port}", "--max-restarts=0", "--no-python",
               "logdistill", "operator", "job-run", "--config", str(config), "--out", str(out),
               "--summary-file", str(summary), "--", "--soft-targets", str(soft)]
    log = open(cwd / f"worker-{nnodes}-{node_rank}.log", "w")
    return subprocess.Popen(command, cwd=cwd, env=_env(**env), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for p in procs:
                os.killpg(p.pid, 9)
            raise
    return codes


@pytest.fixture(scope="module")
def runs(workspace):
    root, config, soft = workspace
    # The one-process run is torchrun with one worker: the same code path and sampler permutation
    # (a plain run shuffles with torch.randperm instead, so its batches differ; see docs/benchmarks.md).
    single = _worker(0, _free_port(), config, root / "single", root / "single.json", soft, root, nnodes=1)
    assert _wait([single], timeout=240) == [0], (root / "worker-1-0.log").read_text()[-3000:]
    port = _free_port()
    procs = [_worker(rank, port, config, root / ("dist" if rank == 0 else "dist-rank1"), root / f"rank{rank}.json",
                     soft, root) for rank in range(2)]
    codes = _wait(procs, timeout=240)
    # Whole logs: the start-up lines asserted below fall out of a short tail when a loaded machine makes the
    # time-based progress lines many.
    logs = "\n".join((root / f"worker-2-{r}.log").read_text() for r in range(2))
    return root, codes, logs


def _dev_f1(artifact: Path) -> float:
    return json.loads((artifact / "report.json").read_text())["training"]["bestDevMacroF1"]


def test_two_workers_finish_and_only_rank_0_writes_the_artifact_and_summary(runs):
    root, codes, logs = runs
    assert codes == [0, 0], logs[-6000:]
    assert "rank 0/2" in logs and "rank 1/2" in logs and "backend gloo" in logs
    summary = json.loads((root / "rank0.json").read_text())
    assert summary["artifact"] == str(root / "dist") and (root / "dist" / "model.int8.onnx").is_file()
    assert json.loads((root / "rank1.json").read_text()) == {"rank": 1}
    assert not (root / "dist-rank1").exists()


def test_two_workers_match_one_process_within_001_dev_macro_f1(runs):
    root, codes, logs = runs
    assert codes == [0, 0], logs[-6000:]
    single, dual = _dev_f1(root / "single"), _dev_f1(root / "dist")
    assert single > 0.3  # the comparison means something only if the student learnt
    assert abs(single - dual) <= 0.01, (single, dual)
    report = json.loads((root / "dist" / "report.json").read_text())
    # Same global batch: the same number of optimiser steps per epoch as the one-process run.
    assert report["training"]["epochsRun"] >= 1


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _wait_for_text(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert proc.poll() is None, path.read_text()
        assert time.monotonic() < deadline, f"{text!r} not in {path} after {timeout}s"
        time.sleep(0.2)


def test_a_lost_worker_fails_rank_0_with_a_clear_error(workspace, tmp_path):
    root, config, soft = workspace
    long_run = tmp_path / "long.yaml"
    body = yaml.safe_load(config.read_text())
    body["training"].update(epochs=200, patience=200)  # still training when the worker is lost
    long_run.write_text(yaml.safe_dump(body))
    port = _free_port()
    procs = [_worker(rank, port, long_run, tmp_path / "out", tmp_path / f"rank{rank}.json", soft, tmp_path)
             for rank in range(2)]
    try:
        _wait_for_text(tmp_path / "worker-2-1.log", "epoch 1:", procs[1], timeout=120)
        for pid in [procs[1].pid, *_descendants(procs[1].pid)]:  # the whole "pod": torchrun, job-run, distill
            os.kill(pid, 9)
        code = procs[0].wait(timeout=120)
    finally:
        for proc in procs:
            if proc.poll() is None:
                for pid in [proc.pid, *_descendants(proc.pid)]:
                    os.kill(pid, 9)
    assert code != 0
    error = json.loads((tmp_path / "rank0.json").read_text())["error"]
    assert "rank 0" in error and ("lost" in error or "failed" in error), error
    assert not (tmp_path / "out").exists()


STEP_SCRIPT = '''
import sys, torch
from transformers import AutoTokenizer
from logdistill.model.engine.distributed import from_env
from logdistill.model.engine.train import FitOptions, fit
sys.path.insert(0, sys.argv[3])
from helpers.tiny_models import tiny_bert
torch.set_num_threads(1)
texts = [line.strip() for line in open(sys.argv[1] + "/texts.txt")]
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1] + "/tokenizer")
generator = torch.Generator().manual_seed(0)
targets = torch.randint(0, 3, (len(texts),), generator=generator).tolist()
probs = torch.softmax(torch.randn(len(texts), 3, generator=generator), -1)
model = tiny_bert(len(tokenizer), ["-", "A", "B"], seed=1)
parallel = from_env(stream=None)
initial = {k: v.clone() for k, v in model.state_dict().items()}
options = FitOptions(epochs=2, batch_size=len(texts), learning_rate=1e-3, warmup_ratio=0.0, weight_decay=0.0,
                     temperature=2.0, alpha=0.5, patience=2, seed=3, max_length=32)
fit(model, tokenizer, templates=texts, targets=targets, teacher_probs=probs, dev_templates=[], dev_truth=[],
    labels=["-", "A", "B"], options=options, parallel=parallel)
if parallel is None or parallel.is_main:
    torch.save({"initial": initial, "final": model.state_dict()}, sys.argv[2])
if parallel is not None:
    parallel.close()
'''


def test_a_ddp_step_equals_the_one_process_step_on_the_same_global_batch(tmp_path):
    """Two AdamW steps of `fit`: 2 ranks x 20 rows under DDP vs 40 rows in one process."""
    import torch

    from helpers.tiny_models import build_tokenizer
    from logdistill.model.runtime.templates import mask

    texts = [mask(line.split(" ", 6)[6]) for line in tiny_log_lines()[:40]]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    # Saved once: WordPiece training is not deterministic across processes, a loaded tokenizer is.
    build_tokenizer(texts).save_pretrained(tmp_path / "tokenizer")
    script = tmp_path / "step.py"
    script.write_text(STEP_SCRIPT)
    tests = str(Path(__file__).resolve().parent)
    subprocess.run([sys.executable, str(script), str(tmp_path), str(tmp_path / "one.pt"), tests], cwd=tmp_path,
                   env=_env(), check=True, timeout=120)
    subprocess.run([str(BIN / "torchrun"), "--nnodes=1", "--nproc-per-node=2", "--rdzv-backend=static",
                    "--master-addr=127.0.0.1", f"--master-port={_free_port()}", "--max-restarts=0", str(script),
                    str(tmp_path), str(tmp_path / "two.pt"), tests], cwd=tmp_path, env=_env(), check=True,
                   timeout=120, capture_output=True)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert set(one["final"]) == set(two["final"])
    trained = max((one["final"][k] - one["initial"][k]).abs().max().item() for k in one["final"])
    apart = max((one["final"][k].float() - two["final"][k].float()).abs().max().item() for k in one["final"])
    assert trained > 1e-3  # the steps moved the weights (lr 1e-3, two AdamW steps)
    assert apart < 1e-5, (apart, trained)
