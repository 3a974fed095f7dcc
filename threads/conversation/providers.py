"""The LLM provider: one module for every call Threadline makes to a model.

Two providers, chosen by `LLM_PROVIDER`:

- `local` (the embedded default): an offline, deterministic extractive summarizer, and a warm
  that sends nothing and reports zero usage — so compaction works end to end with no network;
- `anthropic`: the official SDK against the Messages API (`ANTHROPIC_API_KEY`,
  `ANTHROPIC_BASE_URL`, `LLM_MODEL`).

Callers never see SDK exceptions: every failure is a ProviderError that says whether it is
worth retrying (429, 5xx, 529 overloaded, connection errors and timeouts) or not (anything
else: a bad request, a bad key). The SDK's own retries are off (`max_retries=0`): retries
are Celery retries on the schedule in threads/retry.py, so no worker ever sleeps.

Nothing here runs inside a database transaction (DESIGN.md invariant 4): callers read what
they need, call the provider, then write in a short transaction of their own.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from django.conf import settings

from common.errors import DependencyUnavailable

SUMMARY_SYSTEM_PROMPT = (
    "You summarize conversations between a user and an AI agent so that the agent can "
    "continue the work from the summary alone. Keep every fact, decision, open question, "
    "file name, identifier and result a later turn may need; drop pleasantries."
)
WARM_PROMPT = "reply with just a ."
SUMMARY_MAX_TOKENS = 2000
SUMMARY_TIMEOUT_S = 120.0
WARM_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Usage:
    """Token usage, named as turns/settle reports it (the Messages API's
    cache_read_input_tokens / cache_creation_input_tokens → cache_read / cache_creation)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage = field(default_factory=Usage)


class ProviderError(DependencyUnavailable):
    """The provider failed. `retryable` says whether the same call may succeed later;
    `code` is a short label for events and errors (`overloaded_error`, `http_400`, …)."""

    code = "provider_unavailable"
    message = "The LLM provider failed."

    def __init__(
        self, message: str, *, retryable: bool, reason: str, status: int | None = None
    ) -> None:
        super().__init__(message, reason=reason, status=status, retryable=retryable)
        self.retryable = retryable
        self.reason = reason
        self.provider_status = status  # (`status` is this error's own HTTP status, 503)


class Provider(Protocol):
    name: str

    def summarize(self, *, prompt: str, max_tokens: int = SUMMARY_MAX_TOKENS) -> Completion:
        """The model's answer to the compaction prompt (threads/compaction.py builds it)."""

    def warm(self, *, history: list[dict[str, Any]], reasoning_effort: str) -> Usage:
        """Send `history` (role/content dicts in order) as a real turn would, plus
        WARM_PROMPT with max_tokens 1; nothing is kept but the usage."""


def get_provider() -> Provider:
    if settings.LLM_PROVIDER == "anthropic":
        return AnthropicProvider(
            api_key=settings.ANTHROPIC_API_KEY,
            base_url=settings.ANTHROPIC_BASE_URL,
            model=settings.LLM_MODEL,
        )
    return LocalProvider()


