"""edge.alerts.AlertWriter: one writer for the alert stream, shared by the pipeline and the teacher answers."""

import io
import json
import logging

from logdistill.edge.alerts import AlertWriter


class Broken(io.StringIO):
    def write(self, text):
        raise BrokenPipeError("gone")


def test_records_become_json_lines_and_a_writer_is_shared():
    out = io.StringIO()
    writer = AlertWriter(out)
    assert AlertWriter.of(writer) is writer and AlertWriter.of(out).stream is out
    writer.write([{"label": "FATAL", "line": "a"}, {"label": "ERROR", "line": "b"}])
    writer.write([])
    assert [json.loads(line)["line"] for line in out.getvalue().splitlines()] == ["a", "b"]


def test_a_broken_stream_is_given_up_once(caplog):
    writer = AlertWriter(Broken())
    with caplog.at_level(logging.ERROR, logger="logdistill.edge.alerts"):
        writer.write([{"label": "FATAL"}])
        writer.write([{"label": "FATAL"}])
    assert not writer.enabled
    assert len([r for r in caplog.records if "cannot write alerts" in r.message]) == 1


def test_no_stream_writes_nothing():
    writer = AlertWriter(None)
    writer.write([{"label": "FATAL"}])
    assert not writer.enabled
