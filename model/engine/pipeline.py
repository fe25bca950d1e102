"""The one distillation pipeline: a teacher source and a spec in, a published student artifact out.

load -> split (+ ``--extra-data``) -> transfer set (+ paraphrases) -> soft targets -> student ->
fit -> stage -> evaluate (teacher and student on the same test split, int8 ONNX) -> gate ->
report -> publish -> summary. Whatever the teacher is (a checkpoint, an ensemble, precomputed
shards, an LLM endpoint: :mod:`logdistill.model.engine.teachers`), these steps are the same; the source
answers for labels, soft targets and its scorer.

Recipe (plain KD into a tiny student, see ``../shared/README.md``):

1. The split is the one ``logdistill teacher train`` made from the same data spec and seed,
   so test templates are unseen by both models.
2. **Transfer set**: the distinct labelled train templates plus augmented variants
   (:mod:`logdistill.model.engine.augment`) that carry the teacher's soft targets only: where the
   student learns how the teacher generalises beyond the training templates. Dev and test lines
   are never used.
3. **Student init** from the teacher or a pretrained encoder (:mod:`logdistill.model.engine.student`).
4. Loss ``alpha*T^2*KL + (1-alpha)*CE`` with warm-up + linear decay, early stopping on dev
   macro-F1 (:mod:`logdistill.model.engine.train`). ``alpha == 0`` trains on hard labels only (no soft
   targets, no augmented lines): the no-distillation control.
5. Both models scored through the int8 ONNX path; the gate (:func:`logdistill.contracts.decide_gate`)
   is recorded in ``report.json`` and the :class:`logdistill.contracts.Summary`.
"""

from __future__ import annotations

import os
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from transformers import AutoConfig, AutoTokenizer

from logdistill.contracts import Summary, WorkerSummary, decide_gate
from logdistill.model.runtime.artifact import Manifest, staged, verify_artifact
from logdistill.model.engine.augment import AUGMENT_PER_TEMPLATE, evaluation_templates
from logdistill.model.runtime.data import load_records
from logdistill.model.engine.distributed import Parallel
from logdistill.model.engine.evaluate import evaluate_scorer, measure_latency, paired_latency
from logdistill.model.engine.export import directory_size, parameter_count, rewrite_report, save_artifact
from logdistill.model.engine.extra_data import add_extra_data
from logdistill.model.engine.intermediate import IntermediateError
from logdistill.model.engine.intermediate import from_spec as intermediate_from_spec
from logdistill.model.engine.losses import UNLABELLED
from logdistill.model.runtime.inference import OnnxClassifier
from logdistill.model.runtime.metrics import supported_macro_f1
from logdistill.model.runtime.splits import make_split
from logdistill.model.engine.student import build_student
from logdistill.model.engine.teachers import DistillError, LabelRequest, TeacherSource, torch_reference
from logdistill.model.runtime.templates import model_input
from logdistill.model.engine.train import FitOptions, Progress, fit, set_threads
from logdistill.model.engine.transfer import transfer_set
from logdistill.spec import DistillSpec

__all__ = ["BALANCE_CLASSES", "PipelineOptions", "TrainedStudent", "train_student", "run_pipeline", "make_summary"]

BALANCE_CLASSES = 0.5
"""Class weights ``(max/count)^0.5`` on the hard-label term: BGL has ~130 normal templates and 1-3
per alert category; without them a student trained on hard labels alone predicts "normal"."""


@dataclass(frozen=True)
class PipelineOptions:
    """Engine settings that are not part of the spec."""

    augment_per_template: int = AUGMENT_PER_TEMPLATE
    balance_classes: float = BALANCE_CLASSES
    extra_data: Sequence[str | Path] = ()
    """JSONL files or folders of teacher-labelled lines added to the train part only."""
    parallel: Parallel | None = None
    """This process's rank under torchrun; only rank 0 evaluates and exports."""
    progress: Progress = field(default_factory=Progress)


