"""Handoff throughput and contention through the HTTP API, in one run, beside a baseline.

    .venv/bin/python bench/handoffs.py [--handoffs 2000] [--concurrency 4] \
        [--baseline-commit 9444d00] ...

Creates (drops and recreates) its own PostgreSQL database, migrates it, creates a tenant
and a project (workspace backend `none`), starts gunicorn on a free loopback port, and
the same for the baseline: a temporary `git worktree` of `--baseline-commit` (default
9444d00, the commit issue 9 was filed against; `none` to skip), its own database migrated
by its own manage.py, its own gunicorn on the same venv, served with that tree's
gunicorn.conf.py or, if it has none (9444d00 has none), as its bench served it then
(`gunicorn config.wsgi -w W --threads T`: gthread). Then it measures:

1. single handoffs, POST /api/v1/handoffs/, on distinct sessions: each client owns its own
   thread and a few sessions on it and hands them off round-robin, sending the owner version
   it got back from its previous handoff (handoffs/s, p50, p99), on both servers in turn,
   round by round (`--floor-rounds`: baseline, current, floor, baseline, ...), with the CPU
   each server and its PostgreSQL backends spent per handoff (/proc);
2. the same-run floor: raw psycopg 3 on persistent connections running a single handoff's
   statements (the read of the source, then its two transactions: thread row lock FOR NO KEY
   UPDATE + conditional UPDATE of the source + INSERT of the handoff and an event, COMMIT;
   conditional claim UPDATE + INSERT of the recipient session and the sub-session + UPDATE
   of the handoff + event, COMMIT) on other sessions, interleaved with (1) round by round
   (`--floor-rounds`);
3. contention: `--contenders` clients (default 32) fire a single handoff at the same session
   with the same expected owner version at once, for `--rounds` rounds; every round must end
   in exactly one commit, the rest 409, and no 5xx.

It prints a fixed-width table: handoffs/s and CPU per handoff against the same-run baseline
(the median of the rounds' ratios, [min–max]) and the floor's, and the contention checks
marked met / not met. It asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    BenchError,
    Client,
    Run,
    add_common_args,
    database_url,
    gunicorn,
    manage,
    merged,
    proc_table,
    process_tree,
    project_env,
    recreate_database,
    require_positive,
    run_concurrent,
    run_main,
    server_pid,
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
    add(
        "--baseline-commit",
        default="9444d00",
        help="commit measured beside the working tree, same rounds (default 9444d00; none: skip)",
    )
    add(
        "--baseline-redis-url",
        default=None,
        help="REDIS_URL for the baseline's server (default: --redis-url)",
    )
    add_common_args(
        parser, db_name="threadline_bench_handoffs", redis_help="REDIS_URL for the server"
    )
    args = parser.parse_args(argv)
    names = ("handoffs", "concurrency", "sessions", "contenders", "rounds", "floor_rounds")
    require_positive(parser, args, *names, "workers")
    return args


def server_env(
    args: argparse.Namespace, database_url: str, redis_url: str, root: Path = REPO
) -> dict[str, str]:
    # PYTHONPATH: the checkout's code before the venv's editable install of the project.
    extra = {"REDIS_URL": redis_url, "API_RATE_LIMIT_PER_MINUTE": "0", "PYTHONPATH": str(root)}
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
# A hand-written copy of what handoffs.services.handoff_execute wrote for a single handoff
# with workspace backend none (read; phase 1 "lock"; phase 3 "commit"), with the same rows,
# columns and conditions, one statement each as the ORM sent them (the service now combines
# them: 7 round trips to these 12 statements and 4 commands; kept, so the floor's figures
# compare from run to run). No HTTP, no authentication, no ORM, no validation.

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


# --- The two servers -------------------------------------------------------------------


@dataclass
class Side:
    """One server under test: the working tree ("current") or the baseline commit."""

    name: str
    database: str
    base: str = ""
    key: str = ""
    owned: list[list[str]] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    rounds: list[Run] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # server + its backends, s per round
    pg_cpu: list[float] = field(default_factory=list)  # of which its backends


@contextlib.contextmanager
def baseline_tree(commit: str):
    """A temporary detached `git worktree` of `commit`, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="bench-handoffs-baseline-"))
    git = ["git", "-C", str(REPO)]
    try:
        done = subprocess.run(
            [*git, "worktree", "add", "--detach", str(path), commit],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BenchError(f"git worktree add {commit}: {done.stderr.strip()}")
        yield path
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(path)], capture_output=True)
        subprocess.run([*git, "worktree", "prune"], capture_output=True)


