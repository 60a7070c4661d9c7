"""A local fake of the Anthropic Messages API (POST /v1/messages), stdlib only.

Runs ``http.server`` in a thread on 127.0.0.1, port 0. It checks the
``x-api-key`` and ``anthropic-version`` headers and the request body, and
answers with the real API's shapes: a ``message`` object, the SSE event
sequence of a streamed message, and ``{"type":"error","error":{...}}`` errors
with a ``request-id`` header.

Responses are scripted: ``enqueue()`` planned responses (consumed one per
request, FIFO); when the queue is empty the fake replies with a default
message. Every request is recorded in ``requests``.

    with FakeAnthropic() as fake:
        fake.enqueue(Error.rate_limit(), Reply("hello"))
        ... ANTHROPIC_BASE_URL=fake.url, ANTHROPIC_API_KEY=fake.api_key ...
"""

from __future__ import annotations

import collections
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

#: API versions whose wire format this fake implements (the pinned SDK sends
#: 2023-06-01). The real API rejects unknown versions with a 400 as well.
API_VERSIONS = ("2023-06-01", "2023-01-01")
DEFAULT_KEY = "sk-ant-fake-0123456789"


def _rid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


@dataclass
class Reply:
    """A successful message. Streamed as SSE if the request has stream=true."""

    text: str
    thinking: Optional[str] = None
    stop_reason: str = "end_turn"
    chunk_chars: int = 16  # text_delta size when streaming
    model: Optional[str] = None  # default: echo the requested model


@dataclass
class Error:
    """An HTTP error response with the real error body shape."""

    status: int
    type: str
    message: str
    headers: dict = field(default_factory=dict)

    @classmethod
    def rate_limit(cls, retry_after_ms: str = "10") -> "Error":
        return cls(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            {"retry-after": "0", "retry-after-ms": retry_after_ms},
        )

    @classmethod
    def overloaded(cls, retry_after_ms: str = "10") -> "Error":
        return cls(529, "overloaded_error", "Overloaded", {"retry-after-ms": retry_after_ms})


@dataclass
class StreamError:
    """A stream that starts fine, sends ``text``, then an ``event: error``."""

    text: str
    type: str = "overloaded_error"
    message: str = "Overloaded"


@dataclass
class Hang:
    """Accept the request and send nothing for ``seconds`` (or until stop())."""

    seconds: float = 30.0


class FakeAnthropic:
    def __init__(self, api_key: str = DEFAULT_KEY) -> None:
        self.api_key = api_key
        self.requests: list[dict] = []
        self._plan: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeAnthropic":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def enqueue(self, *responses: Any) -> None:
        with self._lock:
            self._plan.extend(responses)

    def reset(self) -> None:
        with self._lock:
            self._plan.clear()
            self.requests.clear()

    def message_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"] == "/v1/messages"]

    def _next(self, body: dict) -> Any:
        with self._lock:
            if self._plan:
                return self._plan.popleft()
        return Reply(default_answer(body))

    # ------------------------------------------------------------------

    def _handler_class(self) -> type:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "fake-anthropic"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._read_body()
                self._record(None)
                self._error(404, "not_found_error", "Not found")

            def do_POST(self) -> None:
                raw = self._read_body()
                body: Any = None
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    pass
                self._record(body)
                path = self.path.split("?", 1)[0]
                if path != "/v1/messages":
                    return self._error(404, "not_found_error", "Not found")
                if not self.headers.get("anthropic-version"):
                    return self._error(400, "invalid_request_error", "anthropic-version: header is required")
                if self.headers.get("anthropic-version") not in API_VERSIONS:
                    return self._error(
                        400, "invalid_request_error", f"anthropic-version: invalid version {self.headers.get('anthropic-version')!r}"
                    )
                key = self.headers.get("x-api-key")
                if not key:
                    return self._error(401, "authentication_error", "x-api-key header is required")
                if key != fake.api_key:
                    return self._error(401, "authentication_error", "invalid x-api-key")
                problem = validate_body(body)
                if problem:
                    return self._error(400, "invalid_request_error", problem)

                planned = fake._next(body)
                if isinstance(planned, Hang):
                    fake._stop.wait(planned.seconds)
                    return self._error(504, "timeout_error", "fake hang ended")
                if isinstance(planned, Error):
                    return self._error(planned.status, planned.type, planned.message, planned.headers)
                stream = body.get("stream") is True
                if isinstance(planned, StreamError):
                    if not stream:
                        return self._error(planned_status(planned.type), planned.type, planned.message)
                    return self._sse(stream_error_events(body, planned))
                assert isinstance(planned, Reply), planned
                if stream:
                    return self._sse(stream_events(body, planned))
                return self._json(200, message_object(body, planned))

            # -- helpers --------------------------------------------------

            def _read_body(self) -> bytes:
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _record(self, body: Any) -> None:
                with fake._lock:
                    fake.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )

            def _json(self, status: int, obj: dict, headers: Optional[dict] = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", _rid("req_"))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, etype: str, message: str, headers: Optional[dict] = None) -> None:
                self._json(status, {"type": "error", "error": {"type": etype, "message": message}}, headers)

            def _sse(self, events: list) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream; charset=utf-8")
                self.send_header("cache-control", "no-cache")
                self.send_header("transfer-encoding", "chunked")
                self.send_header("request-id", _rid("req_"))
                self.end_headers()
                try:
                    for name, data in events:
                        chunk = f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


# ----------------------------------------------------------------------
# response bodies


def default_answer(body: Any) -> str:
    return f"Fake answer to: {last_user_text(body)}"


def last_user_text(body: Any) -> str:
    try:
        content = body["messages"][-1]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))


