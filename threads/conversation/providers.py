"""The LLM provider: one module for every call Threadline makes to a model.

Two providers, chosen by `LLM_PROVIDER`:

- `local` (the embedded default): an offline, deterministic extractive summarizer, and a warm
  that sends nothing and reports zero usage — so compaction works end to end with no network;
- `anthropic`: the official SDK against the Messages API (`ANTHROPIC_API_KEY`,
  `ANTHROPIC_BASE_URL`, `LLM_MODEL`).

Callers never see SDK exceptions: every failure is a ProviderError that says whether it is
worth retrying (429, 5xx, 529 overloaded, connection errors and timeouts) or not (anything
else: a bad key, …); a request the provider rejects as invalid (400, 413, 422) is a
ProviderRejected, answered 422 with the provider's message (the request, not an outage).
The requests themselves are built by messages_api.py. The SDK's own retries are off
(`max_retries=0`): retries are Celery retries on the schedule in threads/retry.py, so no
worker ever sleeps.

Nothing here runs inside a database transaction (DESIGN.md invariant 4): callers read what
they need, call the provider, then write in a short transaction of their own.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# Imported with this module, at process start (threads.apps imports it): importing the SDK
# takes seconds, which the first warm or compaction of a process used to pay.
import anthropic
from django.conf import settings

from common.errors import DependencyUnavailable
from threads.conversation import local_summary
from threads.conversation.errors import NothingToWarm
from threads.conversation.messages_api import to_messages_api, warm_request

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


class ProviderRejected(ProviderError):
    """The provider refused the request itself (400 invalid_request_error, 413): retrying
    cannot help and the provider is not down, so the API answers 422 with its message."""

    status = 422
    code = "provider_rejected"
    message = "The LLM provider rejected the request."


# Client errors of the Messages API that are about the request, not about us or the provider.
REJECTED_STATUSES = frozenset({400, 413, 422})


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


class LocalProvider:
    """Offline and deterministic: the same prompt always gives the same summary
    (threads/conversation/local_summary.py says how it is made)."""

    name = "local"

    def summarize(self, *, prompt: str, max_tokens: int = SUMMARY_MAX_TOKENS) -> Completion:
        text = local_summary.summarize(prompt, max_chars=max_tokens * 4)
        if not text:
            return Completion(text="", usage=Usage())
        return Completion(
            text=text,
            usage=Usage(input_tokens=math.ceil(len(prompt) / 4), output_tokens=len(text) // 4),
        )

    def warm(self, *, history: list[dict[str, Any]], reasoning_effort: str) -> Usage:
        system, messages = to_messages_api(history)
        if not system and not messages:
            raise NothingToWarm  # as the anthropic provider would
        return Usage()


# --- anthropic -------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _client(api_key: str, base_url: str | None):
    # Our retries are Celery retries (threads/retry.py): the SDK must not retry on its own.
    return anthropic.Anthropic(api_key=api_key or None, base_url=base_url, max_retries=0)


def prepare() -> None:
    """Build the configured provider's client now (at process start: threads.apps), so the
    first warm or compaction of a process does not pay for it."""
    if settings.LLM_PROVIDER == "anthropic":
        client = _client(settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL)
        client.messages.create  # noqa: B018 (the SDK imports a resource on first access)


def classify(exc: Exception) -> ProviderError:
    """An SDK exception → ProviderError with `retryable` set (429, 5xx, 529, connection);
    a rejected request (400, 413, 422) → ProviderRejected carrying the provider's message."""
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        error_type = error.get("type")
        retryable = status == 429 or status >= 500
        kind = ProviderRejected if status in REJECTED_STATUSES else ProviderError
        return kind(
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


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None, model: str) -> None:
        self.api_key, self.base_url, self.model = api_key, base_url, model

    def _create(self, **params: Any):
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
        params = warm_request(
            history, model=self.model, reasoning_effort=reasoning_effort, prompt=WARM_PROMPT
        )
        if params is None:
            raise NothingToWarm
        return self._usage(self._create(timeout=WARM_TIMEOUT_S, **params))
