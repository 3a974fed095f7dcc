"""The embedded default (`make run`: SQLite, the filesystem broker, no Redis) keeps task
results in the database, and the dashboard reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_task_results_and_the_dashboard_work_on_sqlite_and_the_filesystem_broker(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'embedded.sqlite3'}",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_FILESYSTEM_BROKER_DIR": str(tmp_path / "broker"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "METRICS_TOKEN": "embedded",
        "LOG_LEVEL": "ERROR",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.embedded.console_flow"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["results"] == [
        ["threads.warm_thread", "FAILURE"],
        ["threads.warming_sweep", "SUCCESS"],
    ]
    assert seen["failures"] == "1"
    assert seen["sweep_outcome"] is True
    assert seen["queue"] == "celery: 0"
    assert 'threadline_celery_task_results{state="FAILURE"} 1.0' in seen["metrics"]
