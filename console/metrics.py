"""GET /metrics: the Prometheus text format, for `Authorization: Bearer <METRICS_TOKEN>`.

Two sources, summed at scrape time so that any number of web and worker processes give one
truth: the per-process counters of common/metrics.py (requests, hot-cache reads; from the
multiprocess files of this host), and figures read from the database and Redis (threads by
tier, sessions by status, the trail's counters via console/tally.py, task results, queue
depth). With METRICS_TOKEN unset the endpoint does not exist (404).
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from common.api.exceptions import error_body
from console import figures
from console.tally import tallies_read
from threads import events

# Named counters of the trail: metric → (help, {label value: event kind}).
TRAIL_COUNTERS = {
    "threadline_flushes": ("Threads flushed to cold storage.", {"": events.THREAD_FLUSHED}),
    "threadline_hydrates": ("Cold threads hydrated back.", {"": events.THREAD_HYDRATED}),
    "threadline_compactions": (
        "Compactions, by outcome.",
        {"succeeded": events.THREAD_COMPACTED, "failed": events.COMPACTION_FAILED},
    ),
    "threadline_warms": (
        "Prompt-cache warms, by outcome.",
        {"completed": events.WARM_COMPLETED, "failed": events.WARM_FAILED},
    ),
    "threadline_warming_capped": (
        "Warming timers stopped at their cap.",
        {"": events.WARMING_CAPPED},
    ),
    "threadline_handoffs": (
        "Handoffs, by outcome.",
        {"committed": events.HANDOFF_COMMITTED, "rolled_back": events.HANDOFF_ROLLED_BACK},
    ),
    "threadline_provider_retries": ("LLM provider calls retried.", {"": events.PROVIDER_RETRY}),
    "threadline_turns_settled": ("Session turns settled.", {"": events.SESSION_TURN_SETTLED}),
}


class DatabaseCollector:
    """The figures that live in the database and Redis, read once per scrape."""

    def collect(self):
        tallies = tallies_read()
        totals = tallies.totals()
        for name, (help_text, kinds) in TRAIL_COUNTERS.items():
            labelled = [label for label in kinds if label]
            family = CounterMetricFamily(name, help_text, labels=["outcome"] if labelled else [])
            for label, kind in kinds.items():
                family.add_metric([label] if label else [], totals.get(kind, 0))
            yield family
        usage = CounterMetricFamily(
            "threadline_turn_tokens", "Tokens of settled turns, by kind.", labels=["kind"]
        )
        for kind in ("input_tokens", "cache_read_tokens", "cache_creation_tokens", "output_tokens"):
            usage.add_metric([kind], tallies.total(events.SESSION_TURN_SETTLED, kind))
        yield usage
        trail = CounterMetricFamily("threadline_events", "Audit events, by kind.", labels=["kind"])
        for kind in events.KINDS:
            trail.add_metric([kind], totals.get(kind, 0))
        yield trail
        lag = GaugeMetricFamily(
            "threadline_event_tally_lag", "Events older than a minute not yet in the tally."
        )
        lag.add_metric([], tallies.lag)
        yield lag
        yield from self._tables()
        yield from self._celery()

    def _tables(self):
        threads = GaugeMetricFamily(
            "threadline_threads", "Threads, by tier and lifecycle.", labels=["tier", "lifecycle"]
        )
        hot_rows = cold_bytes = 0
        for row in figures.threads_by_tier_lifecycle():
            threads.add_metric([row["tier"], row["lifecycle"]], row["threads"])
            if row["tier"] == "hot":
                hot_rows += row["messages"] or 0
            else:
                cold_bytes += row["cold_bytes"] or 0
        yield threads
        yield _gauge("threadline_hot_message_rows", "Message rows of hot threads.", hot_rows)
        yield _gauge("threadline_cold_bytes", "Bytes of cold snapshots.", cold_bytes)
        redis = figures.redis_usage()
        if redis is not None:
            yield _gauge("threadline_redis_used_bytes", "Redis used_memory.", redis["used_bytes"])
        sessions = GaugeMetricFamily(
            "threadline_sessions", "Sessions, by status.", labels=["status"]
        )
        for status, n in figures.sessions_by_status().items():
            sessions.add_metric([status], n)
        yield sessions

    def _celery(self):
        results = GaugeMetricFamily(
            "threadline_celery_task_results",
            "Stored Celery task results (kept CELERY_RESULT_EXPIRES), by state.",
            labels=["state"],
        )
        counts = figures.task_results_by_status()
        for state in dict.fromkeys(("FAILURE", "RETRY", "SUCCESS", *sorted(counts))):
            results.add_metric([state], counts.get(state, 0))
        yield results
        depth = GaugeMetricFamily(
            "threadline_celery_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"]
        )
        for queue, n in figures.queue_depths().items():
            if n is not None:
                depth.add_metric([queue], n)
        yield depth


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text)
    family.add_metric([], value)
    return family


def _authorized(request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), settings.METRICS_TOKEN.encode()
    )


def metrics_view(request):
    if not settings.METRICS_TOKEN:  # metrics are off: the endpoint does not exist
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    if not _authorized(request):
        return JsonResponse(
            error_body("unauthenticated", "Send Authorization: Bearer <METRICS_TOKEN>."),
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
