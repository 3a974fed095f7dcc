"""Hot and cold tiers, in one run: cached against database reads, flushes to S3 against raw
boto3 puts, hydrate of a long thread, snapshot compression and what a flush leaves behind.

    .venv/bin/python bench/tiers.py [--threads 500] [--messages 100] [--long 10000] ...

Creates (drops and recreates) its own PostgreSQL database, migrates it, empties its Redis
database (5), starts a `moto_server` on a free loopback port and creates a bucket, seeds the
data with COPY, and measures:

1. GET /api/v1/threads/{id}/messages?limit=1000 of a 1,000-message thread through gunicorn:
   served from the Redis cache (a server with REDIS_URL) against the database path (a second
   server without REDIS_URL), plus the miss path (keys dropped before each request: database
   read + cache rebuild); the three are interleaved request by request;
2. tiers.thread_flush of `--threads` threads × `--messages` messages (in-process, one
   at a time, as the sweep does) against raw boto3 put_object + get_object of the same gzip
   bodies (the floor of a write verified by a read-back; aim: ≥ 0.8 of its throughput), and
   put_object alone for reference, alternating round by round (`--rounds`);
3. thread_flush and thread_hydrate of a `--long`-message thread, `--cycles` times, each
   cycle beside its raw floor: put_object; get_object + gunzip + JSON parse (+ COPY) of the
   same snapshot (aim: hydrate ≤ 1.2 × get + parse + COPY);
4. the gzip ratio of the snapshots (JSON bytes ÷ gzip bytes);
5. the Redis bytes (MEMORY USAGE of `tl:{<thread>}:*`) and message rows of the flushed
   threads, before and after.

It prints a fixed-width table (every ratio is Threadline ÷ its baseline, measured in the same
run) and asserts nothing about timings. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    BenchError,
    Client,
    Run,
    add_common_args,
    celery_worker,
    free_port,
    gunicorn,
    manage,
    merged,
    project_env,
    recreate_database,
    require_positive,
    run_main,
    run_sequential,
    step,
    table,
    venv_tool,
    wait_hot_cache,
    write_json,
)

FLUSH_RATIO_AIM = 0.8  # flush throughput ≥ 80 % of raw put_object + get_object (issue 9)
HYDRATE_RATIO_AIM = 1.2  # hydrate time ≤ 1.2 × get + parse + COPY of the same snapshot
REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
WARMUP_THREADS = 5  # flushed (and raw-put) untimed before the timed flushes
VOCABULARY = (
    "the a to of and in is it that for on with as was at be this by from or have an not are "
    "deploy failed because migration locked billing table retry after rollback service "
    "request timeout error log trace user assistant tool call result returns value config "
    "file path branch commit review test passed build cache database index query latency "
    "queue worker task session thread message summary token context window prompt agent "
    "plan step next check update version release schedule customer invoice account order "
    "payment refund ticket priority high low medium please could you thanks sure here "
    "done running pending blocked ready however then also only still just very"
).split()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--threads", type=int, default=500, help="threads flushed in phase 2 (default 500)")
    add("--messages", type=int, default=100, help="messages per flushed thread (default 100)")
    add("--long", type=int, default=10_000, help="messages of the hydrated thread (10,000)")
    add("--cycles", type=int, default=5, help="timed flush → hydrate cycles (default 5)")
    add("--rounds", type=int, default=10, help="flush rounds, alternating (default 10)")
    add("--history", type=int, default=1000, help="messages of the GET thread (default 1000)")
    add("--reads", type=int, default=100, help="timed GETs per path (default 100)")
    add("--warmup", type=int, default=10, help="untimed GETs per server first (default 10)")
    add("--content-bytes", type=int, default=200, help="message text length (default 200)")
    add("--workers", type=int, default=2, help="gunicorn workers per server (default 2)")
    add_common_args(parser, db_name="threadline_bench_tiers", redis_help="Redis database (flushed)")
    args = parser.parse_args(argv)
    require_positive(
        parser,
        args,
        *("threads", "messages", "long", "cycles", "rounds", "history", "reads", "workers"),
    )
    if args.rounds > args.threads:
        parser.error("--rounds may not exceed --threads (each round flushes its share)")
    if args.history > 1000:
        parser.error("--history is read in one page; at most 1000")
    return args


# --- moto_server -----------------------------------------------------------------------


@contextlib.contextmanager
def moto_server(ready_timeout: float = 30.0) -> Iterator[str]:
    """Start `moto_server` on a free loopback port, yield its URL, always stop it (SIGTERM,
    then SIGKILL of its process group after 10 s)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="bench-moto-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [venv_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise BenchError(f"moto_server exited {proc.returncode}:\n{_tail(log.name)}")
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"moto_server did not answer within {ready_timeout:.0f} s:\n"
                        f"{_tail(log.name)}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        log.close()
        with contextlib.suppress(OSError):
            os.unlink(log.name)


