"""Helper library for swarmq workers (stdlib only; tested on Python 3.11).

A worker is a child process of a swarmq runner. It receives its first task in
the environment, later tasks as JSON lines on stdin, and reports progress as
JSON lines on stdout. See docs/worker-protocol.md for the full contract.

Minimal worker::

    import swarmq_worker as sw

    sw.handle_sigterm()            # SIGTERM -> sw.Terminated (exit 143), finally-blocks run
    for task in sw.tasks():        # first task from env, then stdin lines until EOF
        sw.action(f"working on {task.task_id}")
        sw.reasoning("thinking out loud ...")
        sw.complete(result="done")  # or sw.fail("reason")

stdout belongs to the protocol. The first call into this module's output
functions (or to ``tasks()``) moves file descriptor 1 to a private descriptor
used only for protocol lines and points fd 1 (and ``sys.stdout``) at stderr,
so ``print()`` and the output of child processes go to stderr and can never
corrupt a protocol line. Call ``set_output()`` first to write elsewhere
(tests) and skip that redirection.

All output functions are thread-safe: each writes exactly one JSON line with a
single locked write followed by a flush.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import IO, Any, Iterator, NoReturn, Optional

__all__ = [
    "MAX_LINE_BYTES",
    "Task",
    "WorkerEnv",
    "Terminated",
    "env",
    "tasks",
    "current_task",
    "action",
    "reasoning",
    "log",
    "sandbox_ready",
    "complete",
    "fail",
    "handle_sigterm",
    "set_output",
    "protect_stdout",
]

#: Longest protocol line the runner accepts, newline included. Longer lines
#: are discarded by the runner, so this module truncates text fields to fit.
MAX_LINE_BYTES = 65536

#: Exit status used when the protocol is violated (bad env, bad stdin line).
EXIT_PROTOCOL_ERROR = 2

REQUIRED_ENV = ("SESSION_ID", "AGENT_ID", "TASK_ID", "TASK_DESCRIPTION")

_TRUNCATION_MARK = " [truncated by swarmq_worker: line limit]"


@dataclass(frozen=True)
class Task:
    task_id: str
    description: str


@dataclass(frozen=True)
class WorkerEnv:
    session_id: str
    agent_id: str
    task_id: str
    task_description: str
    socket_url: Optional[str]
    e2b_api_key: Optional[str]
    dedalus_api_key: Optional[str]


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM once handle_sigterm() was called.

    A SystemExit subclass (exit status 143 = 128 + SIGTERM): ``except
    Exception`` does not catch it, ``finally`` blocks and context managers
    run, and an uncaught one ends the process with status 143 and no
    traceback.
    """

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


# --------------------------------------------------------------------------
# output

_lock = threading.RLock()
_out: Optional[IO[bytes]] = None
_current: Optional[Task] = None
_reported = False  # complete/fail already written for _current
_main_writing = False  # the main thread is writing a line (SIGTERM deferred)
_pending_term = False


def set_output(stream: IO[bytes]) -> None:
    """Write protocol lines to ``stream`` (a binary file) instead of stdout."""
    global _out
    with _lock:
        _out = stream


def protect_stdout() -> None:
    """Reserve the real stdout for protocol lines; send everything else to stderr.

    Idempotent. Called automatically by tasks() and the first output call.
    """
    global _out
    with _lock:
        if _out is not None:
            return
        try:
            sys.stdout.flush()
        except Exception:
            pass
        fd = os.dup(1)  # non-inheritable: children cannot write protocol lines
        os.dup2(2, 1)  # fd 1 -> stderr, for print() and child processes
        _out = os.fdopen(fd, "wb", buffering=0)
        sys.stdout = sys.stderr


def _clean(s: str) -> str:
    # Lone surrogates cannot be encoded as UTF-8 (and serde_json rejects them
    # escaped), so replace them.
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "replace").decode("utf-8")


