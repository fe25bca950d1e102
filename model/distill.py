"""``logdistill distill --config FILE --out DIR``: teacher -> student knowledge distillation.

Recipe (plain KD into a tiny random student collapsed on BGL, see ``../shared/README.md``):

1. The split is the one ``logdistill teacher train`` made from the same data spec and seed,
   so test templates are unseen by both models.
2. **Transfer set**: the labelled train lines plus *augmented* variants of each distinct
   train template (word dropout, windows, token swaps, token replacement, splices of two templates; see
   :func:`augment_templates`). Augmented lines have no label: they carry the teacher's soft
   targets only, which is where the student learns how the teacher generalises beyond the
   ~150 distinct training templates. Dev and test lines are never used.
3. **Student init** from the teacher (:mod:`logdistill.model.student`).
4. Loss ``alpha*T^2*KL + (1-alpha)*CE`` with warm-up + linear decay, early stopping on dev
   macro-F1 (:mod:`logdistill.model.train`).
5. Teacher and student scored on the same test split through the int8 ONNX path
   (:mod:`logdistill.model.evaluate`), written into ``report.json`` and a compact summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "DistillError",
    "AUGMENT_PER_TEMPLATE",
    "augment_templates",
    "run_distill",
    "summary_json",
    "add_arguments",
    "main",
]

AUGMENT_PER_TEMPLATE = 8
"""Augmented transfer lines per distinct train template (0 disables augmentation)."""
AUGMENT_LIMIT = 20000
"""Cap on augmented lines, so teacher labelling stays a small share of the run."""
BALANCE_CLASSES = 0.5
"""Class weights ``(max/count)^0.5`` on the hard-label term: BGL has ~130 normal templates and 1-3
per alert category; without them a student trained on hard labels alone predicts "normal"."""
SUMMARY_LIMIT = 4096
"""The summary file is a Kubernetes termination message: it must stay below 4 KiB."""
_FILLERS = ("<NUM>", "<ID>", "<HEX>", "<PATH>", "<IP>")


class DistillError(Exception):
    """A distillation that cannot run as configured; the message names the spec field or file."""


def augment_templates(templates: Sequence[str], per_template: int, seed: int, limit: int = AUGMENT_LIMIT) -> list[str]:
    """Unlabelled variants of ``templates`` for the teacher to label (deterministic for a seed).

    Operations, one per variant: drop ~20% of tokens; keep a window of at least half the
    tokens; swap two tokens; replace ~15% of tokens by a mask token or a word seen elsewhere
    in the templates; splice the first part of one template onto the last part of another.
    Originals and duplicates are left out.
    """
    distinct = list(dict.fromkeys(templates))
    if per_template <= 0 or not distinct:
        return []
    rng = random.Random(seed)
    vocabulary = sorted({word for t in distinct for word in t.split()})
    seen = set(distinct)
    out: list[str] = []
    for template in distinct:
        words = template.split()
        made = 0
        for _ in range(per_template * 3):  # a few extra tries: short templates give duplicates
            if made >= per_template or len(out) >= limit:
                break
            text = " ".join(_variant(words, distinct, vocabulary, rng))
            if text and text not in seen:
                seen.add(text)
                out.append(text)
                made += 1
    return out


def _variant(words: list[str], distinct: list[str], vocabulary: list[str], rng: random.Random) -> list[str]:
    op = rng.randrange(5)
    if op == 0 and len(words) > 2:
        return [w for w in words if rng.random() > 0.2] or [rng.choice(words)]
    if op == 1 and len(words) > 3:
        size = rng.randint(max(2, len(words) // 2), len(words) - 1)
        start = rng.randint(0, len(words) - size)
        return words[start : start + size]
    if op == 4 and len(words) > 1:
        first, second = rng.sample(range(len(words)), 2)
        swapped = list(words)
        swapped[first], swapped[second] = swapped[second], swapped[first]
        return swapped
    if op == 2 or len(distinct) < 2:
        return [
            (rng.choice(_FILLERS) if rng.random() < 0.5 else rng.choice(vocabulary)) if rng.random() < 0.15 else w
            for w in words
        ]
    other = rng.choice(distinct).split()
    cut_a = rng.randint(1, max(1, len(words) - 1))
    cut_b = rng.randint(0, max(0, len(other) - 1))
    return words[:cut_a] + other[cut_b:]


def _load_teachers(teacher_spec: Any) -> list[tuple[Any, float]]:
    from logdistill.model.artifact import ArtifactError
    from logdistill.model.export import load_torch_model

    if getattr(teacher_spec, "train", None) is not None:
        raise DistillError(
            "teacher.train: the operator trains that teacher into a checkpoint first (logdistill teacher ensure);"
            " outside the operator, train one (logdistill teacher train --out DIR) and set teacher.checkpoint"
        )
    if teacher_spec.endpoint is not None:
        raise DistillError(
            "teacher.endpoint: an LLM endpoint teacher has no local model to load here; run_distill trains from it"
            " (logdistill.model.distill_endpoint), sharded labelling needs teacher.checkpoint or teacher.ensemble"
        )
    members = (
        [(teacher_spec.checkpoint, 1.0)]
        if teacher_spec.checkpoint
        else [(m.checkpoint, m.weight) for m in teacher_spec.ensemble]
    )
    loaded = []
    for i, (path, weight) in enumerate(members):
        field = "teacher.checkpoint" if teacher_spec.checkpoint else f"teacher.ensemble[{i}].checkpoint"
        try:
            loaded.append((load_torch_model(path), weight))
        except ArtifactError as err:
            raise DistillError(f"{field}: {err}") from None
    first = loaded[0][0]
    for teacher, _ in loaded[1:]:
        if sorted(teacher.labels) != sorted(first.labels):
            raise DistillError(
                f"teacher.ensemble: {teacher.path} has labels {teacher.labels}, {first.path} has {first.labels}"
            )
    return loaded


def _teacher_probs(teachers: list[tuple[Any, float]], templates: Sequence[str], labels: list[str],
                   temperature: float) -> Any:
    """``[N, C]`` soft targets at T (columns in ``labels`` order), mixed by ensemble weight."""
    from logdistill.model.losses import ensemble_soft_targets
    from logdistill.model.train import predict_logits

    logits, weights = [], []
    for teacher, weight in teachers:
        raw = predict_logits(teacher.model, teacher.tokenizer, templates, teacher.max_length)
        logits.append(raw[:, [teacher.labels.index(label) for label in labels]])
        weights.append(weight)
    return ensemble_soft_targets(logits, weights, temperature)


def _teacher_scorer(teachers: list[tuple[Any, float]], scratch: Path) -> tuple[Any, int, int]:
    """ONNX int8 scorer(s) for the teacher(s), exporting a plain checkpoint on the fly.

    Returns ``(scorer, parameters, size_bytes)``.
    """
    from logdistill.model.artifact import ONNX_MODEL
    from logdistill.model.evaluate import EnsembleScorer
    from logdistill.model.export import directory_size, parameter_count, save_artifact
    from logdistill.model.runtime import OnnxClassifier

    members, parameters, size = [], 0, 0
    for i, (teacher, weight) in enumerate(teachers):
        directory = teacher.path
        if teacher.manifest is None or ONNX_MODEL not in teacher.manifest.files:
            directory = scratch / f"teacher-{i}"
            info = {"maxLength": teacher.max_length, "teacher": str(teacher.path)}
            save_artifact(teacher.model, teacher.tokenizer, teacher.labels, teacher.normal, directory,
                          kind="teacher", spec={}, report={}, info=info)
        members.append((OnnxClassifier(directory, threads=1), weight))
        parameters += parameter_count(teacher.model)
        size += directory_size(directory)
    scorer = members[0][0] if len(members) == 1 else EnsembleScorer(members)
    return scorer, parameters, size


def _member_scores(teachers: list[tuple[Any, float]], scorer: Any, texts: Sequence[str],
                   truth: Sequence[str]) -> list[dict[str, Any]] | None:
    """Each ensemble member alone on the test split (None for a single teacher): is the mix better?"""
    from logdistill.model.evaluate import quality

    if len(teachers) < 2:
        return None
    rows = []
    for (teacher, weight), (member, _) in zip(teachers, scorer.members):
        scores = quality(member, texts, truth)
        rows.append({"source": str(teacher.path), "weight": weight, "accuracy": scores["accuracy"],
                     "macro_f1": scores["macro_f1"], "alert_f1": scores["alert"]["f1"]})
    return rows


def _torch_reference(model: Any, tokenizer: Any, labels: list[str], normal: str, max_length: int,
                     texts: Sequence[str], truth: Sequence[str]) -> dict[str, Any]:
    """fp32 torch quality and single-line latency (1 thread), for comparison with the int8 ONNX path."""
    import torch

    from logdistill.model.evaluate import TorchScorer, measure_latency, quality

    scorer = TorchScorer(model, tokenizer, labels, normal, max_length)
    scores = quality(scorer, texts, truth)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        latency = measure_latency(scorer, texts, samples=50, warmup=5)
    finally:
        torch.set_num_threads(threads)
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "alert_f1": scores["alert"]["f1"],
            "latency_ms_p50": latency["latency_ms_p50"], "latency_ms_p99": latency["latency_ms_p99"]}


def supported_macro_f1(scores: dict[str, Any]) -> float:
    """Macro-F1 over classes with test support only (spurious predictions of absent classes not counted)."""
    values = [row["f1"] for row in scores["per_class"].values() if row["support"] > 0]
    return float(sum(values) / len(values)) if values else 0.0


def run_distill(spec: Any, out_dir: str | Path, *, progress: Any = None,
                augment_per_template: int = AUGMENT_PER_TEMPLATE,
                balance_classes: float = BALANCE_CLASSES,
                extra_data: Sequence[str | Path] = (), soft_targets: str | Path | None = None,
                parallel: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Distil as ``spec`` (a :class:`logdistill.spec.DistillSpec`) says; write the artifact to ``out_dir``.

    Returns ``(summary, report)``. With ``training.alpha == 0`` this trains the same student on
    hard labels only (no teacher soft targets, no augmented lines): the no-distillation control.
    ``soft_targets``: folder of ``logdistill label`` shards used instead of running the teacher;
    ``parallel``: this process's rank under torchrun (:mod:`logdistill.model.distributed`); only
    rank 0 evaluates and exports, the others return ``({"rank": r}, {})`` after training.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from logdistill.model.artifact import verify_artifact
    from logdistill.model.data import load_records
    from logdistill.model.evaluate import evaluate_scorer, paired_latency
    from logdistill.model.label import precomputed_soft_targets, transfer_set
    from logdistill.model.export import directory_size, parameter_count, publish, rewrite_report, save_artifact
    from logdistill.model.runtime import OnnxClassifier
    from logdistill.model.splits import make_split
    from logdistill.model.student import build_student
    from logdistill.model.templates import mask
    from logdistill.model.train import FitOptions, Progress, fit, set_threads

    progress = progress or Progress()
    if spec.teacher.endpoint is not None:  # an LLM teacher: labels from the data, soft targets over HTTP
        if soft_targets is not None or parallel is not None or extra_data:
            raise DistillError("teacher.endpoint: --soft-targets, --extra-data and torchrun need a local teacher")
        from logdistill.model.distill_endpoint import run_endpoint_distill

        return run_endpoint_distill(spec, out_dir, progress=progress, augment_per_template=augment_per_template,
                                    balance_classes=balance_classes)
    started = time.monotonic()
    training = spec.training
    threads = set_threads(training.threads)
    progress.update(stage="loading", force=True)
    teachers = _load_teachers(spec.teacher)
    first = teachers[0][0]
    labels, normal = list(first.labels), first.normal
    read = load_records(spec.data)
    split = make_split(read.records, spec.data, training.seed)
    base_split = None  # the split the label shards were made from, when --extra-data changes it
    if extra_data:  # teacher-labelled lines (serve-teacher --store): train part only, no dev/test template
        from logdistill.model.extra_data import add_extra_data

        base_split = split
        split, extra = add_extra_data(split, extra_data)
        progress.say(extra.describe())
    if not split.train:
        raise DistillError("data: the train split is empty")

    # Identical masked templates are identical inputs: one example per distinct (template, label).
    distil = training.alpha > 0
    transfer = transfer_set(split, labels, distil=distil, augment_per_template=augment_per_template,
                            seed=training.seed)
    train_templates, augmented, unknown = transfer.train_templates, transfer.augmented, transfer.unknown_labels
    templates, targets = transfer.templates, transfer.targets
    if unknown:
        progress.say(f"labels unknown to the teacher are used as unlabelled lines: {', '.join(unknown)}")
    progress.say(f"transfer set: {len(train_templates)} distinct train templates + {len(augmented)} augmented;"
                 f" {len(labels)} labels; {threads} thread(s)")

    teacher_probs = None
    if distil:
        progress.update(stage="labelling", force=True)
        if soft_targets is not None:
            teacher_probs = precomputed_soft_targets(
                soft_targets, base_split, transfer, labels, temperature=training.temperature,
                augment_per_template=augment_per_template, seed=training.seed, teachers=teachers, progress=progress)
        else:
            teacher_probs = _teacher_probs(teachers, templates, labels, training.temperature)

    build = build_student(spec.student, first.model, labels=labels, seed=training.seed)
    student = build.model
    tokenizer = build.tokenizer or first.tokenizer
    if build.tokenizer is not None and training.intermediate.enabled \
            and build.tokenizer.get_vocab() != first.tokenizer.get_vocab():
        raise DistillError("training.intermediate: hidden states are matched token by token, so the student must"
                           f" share the teacher's tokenizer; student.pretrained {spec.student.pretrained} has its own")
    progress.say(f"student: {parameter_count(student):,} parameters, init {build.init} ({build.detail})")
    from logdistill.model.intermediate import from_spec as intermediate_from_spec

    auxiliary = intermediate_from_spec(training.intermediate, spec.teacher, first.model, student)
    if auxiliary is not None:
        progress.say(f"intermediate-layer loss: student layers 1..{len(auxiliary.mapping)} -> teacher layers"
                     f" {auxiliary.mapping}, weight {auxiliary.weight}, attention {auxiliary.attention}")
    dev = [r for r in split.dev if r.label is not None]
    options = FitOptions.from_spec(training, spec.student.max_length, balance_classes=balance_classes)
    result = fit(
        student, tokenizer, templates=templates, targets=targets, teacher_probs=teacher_probs,
        dev_templates=[mask(r.text) for r in dev], dev_truth=[r.label for r in dev], labels=labels,
        options=options, progress=progress, parallel=parallel, auxiliary=auxiliary,
    )
    if parallel is not None and not parallel.is_main:
        return {"rank": parallel.rank}, {}

    progress.update(stage="exporting", force=True)
    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    spec_dict = spec.model_dump(by_alias=True, mode="json")
    teacher_name = ",".join(str(t.path) for t, _ in teachers)
    student_shape = {"layers": student.config.num_hidden_layers, "hidden": student.config.hidden_size,
                     "heads": student.config.num_attention_heads, "intermediate": student.config.intermediate_size}
    info = {"maxLength": spec.student.max_length, "teacher": teacher_name, "student": student_shape}
    save_artifact(student, tokenizer, labels, normal, staging, kind="student", spec=spec_dict, report={},
                  info=info)
    try:
        progress.update(stage="evaluating", force=True)
        test = [r for r in split.test if r.label is not None]
        texts, truth = [r.text for r in test], [r.label for r in test]
        if not test:
            raise DistillError("data: the test split has no labelled lines to evaluate on")
        student_scorer = OnnxClassifier(staging, threads=1)
        student_scores = evaluate_scorer(student_scorer, texts, truth, latency_samples=0)
        with tempfile.TemporaryDirectory(prefix="logdistill-teacher-") as scratch:
            teacher_scorer, teacher_params, teacher_size = _teacher_scorer(teachers, Path(scratch))
            teacher_scores = evaluate_scorer(teacher_scorer, texts, truth, latency_samples=0)
            members = _member_scores(teachers, teacher_scorer, texts, truth)
            # Alternating blocks: load from other processes skews both alike (the speed-up is a ratio).
            latency = paired_latency({"teacher": teacher_scorer, "student": student_scorer}, texts, samples=300)
        teacher_scores.update(latency["teacher"])
        student_scores.update(latency["student"])
        teacher_torch = _torch_reference(first.model, first.tokenizer, labels, normal, first.max_length, texts, truth) \
            if len(teachers) == 1 else None
        student_torch = _torch_reference(student, tokenizer, labels, normal, spec.student.max_length, texts,
                                         truth)
        student_params, student_size = parameter_count(student), directory_size(staging)
        t_f1, s_f1 = teacher_scores["macro_f1"], student_scores["macro_f1"]
        retention = s_f1 / t_f1 if t_f1 > 0 else 0.0
        speedup = teacher_scores["latency_ms_p50"] / max(student_scores["latency_ms_p50"], 1e-9)
        gate_passed = s_f1 >= spec.gate.min_macro_f1 and retention >= spec.gate.min_retention
        report = {
            "kind": "student",
            "labels": labels,
            "split": split.describe(),
            "malformed": len(read.malformed),
            "teacher": {"source": teacher_name, "onnxInt8": teacher_scores, "torchFp32": teacher_torch,
                        "members": members,
                        "macroF1Supported": supported_macro_f1(teacher_scores),
                        "parameters": teacher_params, "sizeBytes": teacher_size},
            "student": {"onnxInt8": student_scores, "torchFp32": student_torch,
                        "macroF1Supported": supported_macro_f1(student_scores),
                        "parameters": student_params, "sizeBytes": student_size, **student_shape},
            "retention": retention,
            "speedupP50": speedup,
            "gate": {"minMacroF1": spec.gate.min_macro_f1, "minRetention": spec.gate.min_retention,
                     "passed": gate_passed},
            "training": {"init": build.init, "initDetail": build.detail, "distilled": distil,
                         "transferSet": {"trainTemplates": len(train_templates), "augmentedLines": len(augmented),
                                         "unknownLabels": unknown},
                         "balanceClasses": balance_classes, "bestEpoch": result.best_epoch, "bestDevMacroF1": result.best_dev_macro_f1,
                         "epochsRun": result.epochs_run, "history": result.history, "seconds": result.seconds,
                         "threads": threads},
            "latencyNote": "single line, batch 1, ONNX Runtime int8, 1 thread, mask+tokenise+model",
            "wallSeconds": round(time.monotonic() - started, 1),
        }
        short = {
            "teacher": {"accuracy": round(teacher_scores["accuracy"], 4), "macroF1": round(t_f1, 4)},
            "student": {"accuracy": round(student_scores["accuracy"], 4), "macroF1": round(s_f1, 4)},
        }
        rewrite_report(staging, report, {"summary": short})
        publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary = make_summary(verify_artifact(out_dir), teacher_scores, student_scores, parameters=student_params,
                           size_bytes=student_size, retention=retention, gate_passed=gate_passed)
    progress.update(stage="done", devMacroF1=result.best_dev_macro_f1, force=True)
    return summary, report


def make_summary(manifest: Any, teacher_scores: dict[str, Any], student_scores: dict[str, Any], *,
                 parameters: int, size_bytes: int, retention: float, gate_passed: bool) -> dict[str, Any]:
    """The compact run summary the operator reads from the termination message (see :func:`summary_json`).
    A teacher without a measured latency (an LLM endpoint) leaves ``latencyMsP50`` out."""
    teacher = {"accuracy": round(teacher_scores["accuracy"], 4), "macroF1": round(teacher_scores["macro_f1"], 4)}
    if teacher_scores.get("latency_ms_p50") is not None:
        teacher["latencyMsP50"] = round(teacher_scores["latency_ms_p50"], 3)
    return {
        "version": manifest.version,
        "sha256": manifest.sha256,
        "artifact": str(manifest.path),
        "teacher": teacher,
        "student": {"accuracy": round(student_scores["accuracy"], 4), "macroF1": round(student_scores["macro_f1"], 4),
                    "latencyMsP50": round(student_scores["latency_ms_p50"], 3),
                    "latencyMsP99": round(student_scores["latency_ms_p99"], 3),
                    "parameters": parameters, "sizeBytes": size_bytes},
        "retention": round(retention, 4),
        "gatePassed": gate_passed,
    }


def summary_json(body: dict[str, Any]) -> str:
    """Compact JSON below :data:`SUMMARY_LIMIT` bytes (an over-long error message is cut)."""
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) < SUMMARY_LIMIT:
        return text
    if "error" in body:
        message = str(body["error"])
        while len(text.encode()) >= SUMMARY_LIMIT and message:
            message = message[: max(0, len(message) - max(64, len(text.encode()) - SUMMARY_LIMIT + 16))]
            text = json.dumps({**body, "error": message + "…"}, separators=(",", ":"), sort_keys=True)
        return text
    raise ValueError(f"summary is {len(text.encode())} bytes, over the {SUMMARY_LIMIT}-byte limit")


def _write_summary(path: str | None, body: dict[str, Any]) -> None:
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(summary_json(body), encoding="utf-8")
    os.replace(tmp, target)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML file with the DistilledModel spec schema")
    parser.add_argument("--out", required=True, help="artifact directory to write")
    parser.add_argument("--progress-file", default=None, help="JSON progress file, replaced atomically")
    parser.add_argument("--summary-file", default=None,
                        help="compact JSON result (< 4 KiB; the Kubernetes termination message)")
    parser.add_argument("--extra-data", action="append", default=[], metavar="PATH",
                        help="JSONL file or directory of teacher-labelled lines ({text, label}) added to the train"
                             " part only (repeatable)")
    parser.add_argument("--soft-targets", default=None, metavar="DIR",
                        help="teacher soft targets from `logdistill label` shards, instead of running the teacher")


def print_summary(summary: dict[str, Any], stream: Any = sys.stdout) -> None:
    t, s = summary["teacher"], summary["student"]
    print(f"{'':10}{'accuracy':>10}{'macro-F1':>10}{'p50 ms':>10}", file=stream)
    for name, row in (("teacher", t), ("student", s)):  # an endpoint teacher has no latency of its own
        p50 = row.get("latencyMsP50")
        print(f"{name:10}{row['accuracy']:>10.4f}{row['macroF1']:>10.4f}"
              f"{p50 if p50 is not None else float('nan'):>10.3f}", file=stream)
    print(f"retention {summary['retention']:.3f}, gate {'passed' if summary['gatePassed'] else 'NOT passed'},"
          f" artifact {summary['artifact']} (version {summary['version']})", file=stream)


def main(args: argparse.Namespace) -> int:
    from logdistill.model.artifact import ArtifactError
    from logdistill.model.data import DataError
    from logdistill.model.train import Progress
    from logdistill.spec import SpecError, load_spec

    try:
        spec = load_spec(args.config)
    except SpecError as err:
        print(f"logdistill distill: {err}", file=sys.stderr)
        _write_summary(args.summary_file, {"error": str(err)})
        return 2
    from logdistill.model.distributed import WorkerLost, from_env
    from logdistill.model.label import ShardError

    parallel = None
    try:
        parallel = from_env()  # None unless launched by torchrun
        summary, _ = run_distill(spec, args.out, progress=Progress(args.progress_file),
                                 extra_data=args.extra_data, soft_targets=args.soft_targets, parallel=parallel)
    except (DistillError, DataError, ArtifactError, ShardError, WorkerLost, ValueError, OSError) as err:
        print(f"logdistill distill: {err}", file=sys.stderr)
        _write_summary(args.summary_file, {"error": str(err)})
        return 1
    except RuntimeError as err:  # DDP's gradient all-reduce fails this way when a peer is lost
        if parallel is None:
            raise
        message = f"distributed training failed on {parallel.describe()} (a worker was lost?): {err}"
        print(f"logdistill distill: {message}", file=sys.stderr)
        _write_summary(args.summary_file, {"error": message})
        return 1
    finally:
        if parallel is not None:
            parallel.close()
    _write_summary(args.summary_file, summary)
    if "teacher" in summary:  # rank != 0 of a distributed run has nothing to print
        print_summary(summary)
    return 0
