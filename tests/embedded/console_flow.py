"""Run by tests/embedded/test_console_sqlite.py in its own process: on the embedded default
(SQLite, the filesystem broker, no Redis) a real worker stores task results, and the
dashboard and /metrics show them. Prints one JSON line of what it saw."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import django


def main() -> None:
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django_celery_results.models import TaskResult

    from config.celery import app

    call_command("migrate", verbosity=0)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "solo", "-l", "error"],
        env=os.environ.copy(),
    )
    try:
        app.send_task("threads.warming_sweep")
        app.send_task("threads.warm_thread", args=["thd_missing"])  # no token: a TypeError
        deadline = time.monotonic() + 60
        while TaskResult.objects.count() < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    seen = {"results": sorted(TaskResult.objects.values_list("task_name", "status"))}
    user = get_user_model().objects.create_superuser("op", "op@example.com", "pw-op-12345")
    client = Client()
    client.force_login(user)
    html = client.get("/admin/").content.decode()
    seen["failures"] = re.search(r'data-figure="task-failures" href="[^"]+">(\d+)<', html).group(1)
    row = re.search(r'<tr data-schedule="warming-sweep">(.*?)</tr>', html, re.S).group(1)
    seen["sweep_outcome"] = "SUCCESS" in row
    seen["queue"] = re.search(r'data-figure="queue-celery">([^<]*)<', html).group(1).strip()
    metrics = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {os.environ['METRICS_TOKEN']}")
    seen["metrics"] = [
        line for line in metrics.content.decode().splitlines() if "task_results{" in line
    ]
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
