"""Threadline against its peers and the floors, the same workloads interleaved in one run.

    .venv/bin/python bench/peers.py [--rounds 5] [--appends 400] [--reads 30] ...

Peers: LangGraph's dev server (`langgraph dev`, in-memory runtime) serving a one-node messages
graph, LangGraph's PostgreSQL checkpointer (langgraph-checkpoint-postgres, for the bytes a
thread stores), and the OpenAI Agents SDK's SQLAlchemySession on PostgreSQL (asyncpg). They
are installed on first use into their own virtualenv, bench/.peers-venv (pinned in
bench/peers-requirements.txt), and run in subprocesses with its python: nothing of theirs is
imported here. A peer that cannot be installed or started is reported as "unavailable: <why>"
and the rest carries on; no figure is ever made up.

Floors: the least the same work costs on this machine, measured in the same run: one psycopg
transaction doing what an append must (lock the thread row FOR NO KEY UPDATE, look up the ids,
INSERT, UPDATE the counters, COMMIT); the raw SELECT of 1,000 rows; a raw Redis ZRANGE of the
cached thread + JSON parse.

Workloads, in rounds (each round runs every system once per workload, A B C A B C …; each
round's appends go to fresh threads):
1. append 1 message at concurrency 4 (appends/s, CPU per append of the server, PostgreSQL
   backends and Redis) and at concurrency 1 (p50);
2. read a 1,000-message thread (p50), parsed into Python objects;
3. create a thread (p50);
4. bytes stored for a 1,000-message thread built one message at a time (once, at setup).

It prints min / median / max over the rounds, Threadline ÷ each system (the median of the
per-round ratios), and the goals of the issue as met / not met. It asserts nothing.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    BenchError,
    Client,
    Run,
    add_common_args,
    bench_broker_env,
    celery_worker,
    database_url,
    free_port,
    gunicorn,
    http_server,
    manage,
    proc_table,
    process_tree,
    project_env,
    recreate_database,
    require_positive,
    run_concurrent,
    run_main,
    run_sequential,
    server_pid,
    step,
    table,
    wait_hot_cache,
    worker_args,
    write_json,
)
from _floor import SELECT, fair_append

BENCH = Path(__file__).resolve().parent
PEERS_VENV = BENCH / ".peers-venv"
PEERS_APP = BENCH / "peers_app"
REQUIREMENTS = BENCH / "peers-requirements.txt"
PEER_PACKAGES = (
    "langgraph-cli",
    "langgraph-api",
    "langgraph-runtime-inmem",
    "langgraph",
    "langgraph-checkpoint-postgres",
    "openai-agents",
    "SQLAlchemy",
    "asyncpg",
)
VOCABULARY = (
    "the a to of and in is it that for on with as was at be this by from or have an not are "
    "deploy failed because migration locked billing table retry after rollback service "
    "request timeout error log trace user assistant tool call result returns value config "
    "file path branch commit review test passed build cache database index query latency "
    "queue worker task session thread message summary token context window prompt agent"
).split()

# Goals of the issue: (key, text, figure it reads, comparison, bound).
GOALS = (
    ("append_vs_langgraph", "append c=4 >= 1.5x LangGraph dev server", ">=", 1.5),
    ("append_vs_floor", "append c=4 >= 35 % of the fair floor", ">=", 0.35),
    ("cpu_per_append", "CPU per append <= 6 ms (server + PostgreSQL + Redis)", "<=", 6.0),
    ("c1_vs_floor", "append p50 at c=1 <= 3x the fair floor", "<=", 3.0),
    ("read_hot_vs_langgraph", "read 1,000 hot p50 <= LangGraph's state read", "<=", 1.0),
    ("read_hot_vs_redis", "read 1,000 hot p50 <= 1.3x the raw Redis floor", "<=", 1.3),
    ("read_pg_vs_select", "read 1,000 from PostgreSQL p50 <= 1.3x the raw SELECT", "<=", 1.3),
    ("create_vs_langgraph", "create thread p50 <= 1.5x LangGraph's POST /threads", "<=", 1.5),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    add("--appends", type=int, default=400, help="appends at c=4 per system per round (400)")
    add("--appends-c1", type=int, help="appends at c=1 per system per round (default appends/4)")
    add("--concurrency", type=int, default=4, help="clients of the c=4 appends (default 4)")
    add("--reads", type=int, default=30, help="reads per system per round (default 30)")
    add("--creates", type=int, default=30, help="thread creations per system per round (30)")
    add("--history", type=int, default=1000, help="messages of the read/bytes thread (1000)")
    add("--content-bytes", type=int, default=200, help="message text length (default 200)")
    add("--warmup", type=int, default=50, help="appends per system in the untimed warm-up (50)")
    add("--workers", type=int, default=2, help="gunicorn workers per Threadline server (2)")
    add(
        "--threads",
        type=int,
        default=0,
        help="threads per gunicorn worker (0: as gunicorn.conf.py serves, the default; 1: sync)",
    )
    add(
        "--rate-limit",
        type=int,
        default=10_000_000,
        help="API_RATE_LIMIT_PER_MINUTE (default: the throttle runs but never refuses)",
    )
    add("--python", default="python3.11", help="interpreter the peers' venv is made with")
    add("--no-peers", action="store_true", help="Threadline and the floors only")
    add_common_args(parser, db_name="threadline_peers", redis_help="Redis database (flushed)")
    args = parser.parse_args(argv)
    if args.appends_c1 is None:
        args.appends_c1 = max(20, args.appends // 4)
    require_positive(
        parser,
        args,
        *("rounds", "appends", "appends_c1", "concurrency", "reads", "creates", "history"),
    )
    if args.history > 1000:
        parser.error("--history is read in one page; at most 1000")
    return args


def make_texts(n: int, length: int) -> list[str]:
    """`n` distinct message texts of `length` characters, words drawn from a small English-like
    vocabulary with a fixed seed: every system stores the very same texts."""
    rng = random.Random(20240601)
    return [" ".join(rng.choices(VOCABULARY, k=length // 3 + 1))[:length] for _ in range(n)]


# --- The peers' virtualenv -------------------------------------------------------------


def peers_python(interpreter: str) -> tuple[str | None, str]:
    """The peers' venv python, installing it first when missing or when
    peers-requirements.txt changed; (None, why) when that fails."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return str(python), ""
    found = shutil.which(interpreter)
    if found is None and not python.exists():
        return None, f"{interpreter} not found (--python) to create {PEERS_VENV}"
    step(
        f"installing the peers into {PEERS_VENV.relative_to(BENCH.parent)} (once; a minute or two)"
    )
    try:
        if not python.exists():
            subprocess.run(
                [found, "-m", "venv", str(PEERS_VENV)], check=True, capture_output=True, text=True
            )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            + ["-r", str(REQUIREMENTS)],
            check=True,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except subprocess.CalledProcessError as exc:
        lines = [ln for ln in (exc.stderr or "").splitlines() if not ln.startswith("WARNING")]
        return None, f"installing the peers failed: {' | '.join(lines[-3:])[:400]}"
    except subprocess.TimeoutExpired:
        return None, "installing the peers took over 30 minutes"
    stamp.write_text(wanted)
    return str(python), ""


