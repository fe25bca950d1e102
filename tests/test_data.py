"""Reading labelled logs: formats, edge cases, malformed rows with file:line, the bundled samples."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from logdistill.model.runtime.data import (
    NORMAL_LABEL,
    DataError,
    LogRecord,
    bundled_sample,
    label_counts,
    load_records,
    read_logs,
)
from logdistill.spec import DataSpec

BGL_LINE = (
    "1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11"
    " RAS KERNEL INFO instruction cache parity error corrected"
)


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# --- loghub -----------------------------------------------------------------------------------


def test_loghub_label_is_the_first_token_and_text_the_rest(tmp_path: Path) -> None:
    f = write(tmp_path / "bgl.log", f"- {BGL_LINE}\nKERNDTLB 1117 data TLB error interrupt\n")
    result = read_logs(f)
    assert result.malformed == []
    assert result.records == [
        LogRecord(text=BGL_LINE, label=NORMAL_LABEL, source=str(f), line=1),
        LogRecord(text="1117 data TLB error interrupt", label="KERNDTLB", source=str(f), line=2),
    ]


def test_crlf_and_lf_give_the_same_records(tmp_path: Path) -> None:
    lines = ["- a 1", "APPSEV b 2", "- c 3"]
    lf = read_logs(write(tmp_path / "lf.log", "\n".join(lines) + "\n")).records
    crlf = read_logs(write(tmp_path / "crlf.log", "\r\n".join(lines) + "\r\n")).records
    assert [(r.text, r.label, r.line) for r in lf] == [(r.text, r.label, r.line) for r in crlf]
    assert all("\r" not in r.text for r in crlf)


def test_last_line_without_newline_is_read(tmp_path: Path) -> None:
    records = read_logs(write(tmp_path / "x.log", "- a\r\n- b")).records
    assert [(r.text, r.line) for r in records] == [("a", 1), ("b", 2)]


def test_blank_lines_are_skipped_but_counted_in_line_numbers(tmp_path: Path) -> None:
    result = read_logs(write(tmp_path / "x.log", "\n- first\n   \n\t\r\n- second\n\n"))
    assert [(r.text, r.line) for r in result.records] == [("first", 2), ("second", 5)]
    assert result.malformed == []


def test_label_without_message_is_malformed_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = write(tmp_path / "x.log", "- ok line\nKERNDTLB\nAPPSEV   \r\n- another\n")
    with caplog.at_level(logging.WARNING, logger="logdistill.model.runtime.data"):
        result = read_logs(f)
    assert [r.line for r in result.records] == [1, 4]
    assert result.malformed == [
        f"{f}:2: label 'KERNDTLB' has no message",
        f"{f}:3: label 'APPSEV' has no message",
    ]
    assert f"{f}:2:" in caplog.text and f"{f}:3:" in caplog.text


def test_strict_mode_raises_on_the_first_malformed_row(tmp_path: Path) -> None:
    f = write(tmp_path / "x.log", "- fine\n\nKERNDTLB\n- x\nAPPSEV\n")
    with pytest.raises(DataError, match=rf"^{f}:3: label 'KERNDTLB' has no message$"):
        read_logs(f, strict=True)


def test_a_stray_carriage_return_does_not_split_a_line(tmp_path: Path) -> None:
    records = read_logs(write(tmp_path / "x.log", "- a\rb\n- c\n")).records
    assert [(r.text, r.line) for r in records] == [("a\rb", 1), ("c", 2)]


def test_every_malformed_row_is_listed_but_warnings_are_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = write(tmp_path / "x.log", "KERNDTLB\n" * 25 + "- fine\n")
    with caplog.at_level(logging.WARNING, logger="logdistill.model.runtime.data"):
        result = read_logs(f)
    assert len(result.malformed) == 25 and result.malformed[-1].startswith(f"{f}:25:")
    assert len(caplog.records) == 21
    assert "5 more malformed rows" in caplog.records[-1].getMessage()


def test_invalid_utf8_is_replaced_not_malformed(tmp_path: Path) -> None:
    f = write(tmp_path / "x.log", b"- caf\xe9 \xff\xfe broken\n- ok\n")
    result = read_logs(f)
    assert result.malformed == []
    assert result.records[0].text == "caf\ufffd \ufffd\ufffd broken"
    assert result.records[1].text == "ok"


def test_utf8_byte_order_mark_is_not_part_of_the_first_label(tmp_path: Path) -> None:
    records = read_logs(write(tmp_path / "x.log", b"\xef\xbb\xbfKERNSTOR msg\n")).records
    assert records[0].label == "KERNSTOR"


# --- jsonl ------------------------------------------------------------------------------------


def test_jsonl_labels_null_missing_and_present(tmp_path: Path) -> None:
    rows = [
        {"text": "disk full on /dev/sda1", "label": "ALERT"},
        {"text": "heartbeat ok", "label": None},
        {"text": "no label at all"},
        {"text": "extra fields are fine", "label": "-", "ts": 3},
    ]
    f = write(tmp_path / "x.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    result = read_logs(f, "jsonl")
    assert result.malformed == []
    assert [(r.text, r.label, r.line) for r in result.records] == [
        ("disk full on /dev/sda1", "ALERT", 1),
        ("heartbeat ok", None, 2),
        ("no label at all", None, 3),
        ("extra fields are fine", "-", 4),
    ]


def test_jsonl_malformed_rows_name_file_and_line(tmp_path: Path) -> None:
    lines = [
        '{"text": "good", "label": "-"}',
        "[1, 2]",
        '{"text": 42}',
        '{"label": "-"}',
        "{not json",
        "",
        '{"text": "x", "label": 7}',
        '{"text": "   "}',
        '{"text": "also good"}',
    ]
    f = write(tmp_path / "x.jsonl", "\r\n".join(lines))
    result = read_logs(f, "jsonl")
    assert [r.line for r in result.records] == [1, 9]
    lines_of_malformed = [int(m.split(":")[1]) for m in result.malformed]
    assert lines_of_malformed == [2, 3, 4, 5, 7, 8]
    assert all(m.startswith(f"{f}:") for m in result.malformed)
    assert "expected a JSON object, got list" in result.malformed[0]
    assert "'text' must be a string, got int" in result.malformed[1]
    assert "'text' is missing" in result.malformed[2]
    assert "invalid JSON" in result.malformed[3]
    assert "'label' must be a string or null, got int" in result.malformed[4]
    with pytest.raises(DataError, match=rf"^{f}:2: expected a JSON object"):
        read_logs(f, "jsonl", strict=True)


# --- csv --------------------------------------------------------------------------------------


def test_csv_quoted_commas_quotes_and_multiline_fields(tmp_path: Path) -> None:
    text = (
        "LineId,Content,EventId\r\n"
        '1,"a, b, and c",E1\r\n'
        '2,"she said ""hi""",E2\r\n'
        '3,"first\r\nsecond",E3\r\n'
        "4,plain,E4\r\n"
    )
    f = write(tmp_path / "s.csv", text)
    result = read_logs(f, "csv")
    assert result.malformed == []
    assert [(r.text, r.label, r.line) for r in result.records] == [
        ("a, b, and c", "E1", 2),
        ('she said "hi"', "E2", 3),
        ("first\nsecond", "E3", 4),
        ("plain", "E4", 6),  # the row after a two-line row starts on line 6
    ]


