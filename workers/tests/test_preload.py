"""The preloaded worker server (workers/swarmq_preload.py): its fork path gives each child exactly
the environment, stdio, process group, nice value and exit status a cold start would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, WORKER_PY, WORKERS, run_like_runner, worker_env
from fake_anthropic import FakeAnthropic, Reply

SERVER = os.path.join(WORKERS, "swarmq_preload.py")

# A worker whose TASK_DESCRIPTION says what to do.
PROBE = r'''
import json, os, sys
what = os.environ["TASK_DESCRIPTION"]
def identity(x: int) -> None:  # no `from __future__ import annotations` here: a real int
    pass
if what == "env":
    print(json.dumps(dict(os.environ)))
elif what == "echo":
    line = sys.stdin.readline()
    sys.stdout.write("got " + line)
    sys.stderr.write("to stderr\n")
elif what == "identity":
    print(json.dumps({
        "pid": os.getpid(), "pgid": os.getpgid(0), "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "preloaded": "decimal" in sys.modules, "argv": sys.argv, "name": __name__,
        "cwd": os.getcwd(), "file": __file__, "annotation": repr(identity.__annotations__["x"]),
    }))
elif what == "exit3":
    sys.exit(3)
elif what == "raise":
    raise RuntimeError("probe failed on purpose")
elif what == "ignore-term":
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM", flush=True)
    time.sleep(60)
elif what == "hang":
    print("hanging", flush=True)
    import time
    time.sleep(60)
'''


class Server:
    """A preload server on a private socket, driven the way the runner drives it."""

    def __init__(self, tmp_path, *target: str, preload: str = "json,decimal", cwd=None) -> None:
        self.sock = str(tmp_path / "sock")
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, "--socket", self.sock, "--preload", preload, *target],
            cwd=str(cwd or tmp_path),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout.readline() == b"ready\n", self.proc.stderr.read()

    def spawn(self, env: dict, nice: int = 0) -> "Child":
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.sock)
        msg = json.dumps({"env": env, "nice": nice}).encode() + b"\n"
        socket.send_fds(conn, [msg], [stdin_r, stdout_w, stderr_w])
        for fd in (stdin_r, stdout_w, stderr_w):
            os.close(fd)
        replies = conn.makefile("r")
        first = replies.readline()
        assert first.startswith("pid "), first
        return Child(int(first.split()[1]), replies, conn, stdin_w, stdout_r, stderr_r)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


class Child:
    def __init__(self, pid, replies, conn, stdin_w, stdout_r, stderr_r) -> None:
        self.pid = pid
        self.replies = replies
        self.conn = conn
        self.stdin = os.fdopen(stdin_w, "wb")
        self.stdout = os.fdopen(stdout_r, "rb")
        self.stderr = os.fdopen(stderr_r, "rb")

    def status(self) -> int:
        line = self.replies.readline()
        assert line.startswith("exit "), line
        return int(line.split()[1])

    def finish(self) -> tuple:
        """Closes stdin; (raw wait status, stdout, stderr)."""
        self.stdin.close()
        out, err = self.stdout.read().decode(), self.stderr.read().decode()
        return self.status(), out, err


@pytest.fixture
def server(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    s = Server(tmp_path, "--script", "probe.py")
    yield s
    s.close()


def test_the_child_gets_exactly_the_given_environment(server):
    env = worker_env(description="env", WORKER_MODEL="m")
    status, out, _ = server.spawn(env).finish()
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(out) == env


def test_the_child_uses_the_pipes_it_was_given(server):
    child = server.spawn(worker_env(description="echo"))
    child.stdin.write(b'{"taskId":"t2"}\n')
    child.stdin.flush()
    status, out, err = child.finish()
    assert (os.waitstatus_to_exitcode(status), out, err) == (0, 'got {"taskId":"t2"}\n', "to stderr\n")


def test_the_child_leads_its_own_group_at_the_nice_value_with_modules_preloaded(server, tmp_path):
    child = server.spawn(worker_env(description="identity"), nice=7)
    status, out, _ = child.finish()
    me = json.loads(out)
    assert os.waitstatus_to_exitcode(status) == 0
    assert me["pid"] == child.pid and me["pgid"] == child.pid
    assert me["nice"] >= 7
    assert me["preloaded"] and me["name"] == "__main__"
    assert me["argv"] == ["probe.py"] and me["cwd"] == str(tmp_path)
    # Compiled once by the server, as `python probe.py` would: not with the server's own
    # `from __future__ import annotations`.
    assert me["file"] == str(tmp_path / "probe.py") and me["annotation"] == "<class 'int'>"


def test_a_script_changed_since_the_server_started_runs_as_it_is_now(server, tmp_path):
    (tmp_path / "probe.py").write_text('print("edited")\n')
    status, out, _ = server.spawn(worker_env(description="identity")).finish()
    assert (os.waitstatus_to_exitcode(status), out) == (0, "edited\n")


def test_a_script_that_does_not_compile_fails_in_each_child_as_a_cold_start_would(tmp_path):
    (tmp_path / "broken.py").write_text("def (:\n")
    s = Server(tmp_path, "--script", "broken.py")
    try:
        status, out, err = s.spawn(worker_env(description="env")).finish()
    finally:
        s.close()
    assert (os.waitstatus_to_exitcode(status), out) == (1, "")
    assert "SyntaxError" in err and 'broken.py", line 1' in err


def test_exit_codes_and_crashes_are_reported_as_a_cold_start_would(server):
    status, _, _ = server.spawn(worker_env(description="exit3")).finish()
    assert os.waitstatus_to_exitcode(status) == 3
    status, _, err = server.spawn(worker_env(description="raise")).finish()
    assert os.waitstatus_to_exitcode(status) == 1
    assert "RuntimeError: probe failed on purpose" in err and "swarmq_preload" not in err.split("probe.py")[-1]


def test_signalling_the_group_kills_the_child_and_the_server_reports_it(server):
    child = server.spawn(worker_env(description="hang"))
    assert child.stdout.readline() == b"hanging\n"
    os.killpg(child.pid, signal.SIGTERM)
    assert os.waitstatus_to_exitcode(child.status()) == -signal.SIGTERM


def test_module_workers_run_as_python_m_would(tmp_path):
    pkg = tmp_path / "probepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "work.py").write_text(PROBE)
    s = Server(tmp_path, "--module", "probepkg.work", "--", "--flag")
    try:
        status, out, _ = s.spawn(worker_env(description="identity")).finish()
    finally:
        s.close()
    me = json.loads(out)
    assert os.waitstatus_to_exitcode(status) == 0
    assert me["name"] == "__main__" and me["argv"][1:] == ["--flag"]
    assert me["argv"][0].endswith(os.path.join("probepkg", "work.py"))


def test_when_the_runner_is_gone_the_server_ends_its_children_and_leaves(server):
    polite = server.spawn(worker_env(description="echo"))
    stubborn = server.spawn(worker_env(description="ignore-term"))
    assert stubborn.stdout.readline() == b"ignoring SIGTERM\n"
    server.proc.stdin.close()  # what a SIGKILLed runner leaves the server with
    assert server.proc.wait(timeout=10) == 0
    # Neither worker was answered or signalled by anyone else: the server ended both groups,
    # the one that ignores SIGTERM with SIGKILL after the grace period.
    for child in (polite, stubborn):
        assert child.stdout.read() in (b"", b"ignoring SIGTERM\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and alive(child.pid):
            time.sleep(0.05)
        assert not alive(child.pid), child.pid


def alive(pid: int) -> bool:
    """Whether `pid` runs (neither gone nor a zombie waiting for its reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_malformed_request_is_refused_and_the_server_goes_on(server):
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(server.sock)
    conn.sendall(b"not json\n")
    assert conn.recv(100) == b""
    status, out, _ = server.spawn(worker_env(description="env")).finish()
    assert os.waitstatus_to_exitcode(status) == 0 and out


def test_a_preloaded_default_worker_answers_exactly_as_a_cold_one(tmp_path):
    """workers/worker.py online, as the runner preloads it by default: same lines, same exit."""
    with FakeAnthropic() as fake:
        env = worker_env(ANTHROPIC_API_KEY=fake.api_key, ANTHROPIC_BASE_URL=fake.url)
        replies = (Reply("first answer\n" * 30, thinking="hmm " * 40), Reply("second", stop_reason="max_tokens"))
        fake.enqueue(*replies)
        cold, _ = run_like_runner(WORKER_PY, env, [("todo-2", "again")])
        s = Server(tmp_path, "--script", "workers/worker.py", preload="swarmq_worker,anthropic,worker:preload", cwd=ROOT)
        try:
            fake.enqueue(*replies)
            child = s.spawn(env)
            first = child.stdout.readline()  # the first task is under way
            child.stdin.write(b'{"taskId":"todo-2","description":"again"}\n')
            status, out, _ = child.finish()
            out = first.decode() + out
        finally:
            s.close()
    assert os.waitstatus_to_exitcode(status) == cold.proc.returncode == 0
    assert out.encode() == b"".join(cold.raw_lines)
