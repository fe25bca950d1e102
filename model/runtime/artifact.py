"""The model artifact: a directory every other part loads, guarded by ``manifest.json``.

Layout (a teacher and a student artifact look the same)::

    config.json, model.safetensors      transformers weights and config (torch side)
    tokenizer.json (+ tokenizer files)  the tokenizer, loadable by ``tokenizers`` alone
    labels.json                         {"labels": [...], "normal": "-"}; index = logit column
    model.int8.onnx                     int8 dynamic-quantised ONNX for the edge
    report.json                         the evaluation report
    manifest.json                       format version, sha256 of every other file, versions, spec,
                                        info (``maxLength``, ``input``: what the model is fed for a line)

No torch here (part of the torch-free runtime): the edge classifier imports this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from logdistill.model.runtime.templates import MODEL_INPUTS
from logdistill.timefmt import rfc3339

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "REPORT",
    "LABELS",
    "ONNX_MODEL",
    "ArtifactError",
    "Manifest",
    "write_manifest",
    "verify_artifact",
    "read_labels",
    "write_labels",
    "sha256_file",
    "publish",
    "staged",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REPORT = "report.json"
LABELS = "labels.json"
ONNX_MODEL = "model.int8.onnx"

_LIBRARIES = ("logdistill", "torch", "transformers", "tokenizers", "onnx", "onnxruntime", "numpy")


class ArtifactError(Exception):
    """An artifact that is missing, incomplete, tampered with or of an unknown format."""


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` holds, verified."""

    path: Path
    format_version: int
    kind: str
    version: str
    sha256: str
    files: dict[str, str]
    created: str
    libraries: dict[str, str] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def input(self) -> str:
        """The model's input for a raw line, a name of :data:`~logdistill.model.runtime.templates.MODEL_INPUTS`
        (``template`` for artifacts made before inputs were recorded)."""
        return str(self.info.get("input", "template"))

    @property
    def alert_below(self) -> float | None:
        """The model's alert bar (``info.alertBelow``, :func:`~logdistill.model.runtime.inference.decide`):
        its most likely alert is its answer when P(normal) is below it; None (also for artifacts made
        before the bar was recorded): the top label."""
        value = self.info.get("alertBelow")
        return None if value is None else float(value)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _content_digest(files: dict[str, str]) -> str:
    """One digest over every file's name and hash: the artifact's identity."""
    lines = "".join(f"{name}\0{files[name]}\n" for name in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _artifact_files(directory: Path) -> dict[str, str]:
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            files[path.relative_to(directory).as_posix()] = sha256_file(path)
    return files


def write_manifest(
    directory: str | Path,
    *,
    kind: str,
    spec: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
) -> Manifest:
    """Hash every file in ``directory`` and write ``manifest.json``; returns the manifest.

    ``version`` is the first 12 hex digits of the content digest, so the same files give
    the same version and any change gives a new one.
    """
    directory = Path(directory)
    files = _artifact_files(directory)
    digest = _content_digest(files)
    body = {
        "formatVersion": FORMAT_VERSION,
        "kind": kind,
        "version": digest[:12],
        "sha256": digest,
        "created": rfc3339(),
        "files": files,
        "libraries": _library_versions(),
        "spec": spec or {},
        "info": info or {},
    }
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, directory / MANIFEST)
    return _to_manifest(directory, body)


def _to_manifest(directory: Path, body: dict[str, Any]) -> Manifest:
    return Manifest(
        path=directory,
        format_version=body["formatVersion"],
        kind=body["kind"],
        version=body["version"],
        sha256=body["sha256"],
        files=dict(body["files"]),
        created=body.get("created", ""),
        libraries=dict(body.get("libraries", {})),
        spec=dict(body.get("spec", {})),
        info=dict(body.get("info", {})),
    )


