"""Real, tiny torch teachers for tests: a WordPiece tokenizer trained on the test's texts and
a 2-layer, 32-wide BERT classifier fine-tuned on them for a few seconds, saved as a full
logdistill teacher artifact (safetensors, tokenizer.json, labels, int8 ONNX, manifest).

Needs the ``train`` extra (torch, transformers). Importable as ``helpers.tiny_models``.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Sequence

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_log_lines(seed: int = 0, repeats: int = 2) -> list[str]:
    """Loghub-style BGL-like lines (``LABEL EPOCH DATE NODE TIME NODE MESSAGE``): 40 normal
    templates, 24 ``KERNFAIL`` and 24 ``APPERR`` templates, each ``repeats`` times, shuffled."""
    rng = random.Random(seed)
    things = ["cache", "node", "link", "job", "disk", "fan", "net", "bus"]
    messages = [("-", f"RAS KERNEL INFO {a} {b} ok")
                for a, b in itertools.product(things, ["started", "scanned", "checked", "synced", "ready"])]
    messages += [("KERNFAIL", f"RAS KERNEL FATAL {a} failure detected {b}")
                 for a, b in itertools.product(things, ["machine", "check", "halt"])]
    messages += [("APPERR", f"RAS APP FATAL {a} error raised in {b}")
                 for a, b in itertools.product(things, ["parser", "loader", "socket"])]
    lines = [
        f"{label} {1117838570 + i} 2005.06.03 R02-M1-N{i % 9}-C:J12-U11 2005-06-03-15.42.50.{i:06d} R02-M1-N0"
        f" {message} {rng.randint(1, 999)}"
        for i, (label, message) in enumerate(messages * repeats)
    ]
    rng.shuffle(lines)
    return lines


def build_tokenizer(texts: Sequence[str], vocab_size: int = 300):
    """A BERT-style WordPiece tokenizer (lower-cased, [CLS] ... [SEP]) over the words of ``mask(text)``.

    The vocabulary is built here, sorted, not by the tokenizers trainer: its choice among equally
    frequent merges changes from process to process, and so would every tiny model trained on it.
    ``vocab_size`` caps the number of whole words kept (most frequent first, ties by spelling).
    """
    from collections import Counter

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from logdistill.model.runtime.templates import mask

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for t in texts
                     for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(mask(t))))
    words = sorted(counts, key=lambda w: (-counts[w], w))[:vocab_size]
    chars = sorted({c for w in counts for c in w})  # every word stays spellable piece by piece
    vocab_list = [*SPECIAL_TOKENS, *sorted(words), *chars, *(f"##{c}" for c in chars)]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_bert(vocab_size: int, labels: Sequence[str], *, hidden: int = 32, layers: int = 2, heads: int = 2,
              intermediate: int = 64, seed: int = 0):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, max_position_embeddings=64, num_labels=len(labels),
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,  # tiny data: let it fit
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    )
    return BertForSequenceClassification(config)


def build_tiny_teacher(tmp_dir: str | Path, labels: Sequence[str], texts: Sequence[str], *, epochs: int = 20,
                       seed: int = 0, name: str = "teacher", vocab_size: int = 300) -> Path:
    """Train a tiny teacher on ``texts`` with per-text ``labels`` and write it to ``tmp_dir/name``.

    ``labels[i]`` is the label of ``texts[i]``; the model's label list is the distinct labels,
    the normal label ``-`` first when present. A few seconds on one core (torch runs on one
    thread here: test machines are shared).
    """
    import torch

    from logdistill.model.engine.export import save_artifact
    from logdistill.model.engine.teacher import model_labels
    from logdistill.model.runtime.templates import mask
    from logdistill.model.engine.train import FitOptions, fit

    if len(labels) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    names = model_labels(list(labels))
    normal = "-" if "-" in names else names[0]
    tokenizer = build_tokenizer(texts, vocab_size=vocab_size)
    model = tiny_bert(len(tokenizer), names, seed=seed)
    index = {label: i for i, label in enumerate(names)}
    templates = [mask(t) for t in texts]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(
            model, tokenizer, templates=templates, targets=[index[label] for label in labels], teacher_probs=None,
            dev_templates=[], dev_truth=[], labels=names,
            options=FitOptions(epochs=epochs, batch_size=16, learning_rate=3e-3, warmup_ratio=0.1, weight_decay=0.0,
                               temperature=1.0, alpha=0.0, patience=1, seed=seed, max_length=32),
        )
    finally:
        torch.set_num_threads(threads)
    out = Path(tmp_dir) / name
    save_artifact(model, tokenizer, names, normal, out, kind="teacher", spec={"test": "tiny"}, report={},
                  info={"maxLength": 32, "teacher": "tiny-test-teacher"})
    return out


def tiny_distill_config(root: str | Path, student: dict, training: dict) -> Path:
    """A ``logdistill distill`` config on :func:`tiny_log_lines`, with a tiny teacher trained on the
    same train split the engine will make (so ``label`` shards and ``distill`` see the same lines).
    Returns the config path; the log file and the teacher sit beside it in ``root``."""
    import yaml

    from logdistill.model.runtime.data import load_records
    from logdistill.model.runtime.splits import make_split
    from logdistill.spec import parse_spec

    root = Path(root)
    data = root / "logs.log"
    data.write_text("\n".join(tiny_log_lines()) + "\n")
    spec = parse_spec({"teacher": {"checkpoint": "unused"}, "data": {"path": str(data)}})
    train = make_split(load_records(spec.data).records, spec.data, spec.training.seed).train
    teacher = build_tiny_teacher(root, [r.label for r in train], [r.text for r in train])
    config = root / "spec.yaml"
    config.write_text(yaml.safe_dump({
        "teacher": {"checkpoint": str(teacher)}, "data": {"path": str(data)}, "student": student,
        "training": training, "gate": {"minMacroF1": 0.01, "minRetention": 0.01}}))
    return config
