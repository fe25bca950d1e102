"""Online agreement between the student and the teacher over a sliding time window.

Each sample is one line both models judged: ``(student label, teacher label)``. The ratio is
the share of samples in the last ``window_s`` seconds where the two labels are equal, overall
and per *teacher* label (the teacher is the reference: "of the lines the teacher calls
KERNDTLB, how many does the student call KERNDTLB"). Used by the edge (its own samples) and
by the teacher service (the samples of every edge). No torch, no I/O; thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Callable

from logdistill.timefmt import rfc3339

__all__ = ["AgreementWindow", "DEFAULT_WINDOW_S"]

DEFAULT_WINDOW_S = 600


class AgreementWindow:
    """Sliding-window agreement counts. Memory is bounded by ``max_samples`` (oldest dropped)."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, *, max_samples: int = 200_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if window_s <= 0:
            raise ValueError(f"the agreement window must be positive, not {window_s}")
        self.window_s = window_s
        self.max_samples = max(1, max_samples)
        self._clock = clock
        self._events: deque[tuple[float, str, bool]] = deque()  # (time, teacher label, agreed)
        self._total: Counter[str] = Counter()
        self._agreed: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.samples_total = 0  # every sample ever added (a counter, not windowed)
        self.updated: float | None = None  # time.time() of the last sample

    def add(self, student: str, teacher: str) -> bool:
        """Record one judged line; returns whether the two labels agree."""
        agreed = student == teacher
        with self._lock:
            self._events.append((self._clock(), teacher, agreed))
            self._total[teacher] += 1
            if agreed:
                self._agreed[teacher] += 1
            self.samples_total += 1
            self.updated = time.time()
            if len(self._events) > self.max_samples:
                self._pop()
            self._expire()
        return agreed

    def ratio(self) -> float | None:
        """Agreement over the window, or ``None`` without samples in it."""
        with self._lock:
            self._expire()
            total = sum(self._total.values())
            return sum(self._agreed.values()) / total if total else None

    def samples(self) -> int:
        """Samples inside the window."""
        with self._lock:
            self._expire()
            return len(self._events)

    def by_label(self) -> dict[str, tuple[float, int]]:
        """``{teacher label: (ratio, samples)}`` over the window, for labels with samples."""
        with self._lock:
            self._expire()
            return {label: (self._agreed[label] / n, n) for label, n in self._total.items() if n}

    def snapshot(self) -> dict:
        """The ``GET /v1/agreement`` body: ``{"ratio", "samples", "windowSeconds", "updated"}``."""
        ratio, samples = self.ratio(), self.samples()
        updated = self.updated
        return {
            "ratio": ratio,
            "samples": samples,
            "windowSeconds": int(self.window_s),
            "updated": rfc3339(updated) if updated else None,
        }

    def _expire(self) -> None:
        horizon = self._clock() - self.window_s
        events = self._events
        while events and events[0][0] < horizon:
            self._pop()

    def _pop(self) -> None:
        _, label, agreed = self._events.popleft()
        self._total[label] -= 1
        if agreed:
            self._agreed[label] -= 1
        if not self._total[label]:
            del self._total[label]
            self._agreed.pop(label, None)
