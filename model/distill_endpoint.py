"""Distillation from an LLM teacher (``teacher.endpoint``), called by :func:`logdistill.model.distill.run_distill`.

Same transfer set, loss, training loop, export and artifact as a checkpoint teacher; what differs:

* **Labels** come from the training data (:func:`logdistill.model.teacher.model_labels`): an
  LLM has no label head.
* **Soft targets** ``[N, C]`` from :class:`logdistill.model.llm_teacher.LlmTeacher`.
* **Tokenizer / student init**: there is no local teacher to copy, so ``student.pretrained``
  names the checkpoint whose tokenizer the student reads (``init: pretrained`` also starts
  from its weights; ``init: scratch`` only borrows its vocabulary). ``init: teacher`` and
  ``training.intermediate`` are refused with the field named.
* **Paraphrases** (``training.augmentation.paraphrases: N``): the LLM rewords each distinct
  train template N times; each new (masked) line is labelled by the teacher's soft targets only,
  and lines equal to any train/dev/test template are dropped, so no evaluation line leaks.
* **Evaluation**: the teacher's test scores are the LLM's argmax answers on the test
  templates (cached); no teacher latency is measured (a remote service's latency is not the
  model's).
"""

from __future__ import annotations

import shutil
import time
import types
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from logdistill.contracts import decide_gate

__all__ = ["EndpointScorer", "paraphrase_lines", "run_endpoint_distill"]


class EndpointScorer:
    """The LLM teacher behind the :class:`logdistill.model.evaluate.Scorer` interface (T = 1)."""

    def __init__(self, teacher: Any, normal: str) -> None:
        self.teacher, self.labels, self.normal_label = teacher, list(teacher.labels), normal

    def predict_proba(self, templates: Sequence[str]) -> np.ndarray:
        return self.teacher.soft_targets(list(templates), temperature=1.0)


def paraphrase_lines(teacher: Any, train_templates: Sequence[str], per_template: int, exclude: set[str],
                     progress: Any = None) -> list[str]:
    """Masked paraphrases of each train template, minus anything in ``exclude`` (train, dev and
    test templates) and duplicates. Unlabelled: the caller labels them with the teacher."""
    from logdistill.model.templates import mask

    seen = set(exclude)
    out: list[str] = []
    for line, template in enumerate(dict.fromkeys(train_templates)):
        for text in teacher.paraphrases(template, per_template, line):
            masked = mask(text)
            if masked and masked not in seen:
                seen.add(masked)
                out.append(masked)
        if progress and (line + 1) % 50 == 0:
            progress.say(f"paraphrases: {line + 1}/{len(train_templates)} templates, {len(out)} new lines")
    return out


