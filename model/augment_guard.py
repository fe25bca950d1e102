"""Keep teacher-labelled augmented lines away from the evaluation set.

The engine's augmented transfer lines (:func:`logdistill.model.distill.augment_templates`: word
dropout, windows, placeholder/word replacement, splices) are new train inputs made from train
templates; a window or a dropout of a train template can equal a dev or test template (templates
of one component often nest), which would put an evaluation line into training and inflate the
scores. :func:`without_evaluation_templates` drops such lines; the transfer set calls it.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["evaluation_templates", "without_evaluation_templates"]


def evaluation_templates(split: Any) -> set[str]:
    """Masked templates of the dev and test parts of ``split``."""
    from logdistill.model.templates import mask

    return {mask(r.text) for r in split.dev} | {mask(r.text) for r in split.test}


def without_evaluation_templates(lines: Sequence[str], split: Any) -> list[str]:
    """``lines`` (masked templates) minus any equal to a dev or test template, order kept."""
    evaluation = evaluation_templates(split)
    return [line for line in lines if line not in evaluation]
