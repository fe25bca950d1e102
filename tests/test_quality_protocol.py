"""The quality protocol (issue 16): its folds, its cheap baselines, its summary, and `bench quality --quick`
end to end on a tiny file with the cheap models."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from logdistill.model.engine.baseline import UNSEEN_TEMPLATE, JaccardNearestNeighbour, NeverSeenTemplateAlert
from logdistill.model.engine.quality import (ProtocolConfig, Scored, agreement, fold_scores, markdown,
                                            probability_distance, run, summarise)
from logdistill.model.runtime.data import NORMAL_LABEL, LogRecord
from logdistill.model.runtime.folds import categories_with, chronological_fold, leave_category_out, template_kfold
from logdistill.model.runtime.templates import mask

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()
TEMPLATES = {NORMAL_LABEL: 12, "KERNA": 4, "KERNB": 3, "APPC": 1, "APPD": 1}


def synthetic(templates_per_label=TEMPLATES, lines_per_template: int = 4) -> list[LogRecord]:
    """BGL-shaped lines; one masked template per (label, index), variables differ per line."""
    records = []
    for repeat in range(lines_per_template):
        for label, count in templates_per_label.items():
            for t in range(count):
                name = "normal" if label == NORMAL_LABEL else label.lower()
                text = (f"{1117838583 + len(records)} 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.43.03.62 "
                        f"R02-M1-N0-C:J12-U11 RAS KERNEL INFO {name} {WORDS[t]} event value {repeat * 7 + t}")
                records.append(LogRecord(text, label, "synthetic", len(records) + 1))
    return records


def _templates(records, indices):
    return {mask(records[i].text) for i in indices}


@pytest.mark.parametrize("seed", [13, 21])
def test_kfold_is_template_disjoint_and_every_fold_holds_alert_templates(seed):
    records = synthetic()
    folds = template_kfold(records, 5, seed)
    assert len(folds) == 5
    seen: set[str] = set()
    tested = []
    for fold in folds:
        test_templates = _templates(records, fold.test)
        assert not test_templates & _templates(records, fold.train)  # no template on both sides
        assert not test_templates & seen  # no template in two folds
        seen |= test_templates
        tested += fold.test
        alerts = {records[i].label for i in fold.test} - {NORMAL_LABEL}
        assert alerts, f"{fold.name} holds no alert template"
        assert set(fold.train) | set(fold.test) == set(range(len(records)))
    assert sorted(tested) == list(range(len(records)))  # each line tested exactly once
    # 9 alert templates over 5 folds: 1 or 2 each (dealt round-robin across categories).
    per_fold = [len(_templates(records, f.test) & {mask(r.text) for r in records if r.label != NORMAL_LABEL})
                for f in folds]
    assert sorted(per_fold) == [1, 2, 2, 2, 2]


def test_kfold_seeds_move_single_template_categories_and_refuse_too_few_alert_templates():
    records = synthetic()
    where = {seed: next(f.name.split(" fold ")[1] for f in template_kfold(records, 5, seed)
                        if any(records[i].label == "APPC" for i in f.test)) for seed in range(6)}
    assert len(set(where.values())) > 1
    with pytest.raises(ValueError, match="2 alert template"):
        template_kfold(synthetic({NORMAL_LABEL: 6, "KERNA": 2}), 3, 13)


def test_leave_one_category_out_holds_out_exactly_one_category_and_unseen_normal_templates():
    records = synthetic(lines_per_template=4)  # APPC, APPD: 4 lines each; KERNA 16, KERNB 12
    assert categories_with(records, 10) == ["KERNA", "KERNB"]
    folds = leave_category_out(records, 10, seed=13)
    assert [f.held_out for f in folds] == ["KERNA", "KERNB"]
    for fold in folds:
        test_labels = Counter(records[i].label for i in fold.test)
        assert set(test_labels) == {NORMAL_LABEL, fold.held_out}
        assert test_labels[fold.held_out] == sum(r.label == fold.held_out for r in records)
        train_labels = {records[i].label for i in fold.train}
        assert fold.held_out not in train_labels
        assert train_labels == set(TEMPLATES) - {fold.held_out}  # the other categories train, whole
        assert not _templates(records, fold.test) & _templates(records, fold.train)
    assert leave_category_out(records, 100, seed=13) == []


def test_chronological_fold_trains_on_the_first_lines_only():
    records = synthetic()
    fold = chronological_fold(records, seed=13, train_fraction=0.8)
    assert max(fold.train) < min(fold.test)
    assert len(fold.train) == round(0.8 * len(records)) and len(fold.train) + len(fold.test) == len(records)


def test_jaccard_nearest_neighbour_picks_the_template_with_most_shared_tokens():
    model = JaccardNearestNeighbour().fit(
        ["disk sda failed on node 4", "user alice logged in", "user bob logged out", "cache parity error corrected"],
        ["DISK", "-", "-", "-"])
    assert model.predict(["disk sdb failed on node 9", "user carol logged in from 10.0.0.1",
                          "cache parity error detected"]) == ["DISK", "-", "-"]
    # Two equally near neighbours vote; a tie of the vote goes to the smallest label.
    tie = JaccardNearestNeighbour().fit(["a b x", "a b y"], ["Z", "Y"])
    assert tie.predict(["a b"]) == ["Y"]


def test_never_seen_template_flags_only_unseen_templates():
    model = NeverSeenTemplateAlert().fit(["job 12 started", "job 13 started", "disk 4 failed"], ["-", "-", "DISK"])
    assert model.predict(["job 99 started", "disk 7 failed", "kernel panic at 0x1f"]) == ["-", "DISK", UNSEEN_TEMPLATE]


def test_fold_scores_count_any_alert_label_as_flagged():
    truth = ["-", "-", "-", "-", "KERNA", "KERNA", "KERNA", "KERNA"]
    predicted = ["-", "-", "-", "KERNB", "KERNB", "KERNA", "-", UNSEEN_TEMPLATE]
    scores = fold_scores(truth, predicted)
    assert scores["alertRecall"] == pytest.approx(0.75)
    assert scores["normalFpr"] == pytest.approx(0.25)
    assert scores["categories"] == {"KERNA": {"lines": 4, "flagged": 3, "named": 1}}


def test_one_spurious_label_costs_the_plain_macro_f1_a_zero_but_not_the_folds_labels_one():
    truth = ["-"] * 8 + ["KERNA"] * 2
    perfect = fold_scores(truth, truth)
    spurious = fold_scores(truth, ["-"] * 7 + ["KERNB"] + ["KERNA"] * 2)  # one normal line named KERNB
    assert perfect["macroF1"] == perfect["macroF1Supported"] == 1.0
    # -: F1 14/15, KERNA: 1, KERNB (absent from the truth): 0.
    assert spurious["macroF1"] == pytest.approx((14 / 15 + 1 + 0) / 3)
    assert spurious["macroF1Supported"] == pytest.approx((14 / 15 + 1) / 2)


def test_agreement_with_the_teacher_counts_labels_and_the_alerts_it_keeps():
    teacher = ["-", "-", "KERNA", "KERNA", "KERNB", "-"]
    student = ["-", "KERNA", "KERNB", "KERNA", "-", "-"]
    scores = agreement(student, teacher)
    assert scores["teacherAgreement"] == pytest.approx(3 / 6)
    assert scores["teacherAlertAgreement"] == pytest.approx(2 / 3)  # another alert label still keeps the flag
    assert agreement(["-", "-"], ["-", "-"])["teacherAlertAgreement"] is None  # the teacher flags nothing


class _Fixed:
    """A model that predicts ``label`` for lines containing ``word``, else normal."""

    def __init__(self, word: str) -> None:
        self.word = word

    def fit(self, texts, labels):
        self.alert = next(label for text, label in zip(texts, labels) if label != NORMAL_LABEL)
        return self

    def predict(self, texts):
        return [self.alert if self.word in text else NORMAL_LABEL for text in texts]


def test_protocol_scores_every_other_model_against_the_teacher_on_the_same_test_lines():
    records = synthetic()
    models = {"teacher": lambda seed: _Fixed("kerna"), "copy": lambda seed: _Fixed("kerna"),
              "other": lambda seed: _Fixed("kernb")}
    result = run(records, ProtocolConfig(folds=3, seeds=(1,), protocols=("kfold",)), models)
    for row in result["folds"]:
        assert "teacherAgreement" not in row["models"]["teacher"]
        assert row["models"]["copy"]["teacherAgreement"] == 1.0
        assert row["models"]["other"]["teacherAgreement"] < 1.0
        assert row["models"]["copy"]["teacherF1Ratio"] == 1.0
        assert row["models"]["other"]["teacherF1Ratio"] == pytest.approx(
            row["models"]["other"]["macroF1"] / row["models"]["teacher"]["macroF1"])
    summary = result["summary"]["kfold"]
    assert summary["other"]["teacherAlertAgreement"]["worst"] == 0.0  # "kernb" lines are never "kerna" lines
    assert summary["teacher"]["teacherAgreement"] is None
    assert "agrees with the teacher" in markdown(result) and "÷ the teacher's" in markdown(result)
    assert summary["other"]["teacherF1Ratio"]["worst"] < 1.0 and summary["copy"]["teacherF1Ratio"]["worst"] == 1.0


def test_probability_distance_is_the_mean_total_variation_over_both_models_classes():
    teacher = Scored(["-", "KERNA"], ["-", "KERNA"], np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert probability_distance(teacher, teacher) == 0.0
    # The same two lines with the classes in another order: the same distributions.
    reordered = Scored(["-", "KERNA"], ["KERNA", "-"], np.array([[0.1, 0.9], [0.8, 0.2]]))
    assert probability_distance(reordered, teacher) == pytest.approx(0.0)
    # Line 1 moves 0.3 of its mass, line 2 none: mean 0.15, in either direction.
    unsure = Scored(["-", "KERNA"], ["-", "KERNA"], np.array([[0.6, 0.4], [0.2, 0.8]]))
    assert probability_distance(unsure, teacher) == pytest.approx(0.15)
    assert probability_distance(teacher, unsure) == pytest.approx(0.15)
    # A class the teacher does not have counts as probability 0 there; nothing in common is distance 1.
    elsewhere = Scored(["KERNB", "KERNB"], ["KERNB"], np.array([[1.0], [1.0]]))
    assert probability_distance(elsewhere, teacher) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="1 lines scored against 2"):
        probability_distance(Scored(["-"], ["-"], np.array([[1.0]])), teacher)


class _FixedScored(_Fixed):
    """:class:`_Fixed` with its probabilities: ``sure`` on its answer, the rest on the other label."""

    def __init__(self, word: str, sure: float) -> None:
        super().__init__(word)
        self.sure = sure

    def score(self, texts):
        labels = self.predict(texts)
        classes = [NORMAL_LABEL, self.alert]
        probs = np.array([[self.sure, 1 - self.sure] if label == NORMAL_LABEL else [1 - self.sure, self.sure]
                          for label in labels]).reshape(len(labels), 2)
        return Scored(labels, classes, probs)


def test_protocol_measures_how_far_a_scored_model_is_from_the_teachers_probabilities():
    """Two students that give the teacher's label on every line, one as sure as the teacher and one less so: the
    agreement cannot tell them apart, the distance can; a model without probabilities gets no distance."""
    records = synthetic()
    models = {"teacher": lambda seed: _FixedScored("kerna", 0.9), "same": lambda seed: _FixedScored("kerna", 0.9),
              "unsure": lambda seed: _FixedScored("kerna", 0.6), "labels only": lambda seed: _Fixed("kerna")}
    result = run(records, ProtocolConfig(folds=3, seeds=(1,), protocols=("kfold",)), models)
    for row in result["folds"]:
        scores = row["models"]
        assert scores["same"]["teacherAgreement"] == scores["unsure"]["teacherAgreement"] == 1.0
        assert scores["same"]["teacherDistance"] == pytest.approx(0.0)
        assert scores["unsure"]["teacherDistance"] == pytest.approx(0.3)
        assert "teacherDistance" not in scores["labels only"] and "teacherDistance" not in scores["teacher"]
    summary = result["summary"]["kfold"]
    assert summary["unsure"]["teacherDistance"]["worst"] == pytest.approx(0.3)
    assert summary["labels only"]["teacherDistance"] is None
    table = markdown(result)
    assert "distance to the teacher's probabilities" in table
    assert "| 0.300 ± 0.000 (worst 0.300) |" in table.split("| unsure |")[1].splitlines()[0]


def test_summary_reports_mean_sd_and_the_worst_fold_per_metric():
    def row(f1, fpr):
        return {"protocol": "kfold", "models": {"m": {"macroF1": f1, "alertRecall": f1, "alertF1": f1,
                                                      "normalFpr": fpr, "fitSeconds": 1.0}}}

    summary = summarise([row(0.9, 0.01), row(0.5, 0.03), row(0.7, 0.02)])["kfold"]["m"]
    assert summary["macroF1"]["mean"] == pytest.approx(0.7) and summary["macroF1"]["worst"] == 0.5
    assert summary["macroF1"]["sd"] == pytest.approx(0.2)
    assert summary["normalFpr"]["worst"] == 0.03  # the worst false-positive rate is the highest


def test_bench_quality_quick_with_cheap_models_writes_json_and_tables(tmp_path, capsys):
    from logdistill.cli import main as cli

    data = tmp_path / "tiny.log"
    data.write_text("".join(f"{r.label} {r.text}\n" for r in synthetic()))
    out = tmp_path / "out"
    assert cli(["bench", "quality", "--quick", "--models", "cheap", "--data", str(data), "--loco-min-lines", "10",
                "--out", str(out)]) == 0
    result = json.loads((out / "bench-quality.json").read_text())
    assert result["config"]["seeds"] == [13]
    assert [(r["protocol"], r["heldOut"]) for r in result["folds"]] == [("loco", "KERNA")]  # the largest category
    assert set(result["summary"]) == {"loco"}
    unseen = result["summary"]["loco"]["never-seen template = alert"]
    assert unseen["normalFpr"]["mean"] == 1.0  # the fold's normal test templates are unseen too
    assert set(result["perCategory"]) == {"KERNA"}
    printed = capsys.readouterr().out
    assert "| TF-IDF + LR |" in printed and "per held-out category" in printed
    assert (out / "bench-quality.md").read_text().strip() in printed
    kept = [json.loads(line) for line in (out / "bench-quality.folds.jsonl").read_text().splitlines()]
    assert kept == result["folds"]  # every fold's row, written as it was scored


def test_protocol_hands_each_fold_row_over_as_soon_as_it_is_scored():
    records = synthetic()
    seen: list[int] = []
    fitted: list[int] = []

    class Counting(_Fixed):
        def fit(self, texts, labels):
            fitted.append(len(seen))
            return super().fit(texts, labels)

    result = run(records, ProtocolConfig(folds=3, seeds=(1,), protocols=("kfold",)),
                 {"m": lambda seed: Counting("kerna")}, on_row=lambda row: seen.append(row["testLines"]))
    assert fitted == [0, 1, 2]  # fold k's row was handed over before fold k+1 was fitted
    assert seen == [row["testLines"] for row in result["folds"]]


def test_bench_quality_refuses_an_unknown_model_or_input(capsys):
    from logdistill.cli import main as cli

    with pytest.raises(SystemExit):
        cli(["bench", "quality", "--models", "tfidf,gpt"])
    assert "unknown model 'gpt'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["bench", "quality", "--teacher-input", "raw"])
    assert "invalid choice: 'raw'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["bench", "quality", "--teacher-seeds", "0"])
    assert "--teacher-seeds: expected a number of teachers >= 1, got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["bench", "quality", "--teacher-alert-below", "1.5"])
    assert "--teacher-alert-below: expected a probability in (0, 1], got '1.5'" in capsys.readouterr().err


def test_a_teacher_ensemble_answers_by_its_members_mean_probabilities_and_its_bar(monkeypatch):
    """Two members that disagree: the mean decides (top label), a bar on the mean's P(normal) turns an unsure
    mean into the most likely alert; members whose labels come in another order are aligned first."""
    torch = pytest.importorskip("torch")
    from logdistill.model.engine import teachers
    from logdistill.model.engine.quality_models import TeacherEnsemble

    class Member:  # a fitted TeacherModel as the ensemble reads it; its "model" is its probabilities
        def __init__(self, labels, probs):
            self.tuned = SimpleNamespace(labels=labels, normal="-")
            self.text_input = str
            self._loaded = SimpleNamespace(model=probs, tokenizer=None, labels=labels, normal="-", max_length=8)

        def loaded(self):
            return self._loaded

    monkeypatch.setattr(teachers, "predict_logits",
                        lambda model, tokenizer, templates, max_length: torch.log(torch.tensor(model)))
    sure = Member(["-", "KERNSTOR", "KERNDTLB"], [[0.9, 0.05, 0.05], [0.9, 0.1, 1e-9]])
    unsure = Member(["KERNDTLB", "-", "KERNSTOR"], [[0.1, 0.2, 0.7], [1e-9, 0.9, 0.1]])  # another label order
    # Line 1: mean P(normal) 0.55, most likely alert KERNSTOR (0.375); line 2: both say normal (0.9).
    assert TeacherEnsemble([sure, unsure]).predict(["a", "b"]) == ["-", "-"]
    assert TeacherEnsemble([sure, unsure], alert_below=0.7).predict(["a", "b"]) == ["KERNSTOR", "-"]
    assert TeacherEnsemble([unsure], alert_below=0.7).predict(["a", "b"]) == ["KERNSTOR", "-"]
    with pytest.raises(ValueError, match="at least one member"):
        TeacherEnsemble([])


def test_students_of_a_teacher_ensemble_learn_from_every_member(tmp_path, monkeypatch):
    """`bench quality --teacher-seeds 2`: each fold fine-tunes teachers of the fold's seed and the next, and the
    students' teacher source mixes both; a bar of 1.0 on the teacher makes every line an alert."""
    pytest.importorskip("torch")
    from helpers.tiny_models import build_tokenizer, tiny_bert, tiny_log_lines

    from logdistill.model.cli.demo import protocol_models
    from logdistill.model.engine import quality_models
    from logdistill.model.engine.teacher import TeacherOptions
    from logdistill.model.engine.train import Progress

    lines = tiny_log_lines(seed=5)
    texts, labels = [line.split(" ", 1)[1] for line in lines], [line.split(" ", 1)[0] for line in lines]
    base = tmp_path / "base"
    tokenizer = build_tokenizer(texts)
    tiny_bert(len(tokenizer), ["-", "APPERR", "KERNFAIL"]).bert.save_pretrained(base)
    tokenizer.save_pretrained(base)
    seeds = []
    real_fit = quality_models.TeacherModel.fit
    monkeypatch.setattr(quality_models.TeacherModel, "fit",
                        lambda self, t, l: seeds.append(self.options.seed) or real_fit(self, t, l))
    sources = []
    real_source = quality_models.TeacherEnsemble.source
    monkeypatch.setattr(quality_models.TeacherEnsemble, "source",
                        lambda self: sources.append(real_source(self)) or sources[-1])
    options = TeacherOptions(epochs=2, batch_size=8, learning_rate=3e-3, max_length=32, threads=1)
    models = protocol_models(str(base), options, 2, student={"layers": 1, "hidden": 32, "heads": 2,
                                                              "intermediate": 32, "maxLength": 32},
                             progress=Progress(stream=None), rows=("teacher", "student"), teachers=2,
                             teacher_alert_below=1.0)
    teacher, student = models["teacher"](7), models["student distilled"](7)
    teacher.fit(texts, labels)
    student.fit(texts, labels)  # the same lines and seed: the shared ensemble is not fitted again
    assert seeds == [7, 8]
    assert [len(source.members) for source in sources] == [2]
    assert {weight for _, weight in sources[0].members} == {1.0}
    assert "-" not in teacher.predict(texts)  # every mean P(normal) is below 1.0