def _tail(path: str, limit: int = 4000) -> str:
    return Path(path).read_text(errors="replace")[-limit:]


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)


# --- Setup -----------------------------------------------------------------------------


def flush_redis(url: str):
    """Empty the bench's own Redis database; returns the client and the server version."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
        version = client.info("server")["redis_version"]
    except redis.RedisError as exc:
        raise BenchError(f"cannot use Redis at {url}: {exc}") from None
    return client, version


def setup_django(args: argparse.Namespace, database_url: str, endpoint: str, bucket: str) -> None:
    """Point this process (and, through os.environ, the gunicorn servers) at the bench
    database, the bench Redis database and the moto endpoint, then django.setup()."""
    os.environ.update(
        project_env(
            database_url,
            REDIS_URL=args.redis_url,
            # Tasks the bench's processes enqueue go to its Redis database, never var/broker.
            CELERY_BROKER_URL=args.redis_url,
            API_RATE_LIMIT_PER_MINUTE="10000000",
            COLD_STORAGE="s3",
            COLD_PREFIX="threads",
            AWS_S3_ENDPOINT_URL=endpoint,
            AWS_STORAGE_BUCKET_NAME=bucket,
            AWS_S3_REGION_NAME=REGION,
            AWS_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
            AWS_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
        )
    )
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


COPY_MESSAGES = (
    "COPY threads_message "
    "(thread_id, message_id, seq, role, content, metadata, token_estimate, created_at) "
    "FROM STDIN"
)


def copy_rows(thread_id: str, messages: list[dict[str, Any]]) -> None:
    """Insert `messages` (shaped like the API's JSON) into the thread with one COPY."""
    from django.db import connection, transaction

    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.cursor.copy(COPY_MESSAGES) as copy,
    ):
        for m in messages:
            copy.write_row(
                (
                    thread_id,
                    m["id"],
                    m["seq"],
                    m["role"],
                    json.dumps(m["content"]),
                    json.dumps(m["metadata"]),
                    m["token_estimate"],
                    m["created_at"],
                )
            )


