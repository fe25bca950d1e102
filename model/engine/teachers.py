"""Where a distillation's teacher knowledge comes from: the :class:`TeacherSource` protocol.

:func:`logdistill.model.engine.pipeline.run_pipeline` asks a source for three things: the label set,
soft targets for transfer lines, and a scorer for the test split (quality, and latency when the
teacher's latency is the model's). Implementations:

* :class:`CheckpointTeacher`: one local checkpoint (``teacher.checkpoint``) or a weighted ensemble
  of them (``teacher.ensemble``): soft targets mixed by weight, an int8 ONNX scorer per member.
* :class:`ShardTeacher`: precomputed soft targets from ``logdistill label`` shards (the scale-out
  label Job), with the checkpoint teacher for evaluation and for lines the shards do not cover.
* :class:`EndpointTeacher`: an OpenAI-compatible LLM (``teacher.endpoint``): labels from the
  training data, soft targets and paraphrases over HTTP, no local model (the student needs
  ``student.pretrained`` for its tokenizer), no latency of its own.

:func:`teacher_source` picks one from the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch

from logdistill.model.runtime.artifact import ONNX_MODEL, ArtifactError
from logdistill.model.engine.augment import paraphrase_lines
from logdistill.model.runtime.data import NORMAL_LABEL
from logdistill.model.engine.evaluate import EnsembleScorer, Scorer, TorchScorer, measure_latency, quality
from logdistill.model.engine.export import LoadedModel, directory_size, load_torch_model, parameter_count, save_artifact
from logdistill.model.engine.llm_teacher import LlmTeacher, LlmTeacherError
from logdistill.model.engine.losses import ensemble_soft_targets
from logdistill.model.runtime.inference import OnnxClassifier
from logdistill.model.engine.shards import load_soft_targets
from logdistill.model.runtime.splits import Split
from logdistill.model.runtime.templates import mask
from logdistill.model.engine.teacher import model_labels
from logdistill.model.engine.train import Progress, predict_logits
from logdistill.spec import EndpointTeacher as EndpointSpec
from logdistill.spec import TeacherSpec

__all__ = ["DistillError", "LabelSet", "LabelRequest", "TeacherScoring", "TeacherSource", "CheckpointTeacher",
           "ShardTeacher", "EndpointTeacher", "EndpointScorer", "teacher_source"]


class DistillError(Exception):
    """A distillation that cannot run as configured; the message names the spec field or file."""


@dataclass(frozen=True)
class LabelSet:
    labels: list[str]
    """Logit columns of the student (and of the soft targets), in order."""
    normal: str


@dataclass(frozen=True)
class LabelRequest:
    """Soft targets wanted for ``templates`` at ``temperature``."""

    templates: list[str]
    temperature: float
    base_templates: list[str] | None = None
    """The transfer set of the spec's own data (before ``--extra-data``), when it differs from
    ``templates``: what precomputed shards were made for."""


@dataclass
class TeacherScoring:
    """How the teacher is scored on the test split."""

    scorer: Scorer
    key: str
    """Key of its scores in the report's ``teacher`` section (``onnxInt8``, ``endpoint``)."""
    timed: bool
    """Whether its latency is the model's: then measured in alternating blocks with the student's."""
    details: Callable[[Sequence[str], Sequence[str]], dict[str, Any]] = lambda texts, truth: {}
    """More fields for the report's ``teacher`` section (members, fp32 reference, size, requests)."""


class TeacherSource(Protocol):
    """A teacher as the pipeline sees it."""

    name: str
    """Identity recorded in the artifact (``info.teacher``) and the report (``teacher.source``)."""

    @property
    def model(self) -> LoadedModel | None:
        """The local torch teacher (student init, tokenizer, hidden states), or None without one."""

    @property
    def input(self) -> str:
        """What the teacher is fed for a raw line (``info.input``); the student is fed the same."""

    def label_set(self, split: Split) -> LabelSet:
        """The labels to distil into; called once, before the other methods."""

    def soft_targets(self, request: LabelRequest, progress: Progress) -> torch.Tensor:
        """``[len(request.templates), C]`` probabilities at ``request.temperature``."""

    def paraphrases(self, train_templates: Sequence[str], per_template: int, exclude: set[str],
                    progress: Progress) -> list[str]:
        """Reworded train templates (``training.augmentation.paraphrases``); [] when it cannot write any."""

    def scoring(self, scratch: Path) -> TeacherScoring:
        """A scorer for the test split; ``scratch`` is a folder for exports, alive while it is used."""