def test_protocol_config_picks_folds_per_seed_and_the_chosen_categories():
    from logdistill.model.engine.quality import ProtocolConfig, build_folds

    records = synthetic()
    folds = build_folds(records, ProtocolConfig(folds=3, seeds=(1, 2), loco_min_lines=10, loco_categories=("KERNB",)))
    assert [(f.protocol, f.seed) for f in folds] == [("kfold", 1)] * 3 + [("loco", 1), ("chrono", 1)] \
        + [("kfold", 2)] * 3 + [("loco", 2), ("chrono", 2)]
    assert {f.held_out for f in folds if f.protocol == "loco"} == {"KERNB"}
    with pytest.raises(ValueError, match="unknown protocol"):
        ProtocolConfig(protocols=("kfold", "random"))


def test_light_mask_keeps_the_words_of_a_bgl_message_and_masks_only_digits_and_hex():
    from logdistill.model.runtime.templates import light_mask

    line = ("1117869876 2005.06.04 R27-M1-L2-U18-C 2005-06-04-00.24.36.222560 R27-M1-L2-U18-C RAS KERNEL FATAL"
            " rts: kernel terminated for reason 1004 at 0x00d2a4f0 dstat=3f2e added")
    assert light_mask(line) == "KERNEL FATAL rts: kernel terminated for reason 0 at 0 dstat=0 added"  # "added": hex letters, no digit: a word
    assert light_mask("user alice logged in 3 times") == "user alice logged in 0 times"  # not BGL: whole text


