"""The training loop shared by teacher fine-tuning and distillation, plus batched inference.

One loop: AdamW, linear warm-up then linear decay, the loss of
:func:`logdistill.model.engine.losses.distillation_loss` (``alpha = 0`` is plain fine-tuning),
early stopping on dev macro-F1 with the best weights restored. Seeded: ``torch.manual_seed``
and a seeded ``torch.Generator`` for the batch order, so a run is reproducible on a given
machine and thread count.

Inputs are masked templates; identical templates give identical outputs, so inference runs
once per distinct template (:func:`predict_logits`).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from logdistill.contracts import STAGES
from logdistill.contracts import Progress as ProgressMessage
from logdistill.model.engine.losses import UNLABELLED, balanced_class_weights, distillation_loss
from logdistill.model.runtime.metrics import classification_report
from logdistill.timefmt import rfc3339

__all__ = ["Progress", "FitOptions", "FitResult", "encode", "predict_logits", "fit", "set_threads"]


def set_threads(threads: int) -> int:
    """``training.threads``: 0 = all cores. Returns the count in use."""
    count = threads or os.cpu_count() or 1
    torch.set_num_threads(count)
    return count


_STDERR = object()
"""Progress's default stream: ``sys.stderr`` as it is when the Progress is made (a default argument would
keep the one of import time, which a redirect or a test's capture may have closed since)."""


