"""Counters kept in process: requests and hot-cache reads (console/metrics.py serves them).

gunicorn runs several workers and Celery several processes, so a counter in one process's
memory is a fraction of the truth. These live in prometheus-client's multiprocess mode:
each process writes its own file under PROMETHEUS_MULTIPROC_DIR (config/settings/base.py
puts it in the environment before this module is first imported) and a scrape sums the
files of every process of the host, dead ones included, so counts survive a worker's
restart. Everything the database or Redis can say is read at scrape time instead
(console/metrics.py): those figures are right across hosts too.

Callers in other rooms make one-line calls (`metrics.cache_read(hit=...)`).
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram

CACHE_READS = Counter(
    "threadline_cache_reads",
    "History pages asked of the hot cache (Redis), by result.",
    ["result"],
)
HTTP_REQUESTS = Counter(
    "threadline_http_requests",
    "HTTP responses, by method, URL name and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "threadline_http_request_duration_seconds",
    "Time from the first middleware to the response, by method and URL name.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def cache_read(*, hit: bool) -> None:
    CACHE_READS.labels(result="hit" if hit else "miss").inc()


def _route(request) -> str:
    """The URL's name (`thread-messages`, `admin:index`), never the path: ids in paths
    would make a series per object."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "<unmatched>"
    return match.view_name or match.route or "<unnamed>"


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        route = _route(request)
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        return response
