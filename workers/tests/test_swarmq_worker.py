"""The helper library: env contract, stdin tasks, output lines."""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import textwrap
import threading

import pytest

from conftest import MAX_LINE_BYTES, WORKERS, worker_env

REQUIRED = ("SESSION_ID", "AGENT_ID", "TASK_ID", "TASK_DESCRIPTION")


@pytest.fixture
def sw(monkeypatch):
    """A fresh swarmq_worker module writing to a BytesIO, with a complete env."""
    for k, v in worker_env(task_id="t1", description="first").items():
        monkeypatch.setenv(k, v)
    import swarmq_worker

    mod = importlib.reload(swarmq_worker)
    out = io.BytesIO()
    mod.set_output(out)
    mod.out = out  # for the tests
    yield mod


def lines(sw) -> list[dict]:
    raw = sw.out.getvalue()
    assert raw == b"" or raw.endswith(b"\n")
    result = []
    for line in raw.splitlines(keepends=True):
        assert len(line) <= MAX_LINE_BYTES
        result.append(json.loads(line.decode("utf-8")))
    return result


# ---------------------------------------------------------------- env


def test_env_contract(sw, monkeypatch):
    monkeypatch.setenv("SOCKET_URL", "http://localhost:3000")
    monkeypatch.setenv("E2B_API_KEY", "e2b-key")
    monkeypatch.delenv("DEDALUS_API_KEY", raising=False)
    e = sw.env()
    assert e.session_id == "5f0c7a52-8d1e-4d7e-9a59-0a4c1b2f3e01"
    assert e.agent_id == "0b7e8d2c-aaaa-bbbb-cccc-000000000001"
    assert e.task_id == "t1"
    assert e.task_description == "first"
    assert e.socket_url == "http://localhost:3000"
    assert e.e2b_api_key == "e2b-key"
    assert e.dedalus_api_key is None


def test_env_optional_empty_is_none(sw, monkeypatch):
    monkeypatch.setenv("SOCKET_URL", "")
    assert sw.env().socket_url is None


@pytest.mark.parametrize("name", REQUIRED)
def test_missing_env_refuses(sw, monkeypatch, capsys, name):
    monkeypatch.delenv(name)
    with pytest.raises(SystemExit) as exc:
        next(sw.tasks(stdin=io.BytesIO()))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "swarmq_worker: fatal: incomplete worker environment" in err and name in err
    assert lines(sw) == []


@pytest.mark.parametrize("name", ("SESSION_ID", "AGENT_ID", "TASK_ID"))
def test_empty_id_refuses(sw, monkeypatch, capsys, name):
    monkeypatch.setenv(name, "")
    with pytest.raises(SystemExit) as exc:
        sw.env()
    assert exc.value.code == 2
    assert f"empty {name}" in capsys.readouterr().err


def test_missing_env_refuses_in_subprocess():
    env = worker_env()
    del env["AGENT_ID"]
    proc = subprocess.run(
        [sys.executable, "-c", "import swarmq_worker as sw\nfor t in sw.tasks(): sw.complete('x')"],
        cwd=WORKERS,
        env=env,
        input=b"",
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert b"missing AGENT_ID" in proc.stderr


# ---------------------------------------------------------------- tasks()


def test_tasks_env_then_stdin_until_eof(sw):
    stdin = io.BytesIO(
        b'{"taskId":"t2","description":"second"}\n'
        b"\n"  # blank lines are ignored
        b'{"description":"third \\u00e9\\n","taskId":"t3","extra":1}\n'
    )
    seen = []
    for task in sw.tasks(stdin=stdin):
        assert sw.current_task() == task
        seen.append(task)
        sw.complete(f"done {task.task_id}")
    assert seen == [sw.Task("t1", "first"), sw.Task("t2", "second"), sw.Task("t3", "third \u00e9\n")]
    assert sw.current_task() is None
    assert lines(sw) == [
        {"type": "complete", "todoId": "t1", "result": "done t1"},
        {"type": "complete", "todoId": "t2", "result": "done t2"},
        {"type": "complete", "todoId": "t3", "result": "done t3"},
    ]


def test_tasks_last_line_without_newline(sw):
    got = []
    for task in sw.tasks(stdin=io.BytesIO(b'{"taskId":"t2","description":""}')):
        got.append(task)
        sw.complete()
    assert got == [sw.Task("t1", "first"), sw.Task("t2", "")]


@pytest.mark.parametrize(
    "line, why",
    [
        (b"not json\n", "not UTF-8 JSON"),
        (b"\xff\xfe{}\n", "not UTF-8 JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'"t2"\n', "not a JSON object"),
        (b'{"description":"x"}\n', "taskId must be a non-empty string"),
        (b'{"taskId":"","description":"x"}\n', "taskId must be a non-empty string"),
        (b'{"taskId":5,"description":"x"}\n', "taskId must be a non-empty string"),
        (b'{"taskId":"t2"}\n', "description must be a string"),
        (b'{"taskId":"t2","description":null}\n', "description must be a string"),
        (b'{"taskId":"t2","description":["x"]}\n', "description must be a string"),
    ],
)
def test_malformed_stdin_line_refuses(sw, capsys, line, why):
    it = sw.tasks(stdin=io.BytesIO(line))
    assert next(it).task_id == "t1"
    sw.complete()
    with pytest.raises(SystemExit) as exc:
        next(it)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "malformed task line on stdin" in err and why in err


def test_unreported_task_is_failed_automatically(sw, capsys):
    for task in sw.tasks(stdin=io.BytesIO(b'{"taskId":"t2","description":"x"}\n')):
        if task.task_id == "t2":
            sw.complete("ok")
    assert lines(sw) == [
        {"type": "fail", "todoId": "t1", "reason": "worker finished the task without reporting complete or fail"},
        {"type": "complete", "todoId": "t2", "result": "ok"},
    ]
    assert "ended without complete() or fail()" in capsys.readouterr().err


def test_complete_twice_is_an_error(sw):
    it = sw.tasks(stdin=io.BytesIO())
    next(it)
    sw.complete("a")
    with pytest.raises(RuntimeError, match="already reported"):
        sw.complete("b")
    with pytest.raises(RuntimeError, match="already reported"):
        sw.fail("c")
    assert len(lines(sw)) == 1


# ---------------------------------------------------------------- output


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda sw: sw.action("Opening browser"), {"type": "log", "action": "Opening browser"}),
        (lambda sw: sw.reasoning("I should \"quote\"\n"), {"type": "log", "reasoning": "I should \"quote\"\n"}),
        (lambda sw: sw.log(action="a", reasoning="r"), {"type": "log", "action": "a", "reasoning": "r"}),
        (
            lambda sw: sw.sandbox_ready("sbx-1", "https://example.invalid/stream"),
            {"type": "sandbox_ready", "sandboxId": "sbx-1", "streamUrl": "https://example.invalid/stream"},
        ),
        (lambda sw: sw.complete("the result"), {"type": "complete", "todoId": "t1", "result": "the result"}),
        (lambda sw: sw.complete(), {"type": "complete", "todoId": "t1"}),
        (lambda sw: sw.fail("it broke"), {"type": "fail", "todoId": "t1", "reason": "it broke"}),
    ],
)
def test_each_helper_writes_one_json_line(sw, call, expected):
    call(sw)
    raw = sw.out.getvalue()
    assert raw.count(b"\n") == 1 and raw.endswith(b"\n")
    assert json.loads(raw) == expected