class Progress:
    """Progress for people (periodic lines on stderr) and machines (a JSON file, replaced atomically).

    File body: :class:`logdistill.contracts.Progress` (``{"stage", "epoch", "epochs", "step", "steps",
    "percent", "devMacroF1", "updated"}``).
    """

    def __init__(self, path: str | Path | None = None, *, stream: Any = _STDERR, every_s: float = 5.0) -> None:
        self.path = Path(path) if path else None
        self.stream = sys.stderr if stream is _STDERR else stream
        """Where the lines go; None: nowhere."""
        self.every_s = every_s
        self._last_line = 0.0
        self._last_write = 0.0
        self.state: dict[str, Any] = {
            "stage": "loading",
            "epoch": 0,
            "epochs": 0,
            "step": 0,
            "steps": 0,
            "percent": 0.0,
            "devMacroF1": None,
        }

    def update(self, *, force: bool = False, **fields: Any) -> None:
        if "stage" in fields and fields["stage"] not in STAGES:
            raise ValueError(f"unknown stage {fields['stage']!r}")
        stage_changed = "stage" in fields and fields["stage"] != self.state["stage"]
        self.state.update(fields)
        steps = self.state["steps"]
        if self.state["stage"] == "done":
            self.state["percent"] = 100.0
        elif steps:
            self.state["percent"] = round(100.0 * self.state["step"] / steps, 1)
        self.state["updated"] = rfc3339()
        now = time.monotonic()
        if force or stage_changed or now - self._last_write >= 1.0:
            self._last_write = now
            self._write()
        if force or stage_changed or now - self._last_line >= self.every_s:
            self._last_line = now
            self.say(self._line())

    def say(self, message: str) -> None:
        if self.stream is not None:
            print(f"[logdistill] {message}", file=self.stream, flush=True)

    def _line(self) -> str:
        s = self.state
        parts = [s["stage"]]
        if s["epochs"]:
            parts.append(f"epoch {s['epoch']}/{s['epochs']}")
        if s["steps"]:
            parts.append(f"step {s['step']}/{s['steps']} ({s['percent']:.0f}%)")
        if s["devMacroF1"] is not None:
            parts.append(f"dev macro-F1 {s['devMacroF1']:.3f}")
        return " | ".join(parts)

    def _write(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(ProgressMessage.model_validate(self.state).serialize() + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class FitOptions:
    """The optimisation part of :class:`logdistill.spec.TrainingSpec`, plus the input length."""

    epochs: int
    batch_size: int
    learning_rate: float
    warmup_ratio: float
    weight_decay: float
    temperature: float
    alpha: float
    patience: int
    seed: int
    max_length: int
    balance_classes: float = 0.0
    """Power of the class weights of the hard loss (0 = unweighted, 0.5 = inverse square root of frequency)."""
    head_learning_rate: float | None = None
    """Peak learning rate of the fresh classification head (``classifier.*``); None = ``learning_rate``.
    A pretrained body needs a small rate, a randomly initialised head a much larger one to fit in
    a few hundred steps."""

    @classmethod
    def from_spec(cls, training: Any, max_length: int, **overrides: Any) -> "FitOptions":
        values = {name: getattr(training, name) for name in cls.__dataclass_fields__
                  if name not in ("max_length", "balance_classes")}
        values.update(overrides)
        return cls(max_length=max_length, **values)


@dataclass
class FitResult:
    best_epoch: int
    best_dev_macro_f1: float | None
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def encode(tokenizer: Any, templates: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenise to padded ``input_ids``/``attention_mask`` int64 ``[B, seq]`` (truncated at ``max_length``)."""
    batch = tokenizer(
        list(templates), truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


@torch.no_grad()
def predict_logits(
    model: Any, tokenizer: Any, templates: Sequence[str], max_length: int, batch_size: int = 64
) -> torch.Tensor:
    """``[len(templates), C]`` fp32 logits; each distinct template is run once."""
    distinct = list(dict.fromkeys(templates))
    was_training = model.training
    device = next(model.parameters()).device  # a GPU rank of a distributed run evaluates on its GPU
    model.eval()
    chunks = []
    # Sorting by length keeps padding (and time) low; the order is restored below.
    order = sorted(range(len(distinct)), key=lambda i: len(distinct[i]))
    for start in range(0, len(order), batch_size):
        picked = [distinct[i] for i in order[start : start + batch_size]]
        inputs = {k: v.to(device) for k, v in encode(tokenizer, picked, max_length).items()}
        chunks.append(model(**inputs).logits.float().cpu())
    model.train(was_training)
    if not chunks:
        return torch.zeros((len(templates), model.config.num_labels))
    by_length = torch.cat(chunks)
    logits = torch.empty_like(by_length)
    logits[torch.tensor(order)] = by_length
    row = {template: i for i, template in enumerate(distinct)}
    return logits[torch.tensor([row[t] for t in templates], dtype=torch.long)]


def dev_macro_f1(model: Any, tokenizer: Any, templates: Sequence[str], truth: Sequence[str], labels: list[str],
                 max_length: int) -> float:
    logits = predict_logits(model, tokenizer, templates, max_length)
    predicted = [labels[i] for i in logits.argmax(dim=1).tolist()]
    return float(classification_report(list(truth), predicted, labels=labels)["macro_f1"])


def _schedule(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = int(math.ceil(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def fit(
    model: Any,
    tokenizer: Any,
    *,
    templates: Sequence[str],
    targets: Sequence[int],
    teacher_probs: torch.Tensor | None,
    dev_templates: Sequence[str],
    dev_truth: Sequence[str],
    labels: list[str],
    options: FitOptions,
    progress: Progress | None = None,
    parallel: Any = None,
    auxiliary: Any = None,
) -> FitResult:
    """Train ``model`` in place and restore the weights of the best dev epoch.

    ``targets[i]`` is a class index or ``UNLABELLED``; ``teacher_probs`` is ``[N, C]`` soft
    targets at ``options.temperature`` (required when ``alpha > 0``). With no dev lines the
    last epoch is kept. ``parallel`` (a :class:`logdistill.model.engine.distributed.Parallel`, under
    torchrun) makes this one rank of a DistributedDataParallel run: sampler-sharded batches, dev
    scored on rank 0 and broadcast so every rank stops at the same epoch. ``auxiliary`` (e.g. a
    :class:`logdistill.model.engine.intermediate.IntermediateDistiller`) adds ``auxiliary(batch, outputs)``
    to the loss; the student is called with its ``student_kwargs`` and its ``trainable_parameters()``
    are trained too.
    """
    if auxiliary is not None and parallel is not None:
        raise ValueError("an auxiliary loss (training.intermediate) is not supported under torchrun")
    if len(templates) != len(targets):
        raise ValueError(f"{len(templates)} templates but {len(targets)} targets")
    if options.alpha > 0 and (teacher_probs is None or teacher_probs.shape[0] != len(templates)):
        raise ValueError("teacher_probs [N, C] is required when alpha > 0")
    if options.alpha < 1 and not any(t != UNLABELLED for t in targets) and teacher_probs is None:
        raise ValueError("nothing to learn from: no labelled line and no teacher soft targets")
    started = time.monotonic()
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    n = len(templates)
    steps_per_epoch = parallel.steps_per_epoch(n, options.batch_size) if parallel else max(1, math.ceil(n / options.batch_size))
    total_steps = steps_per_epoch * options.epochs
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    head_lr = options.head_learning_rate or options.learning_rate
    groups: dict[tuple[bool, bool], list[Any]] = {}
    for name, param in model.named_parameters():
        key = (name.startswith("classifier."), any(k in name for k in no_decay))
        groups.setdefault(key, []).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": params, "lr": head_lr if is_head else options.learning_rate,
          "weight_decay": 0.0 if is_no_decay else options.weight_decay}
         for (is_head, is_no_decay), params in groups.items()]
        + ([{"params": auxiliary.trainable_parameters(), "lr": options.learning_rate,
             "weight_decay": options.weight_decay}] if auxiliary is not None else [])
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total_steps, options.warmup_ratio))
    target_tensor = torch.tensor(list(targets), dtype=torch.long)
    class_weights = (
        balanced_class_weights(list(targets), len(labels), options.balance_classes) if options.balance_classes else None
    )

    best_f1: float | None = None
    best_epoch = 0
    best_state = None
    stale = 0
    history: list[dict[str, Any]] = []
    step = 0
    forward = parallel.wrap(model) if parallel else model
    if parallel:
        target_tensor = parallel.to_device(target_tensor)
        teacher_probs = parallel.to_device(teacher_probs)
        class_weights = parallel.to_device(class_weights)
    if progress:
        progress.update(stage="training", epoch=0, epochs=options.epochs, step=0, steps=total_steps, force=True)
    epoch = 0
    for epoch in range(1, options.epochs + 1):
        model.train()
        if parallel:
            batches = parallel.epoch_batches(n, options.batch_size, options.seed, epoch)
        else:
            order = torch.randperm(n, generator=generator)
            batches = (order[start : start + options.batch_size] for start in range(0, n, options.batch_size))
        epoch_loss, seen = 0.0, 0
        for rows in batches:
            batch = encode(tokenizer, [templates[i] for i in rows.tolist()], options.max_length)
            if parallel:
                batch, rows = parallel.to_device(batch), parallel.to_device(rows)
            outputs = forward(**batch, **(auxiliary.student_kwargs if auxiliary is not None else {}))
            logits = outputs.logits
            probs = teacher_probs[rows] if teacher_probs is not None and options.alpha > 0 else None
            loss = distillation_loss(
                logits, probs, target_tensor[rows], temperature=options.temperature, alpha=options.alpha,
                class_weights=class_weights,
            )
            if auxiliary is not None:
                loss = loss + auxiliary(batch, outputs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            epoch_loss += float(loss.detach()) * len(rows)
            seen += len(rows)  # this rank's rows: a share of n under torchrun
            if progress:
                progress.update(epoch=epoch, step=step)
        record: dict[str, Any] = {"epoch": epoch, "loss": round(epoch_loss / max(1, seen), 5)}
        if dev_templates:
            def score_dev() -> float:
                return dev_macro_f1(model, tokenizer, dev_templates, dev_truth, labels, options.max_length)

            score = parallel.from_main(score_dev, f"dev score of epoch {epoch}") if parallel else score_dev()
            record["devMacroF1"] = round(score, 5)
            if best_f1 is None or score > best_f1 + 1e-9:
                best_f1, best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            elif score >= best_f1 - 1e-9:
                # A tie keeps the later weights (lower training loss) and does not count as stale:
                # on a small dev set macro-F1 is flat for epochs while the model is still learning.
                best_epoch = epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        else:
            best_epoch = epoch
        history.append(record)
        if progress:
            progress.update(epoch=epoch, step=step, devMacroF1=best_f1, force=True)
            progress.say(f"epoch {epoch}: loss {record['loss']:.4f}" + (
                f", dev macro-F1 {record['devMacroF1']:.4f}" if "devMacroF1" in record else ""))
        if dev_templates and stale >= options.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    if parallel:
        model.cpu()  # export and evaluation run on CPU
    model.eval()
    return FitResult(best_epoch, best_f1, epoch, history, round(time.monotonic() - started, 2))