@pytest.mark.torch
def test_teacher_and_students_train_per_fold_with_the_engine_and_share_one_teacher(tmp_path, monkeypatch):
    """The expensive rows on a tiny BERT base: each fold fits one teacher (shared by the three rows), the
    students are distilled from it by the engine's pipeline, and they learn the alert templates' words."""
    pytest.importorskip("torch")
    from helpers.tiny_models import build_tokenizer, tiny_bert, tiny_log_lines

    from logdistill.model.cli.demo import protocol_models
    from logdistill.model.engine import quality_models
    from logdistill.model.engine.teacher import TeacherOptions
    from logdistill.model.engine.train import Progress

    lines = tiny_log_lines(seed=3)
    records = [LogRecord(line.split(" ", 1)[1], line.split(" ", 1)[0], "tiny", i + 1) for i, line in enumerate(lines)]
    base = tmp_path / "base"
    tokenizer = build_tokenizer([r.text for r in records])
    tiny_bert(len(tokenizer), ["-", "APPERR", "KERNFAIL"]).bert.save_pretrained(base)  # an encoder, no head
    tokenizer.save_pretrained(base)
    fits = []
    real_fit = quality_models.TeacherModel.fit
    monkeypatch.setattr(quality_models.TeacherModel, "fit",
                        lambda self, texts, labels: fits.append(len(texts)) or real_fit(self, texts, labels))
    options = TeacherOptions(epochs=20, batch_size=8, learning_rate=3e-3, head_learning_rate=3e-3, max_length=32,
                             patience=20, threads=1)
    models = protocol_models(str(base), options, 8, student={"layers": 1, "hidden": 32, "heads": 2,
                                                              "intermediate": 32, "maxLength": 32},
                             progress=Progress(stream=None))  # silent
    assert list(models) == ["teacher", "student distilled", "student hard labels"]
    result = run(records, ProtocolConfig(folds=3, seeds=(1,), protocols=("kfold",)), models)
    assert len(fits) == 3  # one teacher per fold, not one per row
    summary = result["summary"]["kfold"]
    for name in models:
        assert not summary[name]["errors"]
    # Alert templates share their words ("failure detected", "error raised") across folds: learnable.
    assert summary["teacher"]["alertRecall"]["mean"] > 0.8
    assert summary["student distilled"]["alertRecall"]["mean"] > 0.8
    assert summary["student distilled"]["teacherAgreement"]["mean"] > 0.8
    for student in ("student distilled", "student hard labels"):  # both give their probabilities
        assert 0.0 < summary[student]["teacherDistance"]["mean"] < 1.0


