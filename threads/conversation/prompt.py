"""What a compaction sends and where it cuts: the summary prompt built from a history, and
the cut that never separates an assistant tool_use from the tool_result answering it."""

from __future__ import annotations

from typing import Any

from threads.models import Role

PROMPT_HEADER = "Please summarize the following conversation:\n\n"
TOOL_RESULT_PREVIEW_CHARS = 200


def _flatten(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            block.get("text", "")
            for block in content
            if isinstance(block, dict) and isinstance(block.get("text"), str)
        )
    return ""


def message_text(content: Any) -> str:
    """One message as the prompt shows it: text as is, a tool call as `[tool: name]`, a
    tool result as `[tool result: <its first 200 characters>]`."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind in ("tool_use", "server_tool_use"):
            parts.append(f"[tool: {block.get('name', '?')}]")
        elif kind == "tool_result":
            preview = _flatten(block.get("content", ""))[:TOOL_RESULT_PREVIEW_CHARS]
            parts.append(f"[tool result: {preview}]")
    return " ".join(part for part in parts if part)


def build_prompt(messages: list[dict[str, Any]]) -> str:
    """The summary request: the header, then one `role: text` line per message."""
    lines = [f"{m['role']}: {message_text(m['content'])}" for m in messages]
    return PROMPT_HEADER + "\n".join(lines)


def _tool_uses(content: Any) -> list[str]:
    if not isinstance(content, list):
        return []
    return [
        b["id"]
        for b in content
        if isinstance(b, dict) and b.get("type") == "tool_use" and isinstance(b.get("id"), str)
    ]


def _tool_results(message: dict[str, Any]) -> list[str]:
    content = message["content"]
    ids = []
    if isinstance(content, list):
        ids = [
            b["tool_use_id"]
            for b in content
            if isinstance(b, dict)
            and b.get("type") == "tool_result"
            and isinstance(b.get("tool_use_id"), str)
        ]
    return ids


def _is_tool_result(message: dict[str, Any]) -> bool:
    return message["role"] == Role.TOOL or bool(_tool_results(message))


def choose_cut(messages: list[dict[str, Any]], keep_last: int) -> int:
    """How many leading messages to summarize (0: none): all but the last `keep_last`,
    moved earlier while the cut would separate an assistant `tool_use` from the
    `tool_result` that answers it, or leave a tool result first in the kept part."""
    cut = max(len(messages) - keep_last, 0)
    used_at: dict[str, int] = {}
    for index, message in enumerate(messages):
        if message["role"] == Role.ASSISTANT:
            for tool_id in _tool_uses(message["content"]):
                used_at.setdefault(tool_id, index)
    # (use, answer) index pairs: the cut must not fall in (use, answer].
    pairs = [
        (used_at[tool_id], index)
        for index, message in enumerate(messages)
        for tool_id in _tool_results(message)
        if tool_id in used_at and used_at[tool_id] < index
    ]
    moved = True
    while moved and cut > 0:
        moved = False
        for use, answer in pairs:
            if use < cut <= answer:
                cut, moved = use, True
        if cut > 0 and _is_tool_result(messages[cut]):
            cut, moved = cut - 1, True
    return cut
