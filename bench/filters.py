"""The `metadata.<key>=<value>` thread filter at scale, against the title-prefix search, in
one run.

    .venv/bin/python bench/filters.py [--threads 100000] [--rounds 5] [--requests 40]

Recreates its own database, makes one project with `--threads` threads (inserted with one
INSERT … SELECT from generate_series: each thread's metadata is {"customer": "c<i % 1000>",
"n": i}, so a customer matches 1 thread in 1,000), starts gunicorn and measures, interleaved
round by round:

1. `GET /api/v1/threads?metadata.customer=c<k>&limit=100` (a containment, served by the GIN
   index thread_metadata_gin);
2. `GET /api/v1/threads?q=<title prefix>&limit=100` matching as many threads (the b-tree
   path the aim compares with).

It prints p50/p99 per side, their ratio and the EXPLAIN of the metadata query the API runs
(the plan must name the index). It asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from _common import (
    BenchError,
    Client,
    add_common_args,
    gunicorn,
    manage,
    project_env,
    recreate_database,
    run_main,
    run_sequential,
    step,
    table,
    write_json,
)

CUSTOMERS = 1000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--threads", type=int, default=100_000, help="threads in the project (100,000)")
    add("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    add("--requests", type=int, default=40, help="requests per side per round (default 40)")
    add("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    add_common_args(parser, db_name="threadline_bench_filters")
    args = parser.parse_args(argv)
    if args.threads < CUSTOMERS:
        parser.error(f"--threads must be at least {CUSTOMERS}")
    return args


def seed(database_url: str, template: str, count: int) -> None:
    """`count` copies of the thread `template` (made through the API), in one statement: a
    new id, title, metadata and creation time each, every other column as the API wrote it."""
    import psycopg
    from psycopg import sql

    made = {
        "id": sql.SQL("'thd_b' || lpad(i::text, 11, '0')"),
        "title": sql.SQL("'thread ' || lpad((i % {})::text, 4, '0') || ' ' || i").format(CUSTOMERS),
        "metadata": sql.SQL("jsonb_build_object('customer', 'c' || (i % {}), 'n', i)").format(
            CUSTOMERS
        ),
        "created_at": sql.SQL("t.created_at - make_interval(secs => i)"),
    }
    with psycopg.connect(database_url) as conn:
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'threads_thread' ORDER BY ordinal_position"
            )
        ]
        values = [made.get(c, sql.SQL("t.") + sql.Identifier(c)) for c in columns]
        conn.execute(
            sql.SQL(
                "INSERT INTO threads_thread ({}) SELECT {} FROM threads_thread t, "
                "generate_series(1, {}) AS i WHERE t.id = {}"
            ).format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(values),
                count,
                template,
            )
        )
        conn.execute("ANALYZE threads_thread")


def explain(env: dict[str, str], tenant: str, customer: str) -> str:
    """The plan of the query the list endpoint runs for ?metadata.customer=<customer>."""
    code = (
        "import django, json, sys; django.setup()\n"
        "from django.db import connection\n"
        "from threads.models import Thread\n"
        "from threads.selectors import metadata_filter\n"
        f"query = Thread.objects.filter(tenant_id={tenant!r}).filter(metadata_filter("
        f"{{'metadata.customer': {customer!r}}})).defer('state').order_by('created_at', 'id')"
        "[:101]\n"
        "sql, params = query.query.sql_with_params()\n"
        "cursor = connection.cursor(); cursor.execute('EXPLAIN ' + sql, params)\n"
        "print('\\n'.join(row[0] for row in cursor.fetchall()))\n"
    )
    return manage("shell", "--no-imports", "-c", code, env=env)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load = time.perf_counter(), os.getloadavg()[0]
    step(f"recreating database {args.db_name}")
    database_url, pg_version = recreate_database(args.pg, args.db_name)
    extra = {"REDIS_URL": "", "API_RATE_LIMIT_PER_MINUTE": "0", "CELERY_BROKER_URL": "memory://"}
    env = {**os.environ, **project_env(database_url, **extra)}
    manage("migrate", "--noinput", env=env)
    tenant = json.loads(
        manage("create_tenant", "bench", "--json", env=env).strip().splitlines()[-1]
    )
    figures: dict = {"threads": args.threads, "postgresql": pg_version, "load": load}
    with gunicorn(env=env, workers=args.workers) as base:
        client = Client(base, tenant["api_key"])
        project = client.json("POST", "/api/v1/projects/", {"name": "bench"}, expect=201)["id"]
        template = client.json(
            "POST", "/api/v1/threads/", {"project": project, "title": "template"}, expect=201
        )["id"]
        step(f"seeding {args.threads:,} threads")
        seed(database_url, template, args.threads)
        per_value = args.threads // CUSTOMERS
        sides = {
            "metadata": lambda i: (
                f"/api/v1/threads?metadata.customer=c{(i * 7) % CUSTOMERS}&limit=100"
            ),
            "title prefix": lambda i: (
                f"/api/v1/threads?q=thread%20{(i * 7) % CUSTOMERS:04d}%20&limit=100"
            ),
        }
        # Both sides find the same number of threads (one customer = one title prefix).
        for name, path in sides.items():
            found = len(client.json("GET", path(3))["results"])
            if found != min(per_value, 100):
                raise BenchError(f"{name}: {found} threads found, expected {min(per_value, 100)}")
        runs: dict[str, list[float]] = {name: [] for name in sides}
        ratios = []
        for round_no in range(args.rounds):
            step(f"round {round_no + 1} of {args.rounds}")
            medians = {}
            for name, path in sides.items():

                def op(i: int, path=path, offset=round_no * args.requests) -> None:
                    status, data = client.raw("GET", path(offset + i))
                    if status != 200:
                        raise BenchError(f"GET → {status}: {data[:200]!r}")

                run = run_sequential(total=args.requests, op=op)
                runs[name] += run.latencies
                medians[name] = statistics.median(run.latencies)
            ratios.append(medians["metadata"] / medians["title prefix"])
        client.close()
        plan = explain(env, tenant["tenant"], "c42")

    def ms(values: list[float], q: float) -> str:
        ordered = sorted(values)
        return f"{ordered[int((len(ordered) - 1) * q)] * 1000:.2f}"

    rows = [[name, ms(values, 0.5), ms(values, 0.99), len(values)] for name, values in runs.items()]
    ratio = statistics.median(ratios)
    print(
        f"\nthread filters — {args.threads:,} threads in one project, {per_value} match each "
        f"value; PostgreSQL {pg_version}; load average {load:.2f} at start; "
        f"{args.rounds} interleaved rounds × {args.requests} requests per side\n"
    )
    print(table(["side", "p50 ms", "p99 ms", "requests"], rows, right={1, 2, 3}))
    print(
        f"\nmetadata ÷ title prefix, p50: {ratio:.2f}x [{min(ratios):.2f}–{max(ratios):.2f}] "
        f"— aim ≤ 2x: {'met' if ratio <= 2 else 'NOT MET'}"
    )
    uses_index = "thread_metadata_gin" in plan
    print(f"\nEXPLAIN of ?metadata.customer=c42 (index used: {'yes' if uses_index else 'NO'}):")
    print(plan.rstrip())
    print(f"\ntotal time {time.perf_counter() - started:.1f} s")
    figures.update(
        p50_ms={name: float(ms(values, 0.5)) for name, values in runs.items()},
        ratio=ratio,
        ratios=ratios,
        plan=plan,
        index_used=uses_index,
    )
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    run_main(main)
