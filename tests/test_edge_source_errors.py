"""The tailer never silently reads nothing: unreadable directories and files are logged once per path and
counted by reason, ``not_ready`` says why no source is readable, and an excluded pod's files are skipped.

containerd's /var/log/pods is ``root:root 0750`` and its files ``0640``; a non-root reader without group 0
gets EACCES, which ``glob`` swallows. The tests deny access with ``chmod``; as root (which ``chmod`` does
not stop) they also make the tailer's ``os.scandir`` and ``open`` answer EACCES for those paths, as the
kernel does for uid 10001.
"""

from __future__ import annotations

import errno
import logging
import os
from collections import Counter
from pathlib import Path

import pytest

from logdistill.edge import sources
from logdistill.edge.sources import SOURCE_ERROR_REASONS, Tailer, fixed_directory, source_error_reason


def cri(message: str) -> bytes:
    return f"2024-05-01T10:00:00.000000001Z stdout F {message}\n".encode()


class Denied:
    """Paths this process may not read, by mode bits and (as root) by the tailer's view of the OS."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: dict[str, int] = {}  # path -> its mode before
        real_scandir, real_open = os.scandir, open

        def scandir(path="."):
            self._check(path)
            return real_scandir(path)

        def open_(path, *args, **kwargs):
            self._check(path)
            return real_open(path, *args, **kwargs)

        if os.geteuid() == 0:
            monkeypatch.setattr(sources.os, "scandir", scandir)
            monkeypatch.setattr(sources, "open", open_, raising=False)

    def _check(self, path) -> None:
        if str(path) in self.paths:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

    def deny(self, path: Path) -> None:
        self.paths[str(path)] = path.stat().st_mode
        path.chmod(0)

    def allow(self, path: Path) -> None:
        path.chmod(self.paths.pop(str(path)))

    def restore(self) -> None:
        for path in list(self.paths):
            self.allow(Path(path))


@pytest.fixture()
def denied(monkeypatch):
    d = Denied(monkeypatch)
    yield d
    d.restore()  # or tmp_path cannot be cleaned up


class Errors:
    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()

    def __call__(self, reason: str) -> None:
        assert reason in SOURCE_ERROR_REASONS
        self.reasons[reason] += 1


def pods_root(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "pods"
    log = root / "shop_cart-6b9f_1111-aaaa" / "api" / "0.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(cri("disk error on node 7"))
    return root, str(root / "*" / "*" / "*.log")


def test_fixed_directory_of_a_glob():
    assert fixed_directory("/var/log/pods/*/*/*.log") == "/var/log/pods"
    assert fixed_directory("/var/log/syslog") == "/var/log"
    assert fixed_directory("/var/log/[ab]*/x.log") == "/var/log"
    assert fixed_directory("/*.log") == "/"
    assert fixed_directory("*.log") == "."


def test_error_reasons_are_a_closed_set():
    assert source_error_reason(PermissionError(errno.EACCES, "x")) == "permission_denied"
    assert source_error_reason(FileNotFoundError(errno.ENOENT, "x")) == "not_found"
    assert source_error_reason(OSError(errno.EIO, "x")) == "other"


def test_an_unlistable_pods_directory_is_reported_once_and_recovers(tmp_path, denied, caplog):
    root, pattern = pods_root(tmp_path)
    errors = Errors()
    tailer = Tailer([pattern], on_source_error=errors, scan_interval=0.0)
    denied.deny(root)
    with caplog.at_level(logging.WARNING, logger="logdistill.edge.sources"):
        for _ in range(5):  # five polls, one warning and one count: once per path, not per poll
            assert tailer.poll() == []
    assert errors.reasons == {"permission_denied": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(root) in warnings[0] and "permission denied" in warnings[0]
    assert "EACCES" in warnings[0]
    assert tailer.not_ready() == f"no readable log source: {root}: permission denied"
    assert tailer.open_count == 0

    denied.allow(root)
    assert [r.message for r in tailer.poll()] == ["disk error on node 7"]
    assert tailer.not_ready() is None and tailer.open_count == 1
    tailer.close()


def test_a_file_that_cannot_be_opened_is_reported_once_and_blocks_readiness(tmp_path, denied, caplog):
    root, pattern = pods_root(tmp_path)
    (log,) = root.glob("*/*/0.log")
    errors = Errors()
    tailer = Tailer([pattern], on_source_error=errors, scan_interval=0.0)
    denied.deny(log)
    with caplog.at_level(logging.WARNING, logger="logdistill.edge.sources"):
        for _ in range(3):
            assert tailer.poll() == []
    assert errors.reasons == {"permission_denied": 1}
    assert caplog.text.count(str(log)) == 1
    assert tailer.not_ready() == f"no readable log source: {log}: permission denied"
    # A second, readable pod makes the classifier ready; the unreadable one stays reported once.
    other = root / "shop_web-1_2222-bbbb" / "nginx" / "0.log"
    other.parent.mkdir(parents=True)
    other.write_bytes(cri("GET / 200"))
    assert [r.message for r in tailer.poll()] == ["GET / 200"]
    assert tailer.not_ready() is None and errors.reasons == {"permission_denied": 1}
    tailer.close()


def test_a_missing_directory_is_not_found_and_an_empty_one_is_ready(tmp_path):
    errors = Errors()
    missing = Tailer([str(tmp_path / "nope" / "*.log")], on_source_error=errors, scan_interval=0.0)
    assert missing.not_ready() == "no log source scanned yet"
    missing.poll()
    missing.poll()
    assert errors.reasons == {"not_found": 1}
    assert missing.not_ready() == f"no readable log source: {tmp_path / 'nope'}: no such file or directory"
    (tmp_path / "empty").mkdir()
    empty = Tailer([str(tmp_path / "empty" / "*.log")], on_source_error=errors, scan_interval=0.0)
    empty.poll()
    assert empty.not_ready() is None  # listable: files may simply not exist yet
    assert errors.reasons == {"not_found": 1}


def test_files_of_an_excluded_pod_are_never_read(tmp_path):
    root = tmp_path / "pods"
    own = root / "logdistill-system_dm-classifier-x7_9999-self" / "classifier" / "0.log"
    other = root / "shop_cart-6b9f_1111-aaaa" / "api" / "0.log"
    for path, message in ((own, "alert about an alert"), (other, "disk error on node 7")):
        path.parent.mkdir(parents=True)
        path.write_bytes(cri(message))
    # /var/log/containers holds symlinks into /var/log/pods, named without the pod UID.
    containers = tmp_path / "containers"
    containers.mkdir()
    (containers / "dm-classifier-x7_logdistill-system_classifier-abc.log").symlink_to(own)
    patterns = [str(root / "*" / "*" / "*.log"), str(containers / "*.log")]
    tailer = Tailer(patterns, exclude_pod_uids=["9999-self"], scan_interval=0.0)
    messages = [r.message for r in tailer.poll()]
    with open(own, "ab") as out:
        out.write(cri("another alert"))
    messages += [r.message for r in tailer.poll()]
    assert messages == ["disk error on node 7"]
    assert list(tailer.files) == [str(other)]
    # Without the exclusion the same files are read (the test would notice a broken fixture).
    assert sorted(r.message for r in Tailer(patterns[:1], scan_interval=0.0).poll()) == [
        "alert about an alert", "another alert", "disk error on node 7"]
