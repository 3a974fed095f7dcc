"""Handoff throughput and contention through the HTTP API, in one run.

    .venv/bin/python bench/handoffs.py [--handoffs 2000] [--concurrency 4] ...

Creates (drops and recreates) its own PostgreSQL database, migrates it, creates a tenant
and a project (workspace backend `none`), starts gunicorn on a free loopback port, and
measures:

1. single handoffs, POST /api/v1/handoffs/, on distinct sessions: each client owns its own
   thread and a few sessions on it and hands them off round-robin, sending the owner version
   it got back from its previous handoff (handoffs/s, p50, p99);
2. the same-run floor: raw psycopg 3 on persistent connections running a single handoff's
   statements (the read of the source, then its two transactions: thread row lock FOR NO KEY
   UPDATE + conditional UPDATE of the source + INSERT of the handoff and an event, COMMIT;
   conditional claim UPDATE + INSERT of the recipient session and the sub-session + UPDATE
   of the handoff + event, COMMIT) on other sessions, interleaved with (1) round by round
   (`--floor-rounds`);
3. contention: `--contenders` clients (default 32) fire a single handoff at the same session
   with the same expected owner version at once, for `--rounds` rounds; every round must end
   in exactly one commit, the rest 409, and no 5xx.

It prints a fixed-width table: handoffs/s against the floor's, and the contention checks
marked met / not met. It asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import string
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import (
    BenchError,
    Client,
    Run,
    add_common_args,
    gunicorn,
    manage,
    project_env,
    recreate_database,
    require_positive,
    run_concurrent,
    run_main,
    step,
    table,
    write_json,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--handoffs", type=int, default=2000, help="timed handoffs (default 2000)")
    add("--concurrency", type=int, default=4, help="client threads (default 4)")
    add("--sessions", type=int, default=4, help="sessions per client (default 4)")
    add("--warmup", type=int, default=100, help="untimed handoffs first (default 100)")
    add("--contenders", type=int, default=32, help="clients racing on one session (default 32)")
    add("--rounds", type=int, default=10, help="contention rounds (default 10)")
    add(
        "--floor-rounds",
        type=int,
        default=5,
        help="rounds the distinct handoffs are split into, API and floor in turn (default 5)",
    )
    add("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    add("--threads", type=int, default=4, help="gunicorn threads per worker (default 4)")
    add_common_args(
        parser, db_name="threadline_bench_handoffs", redis_help="REDIS_URL for the server"
    )
    args = parser.parse_args(argv)
    names = ("handoffs", "concurrency", "sessions", "contenders", "rounds", "floor_rounds")
    require_positive(parser, args, *names, "workers")
    return args


def server_env(args: argparse.Namespace, database_url: str) -> dict[str, str]:
    extra = {"REDIS_URL": args.redis_url, "API_RATE_LIMIT_PER_MINUTE": "0"}
    return {**os.environ, **project_env(database_url, **extra)}


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


# --- The floor: a single handoff's statements on raw psycopg ---------------------------
# A hand-written copy of what handoffs.services.handoff_execute sends for a single handoff
# with workspace backend none (read; phase 1 "lock"; phase 3 "commit"), with the same rows,
# columns and conditions. No HTTP, no authentication, no ORM, no validation.

READ_SOURCE = (
    "SELECT s.status, s.owner_version, s.current_actor, s.previous_actors, s.depth, "
    "s.thread_id, s.project_id, t.status, p.workspace_backend, p.max_delegation_depth "
    "FROM sessions_app_session s JOIN threads_thread t ON t.id = s.thread_id "
    "JOIN threads_project p ON p.id = s.project_id WHERE s.tenant_id = %s AND s.id = %s"
)
LOCK_THREAD = (
    "SELECT id, tenant_id, project_id, status, lifecycle FROM threads_thread "
    "WHERE id = %s FOR NO KEY UPDATE"
)
LOCK_SOURCE = (
    "UPDATE sessions_app_session SET status = 'locked', lock_token = %s, lock_expires_at = %s, "
    "updated_at = %s WHERE id = %s AND status = 'idle' AND owner_version = %s"
)
INSERT_HANDOFF = (
    "INSERT INTO handoffs_handoff (id, group_id, mode, position, recipient, workspace_backend, "
    "expected_owner_version, outcome, error, created_at, source_session_id, tenant_id, "
    "thread_id) VALUES (%s, %s, 'single', 0, %s, %s, %s, 'pending', '', %s, %s, %s, %s)"
)
INSERT_EVENT = (
    "INSERT INTO threads_event (public_id, thread_id, session_id, kind, payload, created_at, "
    "tenant_id) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
CLAIM_SOURCE = (
    "UPDATE sessions_app_session SET owner_version = %s, lock_token = '', lock_expires_at = NULL, "
    "updated_at = %s, status = 'idle', current_actor = %s, previous_actors = %s "
    "WHERE id = %s AND status = 'locked' AND lock_token = %s AND lock_expires_at > %s"
)
INSERT_SESSION = (
    "INSERT INTO sessions_app_session (id, status, current_actor, previous_actors, owner_version, "
    "depth, lock_token, last_input_tokens, last_cache_read_tokens, last_cache_creation_tokens, "
    "last_output_tokens, created_at, updated_at, project_id, tenant_id, thread_id) "
    "VALUES (%s, 'idle', %s, '[]', 0, %s, '', 0, 0, 0, 0, %s, %s, %s, %s, %s)"
)
INSERT_SUBSESSION = (
    "INSERT INTO sessions_app_subsession (id, kind, status, failure_mode, completion_mode, "
    "archive_key, created_at, updated_at, child_id, parent_id, tenant_id) "
    "VALUES (%s, 'user_handoff', 'idle', 'delegate', 'summary_ref', '', %s, %s, %s, %s, %s)"
)
COMPLETE_HANDOFF = (
    "UPDATE handoffs_handoff SET recipient_session_id = %s, subsession_id = %s, "
    "workspace_id = NULL, outcome = 'committed', new_owner_version = %s, completed_at = %s "
    "WHERE id = %s"
)
_ALPHABET = string.digits + string.ascii_lowercase


def _id(prefix: str) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(12))


def floor_handoff(conn, tenant: str, session: str, expected: int, recipient: dict) -> int:
    """One single handoff of `session` as the service does it; returns the new version."""
    from psycopg.types.json import Jsonb

    with conn.cursor() as cur:
        cur.execute(READ_SOURCE, (tenant, session))
        row = cur.fetchone()
        conn.commit()  # the service reads in autocommit, outside its transactions
        if row is None or row[0] != "idle" or row[7] == "archived" or row[1] != expected:
            raise BenchError(f"floor: session {session} not handed off: {row}")
        _, version, current, previous, depth, thread, project, _, backend, max_depth = row
        if depth + 1 > max_depth:
            raise BenchError("floor: depth")
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=300)
        group = _id("hof")
        # Phase 1: lock.
        cur.execute(LOCK_THREAD, (thread,))
        cur.fetchone()
        cur.execute(LOCK_SOURCE, (group, expires, now, session, expected))
        if cur.rowcount != 1:
            raise BenchError("floor: lock lost")
        cur.execute(
            INSERT_HANDOFF,
            (group, group, Jsonb(recipient), backend, expected, now, session, tenant, thread),
        )
        payload = {
            "handoff": group,
            "mode": "single",
            "recipients": 1,
            "expected_owner_version": expected,
            "lock_expires_at": expires.isoformat(),
        }
        event = (_id("evt"), thread, session, "handoff.locked", Jsonb(payload), now, tenant)
        cur.execute(INSERT_EVENT, event)
        conn.commit()
        # Phase 3: commit (backend none: nothing to provision in between).
        now = datetime.now(UTC)
        new_version = version + 1
        history = [*previous, current] if current is not None else list(previous)
        cur.execute(
            CLAIM_SOURCE,
            (new_version, now, Jsonb(recipient), Jsonb(history), session, group, now),
        )
        if cur.rowcount != 1:
            raise BenchError("floor: lease lost")
        child, edge = _id("ses"), _id("sub")
        cur.execute(
            INSERT_SESSION,
            (child, Jsonb(recipient), depth + 1, now, now, project, tenant, thread),
        )
        cur.execute(INSERT_SUBSESSION, (edge, now, now, child, session, tenant))
        cur.execute(COMPLETE_HANDOFF, (child, edge, new_version, now, group))
        payload = {
            "handoff": group,
            "mode": "single",
            "new_owner_version": new_version,
            "recipient_sessions": [child],
            "handoffs": [group],
        }
        event = (_id("evt"), thread, session, "handoff.committed", Jsonb(payload), now, tenant)
        cur.execute(INSERT_EVENT, event)
    conn.commit()
    return new_version


def floor_distinct(
    conns: list, tenant: str, owned: list[list[str]], versions: dict[str, int], total: int, args
) -> Run:
    """The floor's client w hands off its own sessions round-robin, as distinct() does."""

    def op(conn, w: int, i: int) -> None:
        session = owned[w][i % len(owned[w])]
        versions[session] = floor_handoff(
            conn, tenant, session, versions.get(session, 0), actor(f"{w}-{i}")
        )

    return run_concurrent(workers=args.concurrency, total=total, setup=lambda w: conns[w], op=op)


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