def prepare(args, side: Side, root: Path, redis_url: str) -> tuple[dict[str, str], dict]:
    """(Re)create and migrate the side's database with its own manage.py; its tenant."""
    step(f"{side.name}: recreating database {side.database}, migrating")
    url, version = recreate_database(args.pg, side.database)
    env = server_env(args, url, redis_url, root)
    manage("migrate", "--noinput", env=env, root=root)
    out = manage("create_tenant", "bench", "--json", env=env, root=root)
    tenant = json.loads(out.strip().splitlines()[-1])
    return env, {"tenant": tenant, "url": url, "postgres": version}


def populate(side: Side, args, floor: bool) -> tuple[list[list[str]], str]:
    """Each client's thread and sessions (and the floor's, and the contended session, when
    `floor`) through the side's API."""
    admin = Client(side.base, side.key)
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
    floor_owned: list[list[str]] = []
    for w in range(args.concurrency):
        thread = new_thread(f"client {w}")
        side.owned.append([new_session(thread) for _ in range(args.sessions)])
        if floor:
            thread = new_thread(f"floor client {w}")
            floor_owned.append([new_session(thread) for _ in range(args.sessions)])
    contended = new_session(new_thread("contention")) if floor else ""
    admin.close()
    return floor_owned, contended


class CpuProbe:
    """CPU seconds a side's gunicorn (arbiter and workers) and the PostgreSQL client
    backends of its database spent between two samples (/proc, clock-tick resolution: a
    round is hundreds of handoffs)."""

    def __init__(self, pg_url: str):
        import psycopg

        self.conn = psycopg.connect(database_url(pg_url, "postgres"), autocommit=True)

    def sample(self, side: Side) -> tuple[dict, set[int], set[int]]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s "
            "AND backend_type = 'client backend'",
            (side.database,),
        ).fetchall()
        table = proc_table()
        return table, process_tree(table, server_pid(side.base)), {pid for (pid,) in rows}

    @staticmethod
    def spent(before: tuple, after: tuple) -> tuple[float, float]:
        """(server, PostgreSQL backends) CPU seconds from `before` to `after`."""
        (t0, s0, b0), (t1, s1, b1) = before, after

        def of(pids: set[int]) -> float:
            return sum(t1[p].cpu - (t0[p].cpu if p in t0 else 0.0) for p in pids if p in t1)

        return of(s0 | s1), of(b0 | b1)

    def close(self) -> None:
        self.conn.close()


# --- Report ----------------------------------------------------------------------------


def _spread(ratios: list[float], fmt: str = "{:.2f}x") -> str:
    if not ratios:
        return ""
    low, mid, high = min(ratios), statistics.median(ratios), max(ratios)
    return f"{fmt.format(mid)} [{fmt.format(low)}–{fmt.format(high)}]"


def _cpu_ms(side: Side, pg: bool = False) -> float:
    count = sum(r.count for r in side.rounds)
    return sum(side.pg_cpu if pg else side.cpu) / count * 1000 if count else float("nan")


