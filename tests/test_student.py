"""Student construction and initialisation from the teacher."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from helpers.tiny_models import tiny_bert  # noqa: E402

from logdistill.model.student import build_student, layer_subset  # noqa: E402
from logdistill.spec import StudentSpec  # noqa: E402

pytestmark = pytest.mark.torch
LABELS = ["-", "A", "B"]


@pytest.mark.parametrize(
    "teacher, student, picks",
    [(6, 2, [2, 5]), (6, 3, [1, 3, 5]), (12, 4, [2, 5, 8, 11]), (4, 4, [0, 1, 2, 3]), (6, 1, [5])],
)
def test_layer_subset_is_uniform_and_ends_at_the_top(teacher, student, picks):
    assert layer_subset(teacher, student) == picks


def test_layer_subset_refuses_more_layers_than_the_teacher():
    with pytest.raises(ValueError):
        layer_subset(2, 3)


def test_teacher_init_with_same_width_copies_a_layer_subset_exactly():
    teacher = tiny_bert(100, LABELS, hidden=32, layers=4, heads=2, intermediate=64, seed=1)
    spec = StudentSpec(layers=2, hidden=32, heads=2, intermediate=64, max_length=32, init="teacher")
    built = build_student(spec, teacher, labels=LABELS, seed=0)
    student = built.model
    assert "teacher layers [1, 3]" in built.detail
    for s_index, t_index in enumerate([1, 3]):
        s_state = student.bert.encoder.layer[s_index].state_dict()
        t_state = teacher.bert.encoder.layer[t_index].state_dict()
        assert s_state.keys() == t_state.keys()
        for key in s_state:
            assert torch.equal(s_state[key], t_state[key]), key
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)


def test_teacher_init_with_smaller_width_projects_embeddings_by_pca():
    teacher = tiny_bert(100, LABELS, hidden=32, layers=2, seed=1)
    spec = StudentSpec(layers=1, hidden=16, heads=2, intermediate=32, max_length=32, init="teacher")
    built = build_student(spec, teacher, labels=LABELS, seed=0)
    words = built.model.bert.embeddings.word_embeddings.weight.detach()
    assert words.shape == (100, 16)
    assert "PCA" in built.detail
    # The projection keeps the teacher's geometry: the principal directions carry most variance,
    # so pairwise similarities correlate with the teacher's (a random init would not).
    t_words = teacher.bert.embeddings.word_embeddings.weight.detach()
    t_centered = t_words - t_words.mean(0)
    s_sim, t_sim = (words @ words.T).flatten(), (t_centered @ t_centered.T).flatten()
    corr = torch.corrcoef(torch.stack([s_sim, t_sim]))[0, 1]
    assert corr > 0.6
    # Projected columns are uncorrelated (PCA basis) and in decreasing variance order.
    variances = words.var(dim=0)
    assert variances[0] >= variances[-1]


def test_scratch_init_does_not_copy_the_teacher():
    teacher = tiny_bert(100, LABELS, hidden=32, layers=2, seed=1)
    spec = StudentSpec(layers=2, hidden=32, heads=2, intermediate=64, max_length=32, init="scratch")
    student = build_student(spec, teacher, labels=LABELS, seed=0).model
    assert not torch.equal(student.bert.encoder.layer[0].attention.self.query.weight,
                           teacher.bert.encoder.layer[0].attention.self.query.weight)
    assert student.config.num_labels == 3 and student.config.id2label[0] == "-"


def test_build_is_seeded():
    teacher = tiny_bert(100, LABELS, seed=1)
    spec = StudentSpec(layers=1, hidden=16, heads=2, intermediate=32, init="scratch")
    a = build_student(spec, teacher, labels=LABELS, seed=7).model
    b = build_student(spec, teacher, labels=LABELS, seed=7).model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_pretrained_init_refuses_a_different_vocabulary(tmp_path):
    other = tiny_bert(50, LABELS, seed=2)
    other.save_pretrained(tmp_path / "small")
    teacher = tiny_bert(100, LABELS, seed=1)
    spec = StudentSpec(init="pretrained", pretrained=str(tmp_path / "small"), hidden=32, heads=2)
    with pytest.raises(ValueError, match="vocabulary"):
        build_student(spec, teacher, labels=LABELS, seed=0)


def test_pretrained_init_loads_the_encoder(tmp_path):
    small = tiny_bert(100, ["x", "y"], hidden=16, layers=1, heads=2, intermediate=32, seed=2)
    small.save_pretrained(tmp_path / "small")
    teacher = tiny_bert(100, LABELS, seed=1)
    spec = StudentSpec(init="pretrained", pretrained=str(tmp_path / "small"))
    student = build_student(spec, teacher, labels=LABELS, seed=0).model
    assert student.config.num_labels == 3 and student.config.hidden_size == 16
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, small.bert.embeddings.word_embeddings.weight)
