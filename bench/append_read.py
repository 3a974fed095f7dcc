"""Append and read throughput of the messages API against raw psycopg, in one run.

    .venv/bin/python bench/append_read.py [--appends 2000] [--concurrency 4] [--rounds 5] ...

Creates (drops and recreates) its own PostgreSQL database, migrates it, creates a tenant
and a project, starts gunicorn (sync workers) on a free loopback port and a Celery worker
beside it, and measures, interleaved round by round (every side once per round):

1. single-message appends, POST /api/v1/threads/{id}/messages, at concurrency N;
2. the fair floor (bench/_floor.py): one psycopg transaction per message doing what an
   append must — lock the thread row FOR NO KEY UPDATE, look up the ids, INSERT, UPDATE the
   counters, COMMIT — at the same concurrency on N persistent connections;
3. for reference, a bare INSERT + COMMIT of the same rows (less work than an append);
4. GET /api/v1/threads/{id}/messages?limit=1000 of a 1,000-message thread, one request at a
   time, against a raw psycopg SELECT of the same 1,000 rows;
5. for scale, GET /healthz at the same concurrency: what gunicorn + Django manage with no
   authentication and no database at all (the ceiling of any API figure on this machine).

It prints a fixed-width table: the API against the same-run floor, with the goal of the
issue (appends >= 35 % of the fair floor) marked met / not met. It asserts nothing about
timings. See bench/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import threading
import time
from typing import Any

from _common import (
    BenchError,
    Client,
    Run,
    add_common_args,
    bench_broker_env,
    celery_worker,
    gunicorn,
    manage,
    merged,
    project_env,
    recreate_database,
    require_positive,
    run_concurrent,
    run_main,
    run_sequential,
    step,
    table,
    wait_hot_cache,
    worker_args,
    write_json,
)
from _floor import INSERT, SELECT, fair_append, token_estimate

APPEND_TARGET = 0.35  # API appends/s ≥ 35 % of the fair floor's, in the same run
GET_P50_TARGET_MS = 25.0  # GET of a 1,000-message thread, p50
HISTORY_BATCH = 250


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--appends", type=int, default=2000, help="timed appends per side (default 2000)")
    add(
        "--rounds",
        type=int,
        default=5,
        help="rounds the timed work is split into, every side once per round (default 5)",
    )
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
        default=0,
        help="threads per gunicorn worker (default 0: as gunicorn.conf.py serves, gthread; "
        "1: sync workers; >1: gthread with that many threads)",
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
    require_positive(
        parser, args, *("appends", "rounds", "concurrency", "spread", "reads", "history", "workers")
    )
    if args.history > 1000:
        parser.error("--history is read in one page; at most 1000")
    return args


def text_of(length: int) -> str:
    words = itertools.cycle("the quick brown fox jumps over the lazy dog".split())
    out = ""
    while len(out) < length:
        out += next(words) + " "
    return out[:length]


def server_env(args: argparse.Namespace, database_url: str) -> dict[str, str]:
    env = {
        **os.environ,
        **project_env(
            database_url,
            REDIS_URL=args.redis_url,
            API_RATE_LIMIT_PER_MINUTE=str(args.rate_limit),
        ),
    }
    return bench_broker_env(env, args.redis_url)


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


def fair_floor(conns: list, tenant: str, thread_ids: list[str], total: int, args, tag) -> Run:
    """The fair floor (bench/_floor.py): one transaction per message with an append's
    statements, on persistent connections (one per worker, as Django keeps them)."""
    body_text = text_of(args.content_bytes)

    def op(conn, w: int, i: int) -> None:
        role = "user" if i % 2 == 0 else "assistant"
        thread = thread_ids[w % len(thread_ids)]
        fair_append(
            conn,
            thread=thread,
            tenant=tenant,
            message_id=f"{tag}-{w}-{i}",
            role=role,
            text=body_text,
        )

    return run_concurrent(workers=args.concurrency, total=total, setup=lambda w: conns[w], op=op)


def bare_inserts(conns: list, thread_ids: list[str], counters, total: int, args, tag) -> Run:
    """INSERT + COMMIT per row, one persistent connection per worker: less work than an
    append (no lock, no id check, no counters). Seqs come from a per-thread counter kept
    across rounds (nothing else writes these threads)."""
    from psycopg.types.json import Jsonb

    body_text = text_of(args.content_bytes)
    tokens = token_estimate(body_text)
    seq_lock = threading.Lock()

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

    return run_concurrent(workers=args.concurrency, total=total, setup=lambda w: conns[w], op=op)


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


def api_reads(base: str, key: str, thread_id: str, total: int, args) -> Run:
    client = Client(base, key)
    path = f"/api/v1/threads/{thread_id}/messages?limit={args.history}"

    def op(i: int) -> None:
        status, data = client.raw("GET", path)
        if status != 200:
            raise BenchError(f"GET → {status}: {data[:200]!r}")

    try:
        return run_sequential(total=total, op=op)
    finally:
        client.close()


def api_read_warmup(base: str, key: str, thread_id: str, args) -> tuple[int, bool]:
    """Check the page, wait for the hot cache to hold the thread (a miss fills it: inline or
    by the worker), warm both workers; returns (body bytes, whether Redis holds it)."""
    client = Client(base, key)
    path = f"/api/v1/threads/{thread_id}/messages?limit={args.history}"
    first = client.json("GET", path)
    client.close()
    if len(first["results"]) != args.history:
        raise BenchError(f"GET returned {len(first['results'])} messages, not {args.history}")
    hot = wait_hot_cache(
        args.redis_url, thread_id, args.history, lambda: api_reads(base, key, thread_id, 1, args)
    )
    client = Client(base, key)
    size = len(client.raw("GET", path)[1])
    client.close()
    api_reads(base, key, thread_id, 10, args)  # both workers, connections, caches
    return size, hot


def raw_reads(conn, thread_id: str, total: int, args) -> Run:
    def op(i: int) -> None:
        rows = conn.execute(SELECT, (thread_id, 0, args.history)).fetchall()
        if len(rows) != args.history:
            raise BenchError(f"SELECT returned {len(rows)} rows")

    return run_sequential(total=total, op=op)


# --- Report ----------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def per_round_ratio(ours: list[Run], theirs: list[Run], field: str = "rate") -> str:
    def value(run: Run) -> float:
        return run.rate if field == "rate" else run.pct_ms(50)

    ratios = sorted(
        value(a) / value(b) for a, b in zip(ours, theirs, strict=True) if value(b) and a.count
    )
    if not ratios:
        return ""
    kind = "%" if field == "rate" else "x"
    show = (lambda r: f"{r:.1%}") if kind == "%" else (lambda r: f"{r:.2f}x")
    return f"{show(statistics.median(ratios))} [{show(ratios[0])}–{show(ratios[-1])}]"


def report(args, info: dict[str, Any], rounds: dict[str, list[Run]], get: dict) -> dict[str, Any]:
    runs = {name: merged(parts) for name, parts in rounds.items()}
    api, floor, bare = runs["api_append"], runs["fair_floor"], runs["bare_insert"]
    got, sel = runs["api_get"], runs["raw_get"]
    ratio = api.rate / floor.rate if floor.rate else float("nan")
    bare_ratio = api.rate / bare.rate if bare.rate else float("nan")
    get_p50 = got.pct_ms(50)
    get_ratio = get_p50 / sel.pct_ms(50) if sel.latencies else float("nan")
    append_met = ratio >= APPEND_TARGET
    get_met = get_p50 <= GET_P50_TARGET_MS

    print()
    served = {0: "gthread workers as gunicorn.conf.py", 1: "sync workers"}.get(
        args.threads, f"gthread workers × {args.threads} threads"
    )
    print(
        f"Threadline append/read benchmark — gunicorn {args.workers} {served}, "
        f"PostgreSQL {info['postgres']}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"load average {info['load']:.2f} at start"
    )
    print(
        f"appends: {args.appends} per side at concurrency {args.concurrency} over "
        f"{args.spread} thread(s), {args.content_bytes}-char messages; "
        f"GET: {args.reads} sequential requests of {args.history} messages "
        f"({get['bytes']:,} bytes{'' if get['hot'] else '; NOT in the hot cache'}); "
        f"every side interleaved over {args.rounds} round(s)"
    )
    print()
    headers = ["measurement", "API", "floor", "API/floor", "per round", "target", "result"]
    rows = [
        [
            f"appends/s (c={args.concurrency})",
            fmt(api.rate),
            fmt(floor.rate),
            f"{ratio:.1%}",
            per_round_ratio(rounds["api_append"], rounds["fair_floor"]),
            f">= {APPEND_TARGET:.0%} of the fair floor",
            "met" if append_met else "NOT MET",
        ],
        ["append p50 (ms)", fmt(api.pct_ms(50), 2), fmt(floor.pct_ms(50), 2), "", "", "", ""],
        ["append p99 (ms)", fmt(api.pct_ms(99), 2), fmt(floor.pct_ms(99), 2), "", "", "", ""],
        [
            "  bare INSERT+COMMIT/s",
            "",
            fmt(bare.rate),
            f"{bare_ratio:.1%}",
            per_round_ratio(rounds["api_append"], rounds["bare_insert"]),
            "(less work than an append)",
            "",
        ],
        [
            f"GET {args.history:,} msgs p50 (ms)",
            fmt(get_p50, 2),
            fmt(sel.pct_ms(50), 2),
            f"{get_ratio:.1f}x",
            per_round_ratio(rounds["api_get"], rounds["raw_get"], "p50"),
            f"<= {GET_P50_TARGET_MS:.0f} ms",
            "met" if get_met else "NOT MET",
        ],
        [
            f"GET {args.history:,} msgs p99 (ms)",
            fmt(got.pct_ms(99), 2),
            fmt(sel.pct_ms(99), 2),
            "",
            "",
            "",
            "",
        ],
    ]
    ceiling = runs.get("healthz")
    if ceiling is not None:
        rows.append(
            [
                f"GET /healthz/s (c={args.concurrency})",
                fmt(ceiling.rate),
                "",
                f"{api.rate / ceiling.rate:.1%}" if ceiling.rate else "",
                "",
                "(ceiling: no auth, no DB)",
                "",
            ]
        )
    print(table(headers, rows, right={1, 2, 3}))
    print(
        "floor: one psycopg transaction per append with an append's statements (row lock FOR "
        "NO KEY UPDATE, id check, INSERT, counters UPDATE, COMMIT) — bench/_floor.py; 'per "
        "round': median [min–max] of the rounds' ratios"
    )
    client_ms = api.cpu / api.count * 1000 if api.count else float("nan")
    print(
        f"\nThe load generator shares the CPUs: {client_ms:.2f} ms of client CPU per API append "
        f"({api.cpu / api.wall:.0%} of one core during that side)."
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
        "floor_appends_per_s": floor.rate,
        "append_ratio": ratio,
        "raw_inserts_per_s": bare.rate,
        "append_ratio_bare_insert": bare_ratio,
        "api_append_p50_ms": api.pct_ms(50),
        "api_append_p99_ms": api.pct_ms(99),
        "floor_append_p50_ms": floor.pct_ms(50),
        "floor_append_p99_ms": floor.pct_ms(99),
        "raw_insert_p50_ms": bare.pct_ms(50),
        "raw_insert_p99_ms": bare.pct_ms(99),
        "api_get_p50_ms": get_p50,
        "api_get_p99_ms": got.pct_ms(99),
        "raw_select_p50_ms": sel.pct_ms(50),
        "raw_select_p99_ms": sel.pct_ms(99),
        "get_bytes": get["bytes"],
        "get_hot": get["hot"],
        "healthz_per_s": ceiling.rate if ceiling is not None else None,
        "client_cpu_ms_per_append": client_ms,
        "per_round": {
            name: [{"ops_s": r.rate, "p50_ms": r.pct_ms(50)} for r in parts]
            for name, parts in rounds.items()
        },
        "targets": {"append_ratio": append_met, "get_p50": get_met},
        "errors": {name: len(errors) for name, errors in failures.items()},
    }


# --- Main ------------------------------------------------------------------------------


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def main(argv: list[str] | None = None) -> int:
    import psycopg

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

    step(f"starting gunicorn ({args.workers} workers) and a Celery worker")
    threads = worker_args(args.threads)
    with (
        celery_worker(env),
        gunicorn(env=env, workers=args.workers, extra_args=threads) as base,
    ):
        step(f"server at {base}; creating project and threads")
        admin = Client(base, key)
        project = admin.json("POST", "/api/v1/projects/", {"name": "bench"}, expect=201)["id"]

        def new_thread(title: str) -> str:
            body = {"project": project, "title": title}
            return admin.json("POST", "/api/v1/threads/", body, expect=201)["id"]

        api_threads = [new_thread(f"api {i}") for i in range(args.spread)]
        floor_threads = [new_thread(f"floor {i}") for i in range(args.spread)]
        bare_threads = [new_thread(f"bare {i}") for i in range(args.spread)]
        warm = {side: [new_thread(f"warm-up {side}")] for side in ("api", "floor", "bare")}
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

        conns = [psycopg.connect(database_url) for _ in range(2 * args.concurrency)]
        reader = psycopg.connect(database_url, autocommit=True)
        floor_conns, bare_conns = conns[: args.concurrency], conns[args.concurrency :]
        counters = {t: itertools.count(1) for t in bare_threads + warm["bare"]}
        owner = tenant["tenant"]
        try:
            step(f"warm-up: {args.warmup} appends per side, GETs until the hot cache holds")
            api_appends(base, key, warm["api"], args.warmup, args, "w")
            fair_floor(floor_conns, owner, warm["floor"], args.warmup, args, "w")
            bare_inserts(bare_conns, warm["bare"], counters, args.warmup, args, "w")
            get_bytes, hot = api_read_warmup(base, key, long_thread, args)
            raw_reads(reader, long_thread, 10, args)
            if args.floor:
                healthz_floor(base, min(args.floor, args.warmup), args)

            rounds: dict[str, list[Run]] = {}
            appends, reads = split(args.appends, args.rounds), split(args.reads, args.rounds)
            healthz = split(args.floor, args.rounds)
            for r in range(args.rounds):
                step(
                    f"round {r + 1}/{args.rounds}: {appends[r]} appends per side (API, fair "
                    f"floor, bare INSERT), {reads[r]} GETs and SELECTs"
                    + (f", {healthz[r]} GET /healthz" if args.floor else "")
                )
                tag = f"r{r}"
                add = rounds.setdefault
                add("api_append", []).append(
                    api_appends(base, key, api_threads, appends[r], args, tag)
                )
                add("fair_floor", []).append(
                    fair_floor(floor_conns, owner, floor_threads, appends[r], args, tag)
                )
                add("bare_insert", []).append(
                    bare_inserts(bare_conns, bare_threads, counters, appends[r], args, tag)
                )
                add("api_get", []).append(api_reads(base, key, long_thread, reads[r], args))
                add("raw_get", []).append(raw_reads(reader, long_thread, reads[r], args))
                if args.floor:
                    add("healthz", []).append(healthz_floor(base, healthz[r], args))
        finally:
            for conn in [*conns, reader]:
                conn.close()
        step("stopping gunicorn and the worker")

    info = {"postgres": pg_version, "elapsed": time.perf_counter() - started, "load": load}
    figures = report(args, info, rounds, {"bytes": get_bytes, "hot": hot})
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    run_main(main)
