"""The real ``logdistill classify`` process for the edge tests: its command line, and a running
process whose stdout and stderr lines are collected as they come."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def command(*args: str, importtime: bool = False) -> list[str]:
    # -P: never put the cwd on sys.path (the repo root's operator/ would shadow the stdlib).
    return [sys.executable, "-P", *(["-X", "importtime"] if importtime else []), "-m", "logdistill", "classify", *args]


class Process:
    """A classify subprocess whose stdout and stderr lines are collected by reader threads."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NODE_NAME": "edge-1"}
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self.readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout.put), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the exit, then for the readers to reach end of file."""
        self.proc.send_signal(signal.SIGTERM)
        returncode = self.proc.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=timeout)
        return returncode

    def kill(self, timeout: float = 30.0) -> int:
        """SIGKILL (no chance to save anything), wait for the exit and for the readers to reach end of file."""
        self.proc.kill()
        returncode = self.proc.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=timeout)
        return returncode

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in stream:
            sink(line)

    def wait_for_stderr(self, pattern: str, timeout: float = 30.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stderr):
                if match := re.search(pattern, line):
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no stderr line matching {pattern!r}; stderr:\n{''.join(self.stderr)[-3000:]}")

    def stdout_records(self, count: int, timeout: float = 30.0) -> list[dict]:
        records = []
        deadline = time.monotonic() + timeout
        while len(records) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"got {len(records)} of {count} alert lines; stderr:\n{''.join(self.stderr)[-2000:]}"
            try:
                records.append(json.loads(self.stdout.get(timeout=remaining)))
            except queue.Empty:
                continue
        return records
