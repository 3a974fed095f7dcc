"""Handoff throughput and contention through the HTTP API, in one run.

    .venv/bin/python bench/handoffs.py [--handoffs 2000] [--concurrency 4] ...

Creates (drops and recreates) its own PostgreSQL database, migrates it, creates a tenant
and a project (workspace backend `none`), starts gunicorn on a free loopback port, and
measures:

1. single handoffs, POST /api/v1/handoffs/, on distinct sessions: each client owns its own
   thread and a few sessions on it and hands them off round-robin, sending the owner version
   it got back from its previous handoff (handoffs/s, p50, p99);
2. contention: `--contenders` clients (default 32) fire a single handoff at the same session
   with the same expected owner version at once, for `--rounds` rounds; every round must end
   in exactly one commit, the rest 409, and no 5xx.

It prints a fixed-width table with the targets of issue 3 marked met / not met. It asserts
nothing about timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
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
    table,
    write_json,
)

RATE_TARGET = 100.0  # single handoffs/s on distinct sessions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--handoffs", type=int, default=2000, help="timed handoffs (default 2000)")
    add("--concurrency", type=int, default=4, help="client threads (default 4)")
    add("--sessions", type=int, default=4, help="sessions per client (default 4)")
    add("--warmup", type=int, default=100, help="untimed handoffs first (default 100)")
    add("--contenders", type=int, default=32, help="clients racing on one session (default 32)")
    add("--rounds", type=int, default=10, help="contention rounds (default 10)")
    add("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    add("--threads", type=int, default=4, help="gunicorn threads per worker (default 4)")
    add_common_args(
        parser, db_name="threadline_bench_handoffs", redis_help="REDIS_URL for the server"
    )
    args = parser.parse_args(argv)
    for name in ("handoffs", "concurrency", "sessions", "contenders", "rounds", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def server_env(args: argparse.Namespace, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=database_url,
        DJANGO_DEBUG="false",
        REDIS_URL=args.redis_url,
        API_RATE_LIMIT_PER_MINUTE="0",
        LOG_LEVEL="WARNING",
    )
    return env


def actor(n: int | str) -> dict[str, str]:
    return {"kind": "agent", "id": f"agent-{n}"}


# --- Distinct sessions -----------------------------------------------------------------


def distinct(
    base: str, key: str, owned: list[list[str]], versions: dict[str, int], total: int, args
) -> Run:
    """Client w hands off its own sessions round-robin, tracking their owner versions in
    `versions` (shared by the warm-up and the timed run)."""
    lock = threading.Lock()

    def setup(w: int) -> Client:
        return Client(base, key)

    def op(client: Client, w: int, i: int) -> None:
        session = owned[w][i % len(owned[w])]
        with lock:
            version = versions.get(session, 0)
        body = {
            "mode": "single",
            "source_session": session,
            "expected_owner_version": version,
            "recipients": [actor(f"{w}-{i}")],
        }
        status, data = client.raw("POST", "/api/v1/handoffs/", body)
        if status != 201:
            raise BenchError(f"handoff → {status}: {data[:200]!r}")
        with lock:
            versions[session] = json.loads(data)["new_owner_version"]

    return run_concurrent(
        workers=args.concurrency, total=total, setup=setup, op=op, teardown=Client.close
    )


# --- Contention ------------------------------------------------------------------------


def one_round(clients: list[Client], session: str, version: int, tag: str) -> list[tuple]:
    """Every client POSTs a single handoff of `session` at `version` at once."""
    barrier = threading.Barrier(len(clients))
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def fire(n: int) -> None:
        body = {
            "mode": "single",
            "source_session": session,
            "expected_owner_version": version,
            "recipients": [actor(f"{tag}-{n}")],
        }
        barrier.wait(30)
        try:
            result = clients[n].raw("POST", "/api/v1/handoffs/", body)
        except Exception as exc:  # a dropped connection counts as a failure
            result = (599, str(exc).encode())
        with lock:
            results.append(result)

    threads = [threading.Thread(target=fire, args=(n,)) for n in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def contention(base: str, key: str, session: str, args) -> dict[str, Any]:
    """`rounds` rounds of `contenders` simultaneous handoffs with the same expected version."""
    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    commits_per_round: list[int] = []
    clients = [Client(base, key) for _ in range(args.contenders)]
    reader = Client(base, key)
    try:
        for round_no in range(args.rounds):
            version = reader.json("GET", f"/api/v1/sessions/{session}/")["owner_version"]
            results = one_round(clients, session, version, f"r{round_no}")
            commits_per_round.append(sum(1 for status, _ in results if status == 201))
            for status, data in results:
                statuses[status] += 1
                if 400 <= status < 500:
                    try:
                        codes[json.loads(data)["error"]["code"]] += 1
                    except (ValueError, KeyError):
                        codes["?"] += 1
    finally:
        for client in [*clients, reader]:
            client.close()
    return {
        "commits_per_round": commits_per_round,
        "statuses": dict(statuses),
        "conflict_codes": dict(codes),
        "server_errors": sum(count for status, count in statuses.items() if status >= 500),
    }


# --- Report ----------------------------------------------------------------------------


def report(args, info: dict[str, Any], run: Run, contended: dict[str, Any]) -> dict[str, Any]:
    rate_met = run.rate >= RATE_TARGET
    one_commit = all(c == 1 for c in contended["commits_per_round"])
    no_5xx = contended["server_errors"] == 0
    conflicts = sum(c for s, c in contended["statuses"].items() if s == 409)
    print()
    print(
        f"Threadline handoff benchmark — gunicorn {args.workers} workers × {args.threads} "
        f"threads, PostgreSQL {info['postgres']}, {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]}, load average {info['load']:.2f} at start"
    )
    print(
        f"distinct: {args.handoffs} single handoffs at concurrency {args.concurrency}, "
        f"{args.sessions} session(s) per client, workspace none; contention: "
        f"{args.contenders} clients × {args.rounds} rounds on one session"
    )
    print()
    rows = [
        [
            f"handoffs/s (c={args.concurrency})",
            f"{run.rate:,.1f}",
            f">= {RATE_TARGET:.0f}",
            "met" if rate_met else "NOT MET",
        ],
        ["handoff p50 (ms)", f"{run.pct_ms(50):,.2f}", "", ""],
        ["handoff p99 (ms)", f"{run.pct_ms(99):,.2f}", "", ""],
        [
            "contention: commits per round",
            ",".join(str(c) for c in contended["commits_per_round"]),
            "exactly 1",
            "met" if one_commit else "NOT MET",
        ],
        ["contention: 409 conflicts", str(conflicts), "", ""],
        [
            "contention: 5xx",
            str(contended["server_errors"]),
            "0",
            "met" if no_5xx else "NOT MET",
        ],
    ]
    print(table(["measurement", "value", "target", "result"], rows, right={1}))
    print(f"409 codes: {contended['conflict_codes']}")
    if run.errors:
        print(f"distinct: {len(run.errors)} failed handoff(s) (not timed); first: {run.errors[0]}")
    print(f"total time {info['elapsed']:.1f} s")
    return {
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "pg")},
        "postgres": info["postgres"],
        "cpus": os.cpu_count(),
        "handoffs_per_s": run.rate,
        "handoff_p50_ms": run.pct_ms(50),
        "handoff_p99_ms": run.pct_ms(99),
        "distinct_errors": len(run.errors),
        "contention": contended,
        "targets": {"rate": rate_met, "one_commit": one_commit, "no_5xx": no_5xx},
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
    step("migrating")
    manage("migrate", "--noinput", env=env)
    tenant = json.loads(
        manage("create_tenant", "bench", "--json", env=env).strip().splitlines()[-1]
    )
    key = tenant["api_key"]

    extra = ["--threads", str(args.threads)] if args.threads > 1 else []
    step(f"starting gunicorn ({args.workers} workers × {args.threads} threads)")
    with gunicorn(env=env, workers=args.workers, extra_args=extra) as base:
        step(f"server at {base}; creating threads and sessions")
        admin = Client(base, key)
        body = {"name": "bench", "workspace_backend": "none"}
        project = admin.json("POST", "/api/v1/projects/", body, expect=201)["id"]

        def new_thread(title: str) -> str:
            body = {"project": project, "title": title}
            return admin.json("POST", "/api/v1/threads/", body, expect=201)["id"]

        def new_session(thread: str) -> str:
            body = {"thread": thread, "actor": {"kind": "user", "id": "bench"}}
            return admin.json("POST", "/api/v1/sessions/", body, expect=201)["id"]

        # One thread per client: every session write takes its thread's row lock, so
        # clients on one thread would measure that lock, not the handoff.
        owned = []
        for w in range(args.concurrency):
            thread = new_thread(f"client {w}")
            owned.append([new_session(thread) for _ in range(args.sessions)])
        contended = new_session(new_thread("contention"))
        admin.close()

        step(f"single handoffs on distinct sessions: {args.warmup} warm-up, {args.handoffs} timed")
        versions: dict[str, int] = {}
        distinct(base, key, owned, versions, args.warmup, args)
        run = distinct(base, key, owned, versions, args.handoffs, args)
        step(f"contention: {args.contenders} clients × {args.rounds} rounds")
        contended_result = contention(base, key, contended, args)
        step("stopping gunicorn")

    info = {"postgres": pg_version, "elapsed": time.perf_counter() - started, "load": load}
    figures = report(args, info, run, contended_result)
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    run_main(main)