def validate_body(body: Any) -> Optional[str]:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant") or "content" not in m:
            return f"messages.{i}: invalid message"
    thinking = body.get("thinking")
    if thinking is not None:
        budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
        if not isinstance(budget, int) or budget < 1024 or budget >= body["max_tokens"]:
            return "thinking.budget_tokens: must be >= 1024 and less than max_tokens"
    return None


def planned_status(etype: str) -> int:
    return {"overloaded_error": 529, "api_error": 500, "rate_limit_error": 429}.get(etype, 500)


def _usage(input_tokens: int, output_tokens: int) -> dict:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def message_object(body: dict, reply: Reply) -> dict:
    content: list = []
    if reply.thinking is not None:
        content.append({"type": "thinking", "thinking": reply.thinking, "signature": "fake-signature"})
    content.append({"type": "text", "text": reply.text})
    return {
        "id": _rid("msg_"),
        "type": "message",
        "role": "assistant",
        "model": reply.model or body["model"],
        "content": content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": _usage(_tokens(last_user_text(body)), _tokens(reply.text + (reply.thinking or ""))),
    }


def _chunks(text: str, n: int) -> list:
    return [text[i : i + n] for i in range(0, len(text), n)] or [""]


def _message_start(body: dict, model: Optional[str]) -> tuple:
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": _rid("msg_"),
                "type": "message",
                "role": "assistant",
                "model": model or body["model"],
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": _usage(_tokens(last_user_text(body)), 1),
            },
        },
    )


def stream_events(body: dict, reply: Reply) -> list:
    """The SSE sequence of the real API for a (thinking +) text message."""
    events: list = [_message_start(body, reply.model)]
    index = 0
    if reply.thinking is not None:
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
            )
        )
        for piece in _chunks(reply.thinking, reply.chunk_chars):
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": piece}},
                )
            )
        events.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": "fake-signature"}},
            )
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    events.append(
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
    )
    events.append(("ping", {"type": "ping"}))
    for piece in _chunks(reply.text, reply.chunk_chars):
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})
        )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": _tokens(reply.text + (reply.thinking or ""))},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def stream_error_events(body: dict, err: StreamError) -> list:
    events: list = [
        _message_start(body, None),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    for piece in _chunks(err.text, 16):
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}))
    events.append(("error", {"type": "error", "error": {"type": err.type, "message": err.message}}))
    return events
