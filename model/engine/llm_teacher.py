"""An LLM teacher behind an OpenAI-compatible API (``teacher.endpoint``: vLLM, Ollama, ...).

Soft targets, ``[N, C]`` like a checkpoint teacher's (columns in the label order given):

* The label set goes in the prompt as lettered choices (``A``, ``B``, ...; short codes are
  single tokens in every tokenizer, label names are not); the model answers with one code.
* **logprobs** (``logprobs: true, top_logprobs: k``): the first answer token's top-k
  alternatives are mapped back to codes and renormalised; codes absent from the top-k get
  the smallest returned log-probability (they are at most that likely). Soft targets are
  ``softmax(logp / T)``, the checkpoint teacher's ``softmax(z / T)`` with log-probabilities
  as logits.
* **samples**, when the server returns no logprobs: ``samples`` answers (``n``, or repeated
  requests if the server ignores ``n``) give label frequencies ``f``; soft targets ``f^(1/T)``
  renormalised.

Responses are cached on disk per line: ``<cache>/<h[:2]>/<h>.json`` with
``h = sha256(prompt version, model, labels, template)``; the file holds the label distribution
only (never a request, a header or the key). Requests run ``concurrency`` at a time under a
shared ``requestsPerSecond`` limit; 429 (``Retry-After`` honoured), 5xx, timeouts, connection
errors and malformed bodies are retried with exponential backoff, then reported with the line,
the HTTP status and a snippet of the body (the key, were it echoed, is redacted).

The API key is read from the environment variable named by ``apiKeyEnv`` and only ever put in
the ``Authorization`` header.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["PROMPT_VERSION", "LlmTeacherError", "RateLimiter", "LlmTeacher", "choice_codes", "default_cache_dir"]

PROMPT_VERSION = "labels-v1"
"""Part of every cache key: bump it when the prompt changes so old answers are not reused."""
SNIPPET = 200
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
log = logging.getLogger("logdistill.llm_teacher")


class LlmTeacherError(Exception):
    """The endpoint teacher failed for a line; the message names the line, the status and a body snippet."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "logdistill" / "llm-teacher"


def choice_codes(count: int) -> list[str]:
    """``A``..``Z``, then ``AA``, ``AB``, ...: one short code per label."""
    letters = [chr(ord("A") + i) for i in range(26)]
    codes = list(letters)
    for first in letters:
        codes.extend(first + second for second in letters)
    if count > len(codes):
        raise ValueError(f"{count} labels: at most {len(codes)} are supported")
    return codes[:count]


