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
