"""The expensive models of the quality protocol (:mod:`logdistill.model.engine.quality`), trained per fold
by the engine's own code: the teacher by :func:`logdistill.model.engine.teacher.fine_tune`, the students by
:func:`logdistill.model.engine.pipeline.train_student` from that fold's teacher (in memory, never written).

Each fold's training lines become a :func:`~logdistill.model.runtime.splits.training_split` (rare labels
folded, a template-disjoint dev part of the *training* templates for early stopping, capped per template),
as ``logdistill teacher train`` and ``logdistill distill`` do on their own split. Predictions are fp32
torch (the int8 ONNX export is left out of the loop: it is scored by ``bench distill``).

The teacher of a (fold, seed) is fitted once (:class:`SharedTeacher`) and used by the teacher row and
both student rows. It may be several (:class:`TeacherEnsemble`): fine-tunes of consecutive seeds whose mean
probabilities answer, and whose mixed soft targets the students learn (``teacher.ensemble``'s mixing).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from logdistill.model.engine.quality import Scored
from logdistill.model.runtime.data import LogRecord
from logdistill.model.runtime.splits import training_split
from logdistill.model.runtime.templates import mask, model_input

__all__ = ["SharedTeacher", "TeacherModel", "TeacherEnsemble", "StudentModel", "ArtifactTeacher", "ArtifactModel",
           "expensive_models"]


def _records(texts: Sequence[str], labels: Sequence[str]) -> list[LogRecord]:
    return [LogRecord(text, label, "fold", i + 1) for i, (text, label) in enumerate(zip(texts, labels))]


def _fingerprint(texts: Sequence[str], labels: Sequence[str], seed: int) -> str:
    digest = hashlib.sha256(str(seed).encode())
    for text, label in zip(texts, labels):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()


def _scored(probs: Any, labels: list[str], normal: str, alert_below: float | None) -> Scored:
    """``probs`` ([lines, labels]) with the label per row that :func:`~logdistill.model.runtime.inference.decide`
    picks with ``alert_below`` (the model's alert bar; None: the top label), as the edge does."""
    from logdistill.model.runtime.inference import decide

    answers = [labels[i] for i in decide(probs, labels.index(normal), alert_below).tolist()]
    return Scored(answers, list(labels), probs)


def _score(model: Any, tokenizer: Any, labels: list[str], normal: str, inputs: list[str], max_length: int,
           alert_below: float | None = None) -> Scored:
    import torch

    from logdistill.model.engine.train import predict_logits

    if not inputs:
        return Scored([], list(labels), np.zeros((0, len(labels))))
    probs = torch.softmax(predict_logits(model, tokenizer, inputs, max_length), dim=1).numpy()
    return _scored(probs, labels, normal, alert_below)


class _Scoring:
    """A :class:`~logdistill.model.engine.quality.ScoredModel`'s ``predict``: the labels of its ``score``."""

    def score(self, texts: Sequence[str]) -> Scored:
        raise NotImplementedError

    def predict(self, texts: Sequence[str]) -> list[str]:
        return self.score(texts).labels


class TeacherModel(_Scoring):
    """A teacher fine-tuned on one fold's training lines (a :class:`~logdistill.model.engine.quality.Model`)."""

    def __init__(self, base: str, options: Any, data_spec: Any, progress: Any = None) -> None:
        self.base, self.options, self.data_spec, self.progress = base, options, data_spec, progress
        self.text_input = model_input(options.input)
        self.tuned: Any = None

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "TeacherModel":
        from logdistill.model.engine.teacher import fine_tune

        split = training_split(_records(texts, labels), self.data_spec, self.options.seed, key=self.text_input)
        self.tuned = fine_tune(split, self.base, self.options, self.progress)
        return self

    def score(self, texts: Sequence[str]) -> Scored:
        t = self.tuned
        return _score(t.model, t.tokenizer, t.labels, t.normal, [self.text_input(x) for x in texts],
                      self.options.max_length)

    def loaded(self) -> Any:
        """The fitted teacher as the distillation pipeline's teacher source wants it."""
        from logdistill.model.engine.export import LoadedModel

        t = self.tuned
        return LoadedModel(t.model, t.tokenizer, t.labels, t.normal, self.options.max_length,
                           Path(f"<fold teacher, seed {self.options.seed}>"), None, self.options.input)

    def source(self) -> Any:
        """The distillation pipeline's teacher source for the students."""
        from logdistill.model.engine.teachers import CheckpointTeacher

        return CheckpointTeacher.in_memory(self.loaded())


class TeacherEnsemble(_Scoring):
    """``len(members)`` teachers fine-tuned on the same lines (consecutive seeds): the mean of their probabilities
    answers, with an alert whenever that mean leaves less than ``alert_below`` on normal (None: the top label).
    Which never-seen category one fine-tune flags depends on its seed (docs/benchmarks.md, session 11); the mean
    keeps what any of them is unsure about. Students learn the members' mixed soft targets."""

    def __init__(self, members: Sequence[TeacherModel], alert_below: float | None = None) -> None:
        if not members:
            raise ValueError("a teacher ensemble needs at least one member")
        self.members, self.alert_below = list(members), alert_below
        self.text_input = self.members[0].text_input

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "TeacherEnsemble":
        for member in self.members:
            member.fit(texts, labels)
        return self

    def score(self, texts: Sequence[str]) -> Scored:
        first = self.members[0].tuned
        if not texts:
            return Scored([], list(first.labels), np.zeros((0, len(first.labels))))
        # The members' mixture at T = 1, mixed where the students' soft targets are (teacher.ensemble's code).
        probs = self.source().probs([self.text_input(x) for x in texts], first.labels, temperature=1.0).numpy()
        return _scored(probs, list(first.labels), first.normal, self.alert_below)

    def source(self) -> Any:
        from logdistill.model.engine.teachers import CheckpointTeacher

        return CheckpointTeacher.in_memory(*(member.loaded() for member in self.members))


class SharedTeacher:
    """One fitted teacher per (training lines, seed): the teacher row and the student rows share it."""

    def __init__(self, make: Callable[[int], TeacherModel | TeacherEnsemble]) -> None:
        self.make = make
        self._key: str | None = None
        self._teacher: TeacherModel | TeacherEnsemble | None = None

    def fitted(self, texts: Sequence[str], labels: Sequence[str], seed: int) -> TeacherModel | TeacherEnsemble:
        key = _fingerprint(texts, labels, seed)
        if key != self._key or self._teacher is None:
            self._teacher = self.make(seed).fit(texts, labels)
            self._key = key
        return self._teacher


class ArtifactTeacher:
    """A teacher artifact already trained on the fold's training lines (the demo's, on its own split): what
    :meth:`SharedTeacher.fitted` gives, without training, so a student row can still be trained from it."""

    def __init__(self, directory: str | Path) -> None:
        from logdistill.model.engine.export import load_torch_model

        self._loaded = load_torch_model(directory)
        self.text_input = model_input(self._loaded.input)

    def fitted(self, texts: Sequence[str], labels: Sequence[str], seed: int) -> "ArtifactTeacher":
        return self

    def source(self) -> Any:
        from logdistill.model.engine.teachers import CheckpointTeacher

        return CheckpointTeacher.in_memory(self._loaded)


class ArtifactModel(_Scoring):
    """A published artifact (int8 ONNX, as the edge runs it) already trained on the fold's training lines:
    ``fit`` keeps it as it is. Torch-free."""

    def __init__(self, directory: str | Path, threads: int = 0) -> None:
        from logdistill.model.runtime.inference import OnnxClassifier

        self.classifier = OnnxClassifier(directory, threads=threads or (os.cpu_count() or 1))

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "ArtifactModel":
        return self

    def score(self, texts: Sequence[str]) -> Scored:
        c = self.classifier
        return _scored(c.predict_proba([c.model_input(t) for t in texts]), c.labels, c.normal_label, c.alert_below)


class _TeacherRow(_Scoring):
    def __init__(self, shared: SharedTeacher, seed: int) -> None:
        self.shared, self.seed, self.teacher = shared, seed, None

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "_TeacherRow":
        self.teacher = self.shared.fitted(texts, labels, self.seed)
        return self

    def score(self, texts: Sequence[str]) -> Scored:
        return self.teacher.score(texts)


class StudentModel(_Scoring):
    """The distillation student of ``body`` (a distill spec body, e.g. the demo's) trained from the fold's
    teacher; ``distil=False``: the same student on hard labels only (``alpha: 0``, no intermediate-layer loss)."""

    def __init__(self, shared: SharedTeacher | ArtifactTeacher, body: dict[str, Any], seed: int, *, distil: bool = True,
                 extra_data: Sequence[str | Path] = (), progress: Any = None) -> None:
        from logdistill.spec import parse_spec

        body = {**body, "teacher": {"checkpoint": "<fold teacher>"},
                "training": {**body["training"], "seed": seed,
                             # hard labels only: no soft targets and no teacher hidden states either
                             **({} if distil else {"alpha": 0.0, "intermediate": {"enabled": False}})}}
        self.spec = parse_spec(body, source="bench quality student")
        self.shared, self.seed, self.progress = shared, seed, progress
        self.extra_data = tuple(extra_data)
        """Lines added to the transfer set as ``logdistill distill --extra-data`` adds them (unlabelled ones are
        labelled by the teacher's soft targets only)."""
        self.trained: Any = None
        self.labels: list[str] = []
        self.normal = ""
        self.text_input: Callable[[str], str] = mask

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "StudentModel":
        from logdistill.model.engine.extra_data import add_extra_data
        from logdistill.model.engine.pipeline import PipelineOptions, train_student
        from logdistill.model.engine.train import Progress, set_threads

        teacher = self.shared.fitted(texts, labels, self.seed)
        source = teacher.source()
        self.text_input = teacher.text_input  # the student is fed what its teacher is fed
        split = training_split(_records(texts, labels), self.spec.data, self.seed, key=self.text_input)
        base_split = split
        split, _ = add_extra_data(split, self.extra_data)
        label_set = source.label_set(split)
        self.labels, self.normal = label_set.labels, label_set.normal
        options = PipelineOptions(progress=self.progress or Progress())
        threads = set_threads(self.spec.training.threads)
        self.trained = train_student(self.spec, source, split, self.labels, options, threads=threads,
                                     base_split=base_split if self.extra_data else None)
        return self

    def score(self, texts: Sequence[str]) -> Scored:
        student = self.spec.student
        return _score(self.trained.model, self.trained.tokenizer, self.labels, self.normal,
                      [self.text_input(t) for t in texts], student.max_length, student.alert_below)


def expensive_models(body: dict[str, Any], base: str, teacher_options: Any, *, max_per_template: int | None = None,
                     progress: Any = None, rows: Sequence[str] = ("teacher", "student", "hard"),
                     extra_data: Sequence[str | Path] = (), teachers: int = 1,
                     teacher_alert_below: float | None = None) -> dict[str, Any]:
    """Factories (seed -> model) for the teacher, the distilled student and the hard-label student; the
    students are fed what the teacher is fed (``teacher_options.input``). ``extra_data``: the distilled
    student's ``--extra-data`` (e.g. other systems' lines, unlabelled: the teacher labels them).
    ``teachers`` > 1 or a ``teacher_alert_below``: the teacher is a :class:`TeacherEnsemble` of fine-tunes with
    seeds ``seed, seed + 1, ...``."""
    from logdistill.model.engine.teacher import TeacherOptions
    from logdistill.spec import DataSpec

    # Dev fraction, cap per template, rare-label folding: the engine's defaults.
    data_spec = DataSpec() if max_per_template is None else DataSpec(max_per_template=max_per_template)

    if teachers < 1:
        raise ValueError(f"teachers: {teachers}; at least one")

    def make_one(seed: int) -> TeacherModel:
        options = TeacherOptions(**{**teacher_options.as_dict(), "seed": seed})
        return TeacherModel(base, options, data_spec, progress)

    def make_teacher(seed: int) -> TeacherModel | TeacherEnsemble:
        if teachers == 1 and teacher_alert_below is None:
            return make_one(seed)
        return TeacherEnsemble([make_one(seed + i) for i in range(teachers)], teacher_alert_below)

    shared = SharedTeacher(make_teacher)
    factories = {
        "teacher": ("teacher", lambda seed: _TeacherRow(shared, seed)),
        "student": ("student distilled", lambda seed: StudentModel(shared, body, seed, extra_data=extra_data,
                                                                   progress=progress)),
        "hard": ("student hard labels", lambda seed: StudentModel(shared, body, seed, distil=False,
                                                                   progress=progress)),
    }
    return dict(factories[row] for row in rows)