def test_complete_outside_tasks_uses_env_task_id(sw):
    sw.complete("x")
    sw.complete("y")  # no tracking outside tasks(): the caller is responsible
    assert [l["todoId"] for l in lines(sw)] == ["t1", "t1"]


def test_bad_argument_types(sw):
    with pytest.raises(TypeError):
        sw.action(123)
    with pytest.raises(TypeError):
        sw.complete(b"bytes")
    with pytest.raises(ValueError):
        sw.log()
    assert lines(sw) == []


@pytest.mark.parametrize("unit", ["x", "\u00e9", "\U0001F600", '"', "\n", "\x01"])
def test_long_fields_are_truncated_to_the_line_limit(sw, unit):
    text = "start:" + unit * 200_000
    sw.complete(text)
    raw = sw.out.getvalue()
    assert len(raw) <= MAX_LINE_BYTES
    assert len(raw) > MAX_LINE_BYTES - 64  # not truncated much more than needed
    obj = json.loads(raw)
    assert obj["result"].startswith("start:" + unit)
    assert obj["result"].endswith("[truncated by swarmq_worker: line limit]")


def test_lone_surrogates_become_valid_utf8(sw):
    sw.reasoning("bad \udc80 byte")
    obj = json.loads(sw.out.getvalue().decode("utf-8"))
    assert obj["reasoning"].startswith("bad ") and obj["reasoning"].endswith(" byte")


def test_concurrent_writers_never_interleave(sw):
    def writer(n: int) -> None:
        for i in range(250):
            sw.log(action=f"thread {n} line {i}", reasoning="r" * (i * 7))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = lines(sw)
    assert len(got) == 2000
    assert {l["action"] for l in got} == {f"thread {n} line {i}" for n in range(8) for i in range(250)}


# ---------------------------------------------------------------- stdout protection (real process)

NOISY = textwrap.dedent(
    """
    import os, subprocess, sys
    import swarmq_worker as sw
    for task in sw.tasks():
        print("print() noise")
        sys.stdout.write("sys.stdout noise\\n")
        os.write(1, b"fd 1 noise\\n")
        subprocess.run(["echo", "child process noise"], check=True)
        sw.action("working on " + task.task_id)
        sw.complete(task.description.upper())
    """
)


def test_stdout_carries_only_protocol_lines(spawn):
    w = spawn([sys.executable, "-c", NOISY], worker_env(task_id="t1", description="one", PYTHONPATH=WORKERS))
    assert w.until_final() == {"type": "complete", "todoId": "t1", "result": "ONE"}
    w.send_task("t2", "two")
    assert w.until_final() == {"type": "complete", "todoId": "t2", "result": "TWO"}
    w.close_stdin()
    assert w.wait() == 0
    assert w.lines == [
        {"type": "log", "action": "working on t1"},
        {"type": "complete", "todoId": "t1", "result": "ONE"},
        {"type": "log", "action": "working on t2"},
        {"type": "complete", "todoId": "t2", "result": "TWO"},
    ]
    for noise in ("print() noise", "sys.stdout noise", "fd 1 noise", "child process noise"):
        assert w.stderr.count(noise) == 2


def test_malformed_stdin_line_exits_2_in_subprocess(spawn):
    w = spawn([sys.executable, "-c", NOISY], worker_env(task_id="t1", description="one", PYTHONPATH=WORKERS))
    w.until_final()
    w.send_raw(b'{"taskId": 42}\n')
    assert w.wait() == 2
    assert "malformed task line on stdin" in w.stderr
    assert [l["type"] for l in w.lines] == ["log", "complete"]


def test_raw_utf8_task_line(sw):
    line = '{"taskId":"t2","description":"caf\u00e9 \U0001F600"}\n'.encode("utf-8")
    got = []
    for task in sw.tasks(stdin=io.BytesIO(line)):
        got.append(task.description)
        sw.complete()
    assert got == ["first", "caf\u00e9 \U0001F600"]