def test_the_distilled_students_extra_data_joins_its_transfer_set_unlabelled(tmp_path):
    """`bench quality --student-extra-data`: other systems' lines (no label) reach the fold student's transfer
    set as unlabelled inputs (soft targets from the fold's teacher, no hard label)."""
    pytest.importorskip("torch")
    from helpers.tiny_models import build_tokenizer, tiny_bert, tiny_log_lines

    from logdistill.model.cli.demo import protocol_models
    from logdistill.model.engine.losses import UNLABELLED
    from logdistill.model.engine.quality_models import StudentModel
    from logdistill.model.engine.teacher import TeacherOptions
    from logdistill.model.engine.train import Progress

    lines = tiny_log_lines(seed=5)
    texts, labels = [line.split(" ", 1)[1] for line in lines], [line.split(" ", 1)[0] for line in lines]
    extra = tmp_path / "other.jsonl"
    other = ["sshd[21] accepted publickey for root from 10.0.0.1", "GET /index.html 200 1043 bytes"]
    extra.write_text("".join(json.dumps({"text": text}) + "\n" for text in other))
    base = tmp_path / "base"
    tokenizer = build_tokenizer(texts + other)
    tiny_bert(len(tokenizer), ["-", "APPERR", "KERNFAIL"]).bert.save_pretrained(base)
    tokenizer.save_pretrained(base)
    options = TeacherOptions(epochs=2, batch_size=8, learning_rate=3e-3, max_length=32, threads=1)
    models = protocol_models(str(base), options, 2, student={"layers": 1, "hidden": 32, "heads": 2,
                                                              "intermediate": 32, "maxLength": 32},
                             progress=Progress(stream=None), rows=("student",), extra_data=(str(extra),))
    student = models["student distilled"](1)
    assert isinstance(student, StudentModel)
    student.fit(texts, labels)
    transfer = student.trained.transfer
    inputs = [student.text_input(text) for text in other]
    assert set(inputs) <= set(transfer.train_templates)
    assert all(transfer.targets[transfer.templates.index(i)] == UNLABELLED for i in inputs)


