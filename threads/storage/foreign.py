"""Messages written by other tools, mapped to Threadline's: a role, content (a string or
Anthropic-style content blocks) and metadata.

Shapes read (README, "Import sources"):
- zeitlich's stored messages: plain `{id, role, content}`, the Anthropic adapter's envelope
  `{id, message: {role, content}, isSystem?}`, the LangChain adapter's `{type, data}`, and
  Threadline's own message JSON (carried back by a zeitlich flush: its seq is kept);
- LangChain message dicts, `{type, data}` or flat as LangGraph's API returns them;
- OpenAI Conversations items (`message`, `function_call`, `function_call_output`,
  `reasoning`, anything else kept whole).

What maps: text → `text` blocks, tool calls → `tool_use` {id, name, input}, tool results →
`tool_result` {tool_use_id, content} with the tool's name in metadata `tool_name`, thinking
and reasoning → `thinking`. Whatever has no counterpart is kept verbatim in the message's
metadata under `unmapped` (only null and empty values are left out); nothing is dropped.
A shape that cannot be read at all raises Unmappable with the JSON path of the element.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

UNMAPPED = "unmapped"
MAX_SEQ = 2**62  # as the API's after_seq (seqs are bigint columns)
ROLES = frozenset({"user", "assistant", "system", "tool"})
_ROLE_NAMES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
}
_NATIVE_KEYS = frozenset({"id", "seq", "role", "content", "metadata", "token_estimate"})


class Unmappable(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class Mapped:
    id: str | None
    role: str
    content: str | list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None  # only a Threadline message carries one
    token_estimate: int | None = None
    created_at: datetime | str | None = None


def _rest(source: dict[str, Any], consumed: set[str] | frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if k not in consumed and not _empty(v)}


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, dict | list) and not value)


def _finish(mapped: Mapped, unmapped: dict[str, Any]) -> Mapped:
    if unmapped:
        mapped.metadata = {**mapped.metadata, UNMAPPED: unmapped}
    return mapped


def _id(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 128:
        raise Unmappable(path, "an id must be a string of 1 to 128 characters")
    return value


def _blocks(content: Any, path: str) -> str | list[dict[str, Any]]:
    """A string, or a list of blocks (strings become text blocks; LangChain `reasoning`
    blocks become `thinking`)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise Unmappable(path, "content must be a string or a list of content blocks")
    blocks = []
    for index, block in enumerate(content):
        if isinstance(block, str):
            blocks.append({"type": "text", "text": block})
        elif isinstance(block, dict) and isinstance(block.get("type"), str) and block["type"]:
            if block["type"] == "reasoning" and isinstance(block.get("reasoning"), str):
                rest = _rest(block, {"type", "reasoning"})
                block = {"type": "thinking", "thinking": block["reasoning"], **rest}
            blocks.append(block)
        else:
            raise Unmappable(f"{path}[{index}]", "a content block must be an object with a 'type'")
    return blocks


