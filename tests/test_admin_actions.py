"""apply_each, the one loop behind every admin action: each object gets its service call
whatever the others did, and one message says what was done, what already was, and why the
rest failed."""

from __future__ import annotations

import pytest
from django.contrib import messages

from common.admin import apply_each, tally_each
from common.errors import ThreadArchived, ThreadNotEmpty


class Recorder:
    """A stand-in for the ModelAdmin: keeps what message_user was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def message_user(self, request, message: str, level: int) -> None:
        self.sent.append((message, level))


def act(outcome: str) -> object:
    if outcome == "archived":
        raise ThreadArchived
    if outcome == "busy":
        raise ThreadNotEmpty
    return outcome != "unchanged"


def test_every_object_is_tried_and_the_outcomes_are_counted():
    tally = tally_each(["done", "archived", "unchanged", "done", "busy", "archived"], act)

    assert (tally.done, tally.unchanged) == (2, 1)
    assert tally.failures == {"thread_archived": 2, "thread_not_empty": 1}


def test_the_report_says_what_was_done_already_so_and_failed_and_warns():
    admin = Recorder()

    apply_each(
        admin,
        None,
        ["done", "unchanged", "done", "archived", "busy", "archived"],
        act,
        done="Closed",
        noun="thread",
        already="closed",
        note=lambda: "A note.",
    )

    assert admin.sent == [
        (
            "Closed 2 threads. 1 already closed. A note. "
            "3 failures (thread_archived: 2, thread_not_empty: 1).",
            messages.WARNING,
        )
    ]


def test_without_failures_the_report_is_a_success_and_unnamed_states_go_unsaid():
    admin = Recorder()

    apply_each(admin, None, ["done", "unchanged"], act, done="Cancelled", noun="queued message")

    assert admin.sent == [("Cancelled 1 queued message.", messages.SUCCESS)]


def test_an_error_that_is_not_a_domain_error_stops_the_action():
    def broken(obj: object) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        tally_each([1, 2], broken)
