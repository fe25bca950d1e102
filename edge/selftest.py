"""The self-test a model passes before it serves, and before ``/readyz`` says ready.

Loading verifies the artifact's files; this checks the model *answers*: one fixed log line,
masked as every line is, goes through ONNX Runtime, and the class probabilities must be
finite and sum to 1. A graph that loads but fails on input (a wrong input name, an op the
runtime lacks, NaN weights) is refused here, at load or reload, not on the first real line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from logdistill.model.runtime.artifact import ArtifactError
from logdistill.model.runtime.inference import OnnxClassifier
from logdistill.model.runtime.templates import mask

__all__ = ["SELF_TEST_LINE", "SelfTest", "run_self_test"]

# A kernel I/O error with numbers, an address and a device: masking has work to do on it.
SELF_TEST_LINE = "kernel: [12345.678] blk_update_request: I/O error, dev sda, sector 2048 op 0x0:(READ) at 10.0.0.7"


@dataclass(frozen=True)
class SelfTest:
    """What the model answered for :data:`SELF_TEST_LINE` (logged at load)."""

    template: str
    label: str
    score: float


def run_self_test(model: OnnxClassifier) -> SelfTest:
    """Classify :data:`SELF_TEST_LINE`; :class:`ArtifactError` naming the directory if the answer is unusable."""
    template = mask(SELF_TEST_LINE)
    try:
        probs = model.predict_proba([model.model_input(SELF_TEST_LINE)])
    except Exception as err:  # noqa: BLE001 - whatever ONNX Runtime raises, the model is unusable
        raise ArtifactError(f"{model.directory}: the model fails its self-test line: {err}") from None
    row = [float(p) for p in probs[0]] if len(probs) == 1 else []
    if len(row) != len(model.labels) or not all(math.isfinite(p) for p in row) or abs(sum(row) - 1.0) > 1e-3:
        raise ArtifactError(f"{model.directory}: the model's self-test answer is not a probability distribution"
                            f" over its {len(model.labels)} labels: {row[:8]}")
    best = int(model.choose(probs)[0])  # as every line is answered
    return SelfTest(template, model.labels[best], row[best])
