"""The hot path: mask each line, answer from a bounded LRU template cache, batch the misses.

The cache key is ``mask(line)``. A model fed templates (the artifact's ``info.input``) sees exactly
the key, so a cached answer is exactly what the model would say (tests assert it); a model fed the
lightly masked line sees the first line of each template, and its answer serves the template. With
the cache on, masking dominates (the model runs once per distinct template); with it off, the model does.

Masking costs ~20 µs a line here, so a first-level cache skips it: :func:`line_key` maps
every ASCII digit to ``1`` (one C-level ``str.translate``, ~0.3 µs). ``mask`` treats all
digits alike except in the hex prefix ``0x``, so lines with equal keys have equal
templates; lines where a ``0x`` could be involved keep themselves as key. On the Loghub
samples 84% of lines hit this level (timestamps, counters and ids differ only in digits).

The teacher's answers (:meth:`TemplateClassifier.learn_from_teacher`) replace cached ones in both
levels and expire ``taught_ttl`` seconds later (the clock is passed in): a wrong answer cannot stay
until a restart however often it is hit. An expired template is escalated again at its next miss.

Thread-safe: the HTTP server threads and the tail loop call :meth:`classify` at once.
OrderedDict operations are atomic under the GIL; the one race (an entry evicted between
``get`` and ``move_to_end``) is caught, so the hit path takes no lock. Teaching and expiry bump a
generation under a lock; a classify call stores its misses under that lock only if no teaching
happened meanwhile, so it never writes back an entry the teacher just replaced or let expire.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter, OrderedDict
from operator import itemgetter
from typing import Callable, Collection, Mapping, NamedTuple, Sequence

from logdistill.edge.expiring import ExpiringMap
from logdistill.edge.lines import DEFAULT_MAX_LINE_BYTES
from logdistill.edge.metrics import ClassifierMetrics
from logdistill.edge.selftest import SelfTest
from logdistill.edge.teacher_policy import DEFAULT_TAUGHT_TTL_S
from logdistill.model.runtime.inference import OnnxClassifier
from logdistill.model.runtime.templates import mask

__all__ = ["Result", "TemplateClassifier", "line_key"]

_label_of = itemgetter(0)
_DIGITS_TO_ONE = str.maketrans("0123456789", "1111111111")


def line_key(line: str) -> str:
    """A key with ``mask(a) == mask(b)`` whenever ``line_key(a) == line_key(b)`` (tests check it)."""
    key = line.translate(_DIGITS_TO_ONE)
    if "1x" in key or "1X" in key:  # maybe a "0x" hex prefix, the one place a digit's value matters
        return line
    return key


class Result(NamedTuple):
    label: str
    score: float
    template: str


class TemplateClassifier:
    """A loaded model plus its template cache. One instance per model version.

    ``cache_size=0`` turns the cache off entirely (every line goes to the model, even
    repeats within a call): the "cache off" benchmark measures the model path alone.
    Misses are sent to the model in micro-batches of ``batch_size`` templates, sorted by
    length so a batch pads little.
    """

    def __init__(
        self,
        model: OnnxClassifier,
        *,
        cache_size: int = 20_000,
        batch_size: int = 16,
        metrics: ClassifierMetrics | None = None,
        max_line_chars: int = DEFAULT_MAX_LINE_BYTES,
        seen_limit: int = 100_000,
        taught_ttl: float = DEFAULT_TAUGHT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.cache_size = max(0, cache_size)
        self.batch_size = max(1, batch_size)
        self.metrics = metrics
        self.max_line_chars = max_line_chars
        self._cache: OrderedDict[str, Result] = OrderedDict()  # template -> result
        self._by_key: OrderedDict[str, Result] = OrderedDict()  # line_key(line) -> result
        self._empty = Result(model.normal_label, 1.0, "")
        # Hashes of the templates seen, for the drift counter. Bounded (~6 MB): cleared when
        # full, so after 100k distinct templates "new" means "not seen since the last clear".
        self._seen: set[int] = set()
        self._seen_limit = seen_limit
        # The cascade (attach_escalation): where new/unsure templates and samples go.
        self._escalation = None
        self._escalate_below = 0.0
        self._sample_rate = 0.0
        self._to_sample = 0  # lines to skip before the next agreement sample
        self._rng = random.Random()
        # Template -> the student's own label, where the teacher relabelled it; forgotten (and the
        # teacher's answer dropped from both levels) taught_ttl seconds later.
        self._taught: ExpiringMap[str, str] = ExpiringMap(taught_ttl, self.cache_size)
        self._recheck: OrderedDict[str, None] = OrderedDict()  # taught, expired: escalate at the next miss
        self._clock = clock
        self._teach_lock = threading.Lock()
        self._generation = 0  # bumped (under the lock) whenever teaching or expiry changes the cache
        self._next_expiry = math.inf
        self._labels = frozenset(model.labels)
        self._model_input = None if model.input == "template" else model.model_input  # None: the template itself
        # Set by load_classifier once the model passed its self-test; /readyz needs it.
        self.self_test: SelfTest | None = None

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def normal_label(self) -> str:
        return self.model.normal_label

    @property
    def labels(self) -> Collection[str]:
        """The model's label set: the only labels a teacher answer may bring into the cache."""
        return self._labels

    def served_label(self, template: str, default: str) -> str:
        """The label the cache serves for ``template`` now (``default`` when it is not cached)."""
        current = self._cache.get(template)
        return default if current is None else current.label

    def __len__(self) -> int:
        return len(self._cache)

    def share_seen(self, other: TemplateClassifier) -> None:
        """Keep the drift counter's memory across a model swap (new templates are a data property)."""
        self._seen = other._seen

    def attach_escalation(self, client, *, escalate_below: float = 0.9, sample_rate: float = 0.0,
                          seed: int | None = None) -> None:
        """Offer new templates, templates scored under ``escalate_below`` and a uniform
        ``sample_rate`` of lines to ``client`` (an :class:`~logdistill.edge.escalation.EscalationClient`).
        Needs the cache (the teacher's answer is kept there)."""
        self._escalation = client
        self._escalate_below = escalate_below
        self._sample_rate = min(1.0, max(0.0, sample_rate))
        self._rng = random.Random(seed)
        self._to_sample = self._sample_gap()

    def learn_from_teacher(self, answers: Sequence[tuple[str, str, str, float]]) -> list[str]:
        """``(template, student label, teacher label, teacher score)`` per answer: where the labels
        differ, the teacher's answer becomes the cached one (both cache levels) until it expires.
        Returns the templates whose cached label changed. Labels outside the model's set are
        ignored (answers are validated against the model served when they arrived; a reload
        may have changed the set since)."""
        if not self.cache_size:
            return []
        with self._teach_lock:
            now = self._clock()
            changed: dict[str, Result] = {}
            for template, student, label, score in answers:
                if label not in self._labels:
                    continue
                if label != self.served_label(template, student):
                    changed[template] = Result(label, score, template)
                    self._taught.add(template, student, now)
            if not changed:
                return []
            self._store(self._cache, changed.items())
            self._rewrite_key_level(changed)
            self._generation += 1  # after the change: a call that read the old generation may have read old entries
            self._expire_taught(now)  # also trims the taught map to the cache size
            return [template for template in changed if template in self._taught]

    def expire_taught(self) -> list[str]:
        """Drop the teacher's answers older than ``taught_ttl`` from both levels now (classify does it
        too, at its first call after an expiry is due). Returns the templates dropped."""
        with self._teach_lock:
            return self._expire_taught(self._clock())

    def _expire_taught(self, now: float) -> list[str]:
        gone = self._taught.pop_expired(now)
        if gone:
            for template in gone:
                self._cache.pop(template, None)
            self._rewrite_key_level(dict.fromkeys(gone))
            self._generation += 1
            recheck = self._recheck
            recheck.update(dict.fromkeys(gone))
            for _ in range(len(recheck) - self.cache_size):
                try:
                    recheck.popitem(last=False)
                except KeyError:  # emptied by the hot path meanwhile
                    break
        self._next_expiry = self._taught.next_expiry
        return gone

    def _rewrite_key_level(self, changes: Mapping[str, Result | None]) -> None:
        """Point first-level entries of the templates in ``changes`` at their new result (``None``: drop them)."""
        by_key = self._by_key
        for _ in range(5):  # the hot path may add keys meanwhile (it takes no lock): then scan again
            try:
                stale = [key for key, result in by_key.items() if result.template in changes]
                break
            except RuntimeError:
                continue
        else:
            by_key.clear()  # cannot scan: forget the first level; it refills from the second
            return
        for key in stale:
            try:
                replacement = changes[by_key[key].template]
                if replacement is None:
                    del by_key[key]
                else:
                    by_key[key] = replacement
            except KeyError:  # evicted meanwhile
                pass

    def _sample_gap(self) -> int:
        """Lines until the next uniform sample: geometric, so each line is picked with ``sample_rate``."""
        rate = self._sample_rate
        if rate <= 0:
            return 1 << 62
        if rate >= 1:
            return 0
        return int(math.log(1.0 - self._rng.random()) / math.log(1.0 - rate))

    def _escalate(self, lines: Sequence[str], results: list, misses: dict[str, list[int]],
                  new: set[str], context: Sequence | None) -> None:
        from logdistill.edge.escalation import Escalation

        client, below, limit = self._escalation, self._escalate_below, self.max_line_chars
        for template, indices in misses.items():
            result = results[indices[0]]
            if not template:
                continue
            if template in new or result.score < below or template in self._recheck:
                self._recheck.pop(template, None)
                index = indices[0]
                client.offer(Escalation(template, lines[index][:limit], result.label, result.score, False,
                                        None if context is None else context[index]))
        position, count = self._to_sample, len(lines)
        while position < count:
            result = results[position]
            if result.template:
                client.offer(Escalation(result.template, lines[position][:limit],
                                        self._taught.get(result.template, result.label), result.score, True,
                                        None if context is None else context[position]))
            position += 1 + self._sample_gap()
        self._to_sample = position - count

    def classify(self, lines: Sequence[str], context: Sequence | None = None) -> list[Result]:
        """``Result(label, score, template)`` for each line, in order.

        ``context`` (optional, one item per line, e.g. the tailed record) travels with the
        lines offered to the teacher, so a correction can name where its line came from."""
        started = time.perf_counter()
        if self._clock() >= self._next_expiry:
            self.expire_taught()
        generation = self._generation
        limit = self.max_line_chars
        too_long = 0
        results: list[Result | None] = [None] * len(lines)
        misses: dict[str, list[int]] = {}
        if self.cache_size:
            cache, by_key = self._cache, self._by_key
            lookup, touch = cache.get, cache.move_to_end
            key_lookup, key_touch = by_key.get, by_key.move_to_end
            translate = str.translate
            table = _DIGITS_TO_ONE
            learned: list[tuple[str, int]] = []  # (key, line index) of lines whose key was new
            fresh: dict[str, int] = {}  # new key -> its first line in this call
            repeats: list[tuple[int, int]] = []  # (line index, index of the first line with its key)
            for index, line in enumerate(lines):
                if len(line) > limit:
                    line = line[:limit]
                    too_long += 1
                key = translate(line, table)
                if "1x" in key or "1X" in key:  # inline line_key(): this loop is the hot path
                    key = line
                hit = key_lookup(key)
                if hit is not None:
                    results[index] = hit
                    try:
                        key_touch(key)
                    except KeyError:  # evicted by another thread between get and touch
                        pass
                    continue
                first = fresh.get(key)
                if first is not None:  # a key already met in this call: same answer, filled in below
                    repeats.append((index, first))
                    continue
                fresh[key] = index
                template = mask(line)
                learned.append((key, index))
                hit = lookup(template)
                if hit is not None:
                    results[index] = hit
                    try:
                        touch(template)
                    except KeyError:
                        pass
                elif template in misses:
                    misses[template].append(index)
                else:
                    misses[template] = [index]
            hits = len(lines) - len(misses)
        else:
            templates = []
            for line in lines:
                if len(line) > limit:
                    line = line[:limit]
                    too_long += 1
                templates.append(mask(line))
            hits = 0
        new: set[str] = set()
        if self.cache_size:
            if misses:
                distinct = list(misses)
                inputs = None if self._model_input is None else [
                    self._model_input(lines[indices[0]][:limit]) for indices in misses.values()]
                computed = self._run_model(distinct, new, inputs)
                for answer, indices in zip(computed, misses.values()):
                    for index in indices:
                        results[index] = answer
            for index, first in repeats:
                results[index] = results[first]
            if misses or learned:
                with self._teach_lock:
                    if generation == self._generation:  # else a teaching or expiry may be overwritten
                        if misses:
                            self._store(cache, zip(distinct, computed))
                        self._store(by_key, ((key, results[index]) for key, index in learned))
            if self._escalation is not None:
                self._escalate(lines, results, misses, new, context)
        else:
            inputs = None if self._model_input is None else [self._model_input(line[:limit]) for line in lines]
            results = self._run_model(templates, None, inputs)  # type: ignore[assignment]
        self._count(results, hits, len(misses) if self.cache_size else len(lines), too_long, started)
        return results  # type: ignore[return-value]

    def _run_model(self, templates: list[str], new_templates: set[str] | None = None,
                   inputs: list[str] | None = None) -> list[Result]:
        """Model output for each template (in order), run in micro-batches of similar length; ``inputs``:
        what the model is fed for each (default the templates themselves). Templates never seen before
        are added to ``new_templates`` when given."""
        out: list[Result] = [self._empty] * len(templates)
        fed = templates if inputs is None else inputs
        order = sorted((i for i, t in enumerate(templates) if t), key=lambda i: len(fed[i]))
        metrics = self.metrics
        seen = self._seen
        new = 0
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            began = time.perf_counter()
            predictions = self.model.predict([fed[i] for i in batch])
            elapsed = time.perf_counter() - began
            for index, (label, score) in zip(batch, predictions):
                template = templates[index]
                out[index] = Result(label, score, template)
                key = hash(template)
                if key not in seen:
                    new += 1
                    seen.add(key)
                    if new_templates is not None:
                        new_templates.add(template)
            if metrics is not None:
                metrics.batch_seconds.observe(elapsed)
                per_line = elapsed / len(batch)
                for _ in batch:
                    metrics.line_seconds.observe(per_line)
        if len(seen) > self._seen_limit:
            seen.clear()
        if metrics is not None and new:
            metrics.new_templates.inc(new)
        return out

    def _store(self, cache: OrderedDict[str, Result], items) -> None:
        cache.update(items)
        for _ in range(len(cache) - self.cache_size):
            try:
                cache.popitem(last=False)
            except KeyError:  # emptied concurrently
                break

    def _count(self, results: list, hits: int, misses: int, too_long: int, started: float) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        for label, count in Counter(map(_label_of, results)).items():
            metrics.lines_classified.labels(label=label).inc(count)
        if hits:
            metrics.cache_hits.inc(hits)
        if misses:
            metrics.cache_misses.inc(misses)
        if too_long:
            metrics.malformed.labels(reason="too_long").inc(too_long)
        metrics.cache_entries.set(len(self._cache))
        elapsed = time.perf_counter() - started
        metrics.classify_seconds.observe(elapsed)
        if results:
            per_line = elapsed / len(results)
            for _ in results:
                metrics.classify_line_seconds.observe(per_line)