def peer_versions(python: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: out[name] = 'missing'\n"
        "print(json.dumps(out))"
    )
    proc = subprocess.run(
        [python, "-c", code, *PEER_PACKAGES], capture_output=True, text=True, timeout=60
    )
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


# --- CPU accounting --------------------------------------------------------------------


class CpuProbe:
    """CPU seconds spent, between two samples, by an app's processes, by the PostgreSQL
    backends of the bench's databases (client backends only: not autovacuum) and by
    redis-server. /proc has clock-tick resolution (10 ms); a segment is hundreds of ops."""

    def __init__(self, pg_url: str, databases: list[str]):
        import psycopg

        self.conn = psycopg.connect(database_url(pg_url, "postgres"), autocommit=True)
        self.databases = databases

    def _backends(self) -> set[int]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) "
            "AND backend_type = 'client backend'",
            (self.databases,),
        ).fetchall()
        return {pid for (pid,) in rows}

    def sample(self) -> tuple[dict, set[int]]:
        return proc_table(), self._backends()

    @staticmethod
    def _spent(before: dict, after: dict, pids: set[int]) -> float:
        return sum(
            after[p].cpu - (before[p].cpu if p in before else 0.0) for p in pids if p in after
        )

    def delta(self, before, after, app: Callable[[dict], set[int]], redis: bool) -> dict:
        (t0, pg0), (t1, pg1) = before, after
        out = {
            "app": self._spent(t0, t1, app(t1)),
            "pg": self._spent(t0, t1, pg0 | pg1),
            "redis": 0.0,
        }
        if redis:
            pids = {pid for pid, proc in t1.items() if proc.comm == "redis-server"}
            out["redis"] = self._spent(t0, t1, pids)
        return out

    def close(self) -> None:
        self.conn.close()


# --- The systems -----------------------------------------------------------------------


class Threadline:
    """The API through gunicorn: `hot` with REDIS_URL (the production path), `cold` the same
    database without it (every read from PostgreSQL)."""

    name, uses_redis, client_is_app = "threadline", True, False

    def __init__(self, hot: str, key: str, project: str, texts: list[str], worker: int):
        self.hot, self.key, self.project, self.texts = hot, key, project, texts
        self.worker = worker
        self.admin = Client(hot, key)

    def app_pids(self, table: dict) -> set[int]:
        # The server with Redis and the Celery worker beside it (a deployment runs one).
        return process_tree(table, server_pid(self.hot)) | process_tree(table, self.worker)

    def new_threads(self, n: int, tag: str) -> list[str]:
        body = {"project": self.project, "title": tag}
        return [
            self.admin.json("POST", "/api/v1/threads/", body, expect=201)["id"] for _ in range(n)
        ]

    def append(self, ids: list[str], total: int, tag: str) -> Run:
        def op(client: Client, w: int, i: int) -> None:
            message = {
                "id": f"{tag}-{w}-{i}",
                "role": "user" if i % 2 == 0 else "assistant",
                "content": self.texts[i % len(self.texts)],
            }
            status, data = client.raw(
                "POST", f"/api/v1/threads/{ids[w]}/messages", {"messages": [message]}
            )
            if status != 201:
                raise BenchError(f"append → {status}: {data[:200]!r}")

        return run_concurrent(
            workers=len(ids),
            total=total,
            setup=lambda w: Client(self.hot, self.key),
            op=op,
            teardown=Client.close,
        )

    def reader(self, base: str, thread: str, expect: int) -> Callable[[int], Run]:
        path = f"/api/v1/threads/{thread}/messages?limit={expect}"

        def run(total: int) -> Run:
            client = Client(base, self.key)

            def op(i: int) -> None:
                status, data = client.raw("GET", path)
                if status != 200:
                    raise BenchError(f"GET → {status}: {data[:200]!r}")
                if len(json.loads(data)["results"]) != expect:
                    raise BenchError("short page")

            try:
                return run_sequential(total=total, op=op)
            finally:
                client.close()

        return run

    def creator(self, total: int) -> Run:
        client = Client(self.hot, self.key)
        body = {"project": self.project, "title": "created"}

        def op(i: int) -> None:
            status, data = client.raw("POST", "/api/v1/threads/", body)
            if status != 201:
                raise BenchError(f"POST /threads/ → {status}: {data[:200]!r}")
            json.loads(data)

        try:
            return run_sequential(total=total, op=op)
        finally:
            client.close()

    def healthz(self, total: int) -> Run:
        """GET /healthz on the same server: what gunicorn + Django cost a request that does
        no work (no database, no authentication) — the HTTP stack's share of a create."""
        client = Client(self.hot, self.key)

        def op(i: int) -> None:
            status, data = client.raw("GET", "/healthz")
            if status != 200:
                raise BenchError(f"GET /healthz → {status}: {data[:200]!r}")

        try:
            return run_sequential(total=total, op=op)
        finally:
            client.close()

    def close(self) -> None:
        self.admin.close()