# --- local -----------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_'.-]*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers him his how i if in into is it its
    just me more most my no nor not now of off on once only or other our out over own same
    she should so some such than that the their them then there these they this those
    through to too under until up very was we were what when where which while who whom why
    will with would you your yours""".split()
)


class LocalProvider:
    """Offline and deterministic: the same prompt always gives the same summary.

    The summary is extractive (after Luhn): the conversation lines of the prompt are split
    into sentences, each scored by how often its content words occur across the whole
    conversation (normalized by its length, so one long line does not win by size); the best
    ones are kept in their original order, each with its speaker, within a character budget
    of about `max_tokens`. Tool calls and results are kept only when nothing else was said.
    """

    name = "local"
    max_sentences = 24
    max_sentence_chars = 300

    def summarize(self, *, prompt: str, max_tokens: int = SUMMARY_MAX_TOKENS) -> Completion:
        body = prompt.split("\n\n", 1)[1] if "\n\n" in prompt else prompt
        candidates: list[tuple[int, str, str]] = []  # (position, role, sentence)
        role = "?"
        for line in body.splitlines():
            head, sep, rest = line.partition(": ")
            if sep and head in {"user", "assistant", "system", "tool"}:
                role, line = head, rest
            for sentence in _SENTENCE_END.split(line.strip()):
                sentence = sentence.strip()
                if sentence:
                    candidates.append((len(candidates), role, sentence))
        if not candidates:
            return Completion(text="", usage=Usage())

        frequency = Counter(
            word
            for _, _, sentence in candidates
            for word in (w.lower() for w in _WORD.findall(sentence))
            if word not in _STOPWORDS and len(word) > 2
        )

        def score(sentence: str) -> float:
            words = [w.lower() for w in _WORD.findall(sentence)]
            content = [frequency[w] for w in words if w in frequency]
            return sum(content) / math.sqrt(len(words)) if words else 0.0

        # Tool calls and results say little on their own: keep them only when nothing else
        # was said.
        spoken = [c for c in candidates if not c[2].startswith("[tool")] or candidates
        ranked = sorted(spoken, key=lambda c: (-score(c[2]), c[0]))
        budget = max_tokens * 4
        chosen, used = [], 0
        for position, speaker, sentence in ranked[: self.max_sentences]:
            sentence = sentence[: self.max_sentence_chars]
            if used + len(sentence) > budget:
                break
            chosen.append((position, speaker, sentence))
            used += len(sentence) + len(speaker) + 4
        chosen.sort()
        lines = [f"- {speaker}: {sentence}" for _, speaker, sentence in chosen]
        text = f"Earlier in this conversation ({len(candidates)} statements):\n" + "\n".join(lines)
        return Completion(
            text=text,
            usage=Usage(input_tokens=math.ceil(len(prompt) / 4), output_tokens=len(text) // 4),
        )

    def warm(self, *, history: list[dict[str, Any]], reasoning_effort: str) -> Usage:
        return Usage()


# --- anthropic -------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _client(api_key: str, base_url: str | None):
    import anthropic

    # Our retries are Celery retries (threads/retry.py): the SDK must not retry on its own.
    return anthropic.Anthropic(api_key=api_key or None, base_url=base_url, max_retries=0)


def classify(exc: Exception) -> ProviderError:
    """An SDK exception → ProviderError with `retryable` set (429, 5xx, 529, connection)."""
    import anthropic

    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        error_type = error.get("type")
        retryable = status == 429 or status >= 500
        return ProviderError(
            f"The provider answered {status}: {error.get('message') or exc.message}",
            retryable=retryable,
            reason=error_type or f"http_{status}",
            status=status,
        )
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError("The provider timed out.", retryable=True, reason="timeout")
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(
            f"Could not reach the provider: {exc}", retryable=True, reason="connection_error"
        )
    return ProviderError(
        f"The provider call failed: {exc}", retryable=False, reason=type(exc).__name__
    )


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [dict(block) for block in content if isinstance(block, dict)]


def to_messages_api(
    history: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Threadline's history → the Messages API's (system blocks, messages).

    System messages (the compaction summary among them) become system blocks; `tool`
    messages are sent as user turns (they carry tool_result blocks); consecutive messages of
    one role are merged into one turn, as the API would merge them anyway. Message order is
    kept, so the prefix is byte-for-byte the one a real turn sends and the cache matches."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in history:
        blocks = _text_blocks(message["content"])
        if not blocks:
            continue
        role = message["role"]
        if role == "system":
            system.extend(
                {"type": "text", "text": b.get("text", "")} for b in blocks if b.get("text")
            )
            continue
        role = "assistant" if role == "assistant" else "user"
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    return system, messages


def mark_cache_breakpoint(
    system: list[dict[str, Any]], messages: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Put `cache_control` on the last block of the stable prefix (the last block of the
    history, else of the system prompt); returns the marked block."""
    target = None
    if messages:
        target = messages[-1]["content"][-1]
    elif system:
        target = system[-1]
    if target is not None:
        target["cache_control"] = {"type": "ephemeral"}
    return target


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None, model: str) -> None:
        self.api_key, self.base_url, self.model = api_key, base_url, model

    def _create(self, **params: Any):
        import anthropic

        try:
            return _client(self.api_key, self.base_url).messages.create(model=self.model, **params)
        except anthropic.AnthropicError as exc:
            raise classify(exc) from exc

    @staticmethod
    def _usage(response) -> Usage:
        usage = response.usage
        return Usage(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_read_tokens=getattr(usage, "cache_read_input_tokens", None) or 0,
            cache_creation_tokens=getattr(usage, "cache_creation_input_tokens", None) or 0,
        )

    def summarize(self, *, prompt: str, max_tokens: int = SUMMARY_MAX_TOKENS) -> Completion:
        response = self._create(
            max_tokens=max_tokens,
            system=SUMMARY_SYSTEM_PROMPT,
            messages=[{"role": "user", "content": prompt}],
            timeout=SUMMARY_TIMEOUT_S,
        )
        text = "".join(
            getattr(block, "text", "") for block in response.content if block.type == "text"
        )
        return Completion(text=text.strip(), usage=self._usage(response))

    def warm(self, *, history: list[dict[str, Any]], reasoning_effort: str) -> Usage:
        system, messages = to_messages_api(history)
        mark_cache_breakpoint(system, messages)
        final = {"type": "text", "text": WARM_PROMPT}
        if messages and messages[-1]["role"] == "user":
            messages[-1]["content"].append(final)
        else:
            messages.append({"role": "user", "content": [final]})
        params: dict[str, Any] = {
            "max_tokens": 1,
            "messages": messages,
            "output_config": {"effort": reasoning_effort},
            "timeout": WARM_TIMEOUT_S,
        }
        if system:
            params["system"] = system
        return self._usage(self._create(**params))