def run_endpoint_distill(spec: Any, out_dir: str | Path, *, progress: Any, augment_per_template: int,
                         balance_classes: float, environ: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``run_distill`` for ``teacher.endpoint``; returns ``(summary, report)`` (see the module doc).
    A failing endpoint becomes a :class:`~logdistill.model.distill.DistillError` naming ``teacher.endpoint``."""
    from logdistill.model.distill import DistillError
    from logdistill.model.llm_teacher import LlmTeacherError

    try:
        return _run(spec, out_dir, progress=progress, augment_per_template=augment_per_template,
                    balance_classes=balance_classes, environ=environ)
    except LlmTeacherError as err:
        raise DistillError(f"teacher.endpoint: {err}") from None


def _run(spec: Any, out_dir: str | Path, *, progress: Any, augment_per_template: int,
         balance_classes: float, environ: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    from transformers import AutoConfig, AutoTokenizer

    from logdistill.model.artifact import verify_artifact
    from logdistill.model.data import load_records
    from logdistill.model.distill import DistillError, make_summary
    from logdistill.model.evaluate import evaluate_scorer, measure_latency
    from logdistill.model.export import directory_size, parameter_count, publish, rewrite_report, save_artifact
    from logdistill.model.intermediate import IntermediateError, from_spec as intermediate_from_spec
    from logdistill.model.label import transfer_set
    from logdistill.model.llm_teacher import LlmTeacher
    from logdistill.model.losses import UNLABELLED
    from logdistill.model.runtime import OnnxClassifier
    from logdistill.model.splits import make_split
    from logdistill.model.student import build_student
    from logdistill.model.teacher import model_labels
    from logdistill.model.templates import mask
    from logdistill.model.train import FitOptions, fit, set_threads

    started = time.monotonic()
    training, endpoint = spec.training, spec.teacher.endpoint
    if spec.student.init == "teacher" or not spec.student.pretrained:
        raise DistillError("student.pretrained: with teacher.endpoint the student needs a local checkpoint for its"
                           " tokenizer (student.init: pretrained to start from it, or scratch to borrow only its"
                           " vocabulary); student.init: teacher needs a local teacher")
    try:
        intermediate_from_spec(training.intermediate, spec.teacher, None, None)
    except IntermediateError as err:
        raise DistillError(str(err)) from None
    threads = set_threads(training.threads)
    progress.update(stage="loading", force=True)
    read = load_records(spec.data)
    split = make_split(read.records, spec.data, training.seed)
    if not split.train:
        raise DistillError("data: the train split is empty")
    labels = model_labels([r.label for r in split.train])
    from logdistill.model.data import NORMAL_LABEL

    normal = NORMAL_LABEL if NORMAL_LABEL in labels else labels[0]
    llm = LlmTeacher(endpoint, labels, environ=environ)
    progress.say(f"endpoint teacher {endpoint.url} model {endpoint.model}; labels from the data: {', '.join(labels)}")

    distil = training.alpha > 0
    transfer = transfer_set(split, labels, distil=distil, augment_per_template=augment_per_template,
                            seed=training.seed)
    templates, targets = list(transfer.templates), list(transfer.targets)
    paraphrased: list[str] = []
    if training.augmentation.paraphrases and distil:
        evaluation = {mask(r.text) for r in split.dev} | {mask(r.text) for r in split.test}
        paraphrased = paraphrase_lines(llm, transfer.train_templates, training.augmentation.paraphrases,
                                       set(templates) | evaluation, progress)
        templates += paraphrased
        targets += [UNLABELLED] * len(paraphrased)
    progress.say(f"transfer set: {len(transfer.train_templates)} train templates + {len(transfer.augmented)} augmented"
                 f" + {len(paraphrased)} paraphrased; {threads} thread(s)")

    teacher_probs = None
    if distil:
        progress.update(stage="labelling", force=True)
        distinct = len(set(templates))

        def tick(done: int, total: int) -> None:
            if done % 100 == 0 or done == total:
                progress.say(f"labelling: {done}/{total} distinct lines")

        import torch

        teacher_probs = torch.from_numpy(llm.soft_targets(templates, training.temperature, progress=tick))
        progress.say(f"labelled {distinct} distinct lines: {llm.stats.as_dict()}")

    tokenizer = AutoTokenizer.from_pretrained(spec.student.pretrained)
    vocabulary_source = types.SimpleNamespace(config=AutoConfig.from_pretrained(spec.student.pretrained))
    build = build_student(spec.student, vocabulary_source, labels=labels, seed=training.seed)
    student = build.model
    dev = [r for r in split.dev if r.label is not None]
    options = FitOptions.from_spec(training, spec.student.max_length, balance_classes=balance_classes)
    result = fit(student, tokenizer, templates=templates, targets=targets, teacher_probs=teacher_probs,
                 dev_templates=[mask(r.text) for r in dev], dev_truth=[r.label for r in dev], labels=labels,
                 options=options, progress=progress)

    progress.update(stage="exporting", force=True)
    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    teacher_name = f"{endpoint.url}#{endpoint.model}"
    shape = {"layers": student.config.num_hidden_layers, "hidden": student.config.hidden_size,
             "heads": student.config.num_attention_heads, "intermediate": student.config.intermediate_size}
    info = {"maxLength": spec.student.max_length, "teacher": teacher_name, "student": shape}
    save_artifact(student, tokenizer, labels, normal, staging, kind="student",
                  spec=spec.model_dump(by_alias=True, mode="json"), report={}, info=info)
    try:
        progress.update(stage="evaluating", force=True)
        test = [r for r in split.test if r.label is not None]
        if not test:
            raise DistillError("data: the test split has no labelled lines to evaluate on")
        texts, truth = [r.text for r in test], [r.label for r in test]
        student_scorer = OnnxClassifier(staging, threads=1)
        student_scores = evaluate_scorer(student_scorer, texts, truth, latency_samples=0)
        student_scores.update(measure_latency(student_scorer, texts, samples=300))
        teacher_scores = evaluate_scorer(EndpointScorer(llm, normal), texts, truth, latency_samples=0,
                                         throughput=False)
        t_f1, s_f1 = teacher_scores["macro_f1"], student_scores["macro_f1"]
        gate = decide_gate(s_f1, t_f1, spec.gate.min_macro_f1, spec.gate.min_retention)
        retention, gate_passed = gate.retention, gate.passed
        size = directory_size(staging)
        report = {
            "kind": "student", "labels": labels, "split": split.describe(), "malformed": len(read.malformed),
            "teacher": {"source": teacher_name, "endpoint": teacher_scores, "requests": llm.stats.as_dict()},
            "student": {"onnxInt8": student_scores, "parameters": parameter_count(student), "sizeBytes": size,
                        **shape},
            "retention": retention,
            "gate": gate.report(),
            "training": {"init": build.init, "initDetail": build.detail, "distilled": distil,
                         "transferSet": {"trainTemplates": len(transfer.train_templates),
                                         "augmentedLines": len(transfer.augmented),
                                         "paraphrasedLines": len(paraphrased), "unknownLabels": []},
                         "balanceClasses": balance_classes, "bestEpoch": result.best_epoch,
                         "bestDevMacroF1": result.best_dev_macro_f1, "epochsRun": result.epochs_run,
                         "history": result.history, "seconds": result.seconds, "threads": threads},
            "wallSeconds": round(time.monotonic() - started, 1),
        }
        short = {"teacher": {"accuracy": round(teacher_scores["accuracy"], 4), "macroF1": round(t_f1, 4)},
                 "student": {"accuracy": round(student_scores["accuracy"], 4), "macroF1": round(s_f1, 4)}}
        rewrite_report(staging, report, {"summary": short})
        publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary = make_summary(verify_artifact(out_dir), teacher_scores, student_scores,
                           parameters=parameter_count(student), size_bytes=size, retention=retention,
                           gate_passed=gate_passed)
    progress.update(stage="done", devMacroF1=result.best_dev_macro_f1, force=True)
    return summary.to_dict(), report
