"""The dashboard and /metrics on big tables: 100,000 threads, 1,000,000 messages and
2,000,000 events in their own PostgreSQL database, against the COUNTs they avoid.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/threadline_bench_dashboard \\
        .venv/bin/python bench/dashboard.py

Prints the median of 5 rounds of: the dashboard's figures (console.dashboard, what the
admin index computes), a /metrics scrape's database figures, and the floors they avoid —
SELECT COUNT(*) over the events and the messages, and the per-kind GROUP BY over the events
that a dashboard without the tally would run. Interleaved round by round.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ.setdefault(
    "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/threadline_bench_dashboard"
)
os.environ.setdefault("REDIS_URL", "")
os.environ.setdefault("LOG_LEVEL", "WARNING")

THREADS, MESSAGES, EVENTS = 100_000, 1_000_000, 2_000_000


def ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"]
    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def seed() -> None:
    from django.core.management import call_command
    from django.db import connection, transaction

    call_command("migrate", verbosity=0)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM threads_thread")
        if cur.fetchone()[0] >= THREADS:
            return
        print("seeding …", flush=True)
        cur.execute(
            "INSERT INTO threads_tenant (id, name, created_at) VALUES ('tnt_bench', 'b', now())"
        )
        cur.execute(
            "INSERT INTO threads_project (id, tenant_id, name, max_delegation_depth,"
            " max_delegation_width, max_intervention_depth, workspace_backend, created_at,"
            " updated_at) VALUES ('prj_bench', 'tnt_bench', 'p', 4, 8, 10, 'none', now(), now())"
        )
        cur.execute(
            f"""
            INSERT INTO threads_thread (id, tenant_id, project_id, title, metadata, status,
              lifecycle, tier, version, history_version, last_seq, message_count,
              token_estimate, reasoning_effort, compaction_threshold_percent,
              compaction_context_window, compaction_keep_last, warming_enabled,
              warming_interval_s, warming_max_idle_warms, idle_warm_count, last_input_tokens,
              last_cache_read_tokens, last_cache_creation_tokens, last_output_tokens, cold_key,
              cold_bytes, created_at, updated_at, last_activity_at)
            SELECT 'thd_b' || g, 'tnt_bench', 'prj_bench', '', '{{}}', 'open',
              (ARRAY['active','idle','closed'])[1 + g % 3],
              CASE WHEN g % 4 = 0 THEN 'cold' ELSE 'hot' END,
              1, 1, 10, CASE WHEN g % 4 = 0 THEN 0 ELSE 10 END, 100, 'high', 85, 200000, 10,
              false, 240, 12, 0, 0, 0, 0, 0, CASE WHEN g % 4 = 0 THEN 'k' || g ELSE '' END,
              CASE WHEN g % 4 = 0 THEN 2000 END, now(), now(), now()
            FROM generate_series(1, {THREADS}) g
            """
        )
        cur.execute(
            f"""
            INSERT INTO threads_message (thread_id, message_id, seq, role, content, metadata,
              token_estimate, created_at)
            SELECT 'thd_b' || (1 + g / 10), 'm' || g, 1 + g % 10, 'user', '"hello"', '{{}}',
              2, now()
            FROM generate_series(0, {MESSAGES - 1}) g
            """
        )
        cur.execute(
            f"""
            INSERT INTO threads_event (public_id, tenant_id, thread_id, kind, payload, created_at)
            SELECT 'evt_b' || g, 'tnt_bench', 'thd_b' || (1 + g % {THREADS}),
              (ARRAY['thread.created', 'session.turn_settled', 'warm.completed',
                     'thread.flushed'])[1 + g % 4],
              CASE WHEN g % 4 = 1
                THEN '{{"usage": {{"input_tokens": 10, "cache_read_tokens": 90}}}}'
                   ELSE '{{}}' END::jsonb,
              now() - interval '2 days' + (g * interval '1 millisecond') / 20
            FROM generate_series(1, {EVENTS}) g
            """
        )
    with connection.cursor() as cur:
        cur.execute("ANALYZE")


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    ensure_database()
    import django

    django.setup()
    from django.db import connection

    from console.dashboard import dashboard_context
    from console.metrics import DatabaseCollector
    from console.tally import tallies_read

    seed()
    started = time.perf_counter()
    reads = 0
    while tallies_read().lag:
        reads += 1
    print(
        f"tally catch-up over {EVENTS:,} events: {reads + 1} reads, "
        f"{time.perf_counter() - started:.1f} s (once per database)"
    )

    def sql(statement: str):
        def run():
            with connection.cursor() as cur:
                cur.execute(statement)
                cur.fetchall()

        return run

    cases = {
        "dashboard figures": dashboard_context,
        "metrics (database part)": lambda: list(DatabaseCollector().collect()),
        "floor: COUNT(*) events": sql("SELECT count(*) FROM threads_event"),
        "floor: events GROUP BY kind": sql(
            "SELECT kind, count(*) FROM threads_event GROUP BY kind"
        ),
        "floor: COUNT(*) messages": sql("SELECT count(*) FROM threads_message"),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(5):
        for name, fn in cases.items():
            samples[name].append(timed(fn))
    for name, values in samples.items():
        print(
            f"{name:32s} p50 {statistics.median(values):8.1f} ms"
            f"  [{min(values):.1f}–{max(values):.1f}]"
        )


if __name__ == "__main__":
    main()
