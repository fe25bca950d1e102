"""The one timestamp format every process writes: RFC 3339 in UTC, whole seconds, ``Z`` suffix.

``2026-05-01T10:00:00Z``: status fields (``lastRetrain.at``, conditions), pod annotations (progress,
agreement ``updated``), artifact manifests (``created``), the engine's progress file and the edge's
alert lines. Standard library only: every layer imports it.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

__all__ = ["rfc3339"]


def rfc3339(when: datetime | float | None = None) -> str:
    """``when`` (an aware datetime, a naive one taken as UTC, or epoch seconds; default now) as RFC 3339."""
    if when is None:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if not isinstance(when, datetime):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
