"""Reading labelled logs into :class:`LogRecord` rows.

Three formats (``DataSpec.format``):

- ``loghub``: one line per record, the first whitespace-separated token is the label
  (``-`` = normal, as in BGL); the rest of the line is the text.
- ``csv``: a CSV file with a header (e.g. Loghub's ``*_structured.csv``); the text and
  label come from two named columns.
- ``jsonl``: one JSON object per line, ``{"text": ..., "label": ...}``; the label may be
  null or missing (an unlabelled line, e.g. for a teacher-labelled transfer set).

A row that cannot be used is never dropped silently: it is logged with its ``file:line``
and listed in :attr:`ReadResult.malformed` (or raises :class:`DataError` in strict mode).
Light on purpose (stdlib only): part of the torch-free runtime (:mod:`logdistill.model.runtime`).
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, get_args

if TYPE_CHECKING:
    from logdistill.spec import DataSpec

__all__ = [
    "NORMAL_LABEL",
    "Format",
    "FORMATS",
    "LogRecord",
    "DataError",
    "ReadResult",
    "read_logs",
    "bundled_sample",
    "load_records",
    "label_counts",
    "DEFAULT_SAMPLE",
]

log = logging.getLogger(__name__)

NORMAL_LABEL = "-"
"""BGL's label of a normal (non-alert) line."""

Format = Literal["loghub", "csv", "jsonl"]
FORMATS: tuple[str, ...] = get_args(Format)

DEFAULT_SAMPLE = "BGL_20k.log"
"""The bundled file used when ``DataSpec.path`` is unset."""

