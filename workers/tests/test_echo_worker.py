"""The POSIX shell example worker (workers/examples/echo_worker.sh) obeys the protocol."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from conftest import ECHO_SH, assert_protocol_lines, run_like_runner, worker_env

TRICKY = 'quotes " and \\ backslash\nsecond line\ttab \u00e9\u00e8 \U0001F600 {"json": [1]}'


@pytest.mark.parametrize("awk", ["default", "mawk", "gawk"])
def test_echo_worker_env_and_stdin_tasks(tmp_path, awk):
    env = worker_env(task_id="todo-1", description=TRICKY)
    if awk != "default":
        path = shutil.which(awk)
        if path is None:
            pytest.skip(f"{awk} not installed")
        (tmp_path / "awk").symlink_to(path)
        env["PATH"] = f"{tmp_path}{os.pathsep}{env['PATH']}"
    w, finals = run_like_runner(ECHO_SH, env, [("todo-2", TRICKY), ("todo-3", "")])
    assert w.proc.returncode == 0, w.stderr
    assert_protocol_lines(w)
    assert finals == [
        {"type": "complete", "todoId": "todo-1", "result": "echo: " + TRICKY},
        {"type": "complete", "todoId": "todo-2", "result": "echo: " + TRICKY},
        {"type": "complete", "todoId": "todo-3", "result": "echo: "},
    ]
    assert w.lines[0] == {"type": "log", "action": "echo worker: working on task todo-1"}
    assert w.lines[1] == {"type": "log", "reasoning": TRICKY}
    assert "releasing resources" in w.stderr


def test_echo_worker_refuses_incomplete_env(spawn):
    env = worker_env()
    del env["SESSION_ID"]
    w = spawn(ECHO_SH, env)
    assert w.wait() == 2
    assert w.lines == [] and "SESSION_ID missing" in w.stderr


def test_echo_worker_refuses_malformed_line(spawn):
    w = spawn(ECHO_SH, worker_env())
    w.until_final()
    w.send_raw(b'{"no":"task"}\n')
    assert w.wait() == 2
    assert "malformed task line" in w.stderr


def test_echo_worker_sigterm(spawn):
    w = spawn(ECHO_SH, worker_env())
    w.until_final()
    time.sleep(0.2)
    t0 = time.monotonic()
    w.terminate_group()
    assert w.wait() == 143
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("lang", ["C.UTF-8", "C"])
def test_echo_worker_raw_utf8_task_line(spawn, lang):
    """serde_json (the runner) writes non-ASCII as raw UTF-8, not \\u escapes."""
    w = spawn(ECHO_SH, worker_env(LANG=lang))
    w.until_final()
    w.send_raw(('{"taskId":"todo-2","description":' + json.dumps(TRICKY, ensure_ascii=False) + "}\n").encode())
    assert w.until_final() == {"type": "complete", "todoId": "todo-2", "result": "echo: " + TRICKY}
    w.close_stdin()
    assert w.wait() == 0
