"""Re-distillation input: teacher-labelled lines (the teacher service's store) join the TRAIN part only."""

from __future__ import annotations

import json

import pytest
import yaml

from logdistill.model.runtime.data import DataError, LogRecord
from logdistill.model.engine.extra_data import add_extra_data
from logdistill.model.services.serve_teacher import TeacherStore
from logdistill.model.runtime.splits import Split
from logdistill.model.runtime.templates import mask


def record(text: str, label: str | None = "-") -> LogRecord:
    return LogRecord(text=text, label=label, source="x", line=1)


def test_extra_lines_join_train_and_never_leak_into_dev_or_test(tmp_path):
    split = Split(train=[record("job 1 started")], dev=[record("disk 3 checked")], test=[record("fan 9 failed", "F")])
    store = TeacherStore(tmp_path / "store", name="teacher-0")
    store.add("fan 12 failed", mask("fan 12 failed"), "F", {"F": 0.9, "-": 0.1})  # test template: must not leak
    store.add("disk 4 checked", mask("disk 4 checked"), "-", {"-": 1.0})  # dev template
    store.add("bus 7 halted", mask("bus 7 halted"), "F", {"F": 0.8, "-": 0.2})  # new: goes to train
    store.close()
    (tmp_path / "more.jsonl").write_text(json.dumps({"text": "net 5 lost", "label": "F"}) + "\n{broken\n")
    out, stats = add_extra_data(split, [tmp_path / "store", tmp_path / "more.jsonl"])
    assert [r.text for r in out.train] == ["job 1 started", "bus 7 halted", "net 5 lost"]
    assert [r.label for r in out.train] == ["-", "F", "F"]
    assert out.dev == split.dev and out.test == split.test
    assert (stats.read, stats.added, stats.leaked, len(stats.malformed)) == (4, 2, 2, 1)
    assert "more.jsonl:2" in stats.malformed[0]
    assert add_extra_data(split, []) == (split, add_extra_data(split, [])[1])
    with pytest.raises(DataError, match="nope.jsonl"):
        add_extra_data(split, [tmp_path / "nope.jsonl"])


@pytest.mark.torch
def test_distill_cli_trains_on_extra_data(tmp_path):
    pytest.importorskip("torch")
    from helpers.tiny_models import build_tiny_teacher, tiny_log_lines

    from logdistill.cli import main as cli
    from logdistill.model.runtime.data import load_records
    from logdistill.model.runtime.splits import make_split
    from logdistill.spec import parse_spec

    data = tmp_path / "logs.log"
    data.write_text("\n".join(tiny_log_lines()) + "\n")
    spec = parse_spec({"teacher": {"checkpoint": "unused"}, "data": {"path": str(data)}})
    split = make_split(load_records(spec.data).records, spec.data, spec.training.seed)
    teacher = build_tiny_teacher(tmp_path, [r.label for r in split.train], [r.text for r in split.train], epochs=5)
    extra = tmp_path / "extra.jsonl"
    rows = [{"text": f"RAS APP FATAL widget{i} error raised in brandnew", "label": "APPERR"} for i in range(3)]
    rows.append({"text": split.test[0].text, "label": split.test[0].label})  # a test template: dropped
    extra.write_text("".join(json.dumps(row) + "\n" for row in rows))
    body = {"teacher": {"checkpoint": str(teacher)}, "data": {"path": str(data)},
            "student": {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32, "maxLength": 32},
            "training": {"epochs": 1, "threads": 1, "batchSize": 32, "patience": 1},
            "gate": {"minMacroF1": 0.01, "minRetention": 0.01}}
    config = tmp_path / "spec.yaml"
    config.write_text(yaml.safe_dump(body))

    def train_lines(out) -> int:
        return json.loads((out / "report.json").read_text())["split"]["train"]["lines"]

    assert cli(["distill", "--config", str(config), "--out", str(tmp_path / "extra"), "--extra-data", str(extra)]) == 0
    assert train_lines(tmp_path / "extra") == len(split.train) + 3  # the test template was dropped
    assert cli(["distill", "--config", str(config), "--out", str(tmp_path / "bad"),
                "--extra-data", str(tmp_path / "missing.jsonl")]) == 1