def make_summary(manifest: Manifest, teacher_scores: dict[str, Any], student_scores: dict[str, Any], *,
                 parameters: int, size_bytes: int, retention: float, gate_passed: bool) -> Summary:
    """The compact run summary the operator reads from the termination message.
    A teacher without a measured latency (an LLM endpoint) leaves ``latencyMsP50`` out."""
    p50 = teacher_scores.get("latency_ms_p50")
    return Summary.model_validate({
        "version": manifest.version,
        "sha256": manifest.sha256,
        "artifact": str(manifest.path),
        "teacher": {"accuracy": round(teacher_scores["accuracy"], 4), "macroF1": round(teacher_scores["macro_f1"], 4),
                    "latencyMsP50": None if p50 is None else round(p50, 3)},
        "student": {"accuracy": round(student_scores["accuracy"], 4), "macroF1": round(student_scores["macro_f1"], 4),
                    "latencyMsP50": round(student_scores["latency_ms_p50"], 3),
                    "latencyMsP99": round(student_scores["latency_ms_p99"], 3),
                    "parameters": parameters, "sizeBytes": size_bytes},
        "retention": round(retention, 4),
        "gatePassed": gate_passed,
    })


def _student(spec: DistillSpec, source: TeacherSource, labels: list[str]) -> tuple[Any, Any, Any]:
    """``(build, tokenizer, auxiliary loss)``: the student, from the teacher's model or, without a local
    teacher, from ``student.pretrained`` (its tokenizer; its weights with ``init: pretrained``)."""
    training, teacher = spec.training, source.model
    if teacher is None:
        tokenizer = AutoTokenizer.from_pretrained(spec.student.pretrained)
        vocabulary_source = types.SimpleNamespace(config=AutoConfig.from_pretrained(spec.student.pretrained))
        build = build_student(spec.student, vocabulary_source, labels=labels, seed=training.seed)
        return build, tokenizer, None
    build = build_student(spec.student, teacher.model, labels=labels, seed=training.seed)
    tokenizer = build.tokenizer or teacher.tokenizer
    if build.tokenizer is not None and training.intermediate.enabled \
            and build.tokenizer.get_vocab() != teacher.tokenizer.get_vocab():
        raise DistillError("training.intermediate: hidden states are matched token by token, so the student must"
                           f" share the teacher's tokenizer; student.pretrained {spec.student.pretrained} has its own")
    auxiliary = intermediate_from_spec(training.intermediate, spec.teacher, teacher.model, build.model)
    return build, tokenizer, auxiliary


def _check_student(spec: DistillSpec, source: TeacherSource) -> None:
    """Refuse, before any work, what a teacher without a local model cannot give the student."""
    if source.model is not None:
        return
    if spec.student.init == "teacher" or not spec.student.pretrained:
        raise DistillError("student.pretrained: with teacher.endpoint the student needs a local checkpoint for its"
                           " tokenizer (student.init: pretrained to start from it, or scratch to borrow only its"
                           " vocabulary); student.init: teacher needs a local teacher")
    try:
        intermediate_from_spec(spec.training.intermediate, spec.teacher, None, None)
    except IntermediateError as err:
        raise DistillError(str(err)) from None


@dataclass
class TrainedStudent:
    """A student fitted in memory, and how (for the report)."""

    model: Any
    tokenizer: Any
    build: Any
    transfer: Any
    paraphrased: list[str]
    result: Any
    distilled: bool