# --- local checkpoints ----------------------------------------------------------------------------


def _load_members(teacher_spec: TeacherSpec) -> list[tuple[LoadedModel, float]]:
    members = ([(teacher_spec.checkpoint, 1.0)] if teacher_spec.checkpoint
               else [(m.checkpoint, m.weight) for m in teacher_spec.ensemble or []])
    loaded = []
    for i, (path, weight) in enumerate(members):
        where = "teacher.checkpoint" if teacher_spec.checkpoint else f"teacher.ensemble[{i}].checkpoint"
        try:
            loaded.append((load_torch_model(path), weight))
        except ArtifactError as err:
            raise DistillError(f"{where}: {err}") from None
    first = loaded[0][0]
    for teacher, _ in loaded[1:]:
        if sorted(teacher.labels) != sorted(first.labels):
            raise DistillError(
                f"teacher.ensemble: {teacher.path} has labels {teacher.labels}, {first.path} has {first.labels}"
            )
        if teacher.input != first.input:
            raise DistillError(f"teacher.ensemble: {teacher.path} is fed input {teacher.input!r}, {first.path}"
                               f" {first.input!r}: the members of an ensemble share one input")
    return loaded


def torch_reference(model: Any, tokenizer: Any, labels: list[str], normal: str, max_length: int,
                    texts: Sequence[str], truth: Sequence[str], input_name: str = "template",
                    alert_below: float | None = None) -> dict[str, Any]:
    """fp32 torch quality and single-line latency (1 thread), for comparison with the int8 ONNX path."""
    scorer = TorchScorer(model, tokenizer, labels, normal, max_length, input_name, alert_below)
    scores = quality(scorer, texts, truth)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        latency = measure_latency(scorer, texts, samples=50, warmup=5)
    finally:
        torch.set_num_threads(threads)
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "alert_f1": scores["alert"]["f1"],
            "latency_ms_p50": latency["latency_ms_p50"], "latency_ms_p99": latency["latency_ms_p99"]}


