"""A real Celery worker for tests: a `celery -A config worker` subprocess on the test
database and the test broker (Redis). Use with `@pytest.mark.django_db(transaction=True)` so
the worker sees committed rows.

    with celery_worker() as worker:
        some_task.delay(thread.id)
        wait_for(lambda: ...)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

from config.celery import app

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] or "postgres"
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def wait_for(condition: Callable[[], object], *, timeout: float = 30, interval: float = 0.1):
    """Poll until `condition()` is truthy and return it; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def kill_worker(process: subprocess.Popen) -> None:
    """SIGKILL a worker started by celery_worker() and its pool children: no shutdown, no
    acks, no cleanup — whatever it was running is abandoned mid-way. Call it while no other
    worker of the test is running a task."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # Its unacknowledged messages would come back after the broker's visibility timeout (an
    # hour), into some later test's worker: the test owns this broker, drop them now.
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.client.delete(channel.unacked_key, channel.unacked_index_key)


@contextmanager
def celery_worker(
    *, concurrency: int = 1, pool: str = "prefork", extra_env: dict | None = None
) -> Iterator[subprocess.Popen]:
    """Start a worker, wait until it answers a ping, stop it on exit."""
    name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": app.conf.broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        **(extra_env or {}),
    }
    app.control.purge()
    was_eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        # Its own process group, so a fault test can SIGKILL the worker and its pool
        # children at once (kill_worker), as a lost machine or an OOM-killed container would.
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: process.poll() is not None or app.control.ping([name], timeout=0.5), timeout=60
        )
        if process.poll() is not None:
            raise RuntimeError(f"celery worker exited with {process.returncode}")
        yield process
    finally:
        app.conf.task_always_eager = was_eager
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