class Floor:
    """The fair floor (bench/_floor.py): psycopg 3 on persistent connections, one
    transaction per append with an append's statements, in the bench's own process (its CPU
    is the app's)."""

    name, uses_redis, client_is_app = "floor", False, True

    def __init__(self, db_url: str, tenant: str, workers: int, texts: list[str], new_threads):
        import psycopg

        self.tenant, self.texts = tenant, texts
        self.new_threads = new_threads  # Threadline threads, made through the API (untimed)
        self.conns = [psycopg.connect(db_url) for _ in range(workers)]
        self.db_url, self.create_conn = db_url, None

    def app_pids(self, table: dict) -> set[int]:
        return set()  # the bench's own process: counted as its CPU time

    def append(self, ids: list[str], total: int, tag: str) -> Run:
        def op(conn, w: int, i: int) -> None:
            role = "user" if i % 2 == 0 else "assistant"
            text = self.texts[i % len(self.texts)]
            fair_append(
                conn,
                thread=ids[w],
                tenant=self.tenant,
                message_id=f"{tag}-{w}-{i}",
                role=role,
                text=text,
            )

        return run_concurrent(workers=len(ids), total=total, setup=lambda w: self.conns[w], op=op)

    def select_reader(self, thread: str, expect: int) -> Callable[[int], Run]:
        conn = self.conns[0]

        def run(total: int) -> Run:
            def op(i: int) -> None:
                rows = conn.execute(SELECT, (thread, 0, expect)).fetchall()
                conn.commit()
                if len(rows) != expect:
                    raise BenchError(f"SELECT returned {len(rows)} rows")

            return run_sequential(total=total, op=op)

        return run

    def creator(self, total: int) -> Run:
        """The floor of a create: one INSERT of a thread row, committed (autocommit), on a
        persistent connection. It copies a Threadline thread's row (every column but the
        id), so it writes what a create writes to the thread table — without the event row,
        the project check, HTTP or authentication."""
        import psycopg

        if self.create_conn is None:
            self.create_conn = psycopg.connect(self.db_url, autocommit=True)
            template = self.new_threads(1, "create-floor")[0]
            names = self.create_conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = "
                "'threads_thread' AND column_name <> 'id' ORDER BY ordinal_position"
            ).fetchall()
            columns = ", ".join(f'"{name}"' for (name,) in names)
            self.create_sql = (
                f'INSERT INTO "threads_thread" ("id", {columns}) SELECT %s, {columns} '
                f'FROM "threads_thread" WHERE "id" = %s'
            )
            self.template = template
        conn, sql, template = self.create_conn, self.create_sql, self.template

        def op(i: int) -> None:
            conn.execute(sql, (f"thd_f{uuid.uuid4().hex[:12]}", template))

        return run_sequential(total=total, op=op)

    def close(self) -> None:
        for conn in [*self.conns, *([self.create_conn] if self.create_conn else [])]:
            conn.close()


def redis_reader(url: str, key: str, expect: int) -> Callable[[int], Run]:
    """ZRANGEBYSCORE of the thread's cached messages (the members are the API's JSON of each
    message) and json.loads of each: what a hit costs without the API around it."""
    import redis

    client = redis.Redis.from_url(url)

    def run(total: int) -> Run:
        def op(i: int) -> None:
            members = client.zrangebyscore(key, "(0", "+inf", start=0, num=expect)
            if len([json.loads(m) for m in members]) != expect:
                raise BenchError(f"ZRANGE returned {len(members)} members")

        return run_sequential(total=total, op=op)

    return run