class CheckpointTeacher:
    """``teacher.checkpoint`` or ``teacher.ensemble``: local models, loaded on first use."""

    def __init__(self, teacher_spec: TeacherSpec) -> None:
        if teacher_spec.endpoint is not None:
            raise DistillError("teacher.endpoint: an LLM endpoint teacher has no local model to load here;"
                               " sharded labelling needs teacher.checkpoint or teacher.ensemble")
        self.spec = teacher_spec
        self._members: list[tuple[LoadedModel, float]] | None = None

    @classmethod
    def in_memory(cls, *models: LoadedModel) -> "CheckpointTeacher":
        """Teachers already loaded (fine-tuned in this process, e.g. per fold of ``bench quality``), weighted
        alike when there are several."""
        if not models:
            raise ValueError("in_memory needs at least one teacher")
        source = cls.__new__(cls)
        source.spec, source._members = None, [(model, 1.0) for model in models]
        return source

    @property
    def members(self) -> list[tuple[LoadedModel, float]]:
        """``(model, weight)`` per checkpoint (one for ``teacher.checkpoint``)."""
        if self._members is None:
            self._members = _load_members(self.spec)
        return self._members

    @property
    def model(self) -> LoadedModel:
        return self.members[0][0]

    @property
    def name(self) -> str:
        return ",".join(str(t.path) for t, _ in self.members)

    @property
    def input(self) -> str:
        return self.model.input

    def label_set(self, split: Split | None = None) -> LabelSet:
        return LabelSet(list(self.model.labels), self.model.normal)

    def probs(self, templates: Sequence[str], labels: Sequence[str], temperature: float) -> torch.Tensor:
        """``[N, C]`` soft targets at T (columns in ``labels`` order), mixed by ensemble weight."""
        logits, weights = [], []
        for teacher, weight in self.members:
            raw = predict_logits(teacher.model, teacher.tokenizer, list(templates), teacher.max_length)
            logits.append(raw[:, [teacher.labels.index(label) for label in labels]])
            weights.append(weight)
        return ensemble_soft_targets(logits, weights, temperature)

    def soft_targets(self, request: LabelRequest, progress: Progress) -> torch.Tensor:
        return self.probs(request.templates, self.model.labels, request.temperature)

    def paraphrases(self, train_templates: Sequence[str], per_template: int, exclude: set[str],
                    progress: Progress) -> list[str]:
        return []

    def scoring(self, scratch: Path) -> TeacherScoring:
        members, parameters, size = [], 0, 0
        for i, (teacher, weight) in enumerate(self.members):
            directory = teacher.path
            if teacher.manifest is None or ONNX_MODEL not in teacher.manifest.files:  # a plain checkpoint
                directory = scratch / f"teacher-{i}"
                info = {"maxLength": teacher.max_length, "teacher": str(teacher.path), "input": teacher.input}
                save_artifact(teacher.model, teacher.tokenizer, teacher.labels, teacher.normal, directory,
                              kind="teacher", spec={}, report={}, info=info)
            members.append((OnnxClassifier(directory, threads=1), weight))
            parameters += parameter_count(teacher.model)
            size += directory_size(directory)
        scorer: Scorer = members[0][0] if len(members) == 1 else EnsembleScorer(members)

        def details(texts: Sequence[str], truth: Sequence[str]) -> dict[str, Any]:
            first = self.model
            reference = torch_reference(first.model, first.tokenizer, list(first.labels), first.normal,
                                        first.max_length, texts, truth, first.input) if len(members) == 1 else None
            return {"torchFp32": reference, "members": self._member_scores(members, texts, truth),
                    "parameters": parameters, "sizeBytes": size}

        return TeacherScoring(scorer, key="onnxInt8", timed=True, details=details)

    def _member_scores(self, members: list[tuple[Scorer, float]], texts: Sequence[str],
                       truth: Sequence[str]) -> list[dict[str, Any]] | None:
        """Each ensemble member alone on the test split (None for a single teacher): is the mix better?"""
        if len(members) < 2:
            return None
        rows = []
        for (teacher, weight), (member, _) in zip(self.members, members):
            scores = quality(member, texts, truth)
            rows.append({"source": str(teacher.path), "weight": weight, "accuracy": scores["accuracy"],
                         "macro_f1": scores["macro_f1"], "alert_f1": scores["alert"]["f1"]})
        return rows


class ShardTeacher:
    """Soft targets precomputed by ``logdistill label`` shards in ``directory``; everything else,
    and the lines the shards do not cover (``--extra-data``), from the checkpoint teacher."""

    def __init__(self, local: CheckpointTeacher, directory: str | Path) -> None:
        self.local, self.directory = local, Path(directory)

    @property
    def model(self) -> LoadedModel:
        return self.local.model

    @property
    def name(self) -> str:
        return self.local.name

    @property
    def input(self) -> str:
        return self.local.input

    def label_set(self, split: Split | None = None) -> LabelSet:
        return self.local.label_set(split)

    def soft_targets(self, request: LabelRequest, progress: Progress) -> torch.Tensor:
        """The shards must hold exactly ``request.base_templates`` (default: the templates); lines
        only the extra data brought in are labelled here by the teacher, a share that is reported."""
        labels = self.model.labels
        probs, missing = load_soft_targets(self.directory, request.templates, labels, request.temperature,
                                           expected=request.base_templates)
        progress.say(f"soft targets: {len(set(request.templates)) - len(missing)} templates from the shards in"
                     f" {self.directory}")
        if missing:
            progress.say(f"soft targets: labelling {len(missing)} templates the shards do not cover (--extra-data)")
            extra = self.local.probs(missing, labels, request.temperature)
            row = {template: i for i, template in enumerate(missing)}
            for i, template in enumerate(request.templates):
                if template in row:
                    probs[i] = extra[row[template]]
        return probs

    def paraphrases(self, train_templates: Sequence[str], per_template: int, exclude: set[str],
                    progress: Progress) -> list[str]:
        return []

    def scoring(self, scratch: Path) -> TeacherScoring:
        return self.local.scoring(scratch)


