"""Tailing: CRI and plain files, partial lines, rotation, truncation, restarts, bad bytes.

A "restart" is a new :class:`Tailer` on the same state directory. Each test writes
numbered lines and checks that exactly those lines come out, once each.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from logdistill.edge import sources
from logdistill.edge.sources import HEAD_BYTES, STATE_FILE, Tailer


def cri(message: str, partial: bool = False, stream: str = "stdout") -> bytes:
    return f"2024-05-01T10:00:00.000000001Z {stream} {'P' if partial else 'F'} {message}\n".encode()


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as out:
        out.write(data)


class Run:
    """A tailer plus everything it has returned and every malformed reason it reported."""

    def __init__(self, pattern: str, state: Path | None, **options) -> None:
        self.malformed: Counter[str] = Counter()
        options.setdefault("scan_interval", 0.0)
        options.setdefault("rotate_wait", 0.0)
        self.tailer = Tailer([pattern], state_dir=state, on_malformed=self._malformed, **options)
        self.messages: list[str] = []
        self.records = []

    def _malformed(self, reason: str) -> None:
        self.malformed[reason] += 1

    def poll(self) -> list[str]:
        records = self.tailer.poll()
        self.tailer.checkpoint()  # as the pipeline does once the batch is handled
        self.records += records
        got = [r.message for r in records]
        self.messages += got
        return got

    def close(self) -> None:
        self.tailer.close()


def test_plain_file_lines_arrive_once_and_an_unfinished_line_waits(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"one\ntwo\nthr")
    run = Run(str(tmp_path / "*.log"), tmp_path / "state")
    assert run.poll() == ["one", "two"]
    assert run.poll() == []
    append(log, b"ee\r\nfour\n")
    assert run.poll() == ["three", "four"]
    assert run.records[0].time is None and run.records[0].pattern == str(tmp_path / "*.log")


def test_cri_partial_lines_are_reassembled_across_polls_and_a_restart(tmp_path):
    pod_dir = tmp_path / "pods" / "prod_web-7d4_0a1b2c" / "nginx"
    pod_dir.mkdir(parents=True)
    log = pod_dir / "0.log"
    state = tmp_path / "state"
    pattern = str(tmp_path / "pods" / "*" / "*" / "*.log")
    log.write_bytes(cri("first") + cri("disk ", partial=True))
    run = Run(pattern, state)
    assert run.poll() == ["first"]
    append(log, cri("err", partial=True))
    assert run.poll() == []
    run.close()  # restart while the message is still in pieces
    append(log, cri("or on node 7") + cri("last", stream="stderr"))
    run = Run(pattern, state)
    assert run.poll() == ["disk error on node 7", "last"]
    assert [r.stream for r in run.records] == ["stdout", "stderr"]
    assert run.records[0].time == "2024-05-01T10:00:00.000000001Z"


def test_rotation_while_running_loses_and_repeats_nothing(tmp_path):
    log = tmp_path / "0.log"
    log.write_bytes(b"a1\na2\n")
    run = Run(str(tmp_path / "*.log"), tmp_path / "state")
    run.poll()
    append(log, b"a3\n")  # written before the rotation, read only after it
    log.rename(tmp_path / "0.log.20240501-100000")
    log.write_bytes(b"b1\n")
    run.poll()
    append(log, b"b2\n")
    run.poll()
    assert sorted(run.messages) == ["a1", "a2", "a3", "b1", "b2"]
    assert list(run.tailer.files) == [str(log)]  # the rotated file was finished and closed


def test_truncation_restarts_from_the_beginning(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"old line 1\nold line 2\n")
    run = Run(str(log), tmp_path / "state")
    run.poll()
    with open(log, "r+b") as handle:  # copytruncate
        handle.truncate(0)
    append(log, b"new\n")
    assert run.poll() == ["new"]


def test_restart_across_rotation_and_truncation_neither_loses_nor_duplicates(tmp_path):
    state = tmp_path / "state"
    pattern = str(tmp_path / "*.log")
    log, other = tmp_path / "0.log", tmp_path / "1.log"
    log.write_bytes(b"".join(f"line {i}\n".encode() for i in range(100)))
    other.write_bytes(b"x1\n")
    seen: list[str] = []
    run = Run(pattern, state)
    seen += run.poll()
    append(log, b"line 100\nline 101\n")
    seen += run.poll()
    run.close()
    # While the tailer is down: more lines, then a rotation, then a truncation of the other file.
    append(log, b"line 102\n")
    log.rename(tmp_path / "0.log.1")
    log.write_bytes(b"line 103\n")
    other.write_bytes(b"")
    run = Run(pattern, state)
    seen += run.poll()
    append(other, b"x2\n")
    append(log, b"line 104\n")
    seen += run.poll()
    run.close()
    run = Run(pattern, state)  # a restart with nothing new reads nothing
    seen += run.poll()
    expected = [f"line {i}" for i in range(105)] + ["x1", "x2"]
    assert Counter(seen) == Counter(expected)
    body = json.loads((state / STATE_FILE).read_text())
    assert {Path(e["path"]).name for e in body["files"]} == {"0.log", "1.log"}
    assert not list(state.glob("*.tmp"))


def test_new_files_are_picked_up_and_a_deleted_file_never_crashes(tmp_path):
    pattern = str(tmp_path / "*" / "*.log")
    (tmp_path / "a").mkdir()
    first = tmp_path / "a" / "x.log"
    first.write_bytes(b"hello\n")
    run = Run(pattern, tmp_path / "state")
    assert run.poll() == ["hello"]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "y.log").write_bytes(b"new file\n")
    append(first, b"unread when deleted\n")
    first.unlink()
    assert sorted(run.poll()) == ["new file", "unread when deleted"]
    assert list(run.tailer.files) == [str(tmp_path / "b" / "y.log")]
    (tmp_path / "b" / "y.log").unlink()
    (tmp_path / "b").rmdir()
    assert run.poll() == []
    run.close()


def test_bad_bytes_are_counted_and_never_crash(tmp_path):
    log = tmp_path / "bad.log"
    log.write_bytes(
        b"binary \x00\x01\x02 data\n"
        b"latin-1 caf\xe9\n"
        + b"k" * 1_000_000 + b"\n"
        b"\n"
        b"   \r\n"
        b"crlf line\r\n"
    )
    run = Run(str(log), None, max_line_bytes=1000)
    messages = run.poll()
    assert messages[0].startswith("binary ") and "\x00" not in messages[0]
    assert messages[1] == "latin-1 caf\ufffd"
    assert messages[2] == "k" * 1000
    assert messages[3] == "crlf line"
    assert len(messages) == 4
    assert run.malformed == Counter(binary=1, invalid_utf8=1, too_long=1, empty=2)


def test_malformed_cri_lines_are_counted_and_still_classified(tmp_path):
    pod_dir = tmp_path / "ns_pod_uid" / "c"
    pod_dir.mkdir(parents=True)
    (pod_dir / "0.log").write_bytes(b"not a cri line\n" + cri("fine"))
    run = Run(str(tmp_path / "*" / "*" / "*.log"), None)
    assert run.poll() == ["not a cri line", "fine"]
    assert run.malformed == Counter(bad_cri=1)


def test_start_at_end_skips_existing_content_only_on_the_first_start(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"history\n")
    state = tmp_path / "state"
    run = Run(str(tmp_path / "*.log"), state, start_at="end")
    assert run.poll() == []
    append(log, b"fresh\n")
    (tmp_path / "late.log").write_bytes(b"late file\n")
    assert sorted(run.poll()) == ["fresh", "late file"]
    run.close()
    append(log, b"after restart\n")
    run = Run(str(tmp_path / "*.log"), state, start_at="end")
    assert run.poll() == ["after restart"]


def test_a_reused_inode_with_other_content_is_read_from_the_start(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"original content line\n")
    state = tmp_path / "state"
    run = Run(str(log), state)
    run.poll()
    run.close()
    with open(log, "r+b") as handle:  # same inode, same size or longer, different bytes
        handle.write(b"REPLACED content line\nmore\n")
    os.utime(log)
    run = Run(str(log), state)
    assert run.poll() == ["REPLACED content line", "more"]


def test_an_unwritable_state_dir_is_logged_and_tailing_goes_on(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    log = tmp_path / "app.log"
    log.write_bytes(b"one\n")
    run = Run(str(log), blocker / "state")
    assert run.poll() == ["one"]
    append(log, b"two\n")
    assert run.poll() == ["two"]
    assert caplog.text.count("cannot save read offsets") == 1


def test_a_file_that_cannot_be_opened_for_a_while_keeps_its_saved_offset_across_restarts(tmp_path, monkeypatch):
    state, pattern = tmp_path / "state", str(tmp_path / "*.log")
    app, web = tmp_path / "app.log", tmp_path / "web.log"
    app.write_bytes(b"app 1\n")
    web.write_bytes(b"web 1\n")
    run = Run(pattern, state)
    assert sorted(run.poll()) == ["app 1", "web 1"]
    run.close()
    append(app, b"app 2\n")
    append(web, b"web 2\n")

    def open_but_not_web(path, *args, **kwargs):
        if str(path) == str(web):
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(sources, "open", open_but_not_web, raising=False)
    run = Run(pattern, state)  # restarted while web.log cannot be opened (an error that passes)
    assert run.poll() == ["app 2"]
    run.close()  # its saved offset for web.log must survive this save
    monkeypatch.undo()
    run = Run(pattern, state)
    assert sorted(run.poll()) == ["web 2"]  # from where the first run stopped, not from 0


def test_a_tailer_closed_before_its_first_poll_keeps_the_saved_offsets(tmp_path):
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_bytes(b"one\n")
    run = Run(str(log), state)
    assert run.poll() == ["one"]
    run.close()
    Run(str(log), state).close()  # stopped at once (a rollout during start-up)
    append(log, b"two\n")
    assert Run(str(log), state).poll() == ["two"]


@pytest.mark.parametrize("stop", ["graceful", "killed after a checkpoint"])
def test_a_restart_midway_through_a_file_neither_loses_nor_repeats_a_line(tmp_path, stop):
    # The DaemonSet's --state-dir is a fresh, empty hostPath directory (owned by the classifier's uid).
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    pod_dir = tmp_path / "pods" / "shop_cart-6b9f_1111-aaaa" / "api"
    pod_dir.mkdir(parents=True)
    lines = [f"line {i} " + "x" * (i % 50) for i in range(2000)]
    (pod_dir / "0.log").write_bytes(b"".join(cri(line) for line in lines))
    pattern = str(tmp_path / "pods" / "*" / "*" / "*.log")
    seen: list[str] = []
    run = Run(pattern, state, read_budget=8 * 1024)  # a small read budget: each poll reads part of the file
    seen += run.poll()
    seen += run.poll()
    assert 0 < len(seen) < len(lines)  # stopped midway
    if stop == "graceful":
        run.close()  # SIGTERM: the classifier closes the tailer, which checkpoints once more
    run = Run(pattern, state, read_budget=8 * 1024)
    while batch := run.poll():
        seen += batch
    assert Counter(seen) == Counter(lines) and len(seen) == len(lines)
    assert seen == lines  # and in order


def test_copytruncate_that_regrows_past_the_old_size_before_the_next_poll_is_read_from_0(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"old line 1\nold line 2\n")
    run = Run(str(log), tmp_path / "state")
    assert run.poll() == ["old line 1", "old line 2"]
    with open(log, "r+b") as handle:  # copytruncate, then the writer goes on before the tailer looks again
        handle.truncate(0)
    append(log, b"new line A, longer than all of the old content\nnew line B\n")
    assert run.poll() == ["new line A, longer than all of the old content", "new line B"]  # no fragment
    append(log, b"new line C\n")
    assert run.poll() == ["new line C"]
    run.close()
    # ... and while the tailer is down: the saved first bytes no longer match, so from 0 again.
    log.write_bytes(b"rewritten while down, and longer than before it all was\n" * 2)
    run = Run(str(log), tmp_path / "state")
    assert run.poll() == ["rewritten while down, and longer than before it all was"] * 2


def test_a_copytruncate_rewritten_to_the_same_size_is_read_from_0(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"first 1\nfirst 2\n")
    run = Run(str(log), tmp_path / "state")
    run.poll()
    with open(log, "r+b") as handle:  # truncated and grown back to exactly the size already read
        handle.truncate(0)
        handle.write(b"again 1\nagain 2\n")
    os.utime(log, ns=(0, 1))  # an mtime of its own, whatever the file system's resolution
    assert run.poll() == ["again 1", "again 2"]
    assert run.poll() == []


def test_a_rewound_batch_comes_back_whole_with_the_same_ids_and_is_never_saved(tmp_path):
    state = tmp_path / "state"
    pod_dir = tmp_path / "pods" / "shop_cart-6b9f_1111-aaaa" / "api"
    pod_dir.mkdir(parents=True)
    log = pod_dir / "0.log"
    log.write_bytes(cri("one") + cri("tw", partial=True) + cri("o") + cri("thr", partial=True))
    tailer = Tailer([str(tmp_path / "pods" / "*" / "*" / "*.log")], state_dir=state, scan_interval=0.0)
    first = tailer.poll()
    assert [r.message for r in first] == ["one", "two"]
    tailer.rewind()  # classify failed: nothing is committed
    assert tailer.files == {str(log): 0}
    append(log, cri("ee"))
    again = tailer.poll()
    assert [r.message for r in again] == ["one", "two", "three"]
    assert [r.id for r in again[:2]] == [r.id for r in first]
    assert again[-1].id.endswith(f":{log.stat().st_size}") and len({r.id for r in again}) == 3
    tailer.close()  # not acknowledged: a restart reads them again
    assert json.loads((state / STATE_FILE).read_text())["files"][0]["offset"] == 0
    restarted = Tailer([str(tmp_path / "pods" / "*" / "*" / "*.log")], state_dir=state, scan_interval=0.0)
    assert [r.id for r in restarted.poll()] == [r.id for r in again]
    restarted.checkpoint()
    assert restarted.files == {str(log): log.stat().st_size}


def test_a_rotated_file_read_to_its_end_stays_open_until_its_last_records_are_acknowledged(tmp_path):
    log = tmp_path / "0.log"
    log.write_bytes(b"a1\n")
    tailer = Tailer([str(tmp_path / "*.log")], state_dir=tmp_path / "state", scan_interval=0.0, rotate_wait=0.0)
    assert [r.message for r in tailer.poll()] == ["a1"]
    tailer.checkpoint()
    append(log, b"a2\na3 without newline")
    log.rename(tmp_path / "0.log.1")
    log.write_bytes(b"b1\n")
    batch = tailer.poll()
    assert sorted(r.message for r in batch) == ["a2", "a3 without newline", "b1"]
    tailer.rewind()  # the rotated file's last lines are handed back, not lost with its descriptor
    assert sorted(r.message for r in tailer.poll()) == ["a2", "a3 without newline", "b1"]
    tailer.checkpoint()
    assert list(tailer.files) == [str(log)]
    assert tailer.poll() == []


def test_ids_name_the_line_not_the_path_and_differ_after_a_rewrite(tmp_path):
    log = tmp_path / "0.log"
    log.write_bytes(b"".join(f"line {i:03d} of the first file\n".encode() for i in range(20)))
    run = Run(str(tmp_path / "*.log*"), tmp_path / "state")
    run.poll()
    ids = [r.id for r in run.records]
    assert len(set(ids)) == 20 and ids[-1].endswith(f":{log.stat().st_size}")
    # Past the first HEAD_BYTES bytes every id shares the file's fingerprint.
    assert len({i.split(":")[0] for i in ids if int(i.split(":")[1]) >= HEAD_BYTES}) == 1
    run.close()
    log.rename(tmp_path / "0.log.1")  # renamed: the same lines keep their ids
    run = Run(str(tmp_path / "*.log*"), tmp_path / "state")
    assert run.poll() == []
    with open(tmp_path / "0.log.1", "r+b") as handle:
        handle.truncate(0)
    (tmp_path / "0.log.1").write_bytes(b"".join(f"line {i:03d} of the other file\n".encode() for i in range(20)))
    run.poll()
    assert not {r.id for r in run.records} & set(ids)


def test_a_rotation_is_followed_at_the_next_poll_not_the_next_scan(tmp_path):
    log = tmp_path / "0.log"
    log.write_bytes(b"a1\n")
    run = Run(str(tmp_path / "*.log"), tmp_path / "state", scan_interval=3600.0)
    assert run.poll() == ["a1"]
    for generation in range(3):  # files that live under the glob's name for less than a scan interval
        log.rename(tmp_path / f"0.log.{generation}")
        log.write_bytes(f"b{generation}\n".encode())
        assert run.poll() == [f"b{generation}"]


def test_a_file_created_after_a_poll_saw_its_name_empty_is_still_followed_before_the_next_scan(tmp_path):
    log = tmp_path / "0.log"
    log.write_bytes(b"a1\n")
    run = Run(str(tmp_path / "*.log"), tmp_path / "state", scan_interval=3600.0, rotate_wait=60.0)
    assert run.poll() == ["a1"]
    log.rename(tmp_path / "0.log.0")
    assert run.poll() == []  # the name is empty for a moment: the rotated file is drained meanwhile
    log.write_bytes(b"b1\n")
    assert run.poll() == ["b1"]
    log.rename(tmp_path / "0.log.1")
    log.write_bytes(b"c1\n")
    assert run.poll() == ["c1"]