class LangGraphDev:
    """`langgraph dev` (in-memory runtime, file persistence off, no reload, no browser, no
    tracing) serving peers_app/graph.py; state writes and reads through its REST API."""

    name, uses_redis, client_is_app = "langgraph", False, False

    def __init__(self, base: str, pid: int, texts: list[str]):
        self.base, self.pid, self.texts = base, pid, texts
        self.admin = Client(base)

    def app_pids(self, table: dict) -> set[int]:
        return process_tree(table, self.pid)

    def new_threads(self, n: int, tag: str) -> list[str]:
        body = {"metadata": {"graph_id": "messages", "tag": tag}}
        return [self.admin.json("POST", "/threads", body)["thread_id"] for _ in range(n)]

    def message(self, tag: str, i: int) -> dict:
        kind = "human" if i % 2 == 0 else "ai"
        return {"type": kind, "content": self.texts[i % len(self.texts)], "id": f"{tag}-{i}"}

    def append(self, ids: list[str], total: int, tag: str) -> Run:
        def op(client: Client, w: int, i: int) -> None:
            body = {"values": {"messages": [self.message(f"{tag}-{w}", i)]}}
            status, data = client.raw("POST", f"/threads/{ids[w]}/state", body)
            if status not in (200, 201):
                raise BenchError(f"POST state → {status}: {data[:200]!r}")

        return run_concurrent(
            workers=len(ids),
            total=total,
            setup=lambda w: Client(self.base),
            op=op,
            teardown=Client.close,
        )

    def fill(self, thread: str, n: int, batch: int = 100) -> None:
        for start in range(0, n, batch):
            messages = [self.message("h", i) for i in range(start, min(start + batch, n))]
            self.admin.json("POST", f"/threads/{thread}/state", {"values": {"messages": messages}})

    def reader(self, thread: str, expect: int) -> Callable[[int], Run]:
        def run(total: int) -> Run:
            client = Client(self.base)

            def op(i: int) -> None:
                status, data = client.raw("GET", f"/threads/{thread}/state")
                if status != 200:
                    raise BenchError(f"GET state → {status}: {data[:200]!r}")
                if len(json.loads(data)["values"]["messages"]) != expect:
                    raise BenchError("short state")

            try:
                return run_sequential(total=total, op=op)
            finally:
                client.close()

        return run

    def creator(self, total: int) -> Run:
        client = Client(self.base)
        body = {"metadata": {"graph_id": "messages"}}

        def op(i: int) -> None:
            status, data = client.raw("POST", "/threads", body)
            if status != 200:
                raise BenchError(f"POST /threads → {status}: {data[:200]!r}")
            json.loads(data)

        try:
            return run_sequential(total=total, op=op)
        finally:
            client.close()

    def close(self) -> None:
        self.admin.close()


class Agents:
    """OpenAI Agents SDK SQLAlchemySession (asyncpg) in peers_app/agents_worker.py, a
    subprocess of the peers' python that runs each timed batch itself."""

    name, uses_redis, client_is_app = "agents", False, False

    def __init__(self, python: str, url: str, pool: int, texts: list[str]):
        self.texts = texts
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [python, str(PEERS_APP / "agents_worker.py")],
            cwd=PEERS_APP,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )
        self.postgres = self.call({"op": "setup", "url": url, "pool": pool})["postgres"]

    def call(self, cmd: dict) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            raise BenchError(f"agents worker exited {self.proc.poll()}: {self.log.read()[-2000:]}")
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise BenchError(f"agents worker, {cmd['op']}: {answer['error']}\n{answer['tb']}")
        return answer

    def app_pids(self, table: dict) -> set[int]:
        return {self.proc.pid}

    def new_threads(self, n: int, tag: str) -> list[str]:
        ids = [f"{tag}-{uuid.uuid4().hex[:12]}" for _ in range(n)]
        self.call({"op": "sessions", "ids": ids})
        return ids

    def append(self, ids: list[str], total: int, tag: str) -> Run:
        answer = self.call({"op": "append", "ids": ids, "total": total, "texts": self.texts})
        return Run(latencies=answer["latencies"], wall=answer["wall"], errors=answer["errors"])

    def fill(self, session: str, n: int, batch: int = 1) -> None:
        self.call({"op": "fill", "id": session, "n": n, "texts": self.texts, "batch": batch})

    def reader(self, session: str, expect: int) -> Callable[[int], Run]:
        def run(total: int) -> Run:
            answer = self.call({"op": "read", "id": session, "total": total, "expect": expect})
            return Run(latencies=answer["latencies"], wall=sum(answer["latencies"]))

        return run

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.log.close()


# --- Bytes stored ----------------------------------------------------------------------


def relation_bytes(db_url: str) -> int:
    """Heap + indexes + TOAST of every table in the database's public schema."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        return int(
            conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r'"
            ).fetchone()[0]
        )


def row_bytes(db_url: str, tables: dict[str, str], value: str) -> tuple[int, int]:
    """(rows, bytes as stored: pg_column_size of every column, compressed where PostgreSQL
    compressed it) of the rows of `tables` ({table: column}) whose column = `value`."""
    import psycopg
    from psycopg import sql

    rows = size = 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name, column in tables.items():
            columns = [
                c
                for (c,) in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = %s",
                    (name,),
                )
            ]
            total = sql.SQL(" + ").join(
                sql.SQL("coalesce(pg_column_size({}), 0)").format(sql.Identifier(c))
                for c in columns
            )
            query = sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {} WHERE {} = %s").format(
                total, sql.Identifier(name), sql.Identifier(column)
            )
            n, b = conn.execute(query, (value,)).fetchone()
            rows, size = rows + int(n), size + int(b)
    return rows, size


def redis_bytes(url: str, keys: list[str]) -> int:
    import redis

    client = redis.Redis.from_url(url)
    return sum(client.memory_usage(k, samples=0) or 0 for k in keys)


def langgraph_checkpointer_bytes(python: str, db_url: str, texts: list[str], n: int) -> dict:
    """A thread of `n` messages through PostgresSaver, one invoke() each, in a subprocess."""
    pg_url = db_url.replace("postgres://", "postgresql://", 1)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(texts, f)
    script = str(PEERS_APP / "checkpointer_fill.py")

    def fill(count: int) -> dict:
        proc = subprocess.run(
            [python, script, pg_url, "bytes", str(count), f.name],
            cwd=PEERS_APP,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if proc.returncode != 0:
            raise BenchError(
                f"checkpointer_fill.py exited {proc.returncode}: {proc.stderr[-1500:]}"
            )
        return json.loads(proc.stdout.strip().splitlines()[-1])

    try:
        fill(0)  # the saver's tables, empty
        before = relation_bytes(db_url)
        started = time.perf_counter()
        out = fill(n)
        elapsed = time.perf_counter() - started
    finally:
        os.unlink(f.name)
    rows, size = row_bytes(db_url, {t: "thread_id" for t in out["tables"]}, out["thread_id"])
    latencies = out["invoke_latencies"]
    return {
        "messages": n,
        "rows": rows,
        "row_bytes": size,
        "disk_bytes": relation_bytes(db_url) - before,
        "fill_s": elapsed,
        "invoke_p50_ms": statistics.median(latencies) * 1000,
        "invoke_last_p50_ms": statistics.median(latencies[-max(1, n // 10) :]) * 1000,
    }


# --- Rounds ----------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    clean = [v for v in values if v == v]  # drop NaN
    if not clean:
        return {"min": float("nan"), "median": float("nan"), "max": float("nan")}
    return {"min": min(clean), "median": statistics.median(clean), "max": max(clean)}


class Rounds:
    """Per-round figures: data[workload][system] = [one dict per round]."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, list[dict]]] = {}
        self.errors: dict[str, list[str]] = {}

    def add(self, workload: str, system: str, figures: dict, run: Run) -> None:
        self.data.setdefault(workload, {}).setdefault(system, []).append(figures)
        if run.errors:
            self.errors.setdefault(f"{workload}/{system}", []).extend(run.errors)

    def values(self, workload: str, system: str, metric: str) -> list[float]:
        return [r[metric] for r in self.data.get(workload, {}).get(system, [])]

    def ratios(self, workload: str, system: str, metric: str, base: str = "threadline"):
        """Threadline's figure ÷ `system`'s, round by round."""
        ours, theirs = self.values(workload, base, metric), self.values(workload, system, metric)
        return [a / b if b else float("nan") for a, b in zip(ours, theirs, strict=False)]


