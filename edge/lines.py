"""Turning bytes from a log file into log messages: line splitting, decoding, CRI parsing.

Pure functions and two small incremental parsers, no I/O, so the hypothesis fuzz test
can drive them with arbitrary bytes. Nothing here raises on bad input: every problem
becomes a *reason* from the closed set :data:`MALFORMED_REASONS` (a bounded metric label).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "MALFORMED_REASONS",
    "DEFAULT_MAX_LINE_BYTES",
    "CriLine",
    "PodRef",
    "decode_line",
    "parse_cri",
    "pod_from_path",
    "LineSplitter",
    "CriAssembler",
]

# Closed set: these are the only values of the `reason` label of the malformed-lines counter.
MALFORMED_REASONS = ("invalid_utf8", "too_long", "empty", "bad_cri", "binary")

# Bound on one message. The model sees at most `maxLength` tokens (a few hundred
# characters), so 16 KiB loses nothing it would use, and masking cost stays bounded.
DEFAULT_MAX_LINE_BYTES = 16 * 1024


def decode_line(raw: bytes, max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> tuple[str, list[str]]:
    """Decode one physical line (without its ``\\n``) to text; returns ``(text, reasons)``.

    CRLF endings lose their ``\\r``; lines over ``max_bytes`` are cut (at a UTF-8 boundary);
    invalid UTF-8 is replaced with U+FFFD; NUL bytes (binary data) become spaces.
    """
    reasons: list[str] = []
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if len(raw) > max_bytes:
        reasons.append("too_long")
        cut = max_bytes
        # Back off over continuation bytes so a multi-byte character is not split in two.
        while cut > 0 and cut > max_bytes - 3 and (raw[cut] & 0xC0) == 0x80:
            cut -= 1
        raw = raw[:cut]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        reasons.append("invalid_utf8")
        text = raw.decode("utf-8", errors="replace")
    if "\x00" in text:
        reasons.append("binary")
        text = text.replace("\x00", " ")
    return text, reasons


class CriLine(NamedTuple):  # a NamedTuple: built once per line, cheaper than a frozen dataclass
    """One physical line of the CRI log format: ``<time> <stream> <P|F> <message>``."""

    time: str
    stream: str
    partial: bool
    message: str


# containerd/CRI-O: RFC3339Nano time, stream, tag (F = full, P = partial; tags may carry
# more fields after ':'), one space, then the message (which may be empty).
_CRI = re.compile(r"(\S+) (stdout|stderr) ([PF])(?::\S*)?(?: (.*))?\Z", re.DOTALL)


def parse_cri(text: str) -> CriLine | None:
    """Parse a decoded CRI line; ``None`` when it is not in CRI format."""
    match = _CRI.match(text)
    if match is None:
        return None
    time, stream, tag, message = match.groups()
    if not time[:1].isdigit():
        return None
    return CriLine(time, stream, tag == "P", message or "")


@dataclass(frozen=True, slots=True)
class PodRef:
    namespace: str
    pod: str
    uid: str
    container: str


# /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log ; namespaces and pod
# names are DNS names, so they never contain '_'.
_POD_PATH = re.compile(r"(?:^|/)([^/_]+)_([^/_]+)_([^/]+)/([^/]+)/\d+\.log$")


def pod_from_path(path: str) -> PodRef | None:
    """The pod a kubelet log file belongs to, from its path; ``None`` for other files."""
    match = _POD_PATH.search(path)
    return PodRef(*match.groups()) if match else None


class LineSplitter:
    """Incremental ``\\n`` splitter with bounded memory.

    ``feed(data)`` returns ``(line, truncated, end)`` for each complete line, ``end`` being the
    index in ``data`` just past its newline. An unfinished tail is kept for the next feed,
    but never more than ``max_bytes`` of it: a 1 GB line costs 16 KiB.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._fragment = bytearray()
        self._overflow = False

    @property
    def pending(self) -> bool:
        return bool(self._fragment) or self._overflow

    def reset(self) -> None:
        self._fragment.clear()
        self._overflow = False

    def feed(self, data: bytes) -> list[tuple[bytes, bool, int]]:
        out: list[tuple[bytes, bool, int]] = []
        limit = self.max_bytes
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            if self._fragment or self._overflow:
                self._append(data, start, newline)
                out.append((bytes(self._fragment), self._overflow, newline + 1))
                self.reset()
            else:
                # Keep one byte over the bound so decode_line sees (and counts) the overlong line.
                line = data[start:newline] if newline - start <= limit else data[start : start + limit + 1]
                out.append((line, newline - start > limit, newline + 1))
            start = newline + 1
        if start < len(data):
            self._append(data, start, len(data))
        return out

    def flush(self) -> tuple[bytes, bool] | None:
        """The unfinished tail as a final line (a rotated file's last line without ``\\n``)."""
        if not self.pending:
            return None
        line = (bytes(self._fragment), self._overflow)
        self.reset()
        return line

    def _append(self, data: bytes, start: int, stop: int) -> None:
        room = self.max_bytes + 1 - len(self._fragment)
        if stop - start > room:
            self._overflow = True
            stop = start + max(room, 0)
        self._fragment += data[start:stop]


class CriAssembler:
    """Joins CRI partial (``P``) lines into one message, ended by the next ``F`` line.

    ``add`` returns the completed :class:`CriLine` (its time is the first piece's) or
    ``None`` while a message is still partial. The joined message is bounded by
    ``max_chars``; ``truncated`` tells whether the last completed message was cut.
    """

    def __init__(self, max_chars: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_chars = max_chars
        self._pieces: list[str] = []
        self._size = 0
        self._first: CriLine | None = None
        self.truncated = False

    @property
    def pending(self) -> bool:
        return self._first is not None

    def reset(self) -> None:
        self._pieces.clear()
        self._size = 0
        self._first = None

    def add(self, line: CriLine) -> CriLine | None:
        if self._first is None:
            if not line.partial:
                self.truncated = False
                return line
            self._first = line
        self._append(line.message)
        if line.partial:
            return None
        return self.flush()

    def flush(self) -> CriLine | None:
        """The pending pieces as one message (used when a rotated file ends mid-message)."""
        first = self._first
        if first is None:
            return None
        message = "".join(self._pieces)
        self.truncated = self._size > self.max_chars
        self.reset()
        return CriLine(first.time, first.stream, False, message[: self.max_chars])

    def _append(self, piece: str) -> None:
        room = self.max_chars + 1 - self._size
        if room > 0:
            self._pieces.append(piece[:room])
        self._size += len(piece)
