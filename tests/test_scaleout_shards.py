"""Sharded teacher labelling (`logdistill label`) and `distill --soft-targets`: stable assignment,
complete and disjoint shards, checksums, missing shards, per-index re-runs, no teacher at training."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from helpers.tiny_models import tiny_distill_config  # noqa: E402

from logdistill.cli import main as cli  # noqa: E402
from logdistill.model.engine.augment import AUGMENT_PER_TEMPLATE  # noqa: E402
from logdistill.model.runtime.data import load_records  # noqa: E402
from logdistill.model.engine.shards import ShardError, load_soft_targets, shard_name, shard_of  # noqa: E402
from logdistill.model.runtime.splits import make_split  # noqa: E402
from logdistill.model.engine.teachers import CheckpointTeacher  # noqa: E402
from logdistill.model.engine.transfer import transfer_set  # noqa: E402
from logdistill.spec import load_spec  # noqa: E402

pytestmark = pytest.mark.torch
SHARDS = 3
STUDENT = {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32, "maxLength": 32}
TRAINING = {"epochs": 2, "learningRate": 0.003, "threads": 1, "batchSize": 32, "patience": 2}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    config = tiny_distill_config(root, STUDENT, TRAINING)
    out = root / "soft-targets"
    for index in range(SHARDS):
        # The index as the operator passes it: a literal string after env expansion.
        assert cli(["label", "--config", str(config), "--shard-index", str(index), "--shards", str(SHARDS),
                    "--out", str(out)]) == 0
    return root, config, out


def _transfer(config):
    spec = load_spec(config)
    teachers = CheckpointTeacher(spec.teacher)
    labels = teachers.label_set().labels
    split = make_split(load_records(spec.data).records, spec.data, spec.training.seed)
    transfer = transfer_set(split, labels, distil=True, augment_per_template=AUGMENT_PER_TEMPLATE,
                            seed=spec.training.seed)
    return spec, teachers, labels, transfer


def test_shard_assignment_is_stable_across_processes():
    templates = [f"RAS KERNEL INFO job <NUM> step {i}" for i in range(200)]
    here = [shard_of(t, 7) for t in templates]
    # A fresh interpreter with a different hash seed: Python's hash() would differ, sha256 does not.
    code = ("import json,sys; from logdistill.model.engine.shards import shard_of;"
            "print(json.dumps([shard_of(t, 7) for t in json.load(sys.stdin)]))")
    there = subprocess.run([sys.executable, "-P", "-c", code], input=json.dumps(templates), capture_output=True,
                           text=True, check=True, env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"}).stdout
    assert json.loads(there) == here
    assert set(here) == set(range(7))  # every shard gets work


def test_shards_hold_every_transfer_template_exactly_once_with_the_teachers_targets(workspace):
    import numpy as np
    import torch

    _, config, out = workspace
    spec, teachers, labels, transfer = _transfer(config)
    keys = []
    for index in range(SHARDS):
        with np.load(out / f"{shard_name(index, SHARDS)}.npz") as z:
            keys += z["keys"].tolist()
            assert [str(x) for x in z["labels"]] == labels
    assert len(keys) == len(set(keys))
    assert set(keys) == set(transfer.templates)
    assert transfer.augmented and set(transfer.augmented) <= set(keys)  # the augmented lines are sharded too
    probs, missing = load_soft_targets(out, transfer.templates, labels, spec.training.temperature)
    assert missing == []
    direct = teachers.probs(transfer.templates, labels, spec.training.temperature)
    assert torch.allclose(probs, direct, atol=1e-5)


def test_a_tampered_shard_is_refused_by_name(workspace, tmp_path):
    import shutil

    _, config, out = workspace
    spec, _, labels, transfer = _transfer(config)
    copy = tmp_path / "soft-targets"
    shutil.copytree(out, copy)
    npz = copy / f"{shard_name(1, SHARDS)}.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"shard 1 of 3 is corrupt"):
        load_soft_targets(copy, transfer.templates, labels, spec.training.temperature)


def test_a_missing_shard_stops_distill_before_training_and_names_it(workspace, tmp_path):
    import shutil

    _, config, out = workspace
    copy = tmp_path / "soft-targets"
    shutil.copytree(out, copy)
    (copy / f"{shard_name(2, SHARDS)}.npz").unlink()
    summary = tmp_path / "summary.json"
    code = cli(["distill", "--config", str(config), "--out", str(tmp_path / "student"), "--soft-targets", str(copy),
                "--summary-file", str(summary)])
    assert code == 1
    error = json.loads(summary.read_text())["error"]
    assert "shard 2 of 3 is missing" in error and "shard-2-of-3.npz" in error
    assert not (tmp_path / "student").exists()


def test_shards_for_other_train_lines_are_refused(workspace, tmp_path):
    _, config, out = workspace
    spec, _, labels, transfer = _transfer(config)
    with pytest.raises(ShardError, match=r"shard 0 of 3 .* other train lines"):
        load_soft_targets(out, transfer.templates[:-1], labels, spec.training.temperature)
    with pytest.raises(ShardError, match=r"temperature"):
        load_soft_targets(out, transfer.templates, labels, spec.training.temperature + 1)


def test_rerunning_an_index_rewrites_only_its_own_shard(workspace, tmp_path):
    import shutil

    _, config, out = workspace
    copy = tmp_path / "soft-targets"
    shutil.copytree(out, copy)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in copy.iterdir()}
    assert cli(["label", "--config", str(config), "--shard-index", "1", "--shards", str(SHARDS),
                "--out", str(copy)]) == 0
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in copy.iterdir()}
    assert sorted(after) == sorted(before)  # no temporary file left behind
    rewritten = {name for name in after if after[name][:2] != before[name][:2]}
    assert rewritten == {"shard-1-of-3.npz", "shard-1-of-3.sha256"}
    assert all(after[name][2] == before[name][2] for name in after)  # same inputs, same bytes


def test_distill_with_soft_targets_never_runs_the_teacher(workspace, tmp_path, monkeypatch):
    _, config, out = workspace

    def no_teacher(*_args, **_kwargs):
        raise AssertionError("the teacher ran although soft targets were given")

    monkeypatch.setattr(CheckpointTeacher, "probs", no_teacher)
    summary = tmp_path / "summary.json"
    code = cli(["distill", "--config", str(config), "--out", str(tmp_path / "student"), "--soft-targets", str(out),
                "--summary-file", str(summary)])
    assert code == 0, summary.read_text()
    assert json.loads(summary.read_text())["student"]["macroF1"] >= 0.0
    assert (tmp_path / "student" / "model.int8.onnx").is_file()


def test_bad_shard_index_is_a_clear_error(workspace, capsys):
    _, config, out = workspace
    assert cli(["label", "--config", str(config), "--shard-index", "3", "--shards", "3", "--out", str(out)]) == 2
    assert "--shard-index 3 must be in [0, --shards 3)" in capsys.readouterr().err
