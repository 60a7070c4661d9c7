#!/usr/bin/env python3
"""swarmq default agent.

Started by a swarmq runner (see docs/worker-protocol.md). Serves every task of
one agent: the first from the environment, the next ones from stdin, and exits
0 when stdin closes.

With ANTHROPIC_API_KEY set, each task description is sent to the Anthropic
Messages API with streaming; progress goes out as ``action`` lines, the
model's text (and thinking, if enabled) as coalesced ``reasoning`` lines, and
the answer as the ``complete`` result. Without a key it runs in a clearly
labelled offline mode that calls no model.

Settings (environment; the runner passes them only if listed in
SWARMQ_WORKER_PASS_ENV):
  ANTHROPIC_API_KEY         enables the model; absent/empty -> offline mode
  ANTHROPIC_BASE_URL        API base URL (honoured by the SDK)
  WORKER_MODEL              model id (default claude-sonnet-4-5-20250929)
  WORKER_MAX_TOKENS         max output tokens per task (default 8192)
  WORKER_THINKING_TOKENS    extended-thinking budget; 0 = off (default 0)
  WORKER_REQUEST_TIMEOUT    per-request timeout in seconds (default 600)
  WORKER_OFFLINE_STEP_SECS  delay between offline steps (default 0.2)
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
import warnings
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import swarmq_worker as sw  # noqa: E402

DEFAULT_MODEL = "claude-sonnet-4-5-20250929"

#: reasoning lines are flushed when this many characters are buffered ...
REASONING_CHUNK_CHARS = 400
#: ... or at a line break once this many are buffered ...
REASONING_MIN_CHARS = 120
#: ... or when the oldest buffered text is this old (checked as text arrives).
REASONING_MAX_DELAY_SECS = 1.0

SYSTEM_PROMPT = (
    "You are {agent_id}, one of several AI agents working in parallel on parts of a larger request "
    "(swarm session {session_id}). You are given one self-contained task. Do it yourself, now, and reply "
    "with the finished result only: concrete and complete, no preamble, no questions back. You have no "
    "tools and no internet access; if something cannot be done without them, do the best possible version "
    "and say briefly what is missing."
)


def stderr(msg: str) -> None:
    sys.stderr.write(f"worker: {msg}\n")
    sys.stderr.flush()


def env_number(name: str, default: float, cast: Callable[[str], Any] = float, minimum: float = 0) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        stderr(f"ignoring invalid {name}={raw!r}; using {default}")
        return default
    return value


def shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------
# offline mode


def run_offline(e: sw.WorkerEnv) -> None:
    step = env_number("WORKER_OFFLINE_STEP_SECS", 0.2)
    sw.action("offline mode: no ANTHROPIC_API_KEY, no model is called")
    sandbox_id = f"offline-{e.agent_id[:8]}"
    sw.sandbox_ready(sandbox_id, "about:blank")
    try:
        for task in sw.tasks():
            sw.action(f"offline: starting task {task.task_id}")
            sw.reasoning(f"[offline] Task: {shorten(task.description, 500)}")
            time.sleep(step)
            sw.action("offline: working through the task (simulated)")
            sw.reasoning(
                "[offline] No model is available, so no real work is done; this worker only walks "
                "through the steps so that the swarm's event path can be exercised."
            )
            time.sleep(step)
            sw.action("offline: writing the result (simulated)")
            time.sleep(step)
            sw.complete(
                f"[offline] No model was called (ANTHROPIC_API_KEY not set); task {task.task_id} "
                f"was not really performed. Task: {shorten(task.description, 500)}"
            )
    finally:
        stderr(f"releasing offline sandbox {sandbox_id}")


# --------------------------------------------------------------------------
# online mode


class Coalescer:
    """Buffers streamed text and emits it as reasonably sized reasoning lines.

    Text is cut at a line break (or else a space) so that words are not split
    across lines where possible.
    """

    def __init__(self, emit: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.emit = emit
        self.clock = clock
        self.buf = ""
        self.since = 0.0

    def add(self, text: str) -> None:
        if not text:
            return
        if not self.buf:
            self.since = self.clock()
        self.buf += text
        if len(self.buf) >= REASONING_CHUNK_CHARS:
            self._cut()
        elif len(self.buf) >= REASONING_MIN_CHARS and "\n" in text:
            self._cut()
        elif self.clock() - self.since >= REASONING_MAX_DELAY_SECS:
            self._cut(min_chars=1)

    def _cut(self, min_chars: int = REASONING_MIN_CHARS) -> None:
        buf = self.buf
        cut = buf.rfind("\n") + 1
        if cut < min_chars:
            cut = buf.rfind(" ") + 1
        if cut < min_chars:
            cut = len(buf)
        self.buf = buf[cut:]
        self.since = self.clock()
        self._send(buf[:cut])

    def flush(self) -> None:
        buf, self.buf = self.buf, ""
        self._send(buf)

    def _send(self, text: str) -> None:
        if text.strip():
            self.emit(text)


class RetryReporter(logging.Handler):
    """Turns the SDK's retry log records into action lines and counts them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.retries = 0
        self.last_status: Optional[int] = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.msg == "Retrying due to status code %i" and record.args:
                self.last_status = int(record.args[0])  # type: ignore[index]
            elif isinstance(record.msg, str) and record.msg.startswith("Retrying request to"):
                self.retries += 1
                wait = record.args[1] if isinstance(record.args, tuple) and len(record.args) > 1 else 0.0
                why = f" after HTTP {self.last_status}" if self.last_status else ""
                self.last_status = None
                sw.action(f"Anthropic API: retry {self.retries}{why} in {float(wait):.2f}s")
        except sw.Terminated:
            raise
        except Exception:
            self.handleError(record)


