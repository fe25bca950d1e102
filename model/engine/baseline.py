"""TF-IDF + logistic regression on masked templates: the cheap reference every model must beat.

Needs scikit-learn (the ``train`` extra); callers import this module lazily.
"""

from __future__ import annotations

from collections.abc import Sequence

from logdistill.model.runtime.templates import mask

__all__ = ["TfidfBaseline"]

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
