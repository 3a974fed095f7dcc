"""Threadline's history → a request the Messages API accepts, for every history the API can
store (tests/llm_server.py enforces the same rules as the real API, so a regression fails).

The rules, each one a 400 from the real API when broken:

- at most 4 `cache_control` breakpoints: markers stored on message blocks (agent runtimes
  mark the last block of each turn) are stripped; the system prompt keeps its own (neither
  dropped nor duplicated, at most 3) and the warm adds one at the end of the prefix;
- every assistant `tool_use` is answered by `tool_result` blocks in the very next user turn:
  the prefix is cut before the first assistant turn whose calls are not all answered (a turn
  paused for approval), and a `tool_result` with no call before it is sent as text;
- in a user turn the `tool_result` blocks come first; no empty (or blank) text blocks; roles
  alternate (consecutive turns of one role are merged);
- system messages: the leading ones (before the first user or assistant message — the
  system prompt, a compaction summary) become the `system` blocks; one further down (a note
  a runtime inserted mid-conversation) stays where it is, as a user-turn text block
  `[system] …`: moving it into `system` would change the first bytes of every later request
  and throw away the whole cached prefix each time a note is added;
- `output_config.effort` only for models that accept it, with a level they accept
  (EFFORT_LEVELS, overridable with the LLM_EFFORT_LEVELS setting).
"""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings

EPHEMERAL = {"type": "ephemeral"}
MAX_BREAKPOINTS = 4
MAX_SYSTEM_BREAKPOINTS = MAX_BREAKPOINTS - 1  # one is the prefix's
MID_SYSTEM_PREFIX = "[system] "

# Which models accept `output_config.effort`, and with which levels, by model family (the
# longest matching prefix of the model id wins; a model matching none is sent no effort).
# From the Messages API documentation ("Effort"): effort on Mythos Preview, Opus 4.7, Opus
# 4.6, Sonnet 4.6 and Opus 4.5; `max` not on Opus 4.5; `xhigh` only on Opus 4.7.
EFFORT_ORDER: tuple[str, ...] = ("low", "medium", "high", "xhigh", "max")
EFFORT_LEVELS: dict[str, tuple[str, ...]] = {
    "claude-mythos": ("low", "medium", "high", "max"),
    "claude-opus-4-7": ("low", "medium", "high", "xhigh", "max"),
    "claude-opus-4-6": ("low", "medium", "high", "max"),
    "claude-sonnet-4-6": ("low", "medium", "high", "max"),
    "claude-opus-4-5": ("low", "medium", "high"),
}


def effort_levels(model: str) -> tuple[str, ...]:
    """The effort levels `model` accepts (empty: it takes no effort parameter)."""
    table = {**EFFORT_LEVELS, **getattr(settings, "LLM_EFFORT_LEVELS", {})}
    family = max((prefix for prefix in table if model.startswith(prefix)), key=len, default=None)
    return tuple(table[family]) if family is not None else ()


def effort_for(model: str, requested: str) -> str | None:
    """The level to send: `requested` when the model accepts it, else the highest accepted
    level below it (xhigh on Opus 4.6 → high); None when the model takes no effort or only
    levels above the requested one."""
    accepted = effort_levels(model)
    if requested in accepted:
        return requested
    rank = EFFORT_ORDER.index(requested) if requested in EFFORT_ORDER else len(EFFORT_ORDER)
    below = [level for level in EFFORT_ORDER[:rank] if level in accepted]
    return below[-1] if below else None


# --- blocks ------------------------------------------------------------------------------


def _is_blank_text(block: dict[str, Any]) -> bool:
    return block.get("type") == "text" and not str(block.get("text") or "").strip()


def _without_markers(block: dict[str, Any]) -> dict[str, Any]:
    """A copy of `block` with no cache_control, also in a tool_result's nested content."""
    block = {k: v for k, v in block.items() if k != "cache_control"}
    if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
        nested = [
            _without_markers(b)
            for b in block["content"]
            if isinstance(b, dict) and not _is_blank_text(b)
        ]
        block["content"] = nested
    return block


def _blocks(content: Any) -> list[dict[str, Any]]:
    """The message's content as non-empty blocks with no cache_control."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    return [
        _without_markers(b)
        for b in content or []
        if isinstance(b, dict) and b.get("type") and not _is_blank_text(b)
    ]


def _system_blocks(content: Any) -> list[dict[str, Any]]:
    """A leading system message's blocks: text only (the `system` parameter takes text
    blocks), each keeping its stored cache_control."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    out = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "text" and not _is_blank_text(block):
            kept = {"type": "text", "text": block["text"]}
            if isinstance(block.get("cache_control"), dict):
                kept["cache_control"] = copy.deepcopy(block["cache_control"])
            out.append(kept)
    return out


