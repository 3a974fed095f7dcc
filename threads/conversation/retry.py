"""When to retry a provider call: pure functions, testable step by step without waiting.

The waits are 5 s, 10 s, 30 s, 60 s, 5 m, 10 m, 15 m, 30 m, then 30 m repeated, for as long
as the waits so far plus the next one stay within the budget (8 h by default: 21 retries).
Each wait gets ±10 % jitter so workers that failed together do not retry in lockstep; the
budget is checked on the nominal waits, so the number of retries never depends on luck.

The callers (compaction and warming tasks) turn a wait into a Celery retry countdown: no
worker ever sleeps.
"""

from __future__ import annotations

import random

STEPS_S: tuple[int, ...] = (5, 10, 30, 60, 300, 600, 900, 1800)
REPEAT_S = 1800
BUDGET_S = 8 * 3600
JITTER = 0.10


def nominal_delay(attempt: int, *, budget_s: float = BUDGET_S) -> int | None:
    """The wait before retry number `attempt` (1-based), or None when that retry would
    take the total waiting past `budget_s` (give up)."""
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    waited = 0
    for n in range(1, attempt + 1):
        delay = STEPS_S[n - 1] if n <= len(STEPS_S) else REPEAT_S
        if waited + delay > budget_s:
            return None
        waited += delay
    return delay


def schedule(*, budget_s: float = BUDGET_S) -> list[int]:
    """Every nominal wait, in order (21 of them for the default 8 h budget)."""
    waits: list[int] = []
    while (delay := nominal_delay(len(waits) + 1, budget_s=budget_s)) is not None:
        waits.append(delay)
    return waits


def jittered(delay: float, *, rng: random.Random | None = None) -> float:
    """`delay` ± 10 %, rounded to milliseconds."""
    factor = 1 + (rng or random).uniform(-JITTER, JITTER)
    return round(delay * factor, 3)


def retry_delay(
    attempt: int, *, budget_s: float = BUDGET_S, rng: random.Random | None = None
) -> float | None:
    """The jittered wait before retry `attempt`, or None to give up."""
    delay = nominal_delay(attempt, budget_s=budget_s)
    return None if delay is None else jittered(delay, rng=rng)