def _encode(obj: dict) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _fit(obj: dict, fields: tuple[str, ...]) -> bytes:
    """Encode obj as one line, truncating the longest text fields until it fits."""
    line = _encode(obj)
    while len(line) > MAX_LINE_BYTES:
        candidates = [f for f in fields if isinstance(obj.get(f), str) and obj[f]]
        if not candidates:
            raise ValueError("protocol line too long and nothing to truncate")
        field = max(candidates, key=lambda f: len(obj[f]))
        text = obj[field]
        # Binary search for the longest prefix that makes the line fit.
        lo, hi = 0, len(text) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            obj[field] = text[:mid] + _TRUNCATION_MARK
            if len(_encode(obj)) <= MAX_LINE_BYTES:
                lo = mid
            else:
                hi = mid - 1
        obj[field] = text[:lo] + _TRUNCATION_MARK
        line = _encode(obj)
        if lo == 0 and len(line) > MAX_LINE_BYTES:
            obj[field] = ""
            line = _encode(obj)
    return line


def _write_line(line: bytes) -> None:
    global _main_writing, _pending_term
    assert _out is not None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        _main_writing = True  # a SIGTERM now is deferred until the line is out
    try:
        view = memoryview(line)
        while view:
            n = _out.write(view)
            if n is None:  # non-blocking stream that is full; should not happen
                continue
            view = view[n:]
        _out.flush()
    finally:
        if in_main:
            _main_writing = False
            if _pending_term:
                _pending_term = False
                raise Terminated()


def _emit(obj: dict, text_fields: tuple[str, ...] = ()) -> None:
    for k, v in list(obj.items()):
        if isinstance(v, str):
            obj[k] = _clean(v)
    line = _fit(obj, text_fields)
    with _lock:
        if _out is None:
            protect_stdout()
        # BrokenPipeError propagates: the runner is gone, nothing can be reported.
        _write_line(line)


def _require_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value


def log(action: Optional[str] = None, reasoning: Optional[str] = None) -> None:
    """Write one ``log`` line carrying an action, a reasoning, or both."""
    if action is None and reasoning is None:
        raise ValueError("log() needs action or reasoning")
    obj: dict = {"type": "log"}
    if action is not None:
        obj["action"] = _require_str("action", action)
    if reasoning is not None:
        obj["reasoning"] = _require_str("reasoning", reasoning)
    _emit(obj, ("action", "reasoning"))


def action(text: str) -> None:
    """Short status line -> Socket.IO ``agent:thinking``."""
    log(action=text)


def reasoning(text: str) -> None:
    """Model reasoning / free text -> Socket.IO ``agent:reasoning``."""
    log(reasoning=text)


def sandbox_ready(sandbox_id: str, stream_url: str) -> None:
    """Announce the agent's sandbox -> Socket.IO ``agent:stream_ready``."""
    _emit(
        {
            "type": "sandbox_ready",
            "sandboxId": _require_str("sandbox_id", sandbox_id),
            "streamUrl": _require_str("stream_url", stream_url),
        }
    )


def _final(kind: str, field: str, text: Optional[str]) -> None:
    global _reported
    with _lock:
        if _current is not None:
            todo_id: Optional[str] = _current.task_id
        else:
            todo_id = os.environ.get("TASK_ID") or None
        if _current is not None and _reported:
            raise RuntimeError(f"task {todo_id} was already reported (complete/fail can be sent once per task)")
        obj: dict = {"type": kind}
        if todo_id:
            obj["todoId"] = todo_id
        if text is not None:
            obj[field] = _require_str(field, text)
        _emit(obj, (field,))
        if _current is not None:
            _reported = True


def complete(result: Optional[str] = None) -> None:
    """Report the current task done -> ``task:completed``. At most once per task."""
    _final("complete", "result", result)


def fail(reason: str) -> None:
    """Report this attempt of the current task failed (the runner may retry it)."""
    _final("fail", "reason", _require_str("reason", reason))


# --------------------------------------------------------------------------
# input


