"""logdistill.timefmt.rfc3339: the one timestamp format (UTC, whole seconds, ``Z``)."""

from datetime import datetime, timedelta, timezone

from logdistill.timefmt import rfc3339


def test_every_input_kind_gives_the_same_utc_second():
    aware = datetime(2026, 5, 1, 12, 0, 7, 999_999, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(aware) == "2026-05-01T10:00:07Z"
    assert rfc3339(aware.replace(tzinfo=None)) == "2026-05-01T12:00:07Z"  # naive = UTC
    assert rfc3339(aware.timestamp()) == "2026-05-01T10:00:07Z"


def test_now_parses_back():
    text = rfc3339()
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert text.endswith("Z") and abs((datetime.now(timezone.utc) - parsed).total_seconds()) < 5
