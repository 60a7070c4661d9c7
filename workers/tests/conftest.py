"""Shared helpers: run a worker the way the swarmq runner does.

The runner starts the worker command with cwd = project root, in its own
process group, with a minimal environment and pipes on stdin/stdout/stderr;
it reads stdout JSON lines, writes the next task to stdin after each
complete/fail, and closes stdin when no task is left.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Optional

import pytest

WORKERS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(WORKERS)
WORKER_PY = [sys.executable, os.path.join("workers", "worker.py")]
ECHO_SH = ["sh", os.path.join("workers", "examples", "echo_worker.sh")]
MAX_LINE_BYTES = 65536

sys.path.insert(0, WORKERS)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def worker_env(task_id: str = "todo-1", description: str = "Write a haiku about queues", **extra: str) -> dict:
    """Exactly what the runner passes: the contract variables + PATH HOME LANG (+ pass-through)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "SESSION_ID": "5f0c7a52-8d1e-4d7e-9a59-0a4c1b2f3e01",
        "AGENT_ID": "0b7e8d2c-aaaa-bbbb-cccc-000000000001",
        "TASK_ID": task_id,
        "TASK_DESCRIPTION": description,
        "SOCKET_URL": "http://127.0.0.1:9",
        "E2B_API_KEY": "",
        "DEDALUS_API_KEY": "",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


class Worker:
    """A worker child process with line-based access to its stdout."""

    def __init__(self, argv: list, env: dict, cwd: str = ROOT) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # own process group, like the runner
        )
        self.raw_lines: list[bytes] = []
        self.lines: list[dict] = []
        self._q: "queue.Queue[Optional[dict]]" = queue.Queue()
        self._stderr: list[bytes] = []
        self._t_out = threading.Thread(target=self._read_stdout, daemon=True)
        self._t_err = threading.Thread(target=self._read_stderr, daemon=True)
        self._t_out.start()
        self._t_err.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.raw_lines.append(raw)
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                obj = {"type": "__invalid__", "raw": raw.decode("utf-8", "replace")}
            self.lines.append(obj)
            self._q.put(obj)
        self._q.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._stderr.append(raw)

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    def next_line(self, timeout: float = 20.0) -> Optional[dict]:
        """The next stdout line as a dict; None at EOF."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no stdout line within {timeout}s; stderr:\n{self.stderr}") from None

    def until(self, pred, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"EOF before expected line; lines={self.lines}\nstderr:\n{self.stderr}")
            if pred(line):
                return line

    def until_final(self, timeout: float = 20.0) -> dict:
        """Read lines until a complete or fail line and return it."""
        return self.until(lambda l: l.get("type") in ("complete", "fail"), timeout)

    def send_task(self, task_id: str, description: str) -> None:
        self.send_raw((json.dumps({"taskId": task_id, "description": description}) + "\n").encode())

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float = 20.0) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._t_out.join(timeout=5)
        self._t_err.join(timeout=5)
        return rc

    def terminate_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def run_like_runner(argv: list, env: dict, more_tasks: list, timeout: float = 30.0) -> tuple:
    """Serve the env task and then `more_tasks` [(id, description)] like the runner.

    Returns (worker, finals) where finals are the complete/fail lines in order.
    """
    w = Worker(argv, env)
    try:
        finals = [w.until_final(timeout)]
        for task_id, description in more_tasks:
            w.send_task(task_id, description)
            finals.append(w.until_final(timeout))
        w.close_stdin()
        w.wait(timeout)
    except BaseException:
        w.kill_group()
        raise
    return w, finals


def assert_protocol_lines(w: Worker) -> None:
    """Every stdout line is one valid JSON object of a known type within the size limit."""
    assert w.raw_lines, "no output"
    for raw, obj in zip(w.raw_lines, w.lines):
        assert raw.endswith(b"\n")
        assert len(raw) <= MAX_LINE_BYTES
        assert obj.get("type") in ("log", "sandbox_ready", "complete", "fail"), raw
        if obj["type"] == "log":
            assert set(obj) - {"type"} <= {"action", "reasoning"} and len(obj) > 1, raw
            assert all(isinstance(obj[k], str) for k in obj), raw


@pytest.fixture
def spawn():
    """Start workers; any still running at teardown get their group killed."""
    started: list[Worker] = []

    def _spawn(argv: list, env: dict) -> Worker:
        w = Worker(argv, env)
        started.append(w)
        return w

    yield _spawn
    for w in started:
        if w.proc.poll() is None:
            w.kill_group()
