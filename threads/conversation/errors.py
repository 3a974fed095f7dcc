"""The domain errors of compaction and warming (the API's exception handler maps them)."""

from __future__ import annotations

from common.errors import DomainError


class TooShort(DomainError):
    code = "too_short"
    message = "The conversation is too short to compact."


class NoHistory(DomainError):
    code = "no_history"
    message = "The thread has no history to warm."


class CompactionInProgress(DomainError):
    code = "compaction_in_progress"
    message = "A compaction of this thread is already queued or running."


class CompactionNotSucceeded(DomainError):
    code = "compaction_not_succeeded"
    message = "Only a succeeded compaction has archived originals."


class EmptySummary(DomainError):
    code = "empty_summary"
    message = "The model produced an empty summary."


class HistoryChanged(DomainError):
    code = "history_changed"
    message = "The history kept changing during the compaction; nothing was changed."


class NothingToWarm(DomainError):
    code = "nothing_to_warm"
    message = (
        "The history has no prefix the provider would accept as a warm: it holds nothing "
        "but an assistant tool call with no tool_result yet."
    )


class NothingToCompact(DomainError):
    code = "nothing_to_compact"
    message = (
        "Nothing new to summarize: the older messages are the system prompt, pinned "
        "messages or the previous summary."
    )


class SummaryNotSmaller(DomainError):
    code = "summary_not_smaller"
    message = (
        "The summary is not smaller than the messages it would replace; the history was "
        "left as it was."
    )
