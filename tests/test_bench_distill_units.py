"""The pure parts of `logdistill bench distill`: seed lists and the summary across splits."""

from __future__ import annotations

import argparse

import pytest

from logdistill.model.bench.distill import across_seeds, seed_list


def test_seed_list_parses_and_dedupes_in_order():
    assert seed_list("13,21,13,34") == [13, 21, 34]
    with pytest.raises(argparse.ArgumentTypeError, match="integers separated by commas, got '13,x'"):
        seed_list("13,x")


def _models(teacher_f1, student_f1, speedup):
    return {"models": {
        "teacher": {"macroF1": teacher_f1, "ratioToTeacher": 1.0, "speedupVsTeacher": 1.0},
        "student distilled": {"macroF1": student_f1, "ratioToTeacher": student_f1 / teacher_f1,
                              "speedupVsTeacher": speedup},
        "TF-IDF + LR": {"macroF1": 0.5, "ratioToTeacher": 0.5 / teacher_f1, "speedupVsTeacher": None},
    }}


def test_across_seeds_reports_mean_worst_split_and_median_speedup():
    summary = across_seeds({13: _models(1.0, 0.9, 40.0), 21: _models(0.8, 0.8, 50.0), 34: _models(0.5, 0.6, 20.0)})
    student = summary["student distilled"]
    assert student["macroF1Mean"] == pytest.approx((0.9 + 0.8 + 0.6) / 3)
    assert student["macroF1Min"] == 0.6 and student["macroF1PerSeed"] == [0.9, 0.8, 0.6]
    assert student["ratioMin"] == pytest.approx(0.9) and student["ratioMean"] == pytest.approx((0.9 + 1.0 + 1.2) / 3)
    assert (student["speedupMedian"], student["speedupMin"]) == (40.0, 20.0)
    assert summary["TF-IDF + LR"]["speedupMedian"] is None  # not timed against the teacher