# --- an LLM endpoint ------------------------------------------------------------------------------


class EndpointScorer:
    """The LLM teacher behind the :class:`logdistill.model.engine.evaluate.Scorer` interface (T = 1)."""

    model_input = staticmethod(mask)  # the LLM reads the template, as the student does
    alert_below = None  # its top label

    def __init__(self, teacher: LlmTeacher, normal: str) -> None:
        self.teacher, self.labels, self.normal_label = teacher, list(teacher.labels), normal

    def predict_proba(self, templates: Sequence[str]) -> np.ndarray:
        try:
            return self.teacher.soft_targets(list(templates), temperature=1.0)
        except LlmTeacherError as err:
            raise DistillError(f"teacher.endpoint: {err}") from None


class EndpointTeacher:
    """``teacher.endpoint``: labels from the training data (an LLM has no label head)."""

    model = None
    input = "template"

    def __init__(self, endpoint: EndpointSpec, *, environ: Mapping[str, str] | None = None) -> None:
        self.endpoint, self.environ = endpoint, environ
        self.name = f"{endpoint.url}#{endpoint.model}"
        self._llm: LlmTeacher | None = None
        self._normal = NORMAL_LABEL

    @property
    def llm(self) -> LlmTeacher:
        if self._llm is None:
            raise RuntimeError("EndpointTeacher.label_set(split) comes first")
        return self._llm

    def label_set(self, split: Split) -> LabelSet:
        labels = model_labels([r.label for r in split.train])
        self._normal = NORMAL_LABEL if NORMAL_LABEL in labels else labels[0]
        try:
            self._llm = LlmTeacher(self.endpoint, labels, environ=self.environ)
        except LlmTeacherError as err:
            raise DistillError(f"teacher.endpoint: {err}") from None
        return LabelSet(labels, self._normal)

    def soft_targets(self, request: LabelRequest, progress: Progress) -> torch.Tensor:
        def tick(done: int, total: int) -> None:
            if done % 100 == 0 or done == total:
                progress.say(f"labelling: {done}/{total} distinct lines")

        try:
            probs = self.llm.soft_targets(request.templates, request.temperature, progress=tick)
        except LlmTeacherError as err:
            raise DistillError(f"teacher.endpoint: {err}") from None
        progress.say(f"labelled {len(set(request.templates))} distinct lines: {self.llm.stats.as_dict()}")
        return torch.from_numpy(probs)

    def paraphrases(self, train_templates: Sequence[str], per_template: int, exclude: set[str],
                    progress: Progress) -> list[str]:
        try:
            return paraphrase_lines(self.llm, train_templates, per_template, exclude, progress)
        except LlmTeacherError as err:
            raise DistillError(f"teacher.endpoint: {err}") from None

    def scoring(self, scratch: Path) -> TeacherScoring:
        """The LLM's argmax answers (cached); no latency: a remote service's latency is not the model's."""
        return TeacherScoring(EndpointScorer(self.llm, self._normal), key="endpoint", timed=False,
                              details=lambda texts, truth: {"requests": self.llm.stats.as_dict()})


def teacher_source(teacher_spec: TeacherSpec, *, soft_targets: str | Path | None = None,
                   environ: Mapping[str, str] | None = None) -> TeacherSource:
    """The source the spec's ``teacher`` section names (``soft_targets``: a folder of label shards)."""
    if teacher_spec.train is not None:
        raise DistillError(
            "teacher.train: the operator trains that teacher into a checkpoint first (logdistill teacher ensure);"
            " outside the operator, train one (logdistill teacher train --out DIR) and set teacher.checkpoint"
        )
    if teacher_spec.endpoint is not None:
        if soft_targets is not None:
            raise DistillError("teacher.endpoint: --soft-targets needs a local teacher")
        return EndpointTeacher(teacher_spec.endpoint, environ=environ)
    local = CheckpointTeacher(teacher_spec)
    return local if soft_targets is None else ShardTeacher(local, soft_targets)