def describe_error(err: BaseException, retries: int) -> str:
    import anthropic

    after = f" (after {retries} {'retry' if retries == 1 else 'retries'})" if retries else ""
    if isinstance(err, anthropic.APIStatusError):
        status = err.status_code
        etype = emsg = None
        body = err.body
        if isinstance(body, dict):
            inner = body.get("error") if isinstance(body.get("error"), dict) else body
            etype, emsg = inner.get("type"), inner.get("message")
        msg = emsg if isinstance(emsg, str) and emsg else str(err.message)
        kind = f" ({etype})" if isinstance(etype, str) and etype else ""
        if status < 400:  # an `event: error` in the middle of a stream
            return f"Anthropic API error during streaming: {msg}{kind}{after}"
        return f"Anthropic API error {status}: {msg}{kind}{after}"
    if isinstance(err, anthropic.APITimeoutError):
        return f"Anthropic API request timed out{after}"
    if isinstance(err, anthropic.APIConnectionError):
        cause = err.__cause__ or err.__context__
        detail = f": {cause}" if cause else ""
        return f"Anthropic API connection error{detail}{after}"
    if isinstance(err, anthropic.APIError):
        return f"Anthropic API error: {err}{after}"
    return f"worker error: {type(err).__name__}: {err}"


class NoAnswer(Exception):
    pass