@pytest.mark.torch
def test_the_demo_scores_its_own_teacher_and_student_on_its_split_without_training_them_again(tmp_path, monkeypatch):
    """`logdistill demo`'s quick protocol: the split holds a category out whole (data.holdOutLabels); the published
    artifacts are scored as they are (int8 ONNX) on exactly its test lines; the hard-label student and the baselines
    are fitted on every other line, the held-out category never among them."""
    pytest.importorskip("torch")
    from helpers.tiny_models import build_tiny_teacher, tiny_log_lines

    from logdistill.model.cli.demo import own_split_protocol
    from logdistill.model.engine import quality_models
    from logdistill.model.engine.train import Progress
    from logdistill.model.runtime.data import load_records
    from logdistill.model.runtime.splits import make_split
    from logdistill.spec import DataSpec

    data = tmp_path / "tiny.log"
    data.write_text("\n".join(tiny_log_lines(seed=4)) + "\n")
    spec = DataSpec(path=str(data), hold_out_labels=["KERNFAIL"])
    records = load_records(spec).records
    split = make_split(records, spec, 13)
    teacher = build_tiny_teacher(tmp_path, [r.label for r in split.train], [r.text for r in split.train], epochs=10)
    fitted: list[list[str]] = []
    real_fit = quality_models.StudentModel.fit
    monkeypatch.setattr(quality_models.StudentModel, "fit",
                        lambda self, texts, labels: fitted.append(list(labels)) or real_fit(self, texts, labels))
    result = own_split_protocol(spec, 13, teacher, teacher, 1, Progress(stream=None),
                                student={"layers": 1, "hidden": 32, "heads": 2, "intermediate": 32, "maxLength": 32})
    (row,) = result["folds"]
    assert (row["protocol"], row["heldOut"]) == ("loco", "KERNFAIL")
    assert row["testLines"] == len(split.test) and row["trainLines"] == len(records) - len(split.test)
    (labels,) = fitted  # the hard-label student only: the artifacts are not trained again
    assert "KERNFAIL" not in labels and "APPERR" in labels
    models = row["models"]
    assert set(models) == {"teacher", "student distilled", "student hard labels", "TF-IDF + LR",
                           "1-NN Jaccard (token sets)", "never-seen template = alert"}
    # The same artifact as teacher and "student": the same labels, line for line.
    assert models["student distilled"]["teacherAgreement"] == 1.0
    assert models["student distilled"]["teacherDistance"] == pytest.approx(0.0)
    assert 0.0 < models["student hard labels"]["teacherDistance"] < 1.0
    assert "teacherDistance" not in models["TF-IDF + LR"]  # labels only
    assert models["teacher"]["fitSeconds"] < 1.0
    assert set(result["perCategory"]) == {"KERNFAIL"}
    assert any(r.label == "APPERR" for r in split.test)  # the held-out templates test other alerts too ...
    for name, scores in models.items():  # ... which the held-out category's own figure leaves out
        held = scores["categories"]["KERNFAIL"]
        assert result["perCategory"]["KERNFAIL"][name]["recall"]["mean"] == held["flagged"] / held["lines"]
    assert result["perCategory"]["KERNFAIL"]["never-seen template = alert"]["recall"]["mean"] == 1.0


