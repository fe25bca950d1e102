"""The state directory's lock (:mod:`logdistill.edge.statelock`): one classifier per set of read offsets.
The two-process handover is in tests/test_edge_exactly_once.py."""

from __future__ import annotations

import threading

import pytest

from logdistill.edge.statelock import StateLock


def test_a_held_lock_keeps_a_second_holder_out_until_released(tmp_path):
    first, second = StateLock(tmp_path / "state"), StateLock(tmp_path / "state")
    assert first.acquire(threading.Event()) and first.held
    stopped = threading.Event()
    stopped.set()  # a SIGTERM while waiting: give up instead of waiting on
    assert not second.acquire(stopped) and not second.held
    first.release()
    assert second.acquire(threading.Event()) and second.held
    second.release()


def test_a_lock_file_that_cannot_be_created_raises(tmp_path):
    (tmp_path / "state").write_text("not a directory")
    with pytest.raises(OSError):
        StateLock(tmp_path / "state").acquire(threading.Event())