# Enough warnings to show what is wrong without flooding the log; every row is still listed.
_MAX_WARNINGS_PER_FILE = 20


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One usable log line."""

    text: str
    """The message as read (loghub: the line without its label token; csv: the text column; jsonl: ``text``)."""
    label: str | None
    """The label; ``None`` for an unlabelled line."""
    source: str
    """File path as given (for a directory: the directory joined with the file name)."""
    line: int
    """1-based physical line number in ``source`` (csv: the line where the row starts)."""


class DataError(ValueError):
    """Unusable input; the message names ``file:line``."""


@dataclass
class ReadResult:
    """Records read, plus one ``"file:line: reason"`` per row that could not be used."""

    records: list[LogRecord] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)

    def extend(self, other: "ReadResult") -> None:
        self.records.extend(other.records)
        self.malformed.extend(other.malformed)


class _Malformed(Exception):
    """Internal: a row is unusable for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _physical_lines(stream: BinaryIO) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` per ``\\n``-terminated line, CR of CRLF removed, bad UTF-8 replaced.

    A binary stream splits on ``\\n`` only (not on a stray ``\\r`` as universal newlines would),
    so line numbers match what ``sed -n Np`` shows; reading line by line keeps memory flat.
    """
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte order mark
            raw = raw[3:]
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        yield number, raw.decode("utf-8", errors="replace")


def _parse_loghub(text: str) -> tuple[str, str]:
    parts = text.split(None, 1)
    if len(parts) < 2 or not parts[1].strip():
        raise _Malformed(f"label {parts[0]!r} has no message")
    return parts[1].strip(), parts[0]


def _parse_jsonl(text: str) -> tuple[str, str | None]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise _Malformed(f"invalid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(obj, dict):
        raise _Malformed(f"expected a JSON object, got {type(obj).__name__}")
    message = obj.get("text")
    if not isinstance(message, str):
        raise _Malformed("'text' is missing" if message is None else f"'text' must be a string, got {type(message).__name__}")
    if not message.strip():
        raise _Malformed("'text' is empty")
    label = obj.get("label")
    if label is not None and not isinstance(label, str):
        raise _Malformed(f"'label' must be a string or null, got {type(label).__name__}")
    return message, label or None


class _Reader:
    """Collects records and malformed rows of one file, honouring ``strict``."""

    def __init__(self, source: str, strict: bool) -> None:
        self.source = source
        self.strict = strict
        self.result = ReadResult()

    def bad(self, line: int, reason: str) -> None:
        where = f"{self.source}:{line}: {reason}"
        if self.strict:
            raise DataError(where)
        if len(self.result.malformed) < _MAX_WARNINGS_PER_FILE:
            log.warning("malformed row skipped: %s", where)
        self.result.malformed.append(where)

    def add(self, text: str, label: str | None, line: int) -> None:
        self.result.records.append(LogRecord(text=text, label=label, source=self.source, line=line))

    def finish(self) -> ReadResult:
        extra = len(self.result.malformed) - _MAX_WARNINGS_PER_FILE
        if extra > 0:
            log.warning("%s: %d more malformed rows skipped (see ReadResult.malformed)", self.source, extra)
        return self.result


def _read_lines(reader: _Reader, stream: BinaryIO, parse: Callable[[str], tuple[str, str | None]]) -> None:
    for number, text in _physical_lines(stream):
        if not text.strip():
            continue
        try:
            message, label = parse(text)
        except _Malformed as err:
            reader.bad(number, err.reason)
            continue
        reader.add(message, label, number)


def _read_csv(reader: _Reader, stream: BinaryIO, text_column: str, label_column: str) -> None:
    lines = (text + "\n" for _, text in _physical_lines(stream))
    rows = csv.reader(lines)
    header: list[str] | None = None
    line_after_previous_row = 1
    for row in _csv_rows(reader, rows):
        start, line_after_previous_row = line_after_previous_row, rows.line_num + 1
        if not row or all(not cell.strip() for cell in row):
            continue  # blank line
        if header is None:
            header = [cell.strip() for cell in row]
            missing = [c for c in (text_column, label_column) if c not in header]
            if missing:
                # Every row would be unusable: always an error, strict or not.
                raise DataError(
                    f"{reader.source}:{start}: CSV header has no column {', '.join(map(repr, missing))}"
                    f" (columns: {', '.join(header)})"
                )
            text_at, label_at = header.index(text_column), header.index(label_column)
            continue
        if len(row) != len(header):
            reader.bad(start, f"{len(row)} fields, the header has {len(header)}")
            continue
        message, label = row[text_at].strip(), row[label_at].strip()
        if not message:
            reader.bad(start, f"empty {text_column!r}")
            continue
        reader.add(message, label or None, start)
    if header is None:
        raise DataError(f"{reader.source}:1: empty CSV file (no header)")


def _csv_rows(reader: _Reader, rows) -> Iterator[list[str]]:
    try:
        yield from rows
    except csv.Error as err:  # e.g. a NUL byte or a field over csv.field_size_limit(): the rest is unreadable
        raise DataError(f"{reader.source}:{rows.line_num}: unreadable CSV ({err})") from None


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        # Hidden entries are skipped: Kubernetes volume mounts hold '..data' links and the like.
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"{path}: directory holds no data files")
        return files
    if path.is_file():
        return [path]
    raise DataError(f"{path}: no such file or directory")


def read_logs(
    path: str | Path,
    format: Format = "loghub",
    *,
    text_column: str = "Content",
    label_column: str = "EventId",
    strict: bool = False,
) -> ReadResult:
    """Read a file, or every regular file of a directory (sorted by name, not recursive).

    CRLF and LF are both handled; blank lines are skipped; invalid UTF-8 is replaced. Rows that
    cannot be used are logged and listed in ``malformed``; with ``strict=True`` the first one
    raises :class:`DataError` instead.
    """
    if format not in FORMATS:
        raise DataError(f"{path}: unknown format {format!r} (expected one of {', '.join(FORMATS)})")
    result = ReadResult()
    for file in _files(Path(path)):
        source = str(file)
        reader = _Reader(source, strict)
        try:
            with file.open("rb") as stream:
                if format == "loghub":
                    _read_lines(reader, stream, _parse_loghub)
                elif format == "jsonl":
                    _read_lines(reader, stream, _parse_jsonl)
                else:
                    _read_csv(reader, stream, text_column, label_column)
        except OSError as err:
            raise DataError(f"{source}: {err.strerror or err}") from None
        result.extend(reader.finish())
    return result


def bundled_sample(name: str = DEFAULT_SAMPLE) -> Path:
    """Path of a sample file shipped in the package (``logdistill/model/data/``)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise DataError(f"{name!r}: not a bundled sample name")
    resource = resources.files("logdistill.model").joinpath("data", name)
    path = Path(str(resource))
    if not path.is_file():
        available = sorted(
            entry.name for entry in resources.files("logdistill.model").joinpath("data").iterdir()
            if entry.is_file() and not entry.name.startswith(".")
        )
        raise DataError(f"{name!r}: no such bundled sample (available: {', '.join(available)})")
    return path


def load_records(data_spec: "DataSpec") -> ReadResult:
    """Read what ``data_spec`` names; ``path`` unset = the bundled BGL sample."""
    if data_spec.path is None:
        return read_logs(bundled_sample(DEFAULT_SAMPLE), "loghub")
    return read_logs(
        data_spec.path,
        data_spec.format,
        text_column=data_spec.text_column,
        label_column=data_spec.label_column,
    )


def label_counts(records: Iterable[LogRecord]) -> dict[str, int]:
    """Lines per label, most frequent first (ties by name); unlabelled lines are not counted."""
    counts = Counter(r.label for r in records if r.label is not None)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