def test_bench_quality_merges_runs_of_one_seed_each_into_one_summary(tmp_path, capsys):
    from logdistill.cli import main as cli

    data = tmp_path / "tiny.log"
    data.write_text("".join(f"{r.label} {r.text}\n" for r in synthetic()))
    runs = []
    for seed in (1, 2):
        out = tmp_path / f"seed{seed}"
        assert cli(["bench", "quality", "--models", "cheap", "--data", str(data), "--protocols", "kfold", "--folds", "3",
                    "--seeds", str(seed), "--out", str(out)]) == 0
        runs.append(json.loads((out / "bench-quality.json").read_text()))
    capsys.readouterr()
    merged_dir = tmp_path / "merged"
    assert cli(["bench", "quality", "--data", str(data), "--merge", str(tmp_path / "seed1"),
                "--merge", str(tmp_path / "seed2" / "bench-quality.folds.jsonl"), "--out", str(merged_dir)]) == 0
    merged = json.loads((merged_dir / "bench-quality.json").read_text())
    both = runs[0]["folds"] + runs[1]["folds"]
    assert merged["folds"] == both and merged["config"]["seeds"] == [1, 2]
    assert merged["summary"] == summarise(both)  # the same statistics as one run over both seeds
    assert merged["summary"]["kfold"]["TF-IDF + LR"]["macroF1"]["n"] == 6
    assert "6 fold(s) over seeds [1, 2]" in capsys.readouterr().out

    # the same fold twice is refused, naming it and both runs; so is a file that is not fold rows
    assert cli(["bench", "quality", "--data", str(data), "--merge", str(tmp_path / "seed1"), "--merge",
                str(tmp_path / "seed1"), "--out", str(merged_dir)]) == 2
    err = capsys.readouterr().err
    assert "'seed 1 fold 1/3' (kfold) was scored by both" in err
    (tmp_path / "bad.jsonl").write_text('{"protocol": "kfold"}\n')
    assert cli(["bench", "quality", "--merge", str(tmp_path / "bad.jsonl"), "--data", str(data)]) == 2
    assert "bad.jsonl, line 1: not a fold row" in capsys.readouterr().err
    assert cli(["bench", "quality", "--merge", str(tmp_path / "seed1"), "--seeds", "3"]) == 2
    assert "--merge fits nothing" in capsys.readouterr().err
