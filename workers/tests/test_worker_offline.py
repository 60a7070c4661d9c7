"""workers/worker.py without ANTHROPIC_API_KEY (offline mode), run like the runner runs it."""

from __future__ import annotations

import time

from conftest import WORKER_PY, assert_protocol_lines, run_like_runner, worker_env

AGENT = "0b7e8d2c-aaaa-bbbb-cccc-000000000001"


def test_two_tasks_then_eof(spawn):
    env = worker_env(task_id="todo-1", description="Summarise the design", WORKER_OFFLINE_STEP_SECS="0.01")
    w, finals = run_like_runner(WORKER_PY, env, [("todo-2", 'Second "task"\nwith two lines')])
    assert w.proc.returncode == 0, w.stderr
    assert_protocol_lines(w)

    # process start: offline announcement, then the fake sandbox, once
    assert w.lines[0] == {"type": "log", "action": "offline mode: no ANTHROPIC_API_KEY, no model is called"}
    assert w.lines[1] == {"type": "sandbox_ready", "sandboxId": f"offline-{AGENT[:8]}", "streamUrl": "about:blank"}
    assert sum(l["type"] == "sandbox_ready" for l in w.lines) == 1

    # one complete per task, in order, each after some log lines for that task
    assert [(f["type"], f["todoId"]) for f in finals] == [("complete", "todo-1"), ("complete", "todo-2")]
    for f in finals:
        assert "No model was called" in f["result"]
    assert 'Second "task" with two lines' in finals[1]["result"]
    i1 = w.lines.index(finals[0])
    i2 = w.lines.index(finals[1])
    assert i1 < i2 == len(w.lines) - 1  # nothing after the last complete
    for lo, hi, tid in ((2, i1, "todo-1"), (i1 + 1, i2, "todo-2")):
        logs = w.lines[lo:hi]
        assert all(l["type"] == "log" for l in logs)
        assert logs[0] == {"type": "log", "action": f"offline: starting task {tid}"}
        assert sum("action" in l for l in logs) >= 3
        assert sum("reasoning" in l for l in logs) >= 2
    assert "releasing offline sandbox" in w.stderr


def test_sigterm_mid_task_exits_promptly(spawn):
    w = spawn(WORKER_PY, worker_env(WORKER_OFFLINE_STEP_SECS="30"))
    w.until(lambda l: l.get("action", "").startswith("offline: starting task"))
    t0 = time.monotonic()
    w.terminate_group()
    rc = w.wait(timeout=10)
    elapsed = time.monotonic() - t0
    assert rc == 143, w.stderr
    assert elapsed < 2.0, elapsed
    assert "SIGTERM received" in w.stderr
    assert "Traceback" not in w.stderr
    assert not any(l["type"] in ("complete", "fail") for l in w.lines)


def test_sigterm_while_waiting_for_next_task(spawn):
    w = spawn(WORKER_PY, worker_env(WORKER_OFFLINE_STEP_SECS="0"))
    w.until_final()
    time.sleep(0.2)  # now blocked reading stdin
    t0 = time.monotonic()
    w.terminate_group()
    assert w.wait(timeout=10) == 143
    assert time.monotonic() - t0 < 2.0
    assert "Traceback" not in w.stderr


def test_stdin_eof_right_after_first_task(spawn):
    w, finals = run_like_runner(WORKER_PY, worker_env(WORKER_OFFLINE_STEP_SECS="0"), [])
    assert w.proc.returncode == 0
    assert [f["todoId"] for f in finals] == ["todo-1"]


def test_incomplete_env_refused(spawn):
    env = worker_env()
    del env["TASK_ID"]
    w = spawn(WORKER_PY, env)
    assert w.wait() == 2
    assert w.lines == []
    assert "incomplete worker environment" in w.stderr and "TASK_ID" in w.stderr


def test_malformed_task_line_refused(spawn):
    w = spawn(WORKER_PY, worker_env(WORKER_OFFLINE_STEP_SECS="0"))
    w.until_final()
    w.send_raw(b"this is not json\n")
    assert w.wait() == 2
    assert "malformed task line on stdin" in w.stderr
