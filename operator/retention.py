"""Retention of a model's artifact versions on the artifacts volume.

A model's versions live in ``<subPath>/<name>/g<generation>[-r<retrain>]`` (see
:func:`~logdistill.operator.manifests.common.artifact_relpath`); beside them sit folders that are
not versions (``teacher-labels``, soft targets), and trained teachers live in ``<subPath>/teachers``,
outside any model's folder. The distillation Job prunes its model's folder once its own artifact is
written (``logdistill operator job-run --keep-versions N --protect RUN``): the operator has no volume.
Only version folders are ever removed; the newest ``keep`` and the protected ones (the run just
written, the version the classifier serves) never are.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

log = logging.getLogger("logdistill.operator.retention")
VERSION_DIR = re.compile(r"^g(?P<generation>[0-9]+)(?:-r(?P<retrain>[0-9]+))?$")
MIN_KEEP = 2


def run_key(name: str) -> tuple[int, int] | None:
    """(generation, retrain) of a version folder's name; None for any other folder."""
    match = VERSION_DIR.match(name)
    if match is None:
        return None
    return int(match["generation"]), int(match["retrain"] or 0)


def select_prunable(names: list[str], keep: int, protected: set[str]) -> list[str]:
    """The version folders beyond the newest ``keep`` (at least :data:`MIN_KEEP`), less the protected
    ones, oldest first. Names that are not version folders are never selected."""
    versions = sorted((key, name) for name in names if (key := run_key(name)) is not None)
    newest_first = [name for _, name in reversed(versions)]
    return [name for name in reversed(newest_first[max(keep, MIN_KEEP):]) if name not in protected]


def prune(model_dir: Path, keep: int, protected: set[str]) -> list[str]:
    """Remove the prunable version folders of ``model_dir``; returns their names. A folder that cannot
    be removed is logged and left (another worker, or the next run, removes it)."""
    if not model_dir.is_dir():
        return []
    names = [p.name for p in model_dir.iterdir() if p.is_dir() and not p.is_symlink()]
    removed = []
    for name in select_prunable(names, keep, protected):
        try:
            shutil.rmtree(model_dir / name)
            removed.append(name)
        except OSError as err:
            log.warning("cannot remove old version %s: %s", model_dir / name, err)
    return removed
