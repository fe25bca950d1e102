"""Tailing log files by glob: CRI or plain lines, rotation, truncation, persisted offsets.

Delivery contract (at least once inside, exactly once for a consumer keyed on ``Record.id``):
:meth:`Tailer.poll` returns the complete records read since the last poll; the caller then
either acknowledges them with :meth:`Tailer.checkpoint` once their verdicts are written, or
hands them back with :meth:`Tailer.rewind` when it could not handle them (a failed
``classify``), and the next poll returns them again. Only an acknowledgement moves a file's
*committed* offset (the end of the last record whose verdict was written) and saves it, fsync'd,
in the state file: a record is never dropped before its verdict is out. A crash between the
verdict and the save (``kill -9``) makes a restart repeat at most that one batch, and every
repeated record carries the same :attr:`Record.id` as its first copy (see :func:`record_id`), so
the repeat is recognisable; a restart on the same state directory loses no line. Offsets
cannot be made atomic with stdout itself (a pipe: what its reader got is not observable), so
the identity is what turns at-least-once into exactly-once for the consumer.

Files are identified by (device, inode), so a rotated file (renamed, a new one created
in its place) is drained to its end, through its open descriptor, while the new file is read
from its start; a poll that finds a followed path naming another file scans at once, so the new
file is not left to the next scan (a file renamed away before the tailer ever opened it is out of
reach unless the glob matches its new name). Truncation (copytruncate) is told by the file's first
bytes, not only by its size: the tailer keeps the first :data:`HEAD_BYTES` it read and compares
them with the file after every read that returned data or when its mtime moved. A file that
shrank, or was truncated and grew back to or past the old size before the next poll, no longer
starts with those bytes; what was read from it in that poll
is discarded (it would be a fragment of a new line) and the file is read again from 0. The state
file keeps each file's path and a hash of those first bytes, so a reused inode, or a file
truncated while the tailer was down, is not mistaken for the old file either. A file deleted while
open is drained through the open descriptor and then dropped. No I/O error stops the tailer: the
file is logged and dropped, and picked up again, from its committed offset, on the next scan if it
is still there.

Never silently reading nothing: ``glob`` skips a directory it may not list without a word
(``/var/log/pods`` is ``root:root 0750`` under containerd, so a non-root reader without
group 0 matches nothing). Each scan therefore lists every pattern's fixed directory itself
and tries to open every match; a failure is logged once per path (again only after the
path recovered and failed anew) and counted by a reason from :data:`SOURCE_ERROR_REASONS`.
:meth:`Tailer.not_ready` says why no source is readable, for ``/readyz``.

``exclude_pod_uids``: files of those pods (``/var/log/pods/<ns>_<pod>_<uid>/``, also through
``/var/log/containers`` symlinks) are never read, so the classifier does not classify its
own alert output.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import BinaryIO, Callable, NamedTuple, Sequence

from logdistill.edge.lines import (
    DEFAULT_MAX_LINE_BYTES,
    CriAssembler,
    LineSplitter,
    decode_line,
    parse_cri,
    pod_from_path,
)

__all__ = ["Record", "Tailer", "DEFAULT_PATHS", "STATE_FILE", "FORMATS", "SOURCE_ERROR_REASONS", "HEAD_BYTES",
           "fixed_directory", "record_id", "source_error_reason"]

log = logging.getLogger(__name__)

DEFAULT_PATHS = ("/var/log/pods/*/*/*.log",)
STATE_FILE = "offsets.json"
FORMATS = ("auto", "cri", "plain")
# Why a source could not be read: a closed set, so it can be a metric label.
SOURCE_ERROR_REASONS = ("permission_denied", "not_found", "other")
# The first bytes that tell a file from its truncated-and-rewritten self: a CRI line's timestamp and
# the start of its message, a few plain lines.
HEAD_BYTES = 256
_MAGIC = re.compile(r"[*?[]")  # what makes a path component a glob (as the glob module decides)
_CHUNK = 64 * 1024


class Record(NamedTuple):  # a NamedTuple: one per line read, cheaper to build than a frozen dataclass
    """One complete log message read from a file."""

    path: str
    pattern: str  # the --paths glob that matched (a bounded metric label)
    message: str
    time: str | None  # the CRI timestamp; None for plain files
    stream: str | None  # stdout/stderr for CRI files
    id: str = ""  # :func:`record_id`: the same for every read of this record, also after a restart


def record_id(dev: int, ino: int, head: bytes, end: int) -> str:
    """The identity of the record that ends at byte ``end`` of a file: ``<fingerprint>:<end>``.

    The fingerprint hashes the file's (device, inode) and its first ``min(HEAD_BYTES, end)`` bytes
    (``head``), all fixed once the record is written, so a re-read after a rewind or a restart gives
    the same id, a renamed file keeps its ids, and the same offset in a truncated-and-rewritten file
    (other first bytes) gets another one."""
    digest = hashlib.blake2b(b"%d:%d:" % (dev, ino), digest_size=6)
    digest.update(head[: min(HEAD_BYTES, end)])
    return f"{digest.hexdigest()}:{end}"


class _File:
    """An open, tailed file. ``committed`` <= ``delivered`` <= ``read_pos``: ``committed`` is the end of the
    last acknowledged record (what a restart resumes from), ``delivered`` the end of the last record the
    current poll returned, ``read_pos`` where the descriptor is."""

    __slots__ = (
        "key", "path", "pattern", "handle", "cri", "read_pos", "delivered", "committed", "splitter", "assembler",
        "orphaned_since", "finished", "head", "fingerprint", "mtime",
    )

    def __init__(self, key: tuple[int, int], path: str, pattern: str, handle: BinaryIO, cri: bool, offset: int,
                 head: bytes, max_bytes: int) -> None:
        self.key = key
        self.path = path
        self.pattern = pattern
        self.handle = handle
        self.cri = cri
        self.read_pos = self.delivered = self.committed = offset
        self.splitter = LineSplitter(max_bytes)
        self.assembler = CriAssembler(max_bytes)
        self.orphaned_since: float | None = None
        self.finished = False  # a rotated/deleted file read to its end: dropped once acknowledged
        self.head = bytearray(head)  # the file's first bytes (at most HEAD_BYTES), all read up to read_pos
        self.fingerprint: str | None = None  # record_id's prefix, cached once head is full
        self.mtime = -1  # st_mtime_ns when last read: a change without growth may be a same-size rewrite

    def restart_at(self, offset: int) -> None:
        """Read again from ``offset`` (a rewind, or 0 after a truncation): forget what is half parsed."""
        self.handle.seek(offset)
        self.read_pos = self.delivered = offset
        self.splitter.reset()
        self.assembler.reset()
        self.finished = False

    def record_id(self, end: int) -> str:
        if self.fingerprint is not None and end >= HEAD_BYTES:
            return f"{self.fingerprint}:{end}"
        made = record_id(self.key[0], self.key[1], bytes(self.head), end)
        if end >= HEAD_BYTES and len(self.head) == HEAD_BYTES:
            self.fingerprint = made.rsplit(":", 1)[0]
        return made


class Tailer:
    """Follows every file matching ``patterns``.

    ``fmt``: ``cri``, ``plain``, or ``auto`` (CRI for kubelet pod logs and
    ``/var/log/containers``, plain otherwise). ``start_at="end"`` skips what files already
    hold on the very first start (no state file yet); files that appear later are always
    read from their start. ``rotate_wait`` is how long a rotated-away file stays open once
    its rotation is seen (a writer may still flush to it briefly); it is read to its end
    at every poll meanwhile.
    """

    def __init__(
        self,
        patterns: Sequence[str],
        *,
        state_dir: str | Path | None = None,
        fmt: str = "auto",
        start_at: str = "beginning",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        read_budget: int = 1 << 20,
        rotate_wait: float = 5.0,
        scan_interval: float = 1.0,
        on_malformed: Callable[[str], None] | None = None,
        on_source_error: Callable[[str], None] | None = None,
        exclude_pod_uids: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
        if start_at not in ("beginning", "end"):
            raise ValueError(f"start_at must be 'beginning' or 'end', not {start_at!r}")
        self.patterns = list(patterns)
        self.fmt = fmt
        self.max_line_bytes = max_line_bytes
        self.read_budget = read_budget
        self.rotate_wait = rotate_wait
        self.scan_interval = scan_interval
        self._on_malformed = on_malformed or (lambda reason: None)
        self._on_source_error = on_source_error or (lambda reason: None)
        self._excluded_uids = frozenset(uid for uid in exclude_pod_uids if uid)
        self._excluded: set[tuple[int, int]] = set()  # (dev, ino) of files of excluded pods, checked once
        self._failing: dict[str, str] = {}  # path -> the error reported for it, until it is readable again
        self._problem: str | None = "no log source scanned yet"
        self._clock = clock
        self._files: dict[tuple[int, int], _File] = {}
        self._state_path = Path(state_dir) / STATE_FILE if state_dir is not None else None
        self._saved, had_state = self._load_state()
        self._skip_existing = start_at == "end" and not had_state
        self._first_scan = True
        self._next_scan = 0.0
        self._last_written: list | None = None
        self._state_failing = False

    # -- public -----------------------------------------------------------------------------

    @property
    def files(self) -> dict[str, int]:
        """Open files and their committed offsets (for tests and debugging)."""
        return {f.path: f.committed for f in self._files.values()}

    @property
    def open_count(self) -> int:
        """Files open now (read from other threads: ``len`` of a dict is atomic)."""
        return len(self._files)

    def not_ready(self) -> str | None:
        """``None`` while some source is readable: a file is open, or a pattern's directory can be listed
        and no match failed to open (files may simply not exist yet). Otherwise why not, for ``/readyz``."""
        return None if self._files else self._problem

    def poll(self) -> list[Record]:
        """Scan for new/rotated files when due, then read what every open file has grown by.
        The caller acknowledges the records (:meth:`checkpoint`) or hands them back (:meth:`rewind`)
        before it polls again."""
        now = self._clock()
        if now >= self._next_scan or self._rotated():
            self._scan(now)
            self._next_scan = now + self.scan_interval
        records: list[Record] = []
        for tailed in list(self._files.values()):
            if not tailed.finished:
                self._read(tailed, records, now)
        return records

    def _rotated(self) -> bool:
        """Whether a scan is due now: the path of a file being followed names another file (or none), or a
        new file appeared under the name a rotated file had. The file that took its place is then read
        from its start at this poll, not at the next scan (a short-lived file rotated away before the scan
        would never be matched by the glob)."""
        for tailed in self._files.values():
            try:
                info = os.stat(tailed.path)
            except OSError:
                if tailed.orphaned_since is None:
                    return True
                continue
            key = (info.st_dev, info.st_ino)
            if key != tailed.key and (tailed.orphaned_since is None or key not in self._files):
                return True
        return False

    def checkpoint(self) -> None:
        """Acknowledge the last poll's records (their verdicts are written): commit each file's offset
        after its last record, close the rotated files read to their end, and save the offsets."""
        for tailed in list(self._files.values()):
            tailed.committed = tailed.delivered
            if tailed.finished:
                log.info("%s: finished reading a rotated or deleted file", tailed.path)
                self._drop(tailed)
        self._save()

    def rewind(self) -> None:
        """Hand the last poll's records back: the next poll reads them again, from each file's
        committed offset (with the same :attr:`Record.id`)."""
        for tailed in list(self._files.values()):
            if tailed.read_pos == tailed.committed and not tailed.finished:
                continue
            try:
                tailed.restart_at(tailed.committed)
            except OSError as err:
                self._source_failed(tailed.path, err)
                self._forget(tailed)

    def close(self) -> None:
        """Save the committed offsets (records polled but not acknowledged are read again after a
        restart) and close every file."""
        self._save()
        for tailed in self._files.values():
            tailed.handle.close()
        self._files.clear()

    # -- state ------------------------------------------------------------------------------

    def _save(self) -> None:
        """Write the committed offsets atomically (a temp file, fsync, rename), when they changed."""
        if self._state_path is None:
            return
        entries = [_state_entry(tailed) for tailed in self._files.values()]
        entries += self._saved.values()  # files not open just now (opening one takes its entry out)
        entries.sort(key=lambda e: e["path"])
        if entries == self._last_written:
            return
        tmp = self._state_path.with_suffix(".tmp")
        try:
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as out:
                json.dump({"version": 1, "files": entries}, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._state_path)
        except OSError as err:
            # Keep classifying; a restart would then re-read from the last offsets that were saved.
            if not self._state_failing:
                log.error("%s: cannot save read offsets: %s", self._state_path, err)
            self._state_failing = True
            return
        if self._state_failing:
            log.info("%s: saving read offsets again", self._state_path)
        self._state_failing = False
        self._last_written = entries

    def _load_state(self) -> tuple[dict[tuple[int, int], dict], bool]:
        if self._state_path is None or not self._state_path.exists():
            return {}, False
        try:
            body = json.loads(self._state_path.read_text(encoding="utf-8"))
            saved = {(int(e["dev"]), int(e["ino"])): e for e in body["files"]}
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("%s: unreadable offsets, starting over: %s", self._state_path, err)
            return {}, False
        return saved, True

    @staticmethod
    def _resume_offset(saved: dict | None, prefix: bytes, size: int) -> int | None:
        """The saved offset if it still applies to this file (same first bytes, not truncated).
        ``prefix``: the file's first :data:`HEAD_BYTES` now."""
        if saved is None:
            return None
        offset, head_len = int(saved.get("offset", 0)), int(saved.get("headLength", 0))
        if offset > size or head_len > len(prefix):
            return None
        if _digest(prefix[:head_len]) != saved.get("head"):
            return None
        return offset

    # -- discovery --------------------------------------------------------------------------

    def _scan(self, now: float) -> None:
        found: dict[tuple[int, int], tuple[str, str]] = {}
        listable: list[str] = []
        unlistable: list[str] = []
        failed_before = set(self._failing)
        for pattern in self.patterns:
            directory = fixed_directory(pattern)
            try:
                with os.scandir(directory):
                    pass
            except OSError as err:
                self._source_failed(directory, err)
                unlistable.append(f"{directory}: {_describe(err)}")
                continue
            self._source_ok(directory)
            listable.append(directory)
            for path in sorted(glob.glob(pattern)):
                try:
                    info = os.stat(path)
                except OSError:
                    continue  # deleted between glob and stat
                if stat.S_ISREG(info.st_mode):
                    found.setdefault((info.st_dev, info.st_ino), (path, pattern))
        unopenable: list[str] = []
        for key, (path, pattern) in found.items():
            tailed = self._files.get(key)
            if tailed is not None:
                tailed.path, tailed.orphaned_since = path, None
            elif key not in self._excluded and not self._open(path, pattern, now, orphan=False):
                unopenable.append(f"{path}: {self._failing.get(path, 'cannot open')}")
        # Paths that failed before and are gone now (a deleted file) need no more watching.
        for path in failed_before - {p for p, _ in found.values()} - {fixed_directory(p) for p in self.patterns}:
            self._failing.pop(path, None)
        if unopenable:
            self._problem = "no readable log source: " + unopenable[0]
        elif listable:
            self._problem = None
        else:
            self._problem = "no readable log source: " + (unlistable[0] if unlistable else "no --paths")
        for key, tailed in self._files.items():
            if key not in found and tailed.orphaned_since is None:
                log.info("%s: rotated or deleted; draining it", tailed.path)
                tailed.orphaned_since = now
        if self._first_scan:
            self._first_scan = False
            self._resume_rotated_while_down(now)
        # A saved offset waits for its file to open (a transient error) while the glob still matches the file,
        # and is saved with the others meanwhile: a restart resumes there too, not at 0.
        for key in [key for key in self._saved if key not in found]:
            del self._saved[key]

    def _resume_rotated_while_down(self, now: float) -> None:
        """Saved files no longer matching the glob were rotated while we were down: finish them."""
        for (dev, ino), saved in list(self._saved.items()):
            directory = os.path.dirname(saved.get("path", "")) or "."
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.inode() == ino and entry.is_file() and entry.stat().st_dev == dev:
                        self._open(entry.path, saved.get("pattern", ""), now, orphan=True)
                        break
                except OSError:
                    continue

    def _open(self, path: str, pattern: str, now: float, *, orphan: bool) -> bool:
        """Start tailing ``path``; False when it cannot be opened (reported) and True otherwise,
        also when it is skipped as a file of an excluded pod."""
        if self._excluded_uids and self._is_excluded(path):
            try:
                info = os.stat(path)
                self._excluded.add((info.st_dev, info.st_ino))
            except OSError:
                pass
            log.info("%s: a file of an excluded pod; not read", path)
            return True
        try:
            handle = open(path, "rb")
        except OSError as err:
            self._source_failed(path, err)
            return False
        try:
            info = os.fstat(handle.fileno())
            key = (info.st_dev, info.st_ino)
            if key in self._files:
                handle.close()
                return True
            prefix = os.pread(handle.fileno(), HEAD_BYTES, 0)
            offset = self._resume_offset(self._saved.pop(key, None), prefix, info.st_size)
            if offset is None:
                offset = info.st_size if self._skip_existing and self._first_scan else 0
            handle.seek(offset)
        except OSError as err:
            handle.close()
            self._source_failed(path, err)
            return False
        self._source_ok(path)
        cri = self.fmt == "cri" or (self.fmt == "auto" and _looks_like_cri(path))
        tailed = _File(key, path, pattern, handle, cri, offset, prefix[: min(HEAD_BYTES, offset)],
                       self.max_line_bytes)
        if orphan:
            tailed.orphaned_since = now
        self._files[key] = tailed
        log.info("%s: tailing from offset %d (%s)", path, offset, "cri" if cri else "plain")
        return True

    def _is_excluded(self, path: str) -> bool:
        """A file under /var/log/pods/<ns>_<pod>_<uid>/ of an excluded uid, by its own or its resolved path
        (/var/log/containers/*.log are symlinks into /var/log/pods)."""
        for candidate in {path, os.path.realpath(path)}:
            pod = pod_from_path(candidate)
            if pod is not None and pod.uid in self._excluded_uids:
                return True
        return False

    # -- source errors ----------------------------------------------------------------------

    def _source_failed(self, path: str, err: OSError) -> None:
        """Log and count a source that cannot be read, once until it has been readable again."""
        described = _describe(err)
        if self._failing.get(path) == described:
            return
        self._failing[path] = described
        reason = source_error_reason(err)
        log.warning("%s: cannot read this log source: %s (errno %s)%s", path, described,
                    errno.errorcode.get(err.errno or 0, err.errno),
                    "; a non-root reader of /var/log/pods needs group 0 (supplementalGroups: [0])"
                    if reason == "permission_denied" else "")
        self._on_source_error(reason)

    def _source_ok(self, path: str) -> None:
        if self._failing.pop(path, None) is not None:
            log.info("%s: readable again", path)

    # -- reading ----------------------------------------------------------------------------

    def _read(self, tailed: _File, records: list[Record], now: float) -> None:
        try:
            got, at_end = self._read_checked(tailed)
        except OSError as err:
            # Dropped; the next scan opens it again, from its committed offset, if it is still there.
            self._source_failed(tailed.path, err)
            self._forget(tailed)
            return
        records += got
        if tailed.orphaned_since is not None and at_end and now - tailed.orphaned_since >= self.rotate_wait:
            self._finish(tailed, records)

    def _read_checked(self, tailed: _File) -> tuple[list[Record], bool]:
        """The records the file grew by, and whether it was read to its end. Checked against the file's
        first bytes afterwards: after a truncation, what was read is dropped and the file read from 0."""
        for _attempt in range(2):
            got: list[Record] = []
            info = os.fstat(tailed.handle.fileno())
            size, touched = info.st_size, info.st_mtime_ns != tailed.mtime
            tailed.mtime = info.st_mtime_ns
            shrunk = size < tailed.read_pos
            read_any, at_end = (False, True) if shrunk else self._read_some(tailed, got)
            if not shrunk and (not (read_any or touched) or self._same_head(tailed)):
                return got, at_end
            log.info("%s: truncated (%d bytes now, %d read); reading from the start", tailed.path, size,
                     tailed.read_pos)
            tailed.head.clear()
            tailed.fingerprint = None
            tailed.committed = 0  # the old content is gone: nothing of it is left to resume
            tailed.restart_at(0)
        return [], False  # rewritten again while being read: the next poll tries again

    def _read_some(self, tailed: _File, records: list[Record]) -> tuple[bool, bool]:
        """Read up to the read budget; (whether anything was read, whether the end was reached)."""
        budget = self.read_budget
        read_any = False
        head = tailed.head
        while budget > 0:
            data = tailed.handle.read(min(_CHUNK, budget))
            if not data:
                break
            read_any = True
            budget -= len(data)
            base = tailed.read_pos
            tailed.read_pos += len(data)
            if len(head) < HEAD_BYTES and base <= len(head):
                head += data[len(head) - base : HEAD_BYTES - base]
            for raw, _truncated, end in tailed.splitter.feed(data):
                if self._line(tailed, raw, records, base + end):
                    tailed.delivered = base + end
        return read_any, budget > 0

    @staticmethod
    def _same_head(tailed: _File) -> bool:
        """Whether the file still starts with the bytes read from it (a copytruncate that grew past the old
        size before this poll does not)."""
        return os.pread(tailed.handle.fileno(), len(tailed.head), 0) == tailed.head

    def _finish(self, tailed: _File, records: list[Record]) -> None:
        """A rotated/deleted file that stopped growing: its unterminated tail is its last line. It is
        closed once these records are acknowledged."""
        end = tailed.read_pos
        rest = tailed.splitter.flush()
        if rest is not None:
            self._line(tailed, rest[0], records, end)
        pending = tailed.assembler.flush()
        if pending is not None:
            self._emit(tailed, pending.message, pending.time, pending.stream, [], records, end)
        tailed.delivered = end
        tailed.finished = True

    def _forget(self, tailed: _File) -> None:
        """Drop a file after an I/O error, remembering its committed offset for when it is opened again."""
        self._saved[tailed.key] = _state_entry(tailed)
        self._drop(tailed)

    def _drop(self, tailed: _File) -> None:
        self._files.pop(tailed.key, None)
        try:
            tailed.handle.close()
        except OSError:
            pass

    def _line(self, tailed: _File, raw: bytes, records: list[Record], end: int) -> bool:
        """Handle one physical line ending at byte ``end``; True when it completes a record (the offset
        may advance)."""
        text, reasons = decode_line(raw, self.max_line_bytes)
        if not tailed.cri:
            self._emit(tailed, text, None, None, reasons, records, end)
            return True
        parsed = parse_cri(text)
        if parsed is None:
            reasons.append("bad_cri")
            self._emit(tailed, text, None, None, reasons, records, end)
            return not tailed.assembler.pending
        done = tailed.assembler.add(parsed)
        if done is None:
            for reason in reasons:
                self._on_malformed(reason)
            return False
        if tailed.assembler.truncated and "too_long" not in reasons:
            reasons.append("too_long")
        self._emit(tailed, done.message, done.time, done.stream, reasons, records, end)
        return True

    def _emit(self, tailed: _File, message: str, when: str | None, stream: str | None, reasons: list[str],
              records: list[Record], end: int) -> None:
        for reason in reasons:
            self._on_malformed(reason)
        if not message.strip():
            self._on_malformed("empty")
            return
        records.append(Record(tailed.path, tailed.pattern, message, when, stream, tailed.record_id(end)))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _state_entry(tailed: _File) -> dict:
    """A file's line in the state file: where to resume, and the first bytes that must still be there."""
    return {"dev": tailed.key[0], "ino": tailed.key[1], "path": tailed.path, "pattern": tailed.pattern,
            "offset": tailed.committed, "headLength": len(tailed.head), "head": _digest(bytes(tailed.head))}


def fixed_directory(pattern: str) -> str:
    """The longest leading directory of a glob without wildcards: what must be listable for it to match."""
    parts = pattern.split(os.sep)
    fixed: list[str] = []
    for part in parts[:-1]:
        if _MAGIC.search(part):
            break
        fixed.append(part)
    directory = os.sep.join(fixed)
    if not directory:
        return os.sep if pattern.startswith(os.sep) else "."
    return directory


def source_error_reason(err: OSError) -> str:
    """The :data:`SOURCE_ERROR_REASONS` value of an I/O error."""
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission_denied"
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        return "not_found"
    return "other"


def _describe(err: OSError) -> str:
    """"permission denied": the strerror in lower case, without the path (the caller names it)."""
    return (err.strerror or str(err)).lower()


def _looks_like_cri(path: str) -> bool:
    return pod_from_path(path) is not None or "/var/log/containers/" in path
