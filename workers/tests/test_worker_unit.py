"""Pieces of workers/worker.py tested in-process."""

from __future__ import annotations

import worker


def test_coalescer_joins_small_chunks_without_splitting_words():
    out: list[str] = []
    c = worker.Coalescer(out.append)
    text = " ".join(f"word{i}" for i in range(400))
    for i in range(0, len(text), 3):
        c.add(text[i : i + 3])
    c.flush()
    assert "".join(out) == text
    assert 3 <= len(out) <= len(text) // worker.REASONING_MIN_CHARS + 1
    for piece in out[:-1]:
        assert piece.endswith(" ")  # cut at a word boundary
        assert len(piece) <= worker.REASONING_CHUNK_CHARS + 3


def test_coalescer_cuts_at_line_breaks():
    out: list[str] = []
    c = worker.Coalescer(out.append)
    for _ in range(10):
        c.add("x" * 50)
        c.add("\n")
    c.flush()
    assert "".join(out) == ("x" * 50 + "\n") * 10
    assert all(p.endswith("\n") for p in out)
    assert len(out) < 10


def test_coalescer_flushes_old_text():
    now = [100.0]
    out: list[str] = []
    c = worker.Coalescer(out.append, clock=lambda: now[0])
    c.add("slow ")
    assert out == []
    now[0] += worker.REASONING_MAX_DELAY_SECS
    c.add("model")
    assert out == ["slow "]
    c.flush()
    assert out == ["slow ", "model"]


def test_coalescer_skips_whitespace_only():
    out: list[str] = []
    c = worker.Coalescer(out.append)
    c.add("  \n")
    c.flush()
    assert out == []


# ------------------------------------------------ the raw stream path against the SDK's helper

import runpy  # noqa: E402

import pytest  # noqa: E402
from anthropic._models import construct_type  # noqa: E402
from anthropic.lib.streaming._messages import accumulate_event  # noqa: E402
from anthropic.types import RawMessageStreamEvent  # noqa: E402

import swarmq_worker as sw  # noqa: E402
from fake_anthropic import Reply, stream_events  # noqa: E402

BODY = {"model": "m-1", "max_tokens": 64, "messages": [{"role": "user", "content": "q"}]}


def raw_events(reply: Reply) -> list:
    return [construct_type(type_=RawMessageStreamEvent, value=data) for _, data in stream_events(BODY, reply)]


@pytest.mark.parametrize(
    "reply",
    [
        Reply("a short answer"),
        Reply("line one\nline two\n" * 40, chunk_chars=5),
        Reply("the answer", thinking="first this, then that " * 20),
        Reply("cut", stop_reason="max_tokens"),
        Reply("  "),
    ],
)
def test_answer_reads_raw_events_as_the_sdks_accumulating_helper_does(reply, monkeypatch):
    monkeypatch.setattr(sw, "_emit", lambda *a, **k: None)
    events = raw_events(reply)
    snapshot = None
    for event in events:
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs={})
    reasoning: list[str] = []
    answer = worker.Answer(worker.Coalescer(reasoning.append))
    for event in events:
        answer.on(event)
    answer.coalescer.flush()
    expected = "".join(b.text for b in snapshot.content if b.type == "text").strip()
    assert answer.started
    assert (answer.text(), answer.stop_reason, answer.output_tokens) == (
        expected,
        snapshot.stop_reason,
        snapshot.usage.output_tokens,
    )
    assert "".join(reasoning).strip() == ((reply.thinking or "") + reply.text).strip()


def test_a_stream_without_its_message_start_has_no_answer(monkeypatch):
    monkeypatch.setattr(sw, "_emit", lambda *a, **k: None)
    answer = worker.Answer(worker.Coalescer(lambda _: None))
    for event in raw_events(Reply("orphan text"))[1:]:
        answer.on(event)
    assert not answer.started and answer.text() == ""


def test_a_preloaded_child_reuses_the_tls_context_its_server_built(monkeypatch):
    built = object()
    monkeypatch.setattr(worker, "_tls", built)  # what preload() left on the server's `worker`
    # A preloaded child runs worker.py again as __main__, with fresh globals.
    child = runpy.run_path(worker.__file__, run_name="child_main")
    assert child["_tls"] is None
    assert child["tls_context"]() is built