def _as_list(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return list(content)
    return [{"type": "text", "text": content}] if content else []


# --- zeitlich --------------------------------------------------------------------------


def zeitlich_message(parsed: Any, path: str) -> Mapped:
    """One of zeitlich's stored messages (already parsed from its JSON string)."""
    if not isinstance(parsed, dict):
        raise Unmappable(path, "a stored message must be a JSON object")
    if _NATIVE_KEYS <= parsed.keys() and isinstance(parsed.get("seq"), int):
        return native_message(parsed, path)
    if isinstance(parsed.get("message"), dict):
        return _anthropic_envelope(parsed, path)
    if isinstance(parsed.get("data"), dict) and isinstance(parsed.get("type"), str):
        return langchain_message({**parsed["data"], "type": parsed["type"]}, path, nested=True)
    if parsed.get("role") in _ROLE_NAMES:
        return _plain(parsed, path)
    if parsed.get("type") in _ROLE_NAMES and "content" in parsed:
        return langchain_message(parsed, path)
    raise Unmappable(path, "not a message shape Threadline knows (see README, Import sources)")


def native_message(parsed: dict[str, Any], path: str) -> Mapped:
    """A message as Threadline's API writes it."""
    role = parsed.get("role")
    if role not in ROLES:
        raise Unmappable(f"{path}.role", f"must be one of {sorted(ROLES)}")
    seq, tokens, metadata = parsed.get("seq"), parsed.get("token_estimate"), parsed.get("metadata")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq <= MAX_SEQ:
        raise Unmappable(f"{path}.seq", f"must be an integer from 1 to {MAX_SEQ}")
    if not isinstance(metadata, dict):
        raise Unmappable(f"{path}.metadata", "must be an object")
    return Mapped(
        id=_id(parsed.get("id"), f"{path}.id"),
        role=role,
        content=_blocks(parsed.get("content"), f"{path}.content"),
        metadata=metadata,
        seq=seq,
        token_estimate=tokens if isinstance(tokens, int) and 0 <= tokens < 2**31 else None,
        created_at=parsed.get("created_at"),
    )


def _anthropic_envelope(parsed: dict[str, Any], path: str) -> Mapped:
    message = parsed["message"]
    role = "system" if parsed.get("isSystem") is True else _ROLE_NAMES.get(message.get("role"))
    if role is None:
        raise Unmappable(f"{path}.message.role", "must be user or assistant")
    mapped = Mapped(
        id=_id(parsed.get("id"), f"{path}.id"),
        role=role,
        content=_blocks(message.get("content"), f"{path}.message.content"),
    )
    unmapped = _rest(parsed, {"id", "message", "isSystem"})
    extra = _rest(message, {"role", "content"})
    if extra:
        unmapped["message"] = extra
    return _finish(mapped, unmapped)


def _plain(parsed: dict[str, Any], path: str) -> Mapped:
    metadata = parsed.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise Unmappable(f"{path}.metadata", "must be an object")
    role = _ROLE_NAMES[parsed["role"]]
    mapped = Mapped(
        id=_id(parsed.get("id"), f"{path}.id"),
        role=role,
        content=_blocks(parsed.get("content"), f"{path}.content"),
        metadata=dict(metadata or {}),
        created_at=parsed.get("created_at"),
    )
    unmapped = _rest(parsed, {"id", "role", "content", "metadata", "created_at"})
    if parsed["role"] != role:
        unmapped["role"] = parsed["role"]
    return _finish(mapped, unmapped)


# --- LangChain / LangGraph -----------------------------------------------------------------

_LANGCHAIN_CONSUMED = frozenset({"type", "content", "id", "tool_calls", "tool_call_id"})


def langchain_message(data: dict[str, Any], path: str, *, nested: bool = False) -> Mapped:
    """A LangChain message dict: `{type, content, id, tool_calls, tool_call_id, name, …}`
    (`nested`: it came as zeitlich's `{type, data}`, so paths name `data`)."""
    inner = f"{path}.data" if nested else path
    kind = data.get("type")
    role = _ROLE_NAMES.get(data.get("role")) if kind == "chat" else _ROLE_NAMES.get(kind)
    if role is None:
        raise Unmappable(f"{path}.type", "must be human, ai, system, tool or chat")
    content = _blocks(data.get("content", ""), f"{inner}.content")
    metadata: dict[str, Any] = {}
    consumed = set(_LANGCHAIN_CONSUMED) | ({"role"} if kind == "chat" else set())
    if isinstance(data.get("name"), str):
        metadata["tool_name" if role == "tool" else "name"] = data["name"]
        consumed.add("name")
    if role == "assistant" and data.get("tool_calls"):
        content = _as_list(content) + _tool_uses(content, data["tool_calls"], f"{inner}.tool_calls")
    if role == "tool":
        call_id = data.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise Unmappable(f"{inner}.tool_call_id", "a tool message needs its tool_call_id")
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id, "content": content}
        if data.get("status") == "error":
            result["is_error"] = True
            consumed.add("status")
        content = [result]
    elif "tool_call_id" in data and data["tool_call_id"] is not None:
        consumed.discard("tool_call_id")
    mapped = Mapped(id=_id(data.get("id"), f"{inner}.id"), role=role, content=content)
    mapped.metadata = metadata
    unmapped = _rest(data, consumed)
    if unmapped.get("example") is False:  # LangChain's default, not information
        del unmapped["example"]
    return _finish(mapped, unmapped)