def train_student(spec: DistillSpec, source: TeacherSource, split: Any, labels: list[str],
                  options: PipelineOptions, *, base_split: Any = None, threads: int = 0) -> TrainedStudent:
    """Transfer set -> soft targets -> student -> fit, on ``split.train`` (early stopping on ``split.dev``).

    ``base_split``: the split before ``--extra-data`` (what precomputed label shards were made for).
    """
    progress, parallel, training = options.progress, options.parallel, spec.training
    # Identical inputs give identical outputs: one example per distinct (input, label).
    distil = training.alpha > 0
    # The student is fed what its teacher is fed (the teacher's info.input): the soft targets are for those inputs.
    key = model_input(source.input)
    transfer = transfer_set(split, labels, distil=distil, augment_per_template=options.augment_per_template,
                            seed=training.seed, key=key, augment_from=None if base_split is None else base_split.train)
    templates, targets = list(transfer.templates), list(transfer.targets)
    paraphrased: list[str] = []
    if training.augmentation.paraphrases and distil:
        paraphrased = source.paraphrases(transfer.train_templates, training.augmentation.paraphrases,
                                         set(templates) | evaluation_templates(split, key), progress)
        templates += paraphrased
        targets += [UNLABELLED] * len(paraphrased)
    if transfer.unknown_labels:
        progress.say(f"labels unknown to the teacher are used as unlabelled lines: {', '.join(transfer.unknown_labels)}")
    progress.say(f"transfer set: {len(transfer.train_templates)} distinct train templates + {len(transfer.augmented)}"
                 f" augmented + {len(paraphrased)} paraphrased; {len(labels)} labels; {threads} thread(s)")

    teacher_probs = None
    if distil:
        progress.update(stage="labelling", force=True)
        base = None if base_split is None else transfer_set(
            base_split, labels, distil=True, augment_per_template=options.augment_per_template,
            seed=training.seed, key=key).templates
        teacher_probs = source.soft_targets(LabelRequest(templates, training.temperature, base), progress)

    build, tokenizer, auxiliary = _student(spec, source, labels)
    student = build.model
    progress.say(f"student: {parameter_count(student):,} parameters, init {build.init} ({build.detail})")
    if auxiliary is not None:
        progress.say(f"intermediate-layer loss: student layers 1..{len(auxiliary.mapping)} -> teacher layers"
                     f" {auxiliary.mapping}, weight {auxiliary.weight}, attention {auxiliary.attention}")
    dev = [r for r in split.dev if r.label is not None]
    fit_options = FitOptions.from_spec(training, spec.student.max_length, balance_classes=options.balance_classes)
    result = fit(
        student, tokenizer, templates=templates, targets=targets, teacher_probs=teacher_probs,
        dev_templates=[key(r.text) for r in dev], dev_truth=[r.label for r in dev], labels=labels,
        options=fit_options, progress=progress, parallel=parallel, auxiliary=auxiliary,
    )
    return TrainedStudent(student, tokenizer, build, transfer, paraphrased, result, distil)


