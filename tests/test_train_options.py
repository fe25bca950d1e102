"""``training.headLearningRate``: the classification head trains at its own rate."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from helpers.tiny_models import build_tokenizer, tiny_bert  # noqa: E402

from logdistill.model.engine.train import FitOptions, fit  # noqa: E402
from logdistill.spec import DistillSpec, parse_spec  # noqa: E402

pytestmark = pytest.mark.torch


def test_head_learning_rate_comes_from_the_spec_and_defaults_to_none():
    spec = parse_spec({"teacher": {"checkpoint": "/t"}, "training": {"headLearningRate": 0.003}}, DistillSpec)
    assert FitOptions.from_spec(spec.training, 32).head_learning_rate == 0.003
    plain = parse_spec({"teacher": {"checkpoint": "/t"}}, DistillSpec)
    assert FitOptions.from_spec(plain.training, 32).head_learning_rate is None


def test_only_the_head_moves_when_the_body_rate_is_negligible():
    texts = ["disk failure detected", "job started ok", "link error raised", "fan ready ok"] * 4
    labels = ["-", "A"]
    tokenizer = build_tokenizer(texts)
    model = tiny_bert(len(tokenizer), labels, seed=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    options = FitOptions(epochs=2, batch_size=4, learning_rate=1e-12, warmup_ratio=0.0, weight_decay=0.0,
                         temperature=1.0, alpha=0.0, patience=1, seed=0, max_length=16, head_learning_rate=0.05)
    fit(model, tokenizer, templates=texts, targets=[i % 2 for i in range(len(texts))], teacher_probs=None,
        dev_templates=[], dev_truth=[], labels=labels, options=options)
    moved = {name for name, p in model.named_parameters() if not torch.allclose(p, before[name], atol=1e-7)}
    assert moved and all(name.startswith("classifier.") for name in moved), moved


def test_a_student_started_from_a_shipped_encoder_trains_its_fresh_head_faster():
    from logdistill.model.cli.demo import demo_spec, start_from_encoder
    from logdistill.model.engine.teacher import TeacherOptions

    body = demo_spec("/teachers/mpnet")
    start_from_encoder(body, "/bases/minilm")
    spec = parse_spec(body, DistillSpec)
    assert spec.student.init == "pretrained" and spec.student.pretrained == "/bases/minilm"
    assert spec.training.head_learning_rate == TeacherOptions().head_learning_rate > spec.training.learning_rate
    # its own tokenizer: no token-by-token match to the teacher's hidden states
    assert not spec.training.intermediate.enabled
    assert parse_spec(demo_spec("/t"), DistillSpec).training.intermediate.enabled


def test_the_hard_label_student_learns_nothing_from_the_teacher():
    from logdistill.model.cli.demo import demo_spec
    from logdistill.model.engine.quality_models import StudentModel

    distilled = StudentModel(None, demo_spec("/t"), 13).spec.training
    hard = StudentModel(None, demo_spec("/t"), 13, distil=False).spec.training
    assert (distilled.alpha, distilled.intermediate.enabled) == (1.0, True)  # the demo's: soft targets only
    assert (hard.alpha, hard.intermediate.enabled) == (0.0, False)


def test_progress_writes_to_the_stderr_of_when_it_is_made_or_nowhere(monkeypatch):
    import io

    from logdistill.model.engine.train import Progress

    now = io.StringIO()
    monkeypatch.setattr("sys.stderr", now)  # e.g. a redirect made after the engine was imported
    Progress().say("made now")
    Progress(stream=None).say("silent")
    assert now.getvalue() == "[logdistill] made now\n"