def append_segment(probe: CpuProbe, system, ids: list[str], total: int, tag: str):
    before = probe.sample()
    cpu0 = time.process_time()
    run = system.append(ids, total, tag)
    client = time.process_time() - cpu0
    cpu = probe.delta(before, probe.sample(), system.app_pids, system.uses_redis)
    if system.client_is_app:
        cpu["app"], client = client, float("nan")
    n = run.count or float("nan")
    figures = {
        "ops_s": run.rate,
        "p50_ms": run.pct_ms(50),
        "p99_ms": run.pct_ms(99),
        "count": run.count,
        "cpu_ms": (cpu["app"] + cpu["pg"] + cpu["redis"]) / n * 1000,
        "app_cpu_ms": cpu["app"] / n * 1000,
        "pg_cpu_ms": cpu["pg"] / n * 1000,
        "redis_cpu_ms": cpu["redis"] / n * 1000,
        "client_cpu_ms": client / n * 1000,
    }
    return run, figures


def one_round(r: int, args, ctx: dict, rounds: Rounds | None) -> None:
    """One round of every workload over every available system; `rounds` None: warm-up."""
    probe, appenders = ctx["probe"], ctx["appenders"]
    warm = rounds is None
    c4, c1 = (args.warmup, args.warmup // 2 or 1) if warm else (args.appends, args.appends_c1)
    tag = "w" if warm else f"r{r}"
    for system in appenders:
        ids = system.new_threads(args.concurrency, f"{tag}c4")
        run, figures = append_segment(probe, system, ids, c4, f"{tag}c4")
        if not warm:
            rounds.add("append_c4", system.name, figures, run)
    for system in appenders:
        ids = system.new_threads(1, f"{tag}c1")
        run, figures = append_segment(probe, system, ids, c1, f"{tag}c1")
        if not warm:
            rounds.add("append_c1", system.name, figures, run)
    for name, read in ctx["readers"].items():
        run = read(3 if warm else args.reads)
        if not warm:
            rounds.add("read", name, {"p50_ms": run.pct_ms(50), "p99_ms": run.pct_ms(99)}, run)
    for name, create in ctx["creators"].items():
        run = create(3 if warm else args.creates)
        if not warm:
            rounds.add("create", name, {"p50_ms": run.pct_ms(50), "p99_ms": run.pct_ms(99)}, run)


# --- Report ----------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return "—" if value != value else f"{value:,.{digits}f}"


def fmt_ratio(values: list[float]) -> str:
    s = summary(values)
    if s["median"] != s["median"]:
        return "—"
    return f"{s['median']:.2f}x [{s['min']:.2f}–{s['max']:.2f}]"


LABELS = {
    "threadline": "Threadline (HTTP, gunicorn)",
    "floor": "fair floor: psycopg txn",
    "langgraph": "LangGraph dev server",
    "agents": "OpenAI Agents SQLAlchemySession",
    "threadline_hot": "Threadline GET, hot (Redis)",
    "threadline_pg": "Threadline GET, PostgreSQL",
    "floor_select": "floor: raw SELECT (psycopg)",
    "floor_redis": "floor: raw Redis ZRANGE + parse",
    "floor_insert": "floor: INSERT of a thread row",
    "healthz": "Threadline GET /healthz (HTTP alone)",
    "langgraph_postgres": "LangGraph PostgresSaver (bytes)",
}
APPENDERS = ("threadline", "floor", "langgraph", "agents")
READERS = ("threadline_hot", "threadline_pg", "floor_select", "floor_redis", "langgraph", "agents")
CREATORS = ("threadline", "floor_insert", "healthz", "langgraph")


def block(
    rounds: Rounds, unavailable: dict, workload: str, systems, metric: str, base: str, digits=2
) -> tuple[list[list[str]], dict]:
    rows, out = [], {}
    for name in systems:
        if name in unavailable:
            rows.append([LABELS[name], f"unavailable: {unavailable[name]}"[:80], "", "", ""])
            out[name] = {"unavailable": unavailable[name]}
            continue
        s = summary(rounds.values(workload, name, metric))
        ratio = rounds.ratios(workload, name, metric, base) if name != base else []
        rows.append(
            [
                LABELS[name],
                fmt(s["median"], digits),
                fmt(s["min"], digits),
                fmt(s["max"], digits),
                fmt_ratio(ratio) if name != base else "",
            ]
        )
        out[name] = {**s, "per_round": rounds.values(workload, name, metric)}
        if ratio:
            out[name]["ratio_threadline"] = summary(ratio)
    return rows, out


def report(args, info: dict, rounds: Rounds, bytes_: dict, unavailable: dict) -> dict:
    print()
    print(
        f"Threadline vs peers — {args.rounds} interleaved round(s); PostgreSQL {info['postgres']}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
        f"{info['load'][0]:.2f} at start, {info['load'][1]:.2f} at the end"
    )
    if info["versions"]:
        print("peers: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(
        f"per round and system: {args.appends} appends at c={args.concurrency} (fresh threads), "
        f"{args.appends_c1} at c=1, {args.reads} reads of {args.history} messages, "
        f"{args.creates} thread creations; {args.content_bytes}-char messages; gunicorn "
        f"{args.workers} worker(s) × {args.threads} thread(s)"
    )
    figures: dict[str, Any] = {}
    head = ["system", "median", "min", "max", "Threadline ÷ system, median [min–max] of rounds"]

    print(f"\n1a. append 1 message, c={args.concurrency}: appends/s (higher is better)")
    rows, figures["append_c4_ops_s"] = block(
        rounds, unavailable, "append_c4", APPENDERS, "ops_s", "threadline", 1
    )
    print(table(head, rows, right={1, 2, 3}))

    print(
        "\n1b. CPU per append at c=4, ms (median of rounds): all of the app's processes + its "
        "PostgreSQL backends (+ redis-server for Threadline); the load generator apart"
    )
    cpu_rows, figures["append_c4_cpu_ms"] = [], {}
    for name in APPENDERS:
        if name in unavailable:
            continue
        med = {
            m: summary(rounds.values("append_c4", name, m))
            for m in ("cpu_ms", "app_cpu_ms", "pg_cpu_ms", "redis_cpu_ms", "client_cpu_ms")
        }
        figures["append_c4_cpu_ms"][name] = med
        cpu_rows.append(
            [
                LABELS[name],
                fmt(med["cpu_ms"]["median"], 2),
                f"{fmt(med['cpu_ms']['min'], 2)}–{fmt(med['cpu_ms']['max'], 2)}",
                fmt(med["app_cpu_ms"]["median"], 2),
                fmt(med["pg_cpu_ms"]["median"], 2),
                fmt(med["redis_cpu_ms"]["median"], 2) if name == "threadline" else "",
                fmt(med["client_cpu_ms"]["median"], 2),
            ]
        )
    print(
        table(
            ["system", "total", "min–max", "app", "PostgreSQL", "Redis", "load generator"],
            cpu_rows,
            right={1, 2, 3, 4, 5, 6},
        )
    )

    print("\n1c. append 1 message, c=1: p50 latency, ms (lower is better)")
    rows, figures["append_c1_p50_ms"] = block(
        rounds, unavailable, "append_c1", APPENDERS, "p50_ms", "threadline"
    )
    print(table(head, rows, right={1, 2, 3}))

    print(f"\n2. read {args.history:,} messages into Python objects: p50, ms (lower is better)")
    rows, figures["read_p50_ms"] = block(
        rounds, unavailable, "read", READERS, "p50_ms", "threadline_hot"
    )
    # The PostgreSQL path is compared with the raw SELECT: its own ratio on that row.
    ratio = rounds.ratios("read", "floor_select", "p50_ms", "threadline_pg")
    for row in rows:
        if row[0] == LABELS["floor_select"] and ratio:
            row[4] += f"; PostgreSQL path ÷ SELECT {fmt_ratio(ratio)}"
    print(table(head[:4] + ["Threadline hot ÷ system"], rows, right={1, 2, 3}))

    print("\n3. create a thread: p50, ms (lower is better)")
    rows, figures["create_p50_ms"] = block(
        rounds, unavailable, "create", CREATORS, "p50_ms", "threadline"
    )
    print(table(head, rows, right={1, 2, 3}))

    print(f"\n4. bytes stored for one {args.history:,}-message thread, appended one at a time")
    byte_rows = []
    ours = bytes_.get("threadline", {}).get("disk_bytes")
    for name, label in (
        ("threadline", "Threadline (PostgreSQL rows)"),
        ("langgraph_postgres", "LangGraph PostgresSaver (checkpoints)"),
        ("agents", "OpenAI Agents (session table)"),
    ):
        b = bytes_.get(name, {})
        if "unavailable" in b or not b:
            reason = f"unavailable: {b.get('unavailable', '?')}"[:80]
            byte_rows.append([label, reason, "", "", "", ""])
            continue
        share = f"{ours / b['disk_bytes']:.3f}x" if ours and b["disk_bytes"] else ""
        byte_rows.append(
            [
                label,
                f"{b['rows']:,}",
                f"{b['row_bytes']:,}",
                f"{b['disk_bytes']:,}",
                f"{b['disk_bytes'] / b['messages']:,.0f}",
                share if name != "threadline" else "",
            ]
        )
    print(
        table(
            ["system", "rows", "row bytes", "on disk (+indexes)", "disk/message", "TL ÷ system"],
            byte_rows,
            right={1, 2, 3, 4, 5},
        )
    )
    if "redis_bytes" in bytes_.get("threadline", {}):
        print(f"Threadline's hot copy in Redis: {bytes_['threadline']['redis_bytes']:,} bytes")
    if "invoke_p50_ms" in bytes_.get("langgraph_postgres", {}):
        lg = bytes_["langgraph_postgres"]
        print(
            f"PostgresSaver invoke() p50 {lg['invoke_p50_ms']:.1f} ms over the thread, "
            f"{lg['invoke_last_p50_ms']:.1f} ms over its last tenth (c=1, not interleaved)"
        )
    figures["bytes"] = bytes_

    print("\ngoals (medians of the per-round ratios):")
    goal_figures = {
        "append_vs_langgraph": rounds.ratios("append_c4", "langgraph", "ops_s"),
        "append_vs_floor": rounds.ratios("append_c4", "floor", "ops_s"),
        "cpu_per_append": rounds.values("append_c4", "threadline", "cpu_ms"),
        "c1_vs_floor": rounds.ratios("append_c1", "floor", "p50_ms"),
        "read_hot_vs_langgraph": rounds.ratios("read", "langgraph", "p50_ms", "threadline_hot"),
        "read_hot_vs_redis": rounds.ratios("read", "floor_redis", "p50_ms", "threadline_hot"),
        "read_pg_vs_select": rounds.ratios("read", "floor_select", "p50_ms", "threadline_pg"),
        "create_vs_langgraph": rounds.ratios("create", "langgraph", "p50_ms"),
    }
    figures["goals"] = {}
    for key, text, op, bound in GOALS:
        value = summary(goal_figures[key])["median"]
        if value != value:
            verdict = "n/a (a side is unavailable)"
        else:
            met = value >= bound if op == ">=" else value <= bound
            verdict = "met" if met else "NOT MET"
        unit = "" if value != value else " ms" if key == "cpu_per_append" else "x"
        print(f"  {text}: {fmt(value, 2)}{unit} — {verdict}")
        figures["goals"][key] = {"goal": text, "value": value, "bound": bound, "result": verdict}

    for name, reason in unavailable.items():
        print(f"unavailable: {LABELS.get(name, name)}: {reason}")
    for name, errors in rounds.errors.items():
        print(f"{name}: {len(errors)} failed operation(s) (not timed); first: {errors[0]}")
    print(f"total time {info['elapsed']:.1f} s")
    return {
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "pg")},
        "postgres": info["postgres"],
        "cpus": os.cpu_count(),
        "load": info["load"],
        "peer_versions": info["versions"],
        "unavailable": unavailable,
        "rounds": rounds.data,
        "errors": {k: len(v) for k, v in rounds.errors.items()},
        **figures,
    }