def test_csv_rows_with_missing_or_extra_columns_are_malformed(tmp_path: Path) -> None:
    f = write(tmp_path / "s.csv", "LineId,Content,EventId\n1,ok,E1\n2,short\n\n3,too,many,E3\n4,,E4\n5,fine,\n")
    result = read_logs(f, "csv")
    assert [(r.text, r.label, r.line) for r in result.records] == [("ok", "E1", 2), ("fine", None, 7)]
    assert result.malformed == [
        f"{f}:3: 2 fields, the header has 3",
        f"{f}:5: 4 fields, the header has 3",
        f"{f}:6: empty 'Content'",
    ]
    with pytest.raises(DataError, match=rf"^{f}:3: 2 fields"):
        read_logs(f, "csv", strict=True)


def test_csv_custom_columns_and_a_missing_header_column(tmp_path: Path) -> None:
    f = write(tmp_path / "s.csv", "msg,cls\nhello world,A\n")
    assert [(r.text, r.label) for r in read_logs(f, "csv", text_column="msg", label_column="cls").records] == [
        ("hello world", "A")
    ]
    with pytest.raises(DataError, match=rf"^{f}:1: CSV header has no column 'Content', 'EventId' \(columns: msg, cls\)"):
        read_logs(f, "csv")


def test_unreadable_csv_is_an_error_naming_the_line(tmp_path: Path) -> None:
    f = write(tmp_path / "s.csv", "Content,EventId\nok,E1\n" + "x" * 200_000 + ",E2\n")
    with pytest.raises(DataError, match=rf"^{f}:3: unreadable CSV \(field larger than field limit"):
        read_logs(f, "csv")