def merged(runs: list[Run]) -> Run:
    out = Run()
    for run in runs:
        out.latencies += run.latencies
        out.wall += run.wall
        out.errors += run.errors
    return out


def report(
    args, info: dict[str, Any], api_rounds: list[Run], floor_rounds: list[Run], contended
) -> dict[str, Any]:
    run, floor = merged(api_rounds), merged(floor_rounds)
    ratio = run.rate / floor.rate if floor.rate else float("nan")
    per_round = [a.rate / f.rate for a, f in zip(api_rounds, floor_rounds, strict=True) if f.rate]
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
        f"distinct: {args.handoffs} single handoffs per side at concurrency {args.concurrency}, "
        f"{args.sessions} session(s) per client, workspace none, API and floor interleaved over "
        f"{args.floor_rounds} round(s); contention: {args.contenders} clients × {args.rounds} "
        "rounds on one session"
    )
    print()
    spread = (
        f"{statistics.median(per_round):.1%} [{min(per_round):.1%}–{max(per_round):.1%}]"
        if per_round
        else ""
    )
    rows = [
        [
            f"handoffs/s (c={args.concurrency})",
            f"{run.rate:,.1f}",
            f"{floor.rate:,.1f}",
            f"{ratio:.1%}",
            spread,
            "",
        ],
        [
            "handoff p50 (ms)",
            f"{run.pct_ms(50):,.2f}",
            f"{floor.pct_ms(50):,.2f}",
            f"{run.pct_ms(50) / floor.pct_ms(50):.1f}x" if floor.latencies else "",
            "",
            "",
        ],
        ["handoff p99 (ms)", f"{run.pct_ms(99):,.2f}", f"{floor.pct_ms(99):,.2f}", "", "", ""],
        [
            "contention: commits per round",
            ",".join(str(c) for c in contended["commits_per_round"]),
            "",
            "",
            "exactly 1",
            "met" if one_commit else "NOT MET",
        ],
        ["contention: 409 conflicts", str(conflicts), "", "", "", ""],
        [
            "contention: 5xx",
            str(contended["server_errors"]),
            "",
            "",
            "0",
            "met" if no_5xx else "NOT MET",
        ],
    ]
    headers = ["measurement", "API", "floor", "API/floor", "per round / target", "result"]
    print(table(headers, rows, right={1, 2, 3}))
    print(
        "floor: raw psycopg running a single handoff's statements (read; lock: thread FOR NO "
        "KEY UPDATE, conditional UPDATE, 2 INSERTs, COMMIT; commit: claim UPDATE, 3 INSERTs, "
        "UPDATE, COMMIT); 'per round': median [min–max] of the rounds' API/floor"
    )
    print(f"409 codes: {contended['conflict_codes']}")
    for name, r in (("distinct", run), ("floor", floor)):
        if r.errors:
            print(f"{name}: {len(r.errors)} failed handoff(s) (not timed); first: {r.errors[0]}")
    print(f"total time {info['elapsed']:.1f} s")
    return {
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "pg")},
        "postgres": info["postgres"],
        "cpus": os.cpu_count(),
        "handoffs_per_s": run.rate,
        "handoff_p50_ms": run.pct_ms(50),
        "handoff_p99_ms": run.pct_ms(99),
        "floor_handoffs_per_s": floor.rate,
        "floor_handoff_p50_ms": floor.pct_ms(50),
        "floor_handoff_p99_ms": floor.pct_ms(99),
        "api_floor_ratio": ratio,
        "api_floor_ratio_per_round": per_round,
        "distinct_errors": len(run.errors),
        "floor_errors": len(floor.errors),
        "contention": contended,
        "targets": {"one_commit": one_commit, "no_5xx": no_5xx},
    }