class RateLimiter:
    """At most ``rate`` acquisitions per second, shared by threads: each caller gets the next slot."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


class _Retryable(Exception):
    def __init__(self, message: str, status: int | None, delay: float | None = None) -> None:
        super().__init__(message)
        self.status, self.delay = status, delay


@dataclass
class Stats:
    """Counters for the report (no line text, no key)."""

    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    logprob_lines: int = 0
    sampled_lines: int = 0
    unmatched_answers: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "retries": self.retries, "cacheHits": self.cache_hits,
                "logprobLines": self.logprob_lines, "sampledLines": self.sampled_lines,
                "unmatchedAnswers": self.unmatched_answers, "statuses": dict(self.statuses)}


class LlmTeacher:
    """Soft targets and paraphrases from an OpenAI-compatible chat-completions endpoint.

    ``endpoint`` is a :class:`logdistill.spec.EndpointTeacher`; ``labels`` the label set (the
    training data's). ``environ`` is where ``apiKeyEnv`` is looked up (a missing variable means
    no ``Authorization`` header, as local vLLM/Ollama servers need none).
    """

    def __init__(self, endpoint: Any, labels: Sequence[str], *, environ: Any = None,
                 cache_dir: str | Path | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        environ = os.environ if environ is None else environ
        self.url = endpoint.url.rstrip("/") + "/chat/completions"
        self.model = endpoint.model
        self.labels = list(labels)
        self.codes = choice_codes(len(self.labels))
        self.top_logprobs = endpoint.top_logprobs
        self.samples = endpoint.samples
        self.timeout = endpoint.timeout_seconds
        self.max_retries = endpoint.max_retries
        self.concurrency = endpoint.concurrency
        self.cache_dir = Path(cache_dir or endpoint.cache_dir or default_cache_dir())
        self._key = environ.get(endpoint.api_key_env) or None
        self._key_env = endpoint.api_key_env
        self._sleep = sleep
        self.limiter = RateLimiter(endpoint.requests_per_second, sleep=sleep)
        self.stats = Stats()
        self._stats_lock = threading.Lock()
        self._logprobs_supported: bool | None = None

    def __repr__(self) -> str:  # never the key
        return f"LlmTeacher(url={self.url!r}, model={self.model!r}, labels={len(self.labels)})"

    # --- prompt -------------------------------------------------------------------------
    def messages(self, template: str) -> list[dict[str, str]]:
        choices = "\n".join(f"{code}: {label}" for code, label in zip(self.codes, self.labels))
        return [
            {"role": "system", "content": "You classify system log messages. Variable parts are masked as <NUM>,"
                                          " <ID>, <HEX>, <PATH>, <IP>. Answer with the letter code of exactly one"
                                          " label and nothing else."},
            {"role": "user", "content": f"Labels ('-' means a normal line):\n{choices}\n\nLog message:\n{template}\n\n"
                                        "Label code:"},
        ]

    def cache_key(self, template: str) -> str:
        h = hashlib.sha256()
        for part in (PROMPT_VERSION, self.model, "\x1f".join(self.labels), template):
            h.update(part.encode("utf-8"))
            h.update(b"\0")
        return h.hexdigest()

    # --- soft targets -----------------------------------------------------------------------
    def soft_targets(self, templates: Sequence[str], temperature: float = 1.0,
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """``[N, C]`` float32 soft targets at ``temperature`` (one request set per distinct template)."""
        distinct = list(dict.fromkeys(templates))
        done = [0]
        lock = threading.Lock()

        def one(item: tuple[int, str]) -> np.ndarray:
            line, template = item
            dist = self.distribution(template, line)
            with lock:
                done[0] += 1
                if progress:
                    progress(done[0], len(distinct))
            return dist

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            rows = list(pool.map(one, enumerate(distinct)))
        raw = {t: r for t, r in zip(distinct, rows)}
        return np.stack([_at_temperature(raw[t], temperature) for t in templates]).astype(np.float32) \
            if templates else np.zeros((0, len(self.labels)), dtype=np.float32)

    def distribution(self, template: str, line: int = 0) -> np.ndarray:
        """The raw ``[C]`` label distribution for one template (cached on disk)."""
        path = self._cache_path(template)
        if path.is_file():
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
                dist = np.array([cached["distribution"][label] for label in self.labels], dtype=np.float64)
                self._count("cache_hits")
                return dist
            except (ValueError, KeyError, TypeError):
                log.warning("llm teacher cache %s is unreadable; asking again", path)
        dist, mode = self._ask(template, line)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"model": self.model, "promptVersion": PROMPT_VERSION, "mode": mode,
                                   "distribution": dict(zip(self.labels, dist.tolist()))}), encoding="utf-8")
        os.replace(tmp, path)
        return dist

    def _cache_path(self, template: str) -> Path:
        key = self.cache_key(template)
        return self.cache_dir / key[:2] / f"{key}.json"

    def _ask(self, template: str, line: int) -> tuple[np.ndarray, str]:
        if self._logprobs_supported is not False:
            body = self.request({"model": self.model, "messages": self.messages(template), "max_tokens": 2,
                                 "temperature": 0.0, "logprobs": True, "top_logprobs": self.top_logprobs}, line)
            dist = self._from_logprobs(body)
            if dist is not None:
                self._logprobs_supported = True
                self._count("logprob_lines")
                return dist, "logprobs"
            if self._logprobs_supported is None:
                self._logprobs_supported = False
                log.info("endpoint returned no token logprobs: soft targets from %d samples per line", self.samples)
        return self._from_samples(template, line), "samples"

    def _from_logprobs(self, body: dict[str, Any]) -> np.ndarray | None:
        try:
            first = body["choices"][0]["logprobs"]["content"][0]
            top = first.get("top_logprobs") or [{"token": first["token"], "logprob": first["logprob"]}]
        except (KeyError, IndexError, TypeError):
            return None
        by_code: dict[str, float] = {}
        for entry in top:
            code = str(entry.get("token", "")).strip().strip(".:)").upper()
            if code in self.codes and code not in by_code:
                by_code[code] = float(entry["logprob"])
        if not by_code:
            self._count("unmatched_answers")
            return None
        floor = min(float(e["logprob"]) for e in top)
        logp = np.array([by_code.get(code, floor) for code in self.codes])
        p = np.exp(logp - logp.max())
        return p / p.sum()

    def _from_samples(self, template: str, line: int) -> np.ndarray:
        counts = np.zeros(len(self.labels))
        answers = 0
        for _ in range(self.samples * 2):  # a server that ignores n answers once per request
            if answers >= self.samples:
                break
            body = self.request({"model": self.model, "messages": self.messages(template), "max_tokens": 8,
                                 "temperature": 1.0, "n": self.samples - answers}, line)
            for choice in body.get("choices") or []:
                answers += 1
                index = self._answer_index(_content(choice))
                if index is None:
                    self._count("unmatched_answers")
                else:
                    counts[index] += 1
        if counts.sum() == 0:
            raise LlmTeacherError(f"line {line}: none of {answers} sampled answers names a label code"
                                  f" ({', '.join(self.codes[:5])}...) for template {template[:80]!r}")
        self._count("sampled_lines")
        return counts / counts.sum()

    def _answer_index(self, text: str) -> int | None:
        text = text.strip()
        match = re.match(r"^\W*([A-Za-z]{1,2})\b", text)
        if match and match.group(1).upper() in self.codes:
            return self.codes.index(match.group(1).upper())
        if text in self.labels:
            return self.labels.index(text)
        return None

    # --- paraphrases -------------------------------------------------------------------------------
    def paraphrases(self, template: str, count: int, line: int = 0) -> list[str]:
        """Up to ``count`` distinct rewordings of ``template`` (placeholders kept), cached like labels."""
        key = hashlib.sha256(f"paraphrase-v1\0{self.model}\0{count}\0{template}".encode()).hexdigest()
        path = self.cache_dir / "paraphrases" / key[:2] / f"{key}.json"
        if path.is_file():
            try:
                self._count("cache_hits")
                return list(json.loads(path.read_text(encoding="utf-8"))["paraphrases"])
            except (ValueError, KeyError, TypeError):
                pass
        messages = [
            {"role": "system", "content": "You rewrite system log messages. Keep placeholders such as <NUM>, <ID>,"
                                          " <HEX>, <PATH>, <IP> unchanged. Output one rewording per line, nothing"
                                          " else."},
            {"role": "user", "content": f"Write {count} different rewordings of this log message with the same"
                                        f" meaning:\n{template}"},
        ]
        body = self.request({"model": self.model, "messages": messages, "temperature": 0.8,
                             "max_tokens": 64 * count}, line)
        text = "\n".join(_content(c) for c in body.get("choices") or [])
        out: list[str] = []
        for raw in text.splitlines():
            cleaned = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", raw).strip().strip('"')
            if cleaned and cleaned != template and cleaned not in out:
                out.append(cleaned)
        out = out[:count]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"model": self.model, "paraphrases": out}), encoding="utf-8")
        os.replace(tmp, path)
        return out

    # --- HTTP ----------------------------------------------------------------------------------------
    def request(self, payload: dict[str, Any], line: int) -> dict[str, Any]:
        """POST ``payload``; retries, then :class:`LlmTeacherError` naming the line, status and body."""
        data = json.dumps(payload).encode("utf-8")
        last: _Retryable | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count("retries")
                delay = last.delay if last and last.delay is not None else BACKOFF_BASE_S * 2 ** (attempt - 1)
                self._sleep(min(BACKOFF_MAX_S, delay))
            self.limiter.acquire()
            try:
                return self._post(data, line)
            except _Retryable as err:
                last = err
                log.warning("llm teacher: line %d attempt %d/%d: %s", line, attempt + 1, self.max_retries + 1, err)
        assert last is not None
        raise LlmTeacherError(f"line {line}: {self.url} failed after {self.max_retries + 1} attempts"
                              f" (last status {last.status}): {last}") from None

    def _post(self, data: bytes, line: int) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        self._count("requests")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read() if err.fp else b""
            self._status(status)
            snippet = self._snippet(raw)
            if status == 429 or status >= 500:
                raise _Retryable(f"HTTP {status}: {snippet}", status, _retry_after(err.headers.get("Retry-After")))
            raise LlmTeacherError(f"line {line}: {self.url} answered HTTP {status}: {snippet}") from None
        except (TimeoutError, socket.timeout) as err:
            raise _Retryable(f"timed out after {self.timeout:g}s ({type(err).__name__})", None) from None
        except urllib.error.URLError as err:
            raise _Retryable(f"cannot reach the endpoint: {err.reason}", None) from None
        except (ConnectionError, OSError) as err:
            raise _Retryable(f"connection failed: {type(err).__name__}", None) from None
        self._status(status)
        try:
            body = json.loads(raw)
            if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
                raise ValueError("no choices")
        except ValueError as err:
            raise _Retryable(f"malformed answer (HTTP {status}, {err}): {self._snippet(raw)}", status) from None
        return body

    def _snippet(self, raw: bytes) -> str:
        text = raw[:SNIPPET * 2].decode("utf-8", "replace")
        if self._key:
            text = text.replace(self._key, "***")
        return repr(text[:SNIPPET])

    def _count(self, name: str) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _status(self, status: int) -> None:
        with self._stats_lock:
            self.stats.statuses[str(status)] = self.stats.statuses.get(str(status), 0) + 1


def _content(choice: dict[str, Any]) -> str:
    message = choice.get("message") or {}
    return str(message.get("content") or choice.get("text") or "")


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def _at_temperature(dist: np.ndarray, temperature: float) -> np.ndarray:
    """``p^(1/T)`` renormalised, i.e. ``softmax(log p / T)``; zeros stay zero."""
    with np.errstate(divide="ignore"):
        logp = np.where(dist > 0, np.log(np.clip(dist, 1e-300, None)), -np.inf) / temperature
    p = np.exp(logp - logp.max())
    return p / p.sum()