def seed(args: argparse.Namespace, sizes: dict[str, int]) -> tuple[str, dict[str, str]]:
    """A tenant, a project and one thread per entry of `sizes` (name → message count), the
    messages written with COPY. Returns (API key, name → thread id)."""
    from datetime import timedelta

    from django.db import connection, transaction
    from django.utils import timezone

    from common.ids import new_id
    from threads import message_format, tenancy  # after django.setup()
    from threads.models import Thread

    rng = random.Random(4)
    tenant, key = tenancy.tenant_create(name="bench")
    project = tenancy.project_create(tenant=tenant, name="bench")
    idle_since = timezone.now() - timedelta(days=1)
    texts: dict[str, list[str]] = {}
    for name, count in sizes.items():
        texts[name] = [
            " ".join(rng.choices(VOCABULARY, k=args.content_bytes // 3))[: args.content_bytes]
            for _ in range(count)
        ]
    threads = {
        name: Thread(
            tenant=tenant,
            project=project,
            title=name,
            last_seq=len(texts[name]),
            message_count=len(texts[name]),
            token_estimate=sum(message_format.estimate_tokens(t) for t in texts[name]),
            history_version=1,
            last_activity_at=idle_since,
        )
        for name in sizes
    }
    with transaction.atomic():
        Thread.objects.bulk_create(threads.values(), batch_size=1000)
        for name, thread in threads.items():
            copy_rows(
                thread.pk,
                [
                    {
                        "id": new_id("msg"),
                        "seq": seq,
                        "role": "user" if seq % 2 else "assistant",
                        "content": text,
                        "metadata": {},
                        "token_estimate": message_format.estimate_tokens(text),
                        "created_at": idle_since + timedelta(milliseconds=seq),
                    }
                    for seq, text in enumerate(texts[name], start=1)
                ],
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE threads_message")
        cursor.execute("ANALYZE threads_thread")
    return key, {name: thread.pk for name, thread in threads.items()}


# --- 1. GET: Redis cache against the database path -------------------------------------


def bench_get(args, key: str, thread_id: str, redis_client) -> tuple[dict[str, Run], int]:
    """Two servers up at once (idle sync workers cost nothing); requests interleaved cache,
    database, miss, cache, … so load from elsewhere hits the three alike."""
    from threads.storage import hotcache

    path = f"/api/v1/threads/{thread_id}/messages?limit={args.history}"
    cache_keys = hotcache.keys(thread_id)
    with (
        gunicorn(env=dict(os.environ), workers=args.workers) as cached_base,
        gunicorn(env={**os.environ, "REDIS_URL": ""}, workers=args.workers) as db_base,
    ):
        step(f"servers at {cached_base} (Redis cache) and {db_base} (no Redis)")
        clients = {"cache": Client(cached_base, key), "database": Client(db_base, key)}
        size = 0
        for name, client in clients.items():
            for _ in range(max(args.warmup, 1)):
                status, data = client.raw("GET", path)
                results = json.loads(data).get("results", []) if status == 200 else []
                if len(results) != args.history:
                    raise BenchError(f"{name}: GET → {status}, {len(results)} messages")
                size = len(data)
        # A miss fills the cache inline or through a task on the worker: wait for it.
        warm = clients["cache"]
        wait_hot_cache(args.redis_url, thread_id, args.history, lambda: warm.raw("GET", path))
        if redis_client.hget(cache_keys[0], "hv") is None:
            raise BenchError("the Redis cache of the GET thread was not built by the warm-up")

        runs = {"cache": Run(), "database": Run(), "miss": Run()}
        plan = [("cache", "cache"), ("database", "database"), ("miss", "cache")]
        step(f"GET of {args.history:,} messages: {args.reads} timed per path, interleaved")
        started = time.perf_counter()
        for _ in range(args.reads):
            for run_name, client_name in plan:
                if run_name == "miss":
                    redis_client.delete(*cache_keys)
                start = time.perf_counter()
                status, data = clients[client_name].raw("GET", path)
                elapsed = time.perf_counter() - start
                if status != 200:
                    runs[run_name].errors.append(f"GET → {status}: {data[:200]!r}")
                    continue
                runs[run_name].latencies.append(elapsed)
                if run_name == "miss":  # untimed: the cache is whole again before the next hit
                    wait_hot_cache(
                        args.redis_url, thread_id, args.history, lambda: None, timeout=10
                    )
        wall = time.perf_counter() - started
        for run in runs.values():
            run.wall = wall
        if redis_client.hget(cache_keys[0], "hv") is None:
            raise BenchError("the Redis cache of the GET thread is gone after the timed GETs")
        for client in clients.values():
            client.close()
        step("stopping gunicorn")
    return runs, size


# --- 2. Flush of many threads against raw put_object ------------------------------------


def redis_footprint(redis_client, thread_ids: set[str]) -> tuple[int, int]:
    """(keys, bytes by MEMORY USAGE) of the `tl:{<thread>}:*` keys of `thread_ids`."""
    keys = used = 0
    for name in redis_client.scan_iter(match="tl:*", count=1000):
        text = name.decode()
        thread_id = text[text.find("{") + 1 : text.find("}")]
        if thread_id in thread_ids:
            keys += 1
            used += redis_client.memory_usage(name, samples=0) or 0
    return keys, used


def bench_flush(args, ids: list[str], warm_ids: list[str], s3, bucket: str, redis_client):
    """`--rounds` rounds, each: thread_flush of its share of the threads (A), then raw
    put_object + get_object of the very bodies those flushes wrote (B), then raw put_object
    alone (for reference) — A, B, A, B … so load from elsewhere hits both alike. Per round:
    the rates and the ratio A ÷ B."""
    from threads.models import Message, Thread, Tier
    from threads.storage import pages, tiers
    from threads.storage.snapshot import snapshot_key

    step(f"warming the hot cache of {len(ids) + len(warm_ids)} threads")
    for thread in Thread.objects.filter(pk__in=ids + warm_ids):
        pages.messages_page_json(thread=thread, after_seq=0, limit=1)
    deadline = time.monotonic() + 60  # fills may run on the worker: wait for them, a while
    for thread_id in ids + warm_ids:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        wait_hot_cache(args.redis_url, thread_id, args.messages, lambda: None, timeout=left)
    before = {
        "redis": redis_footprint(redis_client, set(ids)),
        "rows": Message.objects.filter(thread_id__in=ids).count(),
        "cold": Thread.objects.filter(pk__in=ids, tier=Tier.COLD).count(),
    }

    def put(prefix: str, pk: str, body: bytes) -> None:
        s3.put_object(
            Bucket=bucket, Key=f"{prefix}/{pk}.json.gz", Body=body, ContentType="application/gzip"
        )

    def read(pk: str) -> bytes:
        return s3.get_object(Bucket=bucket, Key=snapshot_key(pk))["Body"].read()

    for thread in Thread.objects.filter(pk__in=warm_ids):  # warm-up, untimed: both sides
        tiers.thread_flush(thread=thread)
        put("raw-warm", thread.pk, read(thread.pk))
    by_id = Thread.objects.in_bulk(ids)
    rounds = [ids[r :: args.rounds] for r in range(args.rounds)]
    runs: dict[str, list[Run]] = {"flush": [], "raw_put_get": [], "raw_put": []}
    bodies: list[bytes] = []
    step(
        f"{args.rounds} rounds of: thread_flush of {len(rounds[0])} threads × {args.messages} "
        "messages (one at a time), raw put_object + get_object and raw put_object of the "
        "same bodies"
    )

    def one_round(share: list[str]) -> list[bytes]:
        threads = [by_id[pk] for pk in share]
        runs["flush"].append(
            run_sequential(total=len(threads), op=lambda i: tiers.thread_flush(thread=threads[i]))
        )
        written = [read(pk) for pk in share]  # untimed

        def put_get(i: int) -> None:
            put("raw-rt", share[i], written[i])
            got = s3.get_object(Bucket=bucket, Key=f"raw-rt/{share[i]}.json.gz")["Body"].read()
            if got != written[i]:
                raise BenchError("read-back differs")

        runs["raw_put_get"].append(run_sequential(total=len(share), op=put_get))
        runs["raw_put"].append(
            run_sequential(total=len(share), op=lambda i: put("raw", share[i], written[i]))
        )
        return written

    for share in rounds:
        bodies += one_round(share)

    after = {
        "redis": redis_footprint(redis_client, set(ids)),
        "rows": Message.objects.filter(thread_id__in=ids).count(),
        "cold": Thread.objects.filter(pk__in=ids, tier=Tier.COLD).count(),
    }
    return {
        "runs": {name: merged(parts) for name, parts in runs.items()},
        "rounds": runs,
        "gzip_bytes": sum(len(b) for b in bodies),
        "json_bytes": sum(len(gzip.decompress(b)) for b in bodies),
        "before": before,
        "after": after,
    }


def round_ratios(a: list[Run], b: list[Run]) -> list[float]:
    """Per round, A's rate ÷ B's rate."""
    return [x.rate / y.rate for x, y in zip(a, b, strict=True) if y.rate]


# --- 3. Flush and hydrate of a long thread ----------------------------------------------


def bench_hydrate(
    args, thread_id: str, scratch_id: str, s3, bucket: str, redis_client
) -> dict[str, Any]:
    """1 warm-up + `--cycles` cycles, each: thread_flush of the long thread and raw
    put_object of its snapshot; thread_hydrate (A), then its floor (B): get_object of the
    same snapshot + gunzip + JSON parse of it and of each message (+ one COPY of the rows).
    Per cycle the ratio A ÷ B."""
    from threads.models import Message, Thread
    from threads.storage import hotcache, tiers
    from threads.storage.snapshot import snapshot_key

    thread = Thread.objects.get(pk=thread_id)
    key = snapshot_key(thread_id)
    raw_key = f"raw-long/{thread_id}.json.gz"
    names = ("flush", "raw_put", "hydrate", "raw_read", "raw_restore")
    runs = {name: Run() for name in names}
    step(
        f"flush → hydrate of {args.long:,} messages, each beside its raw baseline: "
        f"1 warm-up + {args.cycles} timed cycles"
    )
    body = b""
    for cycle in range(args.cycles + 1):
        start = time.perf_counter()
        tiers.thread_flush(thread=thread)
        flushed = time.perf_counter()
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # untimed
        put_start = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=raw_key, Body=body, ContentType="application/gzip")
        put_done = time.perf_counter()

        hydrate_start = time.perf_counter()
        tiers.thread_hydrate(thread=thread)
        hydrated = time.perf_counter()

        read_start = time.perf_counter()
        got = s3.get_object(Bucket=bucket, Key=raw_key)["Body"].read()
        snapshot = json.loads(gzip.decompress(got))
        parsed = [json.loads(m) for m in snapshot["messages"]]
        read_done = time.perf_counter()
        copy_rows(scratch_id, parsed)
        done = time.perf_counter()
        Message.objects.filter(thread_id=scratch_id).delete()  # untimed
        if len(parsed) != args.long:
            raise BenchError(f"raw read parsed {len(parsed)} messages")
        if cycle:  # the first is a warm-up
            runs["flush"].latencies.append(flushed - start)
            runs["raw_put"].latencies.append(put_done - put_start)
            runs["hydrate"].latencies.append(hydrated - hydrate_start)
            runs["raw_read"].latencies.append(read_done - read_start)
            runs["raw_restore"].latencies.append(done - read_start)
    rows = Message.objects.filter(thread_id=thread_id).count()
    cached = redis_client.zcard(hotcache.keys(thread_id)[1])
    if rows != args.long or cached != args.long:
        raise BenchError(f"after hydrate: {rows} rows, {cached} cached messages")
    return {
        "runs": runs,
        "gzip_bytes": len(body),
        "json_bytes": len(gzip.decompress(body)),
    }


# --- Report ----------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else ""


def spread(values: list[float]) -> str:
    """median [min–max] of per-round values."""
    if not values:
        return ""
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def verdict(value: float, aim: float, *, at_least: bool) -> str:
    if value != value:  # NaN: nothing measured
        return "NOT MEASURED"
    return "met" if (value >= aim if at_least else value <= aim) else "NOT MET"


def report(args, info: dict[str, Any], get, flush, hydrate) -> dict[str, Any]:
    get_runs, get_bytes = get
    cache, db, miss = get_runs["cache"], get_runs["database"], get_runs["miss"]
    fr, rounds = flush["runs"], flush["rounds"]
    flush_run, raw_run, rt_run = fr["flush"], fr["raw_put"], fr["raw_put_get"]
    mb = flush["gzip_bytes"] / 1e6
    # Judged on the median of the per-round ratios: each round's flushes and raw calls ran
    # back to back, so a burst of load from elsewhere moves both sides of one ratio.
    flush_ratios = round_ratios(rounds["flush"], rounds["raw_put_get"])
    put_ratios = round_ratios(rounds["flush"], rounds["raw_put"])
    flush_ratio = statistics.median(flush_ratios) if flush_ratios else float("nan")
    hr = hydrate["runs"]
    hydrate_ratios = [
        a / b for a, b in zip(hr["hydrate"].latencies, hr["raw_restore"].latencies, strict=True)
    ]
    hydrate_ratio = statistics.median(hydrate_ratios) if hydrate_ratios else float("nan")
    before, after = flush["before"], flush["after"]
    n = args.threads

    def rate(runs: list[Run]) -> str:
        return fmt(statistics.median(r.rate for r in runs))

    print()
    print(
        f"Threadline tiers benchmark — PostgreSQL {info['postgres']}, Redis {info['redis']}, "
        f"moto_server {info['moto']}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"load average {info['load']:.2f} at start"
    )
    print(
        f"GET: {args.reads} requests per path of {args.history:,} messages ({get_bytes:,} "
        f"bytes), gunicorn {args.workers} sync workers per server; flush: {n} threads × "
        f"{args.messages} messages of {args.content_bytes} chars in {args.rounds} rounds; "
        f"hydrate: {args.long:,} messages, {args.cycles} cycles"
    )
    print()
    headers = ["measurement", "Threadline", "baseline", "ratio", "aim", "result / note"]
    h = f"GET {args.history:,} msgs"
    rows = [
        [f"{h} p50 ms: Redis hit | DB path", fmt(cache.pct_ms(50), 2), fmt(db.pct_ms(50), 2)],
        [f"{h} p99 ms: Redis hit | DB path", fmt(cache.pct_ms(99), 2), fmt(db.pct_ms(99), 2)],
        [f"{h} p50 ms: miss+rebuild | DB path", fmt(miss.pct_ms(50), 2), fmt(db.pct_ms(50), 2)],
    ]
    for row in rows:
        row += [ratio(float(row[1].replace(",", "")), float(row[2].replace(",", ""))), "", ""]
    flush_note = "median [min–max] of rounds"
    rows += [
        [
            "flush threads/s | raw put+get_object",
            rate(rounds["flush"]),
            rate(rounds["raw_put_get"]),
            spread(flush_ratios),
            f">= {FLUSH_RATIO_AIM:.2f}",
            f"{verdict(flush_ratio, FLUSH_RATIO_AIM, at_least=True)}; {flush_note}",
        ],
        [
            "flush threads/s | raw put_object",
            rate(rounds["flush"]),
            rate(rounds["raw_put"]),
            spread(put_ratios),
            "",
            f"for reference; {flush_note}",
        ],
        [
            "flush p50 ms | raw put+get_object",
            fmt(flush_run.pct_ms(50), 2),
            fmt(rt_run.pct_ms(50), 2),
            ratio(flush_run.pct_ms(50), rt_run.pct_ms(50)),
            "",
            "all rounds",
        ],
        [
            "flush MB/s (gzip) | raw put+get_object",
            fmt(mb / flush_run.wall, 2) if flush_run.wall else "",
            fmt(mb / rt_run.wall, 2) if rt_run.wall else "",
            ratio(rt_run.wall, flush_run.wall),
            "",
            "",
        ],
        [
            f"flush {args.long:,} msgs p50 ms | raw put",
            fmt(hr["flush"].pct_ms(50)),
            fmt(hr["raw_put"].pct_ms(50)),
            ratio(hr["flush"].pct_ms(50), hr["raw_put"].pct_ms(50)),
            "",
            "",
        ],
        [
            f"hydrate {args.long:,} msgs p50 ms | … + COPY",
            fmt(hr["hydrate"].pct_ms(50)),
            fmt(hr["raw_restore"].pct_ms(50)),
            spread(hydrate_ratios),
            f"<= {HYDRATE_RATIO_AIM:.2f}",
            f"{verdict(hydrate_ratio, HYDRATE_RATIO_AIM, at_least=False)}; "
            "median [min–max] of cycles",
        ],
        [
            f"hydrate {args.long:,} msgs p50 ms | raw get+parse",
            fmt(hr["hydrate"].pct_ms(50)),
            fmt(hr["raw_read"].pct_ms(50)),
            ratio(hr["hydrate"].pct_ms(50), hr["raw_read"].pct_ms(50)),
            "",
            "for reference",
        ],
    ]
    rows.append(
        [
            f"gzip ratio, {n} × {args.messages}-msg snapshots",
            f"{flush['json_bytes'] / flush['gzip_bytes']:.2f}",
            "",
            "",
            "",
            f"{flush['json_bytes'] / n:,.0f} → {flush['gzip_bytes'] / n:,.0f} B each",
        ]
    )
    rows.append(
        [
            f"gzip ratio, {args.long:,}-msg snapshot",
            f"{hydrate['json_bytes'] / hydrate['gzip_bytes']:.2f}",
            "",
            "",
            "",
            f"{hydrate['json_bytes']:,} → {hydrate['gzip_bytes']:,} B",
        ]
    )

    def leftover(label: str, now: int, was: int) -> list[str]:
        return [label, f"{now:,}", f"{was:,}", "", "0", "met" if now == 0 else "NOT MET"]

    rows += [
        leftover("Redis bytes left | before flush", after["redis"][1], before["redis"][1]),
        leftover("Redis keys left | before flush", after["redis"][0], before["redis"][0]),
        leftover("message rows left | before flush", after["rows"], before["rows"]),
        [
            "threads cold | before flush",
            f"{after['cold']:,}",
            f"{before['cold']:,}",
            "",
            f"{n:,}",
            "met" if after["cold"] == n else "NOT MET",
        ],
    ]
    print(table(headers, rows, right={1, 2, 3}))
    print(
        "\nratio = Threadline ÷ baseline (for flushes per round, for hydrates per cycle: "
        "each measured right beside its baseline). Baselines: the same GET on a server without "
        "REDIS_URL; boto3 put_object (and get_object) of the very snapshot bodies, one at a "
        "time, to the same moto_server; for hydrate, get_object + gunzip + json.loads of the "
        "snapshot and of each message, then (… + COPY) one psycopg COPY of those rows into "
        "threads_message."
    )
    runs = {f"get_{k}": v for k, v in get_runs.items()}
    runs.update({f"flush_{k}": v for k, v in fr.items()})
    runs.update({f"long_{k}": v for k, v in hr.items()})
    for name, run in runs.items():
        if run.errors:
            print(
                f"{name}: {len(run.errors)} failed operation(s) (not timed); first: {run.errors[0]}"
            )
    print(f"total time {info['elapsed']:.1f} s")

    return {
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "pg")},
        "postgres": info["postgres"],
        "redis": info["redis"],
        "moto": info["moto"],
        "cpus": os.cpu_count(),
        "load": info["load"],
        "get_bytes": get_bytes,
        "get_ms": {
            k: {"p50": v.pct_ms(50), "p99": v.pct_ms(99), "n": v.count} for k, v in get_runs.items()
        },
        "flush_threads_per_s": flush_run.rate,
        "raw_put_threads_per_s": raw_run.rate,
        "raw_put_get_threads_per_s": rt_run.rate,
        "flush_ratio": flush_ratio,
        "flush_round_ratios": flush_ratios,
        "flush_round_rates": {k: [r.rate for r in v] for k, v in rounds.items()},
        "hydrate_ratio": hydrate_ratio,
        "hydrate_cycle_ratios": hydrate_ratios,
        "flush_mb_per_s": mb / flush_run.wall if flush_run.wall else None,
        "raw_put_mb_per_s": mb / raw_run.wall if raw_run.wall else None,
        "long_ms": {
            k: {"p50": v.pct_ms(50), "all": [x * 1000 for x in v.latencies]} for k, v in hr.items()
        },
        "gzip_ratio_threads": flush["json_bytes"] / flush["gzip_bytes"],
        "gzip_ratio_long": hydrate["json_bytes"] / hydrate["gzip_bytes"],
        "before_flush": {
            "redis_keys": before["redis"][0],
            "redis_bytes": before["redis"][1],
            "rows": before["rows"],
        },
        "after_flush": {
            "redis_keys": after["redis"][0],
            "redis_bytes": after["redis"][1],
            "rows": after["rows"],
            "cold": after["cold"],
        },
        "errors": {name: len(run.errors) for name, run in runs.items() if run.errors},
        "elapsed_s": info["elapsed"],
    }