class Answer:
    """What a streamed message said, from the raw events of ``messages.create(stream=True)``:
    the stop reason, the output tokens and the text blocks, as the SDK's ``messages.stream``
    helper would accumulate them into its final message. The helper also rebuilds a snapshot of
    the whole message and a second event object for every event, CPU a preloaded agent would
    otherwise spend on each call. Progress goes out as it arrives: actions, coalesced reasoning."""

    def __init__(self, coalescer: Coalescer) -> None:
        self.coalescer = coalescer
        self.started = False
        self.stop_reason: Optional[str] = None
        self.output_tokens = 0
        self.texts: dict[int, list[str]] = {}  # text blocks by index: their pieces

    def on(self, event: Any) -> None:
        etype = event.type
        if etype == "message_start":
            self.started = True
            self.stop_reason = event.message.stop_reason
            self.output_tokens = event.message.usage.output_tokens
            sw.action(f"{event.message.model} is responding")
        elif etype == "content_block_start":
            self.coalescer.flush()
            block = event.content_block
            if block.type == "thinking":
                sw.action("Thinking")
            elif block.type == "text":
                sw.action("Writing the answer")
                if self.started:
                    self.texts[event.index] = [block.text]
            else:
                sw.action(f"Receiving a {block.type} block")
        elif etype == "content_block_delta":
            self.on_delta(event.index, event.delta)
        elif etype == "content_block_stop":
            self.coalescer.flush()
        elif etype == "message_delta" and self.started:
            self.stop_reason = event.delta.stop_reason
            self.output_tokens = event.usage.output_tokens

    def on_delta(self, index: int, delta: Any) -> None:
        if delta.type == "text_delta":
            self.coalescer.add(delta.text)
            if index in self.texts:
                self.texts[index].append(delta.text)
        elif delta.type == "thinking_delta":
            self.coalescer.add(delta.thinking)

    def text(self) -> str:
        return "".join("".join(self.texts[i]) for i in sorted(self.texts)).strip()


def run_task(client: Any, task: sw.Task, e: sw.WorkerEnv, model: str, max_tokens: int, thinking: int) -> str:
    kwargs: dict[str, Any] = {}
    if thinking:
        kwargs["thinking"] = {"type": "enabled", "budget_tokens": thinking}
    sw.action(f"Calling {model} (streaming, max {max_tokens} tokens)")
    answer = Answer(Coalescer(sw.reasoning))
    with client.messages.create(
        model=model,
        max_tokens=max_tokens,
        system=SYSTEM_PROMPT.format(agent_id=e.agent_id, session_id=e.session_id),
        messages=[{"role": "user", "content": task.description}],
        stream=True,
        **kwargs,
    ) as stream:
        for event in stream:
            answer.on(event)
        answer.coalescer.flush()
    if not answer.started:
        raise NoAnswer("model stream ended before its message started")

    stop = answer.stop_reason
    sw.action(f"Received {answer.output_tokens} tokens (stop_reason: {stop})")
    text = answer.text()
    if not text:
        raise NoAnswer(f"model returned no answer text (stop_reason: {stop})")
    if stop == "max_tokens":
        sw.action(f"Answer cut off at max_tokens={max_tokens}")
        text += f"\n\n[answer truncated: max_tokens={max_tokens} reached]"
    return text


def run_online(e: sw.WorkerEnv) -> None:
    sw.action("Loading the Anthropic SDK")
    try:
        import anthropic
    except ImportError as err:
        # Exit non-zero: the runner fails the attempt with this stderr line as the reason.
        sys.exit(f"worker: cannot import the anthropic SDK ({err}); run: pip install -r workers/requirements.txt")

    model = os.environ.get("WORKER_MODEL", "").strip() or DEFAULT_MODEL
    max_tokens = env_number("WORKER_MAX_TOKENS", 8192, int, 1)
    thinking = env_number("WORKER_THINKING_TOKENS", 0, int, 0)
    if thinking and (thinking < 1024 or thinking >= max_tokens):
        stderr(f"WORKER_THINKING_TOKENS={thinking} must be >= 1024 and < WORKER_MAX_TOKENS; thinking disabled")
        thinking = 0
    timeout = env_number("WORKER_REQUEST_TIMEOUT", 600.0, float, 1)

    reporter = RetryReporter()
    sdk_log = logging.getLogger("anthropic._base_client")
    sdk_log.setLevel(logging.DEBUG)
    sdk_log.addHandler(reporter)
    sdk_log.propagate = False

    client = anthropic.Anthropic(
        api_key=os.environ["ANTHROPIC_API_KEY"].strip(),
        max_retries=2,
        timeout=timeout,
        http_client=anthropic.DefaultHttpxClient(verify=tls_context()),
    )
    try:
        for task in sw.tasks():
            reporter.retries = 0
            try:
                result = run_task(client, task, e, model, max_tokens, thinking)
            except (anthropic.APIError, NoAnswer) as err:
                reason = str(err) if isinstance(err, NoAnswer) else describe_error(err, reporter.retries)
                stderr(f"task {task.task_id} failed: {reason}")
                sw.fail(reason)
            except Exception as err:  # a bug or an unexpected SDK error: report, keep serving
                traceback.print_exc(file=sys.stderr)
                sw.fail(describe_error(err, reporter.retries))
            else:
                sw.complete(result)
    finally:
        client.close()


