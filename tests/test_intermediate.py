"""Intermediate-layer distillation: the loss functions' properties and the training hook."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from helpers.tiny_models import tiny_bert  # noqa: E402

from logdistill.model.engine.intermediate import (  # noqa: E402
    IntermediateError, attention_mse, from_spec, hidden_mse, layer_mapping, uniform_mapping,
)
from logdistill.spec import IntermediateSpec, TeacherSpec, TrainingSpec  # noqa: E402

pytestmark = pytest.mark.torch
LABELS = ["-", "A", "B"]


@pytest.mark.parametrize("ls, lt, expected", [(2, 6, [3, 6]), (3, 6, [2, 4, 6]), (4, 12, [3, 6, 9, 12]),
                                              (1, 6, [6]), (3, 4, [1, 3, 4])])
def test_uniform_mapping_ends_at_the_teachers_top_layer(ls, lt, expected):
    assert uniform_mapping(ls, lt) == expected


def test_explicit_mapping_is_checked_against_both_models():
    assert layer_mapping([1, 5], 2, 6) == [1, 5]
    with pytest.raises(IntermediateError, match="training.intermediate.layers: 3 entries"):
        layer_mapping([1, 2, 3], 2, 6)
    with pytest.raises(IntermediateError, match=r"\[7\] outside the teacher's layers 1..6"):
        layer_mapping([1, 7], 2, 6)


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 3), seq=st.integers(1, 6), hs=st.integers(1, 5), ht=st.integers(1, 7),
       seed=st.integers(0, 1000))
def test_hidden_mse_is_zero_when_the_projected_student_equals_the_teacher(batch, seq, hs, ht, seed):
    gen = torch.Generator().manual_seed(seed)
    projection = torch.nn.Linear(hs, ht)
    student = torch.randn(batch, seq, hs, generator=gen)
    teacher = projection(student).detach()
    mask = torch.ones(batch, seq, dtype=torch.long)
    with torch.no_grad():
        assert float(hidden_mse(student, teacher, projection, mask)) == pytest.approx(0.0, abs=1e-10)
        assert float(hidden_mse(student, teacher + 1.0, projection, mask)) == pytest.approx(1.0, rel=1e-5)


@settings(max_examples=25, deadline=None)
@given(seq=st.integers(1, 5), pad=st.integers(1, 4), seed=st.integers(0, 1000))
def test_hidden_mse_ignores_padding(seq, pad, seed):
    gen = torch.Generator().manual_seed(seed)
    projection = torch.nn.Linear(4, 6)
    student, teacher = torch.randn(2, seq, 4, generator=gen), torch.randn(2, seq, 6, generator=gen)
    mask = torch.ones(2, seq, dtype=torch.long)
    plain = hidden_mse(student, teacher, projection, mask)
    # Append padding positions holding arbitrary (large) values: the loss must not move.
    padded_s = torch.cat([student, 100 * torch.randn(2, pad, 4, generator=gen)], dim=1)
    padded_t = torch.cat([teacher, -100 * torch.randn(2, pad, 6, generator=gen)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, pad, dtype=torch.long)], dim=1)
    assert float(hidden_mse(padded_s, padded_t, projection, padded_mask)) == pytest.approx(float(plain), rel=1e-5)


def test_gradient_flows_to_the_projection_and_the_student():
    projection = torch.nn.Linear(4, 6)
    student = torch.randn(2, 3, 4, requires_grad=True)
    loss = hidden_mse(student, torch.randn(2, 3, 6), projection, torch.tensor([[1, 1, 0], [1, 0, 0]]))
    loss.backward()
    assert projection.weight.grad is not None and float(projection.weight.grad.abs().sum()) > 0
    assert float(student.grad[0, :2].abs().sum()) > 0
    assert float(student.grad[0, 2].abs().sum()) == 0.0  # a padding position gets no gradient


def test_hidden_mse_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="batch and sequence sizes"):
        hidden_mse(torch.zeros(2, 3, 4), torch.zeros(2, 4, 6), torch.nn.Linear(4, 6), torch.ones(2, 3))


def test_attention_mse_averages_heads_and_ignores_padded_pairs():
    mask = torch.tensor([[1, 1, 0]])
    student = torch.rand(1, 2, 3, 3)
    teacher = student.mean(dim=1, keepdim=True).repeat(1, 4, 1, 1)  # 4 heads with the student's mean map
    assert float(attention_mse(student, teacher, mask)) == pytest.approx(0.0, abs=1e-12)
    changed = teacher.clone()
    changed[..., 2, :] += 5.0  # only pairs involving the padding position
    changed[..., :, 2] += 5.0
    assert float(attention_mse(student, changed, mask)) == pytest.approx(0.0, abs=1e-12)


def _pair(attention: bool):
    teacher = tiny_bert(60, LABELS, hidden=32, layers=4, heads=2, intermediate=64, seed=1)
    student = tiny_bert(60, LABELS, hidden=16, layers=2, heads=2, intermediate=32, seed=2)
    spec = TrainingSpec(intermediate=IntermediateSpec(enabled=True, weight=2.0, attention=attention))
    distiller = from_spec(spec.intermediate, TeacherSpec(checkpoint="t"), teacher, student)
    return teacher, student, distiller


@pytest.mark.parametrize("attention", [False, True])
def test_distiller_trains_projections_and_student_towards_the_teacher(attention):
    teacher, student, distiller = _pair(attention)
    assert distiller.mapping == [2, 4] and len(distiller.trainable_parameters()) == 4
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    batch = {"input_ids": torch.randint(5, 60, (4, 7)), "attention_mask": torch.ones(4, 7, dtype=torch.long)}
    batch["attention_mask"][0, 5:] = 0
    optimizer = torch.optim.Adam(list(student.parameters()) + distiller.trainable_parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = distiller(batch, student(**batch, **distiller.student_kwargs))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    for key, value in teacher.state_dict().items():  # the teacher is frozen
        assert torch.equal(value, teacher_before[key]), key


def test_disabled_is_none_and_an_endpoint_teacher_is_refused():
    teacher = tiny_bert(60, LABELS, hidden=32, layers=2, seed=1)
    student = tiny_bert(60, LABELS, hidden=16, layers=1, seed=2)
    assert from_spec(IntermediateSpec(), TeacherSpec(checkpoint="t"), teacher, student) is None
    endpoint = TeacherSpec(endpoint={"url": "http://127.0.0.1:1/v1", "model": "m"})
    with pytest.raises(IntermediateError, match="needs a local teacher checkpoint"):
        from_spec(IntermediateSpec(enabled=True), endpoint, None, student)


def test_fit_adds_the_intermediate_loss_and_trains_the_projections():
    from helpers.tiny_models import build_tokenizer, tiny_log_lines

    from logdistill.model.runtime.templates import mask
    from logdistill.model.engine.train import FitOptions, fit

    lines = tiny_log_lines(repeats=1)
    texts = [mask(line.split(" ", 6)[6]) for line in lines]
    labels = [LABELS.index(line.split()[0]) if line.split()[0] in LABELS else 0 for line in lines]
    tokenizer = build_tokenizer([line.split(" ", 6)[6] for line in lines])
    teacher = tiny_bert(len(tokenizer), LABELS, hidden=32, layers=2, heads=2, intermediate=64, seed=1)
    student = tiny_bert(len(tokenizer), LABELS, hidden=16, layers=1, heads=2, intermediate=32, seed=2)
    distiller = from_spec(IntermediateSpec(enabled=True), TeacherSpec(checkpoint="t"), teacher, student)
    before = distiller.projections[0].weight.detach().clone()
    options = FitOptions(epochs=1, batch_size=16, learning_rate=1e-3, warmup_ratio=0.0, weight_decay=0.0,
                         temperature=2.0, alpha=0.0, patience=1, seed=0, max_length=32)
    result = fit(student, tokenizer, templates=texts, targets=labels, teacher_probs=None, dev_templates=[],
                 dev_truth=[], labels=LABELS, options=options, auxiliary=distiller)
    assert result.epochs_run == 1
    assert not torch.equal(before, distiller.projections[0].weight.detach())


def _losses(distiller, teacher, batch, student):
    """(the distiller's loss, the same term with the teacher run on this very batch, no cache)."""
    outputs = student(**batch, **distiller.student_kwargs)
    cached = distiller(batch, outputs)
    with torch.no_grad():
        target = teacher.eval()(**batch, output_hidden_states=True, output_attentions=distiller.attention)
    mask, direct = batch["attention_mask"], 0.0
    for i, layer in enumerate(distiller.mapping):
        direct = direct + hidden_mse(outputs.hidden_states[i + 1], target.hidden_states[layer],
                                     distiller.projections[i], mask)
        if distiller.attention:
            direct = direct + attention_mse(outputs.attentions[i], target.attentions[layer - 1], mask)
    return float(cached), float(distiller.weight * direct / len(distiller.mapping))


@pytest.mark.parametrize("attention", [False, True])
def test_teacher_targets_run_the_teacher_once_per_row_and_match_it_at_any_padding(attention):
    teacher, student, distiller = _pair(attention)
    student.eval()
    calls = []
    teacher.register_forward_hook(lambda module, args, output: calls.append(1))
    ids = torch.randint(5, 60, (3, 9))
    wide = {"input_ids": ids, "attention_mask": torch.ones(3, 9, dtype=torch.long)}
    wide["attention_mask"][0, 4:] = 0
    wide["attention_mask"][1, 7:] = 0
    cached, direct = _losses(distiller, teacher, wide, student)
    assert cached == pytest.approx(direct, rel=1e-5)
    calls.clear()
    # Row 0 again, padded to another length and beside a new row: only the new row reaches the teacher.
    narrow = {"input_ids": torch.stack([ids[0, :6], torch.randint(5, 60, (6,))]),
              "attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])}
    cached, direct = _losses(distiller, teacher, narrow, student)
    assert len(calls) == 1 + 1 and len(distiller.targets.rows) == 4  # the new row, then the reference's own run
    assert cached == pytest.approx(direct, rel=1e-5)
    calls.clear()
    distiller(wide, student(**wide, **distiller.student_kwargs))
    assert calls == []  # every row known: the teacher does not run
