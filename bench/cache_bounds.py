"""What a long or large thread costs a reader, whatever the hot cache holds, in one run.

    .venv/bin/python bench/cache_bounds.py [--long 10000] [--appenders 3] [--big 100] ...

Creates (drops and recreates) its own PostgreSQL database, empties its Redis database (5 by
default), starts gunicorn (gunicorn.conf.py) and a Celery worker (the hot-cache fill runs
there, as in a deployment), seeds through the API and measures:

1. **Appends racing a fill**: a `--long`-message thread whose cache keys are dropped, then
   `--appenders` clients append to it without pause while one reader GETs its first page
   (`limit=100`), interleaved read by read with the same page of a small thread that is
   hot (the baseline). Every read also samples Redis: is the thread's cache current (its
   `hv` equals the row's `history_version` and the set is complete)? After the appenders
   stop: how long until the cache is current. Issue 9's aim: a page of a long thread costs
   about twice a hot page at most, and appends racing a rebuild do not keep the cache empty.
2. **A thread of `--big` messages of `--big-bytes` each** (100 × 1 MB: over
   HOT_CACHE_MAX_BYTES, so never cached; its rows written with SQL, so the workers never
   parsed them): `GET …?limit=1`, interleaved with the hot thread's `limit=1`; and the RSS
   of the gunicorn workers (VmRSS after, and the peak VmHWM) against their RSS before.
   Issue 9 measured 2.2 s and 400 MB before the bounds.

Prints a table; asserts nothing about timings. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time

from _common import (
    REPO,
    BenchError,
    Client,
    add_common_args,
    bench_broker_env,
    celery_worker,
    gunicorn,
    manage,
    percentile,
    proc_table,
    process_tree,
    project_env,
    recreate_database,
    require_positive,
    run_main,
    server_pid,
    step,
    table,
    wait_hot_cache,
    write_json,
)

sys.path.insert(0, str(REPO))  # wait_hot_cache reads the cache's key layout from threads


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--long", type=int, default=10_000, help="messages of the long thread (10,000)")
    add("--appenders", type=int, default=3, help="clients appending during the race (3)")
    add("--race-reads", type=int, default=150, help="reads of each side during the race")
    add("--big", type=int, default=100, help="messages of the large thread (100)")
    add("--big-bytes", type=int, default=1_000_000, help="characters per large message (1 MB)")
    add("--big-reads", type=int, default=20, help="reads of each side of the large thread")
    add("--workers", type=int, default=2, help="gunicorn workers (2)")
    add_common_args(
        parser, db_name="threadline_bench_bounds", redis_help="REDIS_URL (flushed first)"
    )
    args = parser.parse_args(argv)
    require_positive(parser, args, "long", "appenders", "race_reads", "big", "big_reads")
    return args


def timed(client: Client, path: str) -> float:
    started = time.perf_counter()
    status, _ = client.raw("GET", path)
    if status != 200:
        raise BenchError(f"GET {path} → {status}")
    return time.perf_counter() - started


def seed(client: Client, project: str, title: str, count: int, text: str, batch: int) -> str:
    thread = client.json("POST", "/api/v1/threads/", {"project": project, "title": title}, 201)
    for start in range(0, count, batch):
        n = min(batch, count - start)
        body = {"messages": [{"role": "user", "content": text} for _ in range(n)]}
        client.json("POST", f"/api/v1/threads/{thread['id']}/messages", body, 201)
    return thread["id"]


class CacheProbe:
    """Is a thread's hot cache current? Redis meta hv == the row's history_version and the
    sorted set holds meta n members (the cache's own rule for a hit)."""

    def __init__(self, redis_url: str, database_url: str):
        import psycopg
        import redis

        self.redis = redis.Redis.from_url(redis_url)
        self.pg = psycopg.connect(database_url, autocommit=True)

    def current(self, thread_id: str) -> bool:
        meta, messages = f"tl:{{{thread_id}}}:meta", f"tl:{{{thread_id}}}:messages"
        hv, n = self.redis.hmget(meta, "hv", "n")
        row = self.pg.execute(
            "SELECT history_version FROM threads_thread WHERE id = %s", [thread_id]
        ).fetchone()
        if hv is None or n is None or row is None:
            return False
        return int(hv) == row[0] and self.redis.zcard(messages) == int(n)

    def drop(self, thread_id: str) -> None:
        self.redis.delete(*(f"tl:{{{thread_id}}}:{k}" for k in ("meta", "messages", "state")))


def workers_rss(base: str) -> tuple[int, int]:
    """(sum of VmRSS, sum of VmHWM) of the gunicorn workers of `base`, in bytes."""
    root = server_pid(base)
    rss = hwm = 0
    for pid in process_tree(proc_table(), root) - {root}:
        with contextlib.suppress(OSError):
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    hwm += int(line.split()[1]) * 1024
    return rss, hwm


def race(args, base, key, project, hot, probe) -> dict:
    client = Client(base, key)
    step(f"seeding a {args.long:,}-message thread")
    long = seed(client, project, "long", args.long, "x" * 200, 1000)
    url = f"/api/v1/threads/{long}/messages?limit=100"
    hot_url = f"/api/v1/threads/{hot}/messages?limit=100"
    wait_hot_cache(args.redis_url, long, args.long, lambda: client.raw("GET", url))
    filled_hot = timed(client, url)  # a hit, for the record
    probe.drop(long)
    stop, appended, errors = threading.Event(), [0] * args.appenders, []

    def append(i: int) -> None:
        me = Client(base, key)
        body = {"messages": [{"role": "user", "content": "racing " * 20}]}
        while not stop.is_set():
            status, data = me.raw("POST", f"/api/v1/threads/{long}/messages", body)
            if status != 201:
                errors.append(f"{status} {data[:200]!r}")
                return
            appended[i] += 1
        me.close()

    step(f"{args.appenders} appenders racing the fill; {args.race_reads} reads of each side")
    appenders = [threading.Thread(target=append, args=(i,)) for i in range(args.appenders)]
    for t in appenders:
        t.start()
    long_s, hot_s, current = [], [], 0
    try:
        for _ in range(args.race_reads):
            long_s.append(timed(client, url))
            hot_s.append(timed(client, hot_url))
            current += probe.current(long)
    finally:
        stop.set()
        for t in appenders:
            t.join()
    if errors:
        raise BenchError(f"an append failed: {errors[0]}")
    stopped = time.perf_counter()
    settled = None
    while time.perf_counter() - stopped < 30:
        client.raw("GET", url)
        if probe.current(long):
            settled = time.perf_counter() - stopped
            break
        time.sleep(0.1)
    return {
        "long_p50_ms": percentile(long_s, 50) * 1000,
        "long_p99_ms": percentile(long_s, 99) * 1000,
        "hot_p50_ms": percentile(hot_s, 50) * 1000,
        "ratio_p50": percentile(long_s, 50) / percentile(hot_s, 50),
        "filled_hit_ms": filled_hot * 1000,
        "current_share": current / args.race_reads,
        "appends": sum(appended),
        "settled_s": settled,
    }


def big(args, base, key, project, hot, probe) -> dict:
    client = Client(base, key)
    step(f"seeding {args.big} messages of {args.big_bytes:,} characters with SQL (not the API:")
    step("  the workers' RSS below is then what the reads cost, not what parsing a seed did)")
    thread = client.json("POST", "/api/v1/threads/", {"project": project, "title": "big"}, 201)
    thread = thread["id"]
    tokens = 4 + -(-args.big_bytes // 4)  # message_format.estimate_tokens of the text
    with probe.pg.transaction():
        probe.pg.execute(
            "INSERT INTO threads_message (thread_id, message_id, seq, role, content, metadata, "
            "token_estimate, created_at) SELECT %s, 'big' || g, g, 'user', "
            "to_jsonb(repeat('y', %s)), '{}'::jsonb, %s, now() FROM generate_series(1, %s) g",
            [thread, args.big_bytes, tokens, args.big],
        )
        probe.pg.execute(
            "UPDATE threads_thread SET last_seq = %s, message_count = %s, token_estimate = %s, "
            "history_version = history_version + 1 WHERE id = %s",
            [args.big, args.big, tokens * args.big, thread],
        )
    url, hot_url = (
        f"/api/v1/threads/{thread}/messages?limit=1",
        f"/api/v1/threads/{hot}/messages?limit=1",
    )
    rss_before, _ = workers_rss(base)
    big_s, hot_s, rss_peak = [], [], 0
    for _ in range(args.big_reads):
        big_s.append(timed(client, url))
        hot_s.append(timed(client, hot_url))
        rss_peak = max(rss_peak, workers_rss(base)[0])
    rss_after, hwm = workers_rss(base)
    return {
        "big_p50_ms": percentile(big_s, 50) * 1000,
        "big_max_ms": max(big_s) * 1000,
        "hot_p50_ms": percentile(hot_s, 50) * 1000,
        "ratio_p50": percentile(big_s, 50) / percentile(hot_s, 50),
        "rss_before_mb": rss_before / 1e6,
        "rss_after_mb": rss_after / 1e6,
        "rss_peak_sampled_mb": rss_peak / 1e6,
        "hwm_mb": hwm / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()[0]
    step(f"recreating database {args.db_name}")
    database_url, pg_version = recreate_database(args.pg, args.db_name)
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    env = bench_broker_env(
        {
            **os.environ,
            **project_env(database_url, REDIS_URL=args.redis_url, API_RATE_LIMIT_PER_MINUTE="0"),
        },
        args.redis_url,
    )
    manage("migrate", "--noinput", env=env)
    key = json.loads(manage("create_tenant", "bench", "--json", env=env).splitlines()[-1])[
        "api_key"
    ]
    probe = CacheProbe(args.redis_url, database_url)
    with gunicorn(env=env, workers=args.workers) as base, celery_worker(env):
        client = Client(base, key)
        project = client.json("POST", "/api/v1/projects/", {"name": "bench"}, 201)["id"]
        hot = seed(client, project, "hot", 100, "x" * 200, 100)
        hot_url = f"/api/v1/threads/{hot}/messages?limit=100"
        if not wait_hot_cache(args.redis_url, hot, 100, lambda: client.raw("GET", hot_url)):
            raise BenchError("the small thread never became hot")
        raced = race(args, base, key, project, hot, probe)
        large = big(args, base, key, project, hot, probe)

    def ms(v: float) -> str:
        return f"{v:.1f}"

    print(
        f"\nPostgreSQL {pg_version}, load average {load:.1f} at start, gunicorn "
        f"{args.workers} gunicorn.conf.py workers + a Celery worker (fills)\n"
    )
    print(
        table(
            ["measurement", "long / large", "hot page", "ratio"],
            [
                [
                    f"first page (limit=100) of a {args.long:,}-message thread, "
                    f"{args.appenders} appenders racing its fill, p50 ms (p99)",
                    f"{ms(raced['long_p50_ms'])} ({ms(raced['long_p99_ms'])})",
                    ms(raced["hot_p50_ms"]),
                    f"{raced['ratio_p50']:.2f}",
                ],
                [
                    f"GET limit=1 of {args.big} × {args.big_bytes:,} chars, p50 ms (max)",
                    f"{ms(large['big_p50_ms'])} ({ms(large['big_max_ms'])})",
                    ms(large["hot_p50_ms"]),
                    f"{large['ratio_p50']:.2f}",
                ],
            ],
        )
    )
    settled = raced["settled_s"]
    after = f"was current after {settled:.1f} s" if settled is not None else "NOT current in 30 s"
    print(
        f"\nduring the race: {raced['appends']:,} appends; the cache was current at "
        f"{raced['current_share']:.0%} of the reads' samples; after the appenders stopped it "
        + after
        + f"\nworkers' RSS around the large reads: {large['rss_before_mb']:.0f} MB before, "
        f"{large['rss_after_mb']:.0f} MB after, {large['rss_peak_sampled_mb']:.0f} MB "
        f"highest sampled, peak (VmHWM) {large['hwm_mb']:.0f} MB"
    )
    write_json(args.json, {"race": raced, "big": large, "load": load, "postgresql": pg_version})
    return 0


if __name__ == "__main__":
    run_main(main)
