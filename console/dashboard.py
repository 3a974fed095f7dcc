"""The dashboard's context: each figure with the admin list it links to, and the charts'
data (drawn by static/console/dashboard.js with the vendored Chart.js)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from common.admin import changelist_url
from console import figures
from console.tally import tallies_read
from handoffs.models import Handoff, HandoffOutcome
from sessions_app.models import Session
from threads import events
from threads.models import Compaction, Event, Lifecycle, Message, Thread, Tier

DAYS = 14


def _event_link(kind: str) -> str:
    return changelist_url(Event, kind=kind)


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _tiers() -> dict[str, Any]:
    rows = figures.threads_by_tier_lifecycle()
    grid = {(row["tier"], row["lifecycle"]): row for row in rows}
    table = [
        {
            "tier": tier,
            "cells": [
                {
                    "lifecycle": lifecycle,
                    "threads": grid.get((tier, lifecycle), {}).get("threads", 0),
                    "url": changelist_url(Thread, tier__exact=tier, lifecycle__exact=lifecycle),
                }
                for lifecycle in Lifecycle.values
            ],
            "total": sum(r["threads"] for r in rows if r["tier"] == tier),
            "url": changelist_url(Thread, tier__exact=tier),
        }
        for tier in Tier.values
    ]
    hot_rows = sum(r["messages"] or 0 for r in rows if r["tier"] == Tier.HOT)
    cold_threads = sum(r["threads"] for r in rows if r["tier"] == Tier.COLD)
    cold_bytes = sum(r["cold_bytes"] or 0 for r in rows if r["tier"] == Tier.COLD)
    estimate, exact = figures.message_rows_estimate()
    return {
        "table": table,
        "lifecycles": list(Lifecycle.values),
        "hot_rows": hot_rows,
        "message_table_rows": estimate,
        "message_table_exact": exact,
        "cold_threads": cold_threads,
        "cold_bytes": cold_bytes,
        "redis": figures.redis_usage(),
        "hot_url": changelist_url(Thread, tier__exact=Tier.HOT),
        "cold_url": changelist_url(Thread, tier__exact=Tier.COLD),
        "messages_url": changelist_url(Message),
    }


def _conversation(tallies) -> dict[str, Any]:
    since = timezone.now().date() - timedelta(days=DAYS - 1)
    days = [since + timedelta(days=i) for i in range(DAYS)]
    settled = tallies.by_day(events.SESSION_TURN_SETTLED, since)
    warms = tallies.by_day(events.WARM_COMPLETED, since)
    capped = tallies.by_day(events.WARMING_CAPPED, since)
    compacted = tallies.by_day(events.THREAD_COMPACTED, since)

    def prompt(row: dict[str, int] | None) -> int:
        row = row or {}
        return (
            row.get("input_tokens", 0)
            + row.get("cache_read_tokens", 0)
            + row.get("cache_creation_tokens", 0)
        )

    read_all = tallies.total(events.SESSION_TURN_SETTLED, "cache_read_tokens")
    prompt_all = sum(
        tallies.total(events.SESSION_TURN_SETTLED, name)
        for name in ("input_tokens", "cache_read_tokens", "cache_creation_tokens")
    )
    warm_tokens = sum(
        tallies.total(events.WARM_COMPLETED, name)
        for name in ("input_tokens", "cache_read_tokens", "cache_creation_tokens", "output_tokens")
    )
    return {
        "turns": tallies.total(events.SESSION_TURN_SETTLED),
        "cache_read_pct": _pct(read_all, prompt_all),
        "turns_url": _event_link(events.SESSION_TURN_SETTLED),
        "warms": tallies.total(events.WARM_COMPLETED),
        "warm_tokens": warm_tokens,
        "warms_url": _event_link(events.WARM_COMPLETED),
        "capped": tallies.total(events.WARMING_CAPPED),
        "capped_url": _event_link(events.WARMING_CAPPED),
        "compactions": tallies.total(events.THREAD_COMPACTED),
        "tokens_before": tallies.total(events.THREAD_COMPACTED, "tokens_before"),
        "tokens_after": tallies.total(events.THREAD_COMPACTED, "tokens_after"),
        "compactions_url": changelist_url(Compaction, status__exact="succeeded"),
        "compaction_failures": tallies.total(events.COMPACTION_FAILED),
        "compaction_failures_url": changelist_url(Compaction, status__exact="failed"),
        "flushes": tallies.total(events.THREAD_FLUSHED),
        "flushes_url": _event_link(events.THREAD_FLUSHED),
        "hydrates": tallies.total(events.THREAD_HYDRATED),
        "hydrates_url": _event_link(events.THREAD_HYDRATED),
        "provider_retries": tallies.total(events.PROVIDER_RETRY),
        "provider_retries_url": _event_link(events.PROVIDER_RETRY),
        "series": {
            "days": [day.isoformat() for day in days],
            "cache_read_pct": [
                _pct((settled.get(d) or {}).get("cache_read_tokens", 0), prompt(settled.get(d)))
                for d in days
            ],
            "warms": [(warms.get(d) or {}).get("count", 0) for d in days],
            "warm_tokens": [prompt(warms.get(d)) for d in days],
            "capped": [(capped.get(d) or {}).get("count", 0) for d in days],
            "tokens_before": [(compacted.get(d) or {}).get("tokens_before", 0) for d in days],
            "tokens_after": [(compacted.get(d) or {}).get("tokens_after", 0) for d in days],
        },
    }


def _sessions() -> dict[str, Any]:
    counts = figures.sessions_by_status()
    stuck = figures.stuck_sessions()

    def rows(sessions: list[Session]) -> list[dict[str, Any]]:
        return [
            {
                "session": s,
                # quote(): the admin reads "_24" in a path as "$"; our ids hold "_".
                "url": reverse("admin:sessions_app_session_change", args=[quote(s.pk)]),
                "thread_url": reverse("admin:threads_thread_change", args=[quote(s.thread_id)]),
            }
            for s in sessions
        ]

    return {
        "by_status": [
            {"status": status, "count": n, "url": changelist_url(Session, status__exact=status)}
            for status, n in counts.items()
        ],
        "locked": rows(stuck.locked),
        "hitl": rows(stuck.hitl),
        "failed": rows(stuck.failed),
    }


def _handoffs() -> list[dict[str, Any]]:
    counts = figures.handoffs_by_outcome()
    return [
        {
            "outcome": outcome,
            "count": counts.get(outcome, 0),
            "url": changelist_url(Handoff, outcome__exact=outcome),
        }
        for outcome in HandoffOutcome.values
    ]


def _celery() -> dict[str, Any]:
    schedules = [
        {
            **row,
            "url": reverse("admin:django_celery_beat_periodictask_change", args=[row["task"].pk]),
            "result_url": (
                reverse("admin:django_celery_results_taskresult_change", args=[row["result"]["id"]])
                if row["result"]
                else None
            ),
        }
        for row in figures.beat_schedules()
    ]
    counts = figures.task_results_by_status()
    return {
        "schedules": schedules,
        "schedules_url": changelist_url(PeriodicTask),
        "failures": counts.get("FAILURE", 0),
        "failures_url": changelist_url(TaskResult, status__exact="FAILURE"),
        "failed": figures.task_results_recent("FAILURE"),
        "retries": counts.get("RETRY", 0),
        "retries_url": changelist_url(TaskResult, status__exact="RETRY"),
        "retrying": figures.task_results_recent("RETRY"),
        "queues": figures.queue_depths(),
    }


def dashboard_context() -> dict[str, Any]:
    # Totals over all days (a row per kind and day: a few thousand a year at most).
    totals = tallies_read()
    conversation = _conversation(totals)
    tiers = _tiers()
    sessions = _sessions()
    handoffs = _handoffs()
    charts = {
        "tiers": {
            "lifecycles": tiers["lifecycles"],
            "datasets": [
                {"label": row["tier"], "data": [c["threads"] for c in row["cells"]]}
                for row in tiers["table"]
            ],
        },
        "bytes": {
            "labels": ["Redis (used memory)", "Cold objects"],
            "data": [(tiers["redis"] or {}).get("used_bytes", 0), tiers["cold_bytes"]],
        },
        "sessions": {
            "labels": [r["status"] for r in sessions["by_status"]],
            "data": [r["count"] for r in sessions["by_status"]],
        },
        "handoffs": {
            "labels": [r["outcome"] for r in handoffs],
            "data": [r["count"] for r in handoffs],
        },
        "series": conversation["series"],
    }
    return {
        "tiers": tiers,
        "conversation": conversation,
        "tally_lag": totals.lag,
        "sessions": sessions,
        "handoffs": handoffs,
        "celery": _celery(),
        "readiness": figures.readiness(),
        "charts": charts,
        "generated_at": timezone.now(),
    }
