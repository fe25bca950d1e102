"""Augmentation of the transfer set: new, unlabelled train inputs the teacher labels.

* :func:`augment_templates`: rule-based variants of each distinct train template (word dropout,
  windows, token swaps, token replacement, splices of two templates).
* :func:`paraphrase_lines`: rewordings written by an LLM teacher (``training.augmentation.paraphrases``).
* :func:`without_evaluation_templates`: the guard every augmented line passes. A window or a
  dropout of a train template can equal a dev or test template (templates of one component often
  nest), which would put an evaluation line into training and inflate the scores.

Pure string work: no torch.
"""

from __future__ import annotations

import random
from typing import Callable, Protocol, Sequence

from logdistill.model.runtime.splits import Split
from logdistill.model.runtime.templates import mask

__all__ = ["AUGMENT_PER_TEMPLATE", "AUGMENT_LIMIT", "augment_templates", "paraphrase_lines", "Paraphraser",
           "evaluation_templates", "without_evaluation_templates"]

AUGMENT_PER_TEMPLATE = 8
"""Augmented transfer lines per distinct train template (0 disables augmentation)."""
AUGMENT_LIMIT = 20000
"""Cap on augmented lines, so teacher labelling stays a small share of the run."""
_FILLERS = ("<NUM>", "<ID>", "<HEX>", "<PATH>", "<IP>")


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



class Paraphraser(Protocol):
    """What :func:`paraphrase_lines` needs of an LLM teacher."""

    def paraphrases(self, template: str, n: int, line: int) -> list[str]: ...


class _Say(Protocol):
    def say(self, message: str) -> None: ...


def paraphrase_lines(teacher: Paraphraser, train_templates: Sequence[str], per_template: int, exclude: set[str],
                     progress: _Say | None = None) -> list[str]:
    """Masked paraphrases of each train template, minus anything in ``exclude`` (train, dev and
    test templates) and duplicates. Unlabelled: the caller labels them with the teacher."""
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


def evaluation_templates(split: Split, key: Callable[[str], str] = mask) -> set[str]:
    """Model inputs (``key``: by default the masked template) of the dev and test parts of ``split``."""
    return {key(r.text) for r in split.dev} | {key(r.text) for r in split.test}


def without_evaluation_templates(lines: Sequence[str], split: Split, key: Callable[[str], str] = mask) -> list[str]:
    """``lines`` (model inputs) minus any equal to a dev or test input, order kept."""
    evaluation = evaluation_templates(split, key)
    return [line for line in lines if line not in evaluation]