# --------------------------------------------------------------------------


#: The TLS settings of this process's client (what the SDK would build: the system's CA store,
#: SSL_CERT_FILE/SSL_CERT_DIR honoured). Built once per process; in a preloaded worker server
#: before the fork, so every agent shares it (loading the CA bundle is ~30-70 ms of CPU).
_tls: Any = None

#: The module name the preloaded worker server imports this file under
#: (SWARMQ_PRELOAD_MODULES=...,worker:preload). A preloaded child runs this file again as
#: ``__main__``, with fresh globals: what the server built before the fork is on that module.
PRELOADED_AS = "worker"


def http_library() -> Any:
    """The SDK's HTTP library: httpx2 in the anthropic 1.x line we pin, httpx before it."""
    try:
        import httpx2

        return httpx2
    except ImportError:
        import httpx

        return httpx


def tls_context() -> Any:
    """This process's TLS context: in a preloaded child the one the server built, else new."""
    global _tls
    if _tls is None:
        preloaded = sys.modules.get(PRELOADED_AS)
        if preloaded is not None and vars(preloaded) is not globals():
            _tls = getattr(preloaded, "_tls", None)
    if _tls is None:
        _tls = http_library().create_ssl_context()
    return _tls


#: A short streamed answer, as the Messages API sends it, for the preload warm-up.
_WARM_STREAM = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_warm", "type": "message", "role": "assistant", "model": DEFAULT_MODEL,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "thinking_delta", "thinking": "warm"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "signature_delta", "signature": "warm"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "text_delta", "text": "warm"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": 2}}),
    ("message_stop", {"type": "message_stop"}),
]


def preload() -> None:
    """Warm-up for the preloaded worker server (SWARMQ_PRELOAD_MODULES=...,worker:preload).

    Runs one streamed call of this worker's own kind through the SDK against an in-memory
    transport (httpx.MockTransport: no socket, no connection, nothing left open), so that the
    SDK's lazily imported transport modules and the response types it builds on first use
    (pydantic schemas: most of a first call's CPU) are ready before the fork.
    """
    import json

    import anthropic

    httpx = http_library()
    # The real transport's modules (imported lazily by the first client) and the TLS context.
    anthropic.DefaultHttpxClient(verify=tls_context()).close()
    # The codec `socket` encodes host names with, imported at a process's first connection.
    import encodings.idna  # noqa: F401
    body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in _WARM_STREAM)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=body)

    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        client = anthropic.Anthropic(api_key="preload-only", http_client=http, max_retries=0)
        task = sw.Task(task_id="warm", description="warm")
        e = sw.WorkerEnv("warm", "warm", "warm", "warm", None, None, None)
        out = sw._out if hasattr(sw, "_out") else None  # noqa: SLF001 - restored below
        sw.set_output(open(os.devnull, "wb"))  # noqa: SIM115 - closed with the process
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. the model's deprecation: the agents warn
                run_task(client, task, e, DEFAULT_MODEL, 16, 0)
        finally:
            sw._out = out  # noqa: SLF001 - the child sets up its own stdout on first use


def main() -> int:
    sw.handle_sigterm()
    try:
        e = sw.env()
        if os.environ.get("ANTHROPIC_API_KEY", "").strip():
            run_online(e)
        else:
            run_offline(e)
    except sw.Terminated:
        stderr("SIGTERM received, exiting")
        return 143
    except BrokenPipeError:
        stderr("stdout closed (runner gone), exiting")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