def test_empty_csv_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path / "s.csv", "\n\n")
    with pytest.raises(DataError, match=rf"^{f}:1: empty CSV file"):
        read_logs(f, "csv")


# --- paths ------------------------------------------------------------------------------------


def test_directory_reads_regular_files_sorted_by_name(tmp_path: Path) -> None:
    write(tmp_path / "b.log", "- second file\n")
    write(tmp_path / "a.log", "- first file\nKERNDTLB\n")
    write(tmp_path / ".hidden", "not a log\n")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "c.log", "- nested, not read\n")
    result = read_logs(tmp_path)
    assert [(r.text, Path(r.source).name, r.line) for r in result.records] == [
        ("first file", "a.log", 1),
        ("second file", "b.log", 1),
    ]
    assert result.malformed == [f"{tmp_path / 'a.log'}:2: label 'KERNDTLB' has no message"]


def test_missing_path_empty_directory_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory"):
        read_logs(tmp_path / "nope.log")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no data files"):
        read_logs(tmp_path / "empty")
    f = write(tmp_path / "x.log", "- a\n")
    with pytest.raises(DataError, match="unknown format 'xml'"):
        read_logs(f, "xml")  # type: ignore[arg-type]


# --- bundled samples and helpers --------------------------------------------------------------


def test_bundled_samples_are_installed_package_data() -> None:
    path = bundled_sample()
    assert path.name == "BGL_20k.log" and path.is_file()
    assert path.parent.name == "data"
    for name in ("BGL_2k.log", "BGL_2k.log_structured.csv", "HDFS_2k.log_structured.csv", "LICENSE_loghub.txt"):
        assert bundled_sample(name).is_file()
    assert "Loghub" in bundled_sample("SOURCES.md").read_text(encoding="utf-8")


def test_unknown_bundled_sample_lists_what_exists() -> None:
    with pytest.raises(DataError, match=r"no such bundled sample \(available: .*BGL_20k\.log"):
        bundled_sample("nope.log")
    with pytest.raises(DataError, match="not a bundled sample name"):
        bundled_sample("../data.py")


def test_load_records_defaults_to_the_bundled_bgl_sample() -> None:
    result = load_records(DataSpec())
    assert result.malformed == []
    assert len(result.records) == 17_072
    counts = label_counts(result.records)
    assert counts[NORMAL_LABEL] == 15_815
    assert counts["KERNDTLB"] == 696
    assert len(counts) == 13
    assert list(counts)[0] == NORMAL_LABEL


def test_load_records_follows_the_spec_fields() -> None:
    spec = DataSpec(path=str(bundled_sample("HDFS_2k.log_structured.csv")), format="csv")
    records = load_records(spec).records
    assert len(records) == 2000
    assert records[0].label == "E10" and records[0].text.startswith("PacketResponder 1 for block")


def test_bundled_bgl_csv_and_log_agree_line_for_line() -> None:
    """The CRLF loghub file and its structured CSV hold the same lines: labels and messages match."""
    log = read_logs(bundled_sample("BGL_2k.log")).records
    csv_rows = read_logs(bundled_sample("BGL_2k.log_structured.csv"), "csv", label_column="Label").records
    assert len(log) == len(csv_rows) == 1737
    assert [r.label for r in log] == [r.label for r in csv_rows]
    assert [r.line + 1 for r in log] == [r.line for r in csv_rows]  # the CSV has a header line
    assert all(r.text.split(None, 8)[8] == c.text for r, c in zip(log, csv_rows))


def test_label_counts_most_frequent_first_and_skips_unlabelled() -> None:
    records = [LogRecord(t, label, "s", i) for i, (t, label) in enumerate([("a", "B"), ("b", "-"), ("c", "A"),
                                                                            ("d", "-"), ("e", None), ("f", "B")])]
    assert list(label_counts(records).items()) == [("-", 2), ("B", 2), ("A", 1)]
