"""Shared helpers for the benchmarks in bench/: a throwaway PostgreSQL database, a gunicorn
server on a free loopback port, a small keep-alive JSON client, a bounded concurrent runner,
percentiles and a fixed-width table.

Standard library plus psycopg 3 (a project dependency); nothing here talks to anything but
127.0.0.1 unless told to.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class BenchError(RuntimeError):
    """A setup step failed; the message says which and why."""


# --- Processes -------------------------------------------------------------------------


def venv_tool(name: str) -> str:
    """`name` next to the running interpreter (the project's .venv), else on PATH."""
    candidate = Path(PYTHON).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"{name} not found next to {PYTHON} or on PATH; run `make install`.")
    return found


def manage(*args: str, env: dict[str, str], timeout: float = 300, root: Path = REPO) -> str:
    """Run `manage.py <args>` of the checkout at `root` with `env`; returns stdout, raises
    BenchError on failure."""
    proc = subprocess.run(
        [PYTHON, str(root / "manage.py"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise BenchError(
            f"manage.py {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(
    *,
    env: dict[str, str],
    workers: int = 2,
    app: str = "config.wsgi",
    extra_args: Sequence[str] = (),
    ready_path: str = "/healthz",
    ready_timeout: float = 30.0,
    root: Path = REPO,
) -> Iterator[str]:
    """Start gunicorn with the gunicorn.conf.py of the checkout at `root` (as `make run` and
    production serve; a checkout from before that file: gunicorn's defaults, as it was
    served then) on a free loopback port, from `root` (its code first on the path), wait for
    `ready_path`, yield the base URL (http://127.0.0.1:<port>), and always stop it: SIGTERM,
    then SIGKILL of its process group after 10 s. `extra_args` override the configuration
    (see worker_args()). Its output goes to a temporary log, shown if it fails to start."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(  # closed in the finally below
        prefix="bench-gunicorn-", suffix=".log", delete=False
    )
    config = root / "gunicorn.conf.py"
    cmd = [
        venv_tool("gunicorn"),
        *(["-c", str(config)] if config.exists() else []),
        app,
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        *extra_args,
    ]
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    _SERVER_PIDS[base] = proc.pid
    try:
        _wait_ready(proc, port, ready_path, ready_timeout, log.name)
        yield base
    finally:
        _SERVER_PIDS.pop(base, None)
        _stop(proc)
        _drop_log(log, "gunicorn")


_SERVER_PIDS: dict[str, int] = {}


def worker_args(threads: int) -> list[str]:
    """gunicorn arguments for `--threads N` of a bench: 0 = as gunicorn.conf.py serves
    (gthread), 1 = sync workers (the previous served configuration), N > 1 = gthread × N."""
    if threads == 0:
        return []
    if threads == 1:
        return ["--worker-class", "sync", "--threads", "1"]
    return ["--threads", str(threads)]


def _drop_log(log, name: str) -> None:
    """Remove a server's log once it stopped, unless BENCH_KEEP_LOGS is set (then say where)."""
    log.close()
    if os.environ.get("BENCH_KEEP_LOGS"):
        print(f"  {name} log kept: {log.name}", file=sys.stderr)
        return
    with contextlib.suppress(OSError):
        os.unlink(log.name)


def server_pid(base_url: str) -> int:
    """The pid of the gunicorn arbiter serving `base_url` (one started by gunicorn())."""
    return _SERVER_PIDS[base_url]


def _wait_ready(
    proc: subprocess.Popen, port: int, path: str, timeout: float, log: str, name: str = "gunicorn"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited {proc.returncode}:\n{Path(log).read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(
        f"{name} did not answer {path} within {timeout:.0f} s:\n{Path(log).read_text()[-3000:]}"
    )


@contextlib.contextmanager
def http_server(
    cmd: Sequence[str],
    *,
    port: int,
    env: dict[str, str],
    cwd: Path | str,
    name: str,
    ready_path: str,
    ready_timeout: float = 60.0,
) -> Iterator[subprocess.Popen]:
    """Start `cmd` (an HTTP server that listens on 127.0.0.1:`port`) in its own session,
    wait until `ready_path` answers 200, yield the process, and always stop it (SIGTERM,
    then SIGKILL of its process group). Output goes to a temporary log, shown on failure."""
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        list(cmd), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait_ready(proc, port, ready_path, ready_timeout, log.name, name)
        yield proc
    finally:
        _stop(proc)
        _drop_log(log, name)


@contextlib.contextmanager
def background(
    cmd: Sequence[str], *, env: dict[str, str], cwd: Path | str = REPO, name: str = "process"
) -> Iterator[subprocess.Popen]:
    """Start `cmd` in its own session, yield it, always stop it (as gunicorn()). Its output
    goes to a temporary log, removed afterwards."""
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        list(cmd), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        time.sleep(0.2)
        if proc.poll() is not None:
            raise BenchError(f"{name} exited {proc.returncode}:\n{Path(log.name).read_text()}")
        yield proc
    finally:
        _stop(proc)
        _drop_log(log, name)


def celery_worker(env: dict[str, str]) -> contextlib.AbstractContextManager[subprocess.Popen]:
    """A Celery worker (`celery -A config worker`, one process, solo pool) on `env`, which
    must name a private CELERY_BROKER_URL (see bench_broker_env): a deployment runs one, and
    some reads hand work to it (filling a thread's hot cache after a miss)."""
    if env.get("CELERY_BROKER_URL", "filesystem://").startswith("filesystem://"):
        raise BenchError("a bench worker needs its own broker (CELERY_BROKER_URL)")
    cmd = [PYTHON, "-m", "celery", "-A", "config", "worker", "-l", "warning", "-P", "solo"]
    return background(cmd, env=env, name="celery")


def bench_broker_env(env: dict[str, str], redis_url: str) -> dict[str, str]:
    """`env` with CELERY_BROKER_URL on the bench's Redis database: tasks the bench's servers
    enqueue never land in the project's var/broker (another worker could take them)."""
    return {**env, "CELERY_BROKER_URL": redis_url}


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the arbiter stops its workers
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    # Our own session (its pid is its group's id while any member lives): whatever is left of
    # it — gunicorn workers, a server's children — goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=5)


# --- CPU of other processes (Linux /proc) ----------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Proc:
    ppid: int
    comm: str
    cpu: float  # utime + stime of all its threads, seconds (1/CLK_TCK resolution)


def proc_table() -> dict[int, Proc]:
    """Every process readable in /proc: pid → (ppid, command name, CPU seconds so far)."""
    out: dict[int, Proc] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                data = f.read()
        except OSError:  # gone meanwhile
            continue
        close = data.rindex(b")")
        comm = data[data.index(b"(") + 1 : close].decode(errors="replace")
        rest = data[close + 2 :].split()  # state ppid … utime(14) stime(15), 1-based
        out[int(entry.name)] = Proc(int(rest[1]), comm, (int(rest[11]) + int(rest[12])) / _CLK_TCK)
    return out


def process_tree(table: dict[int, Proc], root: int) -> set[int]:
    """`root` and all its descendants in `table`."""
    children: dict[int, list[int]] = {}
    for pid, proc in table.items():
        children.setdefault(proc.ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


# --- PostgreSQL ------------------------------------------------------------------------


def database_url(server_url: str, name: str) -> str:
    """`server_url` (postgres://user@host:port[/anything]) with the database set to `name`."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def recreate_database(server_url: str, name: str) -> tuple[str, str]:
    """Drop (forcibly) and create database `name`; returns (its URL, the server version)."""
    import psycopg
    from psycopg import sql

    try:
        conn = psycopg.connect(database_url(server_url, "postgres"), autocommit=True)
    except psycopg.OperationalError as exc:
        raise BenchError(f"cannot connect to PostgreSQL at {server_url}: {exc}") from None
    with conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        version = conn.execute("SHOW server_version").fetchone()[0]
    return database_url(server_url, name), version


# --- HTTP ------------------------------------------------------------------------------


class Client:
    """A JSON client on one http.client connection (keep-alive when the server allows it;
    gunicorn's sync workers close after every response, and http.client reconnects)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0):
        parts = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def raw(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        payload = None if body is None else json.dumps(body).encode()
        try:
            self.conn.request(method, path, body=payload, headers=self.headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()  # a dropped keep-alive connection: retry once on a new one
            self.conn.request(method, path, body=payload, headers=self.headers)
            response = self.conn.getresponse()
            return response.status, response.read()

    def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, data = self.raw(method, path, body)
        if status != expect:
            raise BenchError(f"{method} {path} → {status} (expected {expect}): {data[:500]!r}")
        return json.loads(data) if data else None

    def close(self) -> None:
        self.conn.close()


def wait_hot_cache(
    redis_url: str, thread_id: str, expect: int, read: Callable[[], Any], timeout: float = 30
) -> bool:
    """Call read() (a GET of the thread) until Redis holds the thread's `expect` messages —
    a miss fills the hot cache, inline or through a task on the worker — for at most
    `timeout` seconds; False if it never did (or Redis is unreachable)."""
    from threads.storage.hotcache import keys  # the cache's own key layout

    try:
        import redis

        client = redis.Redis.from_url(redis_url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            read()
            if client.zcard(keys(thread_id)[1]) == expect:
                return True
            time.sleep(0.3)
    except Exception:  # Redis down: the server serves from the database
        return False
    return False


# --- Running and measuring -------------------------------------------------------------


@dataclass
class Run:
    """Latencies (seconds) of the operations that succeeded, the wall time, the CPU time
    this (client) process spent meanwhile, the failures."""

    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.wall if self.wall else 0.0

    def pct_ms(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000


def merged(runs: list[Run]) -> Run:
    """The rounds of one side as one run: all latencies, the summed wall and CPU times."""
    out = Run()
    for run in runs:
        out.latencies += run.latencies
        out.wall += run.wall
        out.cpu += run.cpu
        out.errors += run.errors
    return out


def run_concurrent(
    *,
    workers: int,
    total: int,
    setup: Callable[[int], Any],
    op: Callable[[Any, int, int], None],
    teardown: Callable[[Any], None] = lambda _: None,
    max_errors: int = 20,
) -> Run:
    """`total` calls of op(state, worker, i) split over `workers` OS threads, each with its
    own state from setup(worker) (a connection). The clock starts when every worker is set
    up. An op that raises counts as an error (not timed); a worker stops after `max_errors`."""
    run = Run()
    lock = threading.Lock()
    shares = [total // workers + (1 if w < total % workers else 0) for w in range(workers)]
    barrier = threading.Barrier(workers + 1)

    def work(w: int) -> None:
        try:
            state = setup(w)
        except Exception as exc:
            with lock:
                run.errors.append(f"setup of worker {w}: {type(exc).__name__}: {exc}"[:300])
            barrier.abort()  # nobody starts; the caller reports the error
            return
        local: list[float] = []
        failures: list[str] = []
        try:
            barrier.wait()
            for i in range(shares[w]):
                start = time.perf_counter()
                try:
                    op(state, w, i)
                except Exception as exc:  # counted and reported, never fatal
                    failures.append(f"{type(exc).__name__}: {exc}"[:300])
                    if len(failures) >= max_errors:
                        break
                    continue
                local.append(time.perf_counter() - start)
        finally:
            teardown(state)
            with lock:
                run.latencies.extend(local)
                run.errors.extend(failures)

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(workers)]
    for t in threads:
        t.start()
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError:
        for t in threads:
            t.join(timeout=5)
        raise BenchError("; ".join(run.errors) or "workers did not start within 60 s") from None
    started, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    run.wall = time.perf_counter() - started
    run.cpu = time.process_time() - cpu
    return run


def run_sequential(*, total: int, op: Callable[[int], None], max_errors: int = 20) -> Run:
    """`total` timed calls of op(i), one after another."""
    run = Run()
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(total):
        start = time.perf_counter()
        try:
            op(i)
        except Exception as exc:
            run.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            if len(run.errors) >= max_errors:
                break
            continue
        run.latencies.append(time.perf_counter() - start)
    run.wall = time.perf_counter() - started
    run.cpu = time.process_time() - cpu
    return run


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0–100) with linear interpolation between ranks (numpy's
    default); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], right: set[int] = frozenset()
) -> str:
    """A fixed-width text table; columns in `right` are right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


# --- Command line shared by every benchmark --------------------------------------------


def step(message: str) -> None:
    """A progress line."""
    print(f"· {message}", flush=True)


def require_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, *names: str):
    """parser.error() unless every option in `names` is at least 1."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")


def project_env(database_url: str, **extra: str) -> dict[str, str]:
    """What every bench's Django processes run with: local settings on the bench database,
    DEBUG off, quiet logs; plus `extra`."""
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": database_url,
        "DJANGO_DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def add_common_args(
    parser: argparse.ArgumentParser, *, db_name: str, redis_help: str | None = None
) -> None:
    """--pg, --db-name, --json and (when the benchmark uses Redis) --redis-url."""
    parser.add_argument(
        "--pg",
        default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server URL to create the database on (env BENCH_PG_URL)",
    )
    parser.add_argument("--db-name", default=db_name, help="database to (re)create")
    if redis_help is not None:
        parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5", help=redis_help)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")


def write_json(path: str | None, figures: Any) -> None:
    """The figures as JSON to `path` (the --json option), if one was given."""
    if path:
        Path(path).write_text(json.dumps(figures, indent=2))


def run_main(main: Callable[[], int]) -> None:
    """Exit with main()'s status; a BenchError is reported in one line, Ctrl-C is 130."""
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
