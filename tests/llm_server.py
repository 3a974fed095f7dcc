"""A stand-in for the Anthropic Messages API: a small threaded HTTP server on a free loopback
port that the real `anthropic` SDK talks to (no mocks of the SDK).

`POST /v1/messages` answers like the API: {id, type "message", role, content [{type "text",
text}], model, stop_reason, usage {input_tokens, output_tokens, cache_creation_input_tokens,
cache_read_input_tokens}}. Tests steer it:

    llm.fail_next(2, status=529)    # the next two calls answer 529 overloaded_error
    llm.summary = ""                # summaries come back empty
    llm.warm_usage = {...}          # usage a warm (max_tokens 1) reports
    llm.on_request = callback       # runs in the server thread before it answers
    llm.requests                    # every request body received, in order

Requests are recorded in this (the test) process, also when a Celery worker subprocess is
the caller.

Like the real API, it answers 400 {"type": "error", "error": {"type":
"invalid_request_error", "message": …}} to a request the API documents as invalid
(`request_errors` lists the rules: breakpoints, tool_use/tool_result pairing and order, empty
text, roles, effort by model), so a request Threadline builds wrongly fails a test. Such
requests are recorded too (`llm.rejected` holds their messages).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}
# The Messages API's effort support by model family (its "Effort" page), kept here apart
# from threads/conversation/messages_api.py on purpose: the stand-in plays the real API.
EFFORT_BY_MODEL = {
    "claude-mythos": {"low", "medium", "high", "max"},
    "claude-opus-4-7": {"low", "medium", "high", "xhigh", "max"},
    "claude-opus-4-6": {"low", "medium", "high", "max"},
    "claude-sonnet-4-6": {"low", "medium", "high", "max"},
    "claude-opus-4-5": {"low", "medium", "high"},
}
MAX_BREAKPOINTS = 4
DEFAULT_WARM_USAGE = {
    "input_tokens": 12,
    "output_tokens": 1,
    "cache_read_input_tokens": 900,
    "cache_creation_input_tokens": 88,
}


class LLMServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.reset()

    # --- control ---------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.requests: list[dict[str, Any]] = []
            self.headers: list[dict[str, str]] = []
            self._failures: deque[int] = deque()
            self.rejected: list[str] = []
        self.summary: str | None = None  # None: a deterministic summary of the prompt
        self.warm_usage: dict[str, int] = dict(DEFAULT_WARM_USAGE)
        self.on_request: Callable[[dict[str, Any]], None] | None = None

    def fail_next(self, times: int, *, status: int = 529) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def summary_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("max_tokens") != 1]

    def warm_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("max_tokens") == 1]

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- answering -------------------------------------------------------------------

    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> int | None:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            return self._failures.popleft() if self._failures else None

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model", "claude-test")
        n = len(self.requests)
        if body.get("max_tokens") == 1:
            return _message(n, model, ".", self.warm_usage, stop_reason="max_tokens")
        prompt = _prompt_text(body)
        text = self.summary
        if text is None:
            lines = [line for line in prompt.splitlines()[2:] if line.strip()]
            text = f"Summary of {len(lines)} messages. First: {lines[0][:80] if lines else ''}"
        usage = {
            "input_tokens": max(1, len(prompt) // 4),
            "output_tokens": max(1, len(text) // 4),
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
        return _message(n, model, text, usage)


def _effort_levels(model: str) -> set[str]:
    matches = [prefix for prefix in EFFORT_BY_MODEL if model.startswith(prefix)]
    return EFFORT_BY_MODEL[max(matches, key=len)] if matches else set()


def _text_errors(block: dict[str, Any], where: str) -> list[str]:
    if block.get("type") != "text":
        return []
    text = block.get("text")
    if not isinstance(text, str) or text == "":
        return [f"{where}.text: text content blocks must be non-empty"]
    if not text.strip():
        return [f"{where}.text: text content blocks must contain non-whitespace text"]
    return []


def _breakpoints(value: Any) -> int:
    if isinstance(value, dict):
        own = 1 if "cache_control" in value else 0
        return own + sum(_breakpoints(v) for k, v in value.items() if k == "content")
    if isinstance(value, list):
        return sum(_breakpoints(v) for v in value)
    return 0


def request_errors(body: dict[str, Any]) -> list[str]:
    """What the Messages API would answer 400 for, in its words (the first one is sent)."""
    errors: list[str] = []
    model = body.get("model") or ""
    system = body.get("system")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return ["messages: at least one message is required"]
    if isinstance(system, list):
        for i, block in enumerate(system):
            errors += _text_errors(block, f"system.{i}")
            if block.get("type") != "text":
                errors.append(f"system.{i}.type: system blocks must be text")
    found = _breakpoints(system) + _breakpoints(messages) + _breakpoints(body.get("tools"))
    if found > MAX_BREAKPOINTS:
        errors.append(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}."
        )
    previous_calls: set[str] = set()
    for n, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            errors.append(
                f"messages.{n}.role: Input tag '{role}' found using 'role' does not match any "
                "of the expected tags: 'user', 'assistant'"
            )
            continue
        if n and messages[n - 1].get("role") == role:
            errors.append(f"messages: roles must alternate between user and assistant ({n})")
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            errors.append(f"messages.{n}: all messages must have non-empty content")
            continue
        seen_other = False
        answered: set[str] = set()
        for i, block in enumerate(blocks):
            where = f"messages.{n}.content.{i}"
            errors += _text_errors(block, where)
            if block.get("type") == "text" and "cache_control" in block and not block.get("text"):
                errors.append(f"{where}: cache_control cannot be set for empty text blocks")
            if block.get("type") == "tool_result":
                if role != "user":
                    errors.append(f"{where}: tool_result blocks are only allowed in user messages")
                if seen_other:
                    errors.append(
                        f"messages.{n}: tool_result blocks must come first in the user message "
                        "content, before any other block"
                    )
                if block.get("tool_use_id") not in previous_calls:
                    errors.append(
                        f"messages.{n}.content.{i}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` "
                        "block must have a corresponding `tool_use` block in the previous message."
                    )
                answered.add(block.get("tool_use_id"))
                for j, inner in enumerate(block.get("content") or []):
                    if isinstance(inner, dict):
                        errors += _text_errors(inner, f"{where}.content.{j}")
            else:
                seen_other = True
            if block.get("type") == "tool_use" and role != "assistant":
                errors.append(f"{where}: tool_use blocks are only allowed in assistant messages")
        missing = sorted(previous_calls - answered)
        if missing:
            errors.append(
                f"messages.{n}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        previous_calls = (
            {b.get("id") for b in blocks if b.get("type") == "tool_use"}
            if role == "assistant"
            else set()
        )
    effort = (body.get("output_config") or {}).get("effort")
    if effort is not None:
        levels = _effort_levels(model)
        if not levels:
            errors.append(f"output_config.effort: this model ({model}) does not support effort")
        elif effort not in levels:
            errors.append(
                f"output_config.effort: {effort!r} is not supported by {model}; "
                f"use one of {', '.join(sorted(levels))}"
            )
    return errors


def _prompt_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or [{}]
    content = messages[-1].get("content", "")
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return content


def _message(n: int, model: str, text: str, usage: dict[str, int], **extra: Any) -> dict:
    return {
        "id": f"msg_test{n:06d}",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": text}] if text else [],
        "model": model,
        "stop_reason": extra.get("stop_reason", "end_turn"),
        "stop_sequence": None,
        "usage": usage,
    }


def _handler(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("request-id", "req_test")
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:  # the http.server API names it so
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path.split("?")[0] != "/v1/messages":
                self._send(404, _error(404, "not_found_error", f"no route {self.path}"))
                return
            failure = server._record(body, {k.lower(): v for k, v in self.headers.items()})
            if server.on_request is not None:
                server.on_request(body)
            if failure is not None:
                kind = ERROR_TYPES.get(failure, "api_error")
                self._send(failure, _error(failure, kind, f"stand-in {kind}"))
                return
            errors = request_errors(body)
            if errors:
                with server._lock:
                    server.rejected.append(errors[0])
                self._send(400, _error(400, "invalid_request_error", errors[0]))
                return
            self._send(200, server.answer(body))

    return Handler


def _error(status: int, kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}