def run_pipeline(spec: DistillSpec, source: TeacherSource, out_dir: str | Path,
                 options: PipelineOptions | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Distil as ``spec`` says from ``source``; write the artifact to ``out_dir``.

    Returns ``(summary, report)``: the summary as its wire dict (:class:`logdistill.contracts.Summary`);
    a non-zero rank of a distributed run returns ``({"rank": r}, {})`` after training.
    """
    options = options or PipelineOptions()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    progress, parallel, training = options.progress, options.parallel, spec.training
    started = time.monotonic()
    threads = set_threads(training.threads)
    progress.update(stage="loading", force=True)
    _check_student(spec, source)
    read = load_records(spec.data)
    # Capped per distinct input of the teacher, as its transfer set is built (and as the teacher was trained).
    split = make_split(read.records, spec.data, training.seed, key=model_input(source.input))
    base_split = None  # the split label shards were made from, when --extra-data changes it
    if options.extra_data:  # teacher-labelled lines (serve-teacher --store): train part only
        base_split = split
        split, extra = add_extra_data(split, options.extra_data)
        progress.say(extra.describe())
    if not split.train:
        raise DistillError("data: the train split is empty")
    label_set = source.label_set(split)
    labels, normal = label_set.labels, label_set.normal
    if source.model is None:
        progress.say(f"teacher {source.name}; labels from the data: {', '.join(labels)}")

    trained = train_student(spec, source, split, labels, options, base_split=base_split, threads=threads)
    student, tokenizer, build, transfer, paraphrased, result, distil = (
        trained.model, trained.tokenizer, trained.build, trained.transfer, trained.paraphrased, trained.result,
        trained.distilled)
    if parallel is not None and not parallel.is_main:
        return WorkerSummary(rank=parallel.rank).to_dict(), {}

    progress.update(stage="exporting", force=True)
    student_shape = {"layers": student.config.num_hidden_layers, "hidden": student.config.hidden_size,
                     "heads": student.config.num_attention_heads, "intermediate": student.config.intermediate_size}
    info = {"maxLength": spec.student.max_length, "teacher": source.name, "student": student_shape,
            "input": source.input}
    if spec.student.alert_below is not None:  # what the edge, the evaluation and the gate decide with
        info["alertBelow"] = spec.student.alert_below
    with staged(out_dir) as staging:
        save_artifact(student, tokenizer, labels, normal, staging, kind="student",
                      spec=spec.model_dump(by_alias=True, mode="json"), report={}, info=info)
        progress.update(stage="evaluating", force=True)
        test = [r for r in split.test if r.label is not None]
        if not test:
            raise DistillError("data: the test split has no labelled lines to evaluate on")
        texts, truth = [r.text for r in test], [r.label for r in test]
        student_scorer = OnnxClassifier(staging, threads=1)
        student_scores = evaluate_scorer(student_scorer, texts, truth, latency_samples=0)
        with tempfile.TemporaryDirectory(prefix="logdistill-teacher-") as scratch:
            scoring = source.scoring(Path(scratch))
            teacher_scores = evaluate_scorer(scoring.scorer, texts, truth, latency_samples=0,
                                             throughput=scoring.timed)
            if scoring.timed:  # alternating blocks: load from other processes skews both alike
                latency = paired_latency({"teacher": scoring.scorer, "student": student_scorer}, texts, samples=300)
                teacher_scores.update(latency["teacher"])
                student_scores.update(latency["student"])
            else:
                student_scores.update(measure_latency(student_scorer, texts, samples=300))
            teacher_details = scoring.details(texts, truth)
        student_torch = torch_reference(student, tokenizer, labels, normal, spec.student.max_length, texts, truth,
                                        source.input, spec.student.alert_below)
        student_params, student_size = parameter_count(student), directory_size(staging)
        gate = decide_gate(student_scores["macro_f1"], teacher_scores["macro_f1"], spec.gate.min_macro_f1,
                           spec.gate.min_retention)
        teacher_p50 = teacher_scores.get("latency_ms_p50")
        report = {
            "kind": "student",
            "labels": labels,
            "split": split.describe(),
            "malformed": len(read.malformed),
            "teacher": {"source": source.name, scoring.key: teacher_scores,
                        "macroF1Supported": supported_macro_f1(teacher_scores), **teacher_details},
            "student": {"onnxInt8": student_scores, "torchFp32": student_torch,
                        "macroF1Supported": supported_macro_f1(student_scores),
                        "parameters": student_params, "sizeBytes": student_size, **student_shape},
            "retention": gate.retention,
            "speedupP50": None if teacher_p50 is None
            else teacher_p50 / max(student_scores["latency_ms_p50"], 1e-9),
            "gate": gate.report(),
            "training": {"init": build.init, "initDetail": build.detail, "distilled": distil,
                         "transferSet": {"trainTemplates": len(transfer.train_templates),
                                         "augmentedLines": len(transfer.augmented),
                                         "paraphrasedLines": len(paraphrased),
                                         "unknownLabels": transfer.unknown_labels},
                         "balanceClasses": options.balance_classes, "bestEpoch": result.best_epoch,
                         "bestDevMacroF1": result.best_dev_macro_f1, "epochsRun": result.epochs_run,
                         "history": result.history, "seconds": result.seconds, "threads": threads},
            "latencyNote": "single line, batch 1, ONNX Runtime int8, 1 thread, mask+tokenise+model",
            "wallSeconds": round(time.monotonic() - started, 1),
        }
        short = {
            "teacher": {"accuracy": round(teacher_scores["accuracy"], 4), "macroF1": round(gate.teacher_macro_f1, 4)},
            "student": {"accuracy": round(student_scores["accuracy"], 4), "macroF1": round(gate.student_macro_f1, 4)},
        }
        rewrite_report(staging, report, {"summary": short})
    summary = make_summary(verify_artifact(out_dir), teacher_scores, student_scores, parameters=student_params,
                           size_bytes=student_size, retention=gate.retention, gate_passed=gate.passed)
    progress.update(stage="done", devMacroF1=result.best_dev_macro_f1, force=True)
    return summary.to_dict(), report
