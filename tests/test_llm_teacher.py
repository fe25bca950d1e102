"""The LLM teacher against a real local HTTP server speaking the OpenAI chat-completions protocol."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from logdistill.model.engine.llm_teacher import LlmTeacher, LlmTeacherError, RateLimiter, choice_codes
from logdistill.spec import EndpointTeacher

LABELS = ["-", "KERNFAIL", "APPERR"]
KEY = "sk-test-SECRET-0123456789"
TEMPLATES = ["RAS KERNEL INFO cache ok <NUM>", "RAS KERNEL FATAL node failure detected", "RAS APP FATAL job error in parser"]


def truth(template: str) -> str:
    return "KERNFAIL" if "KERNEL FATAL" in template else "APPERR" if "APP FATAL" in template else "-"


class FakeLlm:
    """``POST /v1/chat/completions``; ``plan`` (a list, consumed per request) scripts failures:
    ``("status", code, headers, body)``, ``("hang",)``, ``("malformed",)``; then normal answers.
    ``logprobs``: answer with token logprobs when asked; ``ignore_n``: one choice per request."""

    def __init__(self, *, logprobs: bool = True, ignore_n: bool = False) -> None:
        self.logprobs, self.ignore_n = logprobs, ignore_n
        self.extra_paraphrases: list[str] = []
        self.plan: list[tuple] = []
        self.requests: list[dict] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append({"t": time.monotonic(), "path": self.path, "body": body,
                                          "auth": self.headers.get("Authorization")})
                    step = fake.plan.pop(0) if fake.plan else ("ok",)
                if step[0] == "hang":
                    fake.release.wait(5)
                    return
                if step[0] == "status":
                    _, code, headers, text = step
                    self.send_response(code)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    payload = text.replace("{auth}", self.headers.get("Authorization", "")).encode()
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                payload = b'{"choices": [{"message": ' if step[0] == "malformed" else json.dumps(fake.answer(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, body: dict) -> dict:
        user = body["messages"][-1]["content"]
        if "rewordings" in user:
            template = user.rsplit("\n", 1)[-1]
            lines = [f"1. {template} (again)", f"2. Notice: {template}", f"- {template}", *self.extra_paraphrases]
            return {"choices": [{"message": {"content": "\n".join(lines)}}]}
        choices = dict(re.findall(r"^([A-Z]{1,2}): (.+)$", user, re.M))
        code = {label: c for c, label in choices.items()}[truth(user.split("Log message:\n")[1].split("\n")[0])]
        others = [c for c in choices if c != code]
        if body.get("logprobs") and self.logprobs:
            top = [{"token": code, "logprob": -0.1}] + [{"token": c, "logprob": -3.0 - i} for i, c in enumerate(others)]
            top.append({"token": "The", "logprob": -6.0})
            content = {"content": [{"token": code, "logprob": -0.1, "top_logprobs": top[: body["top_logprobs"]]}]}
            return {"choices": [{"message": {"content": code}, "logprobs": content}]}
        n = 1 if self.ignore_n else body.get("n", 1)
        # 4 of 5 samples right, the 5th the next code: a known majority distribution
        answers = [code if (len(self.requests) + i) % 5 else others[0] for i in range(n)]
        return {"choices": [{"message": {"content": f"{a}"}, "logprobs": None} for a in answers]}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def endpoint(url: str, **extra) -> EndpointTeacher:
    values = {"url": url, "model": "qwen-test", "apiKeyEnv": "TEST_LLM_KEY", "requestsPerSecond": 1000,
              "timeoutSeconds": 2, "maxRetries": 2, **extra}
    return EndpointTeacher.model_validate(values)


def teacher(url: str, tmp_path, **extra) -> LlmTeacher:
    return LlmTeacher(endpoint(url, **extra), LABELS, environ={"TEST_LLM_KEY": KEY}, cache_dir=tmp_path / "cache")


@pytest.fixture
def server():
    with FakeLlm() as fake:
        yield fake


def test_choice_codes_are_short_and_distinct():
    codes = choice_codes(60)
    assert codes[:3] == ["A", "B", "C"] and codes[26] == "AA" and len(set(codes)) == 60


def test_logprobs_give_renormalised_soft_targets_per_label(server, tmp_path):
    llm = teacher(server.url, tmp_path, topLogprobs=3)
    probs = llm.soft_targets(TEMPLATES + TEMPLATES[:1], temperature=1.0)
    assert probs.shape == (4, 3) and np.allclose(probs.sum(1), 1.0)
    assert [LABELS[i] for i in probs.argmax(1)] == ["-", "KERNFAIL", "APPERR", "-"]
    # logprobs -0.1 / -3.0 / -4.0 renormalised over the label codes
    expected = np.exp([-0.1, -3.0, -4.0]) / np.exp([-0.1, -3.0, -4.0]).sum()
    assert sorted(probs[0].tolist(), reverse=True) == pytest.approx(expected.tolist(), rel=1e-5)
    assert len(server.requests) == 3  # one per distinct template
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == f"Bearer {KEY}"
    assert first["body"]["logprobs"] is True and first["body"]["top_logprobs"] == 3
    assert "KERNFAIL" in first["body"]["messages"][-1]["content"]  # the label set is in the prompt
    hot = llm.soft_targets(TEMPLATES[:1], temperature=4.0)  # a higher T flattens the same answer
    assert hot[0].max() < probs[0].max()


def test_without_logprobs_soft_targets_come_from_samples(tmp_path):
    with FakeLlm(logprobs=False) as fake:
        probs = teacher(fake.url, tmp_path, samples=5).soft_targets(TEMPLATES[1:2])
        assert sorted(probs[0].tolist(), reverse=True) == pytest.approx([0.8, 0.2, 0.0])
        assert LABELS[int(probs[0].argmax())] == "KERNFAIL"
        assert [r["body"].get("n") for r in fake.requests] == [None, 5]  # logprobs try, then n=5


def test_a_server_that_ignores_n_is_asked_again(tmp_path):
    with FakeLlm(logprobs=False, ignore_n=True) as fake:
        probs = teacher(fake.url, tmp_path, samples=4).soft_targets(TEMPLATES[2:3])
        assert LABELS[int(probs[0].argmax())] == "APPERR"
        assert len(fake.requests) == 1 + 4


def test_429_with_retry_after_and_5xx_are_retried(server, tmp_path):
    server.plan = [("status", 429, {"Retry-After": "0.3"}, "slow down"), ("status", 502, {}, "bad gateway")]
    llm = teacher(server.url, tmp_path)
    probs = llm.soft_targets(TEMPLATES[:1])
    assert LABELS[int(probs[0].argmax())] == "-"
    times = [r["t"] for r in server.requests]
    assert len(times) == 3 and times[1] - times[0] >= 0.3  # Retry-After honoured
    assert llm.stats.retries == 2 and llm.stats.statuses == {"429": 1, "502": 1, "200": 1}


def test_timeouts_are_retried(server, tmp_path):
    server.plan = [("hang",)]
    probs = teacher(server.url, tmp_path, timeoutSeconds=0.3).soft_targets(TEMPLATES[1:2])
    assert LABELS[int(probs[0].argmax())] == "KERNFAIL" and len(server.requests) == 2


def test_malformed_json_is_retried_then_reported_with_line_status_and_snippet(server, tmp_path):
    server.plan = [("malformed",)]
    assert teacher(server.url, tmp_path).soft_targets(TEMPLATES[:1]).shape == (1, 3)
    server.plan = [("malformed",)] * 3
    with pytest.raises(LlmTeacherError) as err:
        teacher(server.url, tmp_path / "b").soft_targets(["other line"])
    message = str(err.value)
    assert "line 0" in message and "malformed answer (HTTP 200" in message and '{"choices": [{"message": ' in message
    assert "after 3 attempts" in message


def test_client_errors_are_reported_at_once_and_the_key_never_leaks(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server.plan = [("status", 503, {}, "upstream sees {auth}")] * 3
    with pytest.raises(LlmTeacherError) as err:
        teacher(server.url, tmp_path).soft_targets(TEMPLATES[:1])
    assert "503" in str(err.value) and "***" in str(err.value)
    server.plan = [("status", 401, {}, '{"error": "bad key {auth}"}')]
    with pytest.raises(LlmTeacherError, match="HTTP 401") as err401:
        teacher(server.url, tmp_path).soft_targets(TEMPLATES[:1])
    assert len(server.requests) == 4  # a 4xx other than 429 is not retried
    llm = teacher(server.url, tmp_path)
    llm.soft_targets(TEMPLATES)
    texts = [str(err.value), str(err401.value), repr(llm), caplog.text]
    texts += [p.read_text() for p in (tmp_path / "cache").rglob("*.json")]
    assert all(KEY not in text for text in texts)
    assert "upstream sees" in caplog.text  # the retries were logged, redacted


def test_the_cache_answers_a_second_run_without_requests(server, tmp_path):
    first = teacher(server.url, tmp_path).soft_targets(TEMPLATES, temperature=2.0)
    count = len(server.requests)
    again = teacher(server.url, tmp_path)
    second = again.soft_targets(TEMPLATES, temperature=2.0)
    assert len(server.requests) == count and again.stats.cache_hits == 3
    assert np.allclose(first, second)
    other_model = teacher(server.url, tmp_path, model="another")
    other_model.soft_targets(TEMPLATES[:1])
    assert len(server.requests) == count + 1  # the model is part of the cache key


def test_requests_respect_the_rate_limit(server, tmp_path):
    rate = 20.0
    llm = teacher(server.url, tmp_path, requestsPerSecond=rate, concurrency=8)
    llm.soft_targets([f"line {i} RAS KERNEL INFO ok" for i in range(24)])
    times = sorted(r["t"] for r in server.requests)
    assert len(times) == 24
    # any half-second window holds at most rate/2 + 1 requests (slots are 1/rate apart)
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t < start + 0.5) <= rate / 2 + 1
    assert times[-1] - times[0] >= (len(times) - 1) / rate * 0.9


def test_rate_limiter_hands_out_evenly_spaced_slots():
    now, slept = [0.0], []
    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=slept.append)
    for _ in range(5):
        limiter.acquire()
    assert slept == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_paraphrases_are_cleaned_distinct_and_cached(server, tmp_path):
    llm = teacher(server.url, tmp_path)
    out = llm.paraphrases("disk <NUM> failed", 3)
    assert out == ["disk <NUM> failed (again)", "Notice: disk <NUM> failed"]
    assert llm.paraphrases("disk <NUM> failed", 3) == out and len(server.requests) == 1


def test_distill_from_an_endpoint_teacher_with_paraphrases_that_never_leak(server, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import yaml
    from helpers.tiny_models import build_tokenizer, tiny_bert, tiny_log_lines

    from logdistill.cli import main as cli
    from logdistill.model.runtime.artifact import verify_artifact
    from logdistill.model.runtime.data import load_records
    from logdistill.model.runtime.splits import make_split
    from logdistill.model.runtime.templates import mask
    from logdistill.spec import parse_spec

    lines = tiny_log_lines(repeats=1)
    data = tmp_path / "logs.log"
    data.write_text("\n".join(lines) + "\n")
    tokenizer = build_tokenizer([line.split(" ", 6)[6] for line in lines])
    vocab = tmp_path / "vocab-model"
    tiny_bert(len(tokenizer), ["-"], seed=0).save_pretrained(vocab)
    tokenizer.save_pretrained(vocab)
    body = {"teacher": {"endpoint": {"url": server.url, "model": "qwen-test", "apiKeyEnv": "TEST_LLM_KEY",
                                     "requestsPerSecond": 1000, "cacheDir": str(tmp_path / "cache")}},
            "data": {"path": str(data)},
            "student": {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32, "maxLength": 32, "init": "scratch",
                        "pretrained": str(vocab)},
            "training": {"epochs": 3, "learningRate": 0.003, "threads": 1, "augmentation": {"paraphrases": 2}},
            "gate": {"minMacroF1": 0.01, "minRetention": 0.01}}
    spec = parse_spec(body)
    split = make_split(load_records(spec.data).records, spec.data, spec.training.seed)
    test_template = mask(split.test[0].text)
    server.extra_paraphrases = [test_template]  # a paraphrase equal to a test line must be dropped
    config = tmp_path / "distill.yaml"
    config.write_text(yaml.safe_dump(body))
    monkeypatch.setenv("TEST_LLM_KEY", KEY)
    out, summary_file = tmp_path / "student", tmp_path / "summary.json"
    assert cli(["distill", "--config", str(config), "--out", str(out), "--summary-file", str(summary_file)]) == 0
    verify_artifact(out)
    report = json.loads((out / "report.json").read_text())
    summary = json.loads(summary_file.read_text())
    assert report["labels"] == ["-", "APPERR", "KERNFAIL"]
    assert report["training"]["transferSet"]["paraphrasedLines"] > 0
    assert report["teacher"]["endpoint"]["macro_f1"] == pytest.approx(1.0)  # the fake answers the truth
    assert summary["teacher"]["macroF1"] == pytest.approx(1.0)
    labelled = [r["body"]["messages"][-1]["content"] for r in server.requests if "Label code" in
                r["body"]["messages"][-1]["content"]]
    asked = {text.split("Log message:\n")[1].split("\n")[0] for text in labelled}
    assert any(t.startswith("Notice: ") for t in asked)  # paraphrases labelled by the teacher
    text = (out / "report.json").read_text() + summary_file.read_text() + (out / "manifest.json").read_text()
    assert KEY not in text


def test_distill_with_an_unreachable_endpoint_fails_with_the_field_named(tmp_path, capsys):
    pytest.importorskip("torch")
    import yaml
    from helpers.tiny_models import build_tokenizer, tiny_bert, tiny_log_lines

    from logdistill.cli import main as cli

    lines = tiny_log_lines(repeats=1)
    (tmp_path / "logs.log").write_text("\n".join(lines) + "\n")
    tokenizer = build_tokenizer([line.split(" ", 6)[6] for line in lines])
    tiny_bert(len(tokenizer), ["-"], seed=0).save_pretrained(tmp_path / "v")
    tokenizer.save_pretrained(tmp_path / "v")
    with FakeLlm() as fake:
        fake.plan = [("status", 500, {}, "boom")] * 10
        body = {"teacher": {"endpoint": {"url": fake.url, "model": "m", "maxRetries": 1, "requestsPerSecond": 1000,
                                         "cacheDir": str(tmp_path / "c")}},
                "data": {"path": str(tmp_path / "logs.log")},
                "student": {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32, "init": "scratch",
                            "pretrained": str(tmp_path / "v")}, "training": {"epochs": 1, "threads": 1}}
        (tmp_path / "d.yaml").write_text(yaml.safe_dump(body))
        code = cli(["distill", "--config", str(tmp_path / "d.yaml"), "--out", str(tmp_path / "o"),
                    "--summary-file", str(tmp_path / "s.json")])
    assert code == 1
    error = json.loads((tmp_path / "s.json").read_text())["error"]
    assert error.startswith("teacher.endpoint: line ") and "HTTP 500" in error


def test_paraphrases_equal_to_an_evaluation_template_are_dropped(server, tmp_path):
    from logdistill.model.engine.augment import paraphrase_lines

    server.extra_paraphrases = ["RAS APP FATAL bus error raised in loader <NUM>", "disk <NUM> failed (again)"]
    llm = teacher(server.url, tmp_path)
    out = paraphrase_lines(llm, ["disk <NUM> failed", "fan <NUM> stopped"], 4,
                           exclude={"RAS APP FATAL bus error raised in loader <NUM>", "fan <NUM> stopped"})
    assert "RAS APP FATAL bus error raised in loader <NUM>" not in out  # an evaluation line never leaks
    assert out.count("disk <NUM> failed (again)") == 1  # duplicates across templates dropped
    assert "Notice: fan <NUM> stopped" in out and "fan <NUM> stopped" not in out
