"""One classifier per state directory: an exclusive ``flock`` on ``<state-dir>/offsets.lock``.

The read offsets (:data:`logdistill.edge.sources.STATE_FILE`) say which lines already have a verdict.
Two classifiers reading with the same offsets would both classify the lines written after them, and
the one that saves last would move the other's offsets. A DaemonSet's rolling update does not start
a node's new pod before the old one is gone, but a forced delete (``kubectl delete pod --force``),
a node agent restarting pods, or a second process started by hand can overlap. So the classifier
takes this lock before it reads the offsets and holds it until it exits: a second one waits (not
ready) until the first has saved its last offsets and released it. The kernel releases a ``flock``
when its holder dies, ``kill -9`` included, so a crashed classifier never leaves it taken.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

__all__ = ["LOCK_FILE", "StateLock"]

log = logging.getLogger(__name__)

LOCK_FILE = "offsets.lock"


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, stop: threading.Event, retry_s: float = 0.5) -> bool:
        """Take the lock, waiting while another process holds it; False when ``stop`` was set first.
        Raises ``OSError`` when the lock file cannot be created (the state directory is not writable)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waiting:
                    log.info("%s: another classifier is using these read offsets (a pod still stopping?); "
                             "waiting for it to exit", self.path)
                    waiting = True
                # Not a blocking flock: a SIGTERM while waiting must stop this process, not wait on.
                if stop.wait(retry_s):
                    os.close(fd)
                    return False
                continue
            if waiting:
                log.info("%s: taken; reading from the offsets the other classifier left", self.path)
            self._fd = fd
            return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None