def _tool_use_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["id"] for b in blocks if b.get("type") == "tool_use" and isinstance(b.get("id"), str)]


def _as_text(block: dict[str, Any]) -> dict[str, Any]:
    """A tool_result that answers no call before it, as a text block."""
    content = block.get("content")
    if isinstance(content, list):
        content = " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return {"type": "text", "text": f"[tool result: {content or ''}]"}


# --- the request -------------------------------------------------------------------------


def to_messages_api(
    history: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Threadline's history → the Messages API's (system blocks, messages), following the
    rules of the module docstring; message order is kept, so the prefix is byte-for-byte
    the one a real turn sends and the cache matches. Does not add breakpoints."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    leading = True
    for message in history:
        role = message["role"]
        if role == "system" and leading:
            system.extend(_system_blocks(message["content"]))
            continue
        leading = False
        blocks = _blocks(message["content"])
        if role == "system":
            text = " ".join(b["text"] for b in blocks if b.get("type") == "text")
            blocks = [{"type": "text", "text": MID_SYSTEM_PREFIX + text}] if text else []
        if not blocks:
            continue
        role = "assistant" if role == "assistant" else "user"  # `tool` results are user turns
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return _system_limited(system), _answered_prefix(turns)


def _system_limited(system: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most MAX_SYSTEM_BREAKPOINTS stored markers on the system blocks (the last ones:
    they cover the longest prefixes)."""
    marked = [i for i, b in enumerate(system) if "cache_control" in b]
    for index in marked[: max(len(marked) - MAX_SYSTEM_BREAKPOINTS, 0)]:
        del system[index]["cache_control"]
    return system


def _answered_prefix(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The turns up to (not including) the first assistant turn whose tool calls are not
    all answered by the next user turn; in each user turn the tool_result blocks first,
    and a tool_result answering nothing in the turn before it sent as text."""
    calls: set[str] = set()  # the ids the previous assistant turn called
    for index, turn in enumerate(turns):
        if turn["role"] == "assistant":
            # (a tool_result belongs in a user turn: here it can only be sent as text)
            turn["content"] = [
                _as_text(b) if b.get("type") == "tool_result" else b for b in turn["content"]
            ]
            calls = set(_tool_use_ids(turn["content"]))
            if calls:
                following = turns[index + 1] if index + 1 < len(turns) else None
                answered = {
                    b.get("tool_use_id")
                    for b in (following or {}).get("content", [])
                    if b.get("type") == "tool_result"
                }
                if following is None or not calls <= answered:
                    return turns[:index]
            continue
        results, rest = [], []
        for block in turn["content"]:
            if block.get("type") == "tool_result":
                if block.get("tool_use_id") in calls:
                    results.append(block)
                else:
                    rest.append(_as_text(block))
            elif block.get("type") == "tool_use":  # a call belongs in an assistant turn
                rest.append({"type": "text", "text": f"[tool: {block.get('name', '?')}]"})
            else:
                rest.append(block)
        turn["content"] = results + rest
        calls = set()
    return turns


def mark_prefix_end(system: list[dict[str, Any]], messages: list[dict[str, Any]]) -> None:
    """Our breakpoints: the end of the history (its last block that can carry one) and the
    end of the system prompt (unless a stored marker is already there)."""
    if system and "cache_control" not in system[-1]:
        system[-1]["cache_control"] = dict(EPHEMERAL)
    if messages:
        for block in reversed(messages[-1]["content"]):
            if block.get("type") not in ("thinking", "redacted_thinking"):
                block["cache_control"] = dict(EPHEMERAL)
                break


def warm_request(
    history: list[dict[str, Any]], *, model: str, reasoning_effort: str, prompt: str
) -> dict[str, Any] | None:
    """The parameters of a warm (max_tokens 1): the cacheable prefix of `history` with our
    breakpoints, then `prompt` as the last user text. None when there is no prefix to warm
    (nothing but an unanswered tool call, say)."""
    system, messages = to_messages_api(history)
    if not system and not messages:
        return None
    mark_prefix_end(system, messages)
    final = {"type": "text", "text": prompt}
    if messages and messages[-1]["role"] == "user":
        messages[-1]["content"].append(final)
    else:
        messages.append({"role": "user", "content": [final]})
    params: dict[str, Any] = {"max_tokens": 1, "messages": messages}
    if system:
        params["system"] = system
    effort = effort_for(model, reasoning_effort)
    if effort is not None:
        params["output_config"] = {"effort": effort}
    return params
