"""A bounded map whose keys are forgotten a fixed time after they were added.

The time is passed in (``now``), never read here, so tests drive it with a fake clock. One
TTL for all keys, so insertion order is expiry order and expiring is popping from the front.
Not thread-safe: the caller locks.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

__all__ = ["ExpiringMap"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringMap(Generic[K, V]):
    """At most ``max_size`` keys, each kept ``ttl`` seconds after :meth:`add`."""

    def __init__(self, ttl: float, max_size: int) -> None:
        if not ttl > 0:
            raise ValueError(f"the TTL must be positive, not {ttl}")
        self.ttl = ttl
        self.max_size = max(0, max_size)
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()  # key -> (value, expires at)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K, default: V | None = None) -> V | None:
        entry = self._entries.get(key)
        return default if entry is None else entry[0]

    @property
    def next_expiry(self) -> float:
        """When :meth:`pop_expired` next has work (``inf`` when empty)."""
        return next(iter(self._entries.values()))[1] if self._entries else math.inf

    def add(self, key: K, value: V, now: float) -> bool:
        """Keep ``key`` until ``now + ttl``; ``False`` (value and expiry unchanged) if it is kept already.
        May exceed ``max_size`` until the next :meth:`pop_expired`."""
        if key in self._entries:
            return False
        self._entries[key] = (value, now + self.ttl)
        return True

    def pop_expired(self, now: float) -> list[K]:
        """Forget and return the keys expired at ``now``, and the oldest beyond ``max_size``."""
        entries, gone = self._entries, []
        while entries and (len(entries) > self.max_size or next(iter(entries.values()))[1] <= now):
            gone.append(entries.popitem(last=False)[0])
        return gone
