"""Line decoding, CRI parsing and partial-line reassembly, including a hypothesis fuzz test."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from logdistill.edge.lines import (
    MALFORMED_REASONS,
    CriAssembler,
    CriLine,
    LineSplitter,
    decode_line,
    parse_cri,
    pod_from_path,
)


def test_decode_line_handles_crlf_invalid_utf8_nul_and_overlong():
    assert decode_line(b"hello world\r") == ("hello world", [])
    text, reasons = decode_line(b"bad \xff\xfe bytes")
    assert reasons == ["invalid_utf8"] and text == "bad \ufffd\ufffd bytes"
    text, reasons = decode_line(b"bin\x00ary")
    assert reasons == ["binary"] and "\x00" not in text
    text, reasons = decode_line(b"x" * 1_000_000, max_bytes=100)
    assert reasons == ["too_long"] and text == "x" * 100


def test_decode_line_never_splits_a_multibyte_character_when_truncating():
    raw = ("é" * 10).encode()  # 2 bytes each
    text, reasons = decode_line(raw, max_bytes=5)
    assert text == "éé" and reasons == ["too_long"]


def test_parse_cri_full_partial_and_not_cri():
    assert parse_cri("2024-01-01T00:00:00.123456789Z stdout F hello  world") == CriLine(
        "2024-01-01T00:00:00.123456789Z", "stdout", False, "hello  world"
    )
    assert parse_cri("2024-01-01T00:00:00Z stderr P part") == CriLine("2024-01-01T00:00:00Z", "stderr", True, "part")
    assert parse_cri("2024-01-01T00:00:00Z stdout F") == CriLine("2024-01-01T00:00:00Z", "stdout", False, "")
    for text in ("just a plain line", "2024 stdin F x", "2024-01-01 stdout X msg", "", "stdout stdout F msg"):
        assert parse_cri(text) is None, text


def test_cri_assembler_joins_partial_pieces_with_the_first_time():
    assembler = CriAssembler()
    assert assembler.add(CriLine("t1", "stdout", True, "disk ")) is None
    assert assembler.add(CriLine("t2", "stdout", True, "err")) is None
    assert assembler.pending
    assert assembler.add(CriLine("t3", "stdout", False, "or on node 7")) == CriLine(
        "t1", "stdout", False, "disk error on node 7"
    )
    assert not assembler.pending
    assert assembler.add(CriLine("t4", "stderr", False, "whole")) == CriLine("t4", "stderr", False, "whole")


def test_cri_assembler_bounds_a_huge_partial_message():
    assembler = CriAssembler(max_chars=10)
    for _ in range(1000):
        assert assembler.add(CriLine("t", "stdout", True, "abcdefgh")) is None
    done = assembler.add(CriLine("t", "stdout", False, "end"))
    assert done is not None and len(done.message) == 10 and assembler.truncated


def test_pod_from_kubelet_path():
    pod = pod_from_path("/var/log/pods/kube-system_coredns-5d78c9869d-abcde_0f1e2d3c-uid/coredns/3.log")
    assert (pod.namespace, pod.pod, pod.uid, pod.container) == (
        "kube-system", "coredns-5d78c9869d-abcde", "0f1e2d3c-uid", "coredns"
    )
    assert pod_from_path("/var/log/syslog") is None
    assert pod_from_path("/var/log/pods/x/c/0.log") is None


def test_splitter_bounds_memory_of_an_endless_line():
    splitter = LineSplitter(max_bytes=16)
    for _ in range(1000):
        assert splitter.feed(b"y" * 1000) == []
    (line, truncated, end), = splitter.feed(b"yy\nnext")
    assert truncated and len(line) == 17 and end == 3
    assert decode_line(line, 16) == ("y" * 16, ["too_long"])
    assert splitter.flush() == (b"next", False)


def _split_all(data: bytes, cuts: list[int], max_bytes: int) -> list[tuple[bytes, int]]:
    """Feed ``data`` in pieces cut at ``cuts``; lines with their absolute end offsets."""
    splitter = LineSplitter(max_bytes)
    out, base, previous = [], 0, 0
    for cut in [*sorted(set(c % (len(data) + 1) for c in cuts)), len(data)]:
        piece = data[previous:cut]
        for line, _truncated, end in splitter.feed(piece):
            out.append((line, base + end))
        base += len(piece)
        previous = cut
    rest = splitter.flush()
    if rest is not None:
        out.append((rest[0], len(data)))
    return out


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=400) | st.lists(
        st.sampled_from([b"\n", b"\r\n", b"2024-01-01T00:00:00Z stdout P ab", b"2024-01-01T00:00:00Z stderr F cd",
                         b"\xff\xfe", b"\x00", b"plain text", b" ", b"\xc3\xa9"]), max_size=40
    ).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=8),
    max_bytes=st.integers(min_value=1, max_value=64),
)
def test_fuzz_line_parser_is_total_and_independent_of_read_chunking(data, cuts, max_bytes):
    """However bytes arrive, the same lines come out; decoding and CRI parsing never raise."""
    whole = _split_all(data, [], max_bytes)
    assert _split_all(data, cuts, max_bytes) == whole
    assert [end for _, end in whole] == sorted(end for _, end in whole)
    assert len([1 for _, end in whole if end <= len(data)]) == len(whole)
    assembler = CriAssembler(max_chars=max_bytes)
    for line, _end in whole:
        assert len(line) <= max_bytes + 1
        text, reasons = decode_line(line, max_bytes)
        assert set(reasons) <= set(MALFORMED_REASONS)
        assert "\x00" not in text and len(text.encode("utf-8", "surrogatepass")) <= max_bytes * 3
        parsed = parse_cri(text)
        if parsed is not None:
            done = assembler.add(parsed)
            assert done is None or (not done.partial and len(done.message) <= max_bytes)


@given(
    time=st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{1,20}Z\Z"),
    stream=st.sampled_from(["stdout", "stderr"]),
    partial=st.booleans(),
    message=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=60),
)
def test_fuzz_cri_round_trip(time, stream, partial, message):
    line = f"{time} {stream} {'P' if partial else 'F'} {message}"
    assert parse_cri(line) == CriLine(time, stream, partial, message)
