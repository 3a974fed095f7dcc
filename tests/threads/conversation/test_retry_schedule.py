"""The provider retry schedule, step by step, without waiting."""

from __future__ import annotations

import random

import pytest

from threads.conversation.retry import BUDGET_S, jittered, nominal_delay, retry_delay, schedule

EXPECTED = [5, 10, 30, 60, 300, 600, 900, 1800] + [1800] * 13


def test_the_waits_follow_the_steps_then_repeat_thirty_minutes_for_eight_hours():
    assert schedule() == EXPECTED
    assert len(EXPECTED) == 21
    assert sum(EXPECTED) <= 8 * 3600 < sum(EXPECTED) + 1800


@pytest.mark.parametrize(("attempt", "expected"), list(enumerate(EXPECTED, start=1)))
def test_each_retry_waits_its_step(attempt, expected):
    assert nominal_delay(attempt) == expected


def test_the_retry_after_the_budget_is_refused():
    assert nominal_delay(22) is None
    assert nominal_delay(100) is None
    assert retry_delay(22) is None


def test_a_smaller_budget_stops_earlier():
    assert schedule(budget_s=240) == [5, 10, 30, 60]
    assert nominal_delay(5, budget_s=240) is None
    assert schedule(budget_s=4) == []


def test_attempts_start_at_one():
    with pytest.raises(ValueError):
        nominal_delay(0)


def test_jitter_stays_within_ten_percent_and_actually_spreads():
    rng = random.Random(7)
    samples = [jittered(60, rng=rng) for _ in range(500)]
    assert all(54 <= s <= 66 for s in samples)
    assert max(samples) - min(samples) > 6  # parallel workers do not retry in lockstep
    for attempt, nominal in enumerate(EXPECTED, start=1):
        delay = retry_delay(attempt, rng=rng)
        assert nominal * 0.9 <= delay <= nominal * 1.1


def test_the_total_jittered_wait_stays_near_eight_hours():
    rng = random.Random(1)
    total = sum(retry_delay(n, rng=rng) for n in range(1, 22))
    assert 0.9 * sum(EXPECTED) <= total <= 1.1 * sum(EXPECTED)
    assert BUDGET_S == 28_800
