"""Append and read throughput of the messages API against raw psycopg, in one run.

    .venv/bin/python bench/append_read.py [--appends 2000] [--concurrency 4] ...

Creates (drops and recreates) its own PostgreSQL database, migrates it, creates a tenant
and a project, starts gunicorn (sync workers) on a free loopback port, and measures:

1. single-message appends, POST /api/v1/threads/{id}/messages, at concurrency N;
2. the raw baseline: psycopg INSERT + COMMIT of the same rows into threads_message
   (same columns, same indexes) at the same concurrency on N connections;
3. their ratio;
4. GET /api/v1/threads/{id}/messages?limit=1000 of a 1,000-message thread, one request at a
   time, against a raw psycopg SELECT of the same 1,000 rows;
5. for scale, GET /healthz at the same concurrency: what gunicorn + Django manage with no
   authentication and no database at all (the ceiling of any API figure on this machine).

It prints a fixed-width table with the targets of issue 2 marked met / not met. It asserts
nothing about timings. See bench/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import threading
import time
from typing import Any

from _common import (
    BenchError,
    Client,
    Run,
    add_common_args,
    gunicorn,
    manage,
    recreate_database,
    run_concurrent,
    run_main,
    run_sequential,
    table,
    write_json,
)

APPEND_TARGET = 0.25  # API appends/s ≥ 25% of raw INSERT+COMMIT/s
GET_P50_TARGET_MS = 25.0  # GET of a 1,000-message thread, p50
HISTORY_BATCH = 250


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--appends", type=int, default=2000, help="timed appends per side (default 2000)")
    add("--concurrency", type=int, default=4, help="client threads / connections (default 4)")
    add(
        "--spread",
        type=int,
        default=4,
        help="Threadline threads the appends are spread over; client i appends to thread "
        "i mod spread (default 4: one each; 1: every client contends for one thread's lock)",
    )
    add("--reads", type=int, default=200, help="timed GETs of the long thread (default 200)")
    add("--history", type=int, default=1000, help="messages in the long thread (default 1000)")
    add("--content-bytes", type=int, default=200, help="message text length (default 200)")
    add("--warmup", type=int, default=100, help="untimed appends before each side (default 100)")
    add("--floor", type=int, default=2000, help="timed GET /healthz (default 2000; 0 skips)")
    add("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    add(
        "--threads",
        type=int,
        default=1,
        help="threads per gunicorn worker (default 1: sync workers; >1: gthread with keep-alive)",
    )
    add_common_args(parser, db_name="threadline_bench", redis_help="REDIS_URL for the server")
    add(
        "--rate-limit",
        type=int,
        default=10_000_000,
        help="API_RATE_LIMIT_PER_MINUTE (default 10,000,000: the throttle runs but never "
        "refuses; 0 disables it)",
    )
    args = parser.parse_args(argv)
    for name in ("appends", "concurrency", "spread", "reads", "history", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.history > 1000:
        parser.error("--history is read in one page; at most 1000")
    return args


def text_of(length: int) -> str:
    words = itertools.cycle("the quick brown fox jumps over the lazy dog".split())
    out = ""
    while len(out) < length:
        out += next(words) + " "
    return out[:length]


def token_estimate(text: str) -> int:
    return 4 + -(-len(text) // 4)  # threads.message_format.estimate_tokens for a string


def server_env(args: argparse.Namespace, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=database_url,
        DJANGO_DEBUG="false",
        REDIS_URL=args.redis_url,
        API_RATE_LIMIT_PER_MINUTE=str(args.rate_limit),
        LOG_LEVEL="WARNING",
    )
    return env


def flush_redis(url: str) -> str:
    """Empty the bench's own Redis database (throttle counters, hot-tier keys)."""
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).flushdb()
        return "flushed"
    except Exception as exc:  # Redis is a cache: the server runs without it
        return f"unavailable ({type(exc).__name__}); the server runs without it"


# --- The API side ----------------------------------------------------------------------


def api_appends(base: str, key: str, thread_ids: list[str], total: int, args, tag: str) -> Run:
    body_text = text_of(args.content_bytes)

    def setup(w: int) -> Client:
        return Client(base, key)

    def op(client: Client, w: int, i: int) -> None:
        thread = thread_ids[w % len(thread_ids)]
        message = {
            "id": f"{tag}-{w}-{i}",
            "role": "user" if i % 2 == 0 else "assistant",
            "content": body_text,
        }
        status, data = client.raw(
            "POST", f"/api/v1/threads/{thread}/messages", {"messages": [message]}
        )
        if status != 201:
            raise BenchError(f"append → {status}: {data[:200]!r}")

    return run_concurrent(
        workers=args.concurrency, total=total, setup=setup, op=op, teardown=Client.close
    )


# --- The raw side ----------------------------------------------------------------------