def report(
    args,
    info: dict[str, Any],
    current: Side,
    baseline: Side | None,
    floor_rounds: list[Run],
    contended,
) -> dict[str, Any]:
    run, floor = merged(current.rounds), merged(floor_rounds)
    old = merged(baseline.rounds) if baseline else None
    pairs = zip(current.rounds, floor_rounds, strict=True)
    vs_floor = [a.rate / f.rate for a, f in pairs if f.rate]
    vs_old: list[float] = []
    cpu_vs_old: list[float] = []
    if baseline:
        pairs = zip(current.rounds, baseline.rounds, strict=True)
        vs_old = [a.rate / b.rate for a, b in pairs if b.rate]
        cpu_pairs = zip(current.rounds, current.cpu, baseline.rounds, baseline.cpu, strict=True)
        cpu_vs_old = [
            (bc / b.count) / (ac / a.count)
            for a, ac, b, bc in cpu_pairs
            if a.count and b.count and ac > 0
        ]
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
        f"{args.sessions} session(s) per client, workspace none, "
        + (f"baseline {info['baseline']}, " if baseline else "")
        + f"current and floor interleaved over {args.floor_rounds} round(s); contention: "
        f"{args.contenders} clients × {args.rounds} rounds on one session (current)"
    )
    print()
    na = "—"
    rows = [
        [
            f"handoffs/s (c={args.concurrency})",
            f"{old.rate:,.1f}" if old else na,
            f"{run.rate:,.1f}",
            f"{floor.rate:,.1f}",
            _spread(vs_old),
            _spread(vs_floor, "{:.1%}"),
        ],
        [
            "handoff p50 (ms)",
            f"{old.pct_ms(50):,.2f}" if old else na,
            f"{run.pct_ms(50):,.2f}",
            f"{floor.pct_ms(50):,.2f}",
            f"{old.pct_ms(50) / run.pct_ms(50):.2f}x" if old and run.latencies else "",
            "",
        ],
        [
            "handoff p99 (ms)",
            f"{old.pct_ms(99):,.2f}" if old else na,
            f"{run.pct_ms(99):,.2f}",
            f"{floor.pct_ms(99):,.2f}",
            "",
            "",
        ],
        [
            "server + PostgreSQL CPU per handoff (ms)",
            f"{_cpu_ms(baseline):,.2f}" if baseline else na,
            f"{_cpu_ms(current):,.2f}",
            "",
            _spread(cpu_vs_old),
            "",
        ],
        [
            "  of which PostgreSQL backends (ms)",
            f"{_cpu_ms(baseline, pg=True):,.2f}" if baseline else na,
            f"{_cpu_ms(current, pg=True):,.2f}",
            "",
            "",
            "",
        ],
    ]
    headers = ["measurement", "baseline", "current", "floor", "current/baseline", "current/floor"]
    print(table(headers, rows, right={1, 2, 3}))
    print(
        "current/baseline and current/floor: the median [min–max] of the rounds' ratios "
        "(handoffs/s: higher is better; p50 and CPU: baseline's over current's, higher is "
        "better). CPU: the server's processes and its database's PostgreSQL backends, /proc."
    )
    print(
        "floor: raw psycopg running a single handoff's statements (read; lock: thread FOR NO "
        "KEY UPDATE, conditional UPDATE, 2 INSERTs, COMMIT; commit: claim UPDATE, 3 INSERTs, "
        "UPDATE, COMMIT)"
    )
    print()
    checks = [
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
    print(table(["check (current)", "seen", "target", "result"], checks, right={1}))
    print(f"409 codes: {contended['conflict_codes']}")
    sides = [("current", run), ("floor", floor)] + ([("baseline", old)] if old else [])
    for name, r in sides:
        if r.errors:
            print(f"{name}: {len(r.errors)} failed handoff(s) (not timed); first: {r.errors[0]}")
    print(f"total time {info['elapsed']:.1f} s")
    figures: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "pg")},
        "postgres": info["postgres"],
        "cpus": os.cpu_count(),
        "handoffs_per_s": run.rate,
        "handoff_p50_ms": run.pct_ms(50),
        "handoff_p99_ms": run.pct_ms(99),
        "cpu_ms_per_handoff": _cpu_ms(current),
        "pg_cpu_ms_per_handoff": _cpu_ms(current, pg=True),
        "floor_handoffs_per_s": floor.rate,
        "floor_handoff_p50_ms": floor.pct_ms(50),
        "floor_handoff_p99_ms": floor.pct_ms(99),
        "api_floor_ratio": run.rate / floor.rate if floor.rate else float("nan"),
        "api_floor_ratio_per_round": vs_floor,
        "distinct_errors": len(run.errors),
        "floor_errors": len(floor.errors),
        "contention": contended,
        "targets": {"one_commit": one_commit, "no_5xx": no_5xx},
    }
    if old and baseline:
        figures["baseline"] = {
            "commit": info["baseline"],
            "handoffs_per_s": old.rate,
            "handoff_p50_ms": old.pct_ms(50),
            "handoff_p99_ms": old.pct_ms(99),
            "cpu_ms_per_handoff": _cpu_ms(baseline),
            "pg_cpu_ms_per_handoff": _cpu_ms(baseline, pg=True),
            "errors": len(old.errors),
            "current_baseline_ratio_per_round": vs_old,
            "baseline_current_cpu_ratio_per_round": cpu_vs_old,
        }
    return figures