# --- Main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import psycopg

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

        # One thread per client (and side): every session write takes its thread's row
        # lock, so clients on one thread would measure that lock, not the handoff.
        owned, floor_owned = [], []
        for w in range(args.concurrency):
            thread = new_thread(f"client {w}")
            owned.append([new_session(thread) for _ in range(args.sessions)])
            thread = new_thread(f"floor client {w}")
            floor_owned.append([new_session(thread) for _ in range(args.sessions)])
        contended = new_session(new_thread("contention"))
        admin.close()

        conns = [psycopg.connect(database_url) for _ in range(args.concurrency)]
        try:
            step(f"single handoffs on distinct sessions: {args.warmup} warm-up per side")
            versions: dict[str, int] = {}
            distinct(base, key, owned, versions, args.warmup, args)
            floor_distinct(conns, tenant["tenant"], floor_owned, versions, args.warmup, args)
            shares = [
                args.handoffs // args.floor_rounds
                + (1 if r < args.handoffs % args.floor_rounds else 0)
                for r in range(args.floor_rounds)
            ]
            api_rounds, floor_rounds = [], []
            for r, n in enumerate(shares):
                step(f"round {r + 1}/{args.floor_rounds}: {n} handoffs through the API, {n} floor")
                api_rounds.append(distinct(base, key, owned, versions, n, args))
                floor_rounds.append(
                    floor_distinct(conns, tenant["tenant"], floor_owned, versions, n, args)
                )
        finally:
            for conn in conns:
                conn.close()
        step(f"contention: {args.contenders} clients × {args.rounds} rounds")
        contended_result = contention(base, key, contended, args)
        step("stopping gunicorn")

    info = {"postgres": pg_version, "elapsed": time.perf_counter() - started, "load": load}
    figures = report(args, info, api_rounds, floor_rounds, contended_result)
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    run_main(main)