def verify_artifact(directory: str | Path, *, required: tuple[str, ...] = (LABELS,)) -> Manifest:
    """Check ``manifest.json`` against the files on disk; raise :class:`ArtifactError` naming the problem.

    Refused: a missing manifest, an unknown format version, a listed file that is missing
    or whose sha256 differs, an extra file not in the manifest, a missing ``required`` file.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    try:
        body = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{directory}: not a logdistill artifact ({MANIFEST} is missing)") from None
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{manifest_path}: unreadable manifest: {err}") from None
    if not isinstance(body, dict) or body.get("formatVersion") != FORMAT_VERSION:
        got = body.get("formatVersion") if isinstance(body, dict) else None
        raise ArtifactError(f"{manifest_path}: unsupported formatVersion {got!r} (this build reads {FORMAT_VERSION})")
    try:
        listed: dict[str, str] = dict(body["files"])
        manifest = _to_manifest(directory, body)
    except (KeyError, TypeError, ValueError) as err:
        raise ArtifactError(f"{manifest_path}: malformed manifest: {err}") from None
    for name in required:
        if name not in listed:
            raise ArtifactError(f"{directory}: required file {name} is not in the manifest")
    on_disk = _artifact_files(directory)
    for name, expected in listed.items():
        actual = on_disk.get(name)
        if actual is None:
            raise ArtifactError(f"{directory / name}: listed in the manifest but missing")
        if actual != expected:
            raise ArtifactError(f"{directory / name}: sha256 mismatch (manifest {expected[:12]}…, file {actual[:12]}…)")
    extra = sorted(set(on_disk) - set(listed))
    if extra:
        raise ArtifactError(f"{directory}: files not in the manifest: {', '.join(extra)}")
    if _content_digest(listed) != manifest.sha256:
        raise ArtifactError(f"{manifest_path}: sha256 field does not match the listed files")
    if manifest.input not in MODEL_INPUTS:
        raise ArtifactError(f"{manifest_path}: info.input {manifest.input!r} is not one of {', '.join(MODEL_INPUTS)}"
                            " (made by a newer logdistill?)")
    bar = manifest.info.get("alertBelow")
    if bar is not None and (isinstance(bar, bool) or not isinstance(bar, (int, float)) or not 0.0 < bar <= 1.0):
        raise ArtifactError(f"{manifest_path}: info.alertBelow {bar!r} is not a probability in (0, 1]")
    return manifest


def write_labels(directory: str | Path, labels: list[str], normal: str) -> None:
    if normal not in labels:
        raise ValueError(f"normal label {normal!r} is not among the labels {labels}")
    (Path(directory) / LABELS).write_text(json.dumps({"labels": labels, "normal": normal}, indent=2) + "\n")


def read_labels(directory: str | Path) -> tuple[list[str], str]:
    """Return ``(labels, normal_label)``; index i of ``labels`` is logit column i."""
    path = Path(directory) / LABELS
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        labels, normal = list(body["labels"]), body["normal"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ArtifactError(f"{path}: unreadable label map: {err}") from None
    if not labels or normal not in labels or not all(isinstance(x, str) for x in labels):
        raise ArtifactError(f"{path}: label map must list string labels including the normal label {normal!r}")
    return labels, normal


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(staging: Path, out_dir: Path) -> None:
    """Move a finished artifact into place; an existing ``out_dir`` is replaced only after it is complete.

    The staging directory (``mkdtemp``: 0700) and files that libraries write privately (the
    safetensors weights: 0600) get the modes of a plain ``mkdir``/``open`` under the umask, so a
    classifier running as another user of the group can read what the Job wrote.
    """
    out_dir = Path(out_dir)
    mask = _umask()
    for path in staging.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
    staging.chmod(0o777 & ~mask)
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.rmdir(old)
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged(out_dir: str | Path, *, unique: bool = False) -> Iterator[Path]:
    """Build an artifact in a staging folder beside ``out_dir``; publish it when the block ends,
    delete it when the block raises (``out_dir`` is never half-written).

    The staging folder is ``.<name>.staging`` (not created: the block writes it, e.g. with
    ``save_artifact``), or with ``unique`` a fresh private ``mkdtemp`` folder.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if unique:
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    else:
        staging = out_dir.parent / f".{out_dir.name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
        publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
