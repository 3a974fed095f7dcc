"""What a compaction sends and where it cuts: the summary prompt built from a history, the
cut that never separates an assistant tool_use from the tool_result answering it, and the
messages a compaction never summarizes.

Never summarized (they stay, in their order, the leading ones before the summary, the
others right after it): the leading system messages (the system prompt: every system message
before the first user, assistant or tool message, except a previous compaction's summary)
and the messages pinned in their metadata (`"metadata": {"pinned": true}`), together with
the other half of any tool call or result among them. A previous summary is summarized
again: its lines go into the prompt as `summary: …`, so the new summary folds it in.
"""

from __future__ import annotations

import json
from typing import Any

from threads.models import Role

PROMPT_HEADER = "Please summarize the following conversation:\n\n"
FOLD_HEADER = (
    "Please summarize the following conversation. The lines marked `summary:` are the "
    "summary of its earlier part: fold them into your summary, do not quote them:\n\n"
)
SUMMARY_PREFIX = "The following is a summary of the previous conversation:\n\n"
PINNED_KEY = "pinned"
TOOL_RESULT_PREVIEW_CHARS = 200
TOOL_INPUT_PREVIEW_CHARS = 200


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
    """One message as the prompt shows it: text as is, a tool call as `[tool: name <its
    input as JSON, at most 200 characters>]`, a tool result as `[tool result: <its first
    200 characters>]`."""
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
            parts.append(f"[tool: {block.get('name', '?')}{_input_preview(block.get('input'))}]")
        elif kind == "tool_result":
            preview = _flatten(block.get("content", ""))[:TOOL_RESULT_PREVIEW_CHARS]
            parts.append(f"[tool result: {preview}]")
    return " ".join(part for part in parts if part)


def _input_preview(value: Any) -> str:
    if value in (None, {}, ""):
        return ""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if len(text) > TOOL_INPUT_PREVIEW_CHARS:
        text = text[: TOOL_INPUT_PREVIEW_CHARS - 1] + "…"
    return " " + text


def is_summary(message: dict[str, Any]) -> bool:
    """A previous compaction's summary message."""
    metadata = message.get("metadata")
    return (
        message["role"] == Role.SYSTEM and isinstance(metadata, dict) and "compaction" in metadata
    )


def is_pinned(message: dict[str, Any]) -> bool:
    metadata = message.get("metadata")
    return isinstance(metadata, dict) and metadata.get(PINNED_KEY) is True


def build_prompt(messages: list[dict[str, Any]]) -> str:
    """The summary request: the header, then one `role: text` line per message; a previous
    summary as one `summary: <line>` per line of it (and the header asking to fold it)."""
    lines: list[str] = []
    folds = False
    for m in messages:
        if is_summary(m):
            folds = True
            text = message_text(m["content"]).removeprefix(SUMMARY_PREFIX)
            lines += [f"summary: {line.strip()}" for line in text.splitlines() if line.strip()]
        else:
            lines.append(f"{m['role']}: {message_text(m['content'])}")
    return (FOLD_HEADER if folds else PROMPT_HEADER) + "\n".join(lines)


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


def _tool_pairs(messages: list[dict[str, Any]]) -> tuple[list[tuple[int, int]], list[int]]:
    """(use, answer) index pairs of tool calls and their results, and the indexes of the
    assistant messages with a call that nothing answers (a turn paused for approval)."""
    used_at: dict[str, int] = {}
    for index, message in enumerate(messages):
        if message["role"] == Role.ASSISTANT:
            for tool_id in _tool_uses(message["content"]):
                used_at.setdefault(tool_id, index)
    pairs = [
        (used_at[tool_id], index)
        for index, message in enumerate(messages)
        for tool_id in _tool_results(message)
        if tool_id in used_at and used_at[tool_id] < index
    ]
    answered_ids = {tool_id for message in messages for tool_id in _tool_results(message)}
    unanswered = sorted({at for tool_id, at in used_at.items() if tool_id not in answered_ids})
    return pairs, unanswered


def choose_cut(messages: list[dict[str, Any]], keep_last: int) -> int:
    """How many leading messages to summarize (0: none): all but the last `keep_last`,
    moved earlier while the cut would separate an assistant `tool_use` from the
    `tool_result` that answers it, or leave a tool result first in the kept part; never
    past an assistant call that nothing answers yet (its result will come after the cut)."""
    cut = max(len(messages) - keep_last, 0)
    pairs, unanswered = _tool_pairs(messages)
    if unanswered:
        cut = min(cut, unanswered[0])
    # The cut must not fall in (use, answer].
    moved = True
    while moved and cut > 0:
        moved = False
        for use, answer in pairs:
            if use < cut <= answer:
                cut, moved = use, True
        if cut > 0 and _is_tool_result(messages[cut]):
            cut, moved = cut - 1, True
    return cut


def protected(messages: list[dict[str, Any]], cut: int) -> tuple[list[int], list[int]]:
    """Of the first `cut` messages, the indexes a compaction keeps: (the leading system
    messages, the pinned ones and their tool partners), each in order."""
    leading: list[int] = []
    for index, message in enumerate(messages[:cut]):
        if message["role"] != Role.SYSTEM:
            break
        if not is_summary(message):
            leading.append(index)
    keep = {i for i in range(cut) if is_pinned(messages[i])}
    pairs, _ = _tool_pairs(messages[:cut])
    grown = True
    while grown:  # a pinned call keeps its result and the other way round
        grown = False
        for use, answer in pairs:
            if (use in keep) != (answer in keep):
                keep |= {use, answer}
                grown = True
    return leading, sorted(keep - set(leading))