INSERT = (
    "INSERT INTO threads_message "
    "(thread_id, message_id, seq, role, content, metadata, token_estimate, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
SELECT = (
    "SELECT message_id, seq, role, content, metadata, token_estimate, created_at "
    "FROM threads_message WHERE thread_id = %s AND seq > %s ORDER BY seq LIMIT %s"
)


def raw_inserts(database_url: str, thread_ids: list[str], total: int, args, tag: str) -> Run:
    """INSERT + COMMIT per row, one connection per worker. Seqs come from a per-thread
    counter (the API assigns them under the thread's row lock; here nothing else writes)."""
    import psycopg
    from psycopg.types.json import Jsonb

    body_text = text_of(args.content_bytes)
    tokens = token_estimate(body_text)
    counters = {t: itertools.count(1) for t in thread_ids}
    seq_lock = threading.Lock()

    def setup(w: int):
        return psycopg.connect(database_url)

    def op(conn, w: int, i: int) -> None:
        thread = thread_ids[w % len(thread_ids)]
        with seq_lock:
            seq = next(counters[thread])
        role = "user" if i % 2 == 0 else "assistant"
        conn.execute(
            INSERT,
            (thread, f"{tag}-{w}-{i}", seq, role, Jsonb(body_text), Jsonb({}), tokens, _now()),
        )
        conn.commit()

    return run_concurrent(
        workers=args.concurrency, total=total, setup=setup, op=op, teardown=lambda c: c.close()
    )


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def healthz_floor(base: str, total: int, args) -> Run:
    def op(client: Client, w: int, i: int) -> None:
        status, data = client.raw("GET", "/healthz")
        if status != 200:
            raise BenchError(f"healthz → {status}: {data[:200]!r}")

    return run_concurrent(
        workers=args.concurrency,
        total=total,
        setup=lambda w: Client(base),
        op=op,
        teardown=Client.close,
    )


# --- Reads -----------------------------------------------------------------------------


def api_reads(base: str, key: str, thread_id: str, args) -> tuple[Run, int]:
    client = Client(base, key)
    path = f"/api/v1/threads/{thread_id}/messages?limit={args.history}"
    first = client.json("GET", path)
    if len(first["results"]) != args.history:
        raise BenchError(f"GET returned {len(first['results'])} messages, not {args.history}")
    status, body = client.raw("GET", path)
    size = len(body)
    for _ in range(10):  # warm-up: both workers, connections, caches
        client.raw("GET", path)

    def op(i: int) -> None:
        status, data = client.raw("GET", path)
        if status != 200:
            raise BenchError(f"GET → {status}: {data[:200]!r}")

    try:
        return run_sequential(total=args.reads, op=op), size
    finally:
        client.close()


def raw_reads(database_url: str, thread_id: str, args) -> Run:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        for _ in range(10):
            conn.execute(SELECT, (thread_id, 0, args.history)).fetchall()

        def op(i: int) -> None:
            rows = conn.execute(SELECT, (thread_id, 0, args.history)).fetchall()
            if len(rows) != args.history:
                raise BenchError(f"SELECT returned {len(rows)} rows")

        return run_sequential(total=args.reads, op=op)


# --- Report ----------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def report(args, info: dict[str, Any], runs: dict[str, Run], get_bytes: int) -> dict[str, Any]:
    api, raw, get, sel = runs["api_append"], runs["raw_insert"], runs["api_get"], runs["raw_get"]
    ratio = api.rate / raw.rate if raw.rate else float("nan")
    get_p50 = get.pct_ms(50)
    get_ratio = get_p50 / sel.pct_ms(50) if sel.latencies else float("nan")
    append_met = ratio >= APPEND_TARGET
    get_met = get_p50 <= GET_P50_TARGET_MS

    print()
    print(
        f"Threadline append/read benchmark — gunicorn {args.workers} "
        f"{'sync workers' if args.threads == 1 else f'gthread workers × {args.threads} threads'}, "
        f"PostgreSQL {info['postgres']}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"load average {info['load']:.2f} at start"
    )
    print(
        f"appends: {args.appends} per side at concurrency {args.concurrency} over "
        f"{args.spread} thread(s), {args.content_bytes}-char messages; "
        f"GET: {args.reads} sequential requests of {args.history} messages ({get_bytes:,} bytes)"
    )
    print()
    headers = ["measurement", "API", "raw psycopg", "API/raw", "target", "result"]
    rows = [
        [
            f"appends/s (c={args.concurrency})",
            fmt(api.rate),
            fmt(raw.rate),
            f"{ratio:.1%}",
            f">= {APPEND_TARGET:.0%} of raw",
            "met" if append_met else "NOT MET",
        ],
        ["append p50 (ms)", fmt(api.pct_ms(50), 2), fmt(raw.pct_ms(50), 2), "", "", ""],
        ["append p99 (ms)", fmt(api.pct_ms(99), 2), fmt(raw.pct_ms(99), 2), "", "", ""],
        [
            f"GET {args.history:,} msgs p50 (ms)",
            fmt(get_p50, 2),
            fmt(sel.pct_ms(50), 2),
            f"{get_ratio:.1f}x",
            f"<= {GET_P50_TARGET_MS:.0f} ms",
            "met" if get_met else "NOT MET",
        ],
        [
            f"GET {args.history:,} msgs p99 (ms)",
            fmt(get.pct_ms(99), 2),
            fmt(sel.pct_ms(99), 2),
            "",
            "",
            "",
        ],
    ]
    floor = runs.get("healthz")
    if floor is not None:
        rows.append(
            [
                f"GET /healthz/s (c={args.concurrency})",
                fmt(floor.rate),
                "",
                f"{api.rate / floor.rate:.1%}" if floor.rate else "",
                "(ceiling: no auth, no DB)",
                "",
            ]
        )
    print(table(headers, rows, right={1, 2, 3}))
    client_ms = api.cpu / api.count * 1000 if api.count else float("nan")
    print(
        f"\nThe load generator shares the CPUs: {client_ms:.2f} ms of client CPU per API append "
        f"({api.cpu / api.wall:.0%} of one core during that phase)."
    )
    failures = {name: run.errors for name, run in runs.items() if run.errors}
    for name, errors in failures.items():
        print(f"{name}: {len(errors)} failed operation(s) (not timed); first: {errors[0]}")
    print(f"total time {info['elapsed']:.1f} s")

    return {
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "pg")},
        "postgres": info["postgres"],
        "cpus": os.cpu_count(),
        "api_appends_per_s": api.rate,
        "raw_inserts_per_s": raw.rate,
        "append_ratio": ratio,
        "api_append_p50_ms": api.pct_ms(50),
        "api_append_p99_ms": api.pct_ms(99),
        "raw_insert_p50_ms": raw.pct_ms(50),
        "raw_insert_p99_ms": raw.pct_ms(99),
        "api_get_p50_ms": get_p50,
        "api_get_p99_ms": get.pct_ms(99),
        "raw_select_p50_ms": sel.pct_ms(50),
        "raw_select_p99_ms": sel.pct_ms(99),
        "get_bytes": get_bytes,
        "healthz_per_s": floor.rate if floor is not None else None,
        "client_cpu_ms_per_append": client_ms,
        "targets": {"append_ratio": append_met, "get_p50": get_met},
        "errors": {name: len(errors) for name, errors in failures.items()},
    }