# --- Main ------------------------------------------------------------------------------


def timed_round(probe: CpuProbe, side: Side, n: int, args) -> None:
    before = probe.sample(side)
    side.rounds.append(distinct(side.base, side.key, side.owned, side.versions, n, args))
    server, backends = probe.spent(before, probe.sample(side))
    side.cpu.append(server + backends)
    side.pg_cpu.append(backends)


def main(argv: list[str] | None = None) -> int:
    import psycopg

    args = parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    commit = args.baseline_commit if args.baseline_commit.lower() != "none" else ""
    extra = ["--threads", str(args.threads)] if args.threads > 1 else []

    with contextlib.ExitStack() as stack:
        current = Side("current", args.db_name)
        env, made = prepare(args, current, REPO, args.redis_url)
        current.key, tenant = made["tenant"]["api_key"], made["tenant"]["tenant"]
        info: dict[str, Any] = {"postgres": made["postgres"], "load": load}
        url = made["url"]
        baseline = None
        if commit:
            resolved = subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", f"{commit}^{{commit}}"],
                capture_output=True,
                text=True,
            )
            if resolved.returncode != 0:
                raise BenchError(f"unknown baseline commit {commit}: {resolved.stderr.strip()}")
            info["baseline"] = resolved.stdout.strip()
            step(f"baseline: git worktree of {info['baseline']}")
            root = stack.enter_context(baseline_tree(commit))
            baseline = Side("baseline", f"{args.db_name}_baseline")
            old_env, old = prepare(args, baseline, root, args.baseline_redis_url or args.redis_url)
            baseline.key = old["tenant"]["api_key"]
            served = "its gunicorn.conf.py" if (root / "gunicorn.conf.py").exists() else "no config"
            step(f"baseline: starting gunicorn ({served})")
            baseline.base = stack.enter_context(
                gunicorn(env=old_env, workers=args.workers, extra_args=extra, root=root)
            )
            populate(baseline, args, floor=False)

        step(f"current: starting gunicorn ({args.workers} workers × {args.threads} threads)")
        current.base = stack.enter_context(
            gunicorn(env=env, workers=args.workers, extra_args=extra)
        )
        step(f"server at {current.base}; creating threads and sessions")
        floor_owned, contended = populate(current, args, floor=True)
        sides = [s for s in (baseline, current) if s is not None]

        probe = CpuProbe(args.pg)
        stack.callback(probe.close)
        conns = [psycopg.connect(url) for _ in range(args.concurrency)]
        for conn in conns:
            stack.callback(conn.close)
        floor_versions: dict[str, int] = {}
        step(f"single handoffs on distinct sessions: {args.warmup} warm-up per side")
        for side in sides:
            distinct(side.base, side.key, side.owned, side.versions, args.warmup, args)
        floor_distinct(conns, tenant, floor_owned, floor_versions, args.warmup, args)
        shares = [
            args.handoffs // args.floor_rounds + (1 if r < args.handoffs % args.floor_rounds else 0)
            for r in range(args.floor_rounds)
        ]
        floor_rounds = []
        for r, n in enumerate(shares):
            names = ", ".join(s.name for s in sides)
            step(f"round {r + 1}/{args.floor_rounds}: {n} handoffs each through {names}, floor")
            for side in sides:
                timed_round(probe, side, n, args)
            floor_rounds.append(floor_distinct(conns, tenant, floor_owned, floor_versions, n, args))
        step(f"contention: {args.contenders} clients × {args.rounds} rounds")
        contended_result = contention(current.base, current.key, contended, args)
        step("stopping the servers")

    info["elapsed"] = time.perf_counter() - started
    figures = report(args, info, current, baseline, floor_rounds, contended_result)
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    run_main(main)