def _tool_uses(content: Any, calls: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise Unmappable(path, "must be a list")
    present = {b.get("id") for b in _as_list(content) if b.get("type") == "tool_use"}
    uses = []
    for index, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise Unmappable(f"{path}[{index}]", "a tool call needs a name")
        call_id = call.get("id")
        if call_id in present:
            continue  # already in the content (Anthropic blocks through LangChain)
        args = call.get("args", {})
        uses.append({"type": "tool_use", "id": call_id, "name": call["name"], "input": args})
    return uses


# --- OpenAI Conversations ----------------------------------------------------------------


def openai_item(item: Any, path: str) -> Mapped:
    """One item of an OpenAI Conversations items page."""
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        raise Unmappable(path, "an item must be an object with a 'type'")
    kind = item["type"]
    item_id = _id(item.get("id"), f"{path}.id")
    if kind == "message":
        return _openai_message(item, item_id, path)
    if kind == "function_call":
        if not isinstance(item.get("name"), str) or not isinstance(item.get("call_id"), str):
            raise Unmappable(path, "a function_call needs name and call_id")
        unmapped = _rest(item, {"type", "id", "name", "call_id", "arguments"})
        try:
            arguments = json.loads(item.get("arguments") or "{}")
        except (TypeError, ValueError):
            arguments, unmapped["arguments"] = {}, item.get("arguments")
        use = {"type": "tool_use", "id": item["call_id"], "name": item["name"], "input": arguments}
        return _finish(Mapped(id=item_id, role="assistant", content=[use]), unmapped)
    if kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise Unmappable(f"{path}.call_id", "a function_call_output needs its call_id")
        output = item.get("output", "")
        result = {
            "type": "tool_result",
            "tool_use_id": item["call_id"],
            "content": output if isinstance(output, str) else _openai_parts(output, path)[0],
        }
        unmapped = _rest(item, {"type", "id", "call_id", "output"})
        return _finish(Mapped(id=item_id, role="tool", content=[result]), unmapped)
    if kind == "reasoning":
        texts = [
            part.get("text")
            for part in [*(item.get("summary") or []), *(item.get("content") or [])]
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        content = [{"type": "thinking", "thinking": "\n\n".join(texts)}]
        unmapped = _rest(item, {"type", "id", "summary", "content"})
        return _finish(Mapped(id=item_id, role="assistant", content=content), unmapped)
    # Calls of built-in tools and anything newer: kept whole.
    return _finish(Mapped(id=item_id, role="assistant", content=[]), _rest(item, {"id"}))


def _openai_message(item: dict[str, Any], item_id: str | None, path: str) -> Mapped:
    role = _ROLE_NAMES.get(item.get("role"))
    if role is None or role == "tool":
        raise Unmappable(f"{path}.role", "must be user, assistant, system or developer")
    content = item.get("content", [])
    if isinstance(content, str):
        blocks, leftovers = content, []
    else:
        blocks, leftovers = _openai_parts(content, f"{path}.content")
    unmapped = _rest(item, {"type", "id", "role", "content"})
    if item["role"] != role:
        unmapped["role"] = item["role"]
    if leftovers:
        unmapped["content"] = leftovers
    return _finish(Mapped(id=item_id, role=role, content=blocks), unmapped)


def _openai_parts(parts: Any, path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Text parts → text blocks; the rest (images, files, annotations) kept verbatim with the
    index of the part they belong to."""
    if not isinstance(parts, list):
        raise Unmappable(path, "must be a list of content parts")
    blocks, leftovers = [], []
    for index, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise Unmappable(f"{path}[{index}]", "a content part must be an object with a 'type'")
        kind = part["type"]
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            blocks.append({"type": "text", "text": part["text"]})
            rest = _rest(part, {"type", "text"})  # the role already says input or output
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            blocks.append({"type": "text", "text": part["refusal"]})
            rest = _rest(part, {"refusal"})  # keeps "type": "refusal"
        else:
            leftovers.append({"index": index, **part})
            continue
        if rest:
            leftovers.append({"index": index, **rest})
    return blocks, leftovers


def assign_seqs(carried: list[int | None], *, after: int) -> list[int]:
    """Seqs for messages in list order: a seq a message carries (one Threadline gave it) is
    kept while it keeps the order; every other message gets the next seq after both `after`
    (the thread's last_seq) and the highest seq carried — so no seq is ever given to a
    second message, and a reader paging with after_seq sees every new one."""
    high = max([after, *(s for s in carried if s is not None)])
    seqs, previous = [], 0
    for seq in carried:
        if seq is None or seq <= previous:
            high += 1
            seq = high
        seqs.append(seq)
        previous = seq
    return seqs
