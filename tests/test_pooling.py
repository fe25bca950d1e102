"""``--teacher-pooling``: what a teacher's head reads, [CLS] through BERT's pooler or the mean of the last layer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from helpers.tiny_models import build_tokenizer, tiny_bert, tiny_log_lines  # noqa: E402

from logdistill.model.engine.pooling import MeanPooledBert, masked_mean, sequence_classifier  # noqa: E402
from logdistill.model.engine.teacher import TeacherOptions, fine_tune, train_teacher  # noqa: E402
from logdistill.model.runtime.data import LogRecord  # noqa: E402

pytestmark = pytest.mark.torch

LABELS = ["-", "APPERR", "KERNFAIL"]


def test_the_masked_mean_counts_only_real_tokens():
    states = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    pooled = masked_mean(states, mask)
    assert pooled.shape == (3, 4)
    torch.testing.assert_close(pooled[0], states[0, :3].mean(dim=0))
    torch.testing.assert_close(pooled[1], states[1].mean(dim=0))
    assert torch.equal(pooled[2], torch.zeros(4))  # no token: zeros, not a division by zero
    noisy = states.clone()
    noisy[0, 3:] = 1e6  # what sits under the padding never counts
    torch.testing.assert_close(masked_mean(noisy, mask)[0], pooled[0])


@pytest.fixture()
def tiny_base(tmp_path):
    """A saved tiny BERT encoder and tokenizer, as a shipped base is: no classification head."""
    texts = [line.split(" ", 1)[1] for line in tiny_log_lines()]
    tokenizer = build_tokenizer(texts)
    tiny_bert(len(tokenizer), LABELS).bert.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return tmp_path / "base", tokenizer, texts


def _head(base, pooling):
    return sequence_classifier(str(base), pooling, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                               label2id={label: i for i, label in enumerate(LABELS)}).eval()


def test_a_mean_pooled_classifier_reads_the_mean_of_its_tokens_and_never_the_pooler(tiny_base):
    base, tokenizer, texts = tiny_base
    model = _head(base, "mean")
    assert isinstance(model, MeanPooledBert)
    model.set_attn_implementation("eager")  # as the intermediate-layer loss sets it, to be given attention maps
    batch = tokenizer(texts[:2] + ["fan"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True, output_attentions=True)
        states = model.bert(**batch).last_hidden_state
        torch.testing.assert_close(out.logits, model.classifier(masked_mean(states, batch["attention_mask"])))
        assert len(out.hidden_states) == 3 and len(out.attentions) == 2  # the intermediate-layer loss reads them
        alone = model(**tokenizer(["fan"], return_tensors="pt")).logits
        torch.testing.assert_close(out.logits[2:], alone, atol=1e-5, rtol=1e-4)  # a padded row answers as alone

        cls = _head(base, "cls")
        before_mean, before_cls = out.logits, cls(**batch).logits
        for head in (model, cls):
            torch.nn.init.normal_(head.bert.pooler.dense.weight)
        torch.testing.assert_close(model(**batch).logits, before_mean)  # the pooler is not read
        assert not torch.allclose(cls(**batch).logits, before_cls)  # where [CLS] pooling reads it


def test_a_teacher_fine_tuned_with_mean_pooling_learns_the_alert_words(tiny_base):
    base, _, _ = tiny_base
    lines = tiny_log_lines(seed=1)
    records = [LogRecord(line.split(" ", 1)[1], line.split(" ", 1)[0], "tiny", i + 1) for i, line in enumerate(lines)]
    options = TeacherOptions(epochs=12, batch_size=8, learning_rate=3e-3, head_learning_rate=3e-3, max_length=32,
                             threads=1, pooling="mean")
    tuned = fine_tune(SimpleNamespace(train=records, dev=[]), str(base), options,
                      progress=SimpleNamespace(say=lambda *a: None, update=lambda *a, **k: None))
    assert isinstance(tuned.model, MeanPooledBert)
    from logdistill.model.engine.quality_models import _score  # the bench's own answer
    from logdistill.model.runtime.templates import model_input

    predicted = _score(tuned.model, tuned.tokenizer, tuned.labels, tuned.normal,
                       [model_input(options.input)(r.text) for r in records], options.max_length).labels
    right = sum(p == r.label for p, r in zip(predicted, records))
    assert right / len(records) > 0.9, right


def test_pooling_is_a_closed_set_and_mean_pooling_is_never_saved(tiny_base, tmp_path):
    with pytest.raises(ValueError, match="unknown pooling 'max'; choose from cls, mean"):
        TeacherOptions(pooling="max")
    with pytest.raises(ValueError, match="pooling mean: a saved teacher is reloaded as a \\[CLS\\] classifier"):
        train_teacher(None, "unused", tmp_path / "teacher", TeacherOptions(pooling="mean"))
    assert not (tmp_path / "teacher").exists()
    from transformers import RobertaConfig

    RobertaConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=8).save_pretrained(tmp_path / "roberta")
    with pytest.raises(ValueError, match="pooling mean is built for BERT encoders .* is a roberta encoder"):
        _head(tmp_path / "roberta", "mean")


def test_bench_quality_refuses_an_unknown_pooling(capsys):
    from logdistill.cli import main as cli

    with pytest.raises(SystemExit):
        cli(["bench", "quality", "--teacher-pooling", "max"])
    assert "invalid choice: 'max'" in capsys.readouterr().err