# --- Main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()[0]

    step(f"recreating database {args.db_name}")
    database_url, pg_version = recreate_database(args.pg, args.db_name)
    redis_client, redis_version = flush_redis(args.redis_url)
    step(f"redis {args.redis_url}: flushed")
    step("migrating")
    manage(
        "migrate",
        "--noinput",
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DATABASE_URL": database_url,
        },
    )

    with contextlib.ExitStack() as stack, moto_server() as endpoint:
        s3 = s3_client(endpoint)
        bucket = "threadline-bench"
        s3.create_bucket(Bucket=bucket)
        step(f"moto_server at {endpoint}, bucket {bucket}")
        setup_django(args, database_url, endpoint, bucket)
        # A deployment's worker (some reads hand the hot-cache fill to it); its broker is the
        # bench's Redis database (setup_django set CELERY_BROKER_URL).
        stack.enter_context(celery_worker(dict(os.environ)))

        sizes = {"get": args.history, "long": args.long, "scratch": 0}
        sizes.update({f"warm {i}": args.messages for i in range(WARMUP_THREADS)})
        sizes.update({f"flush {i}": args.messages for i in range(args.threads)})
        step(f"seeding {len(sizes)} threads, {sum(sizes.values()):,} messages")
        seeded = time.perf_counter()
        key, ids = seed(args, sizes)
        step(f"seeded in {time.perf_counter() - seeded:.1f} s")

        get = bench_get(args, key, ids["get"], redis_client)
        flush_ids = [ids[f"flush {i}"] for i in range(args.threads)]
        warm_ids = [ids[f"warm {i}"] for i in range(WARMUP_THREADS)]
        flush = bench_flush(args, flush_ids, warm_ids, s3, bucket, redis_client)
        hydrate = bench_hydrate(args, ids["long"], ids["scratch"], s3, bucket, redis_client)
        step("stopping moto_server")

    info = {
        "postgres": pg_version,
        "redis": redis_version,
        "moto": metadata.version("moto"),
        "load": load,
        "elapsed": time.perf_counter() - started,
    }
    figures = report(args, info, get, flush, hydrate)
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    run_main(main)
