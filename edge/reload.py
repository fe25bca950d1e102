"""Which model serves, and swapping in a new verified version while lines keep flowing.

:class:`ModelHolder` holds the serving :class:`TemplateClassifier`; a caller takes
``holder.current`` once per batch, so a batch is answered wholly by one version and a
swap (one reference assignment) never drops or splits a batch. The new version gets a
fresh, empty cache: the old answers were another model's.

:class:`Reloader` polls the model directory. It may be a symlink swapped atomically to a
new directory, or a directory rewritten in place; either way a change of the resolved
path or of any file's size/mtime triggers a load. The candidate is verified and loaded in
the reloader's own thread while the old version serves; a corrupt candidate is refused
(logged with the file at fault, counted) and the old one keeps serving. A refused
candidate is retried only once its files change again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from logdistill.edge.classifier import TemplateClassifier
from logdistill.edge.metrics import ClassifierMetrics
from logdistill.model.runtime.artifact import MANIFEST

__all__ = ["ModelHolder", "Reloader", "directory_identity"]

log = logging.getLogger(__name__)

Loader = Callable[[Path], TemplateClassifier]


class ModelHolder:
    """The serving classifier (``None`` until the first load)."""

    def __init__(self) -> None:
        self.current: TemplateClassifier | None = None
        self.swapped = threading.Event()  # set on every swap (tests wait on it)

    def swap(self, new: TemplateClassifier) -> None:
        old = self.current
        if old is not None:
            new.share_seen(old)
        self.current = new
        self.swapped.set()


def directory_identity(directory: Path) -> tuple:
    """What changes when the artifact changes: the resolved path and every file's size and mtime."""
    real = os.path.realpath(directory)
    entries = []
    try:
        for root, _dirs, names in os.walk(real):
            for name in names:
                info = os.stat(os.path.join(root, name))
                entries.append((os.path.relpath(os.path.join(root, name), real), info.st_size, info.st_mtime_ns))
    except OSError:
        return (real, "unreadable")
    return (real, tuple(sorted(entries)))


def _manifest_version(directory: str) -> str | None:
    try:
        return str(json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Reloader:
    """Polls ``directory`` every ``interval`` seconds in a daemon thread (or call :meth:`check` yourself)."""

    def __init__(
        self,
        directory: str | Path,
        holder: ModelHolder,
        load: Loader,
        *,
        interval: float = 10.0,
        metrics: ClassifierMetrics | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.holder = holder
        self.load = load
        self.interval = interval
        self.metrics = metrics
        self._identity = directory_identity(self.directory)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-reloader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # never let the reloader die: the old model keeps serving
                log.exception("model reload check failed")

    def check(self) -> str:
        """One poll: returns ``unchanged``, ``success`` or ``failed``."""
        identity = directory_identity(self.directory)
        if identity == self._identity:
            return "unchanged"
        self._identity = identity
        real = identity[0]
        current = self.holder.current
        if current is not None and _manifest_version(real) == current.version:
            log.info("%s: files changed but the version is still %s; nothing to load", self.directory, current.version)
            self._count("unchanged")
            return "unchanged"
        began = time.perf_counter()
        try:
            candidate = self.load(Path(real))
        except Exception as err:  # ArtifactError names the file; anything else is refused the same way
            log.error("model reload refused, keeping version %s: %s", current.version if current else None, err)
            self._count("failed")
            return "failed"
        self.holder.swap(candidate)
        if self.metrics is not None:
            self.metrics.set_model(candidate.model.manifest)
            self.metrics.last_reload.set_to_current_time()
            self.metrics.cache_entries.set(0)
        log.info(
            "model reloaded: version %s -> %s from %s in %.2fs",
            current.version if current else None, candidate.version, real, time.perf_counter() - began,
        )
        self._count("success")
        return "success"

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.reloads.labels(result=result).inc()