# --- Main ------------------------------------------------------------------------------


def step(message: str) -> None:
    print(f"· {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()[0]

    step(f"recreating database {args.db_name}")
    database_url, pg_version = recreate_database(args.pg, args.db_name)
    env = server_env(args, database_url)
    step(f"redis {args.redis_url}: {flush_redis(args.redis_url)}")
    step("migrating")
    manage("migrate", "--noinput", env=env)
    tenant = json.loads(
        manage("create_tenant", "bench", "--json", env=env).strip().splitlines()[-1]
    )
    key = tenant["api_key"]

    step(f"starting gunicorn ({args.workers} workers)")
    threads = ["--threads", str(args.threads)] if args.threads > 1 else []
    with gunicorn(env=env, workers=args.workers, extra_args=threads) as base:
        step(f"server at {base}; creating project and threads")
        admin = Client(base, key)
        project = admin.json("POST", "/api/v1/projects/", {"name": "bench"}, expect=201)["id"]

        def new_thread(title: str) -> str:
            body = {"project": project, "title": title}
            return admin.json("POST", "/api/v1/threads/", body, expect=201)["id"]

        api_threads = [new_thread(f"api {i}") for i in range(args.spread)]
        raw_threads = [new_thread(f"raw {i}") for i in range(args.spread)]
        warm_api = [new_thread("warm-up api")]
        warm_raw = [new_thread("warm-up raw")]
        long_thread = new_thread(f"{args.history} messages")
        text = text_of(args.content_bytes)
        for start in range(0, args.history, HISTORY_BATCH):
            batch = [
                {"id": f"h-{n}", "role": "user" if n % 2 == 0 else "assistant", "content": text}
                for n in range(start, min(start + HISTORY_BATCH, args.history))
            ]
            path = f"/api/v1/threads/{long_thread}/messages"
            admin.json("POST", path, {"messages": batch}, expect=201)
        admin.close()

        runs: dict[str, Run] = {}
        step(f"API appends: {args.warmup} warm-up, {args.appends} timed")
        api_appends(base, key, warm_api, args.warmup, args, "w")
        runs["api_append"] = api_appends(base, key, api_threads, args.appends, args, "a")
        step(f"raw INSERT + COMMIT: {args.warmup} warm-up, {args.appends} timed")
        raw_inserts(database_url, warm_raw, args.warmup, args, "w")
        runs["raw_insert"] = raw_inserts(database_url, raw_threads, args.appends, args, "r")
        step(f"API GET of {args.history} messages: {args.reads} timed")
        runs["api_get"], get_bytes = api_reads(base, key, long_thread, args)
        step(f"raw SELECT of {args.history} rows: {args.reads} timed")
        runs["raw_get"] = raw_reads(database_url, long_thread, args)
        if args.floor:
            step(f"GET /healthz: {args.floor} timed")
            healthz_floor(base, min(args.floor, args.warmup), args)
            runs["healthz"] = healthz_floor(base, args.floor, args)
        step("stopping gunicorn")

    info = {"postgres": pg_version, "elapsed": time.perf_counter() - started, "load": load}
    figures = report(args, info, runs, get_bytes)
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    run_main(main)