def _refuse(message: str) -> NoReturn:
    sys.stderr.write(f"swarmq_worker: fatal: {message}\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_PROTOCOL_ERROR)


def env() -> WorkerEnv:
    """The worker's environment contract. Refuses (exit 2) if it is incomplete."""
    missing = [name for name in REQUIRED_ENV if name not in os.environ]
    empty = [name for name in ("SESSION_ID", "AGENT_ID", "TASK_ID") if name in os.environ and not os.environ[name]]
    if missing or empty:
        problems = []
        if missing:
            problems.append("missing " + ", ".join(missing))
        if empty:
            problems.append("empty " + ", ".join(empty))
        _refuse(
            "incomplete worker environment (" + "; ".join(problems) + "); "
            "this program is meant to be started by a swarmq runner, see docs/worker-protocol.md"
        )
    return WorkerEnv(
        session_id=os.environ["SESSION_ID"],
        agent_id=os.environ["AGENT_ID"],
        task_id=os.environ["TASK_ID"],
        task_description=os.environ["TASK_DESCRIPTION"],
        socket_url=os.environ.get("SOCKET_URL") or None,
        e2b_api_key=os.environ.get("E2B_API_KEY") or None,
        dedalus_api_key=os.environ.get("DEDALUS_API_KEY") or None,
    )


def parse_task_line(raw: bytes) -> Task:
    """Parse one stdin line ``{"taskId": str, "description": str}``; refuse otherwise."""
    shown = raw[:200].decode("utf-8", "replace").rstrip("\r\n")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        _refuse(f"malformed task line on stdin (not UTF-8 JSON: {e}): {shown!r}")
    if not isinstance(obj, dict):
        _refuse(f"malformed task line on stdin (not a JSON object): {shown!r}")
    task_id = obj.get("taskId")
    description = obj.get("description")
    if not isinstance(task_id, str) or not task_id:
        _refuse(f"malformed task line on stdin (taskId must be a non-empty string): {shown!r}")
    if not isinstance(description, str):
        _refuse(f"malformed task line on stdin (description must be a string): {shown!r}")
    return Task(task_id, description)


def current_task() -> Optional[Task]:
    """The task being worked on (the last one tasks() yielded), or None."""
    return _current


def _set_current(task: Optional[Task]) -> None:
    global _current, _reported
    with _lock:
        _current = task
        _reported = False


def tasks(stdin: Optional[IO[bytes]] = None) -> Iterator[Task]:
    """Yield the first task (env), then one task per stdin line until EOF.

    Before reading the next task, a task that got neither complete() nor
    fail() is failed automatically (the runner sends the next task only after
    one of them). Refuses with exit status 2 on an incomplete environment or a
    malformed stdin line. Blank stdin lines are ignored.
    """
    e = env()
    if _out is None:
        protect_stdout()
    source = stdin if stdin is not None else sys.stdin.buffer
    task: Optional[Task] = Task(e.task_id, e.task_description)
    try:
        while task is not None:
            _set_current(task)
            yield task
            if not _reported:
                sys.stderr.write(f"swarmq_worker: task {task.task_id} ended without complete() or fail(); failing it\n")
                fail("worker finished the task without reporting complete or fail")
            task = None
            while True:
                raw = source.readline()
                if not raw:
                    break  # EOF: no task left
                if raw.strip():
                    task = parse_task_line(raw)
                    break
    finally:
        _set_current(None)


# --------------------------------------------------------------------------
# signals


def _on_sigterm(signum: int, frame: Any) -> None:
    global _pending_term
    if _main_writing:
        _pending_term = True  # finish the line first; _write_line raises
        return
    raise Terminated()


def handle_sigterm() -> None:
    """Make SIGTERM raise Terminated (exit status 143) in the main thread.

    Blocking reads, sleeps and HTTP requests in the main thread are
    interrupted, ``finally`` blocks run (free your sandbox there), and the
    process exits promptly. Must be called from the main thread.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
