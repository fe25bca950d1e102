"""Student construction and initialisation from the teacher."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from helpers.tiny_models import tiny_bert  # noqa: E402

from logdistill.model.engine.student import (  # noqa: E402
    attention_heads, build_student, ffn_neurons, hidden_channels, layer_subset,
)
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
    assert "layers [1, 3]" in built.detail and built.tokenizer is None
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


def test_narrower_feed_forward_keeps_the_most_important_neurons_of_the_teacher_layer():
    teacher = tiny_bert(100, LABELS, hidden=32, layers=2, heads=2, intermediate=64, seed=1)
    t_layer = teacher.bert.encoder.layer[1]
    with torch.no_grad():  # neurons 40..63 contribute nothing: pruning them must not change the layer
        t_layer.intermediate.dense.weight[40:] = 0.0
        t_layer.intermediate.dense.bias[40:] = 0.0
        t_layer.output.dense.weight[:, 40:] = 0.0
    assert ffn_neurons(t_layer, 40).tolist() == list(range(40))
    spec = StudentSpec(layers=1, hidden=32, heads=2, intermediate=40, max_length=32, init="teacher")
    built = build_student(spec, teacher, labels=LABELS, seed=0)
    assert "top 40 of 64 feed-forward neurons" in built.detail
    s_layer = built.model.bert.encoder.layer[0]
    assert s_layer.intermediate.dense.weight.shape == (40, 32)
    teacher.eval(), built.model.eval()
    hidden = torch.randn(3, 7, 32)
    assert torch.allclose(s_layer(hidden)[0], t_layer(hidden)[0], atol=1e-5)


def test_ffn_neurons_ranks_by_read_and_write_norms():
    layer = tiny_bert(50, LABELS, hidden=16, layers=1, heads=2, intermediate=8, seed=3).bert.encoder.layer[0]
    with torch.no_grad():
        layer.intermediate.dense.weight.fill_(0.1)
        layer.output.dense.weight.fill_(0.1)
        layer.intermediate.dense.weight[5] *= 10.0  # neuron 5 reads most
        layer.output.dense.weight[:, 2] *= 5.0  # neuron 2 writes most
    assert ffn_neurons(layer, 2).tolist() == [2, 5]
    with pytest.raises(ValueError, match="cannot keep 9 of 8"):
        ffn_neurons(layer, 9)


def test_narrower_student_starts_from_the_teachers_most_important_channels_heads_and_neurons():
    teacher = tiny_bert(100, LABELS, hidden=32, layers=2, heads=4, intermediate=64, seed=1)  # head size 8
    t_bert = teacher.bert
    with torch.no_grad():  # make channels 3 and 17 stand out in what the layer reads
        t_bert.embeddings.word_embeddings.weight[:, [3, 17]] *= 20.0
    spec = StudentSpec(layers=1, hidden=24, heads=3, intermediate=32, max_length=32, init="teacher")
    built = build_student(spec, teacher, labels=LABELS, seed=0)
    assert "top 24 of 32 hidden channels, top 3 of 4 heads, top 32 of 64 feed-forward neurons" in built.detail
    channels = hidden_channels(t_bert, 24)
    assert {3, 17} <= set(channels.tolist()) and channels.tolist() == sorted(channels.tolist())
    t_layer, s_layer = t_bert.encoder.layer[1], built.model.bert.encoder.layer[0]
    heads = attention_heads(t_layer, 3, head_size=8)
    dims = (heads[:, None] * 8 + torch.arange(8)).reshape(-1)
    neurons = ffn_neurons(t_layer, 32)
    expected = {
        "attention.self.query.weight": t_layer.attention.self.query.weight[dims][:, channels],
        "attention.self.value.bias": t_layer.attention.self.value.bias[dims],
        "attention.output.dense.weight": t_layer.attention.output.dense.weight[channels][:, dims],
        "attention.output.LayerNorm.weight": t_layer.attention.output.LayerNorm.weight[channels],
        "intermediate.dense.weight": t_layer.intermediate.dense.weight[neurons][:, channels],
        "output.dense.weight": t_layer.output.dense.weight[channels][:, neurons],
        "output.LayerNorm.bias": t_layer.output.LayerNorm.bias[channels],
    }
    state = s_layer.state_dict()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    assert torch.equal(built.model.bert.embeddings.word_embeddings.weight, t_bert.embeddings.word_embeddings.weight[:, channels])
    assert torch.equal(built.model.bert.pooler.dense.weight, t_bert.pooler.dense.weight[channels][:, channels])
    assert torch.equal(built.model.classifier.weight, teacher.classifier.weight[:, channels])
    logits = built.model(input_ids=torch.tensor([[1, 5, 9]])).logits
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()


def test_attention_heads_ranks_by_value_and_output_norms():
    layer = tiny_bert(50, LABELS, hidden=16, layers=1, heads=4, intermediate=8, seed=3).bert.encoder.layer[0]
    with torch.no_grad():  # head size 4
        layer.attention.self.value.weight.fill_(0.1)
        layer.attention.output.dense.weight.fill_(0.1)
        layer.attention.self.value.weight[12:16] *= 10.0  # head 3 reads most
        layer.attention.output.dense.weight[:, 4:8] *= 5.0  # head 1 writes most
    assert attention_heads(layer, 2, head_size=4).tolist() == [1, 3]
    with pytest.raises(ValueError, match="cannot keep 5 of 4 attention heads"):
        attention_heads(layer, 5, head_size=4)


def test_a_different_head_size_falls_back_to_projected_embeddings():
    teacher = tiny_bert(100, LABELS, hidden=32, layers=2, heads=4, seed=1)  # head size 8
    spec = StudentSpec(layers=1, hidden=16, heads=4, intermediate=32, max_length=32, init="teacher")  # head size 4
    assert "PCA" in build_student(spec, teacher, labels=LABELS, seed=0).detail


def _save_pretrained_encoder(directory, vocab_texts, **shape):
    from helpers.tiny_models import build_tokenizer

    tokenizer = build_tokenizer(vocab_texts)
    model = tiny_bert(len(tokenizer), ["x", "y"], seed=2, **shape)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, tokenizer


def test_pretrained_init_copies_the_encoder_and_keeps_its_own_tokenizer(tmp_path):
    small, tokenizer = _save_pretrained_encoder(tmp_path / "small", ["disk failure detected", "job started ok"],
                                                hidden=16, layers=2, heads=2, intermediate=32)
    teacher = tiny_bert(100, LABELS, seed=1)  # another vocabulary: soft targets are computed on text
    spec = StudentSpec(init="pretrained", pretrained=str(tmp_path / "small"), layers=1, hidden=16, heads=2,
                       intermediate=32)
    built = build_student(spec, teacher, labels=LABELS, seed=0)
    student = built.model
    assert student.config.num_labels == 3 and student.config.vocab_size == len(tokenizer)
    assert built.tokenizer is not None and built.tokenizer.get_vocab() == tokenizer.get_vocab()
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, small.bert.embeddings.word_embeddings.weight)
    s_state, p_state = student.bert.encoder.layer[0].state_dict(), small.bert.encoder.layer[1].state_dict()
    assert all(torch.equal(s_state[k], p_state[k]) for k in s_state)  # the top layer of two
    assert not torch.equal(student.classifier.weight[:2], small.classifier.weight)  # the head is fresh


def test_pretrained_init_names_the_field_when_the_checkpoint_cannot_load(tmp_path):
    teacher = tiny_bert(100, LABELS, seed=1)
    spec = StudentSpec(init="pretrained", pretrained=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="student.pretrained"):
        build_student(spec, teacher, labels=LABELS, seed=0)