# --- Setup -----------------------------------------------------------------------------


def server_env(args, db_url: str, redis_url: str) -> dict[str, str]:
    extra = {"REDIS_URL": redis_url, "API_RATE_LIMIT_PER_MINUTE": str(args.rate_limit)}
    return {**os.environ, **project_env(db_url, **extra)}


def langgraph_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "OPENAI_", "DJANGO_", "DATABASE_URL"))
    }
    env.update(
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        LANGCHAIN_TRACING="false",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_langgraph(stack, python: str) -> tuple[str, int]:
    """`langgraph dev` in a temporary directory holding a copy of peers_app (the dev server
    keeps its files in the working directory)."""
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-langgraph-")))
    for name in ("graph.py", "langgraph.json"):
        shutil.copy(PEERS_APP / name, work / name)
    port = free_port()
    langgraph = str(Path(python).parent / "langgraph")
    cmd = [langgraph, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--config", "langgraph.json", "--server-log-level", "WARNING"]
    proc = stack.enter_context(
        http_server(
            cmd, port=port, env=langgraph_env(), cwd=work, name="langgraph-dev", ready_path="/ok"
        )
    )
    return f"http://127.0.0.1:{port}", proc.pid


def flush_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).flushdb()
    except Exception as exc:
        raise BenchError(f"Redis at {url} is needed (the hot path): {exc}") from None


def setup_threadline(stack, args, texts, ctx, bytes_, unavailable) -> Threadline:
    db_url, version = recreate_database(args.pg, args.db_name)
    ctx["postgres"] = version
    env = bench_broker_env(server_env(args, db_url, args.redis_url), args.redis_url)
    step("migrating")
    manage("migrate", "--noinput", env=env)
    tenant = json.loads(
        manage("create_tenant", "peers", "--json", env=env).strip().splitlines()[-1]
    )
    extra = worker_args(args.threads)
    step(
        f"starting two gunicorn servers ({args.workers} workers each), with and without "
        "Redis, and a Celery worker"
    )
    worker = stack.enter_context(celery_worker(env))
    hot = stack.enter_context(gunicorn(env=env, workers=args.workers, extra_args=extra))
    cold_env = {**env, "REDIS_URL": ""}
    cold = stack.enter_context(gunicorn(env=cold_env, workers=args.workers, extra_args=extra))
    admin = Client(hot, tenant["api_key"])
    project = admin.json("POST", "/api/v1/projects/", {"name": "peers"}, expect=201)["id"]
    admin.close()
    tl = Threadline(hot, tenant["api_key"], project, texts, worker.pid)
    stack.callback(tl.close)

    step(f"Threadline: a {args.history}-message thread, one append at a time (bytes, reads)")
    before = relation_bytes(db_url)
    thread = tl.new_threads(1, "history")[0]
    run = tl.append([thread], args.history, "h")
    if run.errors:
        raise BenchError(f"Threadline history: {run.errors[0]}")
    rows, size = row_bytes(db_url, {"threads_message": "thread_id", "threads_thread": "id"}, thread)
    bytes_["threadline"] = {
        "messages": args.history,
        "rows": rows,
        "row_bytes": size,
        "disk_bytes": relation_bytes(db_url) - before,
    }
    floor = Floor(db_url, tenant["tenant"], args.concurrency, texts, tl.new_threads)
    stack.callback(floor.close)
    from threads.storage.hotcache import keys

    cache_keys = list(keys(thread))
    read = tl.reader(hot, thread, args.history)
    if wait_hot_cache(args.redis_url, thread, args.history, lambda: read(1)):
        bytes_["threadline"]["redis_bytes"] = redis_bytes(args.redis_url, cache_keys)
        ctx["readers"]["floor_redis"] = redis_reader(args.redis_url, cache_keys[1], args.history)
    else:
        unavailable["floor_redis"] = "the thread's hot cache was never filled (see the log)"
        print("  ! the hot cache did not fill within 30 s: the 'hot' reads are database reads")
    ctx["appenders"] += [tl, floor]
    ctx["readers"].update(
        threadline_hot=tl.reader(hot, thread, args.history),
        threadline_pg=tl.reader(cold, thread, args.history),
        floor_select=floor.select_reader(thread, args.history),
    )
    ctx["creators"]["threadline"] = tl.creator
    ctx["creators"]["floor_insert"] = floor.creator
    ctx["creators"]["healthz"] = tl.healthz
    return tl


def setup_peers(stack, args, texts, ctx, bytes_, unavailable) -> dict[str, str]:
    """Install and start the peers; whatever fails is marked unavailable, with why."""
    if args.no_peers:
        reason = "--no-peers"
        for name in ("langgraph", "agents", "langgraph_postgres"):
            unavailable[name] = reason
        bytes_["langgraph_postgres"] = bytes_["agents"] = {"unavailable": reason}
        return {}
    python, why = peers_python(args.python)
    if python is None:
        for name in ("langgraph", "agents", "langgraph_postgres"):
            unavailable[name] = why
        bytes_["langgraph_postgres"] = bytes_["agents"] = {"unavailable": why}
        return {}
    versions = peer_versions(python)

    try:
        step("starting langgraph dev (in-memory runtime)")
        base, pid = start_langgraph(stack, python)
        lg = LangGraphDev(base, pid, texts)
        stack.callback(lg.close)
        thread = lg.new_threads(1, "history")[0]
        lg.fill(thread, args.history)
        lg.reader(thread, args.history)(1)
        ctx["appenders"].append(lg)
        ctx["readers"]["langgraph"] = lg.reader(thread, args.history)
        ctx["creators"]["langgraph"] = lg.creator
    except Exception as exc:  # BenchError, OSError, a bad answer: that peer only
        unavailable["langgraph"] = f"{type(exc).__name__}: {exc}"[:300]

    try:
        step("OpenAI Agents: SQLAlchemySession on PostgreSQL (asyncpg)")
        name = f"{args.db_name}_agents"
        url, _ = recreate_database(args.pg, name)
        ctx["probe_databases"].append(name)
        async_url = url.replace("postgres://", "postgresql+asyncpg://", 1)
        agents = Agents(python, async_url, args.concurrency + 1, texts)
        stack.callback(agents.close)
        before = relation_bytes(url)
        session = agents.new_threads(1, "history")[0]
        agents.fill(session, args.history, batch=1)
        rows, size = row_bytes(
            url, {"agent_messages": "session_id", "agent_sessions": "session_id"}, session
        )
        bytes_["agents"] = {
            "messages": args.history,
            "rows": rows,
            "row_bytes": size,
            "disk_bytes": relation_bytes(url) - before,
        }
        ctx["appenders"].append(agents)
        ctx["readers"]["agents"] = agents.reader(session, args.history)
    except Exception as exc:
        unavailable["agents"] = f"{type(exc).__name__}: {exc}"[:300]
        bytes_["agents"] = {"unavailable": unavailable["agents"]}

    try:
        step(f"LangGraph PostgresSaver: {args.history} invoke()s of the one-node graph (bytes)")
        name = f"{args.db_name}_langgraph"
        url, _ = recreate_database(args.pg, name)
        bytes_["langgraph_postgres"] = langgraph_checkpointer_bytes(
            python, url, texts, args.history
        )
    except Exception as exc:
        unavailable["langgraph_postgres"] = f"{type(exc).__name__}: {exc}"[:300]
        bytes_["langgraph_postgres"] = {"unavailable": unavailable["langgraph_postgres"]}
    return versions


def main(argv: list[str] | None = None) -> int:
    import contextlib

    args = parse_args(argv)
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    texts = make_texts(max(args.history, 100), args.content_bytes)
    flush_redis(args.redis_url)
    ctx: dict[str, Any] = {
        "appenders": [],
        "readers": {},
        "creators": {},
        "probe_databases": [args.db_name],
    }
    bytes_: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    rounds = Rounds()
    with contextlib.ExitStack() as stack:
        step(f"recreating database {args.db_name}")
        setup_threadline(stack, args, texts, ctx, bytes_, unavailable)
        versions = setup_peers(stack, args, texts, ctx, bytes_, unavailable)
        ctx["probe"] = CpuProbe(args.pg, ctx["probe_databases"])
        stack.callback(ctx["probe"].close)
        # Appenders in a fixed order whatever started: Threadline, floor, LangGraph, Agents.
        order = {name: i for i, name in enumerate(APPENDERS)}
        ctx["appenders"].sort(key=lambda s: order[s.name])
        step("warm-up round (untimed)")
        one_round(-1, args, ctx, None)
        for r in range(args.rounds):
            step(f"round {r + 1} of {args.rounds}")
            one_round(r, args, ctx, rounds)
        step("stopping servers")
    info = {
        "postgres": ctx["postgres"],
        "elapsed": time.perf_counter() - started,
        "load": (load_start, os.getloadavg()[0]),
        "versions": versions,
    }
    write_json(args.json, report(args, info, rounds, bytes_, unavailable))
    return 0


if __name__ == "__main__":
    run_main(main)
