"""workers/worker.py against the local fake Anthropic API (ANTHROPIC_BASE_URL)."""

from __future__ import annotations

import socket
import time

import anthropic
import pytest

from conftest import WORKER_PY, assert_protocol_lines, run_like_runner, worker_env
from fake_anthropic import Error, FakeAnthropic, Hang, Reply, StreamError

DEFAULT_MODEL = "claude-sonnet-4-5-20250929"
LONG_TEXT = "".join(f"Paragraph {i}: queues let independent agents make progress in parallel.\n" for i in range(40))


@pytest.fixture(scope="module")
def fake_server():
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake(fake_server):
    fake_server.reset()
    yield fake_server
    fake_server.reset()


def online_env(fake: FakeAnthropic, **extra: str) -> dict:
    return worker_env(**{"ANTHROPIC_API_KEY": fake.api_key, "ANTHROPIC_BASE_URL": fake.url, **extra})


def reasoning_text(lines: list, start: int, end: int) -> str:
    return "".join(l.get("reasoning", "") for l in lines[start:end])


# ---------------------------------------------------------------- the fake itself, via the SDK


def test_fake_non_streaming_shape(fake):
    client = anthropic.Anthropic(api_key=fake.api_key, base_url=fake.url, max_retries=0)
    msg = client.messages.create(model="m-1", max_tokens=50, messages=[{"role": "user", "content": "hello"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "m-1"
    assert msg.content[0].type == "text" and msg.content[0].text == "Fake answer to: hello"
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens > 0
    req = fake.message_requests()[0]
    assert req["headers"]["x-api-key"] == fake.api_key
    assert req["headers"]["anthropic-version"] == "2023-06-01"


def test_fake_rejects_missing_version_header(fake):
    client = anthropic.Anthropic(
        api_key=fake.api_key, base_url=fake.url, max_retries=0, default_headers={"anthropic-version": anthropic.Omit()}
    )
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "anthropic-version: header is required"},
    }


# ---------------------------------------------------------------- worker.py


def test_streaming_success_two_tasks(fake):
    fake.enqueue(Reply(LONG_TEXT, chunk_chars=7))  # many small text_delta events
    env = online_env(fake)
    w, finals = run_like_runner(WORKER_PY, env, [("todo-2", "Name three queues")])
    assert w.proc.returncode == 0, w.stderr
    assert_protocol_lines(w)
    assert [(f["type"], f["todoId"]) for f in finals] == [("complete", "todo-1"), ("complete", "todo-2")]
    assert finals[0]["result"] == LONG_TEXT.strip()
    assert finals[1]["result"] == "Fake answer to: Name three queues"

    # no offline output, no sandbox in online mode
    assert not any("offline" in l.get("action", "") for l in w.lines)
    assert not any(l["type"] == "sandbox_ready" for l in w.lines)

    i1 = w.lines.index(finals[0])
    actions = [l["action"] for l in w.lines[:i1] if "action" in l]
    assert f"Calling {DEFAULT_MODEL} (streaming, max 8192 tokens)" in actions
    assert any(a.startswith("Received ") and "tokens (stop_reason: end_turn)" in a for a in actions)
    # the streamed text arrives as reasoning, coalesced (not one line per delta)
    assert reasoning_text(w.lines, 0, i1) == LONG_TEXT
    n_reasoning = sum("reasoning" in l for l in w.lines[:i1])
    n_deltas = -(-len(LONG_TEXT) // 7)
    assert 2 <= n_reasoning <= n_deltas // 10

    reqs = fake.message_requests()
    assert len(reqs) == 2
    for req, desc in zip(reqs, ("Write a haiku about queues", "Name three queues")):
        assert req["headers"]["x-api-key"] == fake.api_key
        assert req["headers"]["anthropic-version"] == "2023-06-01"
        body = req["body"]
        assert body["stream"] is True
        assert body["model"] == DEFAULT_MODEL
        assert body["max_tokens"] == 8192
        assert body["messages"] == [{"role": "user", "content": desc}]
        assert "one of several AI agents" in body["system"]
        assert "thinking" not in body


def test_model_and_thinking_settings(fake):
    fake.enqueue(Reply("The answer.", thinking="Let me think about queues step by step."))
    env = online_env(fake, WORKER_MODEL="claude-test-model", WORKER_MAX_TOKENS="4000", WORKER_THINKING_TOKENS="2048")
    w, finals = run_like_runner(WORKER_PY, env, [])
    assert finals == [{"type": "complete", "todoId": "todo-1", "result": "The answer."}]
    body = fake.message_requests()[0]["body"]
    assert body["model"] == "claude-test-model"
    assert body["max_tokens"] == 4000
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    reasonings = [l["reasoning"] for l in w.lines if "reasoning" in l]
    assert reasonings == ["Let me think about queues step by step.", "The answer."]
    actions = [l["action"] for l in w.lines if "action" in l]
    assert actions.index("Thinking") < actions.index("Writing the answer")


def test_429_is_retried_then_succeeds(fake):
    fake.enqueue(Error.rate_limit(), Reply("after the rate limit"))
    w, finals = run_like_runner(WORKER_PY, online_env(fake), [])
    assert finals == [{"type": "complete", "todoId": "todo-1", "result": "after the rate limit"}]
    reqs = fake.message_requests()
    assert [r["headers"].get("x-stainless-retry-count") for r in reqs] == ["0", "1"]
    assert any(l.get("action", "").startswith("Anthropic API: retry 1 after HTTP 429") for l in w.lines)


def test_401_fails_the_task_and_keeps_serving(fake):
    env = online_env(fake, ANTHROPIC_API_KEY="sk-ant-wrong")
    w, finals = run_like_runner(WORKER_PY, env, [("todo-2", "second")])
    assert w.proc.returncode == 0, w.stderr
    assert finals == [
        {"type": "fail", "todoId": "todo-1", "reason": "Anthropic API error 401: invalid x-api-key (authentication_error)"},
        {"type": "fail", "todoId": "todo-2", "reason": "Anthropic API error 401: invalid x-api-key (authentication_error)"},
    ]
    assert len(fake.message_requests()) == 2  # 401 is not retried
    assert "Traceback" not in w.stderr


def test_401_once_then_next_task_succeeds(fake):
    fake.enqueue(Error(401, "authentication_error", "invalid x-api-key"))
    w, finals = run_like_runner(WORKER_PY, online_env(fake), [("todo-2", "second")])
    assert [f["type"] for f in finals] == ["fail", "complete"]
    assert finals[1] == {"type": "complete", "todoId": "todo-2", "result": "Fake answer to: second"}


def test_529_overloaded_is_retried_then_fails(fake):
    fake.enqueue(Error.overloaded(), Error.overloaded(), Error.overloaded())
    w, finals = run_like_runner(WORKER_PY, online_env(fake), [("todo-2", "second")])
    assert finals[0] == {
        "type": "fail",
        "todoId": "todo-1",
        "reason": "Anthropic API error 529: Overloaded (overloaded_error) (after 2 retries)",
    }
    assert finals[1]["type"] == "complete"  # the worker carries on
    assert len(fake.message_requests()) == 4  # 1 + 2 retries, then the second task
    retries = [l["action"] for l in w.lines if l.get("action", "").startswith("Anthropic API: retry")]
    assert len(retries) == 2 and all("after HTTP 529" in r for r in retries)


def test_error_event_mid_stream_fails(fake):
    fake.enqueue(StreamError("partial answ"))
    w, finals = run_like_runner(WORKER_PY, online_env(fake), [])
    assert finals == [
        {"type": "fail", "todoId": "todo-1", "reason": "Anthropic API error during streaming: Overloaded (overloaded_error)"}
    ]


def test_connection_refused_fails(fake):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = online_env(fake, ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}")
    w, finals = run_like_runner(WORKER_PY, env, [])
    assert finals[0]["type"] == "fail"
    assert finals[0]["reason"].startswith("Anthropic API connection error")
    assert finals[0]["reason"].endswith("(after 2 retries)")
    assert w.proc.returncode == 0


def test_sigterm_mid_request_exits_promptly(fake, spawn):
    fake.enqueue(Hang(30))
    w = spawn(WORKER_PY, online_env(fake))
    w.until(lambda l: l.get("action", "").startswith("Calling "))
    deadline = time.monotonic() + 10
    while not fake.message_requests() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # blocked waiting for the response headers
    t0 = time.monotonic()
    w.terminate_group()
    rc = w.wait(timeout=10)
    assert rc == 143, w.stderr
    assert time.monotonic() - t0 < 2.0
    assert "Traceback" not in w.stderr
    assert not any(l["type"] in ("complete", "fail") for l in w.lines)
