"""The cheap references every model must beat, on masked templates: TF-IDF + logistic regression
(needs scikit-learn, the ``train`` extra; callers import this module lazily), a 1-nearest neighbour
on token sets, and "a never-seen template is an alert".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from logdistill.model.runtime.templates import mask

__all__ = ["TfidfBaseline", "JaccardNearestNeighbour", "NeverSeenTemplateAlert", "UNSEEN_TEMPLATE"]

# Words of two or more characters, and mask tokens such as <NUM> kept whole.
_TOKEN_PATTERN = r"<[A-Z]+>|\b\w\w+\b"


class TfidfBaseline:
    """Word 1-2 gram TF-IDF + logistic regression (``class_weight="balanced"``) on ``mask(text)``.

    Texts are masked here (``mask`` of a template is the template on real log lines), so raw
    lines and templates can both be passed. A training set with one label predicts that label.
    """

    def __init__(self, *, max_iter: int = 1000, c: float = 1.0, seed: int = 0) -> None:
        self.max_iter = max_iter
        self.c = c
        self.seed = seed
        self._pipeline = None
        self._only_label: str | None = None

    @property
    def labels(self) -> list[str]:
        if self._only_label is not None:
            return [self._only_label]
        if self._pipeline is None:
            raise RuntimeError("TfidfBaseline is not fitted")
        return [str(c) for c in self._pipeline.classes_]

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "TfidfBaseline":
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if not len(texts):
            raise ValueError("cannot fit on no samples")
        if any(label is None for label in labels):
            raise ValueError("labels hold None (unlabelled lines cannot be used to fit)")
        distinct = sorted(set(labels))
        if len(distinct) == 1:
            self._only_label, self._pipeline = distinct[0], None
            return self

        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self._only_label = None
        self._pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), token_pattern=_TOKEN_PATTERN, lowercase=False, sublinear_tf=True),
            LogisticRegression(class_weight="balanced", C=self.c, max_iter=self.max_iter, random_state=self.seed),
        )
        self._pipeline.fit([mask(t) for t in texts], list(labels))
        return self

    def predict(self, texts: Sequence[str]) -> list[str]:
        if self._only_label is not None:
            return [self._only_label] * len(texts)
        if self._pipeline is None:
            raise RuntimeError("TfidfBaseline is not fitted")
        if not len(texts):
            return []
        return [str(label) for label in self._pipeline.predict([mask(t) for t in texts])]


class JaccardNearestNeighbour:
    """1-nearest neighbour over token sets: the label of the training template whose set of masked
    tokens has the highest Jaccard similarity with the line's (the classical baseline of "Deep Learning
    or Classical Machine Learning? An Empirical Study on Log-Based Anomaly Detection", ICSE 2024).

    One neighbour per distinct training template (its majority label); equally near templates vote,
    ties of the vote go to the smallest label name. Pure Python: distinct templates only, so a few
    hundred by a few hundred set comparisons on BGL.
    """

    def __init__(self) -> None:
        self._templates: list[tuple[frozenset[str], str]] = []

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "JaccardNearestNeighbour":
        if len(texts) != len(labels) or not len(texts):
            raise ValueError(f"need as many labels as texts (and at least one), got {len(texts)} and {len(labels)}")
        self._templates = [(frozenset(template.split()), label) for template, label in _template_labels(texts, labels)]
        return self

    def predict(self, texts: Sequence[str]) -> list[str]:
        if not self._templates:
            raise RuntimeError("JaccardNearestNeighbour is not fitted")
        answers: dict[str, str] = {}
        out = []
        for text in texts:
            template = mask(text)
            if template not in answers:
                answers[template] = self._nearest(frozenset(template.split()))
            out.append(answers[template])
        return out

    def _nearest(self, tokens: frozenset[str]) -> str:
        best, votes = -1.0, Counter()
        for other, label in self._templates:
            union = len(tokens | other)
            similarity = len(tokens & other) / union if union else 1.0
            if similarity > best + 1e-12:
                best, votes = similarity, Counter({label: 1})
            elif similarity >= best - 1e-12:
                votes[label] += 1
        return min(votes, key=lambda label: (-votes[label], label))


UNSEEN_TEMPLATE = "<unseen-template>"
"""What :class:`NeverSeenTemplateAlert` answers for a template absent from training (an alert label)."""


class NeverSeenTemplateAlert:
    """"A never-seen template is an alert": a training template gets its majority training label, any
    other template :data:`UNSEEN_TEMPLATE` (counted as an alert, of no known category)."""

    def __init__(self) -> None:
        self._known: dict[str, str] | None = None

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "NeverSeenTemplateAlert":
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        self._known = dict(_template_labels(texts, labels))
        return self

    def predict(self, texts: Sequence[str]) -> list[str]:
        if self._known is None:
            raise RuntimeError("NeverSeenTemplateAlert is not fitted")
        return [self._known.get(mask(text), UNSEEN_TEMPLATE) for text in texts]


def _template_labels(texts: Sequence[str], labels: Sequence[str]) -> list[tuple[str, str]]:
    """``(template, majority label of its lines)`` per distinct masked template, in first-seen order."""
    by_template: dict[str, Counter] = {}
    for text, label in zip(texts, labels):
        if label is None:
            raise ValueError("labels hold None (unlabelled lines cannot be used to fit)")
        by_template.setdefault(mask(text), Counter())[label] += 1
    return [(template, min(c, key=lambda label: (-c[label], label))) for template, c in by_template.items()]
